//! Contact-graph routing (as ION's CGR does it, simplified to one route per
//! decision): the contacts of a [`ContactPlan`] are the vertices of a graph,
//! and a Dijkstra search finds the route with the earliest arrival at the
//! destination node. Along a route, a bundle of size S entering contact C at
//! time t starts at `max(t, C.start)`, leaves `S / C.rate` later, which must
//! be no later than `C.end`, and arrives `C.owlt` after that. A contact whose
//! residual volume is below S is skipped: as ION does, this node books every
//! bundle it sends on every contact of the route it chose, so that later
//! bundles route around contacts it has filled, its own or further down the
//! path. These are this node's own estimates: it knows no other node's
//! bookings.
//!
//! The bundle goes to the first hop only while that contact is on (the peer is
//! up); otherwise it waits, and is routed again when a link comes up. Without
//! any route, a link straight to the destination is taken if there is one
//! (a neighbour the plan does not list). Single
//! copy: the bundle is released once the next hop has it. Routes never return
//! the bundle to the node it came from.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use crate::bundle::{BundleMeta, DtnTime};
use crate::contact::ContactPlan;
use crate::eid::Eid;
use crate::router::{PeerId, PeerInfo, Router};

/// The best route found for a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Index of the first contact in the plan.
    pub first_hop: usize,
    /// When the bundle reaches the destination node (DTN ms).
    pub arrival: DtnTime,
    /// Indexes of the route's contacts in the plan, first hop first.
    pub hops: Vec<usize>,
}

/// The contact-graph router. See the module docs.
#[derive(Debug, Clone)]
pub struct Cgr {
    local: Eid,
    plan: Arc<ContactPlan>,
    /// Bytes this node booked on contacts (of routes it chose), by contact index.
    booked: HashMap<usize, u64>,
}

impl Cgr {
    /// `plan` is shared: a simulation gives every node the same one.
    pub fn new(local: Eid, plan: Arc<ContactPlan>) -> Cgr {
        Cgr { local, plan, booked: HashMap::new() }
    }

    /// Earliest-arrival route from this node at `now` to node `dest` for a
    /// bundle of `size` bytes, never through `avoid` as the first hop.
    pub fn route(&self, now: DtnTime, dest: &Eid, size: u64, avoid: Option<&Eid>) -> Option<Route> {
        // Dijkstra over contacts: key (arrival at the contact's receiver,
        // contact); ties go to the lower contact index, so the route is the
        // same in every run.
        let mut best: HashMap<usize, DtnTime> = HashMap::new();
        // The contact before each one on its best route (`None`: a first hop).
        let mut pred: HashMap<usize, Option<usize>> = HashMap::new();
        let mut heap = BinaryHeap::new();
        for &i in self.plan.from(&self.local) {
            let Some(c) = self.plan.get(i) else { continue };
            if Some(&c.to) == avoid || self.residual(i) < size {
                continue;
            }
            if let Some(arrival) = self.arrival(i, now, size) {
                best.insert(i, arrival);
                pred.insert(i, None);
                heap.push(Reverse((arrival, i)));
            }
        }
        let mut done: HashSet<usize> = HashSet::new();
        while let Some(Reverse((arrival, i))) = heap.pop() {
            if !done.insert(i) {
                continue;
            }
            let Some(c) = self.plan.get(i) else { continue };
            if &c.to == dest {
                let hops = self.path_to(i, &pred);
                return Some(Route { first_hop: hops.first().copied().unwrap_or(i), arrival, hops });
            }
            for &j in self.plan.from(&c.to) {
                let Some(next) = self.plan.get(j) else { continue };
                if done.contains(&j) || next.to == self.local || self.residual(j) < size {
                    continue;
                }
                let Some(t) = self.arrival(j, arrival, size) else { continue };
                if best.get(&j).is_none_or(|b| t < *b) {
                    best.insert(j, t);
                    pred.insert(j, Some(i));
                    heap.push(Reverse((t, j)));
                }
            }
        }
        None
    }

