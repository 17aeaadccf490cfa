//! Agents' enrollment records, for admins: `list_agent_records`,
//! `agent_remove` (its tickets are kept; see
//! [`crate::store::identity::remove_agent`] for what it does to the name).

use super::{AuditLine, Ctx, Outcome, Reply, Request};
use crate::admin;
use crate::error::RelayError;
use crate::store::PeerKind;
use firstline_proto::{Message, Role};

#[derive(Debug, Clone)]
pub struct ListAgentRecords;

impl Request for ListAgentRecords {
    fn role(&self) -> Role {
        Role::Admin
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("agent list")
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let mut agents = ctx.relay.store.agent_records().await?;
        for a in &mut agents {
            a.online = ctx.relay.is_online(&a.name);
        }
        let n = agents.len();
        let sent = reply
            .parts(None, agents, |agents| Message::AgentRecords { agents })
            .await;
        Reply::outcome(sent, format!("ok: {n} agents"))
    }
}

#[derive(Debug, Clone)]
pub struct AgentRemove {
    pub name: String,
}

impl Request for AgentRemove {
    fn role(&self) -> Role {
        Role::Admin
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("agent remove")
            .agent(Some(self.name.clone()))
            .args(self.name.clone())
    }

    /// A live connection of a freed name is cut at once (the revocation
    /// poll would within `revocation_poll_ms` too).
    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let relay = ctx.relay;
        let name = &self.name;
        let by = &ctx.operator.name;
        let removed = admin::remove_agent(&relay.store, name, by).await?;
        let why = format!("agent `{name}` was removed by {by}");
        for entry in admin::cancelled_entries(&removed.cancelled, &why) {
            relay.audit(entry).await;
        }
        if removed.name_freed {
            let why = format!(
                "agent {name} was removed by the relay admin; enroll it again to reconnect"
            );
            relay.revoked_here(PeerKind::Agent, name, &why).await;
        }
        let outcome = admin::remove_outcome(&removed);
        let msg = Message::AgentRemoved {
            agent: removed.agent,
            name_freed: removed.name_freed,
            tickets: removed.tickets,
        };
        Reply::outcome(reply.finish_with(msg).await, outcome)
    }
}
