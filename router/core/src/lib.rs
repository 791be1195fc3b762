//! ferry-core: a sans-IO Bundle Protocol v7 node (RFC 9171).
//!
//! # Layout
//! - [`eid`]: endpoint IDs (`dtn`, `ipn`, `dtn:none`) and node IDs.
//! - [`bundle`]: the bundle model, bundle IDs, flags, and [`bundle::BundleMeta`],
//!   the payload-free record the node and stores keep.
//! - [`cbor`], [`crc`]: the strict CBOR reader/writer and the CRCs of §4.2.1.
//! - [`codec`]: strict decoding and validation, building bundles, rewriting
//!   extension blocks on forward, fragmentation and reassembly.
//! - [`admin`]: administrative records and status reports (§6).
//! - [`bpsec`]: Bundle Protocol Security (RFC 9172): BIBs and BCBs with the
//!   RFC 9173 contexts and an Ed25519 signature context; sign, encrypt,
//!   verify, decrypt, and the processing rules for a node.
//! - [`store`]: the `Store` trait, the in-memory store, the conformance suite.
//! - [`router`]: the `Router` trait; epidemic, static, spray-and-wait,
//!   PRoPHET (RFC 6693) and contact-graph routing.
//! - [`contact`]: contacts, contact plans and ION's contact plan format.
//! - [`time`]: the `Clock` trait and a manual clock.
//! - [`node`]: the node state machine that ties it together.
//! - [`driver`]: a synchronous driver that runs a node against a store.
//!
//! Nothing here does I/O or reads a clock: time comes in as `now` arguments and
//! everything the node wants done comes out as [`node::Action`]s.

pub mod admin;
pub mod bpsec;
pub mod bundle;
pub mod cbor;
pub mod codec;
pub mod contact;
pub mod crc;
pub mod driver;
pub mod eid;
pub mod node;
pub mod router;
pub mod store;
pub mod time;

pub use bundle::{Bundle, BundleId, BundleMeta, CreationTimestamp, DtnTime};
pub use eid::Eid;