    /// The contacts from a first hop to `last`, following `pred` back. A
    /// contact's predecessor was settled before it, so the chain ends; the
    /// bound is only a guard.
    fn path_to(&self, last: usize, pred: &HashMap<usize, Option<usize>>) -> Vec<usize> {
        let mut hops = vec![last];
        let mut at = last;
        while let Some(&Some(p)) = pred.get(&at) {
            if hops.len() > self.plan.len() {
                break;
            }
            hops.push(p);
            at = p;
        }
        hops.reverse();
        hops
    }

    /// Volume of contact `i` not yet booked by this node.
    fn residual(&self, i: usize) -> u64 {
        self.plan.get(i).map_or(0, |c| c.volume().saturating_sub(self.booked(i)))
    }

    /// Arrival at contact `i`'s receiver of `size` bytes ready at `ready`.
    fn arrival(&self, i: usize, ready: DtnTime, size: u64) -> Option<DtnTime> {
        let c = self.plan.get(i)?;
        if ready >= c.end {
            return None;
        }
        let sent = ready.max(c.start).checked_add(c.transmit_ms(size)?)?;
        (sent <= c.end).then(|| sent.saturating_add(c.owlt_ms))
    }

    /// Bytes booked on contact `index` by this node.
    pub fn booked(&self, index: usize) -> u64 {
        self.booked.get(&index).copied().unwrap_or(0)
    }
}

