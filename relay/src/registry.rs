//! Live connections held by this relay: which agents are connected here
//! right now (and since when), and which operator connections are open, so
//! revocations can cut them off at once. Agents held by the other relays
//! of a deployment are `crate::cluster`'s.

use quinn::{Connection, VarInt};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// `(connection, since)`: since when, in ms since the epoch.
    agents: HashMap<String, (Connection, u64)>,
    /// Operator connections by quinn's stable id: `(name, connection)`.
    operators: HashMap<usize, (String, Connection)>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register an agent's connection; an older connection of the same agent
    /// (a half-dead one it reconnected past) is closed. Returns since when
    /// (ms since the epoch).
    pub fn agent_online(&self, name: &str, conn: Connection) -> u64 {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let old = self.lock().agents.insert(name.to_string(), (conn, since));
        if let Some((old, _)) = old {
            old.close(
                VarInt::from_u32(0),
                b"replaced by a newer connection of this agent",
            );
        }
        since
    }

    /// Forget an agent's connection, unless a newer one already replaced
    /// it; whether it was forgotten.
    pub fn agent_offline(&self, name: &str, conn: &Connection) -> bool {
        let mut inner = self.lock();
        if inner
            .agents
            .get(name)
            .is_some_and(|(c, _)| c.stable_id() == conn.stable_id())
        {
            inner.agents.remove(name);
            return true;
        }
        false
    }

    pub fn agent(&self, name: &str) -> Option<Connection> {
        self.lock().agents.get(name).map(|(c, _)| c.clone())
    }

    /// The agent's connection here and since when it is up.
    pub fn agent_since(&self, name: &str) -> Option<(Connection, u64)> {
        self.lock().agents.get(name).cloned()
    }

    /// Every agent connected here, with its connection.
    pub fn agents(&self) -> Vec<(String, Connection)> {
        self.lock()
            .agents
            .iter()
            .map(|(n, (c, _))| (n.clone(), c.clone()))
            .collect()
    }

    /// How many agents are connected here (without copying the table).
    pub fn agent_count(&self) -> usize {
        self.lock().agents.len()
    }

    pub fn is_online(&self, name: &str) -> bool {
        self.lock().agents.contains_key(name)
    }

    pub fn operator_online(&self, name: &str, conn: Connection) {
        self.lock()
            .operators
            .insert(conn.stable_id(), (name.to_string(), conn));
    }

    /// Whether an operator of this name has a connection open.
    pub fn operator_is_online(&self, name: &str) -> bool {
        self.lock().operators.values().any(|(n, _)| n == name)
    }

    pub fn operator_offline(&self, conn: &Connection) {
        self.lock().operators.remove(&conn.stable_id());
    }

    /// Every live connection of this peer (an agent has one, an operator
    /// may have several).
    pub fn connections_of(&self, kind: &str, name: &str) -> Vec<Connection> {
        let inner = self.lock();
        match kind {
            "agent" => inner
                .agents
                .get(name)
                .map(|(c, _)| c.clone())
                .into_iter()
                .collect(),
            _ => inner
                .operators
                .values()
                .filter(|(n, _)| n == name)
                .map(|(_, c)| c.clone())
                .collect(),
        }
    }
}
