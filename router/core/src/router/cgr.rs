//! Contact-graph routing (as ION's CGR does it, simplified to one route per
//! decision): the contacts of a [`ContactPlan`] are the vertices of a graph,
//! and a Dijkstra search finds the route with the earliest arrival at the
//! destination node. Along a route, a bundle of size S entering contact C at
//! time t starts at `max(t, C.start)`, leaves `S / C.rate` later, which must
//! be no later than `C.end`, and arrives `C.owlt` after that. A contact whose
//! remaining volume is below S is skipped: this node books every bundle it
//! sends on its first-hop contact (it knows no other node's bookings).
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Index of the first contact in the plan.
    pub first_hop: usize,
    /// When the bundle reaches the destination node (DTN ms).
    pub arrival: DtnTime,
}

/// The contact-graph router. See the module docs.
#[derive(Debug, Clone)]
pub struct Cgr {
    local: Eid,
    plan: Arc<ContactPlan>,
    /// Bytes booked on this node's own contacts, by contact index.
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
        // Dijkstra over contacts: key (arrival at the contact's receiver, contact).
        let mut best: HashMap<usize, DtnTime> = HashMap::new();
        let mut first_hop: HashMap<usize, usize> = HashMap::new();
        let mut heap = BinaryHeap::new();
        for &i in self.plan.from(&self.local) {
            let Some(c) = self.plan.get(i) else { continue };
            if Some(&c.to) == avoid {
                continue;
            }
            let left = c.volume().saturating_sub(self.booked.get(&i).copied().unwrap_or(0));
            if left < size {
                continue;
            }
            if let Some(arrival) = self.arrival(i, now, size) {
                best.insert(i, arrival);
                first_hop.insert(i, i);
                heap.push(Reverse((arrival, i)));
            }
        }
        let mut done: HashSet<usize> = HashSet::new();
        while let Some(Reverse((arrival, i))) = heap.pop() {
            if !done.insert(i) {
                continue;
            }
            let (Some(c), Some(&first)) = (self.plan.get(i), first_hop.get(&i)) else { continue };
            if &c.to == dest {
                return Some(Route { first_hop: first, arrival });
            }
            for &j in self.plan.from(&c.to) {
                let Some(next) = self.plan.get(j) else { continue };
                if done.contains(&j) || next.to == self.local || next.volume() < size {
                    continue;
                }
                let Some(t) = self.arrival(j, arrival, size) else { continue };
                if best.get(&j).is_none_or(|b| t < *b) {
                    best.insert(j, t);
                    first_hop.insert(j, first);
                    heap.push(Reverse((t, j)));
                }
            }
        }
        None
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
        *self.booked.entry(route.first_hop).or_insert(0) += bundle.size;
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
