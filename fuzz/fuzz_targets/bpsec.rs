//! BPSec (RFC 9172/9173): abstract security block parsing, and verify /
//! decrypt / process on decoded bundles.
//!
//! Input: one control byte, then bytes that are tried both as an ASB (the
//! block-type-specific data of a BIB or BCB) and as a bundle. Properties:
//! - `Asb::parse` then `emit` parses back to the same ASB, and emitting is a
//!   fixed point (the canonical form);
//! - on any bundle that decodes, verify, decrypt and process (both roles)
//!   never panic, with the RFC 9173 Appendix A keys held for every source so
//!   that the seeds from those vectors get through the cryptography;
//! - signing the payload with BIB-HMAC-SHA2 gives a bundle that decodes and
//!   verifies; encrypting it with BCB-AES-GCM gives one that decrypts back to
//!   the original payload.
#![no_main]

use ferry_core::bpsec::{
    self, AesVariant, Asb, Confidentiality, Integrity, Key, KeyLookup, NewBlock, Role, ShaVariant, Status,
};
use ferry_core::bundle::{block_types, Bundle};
use ferry_core::codec::{self, DecodeOptions};
use ferry_core::Eid;
use libfuzzer_sys::fuzz_target;

const A1_KEY: &[u8] = &[0x1a, 0x2b, 0x1a, 0x2b, 0x1a, 0x2b, 0x1a, 0x2b, 0x1a, 0x2b, 0x1a, 0x2b, 0x1a, 0x2b, 0x1a, 0x2b];
const A2_KEK: &[u8] = b"abcdefghijklmnop";
const A2_CEK: &[u8] = b"qwertyuiopasdfgh";
const A4_KEY: &[u8] = b"qwertyuiopasdfghqwertyuiopasdfgh";
const IV: &[u8] = b"Twelve121212";

/// The same keys for every security source.
struct AnySource {
    aes: &'static [u8],
}

impl KeyLookup for AnySource {
    fn hmac_key(&self, _source: &Eid) -> Option<&[u8]> {
        Some(A1_KEY)
    }
    fn aes_key(&self, _source: &Eid) -> Option<&[u8]> {
        Some(self.aes)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, bytes)) = data.split_first() else { return };
    check_asb(bytes);

    let options = DecodeOptions::strict().allow_unprotected_primary(true).allow_missing_bundle_age(true);
    let Ok(bundle) = codec::decode_with(bytes, &options) else { return };
    let keys = AnySource { aes: [A2_KEK, A2_CEK, A4_KEY][usize::from(control % 3)] };
    let _ = bpsec::verify(bytes, &bundle, &keys);
    if let Ok(d) = bpsec::decrypt(bytes, &bundle, &keys) {
        if let Some(plain) = d.bytes {
            let _ = codec::decode_with(&plain, &options);
        }
    }
    for role in [Role::Forwarder, Role::Destination] {
        let _ = bpsec::process(bytes, &bundle, role, &keys, &options);
    }
    sign_and_encrypt(bytes, &bundle, &options, control);
});

fn check_asb(bytes: &[u8]) {
    let Ok(asb) = Asb::parse(bytes) else { return };
    let emitted = asb.to_bytes();
    match Asb::parse(&emitted) {
        Ok(again) => assert_eq!(again, asb, "an emitted ASB parses to another ASB"),
        Err(e) => panic!("an emitted ASB does not parse: {e}"),
    }
    assert_eq!(Asb::parse(&emitted).map(|a| a.to_bytes()).ok(), Some(emitted));
}

fn payload<'a>(bytes: &'a [u8], b: &Bundle) -> &'a [u8] {
    bytes.get(b.payload().data.clone()).unwrap_or_default()
}

fn sign_and_encrypt(bytes: &[u8], bundle: &Bundle, options: &DecodeOptions, control: u8) {
    // Only unsecured bundles: decrypt undoes every BCB it holds a key for,
    // and the fuzzer's own BCBs do not authenticate.
    if bundle.blocks.iter().any(|b| matches!(b.block_type, block_types::BIB | block_types::BCB)) {
        return;
    }
    let source = Eid::ipn_node(5);
    let keys = AnySource { aes: A2_KEK };
    let variant = [ShaVariant::Sha256, ShaVariant::Sha384, ShaVariant::Sha512][usize::from(control >> 6) % 3];
    let scope = u64::from((control >> 2) & 7);
    let sign = Integrity::HmacSha2 { variant, scope, key: Key::Direct(A1_KEY) };
    // Refusals (already signed, encrypted, ...) are fine; what is produced must hold.
    if let Ok(signed) = bpsec::sign(bytes, bundle, &[1], &source, &sign, &NewBlock::default()) {
        let b = match codec::decode_with(&signed, options) {
            Ok(b) => b,
            Err(e) => panic!("a signed bundle does not decode: {e}"),
        };
        let outcomes = match bpsec::verify(&signed, &b, &keys) {
            Ok(o) => o,
            Err(e) => panic!("a bundle just signed does not verify: {e}"),
        };
        assert!(outcomes.iter().any(|o| o.target == Some(1) && o.status == Status::Verified));
    }
    let variant = if control & 1 == 0 { AesVariant::A128Gcm } else { AesVariant::A256Gcm };
    let key = if control & 1 == 0 { Key::Wrapped { kek: A2_KEK, cek: A2_CEK } } else { Key::Direct(A4_KEY) };
    let aes = if control & 1 == 0 { A2_KEK } else { A4_KEY };
    let encrypt = Confidentiality { variant, scope, iv: IV, key };
    if let Ok(sealed) = bpsec::encrypt(bytes, bundle, &[1], &source, &encrypt, &NewBlock::default()) {
        let b = match codec::decode_with(&sealed, options) {
            Ok(b) => b,
            Err(e) => panic!("an encrypted bundle does not decode: {e}"),
        };
        let d = match bpsec::decrypt(&sealed, &b, &AnySource { aes }) {
            Ok(d) => d,
            Err(e) => panic!("a bundle just encrypted does not decrypt: {e}"),
        };
        let plain = d.bytes.unwrap_or_default();
        match codec::decode_with(&plain, options) {
            Ok(p) => assert_eq!(payload(&plain, &p), payload(bytes, bundle), "decryption changed the payload"),
            Err(e) => panic!("a decrypted bundle does not decode: {e}"),
        }
    }
}
