use super::*;
use crate::bundle::CreationTimestamp;
use crate::codec::{decode, BundleBuilder};

fn eid(s: &str) -> Eid {
    s.parse().unwrap()
}

/// A bundle from dtn://src/app with a hop count block (2), an extension
/// block (3) and a payload, every block with CRC-32C.
fn bundle() -> Vec<u8> {
    BundleBuilder::new(
        eid("dtn://src/app"),
        eid("dtn://dst/inbox"),
        CreationTimestamp { time: 700_000_000_000, seq: 1 },
        3_600_000,
    )
    .hop_limit(30)
    .extension_block(200, 0, vec![1, 2, 3])
    .build(b"the payload, to be protected")
}

const HMAC_KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const AES_KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const IV: &[u8] = b"abcdefghijkl";

fn src() -> Eid {
    eid("dtn://src/")
}

fn hmac_ctx(key: &[u8]) -> Integrity<'_> {
    Integrity::HmacSha2 { variant: ShaVariant::Sha256, scope: scope_flags::ALL, key: Key::Direct(key) }
}

fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn signed(bytes: &[u8], ctx: &Integrity<'_>) -> Vec<u8> {
    let out = sign(bytes, &decode(bytes).unwrap(), &[0, 1], &src(), ctx, &NewBlock::default()).unwrap();
    decode(&out).unwrap();
    out
}

/// Flips one byte of the payload data and fixes the payload's CRC, as an
/// attacker on the path would.
fn tamper_payload(bytes: &[u8]) -> Vec<u8> {
    let b = decode(bytes).unwrap();
    let p = b.payload();
    let mut data = bytes[p.data.clone()].to_vec();
    data[3] ^= 0x01;
    let mut out = bytes[..p.range.start].to_vec();
    encode_canonical_block(&mut out, p.block_type, p.number, p.flags, p.crc_type, &data);
    out.extend_from_slice(&bytes[p.range.end..]);
    decode(&out).unwrap();
    out
}

#[test]
fn hmac_signature_verifies_and_detects_tampering() {
    let bytes = signed(&bundle(), &hmac_ctx(HMAC_KEY));
    let keys = Keys::new().with_hmac(src(), HMAC_KEY);
    let ok = verify(&bytes, &decode(&bytes).unwrap(), &keys).unwrap();
    assert_eq!(ok.iter().filter(|o| o.status == Status::Verified).count(), 2);

    let bad = tamper_payload(&bytes);
    let err = verify(&bad, &decode(&bad).unwrap(), &keys).unwrap_err();
    assert_eq!(err, BpsecError::IntegrityCheckFailed { bib: 4, target: 1, security_source: src() });
    assert_eq!(err.to_string(), "integrity check of block 1 by BIB 4 from dtn://src/ failed");
    assert_eq!(err.reason_code(), 15);

    let wrong = Keys::new().with_hmac(src(), b"another key");
    assert!(matches!(
        verify(&bytes, &decode(&bytes).unwrap(), &wrong),
        Err(BpsecError::IntegrityCheckFailed { target: 0, .. })
    ));
    // No key for this source: nothing checked, nothing failed.
    let none = verify(&bytes, &decode(&bytes).unwrap(), &Keys::new().with_hmac(eid("dtn://other/"), HMAC_KEY)).unwrap();
    assert!(none.iter().all(|o| o.status == Status::NoKey));
}

#[test]
fn wrapped_hmac_key_verifies_with_the_kek_only() {
    let kek = [7u8; 16];
    let ctx = Integrity::HmacSha2 {
        variant: ShaVariant::Sha512,
        scope: scope_flags::ALL,
        key: Key::Wrapped { kek: &kek, cek: &[9u8; 32] },
    };
    let bytes = signed(&bundle(), &ctx);
    let ok = verify(&bytes, &decode(&bytes).unwrap(), &Keys::new().with_hmac(src(), &kek)).unwrap();
    assert!(ok.iter().all(|o| o.status == Status::Verified));
    let err = verify(&bytes, &decode(&bytes).unwrap(), &Keys::new().with_hmac(src(), &[8u8; 16])).unwrap_err();
    assert_eq!(err, BpsecError::KeyUnwrap { block: 4 });
}

