//! A virtual-time radio channel for [`Link`]s: the unit tests and the
//! report (`examples/lora_report.rs`) run several links here, the way
//! quinn-proto's tests run a `Pair` — no threads, no clock, deterministic
//! for a seed.
//!
//! A packet put on air at `t` by one node reaches every other node at
//! `t + airtime` (the end of the packet), unless the seeded RNG drops it for
//! that receiver (`loss`, independently per receiver and packet). Each node
//! plays a host that stores instantly after `verdict_delay_us` and answers
//! `Duplicate` for a bundle it already holds.
//!
//! With `half_duplex` on, radios are also what they are in the field: a node
//! hears nothing while it transmits, and two packets that overlap in time
//! destroy each other at every receiver (no capture effect, no carrier
//! sense — a pessimistic channel; RNodes do listen before they talk).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use ferry_cla_abi::{Outcome, Verdict};

use crate::link::{Event, Level, Link, LinkConfig};

/// What a simulated host answers to a received bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `Accepted` (or `Duplicate` if it has these bytes already).
    Store,
    /// `Invalid`, as a host does for a malformed bundle.
    Invalid,
    /// Never answers (a store that hangs).
    Hold,
}

/// One node of the virtual network and what its host saw.
pub struct VNode {
    pub link: Link,
    pub answer: Answer,
    /// Bundles the host accepted, with the peer and the time.
    pub stored: Vec<(u64, Vec<u8>, u64)>,
    /// Every bundle handed up (duplicates included).
    pub handed_up: usize,
    /// Outcome of each transmit ID, in the order they came.
    pub done: Vec<(u64, Outcome, u64)>,
    pub ups: Vec<(u64, String)>,
    pub downs: Vec<u64>,
    pub logs: Vec<(Level, String)>,
    /// Tokens of held bundles.
    pub held: Vec<u64>,
    /// Off: neither sends nor hears (out of range, or switched off).
    pub off: bool,
    /// Send a bundle again when its transmission failed, once its peer is
    /// up (as ferryd does).
    pub retry_failed: bool,
    /// Bundles sent with [`VirtualNet::transmit`]: ID → (peer node ID, bytes).
    sent: Vec<(u64, String, Vec<u8>)>,
    /// Failed transmissions waiting for their peer.
    to_retry: Vec<u64>,
    /// Transmissions sent again after failing.
    pub retried: u64,
}

impl VNode {
    /// The last outcome of transmit `id`, if it ended (and is not waiting
    /// to be retried).
    pub fn outcome(&self, id: u64) -> Option<Outcome> {
        if self.to_retry.contains(&id) {
            return None;
        }
        self.done.iter().find(|d| d.0 == id).map(|d| d.1)
    }

    /// Transmissions that ended and are not waiting to be retried.
    pub fn finished(&self) -> usize {
        self.done.iter().filter(|d| !self.to_retry.contains(&d.0)).count()
    }

    /// The peer handle of the neighbour `node_id`, if up.
    pub fn peer(&self, node_id: &str) -> Option<u64> {
        self.link.neighbours().into_iter().find(|(_, n)| n == node_id).map(|(p, _)| p)
    }
}

/// A packet on its way: (arrival, order, receiver, bytes), earliest first.
/// (arrival, order, receiver, sender, start, bytes)
type InFlight = Reverse<(u64, u64, usize, usize, u64, Vec<u8>)>;

/// The virtual channel and its nodes.
pub struct VirtualNet {
    pub nodes: Vec<VNode>,
    /// Virtual time, µs.
    pub now: u64,
    /// Probability that one receiver misses one packet.
    pub loss: f64,
    /// The host's time to make a bundle durable.
    pub verdict_delay_us: u64,
    /// Packets delivered and dropped.
    pub delivered: u64,
    pub dropped: u64,
    /// Deafness and collisions (`half_duplex`): copies destroyed.
    pub collided: u64,
    /// Model half-duplex radios and collisions.
    pub half_duplex: bool,
    /// Every packet put on air: (start, sender, airtime µs, length).
    pub on_air: Vec<(u64, usize, u64, usize)>,
    rng: fastrand::Rng,
    /// (arrival, order, receiver, packet)
    in_flight: BinaryHeap<InFlight>,
    order: u64,
    verdicts: Vec<(u64, usize, u64, Verdict)>,
}