impl Router for Cgr {
    fn name(&self) -> &'static str {
        "cgr"
    }

    fn select(&mut self, now: DtnTime, bundle: &BundleMeta, peers: &[&PeerInfo]) -> Vec<PeerId> {
        let dest = bundle.destination.node_id();
        let Some(route) = self.route(now, &dest, bundle.size, bundle.previous_node.as_ref()) else {
            // The plan knows no way: a link straight to the destination (one
            // the plan does not list) is still worth taking.
            return peers.iter().filter(|p| p.node_id == dest).map(|p| p.id).take(1).collect();
        };
        let Some(c) = self.plan.get(route.first_hop) else { return vec![] };
        if c.start > now {
            return vec![]; // wait for the contact
        }
        let Some(p) = peers.iter().find(|p| p.node_id == c.to) else { return vec![] };
        for &hop in &route.hops {
            let booked = self.booked.entry(hop).or_insert(0);
            *booked = booked.saturating_add(bundle.size);
        }
        vec![p.id]
    }

    fn release_after_forward(&self, _bundle: &BundleMeta, _peer: &PeerInfo) -> bool {
        true
    }

    fn peer_down(&mut self, now: DtnTime, _peer: &PeerInfo) {
        // Bookings on contacts that are over no longer matter.
        let plan = &self.plan;
        self.booked.retain(|i, _| plan.get(*i).is_some_and(|c| c.end > now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::tests::{meta, peer};

    fn plan(text: &str) -> Arc<ContactPlan> {
        Arc::new(ContactPlan::parse_ion(text, "test", 0).unwrap())
    }

    fn node(n: u64) -> Eid {
        Eid::ipn_node(n)
    }

    #[test]
    fn earliest_arrival_beats_the_first_contact() {
        // 1→2 now (slow path via 2 that reaches 3 at 100 s), or 1→4 at 10 s
        // and 4→3 at 20 s with a 5 s light time.
        let p = plan(
            "a contact +0 +1000 1 2 1000\n\
             a contact +100 +200 2 3 1000\n\
             a contact +10 +50 1 4 1000\n\
             a contact +20 +30 4 3 1000\n\
             a range +0 +1000 4 3 5\n",
        );
        let r = Cgr::new(node(1), p.clone());
        let route = r.route(0, &node(3), 1000, None).unwrap();
        assert_eq!(p.get(route.first_hop).unwrap().to, node(4));
        // Ready at 20 s, 1 s to send, 5 s of light time.
        assert_eq!(route.arrival, 26_000);
        // Too big for the 4→3 window: 11 s at 1000 B/s does not fit in 10 s.
        let big = r.route(0, &node(3), 11_000, None).unwrap();
        assert_eq!(p.get(big.first_hop).unwrap().to, node(2));
        assert_eq!(big.arrival, 111_000);
        // Never back to where it came from.
        let avoid = r.route(0, &node(3), 1000, Some(&node(4))).unwrap();
        assert_eq!(p.get(avoid.first_hop).unwrap().to, node(2));
        assert_eq!(r.route(0, &node(9), 1, None), None);
        // After the last contact, no route.
        assert_eq!(r.route(1_000_000, &node(3), 1, None), None);
    }

    #[test]
    fn a_contact_filled_further_down_the_route_sends_the_next_bundle_another_way() {
        // Via 2: 1→2 has room for a hundred 600 B bundles, but 2→3 carries
        // 1000 B in all (10 s at 100 B/s). Via 4: 4→3 opens only at 50 s.
        let p = plan(
            "a contact +0 +100 1 2 1000\n\
             a contact +0 +10 2 3 100\n\
             a contact +0 +100 1 4 1000\n\
             a contact +50 +100 4 3 1000\n",
        );
        // Indexed by (start, from, to): 1→2 is 0, 1→4 is 1, 2→3 is 2, 4→3 is 3.
        let mut r = Cgr::new(node(1), p);
        let m = BundleMeta { size: 600, ..meta("ipn:3.1") };
        let (two, four) = (peer(7, "ipn:2.0"), peer(8, "ipn:4.0"));
        // 0.6 s on 1→2, then 6 s on 2→3.
        assert_eq!(r.route(0, &node(3), 600, None).unwrap(), Route { first_hop: 0, arrival: 6_600, hops: vec![0, 2] });
        assert_eq!(r.select(0, &m, &[&two, &four]), vec![PeerId(7)]);
        assert_eq!((r.booked(0), r.booked(2)), (600, 600));
        // 400 B left on 2→3: the second bundle waits for 4→3 (50 s + 0.6 s).
        assert_eq!(r.route(0, &node(3), 600, None).unwrap(), Route { first_hop: 1, arrival: 50_600, hops: vec![1, 3] });
        assert_eq!(r.select(0, &m, &[&two, &four]), vec![PeerId(8)]);
        assert_eq!((r.booked(1), r.booked(3)), (600, 600));
        // A bundle that still fits in what is left of 2→3 goes that way again.
        let small = BundleMeta { size: 400, ..meta("ipn:3.1") };
        assert_eq!(r.select(0, &small, &[&two, &four]), vec![PeerId(7)]);
        assert_eq!(r.booked(2), 1000);
    }

    #[test]
    fn sends_only_while_the_first_contact_is_on_and_books_its_volume() {
        let p = plan("a contact +10 +20 1 2 100\na contact +0 +100 2 3 100\n");
        let mut r = Cgr::new(node(1), p);
        let m = BundleMeta { size: 600, ..meta("ipn:3.1") };
        let two = peer(7, "ipn:2.0");
        assert_eq!(r.select(5_000, &m, &[&two]), Vec::<PeerId>::new());
        assert_eq!(r.select(10_000, &m, &[&two]), vec![PeerId(7)]);
        // Contacts are indexed by start time: 2→3 is 0, 1→2 is 1.
        assert_eq!(r.booked(1), 600);
        // 1000 B of volume, 600 booked: a second 600 B bundle does not fit.
        assert_eq!(r.select(10_000, &m, &[&two]), Vec::<PeerId>::new());
        assert!(r.release_after_forward(&m, &two));
        r.peer_down(30_000, &two);
        assert_eq!(r.booked(1), 0);
    }
}
