//! Generated scenarios of a given size, for scale figures (`ferry-sim bench`)
//! and for tests that need a random but reproducible topology.

use std::sync::Arc;
use std::time::Instant;

use ferry_core::contact::ContactPlan;
use ferry_core::router::RouterSpec;

use crate::engine::{Progress, Sim};
use crate::report::Report;
use crate::rng::Rng;
use crate::scenario::{Generator, LinkModel, Messages, Scenario, DEFAULT_EPOCH};

/// The size of a generated scenario.
#[derive(Debug, Clone)]
pub struct BenchSize {
    pub nodes: u64,
    pub contacts: u64,
    pub messages: u64,
    /// Bytes per message.
    pub size: u64,
    /// Simulated seconds.
    pub duration_s: u64,
    /// Bytes per node (`None`: unlimited).
    pub buffer: Option<u64>,
    pub seed: u64,
}

/// An ION contact plan of `contacts` contacts between random pairs of
/// `nodes` nodes within `duration_s`, each 30 s to 5 min long at 250 kB/s
/// (the ONE's Bluetooth interface: 2 Mbit/s).
pub fn generate_plan(nodes: u64, contacts: u64, duration_s: u64, seed: u64) -> String {
    let mut rng = Rng::new(seed ^ 0x5EED_C0A7);
    let mut out = String::with_capacity(contacts as usize * 32);
    for _ in 0..contacts {
        let a = rng.between(1, nodes);
        let mut b = rng.between(1, nodes.saturating_sub(1).max(1));
        if b >= a {
            b += 1;
        }
        let len = rng.between(30, 300).min(duration_s.max(1));
        let start = rng.between(0, duration_s.saturating_sub(len));
        out.push_str(&format!("a contact +{start} +{} {a} {b} 250000\n", start + len));
    }
    out
}

/// The scenario for `size`: epidemic routing on a generated plan with the
/// ONE's link model, messages spread evenly over the first half of the run.
pub fn scenario(size: &BenchSize, router: RouterSpec) -> Scenario {
    let text = generate_plan(size.nodes, size.contacts, size.duration_s, size.seed);
    // The generated text is well-formed by construction.
    let plan = ContactPlan::parse_ion(&text, "generated", DEFAULT_EPOCH).unwrap_or_default();
    let duration_ms = size.duration_s * 1000;
    let spread = (duration_ms / 2).max(1);
    let interval = (spread / size.messages.max(1)).max(1);
    Scenario {
        name: format!("bench-{}n-{}c-{}m", size.nodes, size.contacts, size.messages),
        seed: size.seed,
        duration_ms,
        nodes: size.nodes,
        buffer_size: size.buffer,
        link_model: LinkModel::One,
        sample_ms: (duration_ms / 100).max(1),
        router,
        plan: Some(Arc::new(plan)),
        connections: vec![],
        trace_rate: 250_000,
        messages: Messages::Generator(Generator {
            interval_ms: (interval, interval),
            size: (size.size, size.size),
            hosts: (1, size.nodes),
            start_ms: 0,
            end_ms: interval.saturating_mul(size.messages).saturating_add(1),
        }),
        ttl_ms: duration_ms + 1,
        epoch: DEFAULT_EPOCH,
    }
}

/// What a bench run measured.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub report: Report,
    pub wall_s: f64,
    pub events_per_s: f64,
    /// Peak resident memory of this process (kB), where the OS tells it.
    pub peak_rss_kb: Option<u64>,
}

/// Runs `sc` and measures it.
pub fn run(sc: &Scenario, progress: Option<Progress<'_>>) -> BenchResult {
    let t = Instant::now();
    let report = Sim::new(sc).run(progress);
    let wall_s = t.elapsed().as_secs_f64();
    BenchResult { events_per_s: report.events as f64 / wall_s.max(1e-9), report, wall_s, peak_rss_kb: peak_rss_kb() }
}

/// VmHWM from /proc/self/status (Linux).
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_plans_are_valid_and_reproducible() {
        let a = generate_plan(5, 50, 600, 3);
        assert_eq!(a, generate_plan(5, 50, 600, 3));
        assert_ne!(a, generate_plan(5, 50, 600, 4));
        let plan = ContactPlan::parse_ion(&a, "gen", 0).unwrap();
        assert_eq!(plan.len(), 50);
        assert!(plan.contacts().iter().all(|c| c.from != c.to && c.end <= 600_000));
    }
}