#[test]
fn ed25519_signature_authenticates_the_source() {
    let key = signing_key(1);
    let bytes = signed(&bundle(), &Integrity::Ed25519 { scope: scope_flags::ALL, key: &key });
    let b = decode(&bytes).unwrap();
    let asb = Asb::parse(&bytes[b.block(4).unwrap().data.clone()]).unwrap();
    assert_eq!(asb.context_id, ED25519_CONTEXT_ID);
    assert_eq!(asb.parameter(ED25519_SCOPE_PARAM).and_then(SecurityItem::as_uint), Some(7));
    assert_eq!(asb.result(1, ED25519_SIGNATURE_RESULT).and_then(SecurityItem::as_bytes).map(<[u8]>::len), Some(64));

    let keys = Keys::new().with_ed25519(src(), key.verifying_key());
    let ok = verify(&bytes, &b, &keys).unwrap();
    assert_eq!(ok.iter().filter(|o| o.status == Status::Verified).count(), 2);

    let bad = tamper_payload(&bytes);
    assert!(matches!(
        verify(&bad, &decode(&bad).unwrap(), &keys),
        Err(BpsecError::IntegrityCheckFailed { target: 1, .. })
    ));
    // Signed by someone else than the key we hold for this source.
    let impostor = Keys::new().with_ed25519(src(), signing_key(2).verifying_key());
    assert!(matches!(verify(&bytes, &b, &impostor), Err(BpsecError::IntegrityCheckFailed { .. })));
    // The same signature, claimed by another source, finds no key.
    let elsewhere = Keys::new().with_ed25519(eid("dtn://other/"), key.verifying_key());
    assert!(verify(&bytes, &b, &elsewhere).unwrap().iter().all(|o| o.status == Status::NoKey));
}

#[test]
fn scope_covers_the_headers_it_names() {
    // Full scope: changing the payload block's flags breaks the signature.
    let key = signing_key(3);
    let bytes = signed(&bundle(), &Integrity::Ed25519 { scope: scope_flags::ALL, key: &key });
    let keys = Keys::new().with_ed25519(src(), key.verifying_key());
    let b = decode(&bytes).unwrap();
    let p = b.payload();
    let mut out = bytes[..p.range.start].to_vec();
    encode_canonical_block(&mut out, p.block_type, p.number, 0x01, p.crc_type, &bytes[p.data.clone()]);
    out.extend_from_slice(&bytes[p.range.end..]);
    assert!(verify(&out, &decode(&out).unwrap(), &keys).is_err());
    // Scope 0 covers the data alone: the same change passes.
    let bytes = sign(
        &bundle(),
        &decode(&bundle()).unwrap(),
        &[1],
        &src(),
        &Integrity::Ed25519 { scope: 0, key: &key },
        &NewBlock::default(),
    )
    .unwrap();
    let b = decode(&bytes).unwrap();
    let p = b.payload();
    let mut out = bytes[..p.range.start].to_vec();
    encode_canonical_block(&mut out, p.block_type, p.number, 0x01, p.crc_type, &bytes[p.data.clone()]);
    out.extend_from_slice(&bytes[p.range.end..]);
    assert!(verify(&out, &decode(&out).unwrap(), &keys).is_ok());
}

#[test]
fn encryption_round_trips_and_detects_tampering() {
    let plain = bundle();
    let ctx =
        Confidentiality { variant: AesVariant::A256Gcm, scope: scope_flags::ALL, iv: IV, key: Key::Direct(AES_KEY) };
    let bytes = encrypt(&plain, &decode(&plain).unwrap(), &[1], &src(), &ctx, &NewBlock::default()).unwrap();
    let b = decode(&bytes).unwrap();
    assert_ne!(&bytes[b.payload().data.clone()], b"the payload, to be protected");
    assert_eq!(b.payload().data.len(), b"the payload, to be protected".len());
    // RFC 9172 §3.8: a BCB over the payload is replicated in every fragment.
    assert_eq!(b.block(4).unwrap().flags & block_flags::REPLICATE_IN_FRAGMENTS, 1);

    let keys = Keys::new().with_aes(src(), AES_KEY);
    let d = decrypt(&bytes, &b, &keys).unwrap();
    assert_eq!(d.bytes.unwrap(), plain);

    let bad = tamper_payload(&bytes);
    assert_eq!(
        decrypt(&bad, &decode(&bad).unwrap(), &keys).unwrap_err(),
        BpsecError::DecryptionFailed { bcb: 4, target: 1, security_source: src() }
    );
    let wrong = Keys::new().with_aes(src(), &[0u8; 32]);
    assert!(matches!(decrypt(&bytes, &b, &wrong), Err(BpsecError::DecryptionFailed { .. })));
    // Without a key, nothing happens.
    let none = decrypt(&bytes, &b, &Keys::new()).unwrap();
    assert!(none.bytes.is_none());
    assert_eq!(none.outcomes[0].status, Status::NoKey);
}

