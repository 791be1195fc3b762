//! Time as an input: the node never reads a clock. The daemon passes real time,
//! the simulator and the tests pass virtual time.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::bundle::DtnTime;

/// A source of DTN time (ms since 2000-01-01T00:00:00Z).
pub trait Clock: Send + Sync {
    fn now(&self) -> DtnTime;
}

/// A clock that moves only when told to (tests, the simulator).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start: DtnTime) -> ManualClock {
        ManualClock(AtomicU64::new(start))
    }

    pub fn set(&self, t: DtnTime) {
        self.0.store(t, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: u64) -> DtnTime {
        self.0.fetch_add(ms, Ordering::SeqCst) + ms
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DtnTime {
        self.0.load(Ordering::SeqCst)
    }
}
