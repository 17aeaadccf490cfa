//! `watch`: live notices (alerts, ticket changes) until the console goes
//! away; a watcher too slow for the notice buffer is told how many it
//! missed.

use super::{AuditLine, Ctx, Outcome, Reply, Request};
use crate::error::RelayError;
use firstline_proto::{Message, Notice, Role};
use tokio::sync::broadcast::error::RecvError;

#[derive(Debug, Clone)]
pub struct Watch;

impl Request for Watch {
    fn role(&self) -> Role {
        Role::Viewer
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("watch")
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let mut rx = ctx.relay.notices.subscribe();
        loop {
            let notice = match rx.recv().await {
                Ok(n) => n,
                Err(RecvError::Lagged(n)) => Notice {
                    at: crate::clock::rfc3339(ctx.relay.clock.now()),
                    kind: "lagged".into(),
                    agent: None,
                    ticket: None,
                    text: format!("{n} notices skipped: this watcher is too slow"),
                },
                Err(RecvError::Closed) => return Ok(Outcome("relay shutting down".into())),
            };
            if reply.send(Message::Notice(notice)).await.is_err() {
                return Ok(Outcome("watch ended".into()));
            }
        }
    }
}
