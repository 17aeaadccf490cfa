//! `who_am_i`: the sender as the relay authorizes them now — the name from
//! their verified certificate, the role its database holds. The web console
//! asks it for each page, so that it offers only what the operator may do
//! even after an admin changed their role (`operator_role`); the relay
//! still checks every request itself.

use super::{AuditLine, Ctx, Outcome, Reply, Request};
use crate::error::RelayError;
use firstline_proto::message::OperatorInfo;
use firstline_proto::{Message, Role};

#[derive(Debug, Clone)]
pub struct WhoAmI;

impl Request for WhoAmI {
    fn role(&self) -> Role {
        Role::Viewer
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("who am i")
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let me = ctx.operator;
        let mut operator = ctx
            .relay
            .store
            .operator(&me.name)
            .await?
            .unwrap_or_else(|| OperatorInfo {
                name: me.name.clone(),
                role: me.role,
                created_at: String::new(),
                revoked_at: None,
                online: true,
            });
        // The role this request was authorized with, read moments ago.
        operator.role = me.role;
        operator.online = true;
        let outcome = format!("ok: {} ({})", operator.name, operator.role);
        let sent = reply.finish_with(Message::Operator { operator }).await;
        Reply::outcome(sent, outcome)
    }
}
