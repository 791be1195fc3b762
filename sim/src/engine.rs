//! The discrete-event engine: one ferry-core [`Node`] with its own store per
//! simulated node, links that carry real bundles, and an
//! event queue ordered by (time, insertion number), so that a seed gives one
//! outcome.
//!
//! Events: links going up and down (from a contact plan or a trace), message
//! creation, transfers ending, bundles arriving after their light time, node
//! timers ([`Node::poll_timeout`]) and samples for the time series.
//!
//! What a node does is what ferryd's node does: the engine carries out its
//! [`Action`]s (persist into the store, deliver, transmit, delete). Bundles are
//! real RFC 9171 bundles with a small payload (the message number); the
//! message's nominal size is what links take time to send and what buffers
//! hold, as in the ONE, so 100 kB messages cost no 100 kB of memory.
//!
//! A node's store is the engine's record of the bundles it holds: their
//! bytes, arrival order and transfers under way. It keeps no metadata: the
//! node has it, and a simulated node never restarts, so nothing would read a
//! stored copy (ferryd's RocksDB store keeps it for recovery). Keeping it in
//! ferry-core's `MemStore` as well cost a fifth of a run.
//!
//! The buffer policy is the ONE's: when a bundle must come in (created, or a
//! transfer starting) and the buffer is full, the bundle received longest ago
//! that is not being sent is dropped (deleted by the node, reason "depleted
//! storage") until it fits.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};

use ferry_core::admin::ReasonCode;
use ferry_core::bundle::{BundleId, BundleMeta, DtnTime};
use ferry_core::contact::transmit_ms;
use ferry_core::eid::Eid;
use ferry_core::node::{transmission, Action, Node, NodeConfig, SendRequest, Transmit, TransmitOutcome};
use ferry_core::router::{PeerId, PeerInfo, Router, RouterSpec, RoutingInfoError};

use crate::report::{Collector, Report};
use crate::scenario::{ipn_number, GeneratedMessages, LinkModel, Messages, Scenario};

/// Service number of the endpoint every node registers (`ipn:N.1`).
const APP_SERVICE: u64 = 1;

#[derive(Debug, Clone)]
enum Event {
    /// A link from `from` to `to` (both ways if `both_ways`) comes up.
    LinkUp {
        from: usize,
        to: usize,
        both_ways: bool,
        rate: u64,
        owlt_ms: u64,
    },
    LinkDown {
        from: usize,
        to: usize,
        both_ways: bool,
    },
    /// Message `msg` (an index into `Sim::messages`) is created.
    Create {
        msg: usize,
    },
    /// The generator makes its next message.
    Generate,
    /// The transfer on `link` ends, if the link is still in generation `gen`.
    TransferEnd {
        link: usize,
        gen: u64,
    },
    /// Bundle bytes reach `to` (after the light time).
    Arrive {
        to: usize,
        from: usize,
        bytes: Vec<u8>,
        size: u64,
    },
    /// Node timer, if still the one scheduled.
    Timeout {
        node: usize,
    },
    Sample,
}

