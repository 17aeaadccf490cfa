//! Who gets in, and how much they may ask before they have proved who they
//! are.
//!
//! Memory and CPU are spent on a connection before its certificate is
//! checked, and enrollment is open to anyone who can reach the port. So the
//! relay bounds: connections in all (`max_connections`), connections not yet
//! authenticated or enrolling (`max_unauthenticated`) — in all, per source
//! address (`max_unauthenticated_per_address`) and per source network, a
//! /24 of IPv4 or a /64 of IPv6 (`max_unauthenticated_per_network`), so
//! one address or one network cannot take every slot and lock out the
//! consoles, reconnecting agents and enrollments of everyone else — and
//! enrollment attempts per source (`enroll_per_minute`, a token bucket). A
//! connection over a bound is refused before its handshake; an enrollment
//! over its rate is answered with an error and not stored or audited in full.
//! Agents' monitoring events are paced per agent with the same bucket
//! ([`RateLimiter::reserve`]): a flood is slowed down, never dropped.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The bounds a [`Gate`] admits by (`relay.toml`).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub live: usize,
    pub unauthenticated: usize,
    pub per_address: usize,
    pub per_network: usize,
}

/// Which bound refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Live,
    Unauthenticated,
    Address,
    Network,
}

impl Full {
    /// The `relay.toml` key of the bound.
    pub fn key(self) -> &'static str {
        match self {
            Full::Live => "max_connections",
            Full::Unauthenticated => "max_unauthenticated",
            Full::Address => "max_unauthenticated_per_address",
            Full::Network => "max_unauthenticated_per_network",
        }
    }
}

/// A source address as the bounds count it: IPv4-mapped IPv6 addresses
/// as the IPv4 address they are (a relay on `[::]` sees IPv4 peers so).
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The source network of `ip`: its /24 (IPv4) or /64 (IPv6) — what one
/// party typically holds, so what a per-network bound counts.
pub fn network(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::from(bits.to_be_bytes())
        }
    }
}

/// The source an unauthenticated peer is judged as: its IPv4 address, or
/// the /64 of its IPv6 address (which one party holds whole, so a rotating
/// IPv6 source is still one source).
pub fn source(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        v4 @ IpAddr::V4(_) => v4,
        v6 @ IpAddr::V6(_) => network(v6),
    }
}

/// Counts live connections; a [`Slot`] is held for each.
#[derive(Default)]
pub struct Gate {
    live: AtomicUsize,
    unauthenticated: AtomicUsize,
    /// Unauthenticated connections per source address and per network.
    sources: Mutex<Sources>,
}

#[derive(Default)]
struct Sources {
    addresses: HashMap<IpAddr, usize>,
    networks: HashMap<IpAddr, usize>,
}

/// One admitted connection: counted until dropped; counted as
/// unauthenticated (in all, for its address and its network) until
/// [`Slot::authenticated`].
pub struct Slot {
    gate: Arc<Gate>,
    /// The source address, while the connection is unauthenticated.
    unauthenticated: Option<IpAddr>,
}

