//! kill -9 durability: a bundle ferryd acknowledged survives SIGKILL, and is
//! delivered exactly once after the restarts (DESIGN.md, Storage).
//!
//! Several rounds on one data folder: ferryd starts, client threads push
//! bundles (`POST /push` of bundles built here, and `POST /send`) to
//! `dtn://<node>/sink`, where nobody is registered, so they stay stored; after a
//! short, seeded delay ferryd is SIGKILLed with requests in flight. At the end
//! `sink` is registered and drained: every acknowledged bundle must come out
//! exactly once. Unacknowledged ones may come out too (the kill can land between
//! the write and the answer), but not twice.

mod cli_support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cli_support::{http, node_id, Ferryd};
use ferry_core::bundle::{CrcType, DTN_EPOCH_UNIX_SECS};
use ferry_core::codec::{self, BundleBuilder};
use ferry_core::{CreationTimestamp, Eid};
use rand::{Rng, SeedableRng};

const ROUNDS: u64 = 8;
const THREADS: u64 = 8;
/// Per thread and round: a bound, far above what fits before the kill.
const MAX_PUSHES: u64 = 20_000;
/// The kill lands this long after ferryd's API is up (ms, seeded).
const KILL_AFTER_MS: std::ops::Range<u64> = 80..400;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

fn dtn_now() -> u64 {
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    unix_ms - DTN_EPOCH_UNIX_SECS * 1000
}

/// One client thread of one round: pushes until a request fails (the kill) or
/// it is told to stop. Returns (acknowledged ids, attempted ids).
fn client(api: String, sink: Eid, round: u64, thread: u64, stop: Arc<AtomicBool>) -> (Vec<String>, Vec<String>) {
    let http = http();
    let source: Eid = format!("dtn://durability-{thread}/").parse().unwrap();
    let time = dtn_now();
    let mut acked = Vec::new();
    let mut attempted = Vec::new();
    for i in 0..MAX_PUSHES {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let id = format!("r{round}-t{thread}-i{i}");
        attempted.push(id.clone());
        // Even threads hand over whole bundles; odd ones have ferryd create them.
        let result = if thread & 1 == 0 {
            let seq = (round * THREADS + thread) * MAX_PUSHES + i;
            let bytes = BundleBuilder::new(source.clone(), sink.clone(), CreationTimestamp { time, seq }, 3_600_000)
                .crc_type(CrcType::Crc32c)
                .build(id.as_bytes());
            http.post(format!("{api}/push")).body(bytes).send()
        } else {
            http.post(format!("{api}/send"))
                .query(&[("dst", sink.to_string().as_str()), ("lifetime", "1h")])
                .body(id.clone())
                .send()
        };
        match result {
            Ok(resp) if resp.status().is_success() => acked.push(id),
            // The daemon is gone (or going): this round is over for this thread.
            Ok(_) | Err(_) => break,
        }
    }
    (acked, attempted)
}

#[test]
fn acknowledged_bundles_survive_sigkill_exactly_once() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let log = dir.path().join("ferryd.log");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xF3_4411);

    let mut acked: Vec<String> = Vec::new();
    let mut attempted: HashSet<String> = HashSet::new();
    let mut node: Option<String> = None;
    for round in 0..ROUNDS {
        let mut d = Ferryd::start(&data, &log);
        let this_node = node_id(&d.api);
        match &node {
            None => node = Some(this_node.clone()),
            Some(n) => assert_eq!(n, &this_node, "the node ID must survive a restart"),
        }
        let sink = this_node.parse::<Eid>().unwrap().with_service("sink").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (api, sink, stop) = (d.api.clone(), sink.clone(), stop.clone());
                std::thread::spawn(move || client(api, sink, round, t, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(KILL_AFTER_MS)));
        d.kill();
        stop.store(true, Ordering::Relaxed);
        let mut round_acked = 0;
        for t in threads {
            let (a, tried) = t.join().expect("client thread");
            round_acked += a.len();
            acked.extend(a);
            attempted.extend(tried);
        }
        println!("round {round}: {round_acked} acknowledged before SIGKILL");
    }
    assert!(acked.len() >= 50, "too few acknowledged bundles ({}) for the test to mean anything", acked.len());

    // Restart once more, register the sink and drain it.
    let d = Ferryd::start(&data, &log);
    let node = node.unwrap();
    let http = http();
    let reg = http.get(format!("{}/register?sink", d.api)).send().unwrap();
    assert!(reg.status().is_success(), "/register?sink: {}", reg.status());
    let acked_set: HashSet<&String> = acked.iter().collect();
    assert_eq!(acked_set.len(), acked.len(), "an id was acknowledged twice");
    let mut received: HashMap<String, u32> = HashMap::new();
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut empty_since: Option<Instant> = None;
    loop {
        assert!(Instant::now() < deadline, "drain did not finish in {DRAIN_TIMEOUT:?}; log:\n{}", d.log_tail());
        let resp = http.get(format!("{}/endpoint?sink", d.api)).send().unwrap();
        let status = resp.status();
        let body = resp.bytes().unwrap();
        if !status.is_success() || body.is_empty() || body.starts_with(b"Nothing to receive") {
            // Delivery to a fresh registration may trickle in: stop after a quiet second
            // once every acknowledged bundle is in, or after three quiet seconds.
            let quiet = *empty_since.get_or_insert_with(Instant::now);
            let all_in = acked.iter().all(|id| received.contains_key(id));
            if quiet.elapsed() > Duration::from_secs(if all_in { 1 } else { 3 }) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        empty_since = None;
        let bundle = codec::decode(&body).expect("delivered bundle decodes");
        assert!(bundle.primary.destination.to_string().ends_with("/sink"));
        let payload = String::from_utf8(body[bundle.payload().data.clone()].to_vec()).expect("payload is the id");
        *received.entry(payload).or_default() += 1;
    }

    let twice: Vec<_> = received.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id.clone()).collect();
    let lost: Vec<_> = acked.iter().filter(|id| !received.contains_key(*id)).cloned().collect();
    let unacked_survivors = received.keys().filter(|id| !acked_set.contains(id)).count();
    let strangers: Vec<_> = received.keys().filter(|id| !attempted.contains(*id)).cloned().collect();
    println!(
        "node {node}: {} acknowledged, {} received, {} unacknowledged but stored, {:.1}s",
        acked.len(),
        received.len(),
        unacked_survivors,
        started.elapsed().as_secs_f64()
    );
    assert!(strangers.is_empty(), "received ids nobody sent: {strangers:?}");
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert!(lost.is_empty(), "{} acknowledged bundles lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(10)]);
}
