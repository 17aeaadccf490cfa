//! `report`: support metrics over the tickets opened in a window (viewers:
//! it reads what `list_tickets` shows, summed), computed by the store's
//! rules on the relay's clock (`crate::store::report` defines each figure).

use super::{AuditLine, Ctx, Outcome, Reply, Request};
use crate::error::RelayError;
use firstline_proto::{ErrorCode, Message, Role};

/// The longest window asked for: ten years.
const MAX_SINCE_SECS: u64 = 10 * 366 * 86_400;

#[derive(Debug, Clone)]
pub struct Report {
    pub since_secs: u64,
}

impl Request for Report {
    fn role(&self) -> Role {
        Role::Viewer
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("report").args(format!("--since {}s", self.since_secs))
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        if self.since_secs == 0 || self.since_secs > MAX_SINCE_SECS {
            return Err(RelayError::new(
                ErrorCode::BadRequest,
                "--since must be between 1 second and 10 years",
            ));
        }
        let report = ctx.relay.store.support_report(self.since_secs).await?;
        let outcome = format!(
            "ok: {} tickets opened, {} resolved",
            report.opened, report.resolved
        );
        let sent = reply.finish_with(Message::SupportReport(report)).await;
        Reply::outcome(sent, outcome)
    }
}
