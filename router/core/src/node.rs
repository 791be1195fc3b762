//! The node: RFC 9171 §5 bundle processing as a state machine.
//!
//! `Node` holds metadata only (never payloads) and does no I/O. Its methods fall
//! in three groups, in the manner of quinn-proto's `Connection`:
//!
//! - **inputs** (`handle_*`, `register`, `send`, `delete`): something happened;
//!   every one that depends on time takes `now`;
//! - **outputs**: [`Node::poll_action`] yields what the driver must do —
//!   persist or delete a bundle, deliver it to an application, transmit it to a
//!   peer, reassemble fragments — and [`Node::poll_timeout`] says when to call
//!   [`Node::handle_timeout`] next;
//! - **getters** for listings and status.
//!
//! After every input, drain `poll_action` and carry the actions out in order.
//!
//! The storage promise is kept by ordering: a bundle the node accepts first
//! comes out as [`Action::Persist`]; nothing else happens to it (no delivery,
//! no forwarding, no reception report) until the driver reports the write
//! with [`Node::handle_persisted`]. The driver acknowledges a bundle to
//! whoever gave it (API caller, TCPCL peer) only once the write is durable.
//! A driver may report the write as soon as the store has it in hand, so
//! that forwarding and delivery overlap the sync; should the sync then fail,
//! it calls [`Node::handle_write_failed`] and the bundle, never
//! acknowledged, is dropped (its sender still has it).
//!
//! A bundle delivered here is remembered, by ID, until it expires (at most
//! [`NodeConfig::delivered_memory`] of them, those expiring first forgotten
//! first): a copy that arrives again — a peer that crashed before it
//! recorded the forwarding sends it again — is a duplicate, not a second
//! delivery. The driver persists what is remembered with the deletion
//! ([`Action::Delete`]'s `delivered`), drops what is forgotten
//! ([`Action::ForgetDelivered`]) and hands it back at start-up
//! ([`Node::handle_recovered_delivered`]).
//!
//! Every deletion, whatever its reason (expiry, hop limit, a block's flags, an
//! operator's request), goes through one path that sends the deletion status
//! report when the bundle asked for one (the bug of dtn7-rs #85 is expiry
//! bypassing that path).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

// SipHash (std's default) was a tenth of a simulation's time in these tables;
// foldhash is seeded per process too, so IDs from the network cannot be
// chosen to collide without seeing the hashes.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::admin::{self, ReasonCode, StatusReport};
use crate::bpsec::{self, BpsecError};
use crate::bundle::{
    block_flags, block_types, bundle_flags, Bundle, BundleId, BundleMeta, CreationTimestamp, DtnTime, HopCount,
};
use crate::codec::{self, BundleBuilder, DecodeError, ForwardEdit};
use crate::eid::Eid;
use crate::router::{PeerId, PeerInfo, Router, RoutingInfoError};

/// How long a failed transmission waits before the bundle is offered again.
const RETRY_AFTER_MS: u64 = 5_000;

/// Node settings.
pub struct NodeConfig {
    /// This node's node ID (`dtn://name/` or `ipn:N.0`).
    pub node_id: Eid,
    pub router: Box<dyn Router>,
    /// Lifetime of the status reports this node generates.
    pub report_lifetime_ms: u64,
    /// Hop limit put on bundles created here (`None`: no hop count block).
    pub default_hop_limit: Option<u64>,
    /// Accept bundles whose primary block has neither a CRC nor a BIB. RFC 9171
    /// §4.3.1 forbids them, but dtn7-rs sends exactly these (INTEROP-NOTES), and
    /// accepting them loses nothing; `false` gives the strict verdict.
    pub accept_unprotected_primary: bool,
    /// BPSec policy (RFC 9172 §5) applied to the bundles this node creates
    /// and to those it receives for its own endpoints; `None`: security
    /// blocks pass through unprocessed.
    pub security: Option<Box<dyn SecurityPolicy>>,
    /// How many delivered bundles' IDs the node remembers (until each
    /// bundle's expiry) to refuse copies that arrive again. Default 100,000
    /// (some 10 MB).
    pub delivered_memory: usize,
}

/// A node's BPSec policy, handed in by the driver like the router: what to
/// add to the bundles this node creates, and what to require of the bundles
/// that arrive for it. The node calls it synchronously under its own state;
/// keys, and any randomness (IVs, content keys), are the implementation's,
/// so the node itself stays free of I/O.
pub trait SecurityPolicy: Send {
    /// A bundle this node built (an application's send, a status report,
    /// routing information): returns the bytes to keep and send instead
    /// (signed, encrypted), or `None` to keep them as they are.
    fn originate(&mut self, bytes: &[u8], bundle: &Bundle) -> Result<Option<Vec<u8>>, OriginateError>;

    /// A bundle (not a fragment: fragments are checked once reassembled) for
    /// an endpoint of this node, before it is stored: returns the bytes to
    /// store and deliver instead (decrypted), `None` for "as they are", or
    /// why the bundle must be deleted.
    fn accept_local(&mut self, bytes: &[u8], bundle: &Bundle) -> Result<Option<Vec<u8>>, Refusal>;
}

/// Why a [`SecurityPolicy`] could not secure a bundle this node built; the
/// bundle is not created (nothing goes out unprotected by mistake).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OriginateError {
    /// Signing or encrypting failed.
    #[error(transparent)]
    Bpsec(#[from] BpsecError),
    /// The policy says to encrypt for this destination, and no key for it is known.
    #[error("payloads for {0} must be encrypted, and no key for that node is trusted")]
    NoKeyFor(Eid),
}

/// Why a [`SecurityPolicy`] refused a bundle for this node (RFC 9172 §5.1.2:
/// the bundle is deleted, with a status report if it asked for one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A security operation failed (a forged or altered bundle, a wrong key)
    /// or a security block is malformed.
    #[error(transparent)]
    Failed(#[from] BpsecError),
    /// The endpoint requires a signature by the bundle's source verified with
    /// a trusted key, and the bundle has none (`signer`: a signature by this
    /// other or untrusted node was all there was).
    #[error("{endpoint} requires a signature by {source_node} with a trusted key; {}", match .signer {
        Some(s) => format!("the only signature is by {s}, whose key is not trusted or who is not the source"),
        None => "the bundle is not signed".to_owned(),
    })]
    MissingSignature { endpoint: Eid, source_node: Eid, signer: Option<Eid> },
    /// A security block this node cannot process asks for the bundle's deletion.
    #[error("a security block that cannot be processed here asks for the bundle's deletion")]
    Unprocessable,
}

