//! Two real ferryd processes exchanging bundles over the LoRa plugin,
//! through `lora-sim-channel`: a simulated radio channel behind real
//! pseudo-terminals that delays each packet by its airtime and drops 20 % of
//! them (seeded).
//!
//! Time is scaled to keep the test fast: the channel and both plugins run
//! their radio clocks 100× faster than real time (`--time-scale 100`,
//! `time_scale = 100`), and the duty cycle is off (region "none", 100 %);
//! the plugin's own tests check the duty cycle in virtual time. Scaled
//! timers are short in real time, so the plugins get generous retry and
//! silence limits: a loaded test machine's stalls must not look like a
//! dead link.
//!
//! The plugin and the channel are the workspace's own build products, next
//! to ferryd in the target folder: `cargo build -p ferry-cla-lora` (or
//! `cargo build --workspace --all-targets`, as `scripts/test` does) first.

mod api_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use api_support::{binary_payload, Ferryd};

fn built(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_ferryd")).parent().expect("target/<profile>");
    let p = dir.join(name);
    assert!(p.exists(), "{} is not built: run `cargo build -p ferry-cla-lora` first", p.display());
    p
}

/// The simulated channel: killed on drop.
struct Channel {
    child: Child,
    devices: Vec<PathBuf>,
    lines: mpsc::Receiver<String>,
}

impl Channel {
    fn start(dir: &Path, nodes: usize, loss: f64) -> Channel {
        let mut child = Command::new(built("lora-sim-channel"))
            .args(["--dir", dir.to_str().unwrap(), "--nodes", &nodes.to_string(), "--loss", &loss.to_string()])
            .args(["--seed", "7", "--time-scale", "100"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start lora-sim-channel");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut devices = Vec::new();
        loop {
            let line = rx.recv_timeout(Duration::from_secs(30)).expect("lora-sim-channel did not say ready");
            if line == "ready" {
                break;
            }
            let path = line.splitn(3, ' ').nth(2).expect("radio <i> <path>");
            devices.push(PathBuf::from(path));
        }
        assert_eq!(devices.len(), nodes);
        Channel { child, devices, lines: rx }
    }

    /// Closes the channel's stdin; it prints its counters as JSON and exits.
    fn counters(&mut self) -> serde_json::Value {
        drop(self.child.stdin.take());
        let line = self.lines.recv_timeout(Duration::from_secs(30)).expect("lora-sim-channel's counters");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node(dir: &Path, name: &str, device: &Path) -> Ferryd {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "node_id = \"dtn://{name}/\"\n\n[[cla]]\npath = \"{}\"\n[cla.settings]\ndevice = \"{}\"\n\
             region = \"none\"\nduty_cycle_percent = 100\ntime_scale = 100\nhello_interval_secs = 10\n\
             peer_timeout_secs = 600\nmax_retries = 300\nack_timeout_ms = 2000\n",
            built("libferry_cla_lora.so").display(),
            device.display()
        ),
    )
    .unwrap();
    Ferryd::start_with(&dir.join(name), &["--config", cfg.to_str().unwrap()])
}

#[test]
fn two_ferryd_exchange_bundles_over_a_lossy_simulated_lora_channel() {
    let dir = tempfile::tempdir().unwrap();
    let mut ch = Channel::start(dir.path(), 2, 0.2);
    let a = node(dir.path(), "alpha", &ch.devices[0]);
    let b = node(dir.path(), "beta", &ch.devices[1]);
    a.get_ok("/register?incoming");
    b.get_ok("/register?incoming");
    a.eventually("beta to be heard", Duration::from_secs(60), || {
        a.get("/status/peers").json()["dtn://beta/"]["connected"] == true
    });
    for len in [1usize, 3000, 20_000] {
        let payload = binary_payload(len);
        let sent = a.post("/send?dst=dtn://beta/incoming&lifetime=1h", payload.clone());
        assert_eq!(sent.status, 200, "{}", sent.text());
        assert_eq!(b.receive("incoming", Duration::from_secs(120)), payload, "{len} B alpha -> beta");
        let back = b.post("/send?dst=dtn://alpha/incoming&lifetime=1h", payload.clone());
        assert_eq!(back.status, 200, "{}", back.text());
        assert_eq!(a.receive("incoming", Duration::from_secs(120)), payload, "{len} B beta -> alpha");
    }
    // Each delivered once: nothing more waits on either endpoint.
    for f in [&a, &b] {
        assert_eq!(f.get("/endpoint?incoming").body, b"Nothing to receive");
    }
    // Forwarded bundles leave the sender's store once the receiver's final
    // ACK (sent only after its store synced) arrived.
    a.eventually("alpha's store to empty", Duration::from_secs(60), || a.bundle_ids().is_empty());
    b.eventually("beta's store to empty", Duration::from_secs(60), || b.bundle_ids().is_empty());
    let log = a.log_text();
    assert!(log.contains("modem") && log.contains("open at 115200 baud"), "{log}");
    // The channel did lose packets, and both nodes sent over it.
    let c = ch.counters();
    assert!(c["lost"].as_u64() > Some(0) && c["delivered"].as_u64() > Some(100), "{c}");
    assert_eq!(c["refused"], 0, "{c}");
}
