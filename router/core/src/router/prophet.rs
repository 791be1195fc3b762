//! PRoPHET (RFC 6693): each node keeps a delivery predictability P(A,X) for
//! every node X it has heard of, and hands a bundle for D to a peer B only if
//! P(B,D) > P(A,D) (the GRTR forwarding strategy, §3.6), or if B is D.
//!
//! - **Encounter** (§2.1.1, eq. 1): when A meets B, P(A,B) becomes
//!   `P_encounter_first` the first time, else
//!   `P + (1 − δ − P) · P_encounter`, where P_encounter is
//!   `P_encounter_max · intvl / I_typ` for an encounter `intvl` after the
//!   previous one (up to I_typ), and `P_encounter_max` beyond.
//! - **Aging** (eq. 2): `P · γ^K` for K time units elapsed; a predictability
//!   that falls below `P_first_threshold` is forgotten.
//! - **Transitivity** (eq. 3): with B's predictabilities,
//!   `P(A,C) = max(P(A,C), P(A,B) · P(B,C) · β)`.
//!
//! Predictabilities are exchanged when a link comes up ([`Router::routing_info`]):
//! the driver hands what one node's router says to the other's. The
//! encoding is CBOR: an array of `[node ID text, P × 10⁶]` pairs.

use std::collections::BTreeMap;

use crate::bundle::{BundleMeta, DtnTime};
use crate::cbor::{self, Reader};
use crate::eid::Eid;
use crate::router::{PeerId, PeerInfo, Router, RoutingInfoError};

/// The parameters of RFC 6693 §3.3, with its recommended values as defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProphetParams {
    pub p_encounter_max: f64,
    pub p_encounter_first: f64,
    pub p_first_threshold: f64,
    /// β: weight of transitivity.
    pub beta: f64,
    /// γ: aging factor per time unit.
    pub gamma: f64,
    /// δ: keeps predictabilities below 1.
    pub delta: f64,
    /// I_typ: the typical interval between encounters (ms). RFC 6693 leaves it
    /// to the deployment; 30 minutes here.
    pub typical_interval_ms: u64,
    /// The time unit of aging (ms): 30 s, as The ONE uses.
    pub time_unit_ms: u64,
}

impl Default for ProphetParams {
    fn default() -> ProphetParams {
        ProphetParams {
            p_encounter_max: 0.7,
            p_encounter_first: 0.5,
            p_first_threshold: 0.1,
            beta: 0.9,
            gamma: 0.999,
            delta: 0.01,
            typical_interval_ms: 1_800_000,
            time_unit_ms: 30_000,
        }
    }
}

/// Fixed-point scale of predictabilities on the wire.
const SCALE: f64 = 1_000_000.0;
/// Bounds what one peer can make us allocate.
const MAX_ENTRIES: u64 = 1 << 20;

/// The PRoPHET router. See the module docs.
#[derive(Debug, Clone)]
pub struct Prophet {
    params: ProphetParams,
    /// This node's ID: never an entry of its own table.
    local: Eid,
    preds: BTreeMap<Eid, f64>,
    /// When `preds` was last aged.
    aged_at: Option<DtnTime>,
    /// When each node was last met (for P_encounter's interval).
    last_met: BTreeMap<Eid, DtnTime>,
    /// The latest predictabilities each neighbour told us.
    theirs: BTreeMap<Eid, BTreeMap<Eid, f64>>,
}

impl Prophet {
    pub fn new(local: Eid, params: ProphetParams) -> Prophet {
        Prophet {
            params,
            local,
            preds: BTreeMap::new(),
            aged_at: None,
            last_met: BTreeMap::new(),
            theirs: BTreeMap::new(),
        }
    }

    /// P(this node, `node`), aged to the last event.
    pub fn predictability(&self, node: &Eid) -> f64 {
        self.preds.get(node).copied().unwrap_or(0.0)
    }