impl Refusal {
    /// The status report reason (RFC 9172 §11.2).
    pub fn reason(&self) -> ReasonCode {
        match self {
            Refusal::Failed(e) => ReasonCode::from_code(e.reason_code()).unwrap_or(ReasonCode::FailedSecurityOperation),
            Refusal::MissingSignature { .. } => ReasonCode::MissingSecurityOperation,
            Refusal::Unprocessable => ReasonCode::BlockUnsupported,
        }
    }
}

impl NodeConfig {
    pub fn new(node_id: Eid, router: Box<dyn Router>) -> NodeConfig {
        NodeConfig {
            node_id,
            router,
            report_lifetime_ms: 24 * 3600 * 1000,
            default_hop_limit: Some(32),
            accept_unprotected_primary: true,
            security: None,
            delivered_memory: 100_000,
        }
    }
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Store this bundle durably, then call [`Node::handle_persisted`].
    Persist { meta: BundleMeta, bytes: Vec<u8> },
    /// Replace the stored metadata of a bundle.
    UpdateMeta(BundleMeta),
    /// Remove the bundle from the store. With `delivered`, it was delivered
    /// here: remember its ID until that time (its expiry), in the same write.
    Delete { id: BundleId, reason: Option<ReasonCode>, delivered: Option<DtnTime> },
    /// Forget these delivered bundles' IDs (expired, or memory full).
    ForgetDelivered(Vec<BundleId>),
    /// Hand the bundle to the application registered on `endpoint`; call
    /// [`Node::handle_delivered`] once the application has it.
    Deliver { id: BundleId, endpoint: Eid },
    /// Send the bundle to a peer: load it, pass it through [`transmission`] with
    /// this action, hand the resulting bundle(s) to the CLA, then call
    /// [`Node::handle_transmitted`].
    Transmit(Transmit),
    /// All fragments of one ADU are here: load them, [`codec::reassemble`] them
    /// and feed the whole bundle to [`Node::handle_received`].
    Reassemble { parts: Vec<BundleId> },
}

/// A transmission order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub peer: PeerId,
    pub id: BundleId,
    pub edit: ForwardEdit,
    /// Fragment to this size when larger (§5.8); `None`: send whole.
    pub max_bundle_size: Option<u64>,
}

/// Turns a stored bundle into the bytes to put on the link for `t`: extension
/// blocks updated (§5.4 step 4) and, when the link needs it, fragmented.
pub fn transmission(stored: &[u8], t: &Transmit) -> Result<Vec<Vec<u8>>, TransmitError> {
    // Stored bundles were validated on arrival, with the node's options.
    let bundle = decode_stored(stored).map_err(TransmitError::Decode)?;
    let bytes = codec::rewrite_for_forward(stored, &bundle, &t.edit);
    match t.max_bundle_size.and_then(|m| usize::try_from(m).ok()) {
        Some(max) if bytes.len() > max => {
            let edited = decode_stored(&bytes).map_err(TransmitError::Decode)?;
            codec::fragment(&bytes, &edited, max).map_err(TransmitError::Fragment)
        }
        _ => Ok(vec![bytes]),
    }
}

/// Decodes a bundle the node stored earlier: it passed validation on arrival,
/// possibly with a primary block that has no CRC (see
/// [`NodeConfig::accept_unprotected_primary`]).
pub fn decode_stored(bytes: &[u8]) -> Result<Bundle, DecodeError> {
    codec::decode_with(bytes, &codec::DecodeOptions::strict().allow_unprotected_primary(true))
}

/// Why a stored bundle could not be made ready for a link.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransmitError {
    /// The stored bytes no longer decode (store corruption).
    #[error("stored bundle does not decode: {0}")]
    Decode(DecodeError),
    /// It had to be fragmented and could not be.
    #[error("cannot fragment: {0}")]
    Fragment(codec::FragmentError),
}

/// Outcome of a transmission, as the CLA reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransmitOutcome {
    /// The peer has it (TCPCL: last XFER_ACK received).
    Sent,
    /// The peer refused it (TCPCL XFER_REFUSE): it will not take this bundle.
    Refused,
    /// The link failed; try again later.
    Failed,
}

/// Why a received bundle was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Rejected {
    /// It is not a valid bundle (RFC 9171 §4).
    #[error("invalid bundle: {0}")]
    Invalid(#[from] DecodeError),
    /// This node already has it (or is still storing it).
    #[error("duplicate of bundle {0}")]
    Duplicate(BundleId),
    /// Its lifetime is over; the deletion report was sent if requested.
    #[error("bundle {0} has expired")]
    Expired(BundleId),
    /// Its hop count exceeds its hop limit (reason 9).
    #[error("bundle {0} exceeded its hop limit")]
    HopLimitExceeded(BundleId),
    /// A block it could not process asked for the bundle's deletion (reason 11).
    #[error("bundle {0} has an unsupported block flagged 'delete bundle'")]
    UnsupportedBlock(BundleId),
    /// The security policy refused it (RFC 9172 §5.1.2).
    #[error("bundle {id} refused by the security policy: {refusal}")]
    Security { id: BundleId, refusal: Box<Refusal> },
}

/// Why the node would not create a bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The source must be this node or one of its endpoints (or `dtn:none`).
    #[error("source {0} is not an endpoint of this node")]
    ForeignSource(Eid),
    /// `dtn:none` is no destination.
    #[error("the destination must not be dtn:none")]
    NullDestination,
    #[error("a bundle's lifetime must be greater than zero")]
    ZeroLifetime,
    /// The bundle built from the request does not decode (a bug; reported, not hidden).
    #[error("the bundle built for this request is invalid: {0}")]
    Encoding(DecodeError),
    /// The node would not take the bundle it built (it was a duplicate or already expired).
    #[error("the node did not accept the new bundle")]
    NotAccepted,
    /// The security policy could not sign or encrypt it.
    #[error("cannot secure the bundle: {0}")]
    Security(#[from] OriginateError),
}

