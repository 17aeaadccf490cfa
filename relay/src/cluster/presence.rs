//! The replicated presence map: which agents the *other* relays hold.
//!
//! Each relay announces its own changes (`up`, `down`, each with the next
//! number of its `version`), a `beat` every `heartbeat_ms` carrying its
//! current version, and `bye` when it stops. Every relay keeps, per other
//! relay, the agents it holds and when it was last heard of:
//!
//! * a change whose version follows the one known is applied; a gap (a
//!   message lost while NATS reconnected, a relay that started after the
//!   other) or a beat whose version differs asks that relay for a
//!   **snapshot** (its whole list at a version), after which changes apply
//!   again — so the map converges within a heartbeat or two of any loss.
//!   Changes heard while the snapshot is on its way are kept and applied
//!   after it when they follow it: in a big fleet agents come and go all
//!   the time, and dropping them made the first change after every
//!   snapshot reveal a gap and ask again at once — snapshots of the whole
//!   list back to back, for ever. Asks stay at most one per [`ASK_AGAIN`];
//! * a relay not heard of for `presence_ttl_ms` is dropped with all its
//!   agents (a relay killed with -9 sends no `bye`): its agents show offline
//!   on the other relays within `presence_ttl_ms + heartbeat_ms` (the sweep
//!   runs every heartbeat);
//! * an agent claimed by several relays (it moved from one to the other
//!   before the first noticed) is held by the newest claim: `since`, the
//!   connection's start on its relay's clock.
//!
//! No I/O here: the NATS side (`super::nats`) feeds it messages and time.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// What a relay says of its agents on the presence subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PresenceMsg {
    /// Alive, at this version, holding this many agents.
    Beat {
        relay: String,
        instance: u64,
        version: u64,
        agents: u64,
    },
    /// An agent connected to `relay` (at `since`, ms since the epoch).
    Up {
        relay: String,
        instance: u64,
        version: u64,
        agent: String,
        since: u64,
    },
    /// An agent's connection to `relay` ended.
    Down {
        relay: String,
        instance: u64,
        version: u64,
        agent: String,
    },
    /// `relay` is shutting down: its agents are offline now.
    Bye { relay: String, instance: u64 },
}

impl PresenceMsg {
    pub fn relay(&self) -> &str {
        match self {
            PresenceMsg::Beat { relay, .. }
            | PresenceMsg::Up { relay, .. }
            | PresenceMsg::Down { relay, .. }
            | PresenceMsg::Bye { relay, .. } => relay,
        }
    }
    pub fn instance(&self) -> u64 {
        match self {
            PresenceMsg::Beat { instance, .. }
            | PresenceMsg::Up { instance, .. }
            | PresenceMsg::Down { instance, .. }
            | PresenceMsg::Bye { instance, .. } => *instance,
        }
    }
}

/// A relay's whole list, at a version (the answer to a snapshot request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub relay: String,
    pub instance: u64,
    pub version: u64,
    /// `(agent, since)`.
    pub agents: Vec<(String, u64)>,
}

/// This relay's own agents, as announced.
#[derive(Debug, Default)]
pub struct Local {
    pub version: u64,
    pub agents: HashMap<String, u64>,
}

impl Local {
    /// Record that `agent` connected here at `since`; the version to
    /// announce it with.
    pub fn up(&mut self, agent: &str, since: u64) -> u64 {
        self.agents.insert(agent.to_string(), since);
        self.version += 1;
        self.version
    }

    /// Record that `agent` left; `None` when it was not held here.
    pub fn down(&mut self, agent: &str) -> Option<u64> {
        self.agents.remove(agent)?;
        self.version += 1;
        Some(self.version)
    }

    /// The whole list (in no particular order: it is taken under the
    /// lock that every agent's connect and disconnect waits for).
    pub fn snapshot(&self, relay: &str, instance: u64) -> Snapshot {
        let agents: Vec<(String, u64)> = self.agents.iter().map(|(a, s)| (a.clone(), *s)).collect();
        Snapshot {
            relay: relay.to_string(),
            instance,
            version: self.version,
            agents,
        }
    }
}

/// What the caller should do after a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Nothing,
    /// Ask this relay for its snapshot.
    AskSnapshot(String),
    /// Another relay uses this relay's own id.
    DuplicateId,
}