struct Queued {
    time: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    // Reversed: BinaryHeap pops the greatest, we want the earliest.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

struct SimNode {
    node: Node,
    /// Nominal bytes held, and bytes promised to transfers under way.
    used: u64,
    reserved: u64,
    /// Held bundles by arrival number (the drop order).
    held: BTreeMap<u64, BundleId>,
    /// What the engine knows of each held bundle. The engine's own maps use
    /// a fixed fast hash: there is no adversary here, and they are looked up
    /// several times per transfer.
    arrival: FxHashMap<BundleId, Held>,
    /// The timer event scheduled for this node.
    timer: Option<u64>,
}

struct Held {
    /// The bundle as stored (what a transmission starts from).
    bytes: Vec<u8>,
    /// The message it carries (index in `Sim::messages`) and the bytes it
    /// takes in buffers and on links: looked up once, when it comes in.
    msg: Option<usize>,
    size: u64,
    /// Arrival number (the key in `SimNode::held`) and time.
    order: u64,
    at: u64,
    /// Transfers of it that have started (not only queued).
    sending: u32,
}

struct Pending {
    from: usize,
    to: usize,
    transmit: Transmit,
}

struct Active {
    from: usize,
    to: usize,
    id: BundleId,
    bytes: Vec<u8>,
    size: u64,
}

struct Link {
    rate: u64,
    owlt_ms: u64,
    /// Connections of a pair that are up (the ONE model with a plan: a
    /// contact each way makes one connection).
    count: u32,
    gen: u64,
    queue: VecDeque<Pending>,
    busy: Option<Active>,
}

struct Message {
    size: u64,
    created_at: u64,
    dst: usize,
    src: usize,
    delivered: bool,
}

/// Called with (simulated ms done, total) now and then on long runs.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// A simulation of one scenario. [`Sim::run`] plays it to the end.
pub struct Sim<'s> {
    sc: &'s Scenario,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Queued>,
    nodes: Vec<SimNode>,
    links: Vec<Link>,
    free_links: Vec<usize>,
    by_key: FxHashMap<(usize, usize), usize>,
    messages: Vec<Message>,
    bundle_msg: FxHashMap<BundleId, usize>,
    /// Nominal sizes for routers that plan with sizes (see [`NominalSize`]).
    sizes: Arc<Mutex<HashMap<BundleId, u64>>>,
    next_arrival: u64,
    generated: Option<GeneratedMessages>,
    stats: Collector,
    events: u64,
    /// Links whose queue may be able to start a transfer.
    kick: Vec<usize>,
}

impl<'s> Sim<'s> {
    pub fn new(sc: &'s Scenario) -> Sim<'s> {
        let mut nodes = Vec::with_capacity(sc.nodes as usize);
        let sizes = Arc::new(Mutex::new(HashMap::new()));
        for n in 1..=sc.nodes {
            let id = Eid::ipn_node(n);
            let mut router = sc.router.build(&id);
            if matches!(sc.router, RouterSpec::Cgr(_)) {
                router = Box::new(NominalSize { inner: router, sizes: sizes.clone() });
            }
            let mut cfg = NodeConfig::new(id.clone(), router);
            // Paths in large epidemic runs are long; 255 is the most RFC 9171 allows.
            cfg.default_hop_limit = Some(255);
            let mut node = Node::new(cfg);
            node.register(sc.epoch, Eid::Ipn { node: n, service: APP_SERVICE });
            nodes.push(SimNode {
                node,
                used: 0,
                reserved: 0,
                held: BTreeMap::new(),
                arrival: FxHashMap::default(),
                timer: None,
            });
        }
        let mut sim = Sim {
            sc,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            links: vec![],
            free_links: vec![],
            by_key: FxHashMap::default(),
            messages: vec![],
            bundle_msg: FxHashMap::default(),
            sizes,
            next_arrival: 0,
            generated: None,
            stats: Collector::default(),
            events: 0,
            kick: vec![],
        };
        sim.schedule_inputs();
        sim
    }

    fn push(&mut self, time: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Queued { time, seq: self.seq, event });
    }

