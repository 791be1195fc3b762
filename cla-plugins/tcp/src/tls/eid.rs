//! The node IDs an X.509 certificate names: subjectAltName otherName
//! entries of type id-on-bundleEID (1.3.6.1.5.5.7.8.11), an IA5String each
//! (RFC 9174 §4.4.1, RFC 9174 §9.11).
//!
//! Sans-IO: [`bundle_eids`] reads them from a certificate's DER (any input:
//! every length is checked against what is left, nothing panics) and
//! [`subject_alt_name`] encodes the extension value `ferry tls gen` puts in
//! a node certificate.

use thiserror::Error;

/// id-on-bundleEID, 1.3.6.1.5.5.7.8.11, as DER OID content octets.
pub const ID_ON_BUNDLE_EID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x0b];
/// id-ce-subjectAltName, 2.5.29.17, as DER OID content octets.
pub const ID_CE_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const IA5_STRING: u8 = 0x16;
/// [0] constructed: otherName in GeneralName, and its EXPLICIT value.
const CONTEXT_0: u8 = 0xa0;
/// [3] constructed: the extensions of a TBSCertificate.
const CONTEXT_3: u8 = 0xa3;

/// Why a certificate's names could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EidError {
    /// The DER is cut short or a length does not fit.
    #[error("the certificate's DER is malformed")]
    Malformed,
    /// A bundleEID name is not an IA5String of printable ASCII.
    #[error("a bundleEID name in the certificate is not an IA5String")]
    NotIa5,
}

/// The node IDs named by the certificate `cert_der`, in certificate order.
/// A certificate without a subjectAltName extension names none.
pub fn bundle_eids(cert_der: &[u8]) -> Result<Vec<String>, EidError> {
    let (cert, _) = expect(cert_der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    // The TBSCertificate's fields before the optional [3] extensions have
    // their own tags; skip to [3].
    let mut rest = tbs;
    while !rest.is_empty() {
        let (tag, value, after) = tlv(rest)?;
        rest = after;
        if tag == CONTEXT_3 {
            let (extensions, _) = expect(value, SEQUENCE)?;
            return names_in_extensions(extensions);
        }
    }
    Ok(Vec::new())
}

fn names_in_extensions(mut extensions: &[u8]) -> Result<Vec<String>, EidError> {
    let mut eids = Vec::new();
    while !extensions.is_empty() {
        let (ext, after) = expect(extensions, SEQUENCE)?;
        extensions = after;
        let (oid, mut ext) = expect(ext, OID)?;
        if oid != ID_CE_SUBJECT_ALT_NAME {
            continue;
        }
        if ext.first() == Some(&BOOLEAN) {
            (_, ext) = expect(ext, BOOLEAN)?;
        }
        let (value, _) = expect(ext, OCTET_STRING)?;
        let (mut names, _) = expect(value, SEQUENCE)?;
        while !names.is_empty() {
            let (tag, name, after) = tlv(names)?;
            names = after;
            if tag != CONTEXT_0 {
                continue; // dNSName, iPAddress, ...: not node IDs
            }
            let (type_id, rest) = expect(name, OID)?;
            if type_id != ID_ON_BUNDLE_EID {
                continue;
            }
            let (explicit, _) = expect(rest, CONTEXT_0)?;
            let (text, _) = expect(explicit, IA5_STRING).map_err(|_| EidError::NotIa5)?;
            if !text.iter().all(|b| (0x20..0x7f).contains(b)) {
                return Err(EidError::NotIa5);
            }
            // Printable ASCII is UTF-8.
            eids.push(String::from_utf8_lossy(text).into_owned());
        }
    }
    Ok(eids)
}

/// The value (the content of the extnValue OCTET STRING) of a
/// subjectAltName extension naming `eids` as id-on-bundleEID otherNames.
/// Node IDs are URIs, so ASCII; other characters are refused.
pub fn subject_alt_name(eids: &[&str]) -> Result<Vec<u8>, EidError> {
    let mut names = Vec::new();
    for eid in eids {
        if !eid.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(EidError::NotIa5);
        }
        let mut other = Vec::new();
        put(&mut other, OID, ID_ON_BUNDLE_EID);
        let mut explicit = Vec::new();
        put(&mut explicit, IA5_STRING, eid.as_bytes());
        put(&mut other, CONTEXT_0, &explicit);
        put(&mut names, CONTEXT_0, &other);
    }
    let mut out = Vec::new();
    put(&mut out, SEQUENCE, &names);
    Ok(out)
}

/// One DER TLV: (tag, value, what follows). Single-octet tags only (all
/// X.509 uses here); definite lengths of at most four octets.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), EidError> {
    let (&tag, rest) = input.split_first().ok_or(EidError::Malformed)?;
    if tag & 0x1f == 0x1f {
        return Err(EidError::Malformed);
    }
    let (&first, mut rest) = rest.split_first().ok_or(EidError::Malformed)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(EidError::Malformed);
        }
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(EidError::Malformed);
    }
    let (value, after) = rest.split_at(len);
    Ok((tag, value, after))
}

