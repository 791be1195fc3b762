//! Where transmissions go: the convergence layers.
//!
//! There are no convergence-layer plugins yet (the TCP plugin brings the first),
//! so no peer ever comes up and the node never asks to transmit. The path is
//! wired anyway, end to end, so that a CLA only has to implement [`Cla`].

use ferry_core::bundle::BundleId;
use ferry_core::node::TransmitOutcome;
use ferry_core::router::PeerId;

/// A convergence layer as the daemon sees it: something that puts bundle bytes
/// on a link to a peer and says how it went.
pub trait Cla: Send + Sync {
    /// Short name for logs ("tcp", "usbdir").
    fn name(&self) -> &str;

    /// Sends `bundles` (one bundle, or the fragments of one) to `peer`. Called on
    /// the blocking pool; may block until the peer acknowledged.
    fn transmit(&self, peer: PeerId, id: &BundleId, bundles: &[Vec<u8>]) -> TransmitOutcome;
}

/// The only CLA there is for now: it reaches nobody.
#[derive(Debug, Default)]
pub struct NoCla;

impl Cla for NoCla {
    fn name(&self) -> &str {
        "none"
    }

    fn transmit(&self, peer: PeerId, id: &BundleId, bundles: &[Vec<u8>]) -> TransmitOutcome {
        tracing::warn!(peer = peer.0, bundle = %id, parts = bundles.len(), "no convergence layer is loaded; transmission failed");
        TransmitOutcome::Failed
    }
}