#[test]
fn rfc9172_rules_on_targets() {
    let plain = bundle();
    let b = decode(&plain).unwrap();
    let ctx = hmac_ctx(HMAC_KEY);
    let new = NewBlock::default();
    assert_eq!(sign(&plain, &b, &[], &src(), &ctx, &new), Err(BpsecError::NoTargets));
    assert_eq!(sign(&plain, &b, &[1, 1], &src(), &ctx, &new), Err(BpsecError::DuplicateTarget { target: 1 }));
    assert_eq!(sign(&plain, &b, &[9], &src(), &ctx, &new), Err(BpsecError::NoSuchBlock { number: 9 }));
    let taken = NewBlock { number: Some(2), ..new };
    assert_eq!(sign(&plain, &b, &[1], &src(), &ctx, &taken), Err(BpsecError::BlockNumberUnavailable { number: 2 }));

    let once = sign(&plain, &b, &[1], &src(), &ctx, &new).unwrap();
    let ob = decode(&once).unwrap();
    assert_eq!(sign(&once, &ob, &[1], &src(), &ctx, &new), Err(BpsecError::AlreadySigned { target: 1, bib: 4 }));
    assert_eq!(sign(&once, &ob, &[4], &src(), &ctx, &new), Err(BpsecError::TargetIsSecurityBlock { target: 4 }));

    let gcm = Confidentiality { variant: AesVariant::A128Gcm, scope: 0, iv: IV, key: Key::Direct(&AES_KEY[..16]) };
    assert_eq!(encrypt(&plain, &b, &[0], &src(), &gcm, &new), Err(BpsecError::PrimaryNotEncryptable));
    // A signed payload is encrypted together with its BIB, or not at all.
    assert_eq!(encrypt(&once, &ob, &[1], &src(), &gcm, &new), Err(BpsecError::BibNotEncrypted { target: 1, bib: 4 }));
    let both = encrypt(&once, &ob, &[4, 1], &src(), &gcm, &new).unwrap();
    let bb = decode(&both).unwrap();
    assert_eq!(encrypt(&both, &bb, &[1], &src(), &gcm, &new), Err(BpsecError::AlreadyEncrypted { target: 1, bcb: 5 }));
    assert_eq!(sign(&both, &bb, &[1], &src(), &ctx, &new), Err(BpsecError::AlreadyEncrypted { target: 1, bcb: 5 }));

    let short_iv = Confidentiality { iv: b"short", ..gcm };
    assert_eq!(encrypt(&plain, &b, &[1], &src(), &short_iv, &new), Err(BpsecError::IvLength { len: 5 }));
    let short_key = Confidentiality { key: Key::Direct(b"short"), ..gcm };
    assert_eq!(encrypt(&plain, &b, &[1], &src(), &short_key, &new), Err(BpsecError::KeyLength { len: 5 }));
}

/// A bundle with a BIB of a context this node does not know, with `flags`.
fn unknown_context_bundle(flags: u64) -> Vec<u8> {
    let asb = Asb {
        targets: vec![1],
        context_id: -7,
        flags: 0,
        source: src(),
        parameters: vec![],
        results: vec![vec![SecurityItem::bytes(1, b"opaque")]],
    };
    BundleBuilder::new(eid("dtn://src/app"), eid("dtn://dst/inbox"), CreationTimestamp { time: 1, seq: 1 }, 1000)
        .extension_block(block_types::BIB, flags, asb.to_bytes())
        .build(b"x")
}

#[test]
fn unprocessable_security_blocks_follow_their_flags() {
    let opts = DecodeOptions::strict();
    for (flags, discard, delete) in [
        (0, false, false),
        (block_flags::DISCARD_BLOCK_IF_UNPROCESSABLE, true, false),
        (block_flags::DELETE_BUNDLE_IF_UNPROCESSABLE | block_flags::DISCARD_BLOCK_IF_UNPROCESSABLE, false, true),
    ] {
        let bytes = unknown_context_bundle(flags);
        let p = process(&bytes, &decode(&bytes).unwrap(), Role::Forwarder, &Keys::new(), &opts).unwrap();
        assert_eq!(p.outcomes[0].status, Status::UnknownContext);
        assert_eq!(p.discard_blocks == [2], discard, "flags {flags:#x}");
        assert_eq!(p.delete_bundle, delete, "flags {flags:#x}");
    }
    // A known context without a key is no reason to drop anything on the way.
    let bytes = signed(&bundle(), &hmac_ctx(HMAC_KEY));
    let p = process(&bytes, &decode(&bytes).unwrap(), Role::Forwarder, &Keys::new(), &opts).unwrap();
    assert!(p.discard_blocks.is_empty() && !p.delete_bundle);
    // At the destination, a BCB it cannot decrypt follows its flags.
    let plain = bundle();
    let gcm = Confidentiality { variant: AesVariant::A256Gcm, scope: 7, iv: IV, key: Key::Direct(AES_KEY) };
    let new = NewBlock { flags: block_flags::DELETE_BUNDLE_IF_UNPROCESSABLE, ..NewBlock::default() };
    let bytes = encrypt(&plain, &decode(&plain).unwrap(), &[1], &src(), &gcm, &new).unwrap();
    let b = decode(&bytes).unwrap();
    assert!(!process(&bytes, &b, Role::Forwarder, &Keys::new(), &opts).unwrap().delete_bundle);
    assert!(process(&bytes, &b, Role::Destination, &Keys::new(), &opts).unwrap().delete_bundle);
    let p = process(&bytes, &b, Role::Destination, &Keys::new().with_aes(src(), AES_KEY), &opts).unwrap();
    assert_eq!(p.decrypted.unwrap().0, plain);
}

