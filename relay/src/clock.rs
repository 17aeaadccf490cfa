//! Time, passed in: every rule that depends on "now" (token expiry, the
//! reopen window of the incident engine, timestamps of tickets and audit
//! entries, webhook retries) reads it from a [`Clock`] it is given, never
//! from the system itself, so tests move a [`ManualClock`] instead of
//! sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix seconds, from wherever the relay gets its time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> i64;
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        unix_now()
    }
}

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves only when told: for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    pub fn new(now: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: AtomicI64::new(now),
        })
    }

    pub fn set(&self, now: i64) {
        self.now.store(now, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_secs() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// The system's Unix time in seconds (0 before 1970). Only [`SystemClock`]
/// and code outside the rules (logs, file names) call this.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix seconds as RFC 3339.
pub fn rfc3339(secs: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
        .to_string()
}

/// An RFC 3339 time as Unix seconds (`None` when it is none).
pub fn parse_rfc3339(at: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(at.trim()).ok()?;
    let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now(), 1_000);
        c.advance(Duration::from_secs(60));
        assert_eq!(c.now(), 1_060);
        c.set(5);
        assert_eq!(rfc3339(c.now()), "1970-01-01T00:00:05Z");
        assert_eq!(parse_rfc3339("1970-01-01T00:00:05.250Z"), Some(5));
        assert!(SystemClock.now() > 1_700_000_000);
    }
}
