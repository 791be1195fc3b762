//! Routing (the "forwarding decision" of RFC 9171 §5.4 step 2): which connected
//! peers a bundle goes to now. A router only decides; the node does the sending.
//!
//! Routers see metadata, never payloads, and take `now` as an argument, so the
//! same code runs in the daemon and in the simulator.
//!
//! - [`Epidemic`] and [`StaticRouter`] here;
//! - [`spray::SprayAndWait`]: binary and vanilla spray-and-wait, L copies;
//! - [`prophet::Prophet`]: PRoPHET (RFC 6693) delivery predictabilities;
//! - [`cgr::Cgr`]: contact-graph routing over a [`crate::contact::ContactPlan`].
//!
//! The node asks a router three things: whom to send a bundle to now
//! ([`Router::select`]), how many copies each of those gets
//! ([`Router::hand_over`], multi-copy routers that count copies), and whether
//! to drop its own copy once a peer has it ([`Router::release_after_forward`]).
//! Routers that learn from their neighbours exchange [`Router::routing_info`]
//! when a link comes up; the driver carries it.

pub mod cgr;
pub mod prophet;
pub mod spray;

use crate::bundle::{BundleMeta, DtnTime};
use crate::eid::Eid;

/// A router and its parameters, as a config names it: what ferryd and the
/// simulator build each node's router from.
#[derive(Debug, Clone, PartialEq)]
pub enum RouterSpec {
    Epidemic,
    Static(Vec<StaticRoute>),
    SprayAndWait {
        copies: u64,
        mode: spray::SprayMode,
    },
    Prophet(prophet::ProphetParams),
    /// Contact-graph routing; every node shares the plan.
    Cgr(std::sync::Arc<crate::contact::ContactPlan>),
}

impl RouterSpec {
    /// The router for the node `local`.
    pub fn build(&self, local: &Eid) -> Box<dyn Router> {
        match self {
            RouterSpec::Epidemic => Box::new(Epidemic),
            RouterSpec::Static(routes) => Box::new(StaticRouter::new(routes.clone())),
            RouterSpec::SprayAndWait { copies, mode } => Box::new(spray::SprayAndWait::new(*copies, *mode)),
            RouterSpec::Prophet(params) => Box::new(prophet::Prophet::new(local.clone(), *params)),
            RouterSpec::Cgr(plan) => Box::new(cgr::Cgr::new(local.clone(), plan.clone())),
        }
    }

    /// The router's name, as configs spell it.
    pub fn name(&self) -> &'static str {
        match self {
            RouterSpec::Epidemic => "epidemic",
            RouterSpec::Static(_) => "static",
            RouterSpec::SprayAndWait { mode: spray::SprayMode::Vanilla, .. } => "spray-and-wait",
            RouterSpec::SprayAndWait { mode: spray::SprayMode::Binary, .. } => "binary-spray-and-wait",
            RouterSpec::Prophet(_) => "prophet",
            RouterSpec::Cgr(_) => "cgr",
        }
    }
}

/// Routing information from a peer that this router could not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoutingInfoError {
    /// Not the encoding this router sends (another router, or a corrupt message).
    #[error("routing information from {from} is malformed at byte {offset}")]
    Malformed { from: Eid, offset: usize },
}

/// A handle the driver assigns to a link-layer neighbour (a CLA session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// What the convergence layer knows about a connected peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub id: PeerId,
    /// The peer's node ID (from SESS_INIT, a beacon or the config).
    pub node_id: Eid,
    /// Largest bundle the link takes whole; larger ones are fragmented (§5.8).
    pub mtu: Option<u64>,
    /// Link rate in bytes per second, if known.
    pub rate_bps: Option<u64>,
}

/// A routing algorithm.
pub trait Router: Send {
    /// Short name, as used in configs ("epidemic", "static").
    fn name(&self) -> &'static str;