impl VirtualNet {
    /// Nodes named by `node_ids`, all with `cfg`, on a channel losing `loss`.
    pub fn new(cfg: &LinkConfig, node_ids: &[&str], loss: f64, seed: u64) -> VirtualNet {
        let nodes = node_ids
            .iter()
            .enumerate()
            .map(|(i, id)| VNode {
                link: Link::new(cfg.clone(), id, 0, seed.wrapping_mul(31).wrapping_add(i as u64)),
                answer: Answer::Store,
                stored: Vec::new(),
                handed_up: 0,
                done: Vec::new(),
                ups: Vec::new(),
                downs: Vec::new(),
                logs: Vec::new(),
                held: Vec::new(),
                off: false,
                retry_failed: false,
                sent: Vec::new(),
                to_retry: Vec::new(),
                retried: 0,
            })
            .collect();
        VirtualNet {
            nodes,
            now: 0,
            loss,
            verdict_delay_us: 5_000,
            delivered: 0,
            dropped: 0,
            collided: 0,
            half_duplex: false,
            on_air: Vec::new(),
            rng: fastrand::Rng::with_seed(seed),
            in_flight: BinaryHeap::new(),
            order: 0,
            verdicts: Vec::new(),
        }
    }

    /// Hands `packet` to node `to` now, as if received off the air.
    pub fn inject(&mut self, to: usize, packet: &[u8]) {
        let now = self.now;
        self.nodes[to].link.handle_packet(now, packet);
        self.flush();
    }

    /// Queues a bundle at node `from` for the neighbour `to_node_id`.
    pub fn transmit(&mut self, from: usize, to_node_id: &str, id: u64, bundle: &[u8]) -> Result<(), String> {
        let peer = self.nodes[from].peer(to_node_id).ok_or_else(|| format!("{to_node_id} is not up"))?;
        self.nodes[from].link.handle_transmit(peer, id, bundle).map_err(|e| e.to_string())?;
        self.nodes[from].sent.push((id, to_node_id.to_owned(), bundle.to_vec()));
        self.flush();
        Ok(())
    }

    /// Runs until `done` holds (true) or virtual time passes `limit_us` (false).
    pub fn run_until(&mut self, limit_us: u64, mut done: impl FnMut(&VirtualNet) -> bool) -> bool {
        self.flush();
        // Every iteration advances time or consumes an arrival, a verdict or
        // a timer; the cap only guards against a bug in that argument.
        for _ in 0..50_000_000u64 {
            if done(self) {
                return true;
            }
            let Some(next) = self.next_time() else { return false };
            if next > limit_us {
                return false;
            }
            self.now = self.now.max(next);
            self.step();
        }
        false
    }

    /// Runs until the time `until_us`.
    pub fn run_for(&mut self, until_us: u64) {
        self.run_until(until_us, |_| false);
        self.now = self.now.max(until_us);
    }

    fn next_time(&self) -> Option<u64> {
        let mut t = self.in_flight.peek().map(|Reverse((at, ..))| *at);
        let mut min = |x: u64| t = Some(t.map_or(x, |t: u64| t.min(x)));
        for n in &self.nodes {
            if let Some(x) = n.link.poll_timeout() {
                min(x.max(self.now));
            }
        }
        for v in &self.verdicts {
            min(v.0);
        }
        t
    }

