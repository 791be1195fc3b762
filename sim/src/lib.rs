//! ferry-sim: replays disrupted DTN topologies in virtual time with the very
//! node and routing code that ferryd runs (ferry-core), and reports the
//! figures the field compares — the ONE's MessageStatsReport — as JSON, CSV
//! and SVG plots.
//!
//! # Layout
//! - [`scenario`]: the TOML scenario file (nodes, router and its parameters,
//!   buffer size, link model, contacts, messages, duration, seed).
//! - [`trace`]: the ONE's external events files (`CONN` and `C` lines).
//!   ION contact plans are read by [`ferry_core::contact::ContactPlan::parse_ion`].
//! - [`engine`]: the discrete-event engine: one `Node` and its store (the
//!   bytes of the bundles it holds) per simulated node, links with the ION
//!   or the ONE model, the ONE's buffer policy.
//! - [`report`]: the figures and their definitions, JSON and CSV.
//! - [`plot`]: SVG plots (delivery over time, latency CDF, buffer occupancy,
//!   router comparison).
//! - [`sweep`]: runs over routers, parameters and seeds on all cores.
//! - [`bench`](mod@bench): generated scenarios of a given size, for scale figures.
//! - [`emulate`]: the same scenario against real ferryd processes on
//!   loopback (started as programs, driven through their HTTP API).
//! - [`rng`]: the seeded generator.
//!
//! # Architecture invariants
//! - Deterministic: events are ordered by (time, insertion number), the
//!   generator is seeded, nothing iterates a hash map where order matters,
//!   and sweeps sort their results. Same scenario and seed, same bytes out.
//! - No tokio, RocksDB or wasmtime: the crate depends on ferry-core only
//!   (`emulate` runs ferryd as a separate program).
//! - Memory follows live state: bundles carry small payloads (message sizes
//!   are nominal), links are reused, and messages are generated as the run
//!   reaches them.

pub mod bench;
pub mod emulate;
pub mod engine;
pub mod plot;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod sweep;
pub mod trace;