    /// Eq. 2, applied for the whole time units since the last aging.
    fn age(&mut self, now: DtnTime) {
        let unit = self.params.time_unit_ms.max(1);
        let Some(then) = self.aged_at else {
            self.aged_at = Some(now);
            return;
        };
        let units = now.saturating_sub(then) / unit;
        if units == 0 {
            return;
        }
        self.aged_at = Some(then + units * unit);
        let factor = self.params.gamma.powf(units as f64);
        let threshold = self.params.p_first_threshold;
        self.preds.retain(|_, p| {
            *p *= factor;
            *p >= threshold
        });
    }
}

impl Router for Prophet {
    fn name(&self) -> &'static str {
        "prophet"
    }

    fn select(&mut self, now: DtnTime, bundle: &BundleMeta, peers: &[&PeerInfo]) -> Vec<PeerId> {
        self.age(now);
        let dest = bundle.destination.node_id();
        let mine = self.predictability(&dest);
        peers
            .iter()
            .filter(|p| {
                p.node_id == dest
                    || self.theirs.get(&p.node_id).and_then(|t| t.get(&dest)).is_some_and(|theirs| *theirs > mine)
            })
            .map(|p| p.id)
            .collect()
    }

    fn release_after_forward(&self, bundle: &BundleMeta, peer: &PeerInfo) -> bool {
        bundle.destination.is_on_node(&peer.node_id)
    }

    fn peer_up(&mut self, now: DtnTime, peer: &PeerInfo) {
        self.age(now);
        let b = peer.node_id.clone();
        let p = self.params;
        // Eq. 1.
        let updated = match self.preds.get(&b) {
            None => p.p_encounter_first,
            Some(&old) => {
                let intvl = self.last_met.get(&b).map_or(u64::MAX, |t| now.saturating_sub(*t));
                let p_enc = if intvl < p.typical_interval_ms {
                    p.p_encounter_max * intvl as f64 / p.typical_interval_ms.max(1) as f64
                } else {
                    p.p_encounter_max
                };
                old + (1.0 - p.delta - old) * p_enc
            }
        };
        self.preds.insert(b.clone(), updated);
        self.last_met.insert(b.clone(), now);
        // Eq. 3 with what B told us (if it already did).
        let Some(theirs) = self.theirs.get(&b) else { return };
        for (c, p_bc) in theirs {
            if *c == self.local || *c == b {
                continue;
            }
            let via = updated * p_bc * p.beta;
            let entry = self.preds.entry(c.clone()).or_insert(0.0);
            if via > *entry {
                *entry = via;
            }
        }
    }

    fn routing_info(&mut self, now: DtnTime) -> Option<Vec<u8>> {
        self.age(now);
        let mut out = Vec::with_capacity(16 + self.preds.len() * 24);
        cbor::write_array(&mut out, self.preds.len() as u64);
        for (eid, p) in &self.preds {
            cbor::write_array(&mut out, 2);
            cbor::write_text(&mut out, &eid.to_string());
            cbor::write_uint(&mut out, (p.clamp(0.0, 1.0) * SCALE).round() as u64);
        }
        Some(out)
    }

    fn handle_routing_info(&mut self, _now: DtnTime, from: &Eid, info: &[u8]) -> Result<(), RoutingInfoError> {
        let mut r = Reader::new(info);
        let malformed = |r: &Reader<'_>| RoutingInfoError::Malformed { from: from.clone(), offset: r.position() };
        let n = match r.read_array() {
            Ok(Some(n)) if n <= MAX_ENTRIES => n,
            _ => return Err(malformed(&r)),
        };
        let mut table = BTreeMap::new();
        for _ in 0..n {
            if r.read_array() != Ok(Some(2)) {
                return Err(malformed(&r));
            }
            let eid: Eid = match r.read_text().ok().map(str::parse) {
                Some(Ok(e)) => e,
                _ => return Err(malformed(&r)),
            };
            let p = match r.read_uint() {
                Ok(p) if p as f64 <= SCALE => p as f64 / SCALE,
                _ => return Err(malformed(&r)),
            };
            table.insert(eid, p);
        }
        if !r.is_empty() {
            return Err(malformed(&r));
        }
        self.theirs.insert(from.clone(), table);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::tests::{meta, peer};

    fn eid(s: &str) -> Eid {
        s.parse().unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn encounters_follow_equation_1() {
        let params = ProphetParams { typical_interval_ms: 1000, time_unit_ms: 1_000_000, ..Default::default() };
        let mut a = Prophet::new(eid("dtn://a/"), params);
        let b = peer(1, "dtn://b/");
        a.peer_up(0, &b);
        assert!(close(a.predictability(&eid("dtn://b/")), 0.5));
        // Met again 500 ms later: P_enc = 0.7 · 0.5 = 0.35.
        a.peer_up(500, &b);
        assert!(close(a.predictability(&eid("dtn://b/")), 0.5 + (1.0 - 0.01 - 0.5) * 0.35));
        // After I_typ: P_enc = 0.7.
        let before = a.predictability(&eid("dtn://b/"));
        a.peer_up(5000, &b);
        assert!(close(a.predictability(&eid("dtn://b/")), before + (0.99 - before) * 0.7));
    }

    #[test]
    fn aging_and_threshold_follow_equation_2() {
        let params = ProphetParams { gamma: 0.5, time_unit_ms: 10, ..Default::default() };
        let mut a = Prophet::new(eid("dtn://a/"), params);
        a.peer_up(0, &peer(1, "dtn://b/"));
        a.routing_info(25); // two whole units: 0.5 · 0.25
        assert!(close(a.predictability(&eid("dtn://b/")), 0.125));
        a.routing_info(30); // 0.0625 < 0.1: forgotten
        assert_eq!(a.predictability(&eid("dtn://b/")), 0.0);
    }

    #[test]
    fn transitivity_and_grtr_forwarding() {
        let mut a = Prophet::new(eid("dtn://a/"), ProphetParams::default());
        let mut b = Prophet::new(eid("dtn://b/"), ProphetParams::default());
        let (pa, pb, pc) = (peer(1, "dtn://a/"), peer(2, "dtn://b/"), peer(3, "dtn://c/"));
        b.peer_up(0, &pc); // P(b,c) = 0.5
        let info = b.routing_info(0).unwrap();
        a.handle_routing_info(0, &eid("dtn://b/"), &info).unwrap();
        a.peer_up(0, &pb); // P(a,b) = 0.5, P(a,c) = 0.5 · 0.5 · 0.9
        assert!(close(a.predictability(&eid("dtn://c/")), 0.225));
        let m = meta("dtn://c/inbox");
        // b knows c better than a does: a hands it over; b would not give it back.
        assert_eq!(a.select(0, &m, &[&pb]), vec![PeerId(2)]);
        let back = a.routing_info(0).unwrap();
        b.handle_routing_info(0, &eid("dtn://a/"), &back).unwrap();
        assert_eq!(b.select(0, &m, &[&pa]), Vec::<PeerId>::new());
        // The destination itself always gets it, and the copy is then released.
        assert_eq!(b.select(0, &m, &[&pa, &pc]), vec![PeerId(3)]);
        assert!(b.release_after_forward(&m, &pc));
        assert!(!a.release_after_forward(&m, &pb));
    }

    #[test]
    fn malformed_routing_info_is_an_error_with_its_offset() {
        let mut a = Prophet::new(eid("dtn://a/"), ProphetParams::default());
        let from = eid("dtn://b/");
        for (bytes, offset) in [
            (&[0x01][..], 0),                   // a uint, not an array
            (&[0x81, 0x82, 0x61, b'x'][..], 4), // not an EID
            (&[0x80, 0x00][..], 1),             // trailing byte
        ] {
            assert_eq!(
                a.handle_routing_info(0, &from, bytes),
                Err(RoutingInfoError::Malformed { from: from.clone(), offset })
            );
        }
        let mut too_big = vec![];
        cbor::write_array(&mut too_big, 1);
        cbor::write_array(&mut too_big, 2);
        cbor::write_text(&mut too_big, "dtn://c/");
        cbor::write_uint(&mut too_big, 2_000_000);
        assert!(a.handle_routing_info(0, &from, &too_big).is_err());
    }
}