/// A request to create a bundle (the API's `/send`).
#[derive(Debug, Clone)]
pub struct SendRequest {
    /// `None`: this node's ID.
    pub source: Option<Eid>,
    pub destination: Eid,
    pub lifetime_ms: u64,
    /// Bundle processing control flags (report requests, must-not-fragment ...).
    pub flags: u64,
    pub report_to: Option<Eid>,
}

/// Counters for status pages and the simulator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub received: u64,
    pub created: u64,
    pub delivered: u64,
    pub forwarded: u64,
    pub deleted: u64,
    pub expired: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub reports_sent: u64,
    pub reports_received: u64,
}

/// Where a bundle is in its life at this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Persist action issued; nothing else may happen yet.
    Persisting,
    /// In the store, waiting for a route, a peer or an application.
    Stored,
    /// Deliver action issued; waiting for the application.
    Delivering,
}

struct Entry {
    /// Arrival number: this entry's key in `Node::expiry` with `meta.expires_at`.
    order: u64,
    meta: BundleMeta,
    state: State,
    from_peer: Option<PeerId>,
    /// Peers a Transmit action is out for.
    in_flight: Vec<PeerId>,
    /// Copies handed over with transmissions still out (spray-and-wait): they
    /// come back to `meta.copies` if the transmission does not get through.
    granted: Vec<(PeerId, u64)>,
    /// When a failed transmission may be retried (mirrors `Node::retry_at`).
    retry_at: Option<DtnTime>,
    /// Reports and block-flag decisions that wait until the bundle is stored.
    on_persist: Vec<Deferred>,
}

#[derive(Debug, Clone, Copy)]
enum Deferred {
    Report(Kind, ReasonCode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Received,
    Forwarded,
    Delivered,
    Deleted,
}

/// The expiry time of a bundle the node holds.
fn entry_expiry(bundles: &HashMap<BundleId, Entry>, id: &BundleId) -> Option<DtnTime> {
    bundles.get(id).map(|e| e.meta.expires_at)
}

/// Identity of an ADU whose fragments are being collected.
type AduKey = (Eid, CreationTimestamp);

/// The bundle protocol agent state machine. See the module docs.
pub struct Node {
    node_id: Eid,
    router: Box<dyn Router>,
    report_lifetime_ms: u64,
    default_hop_limit: Option<u64>,
    decode_options: codec::DecodeOptions,
    bundles: HashMap<BundleId, Entry>,
    /// Expiry order. Keyed by (time, arrival number) rather than (time, ID):
    /// bundles often share an expiry time, and comparing two integers is far
    /// cheaper than comparing source EIDs (this index was a sixth of ingest).
    expiry: BTreeMap<(DtnTime, u64), BundleId>,
    next_order: u64,
    registrations: BTreeSet<Eid>,
    peers: BTreeMap<PeerId, PeerInfo>,
    /// Peer retry timers: bundle may be offered again at that time.
    retry_at: BTreeSet<(DtnTime, BundleId)>,
    fragments: HashMap<AduKey, Vec<BundleId>>,
    reassembling: HashSet<AduKey>,
    last_creation: (DtnTime, u64),
    actions: VecDeque<Action>,
    stats: NodeStats,
    security: Option<Box<dyn SecurityPolicy>>,
    /// Delivered bundles, until their expiry (see the module docs).
    delivered: HashMap<BundleId, DtnTime>,
    delivered_by_expiry: BTreeSet<(DtnTime, BundleId)>,
    delivered_memory: usize,
}

impl Node {
    pub fn new(cfg: NodeConfig) -> Node {
        Node {
            node_id: cfg.node_id,
            router: cfg.router,
            report_lifetime_ms: cfg.report_lifetime_ms,
            default_hop_limit: cfg.default_hop_limit,
            decode_options: codec::DecodeOptions::strict().allow_unprotected_primary(cfg.accept_unprotected_primary),
            bundles: HashMap::new(),
            expiry: BTreeMap::new(),
            next_order: 0,
            registrations: BTreeSet::new(),
            peers: BTreeMap::new(),
            retry_at: BTreeSet::new(),
            fragments: HashMap::new(),
            reassembling: HashSet::new(),
            last_creation: (0, 0),
            actions: VecDeque::new(),
            stats: NodeStats::default(),
            security: cfg.security,
            delivered: HashMap::new(),
            delivered_by_expiry: BTreeSet::new(),
            delivered_memory: cfg.delivered_memory,
        }
    }

    // ----- getters -----

    pub fn node_id(&self) -> &Eid {
        &self.node_id
    }

    pub fn router_name(&self) -> &'static str {
        self.router.name()
    }

    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// The state of a bundle the node holds.
    pub fn state(&self, id: &BundleId) -> Option<State> {
        self.bundles.get(id).map(|e| e.state)
    }

    /// Number of bundles the node holds (stored or being stored).
    pub fn bundle_count(&self) -> usize {
        self.bundles.len()
    }

    pub fn contains(&self, id: &BundleId) -> bool {
        self.bundles.contains_key(id)
    }

    /// Whether a bundle with this ID was delivered here (and is remembered).
    pub fn was_delivered(&self, id: &BundleId) -> bool {
        self.delivered.contains_key(id)
    }

    pub fn meta(&self, id: &BundleId) -> Option<&BundleMeta> {
        self.bundles.get(id).map(|e| &e.meta)
    }

    /// Metadata of every bundle, in no particular order.
    pub fn bundles(&self) -> impl Iterator<Item = &BundleMeta> {
        self.bundles.values().map(|e| &e.meta)
    }

    /// Finds a bundle by its textual ID (`/delete?bid=`).
    pub fn find(&self, text: &str) -> Option<&BundleId> {
        self.bundles.keys().find(|id| id.to_string() == text)
    }

    pub fn registrations(&self) -> impl Iterator<Item = &Eid> {
        self.registrations.iter()
    }

    pub fn is_registered(&self, eid: &Eid) -> bool {
        self.registrations.contains(eid)
    }

    pub fn peers(&self) -> impl Iterator<Item = &PeerInfo> {
        self.peers.values()
    }

    // ----- outputs -----

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Node::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<DtnTime> {
        let expiry = self.expiry.first_key_value().map(|((t, _), _)| t.saturating_add(1));
        let retry = self.retry_at.first().map(|(t, _)| *t);
        let forget = self.delivered_by_expiry.first().map(|(t, _)| t.saturating_add(1));
        [expiry, retry, forget].into_iter().flatten().min()
    }