fn expect(input: &[u8], want: u8) -> Result<(&[u8], &[u8]), EidError> {
    match tlv(input)? {
        (tag, value, after) if tag == want => Ok((value, after)),
        _ => Err(EidError::Malformed),
    }
}

fn put(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal certificate shell: the fields webpki would check are
    /// placeholders; only the structure up to the extensions matters here.
    fn cert_with(extensions: &[u8]) -> Vec<u8> {
        let mut tbs = Vec::new();
        put(&mut tbs, 0xa0, &[0x02, 0x01, 0x02]); // version v3
        put(&mut tbs, 0x02, &[0x01]); // serial
        put(&mut tbs, SEQUENCE, &[]); // signature algorithm
        put(&mut tbs, SEQUENCE, &[]); // issuer
        put(&mut tbs, SEQUENCE, &[]); // validity
        put(&mut tbs, SEQUENCE, &[]); // subject
        put(&mut tbs, SEQUENCE, &[]); // spki
        let mut seq = Vec::new();
        put(&mut seq, SEQUENCE, extensions);
        put(&mut tbs, CONTEXT_3, &seq);
        let mut body = Vec::new();
        put(&mut body, SEQUENCE, &tbs);
        put(&mut body, SEQUENCE, &[]);
        put(&mut body, 0x03, &[0x00]);
        let mut cert = Vec::new();
        put(&mut cert, SEQUENCE, &body);
        cert
    }

    fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
        let mut ext = Vec::new();
        put(&mut ext, OID, oid);
        if critical {
            put(&mut ext, BOOLEAN, &[0xff]);
        }
        put(&mut ext, OCTET_STRING, value);
        let mut out = Vec::new();
        put(&mut out, SEQUENCE, &ext);
        out
    }

    #[test]
    fn names_written_are_the_names_read() {
        let san = subject_alt_name(&["dtn://camp/", "ipn:7.0"]).unwrap();
        let mut exts = extension(&[0x55, 0x1d, 0x0f], true, &[0x03, 0x02, 0x07, 0x80]); // keyUsage first
        exts.extend(extension(ID_CE_SUBJECT_ALT_NAME, false, &san));
        assert_eq!(bundle_eids(&cert_with(&exts)).unwrap(), ["dtn://camp/", "ipn:7.0"]);
        // Critical flag present.
        let exts = extension(ID_CE_SUBJECT_ALT_NAME, true, &san);
        assert_eq!(bundle_eids(&cert_with(&exts)).unwrap(), ["dtn://camp/", "ipn:7.0"]);
    }

    #[test]
    fn a_long_name_uses_the_long_length_form() {
        let eid = format!("dtn://{}/", "n".repeat(300));
        let san = subject_alt_name(&[&eid]).unwrap();
        assert_eq!(bundle_eids(&cert_with(&extension(ID_CE_SUBJECT_ALT_NAME, false, &san))).unwrap(), [eid]);
    }

    #[test]
    fn other_names_are_not_node_ids() {
        // A dNSName and an otherName of another type (UPN, 1.3.6.1.4.1.311.20.2.3).
        let mut names = Vec::new();
        put(&mut names, 0x82, b"camp.example");
        let mut other = Vec::new();
        put(&mut other, OID, &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x14, 0x02, 0x03]);
        let mut explicit = Vec::new();
        put(&mut explicit, 0x0c, b"user@camp");
        put(&mut other, CONTEXT_0, &explicit);
        put(&mut names, CONTEXT_0, &other);
        let mut san = Vec::new();
        put(&mut san, SEQUENCE, &names);
        assert!(bundle_eids(&cert_with(&extension(ID_CE_SUBJECT_ALT_NAME, false, &san))).unwrap().is_empty());
        // No extensions at all.
        assert!(bundle_eids(&cert_with(&[])).unwrap().is_empty());
    }

    #[test]
    fn a_utf8_bundle_eid_is_refused() {
        let mut other = Vec::new();
        put(&mut other, OID, ID_ON_BUNDLE_EID);
        let mut explicit = Vec::new();
        put(&mut explicit, 0x0c, b"dtn://camp/"); // UTF8String, not IA5String
        put(&mut other, CONTEXT_0, &explicit);
        let mut names = Vec::new();
        put(&mut names, CONTEXT_0, &other);
        let mut san = Vec::new();
        put(&mut san, SEQUENCE, &names);
        let cert = cert_with(&extension(ID_CE_SUBJECT_ALT_NAME, false, &san));
        assert_eq!(bundle_eids(&cert), Err(EidError::NotIa5));
        assert_eq!(subject_alt_name(&["dtn://caf\u{e9}/"]), Err(EidError::NotIa5));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let san = subject_alt_name(&["dtn://camp/"]).unwrap();
        let cert = cert_with(&extension(ID_CE_SUBJECT_ALT_NAME, false, &san));
        for n in 0..cert.len() {
            assert_eq!(bundle_eids(&cert[..n]), Err(EidError::Malformed), "cut at {n}");
        }
        // A length beyond the input, and a five-octet length.
        assert_eq!(bundle_eids(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), Err(EidError::Malformed));
        assert_eq!(bundle_eids(&[0x30, 0x85, 0, 0, 0, 0, 1, 0]), Err(EidError::Malformed));
    }
}