    /// The peers, among `peers` (all connected peers that do not already have the
    /// bundle and did not send it to us), that should get `bundle` now.
    fn select(&mut self, now: DtnTime, bundle: &BundleMeta, peers: &[&PeerInfo]) -> Vec<crate::router::PeerId>;

    /// Whether this node may drop its copy once `bundle` reached `peer`
    /// (single-copy routing). Multi-copy routers keep it until it expires.
    fn release_after_forward(&self, bundle: &BundleMeta, peer: &PeerInfo) -> bool;

    fn peer_up(&mut self, _now: DtnTime, _peer: &PeerInfo) {}
    fn peer_down(&mut self, _now: DtnTime, _peer: &PeerInfo) {}

    /// Called for each peer that [`Router::select`] chose, in its order, as the
    /// transmission is ordered: the copies `peer` gets (they go in the bundle's
    /// copy count block), taken from `bundle.copies`. `None`: this router does
    /// not count copies and the transmission carries no count.
    fn hand_over(&mut self, _now: DtnTime, _bundle: &mut BundleMeta, _peer: &PeerInfo) -> Option<u64> {
        None
    }

    /// A transmission that carried `copies` failed or was refused: they are this
    /// node's again.
    fn take_back(&mut self, bundle: &mut BundleMeta, copies: u64) {
        bundle.copies = Some(bundle.copies.unwrap_or(0).saturating_add(copies));
    }

    /// What this router tells a neighbour when a link comes up, if anything
    /// (PRoPHET's delivery predictabilities).
    fn routing_info(&mut self, _now: DtnTime) -> Option<Vec<u8>> {
        None
    }

    /// What node `from`'s router told us (its [`Router::routing_info`]).
    fn handle_routing_info(&mut self, _now: DtnTime, _from: &Eid, _info: &[u8]) -> Result<(), RoutingInfoError> {
        Ok(())
    }
}

/// Epidemic routing (Vahdat & Becker 2000): every peer that does not have a
/// bundle gets a copy; the copy here stays until the bundle expires or is
/// delivered to its destination node.
#[derive(Debug, Default)]
pub struct Epidemic;

impl Router for Epidemic {
    fn name(&self) -> &'static str {
        "epidemic"
    }

    fn select(&mut self, _now: DtnTime, _bundle: &BundleMeta, peers: &[&PeerInfo]) -> Vec<PeerId> {
        peers.iter().map(|p| p.id).collect()
    }

    fn release_after_forward(&self, bundle: &BundleMeta, peer: &PeerInfo) -> bool {
        bundle.destination.is_on_node(&peer.node_id)
    }
}

/// One static route: destinations matching `pattern` go through node `via`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    /// An EID, or an EID prefix ending in `*` (`dtn://camp/*`, `ipn:5.*`, `*`).
    pub pattern: String,
    /// Node ID of the next hop.
    pub via: Eid,
}

impl StaticRoute {
    pub fn matches(&self, destination: &Eid) -> bool {
        let dst = destination.to_string();
        match self.pattern.strip_suffix('*') {
            Some(prefix) => dst.starts_with(prefix),
            None => dst == self.pattern,
        }
    }
}

/// Static routing: the first matching route names the next hop. A peer that is
/// the destination node itself is always used directly. Single copy: the bundle
/// is released once the next hop has it.
#[derive(Debug, Default)]
pub struct StaticRouter {
    routes: Vec<StaticRoute>,
}

impl StaticRouter {
    pub fn new(routes: Vec<StaticRoute>) -> StaticRouter {
        StaticRouter { routes }
    }

    pub fn routes(&self) -> &[StaticRoute] {
        &self.routes
    }
}

