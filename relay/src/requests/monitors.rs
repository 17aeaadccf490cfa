//! `monitors_set`, `monitors_remove` (admins) and `monitors_show`
//! (viewers): central monitor sets (`firstline monitors set --select SEL
//! FILE.toml`).
//!
//! A set's file is parsed here again (`firstline_net::monitors`: the
//! console checked it already, but the relay takes no console's word), the
//! set stored with its author and the author's role
//! ([`crate::store::monitors`]), and the change announced as a notice,
//! which makes every relay push the sets to its agents
//! ([`crate::central`]). `monitors_show` reads only the store: the sets,
//! and what each agent last reported.

use super::{AuditLine, Ctx, Outcome, Reply, Request};
use crate::error::RelayError;
use crate::store::monitors::NewSet;
use firstline_proto::central::{self, MonitorSetInfo};
use firstline_proto::text::printable;
use firstline_proto::{Message, Role};

#[derive(Debug, Clone)]
pub struct MonitorsSet {
    pub name: String,
    pub select: String,
    pub toml: String,
}

impl Request for MonitorsSet {
    fn role(&self) -> Role {
        Role::Admin
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("monitors set").args(format!(
            "{} --select {} ({} bytes)",
            self.name,
            self.select,
            self.toml.len()
        ))
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        central::check_set_name(&self.name).map_err(RelayError::bad_request)?;
        let file = format!("{}.toml", self.name);
        let monitors = firstline_net::monitors::parse(&file, &self.toml)
            .map_err(|e| RelayError::bad_request(e.to_string()))?;
        let set = NewSet {
            name: self.name,
            selector: self.select,
            toml: self.toml,
            monitors,
            role: ctx.operator.role,
            author: ctx.operator.name.clone(),
        };
        let (info, replaced) = ctx.relay.store.put_monitor_set(set).await?;
        let verb = if replaced { "replaced" } else { "created" };
        let text = format!(
            "monitor set `{}` {verb} by {} for {}: {} monitors",
            info.name,
            ctx.operator.name,
            info.select,
            info.monitors.len()
        );
        ctx.relay
            .notify(crate::central::changed_notice(ctx.relay, text));
        let done = format!("ok: {verb}, {} monitors", info.monitors.len());
        Reply::outcome(reply.finish_with(Message::MonitorSet(info)).await, done)
    }
}

#[derive(Debug, Clone)]
pub struct MonitorsRemove {
    pub name: String,
}

impl Request for MonitorsRemove {
    fn role(&self) -> Role {
        Role::Admin
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("monitors remove").args(self.name.clone())
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let Some(info) = ctx.relay.store.remove_monitor_set(&self.name).await? else {
            return Err(RelayError::bad_request(format!(
                "no monitor set `{}` (see `firstline monitors show`)",
                printable(&self.name)
            )));
        };
        let text = format!(
            "monitor set `{}` removed by {}",
            info.name, ctx.operator.name
        );
        ctx.relay
            .notify(crate::central::changed_notice(ctx.relay, text));
        Reply::outcome(
            reply.finish_with(Message::MonitorSet(info)).await,
            "ok: removed".into(),
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct MonitorsShow;

impl Request for MonitorsShow {
    fn role(&self) -> Role {
        Role::Viewer
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("monitors show")
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let (sets, mut agents) = ctx.relay.store.monitors_overview().await?;
        for a in &mut agents {
            a.online = ctx.relay.is_online(&a.agent);
        }
        let done = format!("ok: {} sets, {} agents", sets.len(), agents.len());
        // One set a message: each is at most 64 KiB of TOML and its monitors.
        let mut sent = Ok(());
        for set in sets {
            let one: Vec<MonitorSetInfo> = vec![set];
            sent = reply.send(Message::MonitorSets { sets: one }).await;
            if sent.is_err() {
                break;
            }
        }
        if sent.is_ok() {
            sent = reply
                .parts_then(
                    None,
                    agents,
                    |agents| Message::AgentMonitors { agents },
                    None,
                )
                .await;
        }
        Reply::outcome(sent, done)
    }
}
