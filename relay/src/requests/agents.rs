//! `list_agents`: every enrolled agent and whether it is online.

use super::{AuditLine, Ctx, Outcome, Reply, Request};
use crate::error::RelayError;
use firstline_proto::{Message, Role};

#[derive(Debug, Clone)]
pub struct ListAgents;

impl Request for ListAgents {
    fn role(&self) -> Role {
        Role::Viewer
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("list agents")
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let mut agents = ctx.relay.store.agents().await?;
        for a in &mut agents {
            a.online = ctx.relay.is_online(&a.name);
        }
        let n = agents.len();
        let sent = reply
            .parts(None, agents, |agents| Message::Agents { agents })
            .await;
        Reply::outcome(sent, format!("ok: {n} agents"))
    }
}
