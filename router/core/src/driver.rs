//! A synchronous driver: carries out a [`Node`]'s actions against a [`Store`]
//! in the calling thread. Tests and the simulator use it; ferryd has an async
//! one with the same rules (persist before acknowledging, load bytes only to
//! deliver or transmit).

use std::collections::VecDeque;

use crate::bundle::{BundleId, DtnTime};
use crate::codec;
use crate::eid::Eid;
use crate::node::{transmission, Action, Node, TransmitOutcome};
use crate::router::PeerId;
use crate::store::Store;

/// A bundle handed to an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub endpoint: Eid,
    pub id: BundleId,
    pub bytes: Vec<u8>,
}

/// Bundle bytes that the node wants on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub peer: PeerId,
    pub id: BundleId,
    /// One element, or several fragments.
    pub bundles: Vec<Vec<u8>>,
}

/// Something went wrong while carrying out an action; the node was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverError {
    pub id: BundleId,
    pub what: String,
}

/// Runs a node's actions synchronously.
pub struct SyncDriver<S: Store> {
    pub node: Node,
    pub store: S,
    /// Deliveries the applications have not collected yet.
    pub delivered: VecDeque<Delivery>,
    /// Transmissions the links have not collected yet. The owner reports their
    /// outcome with `node.handle_transmitted`.
    pub outgoing: VecDeque<Outgoing>,
    pub errors: Vec<DriverError>,
}

impl<S: Store> SyncDriver<S> {
    pub fn new(node: Node, store: S) -> SyncDriver<S> {
        SyncDriver { node, store, delivered: VecDeque::new(), outgoing: VecDeque::new(), errors: vec![] }
    }

    /// Feeds every stored bundle to the node (start-up after a restart).
    pub fn recover(&mut self, now: DtnTime) -> Result<usize, crate::store::StoreError> {
        let metas = self.store.all_meta()?;
        let n = metas.len();
        for m in metas {
            self.node.handle_recovered(now, m);
        }
        self.run(now);
        Ok(n)
    }

    /// Carries out actions until the node has none left. Applications take
    /// their deliveries at once (the node is told they were delivered).
    pub fn run(&mut self, now: DtnTime) {
        while let Some(action) = self.node.poll_action() {
            self.execute(now, action);
        }
    }

    fn fail(&mut self, id: &BundleId, what: String) {
        self.errors.push(DriverError { id: id.clone(), what });
    }

    fn execute(&mut self, now: DtnTime, action: Action) {
        match action {
            Action::Persist { meta, bytes } => {
                let ok = self.store.put(&meta, &bytes).is_ok();
                self.node.handle_persisted(now, &meta.id, ok);
            }
            Action::UpdateMeta(meta) => {
                if let Err(e) = self.store.update_meta(&meta) {
                    self.fail(&meta.id, e.to_string());
                }
            }
            Action::Delete { id, .. } => {
                if let Err(e) = self.store.delete(&id) {
                    self.fail(&id, e.to_string());
                }
            }
            // The node remembers delivered IDs in memory; this driver's
            // stores (in memory, for tests and the simulator) keep none.
            Action::ForgetDelivered(_) => {}
            Action::Deliver { id, endpoint } => match self.store.get_bytes(&id) {
                Ok(Some(bytes)) => {
                    self.delivered.push_back(Delivery { endpoint, id: id.clone(), bytes });
                    self.node.handle_delivered(now, &id);
                }
                Ok(None) => {
                    // The store lost it: the node must not wait for it forever.
                    self.node.delete(now, &id, crate::admin::ReasonCode::DepletedStorage);
                    self.fail(&id, "bundle to deliver is not in the store".into());
                }
                Err(e) => {
                    // Left in "delivering": retrying at once would spin on a
                    // failing store; a restart offers it again.
                    self.fail(&id, e.to_string());
                }
            },
            Action::Transmit(t) => {
                let prepared = match self.store.get_bytes(&t.id) {
                    Ok(Some(bytes)) => transmission(&bytes, &t).map_err(|e| e.to_string()),
                    Ok(None) => Err("bundle to transmit is not in the store".into()),
                    Err(e) => Err(e.to_string()),
                };
                match prepared {
                    Ok(bundles) => self.outgoing.push_back(Outgoing { peer: t.peer, id: t.id, bundles }),
                    Err(what) => {
                        self.node.handle_transmitted(now, t.peer, &t.id, TransmitOutcome::Failed);
                        self.fail(&t.id, what);
                    }
                }
            }
            Action::Reassemble { parts } => self.reassemble(now, parts),
        }
    }

    fn reassemble(&mut self, now: DtnTime, parts: Vec<BundleId>) {
        let mut loaded = vec![];
        for id in &parts {
            match self.store.get_bytes(id) {
                Ok(Some(bytes)) => loaded.push(bytes),
                _ => {
                    self.node.handle_reassembly_failed(now, &parts);
                    return;
                }
            }
        }
        let decoded: Result<Vec<_>, _> = loaded.iter().map(|b| crate::node::decode_stored(b)).collect();
        let whole = decoded.ok().and_then(|bundles| {
            let pairs: Vec<(&[u8], &crate::bundle::Bundle)> =
                loaded.iter().map(|b| b.as_slice()).zip(bundles.iter()).collect();
            codec::reassemble(&pairs).ok()
        });
        match whole {
            Some(bytes) => {
                if self.node.handle_received(now, bytes, None).is_err() {
                    self.node.handle_reassembly_failed(now, &parts);
                }
            }
            None => self.node.handle_reassembly_failed(now, &parts),
        }
        self.run(now);
    }
}