    fn schedule_inputs(&mut self) {
        let sc = self.sc;
        let both_ways = sc.link_model == LinkModel::One;
        if let Some(plan) = &sc.plan {
            for c in plan.contacts() {
                let (from, to) = (index(ipn_number(&c.from)), index(ipn_number(&c.to)));
                let start = c.start.saturating_sub(sc.epoch);
                let end = c.end.saturating_sub(sc.epoch);
                self.push(start, Event::LinkUp { from, to, both_ways, rate: c.rate_bps, owlt_ms: c.owlt_ms });
                self.push(end, Event::LinkDown { from, to, both_ways });
            }
        }
        for c in &sc.connections {
            let (a, b) = (index(c.a), index(c.b));
            // A trace connection is both ways; under ION's model, two links.
            let pairs: &[(usize, usize)] = if both_ways { &[(a, b)] } else { &[(a, b), (b, a)] };
            for &(from, to) in pairs {
                let e = if c.up {
                    Event::LinkUp { from, to, both_ways, rate: sc.trace_rate, owlt_ms: 0 }
                } else {
                    Event::LinkDown { from, to, both_ways }
                };
                self.push(c.time_ms, e);
            }
        }
        match &sc.messages {
            Messages::Trace(msgs) => {
                for m in msgs {
                    let msg = self.messages.len();
                    self.messages.push(Message {
                        size: m.size,
                        created_at: m.time_ms,
                        src: index(m.from),
                        dst: index(m.to),
                        delivered: false,
                    });
                    self.push(m.time_ms, Event::Create { msg });
                }
            }
            Messages::Generator(g) => {
                let generated = GeneratedMessages::new(g, sc.seed);
                if let Some(first) = generated.clone().next() {
                    self.push(first.0, Event::Generate);
                }
                self.generated = Some(generated);
            }
        }
        self.push(0, Event::Sample);
    }

    /// Plays the scenario to its end and returns the figures.
    pub fn run(mut self, progress: Option<Progress<'_>>) -> Report {
        self.advance(self.sc.duration_ms, progress);
        self.finish()
    }

    /// Handles every event up to simulated time `until` (ms, at most the
    /// scenario's duration).
    pub fn advance(&mut self, until: u64, mut progress: Option<Progress<'_>>) {
        let end = until.min(self.sc.duration_ms);
        while self.queue.peek().is_some_and(|q| q.time <= end) {
            let Some(q) = self.queue.pop() else { break };
            self.now = q.time;
            self.events += 1;
            self.handle(q.event);
            if self.events & 0xFFFF == 0 {
                if let Some(p) = progress.as_mut() {
                    p(self.now, end);
                }
            }
        }
        self.now = end;
        if let Some(p) = progress.as_mut() {
            p(end, end);
        }
    }

    /// The figures, with a last sample at the current time.
    pub fn finish(mut self) -> Report {
        self.sample();
        self.stats.finish(self.sc, self.events)
    }

    /// The node numbered `number` (from 1), to look inside in tests.
    pub fn node(&self, number: u64) -> Option<&Node> {
        self.nodes.get(usize::try_from(number.checked_sub(1)?).ok()?).map(|n| &n.node)
    }

    /// Nominal bytes node `number` holds.
    pub fn buffer_used(&self, number: u64) -> Option<u64> {
        self.nodes.get(usize::try_from(number.checked_sub(1)?).ok()?).map(|n| n.used)
    }

    /// The message a bundle carries (index in creation order).
    pub fn message_of(&self, id: &BundleId) -> Option<usize> {
        self.bundle_msg.get(id).copied()
    }

    fn dtn(&self) -> DtnTime {
        self.sc.epoch + self.now
    }

    fn handle(&mut self, e: Event) {
        match e {
            Event::LinkUp { from, to, both_ways, rate, owlt_ms } => self.link_up(from, to, both_ways, rate, owlt_ms),
            Event::LinkDown { from, to, both_ways } => self.link_down(from, to, both_ways),
            Event::Create { msg } => self.create(msg),
            Event::Generate => self.generate(),
            Event::TransferEnd { link, gen } => self.transfer_end(link, gen),
            Event::Arrive { to, from, bytes, size } => self.arrive(to, from, bytes, size),
            Event::Timeout { node } => {
                if self.nodes[node].timer == Some(self.now) {
                    self.nodes[node].timer = None;
                    let now = self.dtn();
                    self.nodes[node].node.handle_timeout(now);
                    self.run_node(node);
                }
            }
            Event::Sample => {
                self.sample();
                let next = self.now + self.sc.sample_ms;
                if next <= self.sc.duration_ms {
                    self.push(next, Event::Sample);
                }
            }
        }
        self.kick_links();
    }