    // ----- inputs -----

    /// A delivered bundle's ID found in the store at start-up, remembered
    /// until `until`; one that has expired meanwhile is forgotten.
    pub fn handle_recovered_delivered(&mut self, now: DtnTime, id: BundleId, until: DtnTime) {
        if until < now {
            self.actions.push_back(Action::ForgetDelivered(vec![id]));
        } else {
            self.remember_delivered(id, until);
        }
    }

    /// A bundle found in the store at start-up. No reports, no persist: it is
    /// already stored. Routing and delivery resume as for a fresh arrival.
    pub fn handle_recovered(&mut self, now: DtnTime, meta: BundleMeta) {
        let id = meta.id.clone();
        if self.bundles.contains_key(&id) {
            return;
        }
        let order = self.index_expiry(meta.expires_at, &id);
        self.bundles.insert(
            id.clone(),
            Entry {
                order,
                meta,
                state: State::Stored,
                from_peer: None,
                in_flight: vec![],
                granted: vec![],
                retry_at: None,
                on_persist: vec![],
            },
        );
        self.dispatch(now, &id);
    }

    /// A bundle arrived from a peer (`from`), or from a local application when
    /// `from` is `None` (`/push`). RFC 9171 §5.6 steps 1–3; the rest happens
    /// once it is stored.
    pub fn handle_received(
        &mut self,
        now: DtnTime,
        bytes: Vec<u8>,
        from: Option<PeerId>,
    ) -> Result<BundleId, Rejected> {
        let bundle = match codec::decode_with(&bytes, &self.decode_options) {
            Ok(b) => b,
            Err(e) => {
                self.stats.invalid += 1;
                return Err(Rejected::Invalid(e));
            }
        };
        self.accept(now, bundle, bytes, from)
    }

    /// Creates a bundle from an application's payload (§5.2, §5.3).
    pub fn send(&mut self, now: DtnTime, req: SendRequest, payload: &[u8]) -> Result<BundleId, SendError> {
        let source = req.source.unwrap_or_else(|| self.node_id.clone());
        if !(source.is_null() || source.is_on_node(&self.node_id)) {
            return Err(SendError::ForeignSource(source));
        }
        if req.destination.is_null() {
            return Err(SendError::NullDestination);
        }
        if req.lifetime_ms == 0 {
            return Err(SendError::ZeroLifetime);
        }
        let mut flags = req.flags;
        if source.is_null() {
            // §4.2.3: no status reports about anonymous bundles; §5.2 no fragmenting.
            flags &= !bundle_flags::REPORT_ANY;
            flags |= bundle_flags::MUST_NOT_FRAGMENT;
        }
        let creation = self.next_creation_timestamp(now);
        let report_to = req.report_to.unwrap_or_else(|| source.clone());
        let mut builder =
            BundleBuilder::new(source, req.destination, creation, req.lifetime_ms).report_to(report_to).flags(flags);
        if let Some(limit) = self.default_hop_limit {
            builder = builder.hop_limit(limit);
        }
        let bytes = builder.build(payload);
        let bundle = codec::decode(&bytes).map_err(SendError::Encoding)?;
        let (bytes, bundle) = self.secure_originated(bytes, bundle)?;
        let id = self.accept(now, bundle, bytes, None).map_err(|_| SendError::NotAccepted)?;
        self.stats.created += 1;
        Ok(id)
    }

    /// The driver carried out an [`Action::Persist`]: with `ok`, the store has
    /// the bundle (durable, or at least in the store's hands with its sync on
    /// the way: see the module docs); without, it could not take it.
    pub fn handle_persisted(&mut self, now: DtnTime, id: &BundleId, ok: bool) {
        let Some(entry) = self.bundles.get_mut(id) else { return };
        if entry.state != State::Persisting {
            return;
        }
        if !ok {
            // Not stored, so not accepted: the sender was not acknowledged.
            if let Some(e) = self.bundles.remove(id) {
                self.expiry.remove(&(e.meta.expires_at, e.order));
            }
            return;
        }
        entry.state = State::Stored;
        let expired = now > entry.meta.expires_at;
        let deferred = std::mem::take(&mut entry.on_persist);
        for d in deferred {
            match d {
                Deferred::Report(kind, reason) => self.report(now, id, kind, reason),
            }
        }
        if expired {
            // Its lifetime ran out while it was being written (handle_timeout
            // leaves bundles that are still being written to this point).
            self.stats.expired += 1;
            self.delete(now, id, ReasonCode::LifetimeExpired);
            return;
        }
        // A reassembled bundle replaces its fragments.
        if id.fragment.is_none() {
            let key = (id.source.clone(), id.creation);
            if self.reassembling.remove(&key) {
                for part in self.fragments.remove(&key).unwrap_or_default() {
                    self.discard(&part);
                }
            }
        }
        self.dispatch(now, id);
    }

    /// A write reported with `handle_persisted(ok = true)` before its sync
    /// did not become durable after all (the store failed). The bundle was
    /// never acknowledged, so its sender still has it: it is dropped without a
    /// report, wherever it had got to (a transmission or delivery already on
    /// its way makes it a duplicate later, which the protocol tolerates).
    pub fn handle_write_failed(&mut self, id: &BundleId) {
        if self.bundles.contains_key(id) {
            self.discard(id);
        }
    }

    /// Reassembly of the ADU that `parts` belong to failed (inconsistent
    /// fragments): they are deleted.
    pub fn handle_reassembly_failed(&mut self, now: DtnTime, parts: &[BundleId]) {
        for id in parts {
            self.reassembling.remove(&(id.source.clone(), id.creation));
            self.delete(now, id, ReasonCode::BlockUnintelligible);
        }
    }

    /// An application registered `endpoint`: bundles waiting for it are delivered.
    pub fn register(&mut self, now: DtnTime, endpoint: Eid) {
        if !self.registrations.insert(endpoint.clone()) {
            return;
        }
        let waiting: Vec<BundleId> = self
            .bundles
            .iter()
            .filter(|(_, e)| e.state == State::Stored && e.meta.destination == endpoint)
            .map(|(id, _)| id.clone())
            .collect();
        for id in waiting {
            self.dispatch(now, &id);
        }
    }

