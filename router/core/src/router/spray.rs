//! Spray-and-wait (Spyropoulos, Psounis & Raghavendra, WDTN 2005): a bundle
//! starts with L copies. In the spray phase a node holding n > 1 copies hands
//! some to every node it meets that has none:
//!
//! - **vanilla**: one copy per encounter (n → n − 1, the peer gets 1);
//! - **binary**: half of them (the peer gets ⌊n/2⌋, this node keeps ⌈n/2⌉).
//!
//! A node left with one copy waits until it meets the destination (direct
//! delivery). The count a peer gets travels in the bundle's copy count block
//! ([`crate::bundle::block_types::COPY_COUNT`]); a bundle created here, or
//! received without one, holds L.

use crate::bundle::{BundleMeta, DtnTime};
use crate::router::{PeerId, PeerInfo, Router};

/// How copies are split at an encounter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SprayMode {
    /// One copy per encounter.
    Vanilla,
    /// Half of the copies per encounter.
    Binary,
}

/// The spray-and-wait router. See the module docs.
#[derive(Debug, Clone)]
pub struct SprayAndWait {
    copies: u64,
    mode: SprayMode,
}

impl SprayAndWait {
    /// `copies` is L, at least 1 (L = 1 is direct delivery).
    pub fn new(copies: u64, mode: SprayMode) -> SprayAndWait {
        SprayAndWait { copies: copies.max(1), mode }
    }

    /// Copies a bundle holds here.
    fn held(&self, bundle: &BundleMeta) -> u64 {
        bundle.copies.unwrap_or(self.copies)
    }

    /// What a peer gets from a node holding `n` copies (0: nothing to give).
    fn share(&self, n: u64) -> u64 {
        match (n, self.mode) {
            (0 | 1, _) => 0,
            (_, SprayMode::Vanilla) => 1,
            (n, SprayMode::Binary) => n / 2,
        }
    }
}

impl Router for SprayAndWait {
    fn name(&self) -> &'static str {
        match self.mode {
            SprayMode::Vanilla => "spray-and-wait",
            SprayMode::Binary => "binary-spray-and-wait",
        }
    }

    fn select(&mut self, _now: DtnTime, bundle: &BundleMeta, peers: &[&PeerInfo]) -> Vec<PeerId> {
        if let Some(p) = peers.iter().find(|p| bundle.destination.is_on_node(&p.node_id)) {
            return vec![p.id];
        }
        // Spray to as many peers as the copies allow, in the order given; the
        // same split is then taken in `hand_over`.
        let mut held = self.held(bundle);
        let mut chosen = vec![];
        for p in peers {
            let give = self.share(held);
            if give == 0 {
                break;
            }
            held -= give;
            chosen.push(p.id);
        }
        chosen
    }

    fn hand_over(&mut self, _now: DtnTime, bundle: &mut BundleMeta, peer: &PeerInfo) -> Option<u64> {
        let held = self.held(bundle);
        if bundle.destination.is_on_node(&peer.node_id) {
            bundle.copies = Some(held);
            return Some(1);
        }
        let give = self.share(held);
        bundle.copies = Some(held - give);
        Some(give)
    }

    fn release_after_forward(&self, bundle: &BundleMeta, peer: &PeerInfo) -> bool {
        bundle.destination.is_on_node(&peer.node_id) || bundle.copies == Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::tests::{meta, peer};

    /// Hands copies to each selected peer, as the node does.
    fn spray(r: &mut SprayAndWait, m: &mut BundleMeta, peers: &[&PeerInfo]) -> Vec<(u64, u64)> {
        let chosen = r.select(0, m, peers);
        chosen
            .iter()
            .map(|id| {
                let p = peers.iter().find(|p| p.id == *id).unwrap();
                (id.0, r.hand_over(0, m, p).unwrap())
            })
            .collect()
    }

    #[test]
    fn binary_halves_the_copies_at_each_encounter() {
        let mut r = SprayAndWait::new(8, SprayMode::Binary);
        let mut m = meta("dtn://d/x");
        let (a, b, c, e) = (peer(1, "dtn://a/"), peer(2, "dtn://b/"), peer(3, "dtn://c/"), peer(4, "dtn://e/"));
        assert_eq!(spray(&mut r, &mut m, &[&a]), vec![(1, 4)]);
        assert_eq!(m.copies, Some(4));
        // 4 → 2 to b, 2 → 1 to c, then nothing left to give e.
        assert_eq!(spray(&mut r, &mut m, &[&b, &c, &e]), vec![(2, 2), (3, 1)]);
        assert_eq!(m.copies, Some(1));
        assert_eq!(spray(&mut r, &mut m, &[&e]), vec![]);
        assert!(!r.release_after_forward(&m, &a));
        // A relay that got 3 copies keeps 2 after one encounter.
        let mut relayed = BundleMeta { copies: Some(3), ..meta("dtn://d/x") };
        assert_eq!(spray(&mut r, &mut relayed, &[&a]), vec![(1, 1)]);
        assert_eq!(relayed.copies, Some(2));
    }

    #[test]
    fn vanilla_gives_one_copy_per_encounter_and_waits_with_the_last() {
        let mut r = SprayAndWait::new(3, SprayMode::Vanilla);
        let mut m = meta("dtn://d/x");
        let (a, b, c) = (peer(1, "dtn://a/"), peer(2, "dtn://b/"), peer(3, "dtn://c/"));
        assert_eq!(spray(&mut r, &mut m, &[&a, &b, &c]), vec![(1, 1), (2, 1)]);
        assert_eq!(m.copies, Some(1));
        assert_eq!(r.select(0, &m, &[&c]), vec![]);
    }

    #[test]
    fn the_destination_always_gets_it_and_the_copy_is_released() {
        let mut r = SprayAndWait::new(4, SprayMode::Binary);
        let mut m = BundleMeta { copies: Some(1), ..meta("dtn://d/x") };
        let (a, d) = (peer(1, "dtn://a/"), peer(2, "dtn://d/"));
        assert_eq!(spray(&mut r, &mut m, &[&a, &d]), vec![(2, 1)]);
        assert!(r.release_after_forward(&m, &d));
    }

    #[test]
    fn failed_transmissions_give_the_copies_back() {
        let mut r = SprayAndWait::new(8, SprayMode::Binary);
        let mut m = meta("dtn://d/x");
        let a = peer(1, "dtn://a/");
        assert_eq!(spray(&mut r, &mut m, &[&a]), vec![(1, 4)]);
        r.take_back(&mut m, 4);
        assert_eq!(m.copies, Some(8));
    }
}
