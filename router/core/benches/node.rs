//! Node processing: bundles received from a peer, validated, persisted in the
//! in-memory store and delivered to a registered endpoint, per second.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ferry_core::bundle::CreationTimestamp;
use ferry_core::codec::BundleBuilder;
use ferry_core::driver::SyncDriver;
use ferry_core::node::{Node, NodeConfig};
use ferry_core::router::{Epidemic, PeerId};
use ferry_core::store::MemStore;
use ferry_core::Eid;

const T0: u64 = 800_000_000_000;

fn bundles(n: u64, payload: usize) -> Vec<Vec<u8>> {
    let src: Eid = "dtn://src/app".parse().unwrap();
    let dst: Eid = "dtn://bench/inbox".parse().unwrap();
    (0..n)
        .map(|i| {
            BundleBuilder::new(src.clone(), dst.clone(), CreationTimestamp { time: T0, seq: i }, 3_600_000)
                .hop_limit(32)
                .build(&vec![0x5a; payload])
        })
        .collect()
}

fn receive_and_deliver(c: &mut Criterion) {
    const N: u64 = 1_000;
    let mut g = c.benchmark_group("node");
    for payload in [100usize, 1024] {
        let input = bundles(N, payload);
        g.throughput(Throughput::Elements(N));
        g.bench_function(format!("receive+persist+deliver {payload} B x{N}"), |b| {
            b.iter_batched(
                || {
                    let node = Node::new(NodeConfig::new("dtn://bench/".parse().unwrap(), Box::new(Epidemic)));
                    let mut d = SyncDriver::new(node, MemStore::new());
                    d.node.register(T0, "dtn://bench/inbox".parse().unwrap());
                    (d, input.clone())
                },
                |(mut d, input)| {
                    for bytes in input {
                        d.node.handle_received(T0, bytes, Some(PeerId(1))).unwrap();
                        d.run(T0);
                    }
                    assert_eq!(d.delivered.len() as u64, N);
                    d
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, receive_and_deliver);
criterion_main!(benches);
