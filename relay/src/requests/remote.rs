//! Requests routed to an agent: `run` (a check), `fix`, `runbook`,
//! `list_runbooks`, `list_checks`. The role a check or fix needs comes
//! from what it does ([`firstline_proto::effect`]); the agent checks it
//! again, and applies its own policy. The routing itself is
//! [`crate::routing`]'s. With `--queue-for`, a run, fix or runbook for an
//! offline machine is queued for it instead ([`super::queue::queue_offline`]).

use super::queue::queue_offline;
use super::{with_ticket, AuditLine, Ctx, Outcome, Reply, Request};
use crate::error::RelayError;
use crate::routing::{route, Routed};
use firstline_proto::action::Action;
use firstline_proto::effect::{check_role, fix_role};
use firstline_proto::{Message, Role};

/// `run AGENT CHECK ARGS… [--ticket N]`.
#[derive(Debug, Clone)]
pub struct Run {
    pub agent: String,
    pub check: String,
    pub args: Vec<String>,
    pub ticket: Option<u64>,
    /// Offline: keep it for the agent this many seconds (`--queue-for`).
    pub queue_for_secs: Option<u64>,
}

impl Request for Run {
    fn role(&self) -> Role {
        let role = check_role(&self.check, &self.args);
        match self.ticket {
            // Writing into a ticket is a technician's change.
            Some(_) => role.max(Role::Technician),
            None => role,
        }
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new(format!("run check {}", self.check))
            .agent(Some(self.agent.clone()))
            .args(with_ticket(&self.args, self.ticket))
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        if let Some(ttl) = offline_queue(ctx, &self.agent, self.queue_for_secs) {
            let action = Action::Run {
                check: self.check,
                args: self.args,
            };
            return queue_offline(ctx, &self.agent, action, self.ticket, ttl, reply).await;
        }
        let request = Message::Exec {
            check: self.check,
            args: self.args,
            role: ctx.operator.role,
        };
        let routed = Routed::new(&self.agent, request).ticket(self.ticket);
        route(ctx, routed, reply).await
    }
}

/// `fix AGENT ACTION ARGS… [--dry-run] [--ticket N]`.
#[derive(Debug, Clone)]
pub struct Fix {
    pub agent: String,
    pub action: String,
    pub args: Vec<String>,
    pub dry_run: bool,
    pub ticket: Option<u64>,
    /// Offline: keep it for the agent this many seconds (`--queue-for`).
    pub queue_for_secs: Option<u64>,
}

impl Request for Fix {
    fn role(&self) -> Role {
        fix_role(&self.action)
    }

    fn audit(&self) -> AuditLine {
        let dry = if self.dry_run { " (dry run)" } else { "" };
        AuditLine::new(format!("fix {}{dry}", self.action))
            .agent(Some(self.agent.clone()))
            .args(with_ticket(&self.args, self.ticket))
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        if let Some(ttl) = offline_queue(ctx, &self.agent, self.queue_for_secs) {
            let action = Action::Fix {
                fix: self.action,
                args: self.args,
                dry_run: self.dry_run,
            };
            return queue_offline(ctx, &self.agent, action, self.ticket, ttl, reply).await;
        }
        let request = Message::ExecFix {
            action: self.action,
            args: self.args,
            dry_run: self.dry_run,
            role: ctx.operator.role,
        };
        let routed = Routed::new(&self.agent, request).ticket(self.ticket);
        route(ctx, routed, reply).await
    }
}

/// `runbook AGENT NAME KEY=VALUE… [--dry-run] [--ticket N]`. The steps
/// are known only to the agent, which refuses a runbook any of whose steps
/// needs more than the requester's role.
#[derive(Debug, Clone)]
pub struct Runbook {
    pub agent: String,
    pub name: String,
    pub params: Vec<String>,
    pub dry_run: bool,
    pub ticket: Option<u64>,
    /// Offline: keep it for the agent this many seconds (`--queue-for`).
    pub queue_for_secs: Option<u64>,
}

impl Request for Runbook {
    fn role(&self) -> Role {
        Role::Technician
    }

    fn audit(&self) -> AuditLine {
        let dry = if self.dry_run { " (dry run)" } else { "" };
        AuditLine::new(format!("runbook {}{dry}", self.name))
            .agent(Some(self.agent.clone()))
            .args(with_ticket(&self.params, self.ticket))
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        if let Some(ttl) = offline_queue(ctx, &self.agent, self.queue_for_secs) {
            let action = Action::Runbook {
                name: self.name,
                params: self.params,
                dry_run: self.dry_run,
            };
            return queue_offline(ctx, &self.agent, action, self.ticket, ttl, reply).await;
        }
        let request = Message::ExecRunbook {
            name: self.name,
            params: self.params,
            dry_run: self.dry_run,
            role: ctx.operator.role,
        };
        let routed = Routed::new(&self.agent, request)
            .ticket(self.ticket)
            .runbook();
        route(ctx, routed, reply).await
    }
}

/// `Some(ttl)` when the request is to be queued: `--queue-for` given and
/// the agent connected to no relay of the deployment (an unknown or
/// revoked one is refused by the queue, never queued).
fn offline_queue(ctx: &Ctx<'_>, agent: &str, queue_for_secs: Option<u64>) -> Option<u64> {
    queue_for_secs.filter(|_| ctx.relay.holder(agent).is_none())
}

/// `runbooks AGENT`.
#[derive(Debug, Clone)]
pub struct ListRunbooks {
    pub agent: String,
}

impl Request for ListRunbooks {
    fn role(&self) -> Role {
        Role::Viewer
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("list runbooks").agent(Some(self.agent.clone()))
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        route(
            ctx,
            Routed::new(&self.agent, Message::ExecListRunbooks {}),
            reply,
        )
        .await
    }
}

/// `checks AGENT`.
#[derive(Debug, Clone)]
pub struct ListChecks {
    pub agent: String,
}

impl Request for ListChecks {
    fn role(&self) -> Role {
        Role::Viewer
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("list checks").agent(Some(self.agent.clone()))
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        route(
            ctx,
            Routed::new(&self.agent, Message::ExecListChecks {}),
            reply,
        )
        .await
    }
}
