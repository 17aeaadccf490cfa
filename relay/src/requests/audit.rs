//! `list_audit`: the audit log, newest last, optionally of one agent;
//! `audit_verify` (admins): its hash chain checked against this relay's
//! signed anchor, as `firstline-relay audit verify` does — so the web
//! console can show whether the log it lists was edited, cut or rewritten.

use super::{AuditLine, Ctx, Outcome, Reply, Request};
use crate::error::RelayError;
use firstline_proto::{AuditVerification, Message, Role};

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

#[derive(Debug, Clone)]
pub struct AuditVerify;

impl Request for AuditVerify {
    fn role(&self) -> Role {
        Role::Admin
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("audit verify")
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let store = ctx.relay.store.clone();
        let paths = ctx.relay.audit_paths.clone();
        // Reads the whole chain: a blocking job, off the async workers.
        let found = tokio::task::spawn_blocking(move || crate::audit::verify(&store, &paths))
            .await
            .map_err(|e| RelayError::internal(format!("audit verify stopped: {e}")))?
            .map_err(|e| RelayError::internal(format!("cannot verify the audit log: {e:#}")))?;
        let report = AuditVerification {
            entries: found.entries,
            anchored: found.anchored,
            head: found.head.clone(),
            holds: found.holds(),
            errors: found.errors().map(ToString::to_string).collect(),
            warnings: found.warnings().map(ToString::to_string).collect(),
        };
        let outcome = if report.holds {
            format!("ok: {} entries hold", report.entries)
        } else {
            format!("ok: {} problems found", report.errors.len())
        };
        let sent = reply.finish_with(Message::AuditVerified(report)).await;
        Reply::outcome(sent, outcome)
    }
}
