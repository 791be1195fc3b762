//! The node IDs a peer's TLS certificate names (`tls::eid::bundle_eids`),
//! read from arbitrary DER. Properties: no input makes it panic, and every
//! name it returns can be written back (`subject_alt_name`) and read again
//! from a certificate built around it.
#![no_main]

use ferry_cla_tcp::tls::eid;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(names) = eid::bundle_eids(data) else { return };
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let san = eid::subject_alt_name(&refs).expect("a name read is a name that can be written");
    assert_eq!(eid::bundle_eids(&certificate_around(&san)).expect("reads back"), names);
});

/// A certificate-shaped DER whose only extension is subjectAltName `san`.
fn certificate_around(san: &[u8]) -> Vec<u8> {
    let mut ext = tlv(0x06, eid::ID_CE_SUBJECT_ALT_NAME);
    ext.extend(tlv(0x04, san));
    let exts = tlv(0x30, &tlv(0x30, &ext));
    let mut tbs = tlv(0x02, &[1]);
    for _ in 0..5 {
        tbs.extend(tlv(0x30, &[]));
    }
    tbs.extend(tlv(0xa3, &exts));
    let mut body = tlv(0x30, &tbs);
    body.extend(tlv(0x30, &[]));
    body.extend(tlv(0x03, &[0]));
    tlv(0x30, &body)
}

fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        out.push(0x84);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(value);
    out
}
