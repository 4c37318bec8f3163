//! The only source of "now". Every TTL cut-off, 30-day rule and due schedule reads it, so the
//! tests and the local stack's `/dev/clock` can move time instead of waiting for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;

    /// Epoch seconds, the unit of the table's TTL attribute.
    fn now_epoch(&self) -> i64 {
        self.now().timestamp()
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// Wall-clock time; what deployed functions use.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Wall-clock time plus an offset that only moves forward. Local stack and tests only.
#[derive(Debug, Default)]
pub struct TestClock {
    offset_millis: AtomicI64,
    /// When set, time stands still at this instant plus the offset (deterministic tests).
    frozen_at_millis: Option<i64>,
}

impl TestClock {
    /// Follows the wall clock, shifted by whatever has been advanced.
    pub fn following_wall_clock() -> Self {
        Self::default()
    }

    /// Stands still at `at` until advanced.
    pub fn frozen_at(at: DateTime<Utc>) -> Self {
        Self { offset_millis: AtomicI64::new(0), frozen_at_millis: Some(at.timestamp_millis()) }
    }

    pub fn advance(&self, by: Duration) {
        self.offset_millis.fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        let base = self.frozen_at_millis.unwrap_or_else(|| Utc::now().timestamp_millis());
        let millis = base.saturating_add(self.offset_millis.load(Ordering::SeqCst));
        DateTime::from_timestamp_millis(millis).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// RFC 3339 UTC with a `Z`, whole seconds: the contract's one time format.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_clock_moves_only_when_told() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let clock = TestClock::frozen_at(t0);
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::days(30));
        assert_eq!(clock.now(), t0 + Duration::days(30));
        assert_eq!(clock.now_epoch(), 1_800_000_000 + 30 * 86_400);
    }

    #[test]
    fn following_clock_is_ahead_by_the_advance() {
        let clock = TestClock::following_wall_clock();
        clock.advance(Duration::hours(1));
        let ahead = clock.now() - Utc::now();
        assert!(ahead > Duration::minutes(59) && ahead <= Duration::hours(1));
    }

    #[test]
    fn formats_like_the_contract() {
        let t = DateTime::from_timestamp(1_795_874_400, 0).unwrap();
        assert_eq!(rfc3339(t), "2026-11-28T14:00:00Z");
    }
}