    /// The application on `endpoint` is gone. Bundles handed out but not
    /// confirmed go back to waiting; new ones are kept until it returns.
    pub fn unregister(&mut self, endpoint: &Eid) {
        self.registrations.remove(endpoint);
        for e in self.bundles.values_mut() {
            if e.state == State::Delivering && &e.meta.destination == endpoint {
                e.state = State::Stored;
            }
        }
    }

    /// The application took the bundle of an [`Action::Deliver`] (§5.7). Also
    /// valid when the endpoint was unregistered while the bundle was on its
    /// way: the application has it, so it must not be delivered again.
    pub fn handle_delivered(&mut self, now: DtnTime, id: &BundleId) {
        let Some(entry) = self.bundles.get(id) else { return };
        if entry.state == State::Persisting || !entry.meta.destination.is_on_node(&self.node_id) {
            return;
        }
        self.stats.delivered += 1;
        self.report(now, id, Kind::Delivered, ReasonCode::NoInformation);
        let until = entry_expiry(&self.bundles, id);
        if let Some(until) = until {
            self.remember_delivered(id.clone(), until);
        }
        self.remove_as(id, None, until);
    }

    /// Remembers a delivered bundle's ID until `until`, forgetting the ones
    /// that expire first if memory is full.
    fn remember_delivered(&mut self, id: BundleId, until: DtnTime) {
        if self.delivered_memory == 0 {
            return;
        }
        if let Some(old) = self.delivered.insert(id.clone(), until) {
            self.delivered_by_expiry.remove(&(old, id.clone()));
        }
        self.delivered_by_expiry.insert((until, id));
        let mut forgotten = vec![];
        while self.delivered.len() > self.delivered_memory {
            let Some((_, first)) = self.delivered_by_expiry.pop_first() else { break };
            self.delivered.remove(&first);
            forgotten.push(first);
        }
        if !forgotten.is_empty() {
            self.actions.push_back(Action::ForgetDelivered(forgotten));
        }
    }

    /// A delivery did not happen after all (the application went away before
    /// taking it, a write to it failed): the bundle is offered again if its
    /// endpoint is still registered, else it waits for a registration.
    pub fn handle_delivery_failed(&mut self, now: DtnTime, id: &BundleId) {
        if let Some(e) = self.bundles.get_mut(id) {
            if e.state == State::Delivering {
                e.state = State::Stored;
                self.dispatch(now, id);
            }
        }
    }

    pub fn handle_peer_up(&mut self, now: DtnTime, peer: PeerInfo) {
        self.router.peer_up(now, &peer);
        self.peers.insert(peer.id, peer);
        self.route_all(now);
    }

    pub fn handle_peer_down(&mut self, now: DtnTime, peer: PeerId) {
        if let Some(info) = self.peers.remove(&peer) {
            self.router.peer_down(now, &info);
        }
        for e in self.bundles.values_mut() {
            e.in_flight.retain(|p| *p != peer);
            take_back(self.router.as_mut(), e, peer);
        }
    }

    /// Routing information for a peer whose link just came up (PRoPHET's
    /// delivery predictabilities), if the router exchanges any. The driver
    /// hands it to the peer's [`Node::handle_routing_info`].
    pub fn routing_info(&mut self, now: DtnTime) -> Option<Vec<u8>> {
        self.router.routing_info(now)
    }

    /// Routing information from node `from` (what its `routing_info` gave).
    /// Bundles are routed again if that node is connected.
    pub fn handle_routing_info(&mut self, now: DtnTime, from: &Eid, info: &[u8]) -> Result<(), RoutingInfoError> {
        self.router.handle_routing_info(now, from, info)?;
        if self.peers.values().any(|p| &p.node_id == from) {
            self.route_all(now);
        }
        Ok(())
    }

    /// The CLA finished (or gave up on) an [`Action::Transmit`].
    pub fn handle_transmitted(&mut self, now: DtnTime, peer: PeerId, id: &BundleId, outcome: TransmitOutcome) {
        let Some(entry) = self.bundles.get_mut(id) else { return };
        let before = entry.in_flight.len();
        entry.in_flight.retain(|p| *p != peer);
        if entry.in_flight.len() == before {
            return;
        }
        let Some(info) = self.peers.get(&peer) else { return };
        if outcome == TransmitOutcome::Sent {
            // The copies it carried now belong to the peer.
            entry.granted.retain(|(p, _)| *p != peer);
        } else {
            take_back(self.router.as_mut(), entry, peer);
        }
        match outcome {
            TransmitOutcome::Sent | TransmitOutcome::Refused => {
                if !entry.meta.forwarded_to.contains(&info.node_id) {
                    entry.meta.forwarded_to.push(info.node_id.clone());
                }
                if outcome == TransmitOutcome::Sent {
                    self.stats.forwarded += 1;
                    self.report(now, id, Kind::Forwarded, ReasonCode::NoInformation);
                }
                // The report may not remove the bundle, but look again rather than assume.
                let (Some(entry), Some(info)) = (self.bundles.get(id), self.peers.get(&peer)) else { return };
                if self.router.release_after_forward(&entry.meta, info) {
                    self.discard(id);
                } else {
                    self.actions.push_back(Action::UpdateMeta(entry.meta.clone()));
                }
            }
            TransmitOutcome::Failed => {
                if entry.retry_at.is_none() {
                    let t = now + RETRY_AFTER_MS;
                    entry.retry_at = Some(t);
                    self.retry_at.insert((t, id.clone()));
                }
            }
        }
    }

