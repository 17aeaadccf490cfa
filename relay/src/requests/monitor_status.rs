//! `list_monitor_status`: one agent's monitors with their latest status
//! (viewers). Health in a listing is the worst of these; the web console's
//! machine page shows each one, so a technician sees *which* monitor is
//! failing without opening its ticket. Read from the store (the rows the
//! alert engine keeps per result): the agent is not asked, and an offline
//! agent's last known state is shown.

use super::{AuditLine, Ctx, Outcome, Reply, Request};
use crate::clock::rfc3339;
use crate::error::RelayError;
use crate::store::MonitorStatusRow;
use firstline_proto::message::MonitorStatusInfo;
use firstline_proto::{Message, Role, Status};

#[derive(Debug, Clone)]
pub struct ListMonitorStatus {
    pub agent: String,
}

impl Request for ListMonitorStatus {
    fn role(&self) -> Role {
        Role::Viewer
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("list monitor status").agent(Some(self.agent.clone()))
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let store = &ctx.relay.store;
        if !store.agent_known(&self.agent).await? {
            return Err(ctx.relay.unknown_agent(&self.agent).await);
        }
        let rows: Vec<MonitorStatusInfo> = store
            .monitor_statuses(&self.agent)
            .await?
            .into_iter()
            .map(info)
            .collect();
        let n = rows.len();
        let agent = self.agent;
        let sent = reply
            .parts(None, rows, |monitors| Message::MonitorStatuses {
                agent: agent.clone(),
                monitors,
            })
            .await;
        Reply::outcome(sent, format!("ok: {n} monitors"))
    }
}

/// A stored row as the wire has it; a status this relay cannot read is
/// `unknown` (nothing says it is well).
fn info(row: MonitorStatusRow) -> MonitorStatusInfo {
    let status = match row.status.as_str() {
        "ok" => Status::Ok,
        "warn" => Status::Warn,
        "crit" => Status::Crit,
        _ => Status::Unknown,
    };
    MonitorStatusInfo {
        monitor: row.monitor,
        status,
        summary: row.summary,
        at: rfc3339(row.at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_wire_rows() {
        let row = |status: &str| MonitorStatusRow {
            monitor: "disk /".into(),
            status: status.into(),
            summary: "91% used".into(),
            at: 0,
        };
        let i = info(row("crit"));
        assert_eq!(i.status, Status::Crit);
        assert_eq!(i.at, "1970-01-01T00:00:00Z");
        assert_eq!(info(row("odd")).status, Status::Unknown);
    }
}
