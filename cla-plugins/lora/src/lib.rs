//! Ferry's LoRa convergence-layer plugin (docs being written).

pub mod airtime;
pub mod duty;
pub mod frame;
pub mod link;
pub mod plugin;
mod serial;
pub mod settings;
pub mod sim;
pub mod vsim;

#[cfg(test)]
mod link_tests;

pub use plugin::{descriptor, LoraCla, DESCRIPTOR};

#[cfg(feature = "export")]
ferry_cla_abi::export_cla!(plugin::LoraCla);
