//! BPSec throughput, in bundles per second, for payloads of 1 KiB and 1 MiB:
//! what a node pays to add a security block to a bundle (decode, compute,
//! re-encode, as ferryd does for what it originates) and to check it (decode,
//! verify or decrypt), per context:
//!
//! - Ferry's Ed25519 signature context (end-to-end source authentication);
//! - BIB-HMAC-SHA2 (RFC 9173 §3), HMAC 256/256 with the default scope;
//! - BCB-AES-GCM (RFC 9173 §4), A256GCM with the content key wrapped under
//!   the key-encryption key (AES-KW), as ferryd encrypts.
//!
//! Each security operation covers the payload block, with every scope flag.
//!
//! `cargo bench -p ferry-core --bench bpsec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ed25519_dalek::SigningKey;
use ferry_core::bpsec::{
    self, scope_flags, AesVariant, Confidentiality, Integrity, Key, Keys, NewBlock, ShaVariant, Status,
};
use ferry_core::bundle::{CrcType, CreationTimestamp};
use ferry_core::codec::{self, BundleBuilder};
use ferry_core::Eid;

const HMAC_KEY: [u8; 32] = [0x1a; 32];
const KEK: [u8; 32] = [0x2b; 32];
const CEK: [u8; 32] = [0x3c; 32];
const IV: [u8; 12] = [0x4d; 12];

fn plain(payload: usize) -> Vec<u8> {
    BundleBuilder::new(
        "dtn://src/app".parse().unwrap(),
        "dtn://dst/inbox".parse().unwrap(),
        CreationTimestamp { time: 800_000_000_000, seq: 1 },
        3_600_000,
    )
    .crc_type(CrcType::Crc32c)
    .build(&vec![0x5a; payload])
}

fn bench(c: &mut Criterion) {
    let source: Eid = "dtn://src/".parse().unwrap();
    let signer = SigningKey::from_bytes(&[7; 32]);
    let keys = Keys::new()
        .with_ed25519(source.clone(), signer.verifying_key())
        .with_hmac(source.clone(), &HMAC_KEY)
        .with_aes(source.clone(), &KEK);
    let ed25519 = Integrity::Ed25519 { scope: scope_flags::ALL, key: &signer };
    let hmac =
        Integrity::HmacSha2 { variant: ShaVariant::Sha256, scope: scope_flags::ALL, key: Key::Direct(&HMAC_KEY) };
    let gcm = Confidentiality {
        variant: AesVariant::A256Gcm,
        scope: scope_flags::ALL,
        iv: &IV,
        key: Key::Wrapped { kek: &KEK, cek: &CEK },
    };
    let new = NewBlock::default();

    for (size_name, size) in [("1KiB", 1024), ("1MiB", 1 << 20)] {
        let bytes = plain(size);
        let mut g = c.benchmark_group(format!("bpsec {size_name}"));
        g.throughput(Throughput::Elements(1));
        if size > 64 * 1024 {
            g.sample_size(20);
        }

        let sign = |ctx: &Integrity<'_>, bytes: &[u8]| {
            let b = codec::decode(bytes).unwrap();
            bpsec::sign(bytes, &b, &[1], &source, ctx, &new).unwrap()
        };
        let verify = |bytes: &[u8]| {
            let b = codec::decode(bytes).unwrap();
            let outcomes = bpsec::verify(bytes, &b, &keys).unwrap();
            assert_eq!(outcomes.len(), 1);
            assert_eq!(outcomes[0].status, Status::Verified);
        };
        for (name, ctx) in [("ed25519", &ed25519), ("bib-hmac-sha256", &hmac)] {
            let signed = sign(ctx, &bytes);
            verify(&signed);
            g.bench_function(format!("{name} sign"), |b| b.iter(|| sign(ctx, black_box(&bytes))));
            g.bench_function(format!("{name} verify"), |b| b.iter(|| verify(black_box(&signed))));
        }

        let encrypt = |bytes: &[u8]| {
            let b = codec::decode(bytes).unwrap();
            bpsec::encrypt(bytes, &b, &[1], &source, &gcm, &new).unwrap()
        };
        let decrypt = |bytes: &[u8]| {
            let b = codec::decode(bytes).unwrap();
            bpsec::decrypt(bytes, &b, &keys).unwrap().bytes.unwrap()
        };
        let sealed = encrypt(&bytes);
        assert_ne!(sealed, bytes);
        assert_eq!(decrypt(&sealed), bytes, "decryption gives the plain bundle back");
        g.bench_function("bcb-aes256-gcm encrypt", |b| b.iter(|| encrypt(black_box(&bytes))));
        g.bench_function("bcb-aes256-gcm decrypt", |b| b.iter(|| decrypt(black_box(&sealed))));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