    fn sample(&mut self) {
        let used: u64 = self.nodes.iter().map(|n| n.used).sum();
        let held: u64 = self.nodes.iter().map(|n| n.held.len() as u64).sum();
        let nodes = self.nodes.len() as u64;
        self.stats.sample(self.now, used, held, nodes, self.sc.buffer_size);
    }

    fn key(&self, from: usize, to: usize) -> (usize, usize) {
        match self.sc.link_model {
            LinkModel::One => (from.min(to), from.max(to)),
            LinkModel::Ion => (from, to),
        }
    }

    fn peer_info(&self, of: usize, rate: u64) -> PeerInfo {
        PeerInfo { id: PeerId(of as u64), node_id: Eid::ipn_node(of as u64 + 1), mtu: None, rate_bps: Some(rate) }
    }

    fn link_up(&mut self, from: usize, to: usize, both_ways: bool, rate: u64, owlt_ms: u64) {
        let key = self.key(from, to);
        if let Some(&l) = self.by_key.get(&key) {
            // Already up (a duplicate trace line, or the reverse contact of a pair).
            self.links[l].count += 1;
            return;
        }
        let link = Link { rate, owlt_ms, count: 1, gen: 0, queue: VecDeque::new(), busy: None };
        let l = match self.free_links.pop() {
            Some(l) => {
                let gen = self.links[l].gen + 1;
                self.links[l] = Link { gen, ..link };
                l
            }
            None => {
                self.links.push(link);
                self.links.len() - 1
            }
        };
        self.by_key.insert(key, l);
        let now = self.dtn();
        // Routing information first (PRoPHET), so the first decisions use it.
        let (from_eid, to_eid) = (Eid::ipn_node(from as u64 + 1), Eid::ipn_node(to as u64 + 1));
        let to_info = self.nodes[to].node.routing_info(now);
        let from_info = if both_ways { self.nodes[from].node.routing_info(now) } else { None };
        if let Some(info) = to_info {
            // Both are ferry-core routers of one kind: their encoding matches.
            let _ = self.nodes[from].node.handle_routing_info(now, &to_eid, &info);
        }
        if let Some(info) = from_info {
            let _ = self.nodes[to].node.handle_routing_info(now, &from_eid, &info);
        }
        let info = self.peer_info(to, rate);
        self.nodes[from].node.handle_peer_up(now, info);
        if both_ways {
            let info = self.peer_info(from, rate);
            self.nodes[to].node.handle_peer_up(now, info);
        }
        self.run_node(from);
        if both_ways {
            self.run_node(to);
        }
    }

    fn link_down(&mut self, from: usize, to: usize, both_ways: bool) {
        let key = self.key(from, to);
        let Some(&l) = self.by_key.get(&key) else { return };
        self.links[l].count -= 1;
        if self.links[l].count > 0 {
            return;
        }
        self.by_key.remove(&key);
        let link = &mut self.links[l];
        link.gen += 1;
        link.queue.clear();
        if let Some(a) = link.busy.take() {
            self.stats.counts.aborted += 1;
            self.nodes[a.to].reserved -= a.size;
            self.stop_sending(a.from, &a.id);
        }
        self.free_links.push(l);
        let now = self.dtn();
        self.nodes[from].node.handle_peer_down(now, PeerId(to as u64));
        if both_ways {
            self.nodes[to].node.handle_peer_down(now, PeerId(from as u64));
        }
        self.run_node(from);
        if both_ways {
            self.run_node(to);
        }
    }

    fn stop_sending(&mut self, node: usize, id: &BundleId) {
        if let Some(h) = self.nodes[node].arrival.get_mut(id) {
            h.sending = h.sending.saturating_sub(1);
        }
    }

