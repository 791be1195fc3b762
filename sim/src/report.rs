//! The figures of the ONE's MessageStatsReport, with its definitions, and the
//! time series the plots draw.
//!
//! | figure | definition |
//! | --- | --- |
//! | created | messages created |
//! | started | transfers started (a bundle began to cross a link) |
//! | relayed | transfers finished (every hop, the last one included) |
//! | aborted | transfers cut off by their link going down |
//! | dropped | bundles deleted with a reason: buffer full, lifetime over |
//! | removed | bundles discarded after forwarding (single-copy routers, or a copy handed to its destination) |
//! | delivered | messages that reached their destination (first delivery only) |
//! | delivery_prob | delivered / created |
//! | overhead_ratio | (relayed − delivered) / delivered |
//! | latency_* | creation to first delivery, seconds (median: the ONE's, the element at n/2 of the sorted list; percentiles: nearest rank) |
//! | hopcount_* | hops of delivered messages |
//! | buffertime_* | seconds a dropped or removed bundle had been held by that node |
//!
//! Figures that divide by zero (no delivery yet) are `null` in JSON and empty in CSV.

use serde::Serialize;

use crate::scenario::Scenario;

/// One point of the time series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Simulated seconds.
    pub time: f64,
    pub created: u64,
    pub delivered: u64,
    /// delivered / created so far (0 before the first creation).
    pub delivery_prob: f64,
    /// Bundles held over all nodes.
    pub bundles_held: u64,
    /// Mean nominal bytes held per node.
    pub buffer_bytes_mean: f64,
    /// Mean buffer occupancy, 0 to 1 (`null` without a buffer size).
    pub buffer_occupancy: Option<f64>,
}

/// The event counts of the report (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub created: u64,
    pub started: u64,
    pub relayed: u64,
    pub aborted: u64,
    pub dropped: u64,
    pub removed: u64,
}

/// Counts gathered while a simulation runs.
#[derive(Debug, Default)]
pub struct Collector {
    pub counts: Counts,
    latencies_ms: Vec<u64>,
    hops: Vec<u64>,
    pub buffer_times: Vec<u64>,
    samples: Vec<Sample>,
    pub errors: Vec<String>,
}

/// The MessageStatsReport figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageStats {
    #[serde(flatten)]
    pub counts: Counts,
    pub delivered: u64,
    pub delivery_prob: Option<f64>,
    pub overhead_ratio: Option<f64>,
    pub latency_avg: Option<f64>,
    pub latency_med: Option<f64>,
    pub latency_p90: Option<f64>,
    pub latency_p95: Option<f64>,
    pub latency_p99: Option<f64>,
    pub hopcount_avg: Option<f64>,
    pub hopcount_med: Option<u64>,
    pub buffertime_avg: Option<f64>,
    pub buffertime_med: Option<f64>,
}

/// Everything a run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub scenario: String,
    pub router: String,
    /// Spray-and-wait's L (other routers: `null`).
    pub copies: Option<u64>,
    pub seed: u64,
    pub nodes: u64,
    /// Simulated seconds.
    pub sim_time: f64,
    pub events: u64,
    pub stats: MessageStats,
    pub series: Vec<Sample>,
    /// Latencies of delivered messages (s), sorted: the CDF plot's data.
    #[serde(skip)]
    pub latencies: Vec<f64>,
    /// Things that went wrong inside the run (none expected).
    pub errors: Vec<String>,
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

pub(crate) fn mean(v: &[u64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64)
}

/// The ONE's median: element n/2 of the sorted values.
pub(crate) fn median(sorted: &[u64]) -> Option<u64> {
    sorted.get(sorted.len() / 2).copied()
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[u64], p: u64) -> Option<u64> {
    let n = sorted.len() as u64;
    if n == 0 {
        return None;
    }
    let rank = (p * n).div_ceil(100).max(1);
    sorted.get(usize::try_from(rank - 1).ok()?).copied()
}

impl Collector {
    pub fn delivered(&mut self, _now: u64, latency_ms: u64, hops: u64) {
        self.latencies_ms.push(latency_ms);
        self.hops.push(hops);
    }

