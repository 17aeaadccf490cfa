//! Operators, for admins: `list_operators`, `operator_role` (it holds from
//! the operator's next request on: the relay authorizes each request with
//! the role in its database).

use super::{AuditLine, Ctx, Outcome, Reply, Request};
use crate::admin;
use crate::error::RelayError;
use firstline_proto::{Message, Role};

#[derive(Debug, Clone)]
pub struct ListOperators;

impl Request for ListOperators {
    fn role(&self) -> Role {
        Role::Admin
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("operator list")
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let mut operators = ctx.relay.store.operators().await?;
        for o in &mut operators {
            o.online = ctx.relay.registry.operator_is_online(&o.name);
        }
        let n = operators.len();
        let sent = reply
            .parts(None, operators, |operators| Message::Operators {
                operators,
            })
            .await;
        Reply::outcome(sent, format!("ok: {n} operators"))
    }
}

#[derive(Debug, Clone)]
pub struct OperatorRole {
    pub name: String,
    pub role: Role,
}

impl Request for OperatorRole {
    fn role(&self) -> Role {
        Role::Admin
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("operator role").args(format!("{} {}", self.name, self.role))
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let done =
            admin::set_role(&ctx.relay.store, &self.name, self.role, &ctx.operator.name).await?;
        if done.0.role < done.1 {
            // Central monitor sets are judged by their author's role now:
            // every relay pushes again, without those it no longer holds.
            let text = format!(
                "operator {} is a {} now: central monitor sets checked again",
                self.name, done.0.role
            );
            ctx.relay
                .notify(crate::central::changed_notice(ctx.relay, text));
        }
        let outcome = admin::role_outcome(&done);
        let (mut operator, _) = done;
        operator.online = ctx.relay.registry.operator_is_online(&self.name);
        let sent = reply
            .finish_with(Message::OperatorUpdated { operator })
            .await;
        Reply::outcome(sent, outcome)
    }
}