impl Gate {
    /// A slot for a new connection from `remote`, or which bound is
    /// reached.
    pub fn admit(self: &Arc<Self>, remote: IpAddr, bounds: Bounds) -> Result<Slot, Full> {
        let address = canonical(remote);
        let net = network(address);
        {
            let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
            if sources.addresses.get(&address).copied().unwrap_or(0) >= bounds.per_address {
                return Err(Full::Address);
            }
            if sources.networks.get(&net).copied().unwrap_or(0) >= bounds.per_network {
                return Err(Full::Network);
            }
            if !bump(&self.unauthenticated, bounds.unauthenticated) {
                return Err(Full::Unauthenticated);
            }
            if !bump(&self.live, bounds.live) {
                self.unauthenticated.fetch_sub(1, Ordering::AcqRel);
                return Err(Full::Live);
            }
            *sources.addresses.entry(address).or_insert(0) += 1;
            *sources.networks.entry(net).or_insert(0) += 1;
        }
        Ok(Slot {
            gate: self.clone(),
            unauthenticated: Some(address),
        })
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    pub fn unauthenticated(&self) -> usize {
        self.unauthenticated.load(Ordering::Acquire)
    }

    /// Unauthenticated connections from `ip` now (its address, its network).
    pub fn unauthenticated_from(&self, ip: IpAddr) -> (usize, usize) {
        let address = canonical(ip);
        let sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let n = |m: &HashMap<IpAddr, usize>, k| m.get(&k).copied().unwrap_or(0);
        (
            n(&sources.addresses, address),
            n(&sources.networks, network(address)),
        )
    }

    fn release(&self, address: IpAddr) {
        let mut guard = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let sources = &mut *guard;
        for (map, key) in [
            (&mut sources.addresses, address),
            (&mut sources.networks, network(address)),
        ] {
            if let Some(n) = map.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&key);
                }
            }
        }
        self.unauthenticated.fetch_sub(1, Ordering::AcqRel);
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
        if let Some(address) = self.unauthenticated.take() {
            self.gate.release(address);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.authenticated();
        self.gate.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Says, at most once per `every`, how many events of a kind happened
/// since it last said (a log line per refused connection would let a flood
/// write the relay's log at the flood's rate).
pub struct Every {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Every {
    pub fn new(every: Duration) -> Every {
        Every {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Count one event: `Some(n)` (this one and the n − 1 left unsaid
    /// before it) when it is time to say so.
    pub fn tick(&self) -> Option<u64> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.1 += 1;
        if s.0.is_some_and(|at| now.duration_since(at) < self.every) {
            return None;
        }
        s.0 = Some(now);
        Some(std::mem::take(&mut s.1))
    }
}

/// Refusals of unauthenticated attempts (enrollments) counted per source
/// and window, so that the audit log gets one row per source per window,
/// not one per attempt: the first refusal of a window is written in full
/// ([`Tally::count`] says so), the others only counted, and when the window
/// is over one more row says how many were left out ([`Tally::due`]). A
/// flood from any number of addresses writes at most two rows per window
/// for each of [`Tally::SOURCES`] sources, and two for all the others
/// together.
pub struct Tally<K> {
    window: Duration,
    map: Mutex<HashMap<Option<K>, Window>>,
}

struct Window {
    started: Instant,
    started_unix: i64,
    left_out: u64,
    /// Why the last one left out was refused.
    last: String,
}

/// Refusals left out of the audit in a window that is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut<K> {
    /// The source (an address as [`source`] makes it, an agent's name);
    /// `None`: sources past [`Tally::SOURCES`].
    pub source: Option<K>,
    pub count: u64,
    /// When the window started (Unix seconds).
    pub since: i64,
    pub last: String,
}

impl<K: Hash + Eq + Clone> Tally<K> {
    /// One row per source per minute.
    pub const WINDOW: Duration = Duration::from_secs(60);
    /// Sources counted apart; the rest share one count.
    pub const SOURCES: usize = 1024;

    pub fn new(window: Duration) -> Tally<K> {
        Tally {
            window,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Count a refusal of `source` for `reason`: true when it is the first
    /// of its source's window (audit it in full), false when it was counted.
    pub fn count(&self, source: K, reason: &str) -> bool {
        self.count_at(source, reason, Instant::now())
    }

    fn count_at(&self, source: K, reason: &str, now: Instant) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = Some(source);
        if map.len() >= Self::SOURCES && !map.contains_key(&key) {
            key = None;
        }
        match map.get_mut(&key) {
            Some(w) if now.duration_since(w.started) < self.window => {
                w.left_out += 1;
                w.last = reason.to_string();
                false
            }
            // A window over but not yet taken by `due`: it is written
            // when `due` runs next; this refusal starts nothing new.
            Some(w) => {
                w.left_out += 1;
                w.last = reason.to_string();
                false
            }
            None => {
                map.insert(
                    key,
                    Window {
                        started: now,
                        started_unix: crate::clock::unix_now(),
                        left_out: 0,
                        last: String::new(),
                    },
                );
                true
            }
        }
    }

    /// The windows that are over (all of them when `all`, as at shutdown),
    /// forgotten now: those that left refusals out, to be audited.
    pub fn due(&self, all: bool) -> Vec<LeftOut<K>> {
        self.due_at(Instant::now(), all)
    }

    fn due_at(&self, now: Instant, all: bool) -> Vec<LeftOut<K>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        map.retain(|key, w| {
            if !all && now.duration_since(w.started) < self.window {
                return true;
            }
            if w.left_out > 0 {
                out.push(LeftOut {
                    source: key.clone(),
                    count: w.left_out,
                    since: w.started_unix,
                    last: std::mem::take(&mut w.last),
                });
            }
            false
        });
        out
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

    fn bounds(live: usize, unauthenticated: usize) -> Bounds {
        Bounds {
            live,
            unauthenticated,
            per_address: usize::MAX,
            per_network: usize::MAX,
        }
    }

    #[test]
    fn gate_bounds_live_and_unauthenticated() {
        let gate = Arc::new(Gate::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut a = gate.admit(ip, bounds(3, 2)).unwrap();
        let _b = gate.admit(ip, bounds(3, 2)).unwrap();
        assert_eq!(
            gate.admit(ip, bounds(3, 2)).err(),
            Some(Full::Unauthenticated),
            "two unauthenticated at most"
        );
        a.authenticated();
        let _c = gate.admit(ip, bounds(3, 2)).unwrap();
        assert_eq!(
            gate.admit(ip, bounds(3, 2)).err(),
            Some(Full::Unauthenticated)
        );
        drop(a);
        assert_eq!((gate.live(), gate.unauthenticated()), (2, 2));
        drop(_c);
        let _d = gate.admit(ip, bounds(2, 3)).unwrap();
        assert_eq!(
            gate.admit(ip, bounds(2, 3)).err(),
            Some(Full::Live),
            "two in all at most"
        );
    }

    #[test]
    fn gate_bounds_each_source_and_network() {
        let gate = Arc::new(Gate::default());
        let b = Bounds {
            live: 100,
            unauthenticated: 100,
            per_address: 2,
            per_network: 3,
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut held = vec![
            gate.admit(ip("198.51.100.7"), b).unwrap(),
            gate.admit(ip("::ffff:198.51.100.7"), b).unwrap(),
        ];
        assert_eq!(
            gate.admit(ip("198.51.100.7"), b).err(),
            Some(Full::Address),
            "an IPv4-mapped address is the same address"
        );
        held.push(gate.admit(ip("198.51.100.8"), b).unwrap());
        assert_eq!(
            gate.admit(ip("198.51.100.9"), b).err(),
            Some(Full::Network),
            "the /24 is full"
        );
        // Another network is not held back.
        held.push(gate.admit(ip("198.51.101.9"), b).unwrap());
        // IPv6: the /64 is one network.
        held.push(gate.admit(ip("2001:db8:0:1::1"), b).unwrap());
        held.push(gate.admit(ip("2001:db8:0:1::2"), b).unwrap());
        held.push(gate.admit(ip("2001:db8:0:1:ffff::3"), b).unwrap());
        assert_eq!(
            gate.admit(ip("2001:db8:0:1::4"), b).err(),
            Some(Full::Network)
        );
        held.push(gate.admit(ip("2001:db8:0:2::4"), b).unwrap());
        assert_eq!(gate.unauthenticated_from(ip("198.51.100.7")), (2, 3));
        // Authenticated: counted no more against its source.
        held[0].authenticated();
        assert_eq!(gate.unauthenticated_from(ip("198.51.100.7")), (1, 2));
        held.push(gate.admit(ip("198.51.100.7"), b).unwrap());
        held.clear();
        assert_eq!(gate.unauthenticated_from(ip("198.51.100.7")), (0, 0));
        assert_eq!((gate.live(), gate.unauthenticated()), (0, 0));
        assert!(gate.sources.lock().unwrap().addresses.is_empty());
        assert!(gate.sources.lock().unwrap().networks.is_empty());
    }

    #[test]
    fn refusals_are_tallied_per_source_and_window() {
        let tally = Tally::<IpAddr>::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(
            tally.count_at(a, "unknown token", t0),
            "the first is written"
        );
        for _ in 0..57 {
            assert!(!tally.count_at(a, "unknown token", t0));
        }
        assert!(tally.count_at(b, "name taken", t0), "per source");
        assert!(tally.due_at(t0 + Duration::from_secs(30), false).is_empty());
        let due = tally.due_at(t0 + Duration::from_secs(61), false);
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(
            (due[0].source, due[0].count, due[0].last.as_str()),
            (Some(a), 57, "unknown token")
        );
        // A new window starts with a row written in full.
        assert!(tally.count_at(a, "x", t0 + Duration::from_secs(62)));
        assert!(tally.due_at(t0 + Duration::from_secs(62), true).is_empty());
    }

    #[test]
    fn tallied_sources_are_bounded() {
        let tally = Tally::<IpAddr>::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let mut written = 0;
        for i in 0..(Tally::<IpAddr>::SOURCES as u32 + 500) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            written += usize::from(tally.count_at(ip, "r", t0));
        }
        assert_eq!(
            written,
            Tally::<IpAddr>::SOURCES + 1,
            "the others share one row"
        );
        let due = tally.due_at(t0, true);
        assert_eq!(
            due,
            vec![LeftOut {
                source: None,
                count: 499,
                since: due[0].since,
                last: "r".into(),
            }]
        );
    }

    #[test]
    fn sources_of_ipv6_are_their_64() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(source(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        let v4: IpAddr = "::ffff:192.0.2.9".parse().unwrap();
        assert_eq!(source(v4), "192.0.2.9".parse::<IpAddr>().unwrap());
        assert_eq!(network(v4), "192.0.2.0".parse::<IpAddr>().unwrap());
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
