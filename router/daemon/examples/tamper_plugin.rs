//! A test convergence layer that plays the untrusted carrier: it brings up
//! one peer (`peer`, a node ID) and carries every bundle handed to it to that
//! node's STCP listener (`forward`, `host:port`: a 4-byte length, then the
//! bundle). With `flip = true` it first flips one bit of the payload and
//! re-encodes the payload block with a correct CRC, as someone altering a
//! bundle on purpose would, so that only an integrity check (BPSec) can tell.
//!
//! Built as a real shared library (`cargo build --workspace --all-targets`)
//! so that the security tests load it into ferryd like any other plugin.
//!
//! ```toml
//! [[cla]]
//! path = "target/debug/examples/libtamper_plugin.so"
//! [cla.settings]
//! peer = "dtn://c/"
//! forward = "127.0.0.1:4456"
//! flip = true
//! ```

use std::ffi::CStr;
use std::io::Write as _;
use std::net::TcpStream;
use std::time::Duration;

use ferry_cla_abi::{Cla, Host, Outcome, PeerUp, Verdict};
use ferry_core::codec;

const PEER: u64 = 1;

struct Tamper {
    host: Host,
    peer: String,
    forward: String,
    flip: bool,
}

fn setting<'a>(config: &'a str, key: &str) -> Option<&'a str> {
    config.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

/// `bundle` with the first bit of its payload flipped and the payload block
/// re-encoded (its CRC, if any, recomputed).
fn flip_payload(bundle: &[u8]) -> Result<Vec<u8>, String> {
    let decoded = codec::decode(bundle).map_err(|e| format!("not a bundle: {e}"))?;
    let payload = decoded.payload();
    let mut data = bundle[payload.data.clone()].to_vec();
    let first = data.first_mut().ok_or("empty payload: nothing to flip")?;
    *first ^= 1;
    let mut block = Vec::new();
    codec::encode_canonical_block(
        &mut block,
        payload.block_type,
        payload.number,
        payload.flags,
        payload.crc_type,
        &data,
    );
    let mut out = bundle[..payload.range.start].to_vec();
    out.extend_from_slice(&block);
    out.extend_from_slice(&bundle[payload.range.end..]);
    Ok(out)
}

impl Tamper {
    fn carry(&self, bundle: &[u8]) -> Result<(), String> {
        let bytes = if self.flip { flip_payload(bundle)? } else { bundle.to_vec() };
        let len = u32::try_from(bytes.len()).map_err(|_| "bundle too large for STCP".to_string())?;
        let addr = self.forward.parse().map_err(|e| format!("forward {}: {e}", self.forward))?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("cannot reach {}: {e}", self.forward))?;
        s.write_all(&len.to_be_bytes()).and_then(|()| s.write_all(&bytes)).map_err(|e| format!("{}: {e}", self.forward))
    }
}

impl Cla for Tamper {
    const NAME: &'static CStr = c"tamper";
    const VERSION: &'static CStr = c"1.0.0";

    fn create(config: &str, host: Host) -> Result<Self, String> {
        let peer = setting(config, "peer").ok_or("`peer` (the node ID it carries bundles to) is missing")?;
        let forward = setting(config, "forward").ok_or("`forward` (that node's STCP listener) is missing")?;
        let flip = setting(config, "flip") == Some("true");
        Ok(Tamper { host, peer: peer.to_owned(), forward: forward.to_owned(), flip })
    }

    fn start(&self) -> Result<(), String> {
        self.host.peer_up(PEER, &PeerUp { node_id: &self.peer, address: &self.forward, mtu: None, rate_bps: None });
        Ok(())
    }

    fn transmit(&self, peer: u64, transmit: u64, bundle: &[u8]) -> Result<(), String> {
        if peer != PEER {
            return Err(format!("no peer {peer}"));
        }
        let outcome = match self.carry(bundle) {
            Ok(()) => {
                self.host.info(&format!("carried {} bytes to {} (flipped: {})", bundle.len(), self.peer, self.flip));
                Outcome::Sent
            }
            Err(why) => {
                self.host.warn(&why);
                Outcome::Failed
            }
        };
        self.host.transmit_done(transmit, outcome);
        Ok(())
    }

    fn verdict(&self, _token: u64, _verdict: Verdict) {}

    fn connect(&self, address: &str) -> Result<(), String> {
        Err(format!("the tamper plugin only carries to {}, not {address}", self.forward))
    }

    fn stop(&self) {
        self.host.peer_down(PEER);
    }
}

ferry_cla_abi::export_cla!(Tamper);
