//! The real clock: DTN time (RFC 9171 §4.2.6) from the system clock.

use std::time::{SystemTime, UNIX_EPOCH};

use ferry_core::bundle::{DtnTime, DTN_EPOCH_UNIX_SECS};
use ferry_core::time::Clock;

/// DTN time read from the system clock: Unix milliseconds minus the DTN epoch.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DtnTime {
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let unix_ms = u64::try_from(unix_ms).unwrap_or(u64::MAX);
        // A clock set before 2000 gives 0, which RFC 9171 §4.2.7 reads as "no clock".
        unix_ms.saturating_sub(DTN_EPOCH_UNIX_SECS * 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtn_time_is_after_2020() {
        // 2020-01-01 is 631_152_000 s after the DTN epoch.
        assert!(SystemClock.now() > 631_152_000_000);
    }
}