    fn step(&mut self) {
        let now = self.now;
        while self.in_flight.peek().is_some_and(|Reverse((at, ..))| *at <= now) {
            let Some(Reverse((_, _, to, from, start, packet))) = self.in_flight.pop() else { break };
            if self.half_duplex && self.interfered(from, start, now) {
                self.collided += 1;
                continue;
            }
            if !self.nodes[to].off {
                self.nodes[to].link.handle_packet(now, &packet);
            }
        }
        let due: Vec<_> = self.verdicts.iter().filter(|v| v.0 <= now).copied().collect();
        self.verdicts.retain(|v| v.0 > now);
        for (_, node, token, verdict) in due {
            self.nodes[node].link.handle_verdict(now, token, verdict);
        }
        for n in &mut self.nodes {
            if n.link.poll_timeout().is_some_and(|t| t <= now) {
                n.link.handle_timeout(now);
            }
        }
        self.flush();
    }

    /// Whether any node but `from` (the receiver itself included: it is deaf
    /// while it sends) was on air at some time in `[start, end)`.
    fn interfered(&self, from: usize, start: u64, end: u64) -> bool {
        let longest = self.nodes.iter().map(|n| n.link.config().radio.airtime_us(crate::frame::MAX_PACKET)).max();
        let horizon = start.saturating_sub(longest.unwrap_or(0));
        self.on_air
            .iter()
            .rev()
            .take_while(|p| p.0 >= horizon)
            .any(|&(s, k, air, _)| k != from && !self.nodes[k].off && s < end && s + air > start)
    }

    /// Takes every packet and event the nodes have now.
    fn flush(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            let n = &mut self.nodes[i];
            let mut k = 0;
            while k < n.to_retry.len() {
                let id = n.to_retry[k];
                let again = n.sent.iter().find(|s| s.0 == id).and_then(|(_, to, b)| {
                    let peer = n.link.neighbours().into_iter().find(|(_, name)| name == to)?.0;
                    n.link.handle_transmit(peer, id, b).ok()
                });
                if again.is_some() {
                    n.to_retry.remove(k);
                    // In flight again: its earlier outcome no longer counts.
                    n.done.retain(|d| d.0 != id);
                    n.retried += 1;
                } else {
                    k += 1;
                }
            }
            while let Some(packet) = self.nodes[i].link.poll_transmit(now) {
                let air = self.nodes[i].link.config().radio.airtime_us(packet.len());
                self.on_air.push((now, i, air, packet.len()));
                if self.nodes[i].off {
                    continue;
                }
                for j in 0..self.nodes.len() {
                    if j == i {
                        continue;
                    }
                    if self.rng.f64() < self.loss {
                        self.dropped += 1;
                        continue;
                    }
                    self.delivered += 1;
                    self.order += 1;
                    self.in_flight.push(Reverse((now + air, self.order, j, i, now, packet.clone())));
                }
            }
            let mut stored_now: Vec<(u64, Verdict)> = Vec::new();
            while let Some(ev) = self.nodes[i].link.poll_event() {
                let n = &mut self.nodes[i];
                match ev {
                    Event::PeerUp { peer, node_id, .. } => n.ups.push((peer, node_id)),
                    Event::PeerDown { peer } => n.downs.push(peer),
                    Event::TransmitDone { transmit, outcome } => {
                        n.done.push((transmit, outcome, now));
                        if outcome == Outcome::Failed && n.retry_failed {
                            n.to_retry.push(transmit);
                        }
                    }
                    Event::Log { level, message } => n.logs.push((level, message)),
                    Event::BundleReceived { peer, token, bundle } => {
                        n.handed_up += 1;
                        let verdict = match n.answer {
                            Answer::Hold => {
                                n.held.push(token);
                                continue;
                            }
                            Answer::Invalid => Verdict::Invalid,
                            Answer::Store if n.stored.iter().any(|s| s.1 == bundle) => Verdict::Duplicate,
                            Answer::Store => {
                                n.stored.push((peer, bundle, now));
                                Verdict::Accepted
                            }
                        };
                        stored_now.push((token, verdict));
                    }
                }
            }
            for (token, verdict) in stored_now {
                self.verdicts.push((now + self.verdict_delay_us, i, token, verdict));
            }
        }
    }
}
