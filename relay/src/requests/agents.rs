//! `list_agents` and `select_agents`: the agents, health at a glance.
//!
//! Both answer with the agents a selector picks (none: every agent), in
//! `agents` parts, each with its tags, facts, health and open tickets —
//! all from the store ([`crate::store::fleet`]): no agent is asked
//! anything. `online` is the relays' (this one's registry and the
//! cluster's presence), filled and checked here. `select_agents` ends with
//! a `fleet_summary` of the agents listed; `list_agents`, as older
//! consoles ask it, does not.

use super::{AuditLine, Ctx, Outcome, Reply, Request};
use crate::clock::parse_rfc3339;
use crate::error::RelayError;
use firstline_proto::select::AgentView;
use firstline_proto::{AgentInfo, FleetSummary, Message, Role, Selector};

#[derive(Debug, Clone, Default)]
pub struct ListAgents {
    /// The selector as sent (checked as the request is handled, so a bad
    /// one is audited).
    pub select: Option<String>,
    /// Answer with a `fleet_summary` before `done` (`select_agents`).
    pub summary: bool,
}

impl Request for ListAgents {
    fn role(&self) -> Role {
        Role::Viewer
    }

    fn audit(&self) -> AuditLine {
        let line = AuditLine::new("list agents");
        match &self.select {
            Some(s) => line.args(format!("--select {s}")),
            None => line,
        }
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let relay = ctx.relay;
        let sel = match &self.select {
            Some(text) => Selector::parse(text).map_err(RelayError::bad_request)?,
            None => Selector::all(),
        };
        let mut agents = relay.store.select_agents(&sel).await?;
        let now = relay.store.now();
        for a in &mut agents {
            a.online = relay.is_online(&a.name);
            uptime_now(a, now);
        }
        agents.retain(|a| sel.matches(&AgentView::from(a)));
        let summary = FleetSummary::of(&agents);
        let done = format!("ok: {} agents, {} online", summary.machines, summary.online);
        let tail = self.summary.then_some(Message::FleetSummary(summary));
        let sent = reply
            .parts_then(None, agents, |agents| Message::Agents { agents }, tail)
            .await;
        Reply::outcome(sent, done)
    }
}

/// An online agent's uptime as of `now`: the one it reported at its
/// connection, plus the time since. (Offline, it stays as last reported.)
fn uptime_now(a: &mut AgentInfo, now: i64) {
    if !a.online {
        return;
    }
    let at = a.facts.reported_at.as_deref().and_then(parse_rfc3339);
    if let (Some(up), Some(at)) = (a.facts.uptime_secs, at) {
        a.facts.uptime_secs = Some(up.saturating_add(now.saturating_sub(at).max(0) as u64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_runs_on_while_online() {
        let mut a = AgentInfo {
            name: "pc1".into(),
            online: true,
            last_seen: None,
            version: None,
            os: None,
            hostname: None,
            revoked: false,
            tags: vec![],
            facts: firstline_proto::Facts {
                uptime_secs: Some(100),
                reported_at: Some(crate::clock::rfc3339(1_000)),
                ..Default::default()
            },
            health: firstline_proto::Status::Unknown,
            open_incidents: 0,
            open_tickets: 0,
        };
        uptime_now(&mut a, 1_060);
        assert_eq!(a.facts.uptime_secs, Some(160));
        a.online = false;
        uptime_now(&mut a, 2_000);
        assert_eq!(a.facts.uptime_secs, Some(160), "offline: as last reported");
    }
}