impl Router for StaticRouter {
    fn name(&self) -> &'static str {
        "static"
    }

    fn select(&mut self, _now: DtnTime, bundle: &BundleMeta, peers: &[&PeerInfo]) -> Vec<PeerId> {
        if let Some(p) = peers.iter().find(|p| bundle.destination.is_on_node(&p.node_id)) {
            return vec![p.id];
        }
        let Some(route) = self.routes.iter().find(|r| r.matches(&bundle.destination)) else {
            return vec![];
        };
        peers.iter().filter(|p| p.node_id == route.via).map(|p| p.id).take(1).collect()
    }

    fn release_after_forward(&self, _bundle: &BundleMeta, _peer: &PeerInfo) -> bool {
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bundle::{BundleId, CreationTimestamp};

    pub(crate) fn meta(dst: &str) -> BundleMeta {
        BundleMeta {
            id: BundleId {
                source: "dtn://src/".parse().unwrap(),
                creation: CreationTimestamp { time: 1, seq: 0 },
                fragment: None,
            },
            destination: dst.parse().unwrap(),
            report_to: Eid::Null,
            flags: 0,
            lifetime_ms: 1000,
            expires_at: 1001,
            received_at: 1,
            age_at_receipt_ms: None,
            hop_count: None,
            previous_node: None,
            size: 10,
            payload_len: 1,
            total_adu_len: None,
            forwarded_to: vec![],
            discard_blocks: vec![],
            copies: None,
        }
    }

    pub(crate) fn peer(id: u64, node: &str) -> PeerInfo {
        PeerInfo { id: PeerId(id), node_id: node.parse().unwrap(), mtu: None, rate_bps: None }
    }

    #[test]
    fn specs_build_the_router_they_name() {
        let plan = std::sync::Arc::new(crate::contact::ContactPlan::default());
        let local: Eid = "ipn:1.0".parse().unwrap();
        for spec in [
            RouterSpec::Epidemic,
            RouterSpec::Static(vec![]),
            RouterSpec::SprayAndWait { copies: 4, mode: spray::SprayMode::Vanilla },
            RouterSpec::SprayAndWait { copies: 4, mode: spray::SprayMode::Binary },
            RouterSpec::Prophet(prophet::ProphetParams::default()),
            RouterSpec::Cgr(plan),
        ] {
            assert_eq!(spec.build(&local).name(), spec.name());
        }
    }

    #[test]
    fn epidemic_floods_and_releases_only_at_the_destination() {
        let (a, b) = (peer(1, "dtn://a/"), peer(2, "dtn://b/"));
        let m = meta("dtn://b/inbox");
        assert_eq!(Epidemic.select(0, &m, &[&a, &b]), vec![PeerId(1), PeerId(2)]);
        assert!(!Epidemic.release_after_forward(&m, &a));
        assert!(Epidemic.release_after_forward(&m, &b));
    }

    #[test]
    fn static_routes_pick_the_first_match_and_prefer_the_destination() {
        let mut r = StaticRouter::new(vec![
            StaticRoute { pattern: "dtn://far/*".into(), via: "dtn://gw/".parse().unwrap() },
            StaticRoute { pattern: "*".into(), via: "dtn://default/".parse().unwrap() },
        ]);
        let (gw, dflt, far) = (peer(1, "dtn://gw/"), peer(2, "dtn://default/"), peer(3, "dtn://far/"));
        assert_eq!(r.select(0, &meta("dtn://far/x"), &[&gw, &dflt]), vec![PeerId(1)]);
        assert_eq!(r.select(0, &meta("dtn://far/x"), &[&gw, &dflt, &far]), vec![PeerId(3)]);
        assert_eq!(r.select(0, &meta("ipn:4.1"), &[&gw, &dflt]), vec![PeerId(2)]);
        assert_eq!(r.select(0, &meta("ipn:4.1"), &[&gw]), Vec::<PeerId>::new());
        let exact = StaticRoute { pattern: "ipn:4.1".into(), via: Eid::ipn_node(9) };
        assert!(exact.matches(&"ipn:4.1".parse().unwrap()));
        assert!(!exact.matches(&"ipn:4.10".parse().unwrap()));
    }
}