    /// Time passed: expire bundles (§5.4 / §4.2.8 lifetime) and retry transmissions.
    pub fn handle_timeout(&mut self, now: DtnTime) {
        let mut still_writing = vec![];
        while let Some(((t, order), _)) = self.expiry.first_key_value() {
            let (t, order) = (*t, *order);
            if t >= now {
                break;
            }
            let Some(id) = self.expiry.remove(&(t, order)) else { break };
            if self.bundles.get(&id).is_some_and(|e| e.state == State::Persisting) {
                // Let the write finish first; handle_persisted expires it.
                still_writing.push(((t, order), id));
                continue;
            }
            self.stats.expired += 1;
            self.delete(now, &id, ReasonCode::LifetimeExpired);
        }
        self.expiry.extend(still_writing);
        let mut forgotten = vec![];
        while let Some((t, _)) = self.delivered_by_expiry.first() {
            if *t >= now {
                break;
            }
            let Some((_, id)) = self.delivered_by_expiry.pop_first() else { break };
            self.delivered.remove(&id);
            forgotten.push(id);
        }
        if !forgotten.is_empty() {
            self.actions.push_back(Action::ForgetDelivered(forgotten));
        }
        let mut due = vec![];
        while let Some((t, id)) = self.retry_at.first().cloned() {
            if t > now {
                break;
            }
            self.retry_at.remove(&(t, id.clone()));
            if let Some(e) = self.bundles.get_mut(&id) {
                e.retry_at = None;
            }
            due.push(id);
        }
        for id in due {
            self.dispatch(now, &id);
        }
    }

    /// Deletes a bundle (§5.10): the one path every deletion takes. Sends the
    /// deletion status report when the bundle asked for one.
    pub fn delete(&mut self, now: DtnTime, id: &BundleId, reason: ReasonCode) -> bool {
        if !self.bundles.contains_key(id) {
            return false;
        }
        self.report(now, id, Kind::Deleted, reason);
        self.stats.deleted += 1;
        self.remove(id, Some(reason));
        true
    }

    // ----- internals -----

    fn index_expiry(&mut self, expires_at: DtnTime, id: &BundleId) -> u64 {
        let order = self.next_order;
        self.next_order += 1;
        self.expiry.insert((expires_at, order), id.clone());
        order
    }

    /// A fresh creation timestamp from this node's sequence (§4.2.7): for the
    /// bundles it builds, and for clients that build their own (`/cts`).
    pub fn next_creation_timestamp(&mut self, now: DtnTime) -> CreationTimestamp {
        let (t, seq) = self.last_creation;
        // A clock that went back must not hand out a (time, seq) pair used
        // before: creation times never go back within a run.
        let stamp = if now <= t { (t, seq + 1) } else { (now, 0) };
        self.last_creation = stamp;
        CreationTimestamp { time: stamp.0, seq: stamp.1 }
    }

    /// A bundle this node built, through the security policy's `originate`.
    fn secure_originated(&mut self, bytes: Vec<u8>, bundle: Bundle) -> Result<(Vec<u8>, Bundle), SendError> {
        let Some(policy) = self.security.as_mut() else { return Ok((bytes, bundle)) };
        match policy.originate(&bytes, &bundle)? {
            Some(secured) => {
                let bundle = codec::decode(&secured).map_err(SendError::Encoding)?;
                Ok((secured, bundle))
            }
            None => Ok((bytes, bundle)),
        }
    }

    fn accept(
        &mut self,
        now: DtnTime,
        bundle: Bundle,
        bytes: Vec<u8>,
        from: Option<PeerId>,
    ) -> Result<BundleId, Rejected> {
        let id = bundle.id();
        let delivered = !self.delivered.is_empty()
            && (self.delivered.contains_key(&id)
                || (id.fragment.is_some() && self.delivered.contains_key(&BundleId { fragment: None, ..id.clone() })));
        if delivered || self.bundles.contains_key(&id) {
            self.stats.duplicates += 1;
            return Err(Rejected::Duplicate(id));
        }
        let meta = meta_of(now, &bundle, bytes.len() as u64);
        if from.is_some() {
            self.stats.received += 1;
        }

        // §5.4 / §4.2.8: an expired bundle is deleted on arrival.
        if now > meta.expires_at {
            self.stats.expired += 1;
            self.report_on(now, &meta, Kind::Deleted, ReasonCode::LifetimeExpired);
            return Err(Rejected::Expired(id));
        }
        // §4.4.3: hop count over the limit.
        if let Some(h) = meta.hop_count {
            if h.count > h.limit {
                self.report_on(now, &meta, Kind::Deleted, ReasonCode::HopLimitExceeded);
                return Err(Rejected::HopLimitExceeded(id));
            }
        }
        // RFC 9172 §5.1: at the destination, security blocks are processed
        // (decrypted, verified) before the bundle is stored; what the policy
        // refuses is deleted (§5.1.2). Fragments wait for their reassembly.
        let (bundle, bytes, meta) = match self.security.as_mut() {
            Some(policy) if id.fragment.is_none() && meta.destination.is_on_node(&self.node_id) => {
                match policy.accept_local(&bytes, &bundle) {
                    Ok(None) => (bundle, bytes, meta),
                    Ok(Some(plain)) => match codec::decode_with(&plain, &self.decode_options) {
                        Ok(b) => {
                            let meta = meta_of(now, &b, plain.len() as u64);
                            (b, plain, meta)
                        }
                        Err(e) => {
                            self.stats.invalid += 1;
                            return Err(Rejected::Invalid(e));
                        }
                    },
                    Err(refusal) => {
                        self.stats.deleted += 1;
                        self.report_on(now, &meta, Kind::Deleted, refusal.reason());
                        return Err(Rejected::Security { id, refusal: Box::new(refusal) });
                    }
                }
            }
            _ => (bundle, bytes, meta),
        };
        // §5.6 step 3 / §4.2.4: blocks this node cannot process. A BIB or BCB
        // in a security context this node knows is processable here, keys or
        // not (RFC 9172 §5: it is forwarded untouched); only an unknown
        // context — or a block too malformed to tell — leaves it to the flags.
        let processable = processable_security_blocks(&bytes, &bundle, &self.decode_options);
        let mut deferred = vec![];
        let mut discard = vec![];
        let mut report_unsupported = false;
        for n in &bundle.unsupported_blocks {
            if processable.contains(n) {
                continue;
            }
            let Some(block) = bundle.block(*n) else { continue };
            if block.flags & block_flags::REPORT_IF_UNPROCESSABLE != 0 {
                report_unsupported = true;
            }
            if block.flags & block_flags::DELETE_BUNDLE_IF_UNPROCESSABLE != 0 {
                if report_unsupported {
                    self.report_on(now, &meta, Kind::Received, ReasonCode::BlockUnsupported);
                }
                self.report_on(now, &meta, Kind::Deleted, ReasonCode::BlockUnsupported);
                return Err(Rejected::UnsupportedBlock(id));
            }
            if block.flags & block_flags::DISCARD_BLOCK_IF_UNPROCESSABLE != 0 {
                discard.push(*n);
            }
        }
        if report_unsupported {
            deferred.push(Deferred::Report(Kind::Received, ReasonCode::BlockUnsupported));
        } else if from.is_some() {
            deferred.push(Deferred::Report(Kind::Received, ReasonCode::NoInformation));
        }
        let mut meta = meta;
        meta.discard_blocks = discard;
        let order = self.index_expiry(meta.expires_at, &id);
        self.bundles.insert(
            id.clone(),
            Entry {
                order,
                meta: meta.clone(),
                state: State::Persisting,
                from_peer: from,
                in_flight: vec![],
                granted: vec![],
                retry_at: None,
                on_persist: deferred,
            },
        );
        self.actions.push_back(Action::Persist { meta, bytes });
        Ok(id)
    }

