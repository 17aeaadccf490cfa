//! `agent_tag`: add and remove an agent's tags, for admins
//! (`firstline agent tag NAME +T -T…`); the rules are the store's
//! ([`crate::store::fleet::tag`]), shared with [`crate::admin::tag_agent`].

use super::{AuditLine, Ctx, Outcome, Reply, Request};
use crate::admin;
use crate::error::RelayError;
use firstline_proto::{Message, Role};

#[derive(Debug, Clone)]
pub struct AgentTag {
    pub agent: String,
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

impl Request for AgentTag {
    fn role(&self) -> Role {
        Role::Admin
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("agent tag")
            .agent(Some(self.agent.clone()))
            .args(admin::tag_args(&self.agent, &self.add, &self.remove))
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let tags = admin::tag_agent(&ctx.relay.store, &self.agent, self.add, self.remove).await?;
        let outcome = admin::tags_outcome(&tags);
        // Its central monitor sets may select it now, or no longer.
        ctx.relay
            .notify(crate::central::tagged_notice(ctx.relay, &self.agent, &tags));
        let msg = Message::AgentTagged {
            agent: self.agent,
            tags,
        };
        Reply::outcome(reply.finish_with(msg).await, outcome)
    }
}
