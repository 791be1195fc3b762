//! Kill -9 a process that is storing bundles; every put it acknowledged must be
//! there, intact, when the store is reopened.
//!
//! The test re-runs its own executable as the child (`--exact` this test, with
//! an environment variable naming the data directory). The child's threads put
//! bundles and print `ACK <seq>` after each `put` returns; the parent reads the
//! acknowledgements, SIGKILLs the child mid-stream and checks them all.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{meta, payload};
use ferry_core::store::Store;
use ferry_store::{RocksOptions, RocksStore};

const CHILD_DIR: &str = "FERRY_STORE_CRASH_CHILD_DIR";
const TEST_NAME: &str = "acknowledged_puts_survive_sigkill";
const THREADS: u64 = 4;
const PUTS_PER_THREAD: u64 = 5_000;
const KILL_AFTER: usize = 800;
/// Payloads of `common::payload` are 16, 700, 5,000 or 40,000 bytes (+ a few).
const FILE_THRESHOLD: u64 = 30_000;

fn seq_of(thread: u64, i: u64) -> u64 {
    thread * 1_000_000 + i
}

/// Child mode: put bundles from several threads until killed (or done).
fn child(dir: &Path) {
    // Small memtables, so that flushes and blob file writes happen while the
    // child runs and the kill can land in one of them; the largest payloads
    // (a quarter) go to payload files, so the kill can land between a file
    // and the batch that points to it.
    let opts = RocksOptions { write_buffer_size: 1 << 20, file_threshold: FILE_THRESHOLD, ..RocksOptions::default() };
    let store = RocksStore::open_with(dir, opts).expect("child opens the store");
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let store = &store;
            scope.spawn(move || {
                for i in 0..PUTS_PER_THREAD {
                    let seq = seq_of(t, i);
                    store.put(&meta("dtn://src/", seq), &payload(seq)).expect("child put");
                    // Only now is it acknowledged. A closed pipe (parent gone)
                    // ends the child.
                    let mut out = std::io::stdout().lock();
                    if writeln!(out, "ACK {seq}").and_then(|()| out.flush()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

#[test]
fn acknowledged_puts_survive_sigkill() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(Path::new(&dir));
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut proc = Command::new(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = proc.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(seq) = line.strip_prefix("ACK ") {
                if tx.send(seq.parse::<u64>().unwrap()).is_err() {
                    break;
                }
            }
        }
    });

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut acked = Vec::new();
    while acked.len() < KILL_AFTER {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(seq) => acked.push(seq),
            Err(e) => {
                let _ = proc.kill();
                panic!("child stopped acknowledging after {} puts: {e}", acked.len());
            }
        }
    }

    // While the child holds the directory, nobody else may open it.
    let err = RocksStore::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("in use"), "{err}");
    eprintln!("{err}");

    proc.kill().unwrap(); // SIGKILL
    let status = proc.wait().unwrap();
    assert!(!status.success(), "child finished before the kill: {status}");
    // Acknowledgements already in the pipe count too.
    reader.join().unwrap();
    acked.extend(rx.try_iter());

    let store = RocksStore::open(dir.path()).unwrap();
    for &seq in &acked {
        let m = meta("dtn://src/", seq);
        assert_eq!(store.get_meta(&m.id).unwrap().as_ref(), Some(&m), "metadata of acknowledged {seq}");
        assert_eq!(store.get_bytes(&m.id).unwrap(), Some(payload(seq)), "bytes of acknowledged {seq}");
    }
    // Whatever else made it in (written, not yet acknowledged) is whole.
    let all = store.all_meta().unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(stats.bundles, all.len() as u64);
    assert_eq!(store.expiring_by(u64::MAX).unwrap().len(), all.len());
    let mut bytes = 0;
    for m in &all {
        let b = store.get_bytes(&m.id).unwrap().expect("every bundle with metadata has bytes");
        assert_eq!(b, payload(m.id.creation.seq));
        bytes += b.len() as u64;
    }
    assert_eq!(stats.bytes, bytes);
    // Every payload file belongs to a stored bundle: the open removed those
    // that a batch never pointed to.
    let files = std::fs::read_dir(dir.path().join("payloads")).unwrap().count();
    let big = all.iter().filter(|m| payload(m.id.creation.seq).len() as u64 >= FILE_THRESHOLD).count();
    assert!(big > 0, "some stored bundles were big enough for payload files");
    assert_eq!(files, big, "payload files on disk against bundles kept in files");
    eprintln!("{} acknowledged before SIGKILL, {} stored after reopen", acked.len(), all.len());
}