#[derive(Debug)]
struct Remote {
    instance: u64,
    version: u64,
    /// Whether `agents` is known to be complete at `version`.
    synced: bool,
    heard: Instant,
    asked: Option<Instant>,
    agents: HashMap<String, u64>,
    /// Changes newer than `version` that cannot be applied yet (before a
    /// snapshot, or after a gap), by version.
    pending: BTreeMap<u64, Change>,
}

/// One agent's change, kept until it can be applied in order.
#[derive(Debug)]
enum Change {
    Up { agent: String, since: u64 },
    Down { agent: String },
}

/// Changes kept for after a snapshot; past it they are dropped (the next
/// snapshot is asked for anyway).
const MAX_PENDING: usize = 65_536;

impl Remote {
    fn new(instance: u64, now: Instant) -> Remote {
        Remote {
            instance,
            version: 0,
            synced: false,
            heard: now,
            asked: None,
            agents: HashMap::new(),
            pending: BTreeMap::new(),
        }
    }

    /// A change at `version`: applied when it follows what is known (with
    /// the kept ones that follow it), else kept. True when the list is not
    /// known complete: a snapshot is needed.
    fn change(&mut self, version: u64, change: Change) -> bool {
        if version <= self.version {
            // Older than what is known (or than the snapshot on its way
            // would be: the snapshot is newer still).
            return !self.synced;
        }
        if self.pending.len() >= MAX_PENDING {
            self.pending.clear();
        }
        self.pending.insert(version, change);
        if self.synced {
            self.catch_up();
        }
        !(self.synced && self.pending.is_empty())
    }

    /// Apply the kept changes that follow `version`, in order.
    fn catch_up(&mut self) {
        while let Some(change) = self.pending.remove(&(self.version + 1)) {
            match change {
                Change::Up { agent, since } => self.agents.insert(agent, since),
                Change::Down { agent } => self.agents.remove(&agent),
            };
            self.version += 1;
        }
    }
}

/// The agents other relays hold.
#[derive(Debug)]
pub struct Map {
    me: String,
    relays: HashMap<String, Remote>,
    /// `(relay, instance)` that said `bye`: what they still send (changes
    /// queued before it) is ignored.
    gone: std::collections::HashSet<(String, u64)>,
}

/// A snapshot already asked for is not asked again before this.
const ASK_AGAIN: Duration = Duration::from_secs(2);

impl Map {
    pub fn new(me: &str) -> Map {
        Map {
            me: me.to_string(),
            relays: HashMap::new(),
            gone: std::collections::HashSet::new(),
        }
    }

    fn remote(&mut self, relay: &str, instance: u64, now: Instant) -> &mut Remote {
        let r = self
            .relays
            .entry(relay.to_string())
            .or_insert_with(|| Remote::new(instance, now));
        if r.instance != instance {
            // Restarted: nothing of the old instance holds.
            *r = Remote::new(instance, now);
        }
        r.heard = now;
        r
    }

    /// Apply a presence message heard at `now`.
    pub fn apply(&mut self, msg: PresenceMsg, now: Instant) -> Next {
        if msg.relay() == self.me {
            return Next::DuplicateId;
        }
        if let PresenceMsg::Bye { relay, instance } = &msg {
            if self
                .relays
                .get(relay)
                .is_some_and(|r| r.instance == *instance)
            {
                self.relays.remove(relay);
            }
            if self.gone.len() >= 1_024 {
                self.gone.clear();
            }
            self.gone.insert((relay.clone(), *instance));
            return Next::Nothing;
        }
        if self
            .gone
            .contains(&(msg.relay().to_string(), msg.instance()))
        {
            return Next::Nothing;
        }
        let relay = msg.relay().to_string();
        let r = self.remote(&relay, msg.instance(), now);
        let needs_snapshot = match msg {
            PresenceMsg::Beat { version, .. } => {
                // Changes up to a beat's version come before it (NATS keeps
                // one publisher's order): behind it, some were lost.
                if r.synced && version > r.version {
                    r.synced = false;
                }
                !r.synced
            }
            PresenceMsg::Up {
                version,
                agent,
                since,
                ..
            } => r.change(version, Change::Up { agent, since }),
            PresenceMsg::Down { version, agent, .. } => r.change(version, Change::Down { agent }),
            PresenceMsg::Bye { .. } => false,
        };
        if !needs_snapshot {
            return Next::Nothing;
        }
        if r.asked.is_some_and(|at| now.duration_since(at) < ASK_AGAIN) {
            return Next::Nothing;
        }
        r.asked = Some(now);
        Next::AskSnapshot(relay)
    }

