//! Throughput of the TCP plugin over loopback: two in-process instances, a
//! host that accepts every bundle at once, a window of transmits in flight.
//!
//! ```text
//! cargo run --release --example tcp_throughput -p ferry-cla-tcp [-- --mtcp]
//! ```
//!
//! Prints bundles/s for 100 B and 10 KiB bundles and MB/s for 1 MiB ones.
//! Figures only; nothing is asserted.

use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use ferry_cla_abi::host::{HostCallbacks, Instance, Plugin};
use ferry_cla_abi::{Outcome, PeerUp, Verdict, LOG_WARN};

#[derive(Default)]
struct State {
    peer: Option<u64>,
    done: u64,
    failed: u64,
    received: u64,
    listening: Option<String>,
}

#[derive(Default)]
struct Host {
    state: Mutex<State>,
    changed: Condvar,
    inst: OnceLock<Weak<Instance>>,
}

impl Host {
    fn wait<T>(&self, mut f: impl FnMut(&State) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut s = self.state.lock().unwrap();
        loop {
            if let Some(t) = f(&s) {
                return t;
            }
            assert!(Instant::now() < deadline, "timed out");
            s = self.changed.wait_timeout(s, Duration::from_millis(100)).unwrap().0;
        }
    }
    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap());
        self.changed.notify_all();
    }
}

impl HostCallbacks for Host {
    fn bundle_received(&self, _peer: u64, _bundle: &[u8], token: u64) {
        // Accept at once: a store that is never the bottleneck.
        if let Some(inst) = self.inst.get().and_then(Weak::upgrade) {
            inst.verdict(token, Verdict::Accepted);
        }
        self.update(|s| s.received += 1);
    }
    fn peer_up(&self, peer: u64, _info: PeerUp<'_>) {
        self.update(|s| s.peer = Some(peer));
    }
    fn peer_down(&self, _peer: u64) {}
    fn transmit_done(&self, _id: u64, outcome: Outcome) {
        self.update(|s| {
            s.done += 1;
            if outcome != Outcome::Sent {
                s.failed += 1;
            }
        });
    }
    fn log(&self, level: i32, msg: &str) {
        if level <= LOG_WARN {
            eprintln!("plugin: {msg}");
        }
        if let Some(rest) = msg.strip_prefix("listening on ") {
            let rest = rest.to_owned();
            self.update(|s| s.listening = Some(rest));
        }
    }
}

fn start(plugin: &Arc<Plugin>, node_id: &str, settings: &str) -> (Arc<Host>, Arc<Instance>) {
    let host = Arc::new(Host::default());
    let inst = Arc::new(plugin.instantiate(node_id, settings, host.clone()).expect("instantiate"));
    let _ = host.inst.set(Arc::downgrade(&inst));
    inst.start().expect("start");
    (host, inst)
}

fn run(sender: &Host, inst: &Instance, peer: u64, size: usize, count: u64, window: u64) -> Duration {
    let bundle = vec![0x5au8; size];
    let base = sender.wait(|s| Some(s.done));
    let started = Instant::now();
    for i in 0..count {
        // Keep at most `window` transmits unfinished.
        sender.wait(|s| (s.done - base + window > i).then_some(()));
        inst.transmit(peer, base + i + 1_000_000, &bundle).expect("transmit");
    }
    sender.wait(|s| (s.done - base >= count).then_some(()));
    started.elapsed()
}

fn main() {
    let mtcp = std::env::args().any(|a| a == "--mtcp");
    let plugin = Plugin::in_process(ferry_cla_tcp::descriptor()).expect("descriptor");
    let settings = if mtcp { "listen = []\nmtcp_listen = [\"127.0.0.1:0\"]" } else { "listen = [\"127.0.0.1:0\"]" };
    let (b_host, _b) = start(&plugin, "dtn://b/", settings);
    let addr = b_host.wait(|s| s.listening.clone());
    let (a_host, a) = start(&plugin, "dtn://a/", "listen = []");
    let url = if mtcp { format!("{addr}/dtn://b/") } else { addr.clone() };
    a.connect(&url).expect("connect");
    let peer = a_host.wait(|s| s.peer);
    println!("ferry-cla-tcp over loopback ({}), one session, host accepts at once", url);

    for (label, size, count, window) in
        [("100 B", 100usize, 50_000u64, 256u64), ("10 KiB", 10 << 10, 20_000, 256), ("1 MiB", 1 << 20, 300, 16)]
    {
        // A short warm-up, then the measured run.
        run(&a_host, &a, peer, size, count / 10, window);
        let took = run(&a_host, &a, peer, size, count, window);
        let secs = took.as_secs_f64();
        let rate = count as f64 / secs;
        let mbps = rate * size as f64 / 1e6;
        println!("{label:>7}: {count:>6} bundles in {secs:6.2} s = {rate:>9.0} bundles/s = {mbps:8.1} MB/s");
    }
    let s = a_host.state.lock().unwrap();
    println!("transmits not sent: {}; bundles received by b: {}", s.failed, b_host.state.lock().unwrap().received);
}