    pub fn sample(&mut self, now: u64, used: u64, held: u64, nodes: u64, buffer: Option<u64>) {
        let delivered = self.latencies_ms.len() as u64;
        let created = self.counts.created;
        let mean_bytes = used as f64 / nodes.max(1) as f64;
        let s = Sample {
            time: secs(now),
            created,
            delivered,
            delivery_prob: if created == 0 { 0.0 } else { delivered as f64 / created as f64 },
            bundles_held: held,
            buffer_bytes_mean: mean_bytes,
            buffer_occupancy: buffer.filter(|b| *b > 0).map(|b| mean_bytes / b as f64),
        };
        // The last sample may repeat the time of the one before (end of run).
        if self.samples.last().is_some_and(|l| l.time == s.time) {
            self.samples.pop();
        }
        self.samples.push(s);
    }

    pub fn finish(mut self, sc: &Scenario, events: u64) -> Report {
        let delivered = self.latencies_ms.len() as u64;
        self.latencies_ms.sort_unstable();
        self.hops.sort_unstable();
        self.buffer_times.sort_unstable();
        let lat = &self.latencies_ms;
        let c = self.counts;
        let stats = MessageStats {
            counts: c,
            delivered,
            delivery_prob: (c.created > 0).then(|| delivered as f64 / c.created as f64),
            overhead_ratio: (delivered > 0).then(|| (c.relayed as f64 - delivered as f64) / delivered as f64),
            latency_avg: mean(lat).map(|m| m / 1000.0),
            latency_med: median(lat).map(secs),
            latency_p90: percentile(lat, 90).map(secs),
            latency_p95: percentile(lat, 95).map(secs),
            latency_p99: percentile(lat, 99).map(secs),
            hopcount_avg: mean(&self.hops),
            hopcount_med: median(&self.hops),
            buffertime_avg: mean(&self.buffer_times).map(|m| m / 1000.0),
            buffertime_med: median(&self.buffer_times).map(secs),
        };
        Report {
            scenario: sc.name.clone(),
            router: sc.router.name().to_owned(),
            copies: match sc.router {
                ferry_core::router::RouterSpec::SprayAndWait { copies, .. } => Some(copies),
                _ => None,
            },
            seed: sc.seed,
            nodes: sc.nodes,
            sim_time: secs(sc.duration_ms),
            events,
            stats,
            series: self.samples,
            latencies: lat.iter().map(|l| secs(*l)).collect(),
            errors: self.errors,
        }
    }
}

/// Column names of [`csv_row`], after the caller's own leading columns.
pub const CSV_HEADER: &str =
    "scenario,router,seed,nodes,sim_time,created,started,relayed,aborted,dropped,removed,delivered,\
delivery_prob,overhead_ratio,latency_avg,latency_med,latency_p90,latency_p95,latency_p99,\
hopcount_avg,hopcount_med,buffertime_avg,buffertime_med";

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// One CSV line (no newline) of a report's figures.
pub fn csv_row(r: &Report) -> String {
    let (s, c) = (&r.stats, &r.stats.counts);
    let name = if r.scenario.contains([',', '"', '\n']) {
        format!("\"{}\"", r.scenario.replace('"', "\"\""))
    } else {
        r.scenario.clone()
    };
    [
        name,
        r.router.clone(),
        r.seed.to_string(),
        r.nodes.to_string(),
        r.sim_time.to_string(),
        c.created.to_string(),
        c.started.to_string(),
        c.relayed.to_string(),
        c.aborted.to_string(),
        c.dropped.to_string(),
        c.removed.to_string(),
        s.delivered.to_string(),
        opt(s.delivery_prob),
        opt(s.overhead_ratio),
        opt(s.latency_avg),
        opt(s.latency_med),
        opt(s.latency_p90),
        opt(s.latency_p95),
        opt(s.latency_p99),
        opt(s.hopcount_avg),
        opt(s.hopcount_med),
        opt(s.buffertime_avg),
        opt(s.buffertime_med),
    ]
    .join(",")
}

/// A report as CSV: the header and one row.
pub fn to_csv(r: &Report) -> String {
    format!("{CSV_HEADER}\n{}\n", csv_row(r))
}

/// A report as pretty JSON.
pub fn to_json(r: &Report) -> String {
    // Serializing plain structs of numbers and strings cannot fail.
    serde_json::to_string_pretty(r).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles_follow_their_definitions() {
        assert_eq!(median(&[1, 2, 3, 4]), Some(3));
        assert_eq!(median(&[]), None);
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&v, 90), Some(9));
        assert_eq!(percentile(&v, 95), Some(10));
        assert_eq!(percentile(&[5], 1), Some(5));
    }
}