    /// Apply a snapshot (ignored when it is of an instance no longer
    /// current, or older than what is known).
    pub fn apply_snapshot(&mut self, s: Snapshot, now: Instant) {
        if s.relay == self.me || self.gone.contains(&(s.relay.clone(), s.instance)) {
            return;
        }
        let r = self.remote(&s.relay, s.instance, now);
        if r.synced && s.version <= r.version {
            return;
        }
        r.agents = s.agents.into_iter().collect();
        r.version = s.version;
        r.synced = true;
        // The changes heard meanwhile that follow it. `asked` stays: a gap
        // left asks again no sooner than ASK_AGAIN after the last ask.
        r.pending = r.pending.split_off(&(s.version + 1));
        r.catch_up();
    }

    /// Drop the relays not heard of for `ttl`; their ids.
    pub fn sweep(&mut self, now: Instant, ttl: Duration) -> Vec<String> {
        let dead: Vec<String> = self
            .relays
            .iter()
            .filter(|(_, r)| now.duration_since(r.heard) > ttl)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &dead {
            self.relays.remove(id);
        }
        dead
    }

    /// The other relay holding `agent` by the newest claim: `(relay, since)`.
    pub fn holder(&self, agent: &str) -> Option<(String, u64)> {
        self.relays
            .iter()
            .filter_map(|(id, r)| r.agents.get(agent).map(|s| (id.clone(), *s)))
            .max_by_key(|(id, since)| (*since, id.clone()))
    }

    /// Whether `relay` is alive as `instance` (heard of within the TTL).
    pub fn alive(&self, relay: &str) -> Option<u64> {
        self.relays.get(relay).map(|r| r.instance)
    }

