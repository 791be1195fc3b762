//! Durable put throughput: 100 B, 10 KiB and 1 MiB bundles, from one thread
//! and from 16 (where group commit shares each sync among the writers).
//!
//! `relay_cycle`: what a relay does with small bundles, stored in a batch
//! and deleted soon after (once forwarded), 128 at a time.
//!
//! `cargo bench -p ferry-store --bench put`; criterion reports `thrpt` in
//! bundles per second. Every put is synced: the numbers are bounded by the
//! disk's fsync latency, not by RocksDB.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferry_core::bundle::{BundleId, BundleMeta, CreationTimestamp};
use ferry_core::eid::Eid;
use ferry_core::store::Store;
use ferry_store::RocksStore;

/// IDs are reused modulo this, so the live data stays bounded however long
/// criterion runs (a put of a live ID replaces it).
const LIVE_IDS: u64 = 256;

fn meta(seq: u64) -> BundleMeta {
    BundleMeta {
        id: BundleId {
            source: Eid::Dtn { node: "bench".to_owned(), demux: String::new() },
            creation: CreationTimestamp { time: 700_000_000_000, seq: seq % LIVE_IDS },
            fragment: None,
        },
        destination: Eid::Dtn { node: "dst".to_owned(), demux: "in".to_owned() },
        report_to: Eid::Null,
        flags: 0,
        lifetime_ms: 86_400_000,
        expires_at: 700_086_400_000 + seq,
        received_at: 700_000_000_000,
        age_at_receipt_ms: None,
        hop_count: None,
        previous_node: None,
        size: 0,
        payload_len: 0,
        total_adu_len: None,
        forwarded_to: vec![],
        discard_blocks: vec![],
        copies: None,
    }
}

/// `iters` puts spread over `threads` threads; the wall time they took.
fn run(store: &RocksStore, next: &AtomicU64, bytes: &[u8], threads: u64, iters: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let n = iters / threads + u64::from(t < iters % threads);
            scope.spawn(move || {
                for _ in 0..n {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    store.put(&meta(seq), bytes).expect("bench put");
                }
            });
        }
    });
    start.elapsed()
}

fn durable_puts(c: &mut Criterion) {
    for (label, size) in [("100B", 100usize), ("10KiB", 10 << 10), ("1MiB", 1 << 20)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RocksStore::open(dir.path()).expect("open store");
        let bytes = vec![0x5A; size];
        let next = AtomicU64::new(0);
        let mut group = c.benchmark_group(format!("durable_put/{label}"));
        group.throughput(Throughput::Elements(1));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(3));
        for threads in [1u64, 16] {
            group.bench_function(BenchmarkId::from_parameter(format!("{threads}_threads")), |b| {
                b.iter_custom(|iters| run(&store, &next, &bytes, threads, iters))
            });
        }
        group.finish();
        let c = store.commit_stats();
        println!("durable_put/{label}: {} puts in {} synced batches", c.writes, c.batches);
    }
}

/// `rounds` rounds of: 128 fresh 100 B bundles stored in one durable batch,
/// then deleted in another.
fn relay_rounds(store: &RocksStore, next: &AtomicU64, rounds: u64) -> Duration {
    let bytes = vec![0x5A; 100];
    let start = Instant::now();
    for _ in 0..rounds {
        let metas: Vec<BundleMeta> = (0..128)
            .map(|_| {
                let mut m = meta(0);
                m.id.creation.seq = next.fetch_add(1, Ordering::Relaxed);
                m
            })
            .collect();
        let items: Vec<(&BundleMeta, &[u8])> = metas.iter().map(|m| (m, bytes.as_slice())).collect();
        store.put_many(&items).expect("bench put_many");
        let ids: Vec<BundleId> = metas.into_iter().map(|m| m.id).collect();
        store.delete_many(&ids).expect("bench delete_many");
    }
    start.elapsed()
}

fn relay_cycle(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RocksStore::open(dir.path()).expect("open store");
    let next = AtomicU64::new(0);
    let mut group = c.benchmark_group("relay_cycle");
    group.throughput(Throughput::Elements(128));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("put_then_delete_128x100B", |b| b.iter_custom(|iters| relay_rounds(&store, &next, iters)));
    group.finish();
}

criterion_group!(benches, durable_puts, relay_cycle);
criterion_main!(benches);