    fn generate(&mut self) {
        let Some((at, src, dst, size)) = self.generated.as_mut().and_then(|g| g.next()) else { return };
        let msg = self.messages.len();
        self.messages.push(Message { size, created_at: at, src: index(src), dst: index(dst), delivered: false });
        if let Some(next) = self.generated.as_ref().and_then(|g| g.clone().next()) {
            self.push(next.0, Event::Generate);
        }
        self.create(msg);
    }

    fn create(&mut self, msg: usize) {
        let (src, dst, size) = (self.messages[msg].src, self.messages[msg].dst, self.messages[msg].size);
        self.stats.counts.created += 1;
        self.make_room(src, size);
        let now = self.dtn();
        let req = SendRequest {
            source: None,
            destination: Eid::Ipn { node: dst as u64 + 1, service: APP_SERVICE },
            lifetime_ms: self.sc.ttl_ms,
            flags: 0,
            report_to: Some(Eid::Null),
        };
        let payload = (msg as u64).to_be_bytes();
        match self.nodes[src].node.send(now, req, &payload) {
            Ok(id) => {
                if matches!(self.sc.router, RouterSpec::Cgr(_)) {
                    self.sizes.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), size);
                }
                self.bundle_msg.insert(id, msg);
                self.run_node(src);
            }
            Err(e) => self.stats.errors.push(format!("message {msg} not created: {e}")),
        }
    }

    /// ONE's policy: drop the oldest bundles not being sent until `size` fits.
    /// False if it cannot fit.
    fn make_room(&mut self, n: usize, size: u64) -> bool {
        let Some(cap) = self.sc.buffer_size else { return true };
        if size > cap {
            return false;
        }
        // Bounded: every round drops one held bundle, or stops.
        loop {
            let node = &self.nodes[n];
            if node.used + node.reserved + size <= cap {
                return true;
            }
            let victim = node.held.values().find(|id| node.arrival.get(*id).is_none_or(|h| h.sending == 0)).cloned();
            let Some(id) = victim else { return false };
            let now = self.dtn();
            self.nodes[n].node.delete(now, &id, ReasonCode::DepletedStorage);
            self.run_node(n);
            if self.nodes[n].arrival.contains_key(&id) {
                // The node would not drop it (cannot happen: it holds it); stop rather than spin.
                return false;
            }
        }
    }

    /// The message a bundle carries, and its nominal size (`bytes` for a
    /// bundle that carries none).
    fn message_and_size(&self, id: &BundleId, bytes: usize) -> (Option<usize>, u64) {
        let msg = self.bundle_msg.get(id).copied();
        (msg, msg.map_or(bytes as u64, |m| self.messages[m].size))
    }

    /// Carries out node `n`'s actions until it has none, then reschedules its timer.
    fn run_node(&mut self, n: usize) {
        let mut delivered_here: Option<BundleId> = None;
        // Bounded by the node: every action comes from a finite input.
        while let Some(action) = self.nodes[n].node.poll_action() {
            let now = self.dtn();
            match action {
                Action::Persist { meta, bytes } => {
                    let (msg, size) = self.message_and_size(&meta.id, bytes.len());
                    let node = &mut self.nodes[n];
                    node.used += size;
                    node.held.insert(self.next_arrival, meta.id.clone());
                    let held = Held { bytes, msg, size, order: self.next_arrival, at: self.now, sending: 0 };
                    node.arrival.insert(meta.id.clone(), held);
                    self.next_arrival += 1;
                    self.nodes[n].node.handle_persisted(now, &meta.id, true);
                }
                // The node keeps the metadata; see the module docs.
                Action::UpdateMeta(_) => {}
                // The node remembers delivered IDs itself; nothing to store.
                Action::ForgetDelivered(_) => {}
                Action::Delete { id, reason, .. } => {
                    let node = &mut self.nodes[n];
                    if let Some(Held { order, at, size, .. }) = node.arrival.remove(&id) {
                        node.held.remove(&order);
                        node.used -= size;
                        if delivered_here.as_ref() != Some(&id) {
                            match reason {
                                Some(_) => self.stats.counts.dropped += 1,
                                None => self.stats.counts.removed += 1,
                            }
                            self.stats.buffer_times.push(self.now - at);
                        }
                    }
                }
                Action::Deliver { id, .. } => {
                    let hops = self.nodes[n].node.meta(&id).and_then(|m| m.hop_count).map_or(0, |h| h.count);
                    if let Some(&msg) = self.bundle_msg.get(&id) {
                        let m = &mut self.messages[msg];
                        if !m.delivered {
                            m.delivered = true;
                            self.stats.delivered(self.now, self.now - m.created_at, hops);
                        }
                    }
                    self.nodes[n].node.handle_delivered(now, &id);
                    delivered_here = Some(id);
                }
                Action::Transmit(t) => {
                    let to = t.peer.0 as usize;
                    match self.by_key.get(&self.key(n, to)) {
                        Some(&l) => {
                            self.links[l].queue.push_back(Pending { from: n, to, transmit: t });
                            self.kick.push(l);
                        }
                        None => self.nodes[n].node.handle_transmitted(now, t.peer, &t.id, TransmitOutcome::Failed),
                    }
                }
                Action::Reassemble { parts } => {
                    // Links have no MTU here, so nothing is fragmented; a
                    // fragment from a trace-fed bundle cannot occur either.
                    self.nodes[n].node.handle_reassembly_failed(now, &parts);
                }
            }
        }
        if let Some(t) = self.nodes[n].node.poll_timeout() {
            let t = t.saturating_sub(self.sc.epoch).max(self.now);
            if self.nodes[n].timer.is_none_or(|s| t < s) {
                self.nodes[n].timer = Some(t);
                self.push(t, Event::Timeout { node: n });
            }
        }
    }

    fn kick_links(&mut self) {
        // Starting a transfer can make a node act again (a refusal, a drop),
        // which can queue more: loop until no link has news. Bounded: each
        // round takes pending transfers off a queue.
        while let Some(l) = self.kick.pop() {
            self.start_next(l);
        }
    }

    /// Starts the next transfer on link `l` if it is idle.
    fn start_next(&mut self, l: usize) {
        while self.links[l].busy.is_none() {
            let Some(p) = self.links[l].queue.pop_front() else { return };
            let gen = self.links[l].gen;
            let (from, to, id) = (p.from, p.to, p.transmit.id.clone());
            let now = self.dtn();
            if !self.nodes[from].node.contains(&id) {
                continue; // dropped or expired while queued
            }
            let Some((msg, size)) = self.nodes[from].arrival.get(&id).map(|h| (h.msg, h.size)) else {
                continue; // the node holds it, so the engine does: cannot happen
            };
            let delivered_to_it = msg.is_some_and(|m| {
                let m = &self.messages[m];
                m.delivered && m.dst == to
            });
            if self.nodes[to].node.contains(&id) || delivered_to_it {
                self.nodes[from].node.handle_transmitted(now, p.transmit.peer, &id, TransmitOutcome::Refused);
                self.run_node(from);
                continue;
            }
            if !self.make_room(to, size) {
                self.nodes[from].node.handle_transmitted(now, p.transmit.peer, &id, TransmitOutcome::Failed);
                self.run_node(from);
                continue;
            }
            let bytes = match self.nodes[from].arrival.get(&id).map(|h| transmission(&h.bytes, &p.transmit)) {
                Some(Ok(mut out)) if out.len() == 1 => out.remove(0),
                _ => {
                    self.stats.errors.push(format!("bundle {id} could not be prepared for a link"));
                    self.nodes[from].node.handle_transmitted(now, p.transmit.peer, &id, TransmitOutcome::Failed);
                    self.run_node(from);
                    continue;
                }
            };
            let rate = self.links[l].rate;
            let Some(ms) = transmit_ms(size, rate) else {
                self.nodes[from].node.handle_transmitted(now, p.transmit.peer, &id, TransmitOutcome::Failed);
                self.run_node(from);
                continue;
            };
            self.stats.counts.started += 1;
            self.nodes[to].reserved += size;
            if let Some(h) = self.nodes[from].arrival.get_mut(&id) {
                h.sending += 1;
            }
            self.links[l].busy = Some(Active { from, to, id, bytes, size });
            self.push(self.now + ms, Event::TransferEnd { link: l, gen });
        }
    }

    fn transfer_end(&mut self, l: usize, gen: u64) {
        if self.links[l].gen != gen {
            return;
        }
        let Some(a) = self.links[l].busy.take() else { return };
        self.stop_sending(a.from, &a.id);
        let now = self.dtn();
        self.nodes[a.from].node.handle_transmitted(now, PeerId(a.to as u64), &a.id, TransmitOutcome::Sent);
        self.run_node(a.from);
        let owlt = self.links[l].owlt_ms;
        if owlt == 0 {
            self.arrive(a.to, a.from, a.bytes, a.size);
        } else {
            self.push(self.now + owlt, Event::Arrive { to: a.to, from: a.from, bytes: a.bytes, size: a.size });
        }
        self.kick.push(l);
    }

    fn arrive(&mut self, to: usize, from: usize, bytes: Vec<u8>, size: u64) {
        self.nodes[to].reserved -= size;
        self.stats.counts.relayed += 1;
        let now = self.dtn();
        // A duplicate (it came another way meanwhile) or an expired bundle is
        // refused by the node: that is the node's verdict, counted as relayed
        // like the ONE counts a finished transfer.
        let _ = self.nodes[to].node.handle_received(now, bytes, Some(PeerId(from as u64)));
        self.run_node(to);
    }
}