    /// The relays heard of, with the number of agents each holds.
    pub fn relays(&self) -> Vec<(String, usize)> {
        let mut v: Vec<_> = self
            .relays
            .iter()
            .map(|(id, r)| (id.clone(), r.agents.len()))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(relay: &str, version: u64, agent: &str, since: u64) -> PresenceMsg {
        PresenceMsg::Up {
            relay: relay.into(),
            instance: 1,
            version,
            agent: agent.into(),
            since,
        }
    }

    fn beat(relay: &str, version: u64) -> PresenceMsg {
        PresenceMsg::Beat {
            relay: relay.into(),
            instance: 1,
            version,
            agents: 0,
        }
    }

    fn snapshot(relay: &str, version: u64, agents: &[(&str, u64)]) -> Snapshot {
        Snapshot {
            relay: relay.into(),
            instance: 1,
            version,
            agents: agents.iter().map(|(a, s)| (a.to_string(), *s)).collect(),
        }
    }

    #[test]
    fn presence_changes_in_order_apply_after_a_snapshot_and_gaps_ask_again() {
        let t = Instant::now();
        let mut m = Map::new("me");
        // First word of a relay: its whole list is asked for.
        assert_eq!(
            m.apply(up("a", 5, "pc1", 10), t),
            Next::AskSnapshot("a".into())
        );
        assert_eq!(m.holder("pc1"), None, "not applied before the snapshot");
        m.apply_snapshot(snapshot("a", 5, &[("pc1", 10)]), t);
        assert_eq!(m.holder("pc1"), Some(("a".into(), 10)));
        assert_eq!(m.apply(up("a", 6, "pc2", 11), t), Next::Nothing);
        assert_eq!(m.holder("pc2"), Some(("a".into(), 11)));
        assert_eq!(m.apply(beat("a", 6), t), Next::Nothing);
        // A lost change (7): the next one (8) asks for the list again (no
        // sooner than ASK_AGAIN after the last ask).
        let t = t + ASK_AGAIN;
        let down8 = PresenceMsg::Down {
            relay: "a".into(),
            instance: 1,
            version: 8,
            agent: "pc1".into(),
        };
        assert_eq!(m.apply(down8, t), Next::AskSnapshot("a".into()));
        // Asked already: not again at once.
        assert_eq!(m.apply(beat("a", 8), t), Next::Nothing);
        m.apply_snapshot(snapshot("a", 8, &[("pc2", 11)]), t);
        assert_eq!(m.holder("pc1"), None);
        // An old snapshot does not undo a newer state.
        m.apply_snapshot(snapshot("a", 6, &[("pc1", 10)]), t);
        assert_eq!(m.holder("pc1"), None);
    }

    #[test]
    fn changes_during_a_snapshot_are_applied_after_it_and_do_not_ask_again() {
        let t = Instant::now();
        let mut m = Map::new("me");
        assert_eq!(
            m.apply(up("a", 1, "pc1", 1), t),
            Next::AskSnapshot("a".into())
        );
        // Agents keep coming while the snapshot (taken at version 3) is on
        // its way: 2 and 3 are in it, 4 and 5 are not.
        for v in 2..=5 {
            let agent = format!("pc{v}");
            assert_eq!(m.apply(up("a", v, &agent, v), t), Next::Nothing);
        }
        m.apply_snapshot(snapshot("a", 3, &[("pc1", 1), ("pc2", 2), ("pc3", 3)]), t);
        for v in 1..=5 {
            assert_eq!(m.holder(&format!("pc{v}")), Some(("a".into(), v)), "pc{v}");
        }
        // Synced at 5: the next change applies, no snapshot asked, even
        // well after the last ask.
        let later = t + 2 * ASK_AGAIN;
        assert_eq!(m.apply(up("a", 6, "pc6", 6), later), Next::Nothing);
        assert_eq!(m.holder("pc6"), Some(("a".into(), 6)));
        // A change that arrives before the one it follows waits for it.
        assert_eq!(
            m.apply(up("a", 8, "pc8", 8), later),
            Next::AskSnapshot("a".into())
        );
        assert_eq!(m.apply(up("a", 7, "pc7", 7), later), Next::Nothing);
        assert_eq!(m.holder("pc8"), Some(("a".into(), 8)));
        assert_eq!(m.apply(beat("a", 8), later), Next::Nothing);
    }

    #[test]
    fn presence_newest_claim_holds_and_dead_relays_are_swept() {
        let t = Instant::now();
        let mut m = Map::new("me");
        m.apply_snapshot(snapshot("a", 1, &[("pc1", 100)]), t);
        m.apply_snapshot(snapshot("b", 1, &[("pc1", 200)]), t);
        assert_eq!(m.holder("pc1"), Some(("b".into(), 200)));
        let later = t + Duration::from_secs(3);
        assert_eq!(m.apply(beat("a", 1), later), Next::Nothing);
        assert_eq!(
            m.sweep(later, Duration::from_secs(2)),
            vec!["b".to_string()]
        );
        assert_eq!(m.holder("pc1"), Some(("a".into(), 100)));
        // A clean stop removes at once; a bye of an older instance does not.
        let bye_old = PresenceMsg::Bye {
            relay: "a".into(),
            instance: 0,
        };
        m.apply(bye_old, later);
        assert!(m.alive("a").is_some());
        m.apply(
            PresenceMsg::Bye {
                relay: "a".into(),
                instance: 1,
            },
            later,
        );
        assert_eq!(m.holder("pc1"), None);
        // What it queued before its bye changes nothing.
        assert_eq!(m.apply(up("a", 2, "pc9", 300), later), Next::Nothing);
        assert_eq!(m.holder("pc9"), None);
        assert!(m.relays().is_empty());
    }

    #[test]
    fn presence_a_restarted_relay_starts_over_and_our_own_id_is_a_duplicate() {
        let t = Instant::now();
        let mut m = Map::new("me");
        m.apply_snapshot(snapshot("a", 9, &[("pc1", 1)]), t);
        let restarted = PresenceMsg::Beat {
            relay: "a".into(),
            instance: 2,
            version: 0,
            agents: 0,
        };
        assert_eq!(m.apply(restarted, t), Next::AskSnapshot("a".into()));
        assert_eq!(m.holder("pc1"), None);
        assert_eq!(m.apply(beat("me", 1), t), Next::DuplicateId);
        let mut local = Local::default();
        assert_eq!(local.up("pc1", 5), 1);
        assert_eq!(local.down("pc9"), None);
        assert_eq!(local.down("pc1"), Some(2));
        assert_eq!(local.snapshot("me", 3).version, 2);
    }
}
