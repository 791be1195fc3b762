//! Decode + validate throughput: ferry's `codec::decode` against bp7 0.12
//! (`Bundle::try_from`, alone and followed by `validate`, which is where bp7
//! checks CRCs) on the same bytes: a bundle with a 1 KiB payload, a bundle age
//! block and CRC-32C on every block, built once by ferry's `BundleBuilder` and
//! once by bp7.
//!
//! `cargo bench -p ferry-core --bench decode -- --warm-up-time 1 --measurement-time 3`

use std::convert::TryFrom;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferry_core::bundle::{CrcType, CreationTimestamp};
use ferry_core::codec::{self, BundleBuilder};

const PAYLOAD: [u8; 1024] = [0x5a; 1024];

fn ferry_bytes() -> Vec<u8> {
    BundleBuilder::new(
        "dtn://node1/123456".parse().unwrap(),
        "dtn://node2/inbox".parse().unwrap(),
        CreationTimestamp { time: 780_000_000_000, seq: 0 },
        3_600_000,
    )
    .crc_type(CrcType::Crc32c)
    .bundle_age(0)
    .build(&PAYLOAD)
}

/// The shape of bp7's own `helpers::get_bench_bundle`, with a 1 KiB payload.
fn bp7_bytes() -> Vec<u8> {
    use bp7::flags::BlockControlFlags;
    let dst = bp7::EndpointID::with_dtn("//node2/inbox").unwrap();
    let src = bp7::EndpointID::with_dtn("//node1/123456").unwrap();
    let primary = bp7::primary::PrimaryBlockBuilder::default()
        .destination(dst)
        .source(src.clone())
        .report_to(src)
        .creation_timestamp(bp7::CreationTimestamp::with_time_and_seq(780_000_000_000, 0))
        .lifetime(std::time::Duration::from_secs(3600))
        .build()
        .unwrap();
    let blocks = vec![
        bp7::canonical::new_bundle_age_block(2, BlockControlFlags::empty(), 0),
        bp7::canonical::new_payload_block(BlockControlFlags::empty(), PAYLOAD.to_vec()),
    ];
    let mut b = bp7::Bundle::new(primary, blocks);
    b.set_crc(bp7::crc::CRC_32);
    b.to_cbor()
}

fn decode(c: &mut Criterion) {
    for (kind, bytes) in [("ferry-built", ferry_bytes()), ("bp7-built", bp7_bytes())] {
        codec::decode(&bytes).expect("ferry decodes it");
        bp7::Bundle::try_from(bytes.as_slice()).unwrap().validate().expect("bp7 decodes it");

        let mut g = c.benchmark_group(format!("decode 1KiB crc32c/{kind}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("ferry decode", |b| b.iter(|| codec::decode(black_box(&bytes)).unwrap()));
        g.bench_function("bp7 try_from", |b| b.iter(|| bp7::Bundle::try_from(black_box(bytes.as_slice())).unwrap()));
        g.bench_function("bp7 try_from+validate", |b| {
            b.iter(|| {
                let bundle = bp7::Bundle::try_from(black_box(bytes.as_slice())).unwrap();
                bundle.validate().unwrap();
                bundle
            })
        });
        g.finish();
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
