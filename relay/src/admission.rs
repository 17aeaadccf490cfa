//! Who gets in, and how much they may ask before they have proved who they
//! are.
//!
//! Memory and CPU are spent on a connection before its certificate is
//! checked, and enrollment is open to anyone who can reach the port. So the
//! relay bounds: connections in all (`max_connections`), connections not yet
//! authenticated or enrolling (`max_unauthenticated`), and enrollment
//! attempts per source address (`enroll_per_minute`, a token bucket). A
//! connection over a bound is refused before its handshake; an enrollment
//! over its rate is answered with an error and not stored or audited in full.
//! Agents' monitoring events are paced per agent with the same bucket
//! ([`RateLimiter::reserve`]): a flood is slowed down, never dropped.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counts live connections; a [`Slot`] is held for each.
#[derive(Default)]
pub struct Gate {
    live: AtomicUsize,
    unauthenticated: AtomicUsize,
}

/// One admitted connection: counted until dropped; counted as
/// unauthenticated until [`Slot::authenticated`].
pub struct Slot {
    gate: Arc<Gate>,
    unauthenticated: bool,
}

impl Gate {
    /// A slot for a new connection, or `None` when a bound is reached.
    pub fn admit(self: &Arc<Self>, max_live: usize, max_unauthenticated: usize) -> Option<Slot> {
        if !bump(&self.unauthenticated, max_unauthenticated) {
            return None;
        }
        if !bump(&self.live, max_live) {
            self.unauthenticated.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot {
            gate: self.clone(),
            unauthenticated: true,
        })
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    pub fn unauthenticated(&self) -> usize {
        self.unauthenticated.load(Ordering::Acquire)
    }
}

/// Add one to `counter` unless it is at `max`.
fn bump(counter: &AtomicUsize, max: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

impl Slot {
    /// The peer proved who it is (a valid certificate of this relay).
    pub fn authenticated(&mut self) {
        if std::mem::take(&mut self.unauthenticated) {
            self.gate.unauthenticated.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.authenticated();
        self.gate.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A token bucket per key (a source address, an agent): `rate` tokens a
/// second, at most `burst` saved up. Keys idle long enough to be full again
/// are forgotten, so the table stays as small as the set of recent keys.
pub struct RateLimiter<K> {
    rate: f64,
    burst: f64,
    buckets: Mutex<Buckets<K>>,
}

struct Buckets<K> {
    map: HashMap<K, (f64, Instant)>,
    /// The size at which idle keys are swept next.
    sweep_at: usize,
    /// Sweeps so far (what the tests look at).
    sweeps: u64,
}

/// Keys kept before idle ones are first swept.
const SWEEP_AT: usize = 10_000;

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(rate_per_sec: f64, burst: f64) -> Self {
        RateLimiter {
            rate: rate_per_sec.max(f64::MIN_POSITIVE),
            burst: burst.max(1.0),
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                sweep_at: SWEEP_AT,
                sweeps: 0,
            }),
        }
    }

    /// `per_minute` a minute, as many at once.
    pub fn per_minute(per_minute: u32) -> Self {
        Self::new(f64::from(per_minute) / 60.0, f64::from(per_minute))
    }

    /// Take a token for `key`; false (and nothing taken) when it has none.
    pub fn allow(&self, key: &K) -> bool {
        self.take(key, 1.0, false, Instant::now()).is_zero()
    }

    /// Take `n` tokens for `key`, going into debt if need be: how long the
    /// caller should wait before doing the work (pacing, not refusing).
    pub fn reserve(&self, key: &K, n: usize) -> Duration {
        self.take(key, n as f64, true, Instant::now())
    }

    fn take(&self, key: &K, n: f64, debt: bool, now: Instant) -> Duration {
        let mut guard = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let buckets = &mut *guard;
        if buckets.map.len() >= buckets.sweep_at {
            let full = Duration::from_secs_f64(self.burst / self.rate);
            buckets
                .map
                .retain(|_, (_, seen)| now.duration_since(*seen) < full);
            // Next sweep once the table has doubled: a sweep that frees
            // little (more busy keys than SWEEP_AT — an agent each, in a
            // big fleet) is not repeated on every call. Sweeping at a
            // fixed size made each call scan every key: 10,000 agents'
            // events cost 10,000 steps each (BENCHMARKS.md "Profiles").
            buckets.sweep_at = SWEEP_AT.max(2 * buckets.map.len());
            buckets.sweeps += 1;
        }
        let (tokens, seen) = buckets.map.entry(key.clone()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*seen).as_secs_f64() * self.rate).min(self.burst);
        *seen = now;
        if *tokens >= n {
            *tokens -= n;
            return Duration::ZERO;
        }
        let short = n - *tokens;
        if debt {
            *tokens -= n;
        }
        Duration::from_secs_f64(short / self.rate).max(Duration::from_nanos(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn gate_bounds_live_and_unauthenticated() {
        let gate = Arc::new(Gate::default());
        let mut a = gate.admit(3, 2).unwrap();
        let _b = gate.admit(3, 2).unwrap();
        assert!(gate.admit(3, 2).is_none(), "two unauthenticated at most");
        a.authenticated();
        let _c = gate.admit(3, 2).unwrap();
        assert!(gate.admit(3, 2).is_none(), "three in all at most");
        drop(a);
        assert_eq!((gate.live(), gate.unauthenticated()), (2, 2));
    }

    #[test]
    fn bucket_refills_over_time() {
        let limit = RateLimiter::per_minute(60);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..60).all(|_| limit.take(&ip, 1.0, false, t0).is_zero()));
        assert!(!limit.take(&ip, 1.0, false, t0).is_zero(), "burst spent");
        let later = t0 + Duration::from_millis(1100);
        assert!(limit.take(&ip, 1.0, false, later).is_zero());
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limit.allow(&other), "per source");
    }

    /// (keys held, sweeps so far)
    fn table(limit: &RateLimiter<String>) -> (usize, u64) {
        let b = limit.buckets.lock().unwrap();
        (b.map.len(), b.sweeps)
    }

    #[test]
    fn many_busy_keys_are_not_swept_on_every_call() {
        // Events of 3 × SWEEP_AT agents, all busy: a sweep frees nothing.
        let limit = RateLimiter::new(1.0, 10.0);
        let t0 = Instant::now();
        for round in 0..3 {
            for i in 0..3 * SWEEP_AT {
                let at = t0 + Duration::from_millis(round);
                limit.take(&format!("pc{i}"), 1.0, true, at);
            }
        }
        let (held, sweeps) = table(&limit);
        assert_eq!(held, 3 * SWEEP_AT);
        assert!(
            sweeps <= 3,
            "{sweeps} sweeps of a table of busy keys: each call scans every key"
        );

        // Idle long enough to be full again: forgotten at the next sweep.
        let later = t0 + Duration::from_secs(60);
        for i in 0..3 * SWEEP_AT {
            limit.take(&format!("new{i}"), 1.0, true, later);
        }
        let (held, _) = table(&limit);
        assert!(
            held < 6 * SWEEP_AT,
            "idle keys were not forgotten: {held} held"
        );
    }

    #[test]
    fn reserve_paces_instead_of_refusing() {
        let limit = RateLimiter::new(100.0, 100.0);
        let agent = "pc1".to_string();
        assert_eq!(limit.reserve(&agent, 100), Duration::ZERO);
        let wait = limit.reserve(&agent, 200);
        assert!(wait >= Duration::from_millis(1900), "{wait:?}");
        let wait = limit.reserve(&agent, 100);
        assert!(
            wait >= Duration::from_millis(2900),
            "debt carries: {wait:?}"
        );
    }
}
