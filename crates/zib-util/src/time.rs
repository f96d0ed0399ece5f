//! Wall-clock time as unix milliseconds, and its RFC 3339 form: the one place that
//! converts, so every response formats time the same way.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds now (the simulated clock's time when one is set on this thread).
pub fn now_ms() -> i64 {
    #[cfg(feature = "sim")]
    if let Some(ms) = sim::now_ms() {
        return ms;
    }
    unix_ms(SystemTime::now())
}

/// Unix milliseconds of `t` (0 before 1970, `i64::MAX` past year 292 million).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix seconds now (0 before 1970).
pub fn now_secs() -> u64 {
    #[cfg(feature = "sim")]
    if let Some(ms) = sim::now_ms() {
        return u64::try_from(ms / 1000).unwrap_or(0);
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A simulated clock for the deterministic cluster simulation: set on one thread
/// (the simulation's current-thread runtime), it is what [`now_ms`] and [`now_secs`]
/// read there. Compiled only with the `sim` feature, so production reads the wall
/// clock with no check at all.
#[cfg(feature = "sim")]
pub mod sim {
    use std::cell::Cell;

    thread_local! {
        static NOW_MS: Cell<Option<i64>> = const { Cell::new(None) };
    }

    /// The simulated time on this thread, if one is set.
    pub fn now_ms() -> Option<i64> {
        NOW_MS.with(Cell::get)
    }

    /// Sets this thread's clock to `ms`; `None` goes back to the wall clock.
    pub fn set_now_ms(ms: Option<i64>) {
        NOW_MS.with(|c| c.set(ms));
    }

    /// Moves this thread's simulated clock forward by `ms` (from 0 if none was set).
    pub fn advance_ms(ms: i64) {
        NOW_MS.with(|c| c.set(Some(c.get().unwrap_or(0) + ms)));
    }
}

/// The UTC date-time of a unix-millisecond time (the epoch if out of range).
pub fn datetime(ms: i64) -> ::time::OffsetDateTime {
    ::time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(::time::OffsetDateTime::UNIX_EPOCH)
}

/// RFC 3339 UTC for a unix-millisecond time.
pub fn rfc3339(ms: i64) -> String {
    datetime(ms)
        .format(&::time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_milliseconds_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_775_669_400_123), "2026-04-08T17:30:00.123Z");
    }

    #[test]
    fn times_before_the_epoch_are_zero() {
        assert_eq!(unix_ms(UNIX_EPOCH - std::time::Duration::from_secs(5)), 0);
        assert!(now_ms() > 1_700_000_000_000);
    }
}
