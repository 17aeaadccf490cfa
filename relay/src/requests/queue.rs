//! `list_queue` and `queue_cancel`: actions queued for offline machines
//! (`firstline queue`), and [`queue_offline`], how `run`, `fix` and
//! `runbook` with `--queue-for` answer when their machine is offline. The
//! queue itself is [`crate::queue`]'s.

use super::{AuditLine, Ctx, Outcome, Reply, Request};
use crate::error::RelayError;
use firstline_proto::action::Action;
use firstline_proto::{ErrorCode, Message, Role};

/// `list_queue [all]`: pending actions, then (`all`) the newest ended ones.
#[derive(Debug, Clone)]
pub struct ListQueue {
    pub all: bool,
}

impl Request for ListQueue {
    fn role(&self) -> Role {
        Role::Viewer
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("list queue").args(if self.all { "--all" } else { "" })
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let actions = ctx.relay.store.queued_actions(self.all).await?;
        let n = actions.len();
        let sent = reply
            .parts(None, actions, |actions| Message::QueuedActions { actions })
            .await;
        Reply::outcome(sent, format!("ok: {n} queued actions"))
    }
}

/// `queue_cancel ID`: a pending action is cancelled; one delivered,
/// expired or cancelled already is a conflict.
#[derive(Debug, Clone)]
pub struct QueueCancel {
    pub id: u64,
}

impl Request for QueueCancel {
    fn role(&self) -> Role {
        Role::Technician
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("cancel queued action").args(format!("#{}", self.id))
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let Some(q) = ctx.relay.store.cancel_queued(self.id).await? else {
            return Err(RelayError::new(
                ErrorCode::BadRequest,
                format!(
                    "no queued action #{} (see `firstline queue --all`)",
                    self.id
                ),
            ));
        };
        let text = format!(
            "cancelled: #{} {} for {} (queued by {})",
            q.id,
            q.action.describe(),
            q.agent,
            q.operator
        );
        let sent = send_then_done(reply, Message::Queued(q)).await;
        Reply::outcome(sent, text)
    }
}

/// Queue `action` for `agent`, offline now, and answer `queued` then
/// `done`: what `run`, `fix` and `runbook` do with `--queue-for` when
/// their machine is offline (their role was checked already).
pub(crate) async fn queue_offline(
    ctx: &Ctx<'_>,
    agent: &str,
    action: Action,
    ticket: Option<u64>,
    ttl_secs: u64,
    reply: &mut Reply,
) -> Result<Outcome, RelayError> {
    let op = ctx.operator;
    let q = crate::queue::enqueue(
        ctx.relay, &op.name, op.role, agent, action, ticket, ttl_secs,
    )
    .await?;
    let text = format!("queued: #{} until {}", q.id, q.expires_at);
    let sent = send_then_done(reply, Message::Queued(q)).await;
    Reply::outcome(sent, text)
}

async fn send_then_done(reply: &mut Reply, msg: Message) -> Result<(), firstline_net::LinkError> {
    reply.send(msg).await?;
    reply.finish_with(Message::Done {}).await
}

#[cfg(test)]
mod tests {
    use super::super::ConsoleRequest;
    use firstline_proto::{Message, Role};

    #[test]
    fn anyone_lists_a_technician_cancels() {
        let role = |m| ConsoleRequest::parse(m).unwrap().role();
        assert_eq!(role(Message::ListQueue { all: true }), Role::Viewer);
        assert_eq!(role(Message::QueueCancel { id: 3 }), Role::Technician);
        let line = ConsoleRequest::parse(Message::QueueCancel { id: 3 })
            .unwrap()
            .audit();
        assert_eq!(
            (line.action.as_str(), line.args.as_str()),
            ("cancel queued action", "#3")
        );
    }
}