    /// Decide what happens to a stored bundle now (§5.3 / §5.4 / §5.7).
    fn dispatch(&mut self, now: DtnTime, id: &BundleId) {
        let Some(entry) = self.bundles.get(id) else { return };
        if entry.state != State::Stored {
            return;
        }
        let meta = &entry.meta;
        if meta.destination.is_on_node(&self.node_id) {
            self.dispatch_local(id);
        } else {
            self.route(now, id);
        }
    }

    fn dispatch_local(&mut self, id: &BundleId) {
        let Some(entry) = self.bundles.get(id) else { return };
        let meta = &entry.meta;
        // §5.9: fragments are reassembled before delivery.
        if id.fragment.is_some() {
            let key = (id.source.clone(), id.creation);
            let parts = self.fragments.entry(key.clone()).or_default();
            if !parts.contains(id) {
                parts.push(id.clone());
            }
            if self.reassembling.contains(&key) {
                return;
            }
            let total = meta.total_adu_len.unwrap_or(0);
            let ranges: Vec<(u64, u64)> = parts.iter().filter_map(|p| p.fragment).collect();
            if codec::covers(&ranges, total) {
                self.reassembling.insert(key);
                self.actions.push_back(Action::Reassemble { parts: parts.clone() });
            }
            return;
        }
        // §6.1: administrative records addressed to the node itself are consumed.
        if meta.flags & bundle_flags::ADMIN_RECORD != 0 && meta.destination == self.node_id {
            self.stats.reports_received += 1;
            self.discard(id);
            return;
        }
        if self.registrations.contains(&meta.destination) {
            let endpoint = meta.destination.clone();
            if let Some(e) = self.bundles.get_mut(id) {
                e.state = State::Delivering;
            }
            self.actions.push_back(Action::Deliver { id: id.clone(), endpoint });
        }
        // Otherwise kept until an application registers or it expires.
    }

    fn route_all(&mut self, now: DtnTime) {
        let mut ids: Vec<(u64, BundleId)> = self
            .bundles
            .iter()
            .filter(|(_, e)| e.state == State::Stored && !e.meta.destination.is_on_node(&self.node_id))
            .map(|(id, e)| (e.order, id.clone()))
            .collect();
        // Oldest first, and the same order in every run (a simulation with the
        // same seed must give the same result; hash order would not).
        ids.sort_unstable_by_key(|(order, _)| *order);
        for (_, id) in ids {
            self.route(now, &id);
        }
    }

