//! The duty-cycle budget: at most `fraction · window` of airtime in any
//! sliding window (ETSI EN 300 220 counts 1 % over one hour in most of the
//! EU868 band).
//!
//! [`DutyCycle`] remembers each transmission inside the window (start and
//! airtime) and answers when a transmission of a given airtime may start
//! without the window ending at its end holding more than the budget.
//! Memory is bounded by the budget: with every packet at least a few
//! milliseconds long, a 36 s budget holds a few thousand entries at most.

use std::collections::VecDeque;

/// A sliding-window airtime budget. Times are microseconds from any origin.
#[derive(Debug, Clone)]
pub struct DutyCycle {
    window_us: u64,
    budget_us: u64,
    /// (start, airtime) of transmissions still inside the window, oldest first.
    sent: VecDeque<(u64, u64)>,
    /// Sum of the airtimes in `sent`.
    used_us: u64,
}

impl DutyCycle {
    /// A budget of `percent` % of every `window_us`. 100 % (or more) means
    /// no limit.
    pub fn new(percent: f64, window_us: u64) -> DutyCycle {
        let fraction = (percent / 100.0).clamp(0.0, 1.0);
        let budget_us = if fraction >= 1.0 { u64::MAX } else { (window_us as f64 * fraction) as u64 };
        DutyCycle { window_us: window_us.max(1), budget_us, sent: VecDeque::new(), used_us: 0 }
    }

    /// Whether there is no limit at all.
    pub fn unlimited(&self) -> bool {
        self.budget_us == u64::MAX
    }

    /// The airtime allowed per window.
    pub fn budget_us(&self) -> u64 {
        self.budget_us
    }

    /// The window length.
    pub fn window_us(&self) -> u64 {
        self.window_us
    }

    /// Airtime spent in the window ending at `now`.
    pub fn used_us(&mut self, now: u64) -> u64 {
        self.expire(now);
        self.used_us
    }

    fn expire(&mut self, now: u64) {
        while let Some(&(start, air)) = self.sent.front() {
            // An entry counts until its whole airtime has left the window.
            if start.saturating_add(air).saturating_add(self.window_us) <= now {
                self.sent.pop_front();
                self.used_us -= air;
            } else {
                break;
            }
        }
    }

    /// The earliest time at or after `now` at which a transmission of
    /// `airtime_us` fits the budget. `None` if it never can (longer than
    /// the whole budget).
    pub fn earliest(&mut self, now: u64, airtime_us: u64) -> Option<u64> {
        self.earliest_within(now, airtime_us, 1.0)
    }

    /// Like [`DutyCycle::earliest`], for a transmission that may use only
    /// `share` (0..=1) of the budget: bulk data leaves the rest to control
    /// frames, so that HELLOs and ACKs still go out when data has spent its part.
    pub fn earliest_within(&mut self, now: u64, airtime_us: u64, share: f64) -> Option<u64> {
        if self.unlimited() {
            return Some(now);
        }
        let budget = (self.budget_us as f64 * share.clamp(0.0, 1.0)) as u64;
        if airtime_us > budget {
            return None;
        }
        self.expire(now);
        // Drop the oldest entries (in thought) until the rest plus this one fit.
        let mut used = self.used_us;
        let mut at = now;
        for &(start, air) in &self.sent {
            if used + airtime_us <= budget {
                break;
            }
            used -= air;
            at = at.max(start + air + self.window_us);
        }
        Some(at)
    }

    /// Records a transmission of `airtime_us` starting at `now`.
    pub fn record(&mut self, now: u64, airtime_us: u64) {
        if self.unlimited() {
            return;
        }
        self.expire(now);
        self.sent.push_back((now, airtime_us));
        self.used_us += airtime_us;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000_000;

    #[test]
    fn one_percent_of_an_hour_is_36_seconds() {
        let mut d = DutyCycle::new(1.0, HOUR);
        assert_eq!(d.budget_us(), 36_000_000);
        // 90 SF7 frames of 400 ms fit back to back, the 91st waits.
        let mut t = 0;
        for _ in 0..90 {
            assert_eq!(d.earliest(t, 400_000), Some(t));
            d.record(t, 400_000);
            t += 400_000;
        }
        assert_eq!(d.used_us(t), 36_000_000);
        // The first frame (0 .. 0.4 s) leaves the window at 1 h 0.4 s.
        assert_eq!(d.earliest(t, 400_000), Some(400_000 + HOUR));
        // A frame twice as long needs the first two to leave.
        assert_eq!(d.earliest(t, 800_000), Some(800_000 + HOUR));
    }

    #[test]
    fn never_more_than_the_budget_in_any_window() {
        // Greedy sender of varied frames; check every window ending at a
        // transmission's end.
        let mut d = DutyCycle::new(10.0, 10_000_000);
        let mut log: Vec<(u64, u64)> = Vec::new();
        let mut t = 0;
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let air = rng.u64(10_000..300_000);
            let at = d.earliest(t, air).unwrap();
            assert!(at >= t);
            d.record(at, air);
            log.push((at, air));
            t = at + air;
        }
        for &(s, a) in &log {
            let end = s + a;
            let from = end.saturating_sub(10_000_000);
            let used: u64 = log
                .iter()
                .map(|&(s2, a2)| {
                    let (lo, hi) = (s2.max(from), (s2 + a2).min(end));
                    hi.saturating_sub(lo)
                })
                .sum();
            assert!(used <= 1_000_000, "window ending at {end} holds {used} µs");
        }
        // And the sender was not starved: over 2000 frames it used most of
        // the 10 % (a packet counts whole until all of it left the window,
        // which costs up to one packet of 0.3 s per 1 s budget).
        let span = t as f64;
        let total: u64 = log.iter().map(|&(_, a)| a).sum();
        assert!(total as f64 / span > 0.08, "{}", total as f64 / span);
    }

    #[test]
    fn unlimited_and_impossible() {
        let mut d = DutyCycle::new(100.0, HOUR);
        assert!(d.unlimited());
        d.record(0, 10 * HOUR);
        assert_eq!(d.earliest(5, HOUR), Some(5));
        let mut d = DutyCycle::new(0.001, HOUR);
        assert_eq!(d.budget_us(), 36_000);
        assert_eq!(d.earliest(0, 36_001), None);
        assert_eq!(d.earliest(0, 36_000), Some(0));
    }
}