/// Shows a router the nominal size of a message instead of the size of the
/// small bundle that stands for it (contact-graph routing plans with sizes).
struct NominalSize {
    inner: Box<dyn Router>,
    sizes: Arc<Mutex<HashMap<BundleId, u64>>>,
}

impl NominalSize {
    fn sized(&self, bundle: &BundleMeta) -> BundleMeta {
        let sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        BundleMeta { size: sizes.get(&bundle.id).copied().unwrap_or(bundle.size), ..bundle.clone() }
    }
}

impl Router for NominalSize {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn select(&mut self, now: DtnTime, bundle: &BundleMeta, peers: &[&PeerInfo]) -> Vec<PeerId> {
        let sized = self.sized(bundle);
        self.inner.select(now, &sized, peers)
    }
    fn release_after_forward(&self, bundle: &BundleMeta, peer: &PeerInfo) -> bool {
        self.inner.release_after_forward(bundle, peer)
    }
    fn peer_up(&mut self, now: DtnTime, peer: &PeerInfo) {
        self.inner.peer_up(now, peer)
    }
    fn peer_down(&mut self, now: DtnTime, peer: &PeerInfo) {
        self.inner.peer_down(now, peer)
    }
    fn hand_over(&mut self, now: DtnTime, bundle: &mut BundleMeta, peer: &PeerInfo) -> Option<u64> {
        self.inner.hand_over(now, bundle, peer)
    }
    fn take_back(&mut self, bundle: &mut BundleMeta, copies: u64) {
        self.inner.take_back(bundle, copies)
    }
    fn routing_info(&mut self, now: DtnTime) -> Option<Vec<u8>> {
        self.inner.routing_info(now)
    }
    fn handle_routing_info(&mut self, now: DtnTime, from: &Eid, info: &[u8]) -> Result<(), RoutingInfoError> {
        self.inner.handle_routing_info(now, from, info)
    }
}

/// Node number (from 1) to index.
fn index(number: u64) -> usize {
    usize::try_from(number.saturating_sub(1)).unwrap_or(usize::MAX)
}

/// Runs a scenario to the end.
pub fn run(sc: &Scenario, progress: Option<Progress<'_>>) -> Report {
    Sim::new(sc).run(progress)
}
