//! Where transmissions go: the convergence layers, as the daemon sees them.
//!
//! [`crate::plugins::ClaHost`] implements [`Cla`] over the plugins loaded
//! through the C ABI; [`NoCla`] stands in when there are none (tests, API-only
//! nodes).

use ferry_core::bundle::BundleId;
use ferry_core::node::TransmitOutcome;
use ferry_core::router::PeerId;

/// Something that puts bundle bytes on a link to a peer.
pub trait Cla: Send + Sync {
    /// Short name for logs and status ("tcp", "none").
    fn name(&self) -> String;

    /// Queues `bundles` (one bundle, or the fragments of one) for `peer`.
    /// `Ok`: the outcome comes later through `Daemon::transmitted`. `Err`: it
    /// was not queued, and this is the outcome. Must not block.
    fn transmit(&self, peer: PeerId, id: &BundleId, bundles: &[Vec<u8>]) -> Result<(), TransmitOutcome>;

    /// `delta` more (negative: fewer) transmissions to `peer` are being read
    /// from the store and will follow (see the plugin ABI's `preparing`).
    fn preparing(&self, _peer: PeerId, _delta: i64) {}

    /// Asks a convergence layer to reach a peer URL (`/peers/add`); returns
    /// the name of the one that took it.
    fn connect(&self, url: &str) -> Result<String, String> {
        Err(format!("no convergence layer is loaded to reach {url}"))
    }
}

/// No convergence layer: nothing can be sent.
#[derive(Debug, Default)]
pub struct NoCla;

impl Cla for NoCla {
    fn name(&self) -> String {
        "none".into()
    }

    fn transmit(&self, peer: PeerId, id: &BundleId, bundles: &[Vec<u8>]) -> Result<(), TransmitOutcome> {
        tracing::warn!(peer = peer.0, bundle = %id, parts = bundles.len(), "no convergence layer is loaded; transmission failed");
        Err(TransmitOutcome::Failed)
    }
}
