//! `list_audit`: the audit log, newest last, optionally of one agent.

use super::{AuditLine, Ctx, Outcome, Reply, Request};
use crate::error::RelayError;
use firstline_proto::{Message, Role};

#[derive(Debug, Clone)]
pub struct ListAudit {
    pub agent: Option<String>,
    pub limit: Option<u32>,
}

impl Request for ListAudit {
    fn role(&self) -> Role {
        Role::Technician
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("list audit")
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let store = &ctx.relay.store;
        let entries = store
            .audit_records(self.agent.as_deref(), self.limit)
            .await?;
        let n = entries.len();
        let sent = reply
            .parts(None, entries, |entries| Message::Audit { entries })
            .await;
        Reply::outcome(sent, format!("ok: {n} entries"))
    }
}
