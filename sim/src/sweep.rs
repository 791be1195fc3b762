//! Parameter sweeps: one scenario under several routers, spray-and-wait copy
//! counts and seeds, run in parallel on all cores. Results come back in the
//! order of the points, whatever order the threads finish in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::engine::Sim;
use crate::report::{csv_row, Report, CSV_HEADER};
use crate::scenario::{RouterParams, Scenario};

/// One run of a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    pub router: String,
    /// Spray-and-wait's L (other routers: `None`).
    pub copies: Option<u64>,
    pub seed: u64,
}

impl Point {
    /// The router with its parameter, as plots and tables name it.
    pub fn label(&self) -> String {
        match self.copies {
            Some(c) => format!("{} L={c}", self.router),
            None => self.router.clone(),
        }
    }
}

/// Every combination: copy counts apply to the spray-and-wait routers only.
pub fn points(routers: &[String], copies: &[u64], seeds: &[u64]) -> Vec<Point> {
    let mut out = vec![];
    for r in routers {
        let cs: Vec<Option<u64>> = if r.contains("spray") && !copies.is_empty() {
            copies.iter().map(|c| Some(*c)).collect()
        } else {
            vec![None]
        };
        for c in cs {
            for s in seeds {
                out.push(Point { router: r.clone(), copies: c, seed: *s });
            }
        }
    }
    out
}

/// Runs every point of `base` on `threads` threads; `done` is called after each run.
pub fn run(base: &Scenario, points: &[Point], threads: usize, done: &(dyn Fn() + Sync)) -> Result<Vec<Report>, String> {
    let scenarios: Vec<Scenario> = points
        .iter()
        .map(|p| {
            let mut s = base.with_router(&p.router, RouterParams { copies: p.copies })?;
            s.seed = p.seed;
            Ok(s)
        })
        .collect::<Result<_, String>>()?;
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Report>>> = Mutex::new(vec![None; scenarios.len()]);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, scenarios.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(sc) = scenarios.get(i) else { break };
                let report = Sim::new(sc).run(None);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(report);
                done();
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(results.into_iter().flatten().collect())
}

/// The sweep as CSV: a `copies` column, then the report's columns.
pub fn to_csv(points: &[Point], reports: &[Report]) -> String {
    let mut out = format!("copies,{CSV_HEADER}\n");
    for (p, r) in points.iter().zip(reports) {
        out.push_str(&format!("{},{}\n", p.copies.map(|c| c.to_string()).unwrap_or_default(), csv_row(r)));
    }
    out
}

/// Per router (and L): mean delivery probability, mean latency and mean
/// overhead ratio over the seeds, in the order they first appear.
pub fn summary(points: &[Point], reports: &[Report]) -> Vec<(String, f64, Option<f64>, Option<f64>)> {
    let mut labels: Vec<String> = vec![];
    for p in points {
        if !labels.contains(&p.label()) {
            labels.push(p.label());
        }
    }
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    labels
        .into_iter()
        .map(|label| {
            let runs: Vec<&Report> =
                points.iter().zip(reports).filter(|(p, _)| p.label() == label).map(|(_, r)| r).collect();
            let delivery = mean(runs.iter().filter_map(|r| r.stats.delivery_prob).collect()).unwrap_or(0.0);
            let latency = mean(runs.iter().filter_map(|r| r.stats.latency_avg).collect());
            let overhead = mean(runs.iter().filter_map(|r| r.stats.overhead_ratio).collect());
            (label, delivery, latency, overhead)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_multiply_only_spray_routers() {
        let p = points(&["epidemic".into(), "binary-spray-and-wait".into()], &[2, 4], &[1, 2]);
        assert_eq!(p.len(), 2 + 4);
        assert_eq!(p[2], Point { router: "binary-spray-and-wait".into(), copies: Some(2), seed: 1 });
        assert_eq!(p[2].label(), "binary-spray-and-wait L=2");
    }
}