    fn route(&mut self, now: DtnTime, id: &BundleId) {
        if self.peers.is_empty() {
            return;
        }
        // One lookup, and the transmissions go straight onto the action
        // queue: routing runs for every stored bundle each time a link comes
        // up, so its overhead is a simulation's hottest path.
        let Some(entry) = self.bundles.get_mut(id) else { return };
        let meta = &entry.meta;
        let must_not_fragment = meta.flags & bundle_flags::MUST_NOT_FRAGMENT != 0;
        // A node can be up over several links at once (two TCPCL sessions
        // when both sides dialed): one copy per node, and none to a node
        // that already has one on the way.
        let mut nodes: Vec<&Eid> =
            entry.in_flight.iter().filter_map(|p| self.peers.get(p)).map(|p| &p.node_id).collect();
        let candidates: Vec<&PeerInfo> = self
            .peers
            .values()
            .filter(|p| {
                !meta.forwarded_to.contains(&p.node_id)
                    && Some(&p.node_id) != meta.previous_node.as_ref()
                    && Some(p.id) != entry.from_peer
                    && !entry.in_flight.contains(&p.id)
                    && !(must_not_fragment && p.mtu.is_some_and(|m| meta.size > m))
            })
            .filter(|p| {
                if nodes.contains(&&p.node_id) {
                    return false;
                }
                nodes.push(&p.node_id);
                true
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        let chosen = self.router.select(now, meta, &candidates);
        if chosen.is_empty() {
            return;
        }
        let edit = forward_edit(&self.node_id, now, meta);
        for peer in chosen {
            let Some(info) = self.peers.get(&peer) else { continue };
            if !entry.in_flight.contains(&peer) {
                entry.in_flight.push(peer);
                let copies = self.router.hand_over(now, &mut entry.meta, info);
                if let Some(n) = copies {
                    entry.granted.push((peer, n));
                }
                self.actions.push_back(Action::Transmit(Transmit {
                    peer,
                    id: id.clone(),
                    edit: ForwardEdit { copies, ..edit.clone() },
                    max_bundle_size: info.mtu.filter(|_| !must_not_fragment),
                }));
            }
        }
    }

    /// Drops a bundle without a deletion report (delivered, forwarded for good,
    /// replaced by its reassembly): §5.12 discarding.
    fn discard(&mut self, id: &BundleId) {
        self.remove(id, None);
    }

    fn remove(&mut self, id: &BundleId, reason: Option<ReasonCode>) {
        self.remove_as(id, reason, None);
    }

    fn remove_as(&mut self, id: &BundleId, reason: Option<ReasonCode>, delivered: Option<DtnTime>) {
        let Some(entry) = self.bundles.remove(id) else { return };
        self.expiry.remove(&(entry.meta.expires_at, entry.order));
        if let Some(t) = entry.retry_at {
            self.retry_at.remove(&(t, id.clone()));
        }
        if id.fragment.is_some() {
            let key = (id.source.clone(), id.creation);
            if let Some(parts) = self.fragments.get_mut(&key) {
                parts.retain(|p| p != id);
                if parts.is_empty() {
                    self.fragments.remove(&key);
                }
            }
        }
        self.actions.push_back(Action::Delete { id: id.clone(), reason, delivered });
    }

    fn report(&mut self, now: DtnTime, id: &BundleId, kind: Kind, reason: ReasonCode) {
        // Most bundles ask for no report: look before copying the metadata.
        let Some(meta) = self.bundles.get(id).map(|e| &e.meta).filter(|m| wants_report(m, kind)) else { return };
        let meta = meta.clone();
        self.report_on(now, &meta, kind, reason);
    }

    /// Generates a status report about `meta` if it asked for this kind (§6.1.1);
    /// never about administrative records or anonymous bundles.
    fn report_on(&mut self, now: DtnTime, meta: &BundleMeta, kind: Kind, reason: ReasonCode) {
        if !wants_report(meta, kind) {
            return;
        }
        let time = (meta.flags & bundle_flags::STATUS_TIME_REQUESTED != 0).then_some(now);
        let assertion = Some(time);
        let mut r = StatusReport {
            received: None,
            forwarded: None,
            delivered: None,
            deleted: None,
            reason,
            subject: meta.id.clone(),
        };
        match kind {
            Kind::Received => r.received = assertion,
            Kind::Forwarded => r.forwarded = assertion,
            Kind::Delivered => r.delivered = assertion,
            Kind::Deleted => r.deleted = assertion,
        }
        let payload = admin::encode_status_report(&r);
        let creation = self.next_creation_timestamp(now);
        let bytes = BundleBuilder::new(self.node_id.clone(), meta.report_to.clone(), creation, self.report_lifetime_ms)
            .report_to(Eid::Null)
            .flags(bundle_flags::ADMIN_RECORD)
            .build(&payload);
        let Ok(bundle) = codec::decode(&bytes) else { return };
        // A report the policy cannot secure is not sent (nothing leaves unprotected).
        let Ok((bytes, bundle)) = self.secure_originated(bytes, bundle) else { return };
        self.stats.reports_sent += 1;
        let _ = self.accept(now, bundle, bytes, None);
    }
}

/// §5.4 step 4: what the copy on the link carries.
fn forward_edit(node_id: &Eid, now: DtnTime, meta: &BundleMeta) -> ForwardEdit {
    let residence = now.saturating_sub(meta.received_at);
    let bundle_age_ms = match meta.age_at_receipt_ms {
        Some(age) => Some(age.saturating_add(residence)),
        None if meta.id.creation.time == 0 => Some(residence),
        None => None,
    };
    ForwardEdit {
        previous_node: node_id.clone(),
        bundle_age_ms,
        hop_count: meta.hop_count.map(|h| HopCount { limit: h.limit, count: h.count.saturating_add(1) }),
        discard_blocks: meta.discard_blocks.clone(),
        copies: None,
    }
}

/// Whether a status report of `kind` about `meta` is due (§6.1.1): asked for,
/// and neither about an administrative record nor from or to `dtn:none`.
fn wants_report(meta: &BundleMeta, kind: Kind) -> bool {
    let wanted = match kind {
        Kind::Received => bundle_flags::REPORT_RECEPTION,
        Kind::Forwarded => bundle_flags::REPORT_FORWARDING,
        Kind::Delivered => bundle_flags::REPORT_DELIVERY,
        Kind::Deleted => bundle_flags::REPORT_DELETION,
    };
    meta.flags & wanted != 0
        && meta.flags & bundle_flags::ADMIN_RECORD == 0
        && !meta.id.source.is_null()
        && !meta.report_to.is_null()
}

/// The security blocks of `bundle` whose context this node knows (RFC 9172
/// §5 processing as a forwarder, with no keys: see [`bpsec::process`]).
/// None when a security block is malformed: then every one of them is left
/// to its block processing control flags.
fn processable_security_blocks(bytes: &[u8], bundle: &Bundle, options: &codec::DecodeOptions) -> Vec<u64> {
    let security: Vec<u64> = bundle
        .unsupported_blocks
        .iter()
        .copied()
        .filter(|n| bundle.block(*n).is_some_and(|b| matches!(b.block_type, block_types::BIB | block_types::BCB)))
        .collect();
    if security.is_empty() {
        return security;
    }
    match bpsec::process(bytes, bundle, bpsec::Role::Forwarder, &bpsec::Keys::new(), options) {
        Ok(p) => {
            let unknown: Vec<u64> =
                p.outcomes.iter().filter(|o| o.status == bpsec::Status::UnknownContext).map(|o| o.block).collect();
            security.into_iter().filter(|n| !unknown.contains(n)).collect()
        }
        Err(_) => vec![],
    }
}

/// The metadata the node keeps for a decoded bundle received at `now`.
pub fn meta_of(now: DtnTime, bundle: &Bundle, size: u64) -> BundleMeta {
    let p = &bundle.primary;
    // §4.2.8 (lifetime) with §4.4.2 (bundle age) when the source had no clock.
    let expires_at = if p.creation.time != 0 {
        p.creation.time.saturating_add(p.lifetime_ms)
    } else {
        now.saturating_add(p.lifetime_ms.saturating_sub(bundle.bundle_age_ms.unwrap_or(0)))
    };
    BundleMeta {
        id: bundle.id(),
        destination: p.destination.clone(),
        report_to: p.report_to.clone(),
        flags: p.flags,
        lifetime_ms: p.lifetime_ms,
        expires_at,
        received_at: now,
        age_at_receipt_ms: bundle.bundle_age_ms,
        hop_count: bundle.hop_count,
        previous_node: bundle.previous_node.clone(),
        size,
        payload_len: bundle.payload().data.len() as u64,
        total_adu_len: p.fragment.map(|f| f.total_adu_len),
        forwarded_to: vec![],
        discard_blocks: vec![],
        copies: bundle.copy_count,
    }
}

/// Copies granted to `peer` with a transmission that did not get through go
/// back to the router's count.
fn take_back(router: &mut dyn Router, entry: &mut Entry, peer: PeerId) {
    entry.granted.retain(|&(p, n)| {
        if p == peer {
            router.take_back(&mut entry.meta, n);
        }
        p != peer
    });
}