#[test]
fn malformed_security_blocks_are_errors_not_panics() {
    let bytes = signed(&bundle(), &hmac_ctx(HMAC_KEY));
    let b = decode(&bytes).unwrap();
    let bib = b.block(4).unwrap();
    let data = &bytes[bib.data.clone()];
    let keys = Keys::new().with_hmac(src(), HMAC_KEY);
    // Every truncation of the ASB (the block re-encoded with a valid CRC).
    for cut in 0..data.len() {
        let mut out = bytes[..bib.range.start].to_vec();
        encode_canonical_block(&mut out, bib.block_type, bib.number, bib.flags, bib.crc_type, &data[..cut]);
        out.extend_from_slice(&bytes[bib.range.end..]);
        let ob = decode(&out).unwrap();
        let err = verify(&out, &ob, &keys).unwrap_err();
        assert!(matches!(err, BpsecError::Asb { block: 4, .. }), "cut {cut}: {err}");
        assert_eq!(err.reason_code(), 8);
        assert!(process(&out, &ob, Role::Destination, &keys, &DecodeOptions::strict()).is_err());
    }
    // Every single-byte corruption: an error or a clean verdict, never a panic.
    for i in 0..data.len() {
        for x in [0x01, 0x80, 0xff] {
            let mut d = data.to_vec();
            d[i] ^= x;
            let mut out = bytes[..bib.range.start].to_vec();
            encode_canonical_block(&mut out, bib.block_type, bib.number, bib.flags, bib.crc_type, &d);
            out.extend_from_slice(&bytes[bib.range.end..]);
            let ob = decode(&out).unwrap();
            let _ = verify(&out, &ob, &keys);
            let _ = decrypt(&out, &ob, &keys);
        }
    }
}

#[test]
fn sign_then_encrypt_then_decrypt_then_verify() {
    let key = signing_key(5);
    let plain = bundle();
    let signed = signed(&plain, &Integrity::Ed25519 { scope: scope_flags::ALL, key: &key });
    let sb = decode(&signed).unwrap();
    let gcm = Confidentiality {
        variant: AesVariant::A256Gcm,
        scope: 7,
        iv: IV,
        key: Key::Wrapped { kek: &[3u8; 32], cek: AES_KEY },
    };
    let both = encrypt(&signed, &sb, &[4, 1], &src(), &gcm, &NewBlock::default()).unwrap();
    let keys = Keys::new().with_ed25519(src(), key.verifying_key()).with_aes(src(), &[3u8; 32]);
    let p = process(&both, &decode(&both).unwrap(), Role::Destination, &keys, &DecodeOptions::strict()).unwrap();
    assert_eq!(p.decrypted.as_ref().unwrap().0, signed);
    let statuses: Vec<Status> = p.outcomes.iter().map(|o| o.status).collect();
    assert_eq!(statuses, [Status::Decrypted, Status::Decrypted, Status::Verified, Status::Verified]);
}

/// Decoding a secured bundle and encoding it again for forwarding, with
/// nothing that changes, gives back the very same bytes.
#[test]
fn secured_bundle_decode_encode_is_byte_identical() {
    use crate::codec::{rewrite_for_forward, ForwardEdit};
    let plain = BundleBuilder::new(
        eid("dtn://src/app"),
        eid("dtn://dst/inbox"),
        CreationTimestamp { time: 700_000_000_000, seq: 1 },
        3_600_000,
    )
    .previous_node(eid("dtn://relay/"))
    .hop_limit(30)
    .build(b"payload");
    let key = signing_key(9);
    let signed = signed(&plain, &Integrity::Ed25519 { scope: scope_flags::ALL, key: &key });
    let gcm = Confidentiality { variant: AesVariant::A256Gcm, scope: 7, iv: IV, key: Key::Direct(AES_KEY) };
    let bytes = encrypt(&signed, &decode(&signed).unwrap(), &[4, 1], &src(), &gcm, &NewBlock::default()).unwrap();
    let b = decode(&bytes).unwrap();
    let edit = ForwardEdit {
        previous_node: eid("dtn://relay/"),
        bundle_age_ms: None,
        hop_count: b.hop_count,
        discard_blocks: vec![],
        copies: None,
    };
    assert_eq!(rewrite_for_forward(&bytes, &b, &edit), bytes);
}
