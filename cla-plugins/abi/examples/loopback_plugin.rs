//! A test plugin: every bundle it is asked to transmit comes back as received
//! from the same peer. Its settings can make it misbehave on purpose:
//! `fail_create = true`, `panic_in = "create" | "start" | "transmit" | "verdict"`.

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::Mutex;

use ferry_cla_abi::{Cla, Host, Outcome, PeerUp, Verdict};

struct Loopback {
    host: Host,
    panic_in: String,
    verdicts: Mutex<HashMap<u64, Verdict>>,
}

fn setting<'a>(config: &'a str, key: &str) -> Option<&'a str> {
    config.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

impl Cla for Loopback {
    const NAME: &'static CStr = c"loopback";
    const VERSION: &'static CStr = c"1.0.0";

    fn create(config: &str, host: Host) -> Result<Self, String> {
        let panic_in = setting(config, "panic_in").unwrap_or("").to_string();
        if panic_in == "create" {
            panic!("asked to panic in create");
        }
        if setting(config, "fail_create") == Some("true") {
            return Err("fail_create is set".into());
        }
        Ok(Loopback { host, panic_in, verdicts: Mutex::new(HashMap::new()) })
    }

    fn start(&self) -> Result<(), String> {
        if self.panic_in == "start" {
            panic!("asked to panic in start");
        }
        self.host.info("loopback started");
        self.host.peer_up(7, &PeerUp { node_id: "dtn://echo/", address: "loop://", mtu: None, rate_bps: Some(1000) });
        Ok(())
    }

    fn transmit(&self, peer: u64, transmit: u64, bundle: &[u8]) -> Result<(), String> {
        if self.panic_in == "transmit" {
            panic!("asked to panic in transmit");
        }
        if peer != 7 {
            return Err(format!("no peer {peer}"));
        }
        self.host.bundle_received(peer, bundle, transmit);
        self.host.transmit_done(transmit, Outcome::Sent);
        Ok(())
    }

    fn verdict(&self, token: u64, verdict: Verdict) {
        if self.panic_in == "verdict" {
            panic!("asked to panic in verdict");
        }
        self.verdicts.lock().unwrap_or_else(|e| e.into_inner()).insert(token, verdict);
        self.host.debug(&format!("verdict {token} {verdict:?}"));
    }

    fn connect(&self, address: &str) -> Result<(), String> {
        Err(format!("cannot reach {address}"))
    }

    fn stop(&self) {
        self.host.peer_down(7);
    }
}

ferry_cla_abi::export_cla!(Loopback);
