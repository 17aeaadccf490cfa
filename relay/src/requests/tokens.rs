//! Enrollment tokens, for admins: `list_tokens`, `token_create`,
//! `token_revoke` — the operations of the offline commands
//! ([`crate::admin`]), so both refuse the same things alike.

use super::{AuditLine, Ctx, Outcome, Reply, Request};
use crate::admin;
use crate::error::RelayError;
use firstline_proto::{Message, Role};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ListTokens;

impl Request for ListTokens {
    fn role(&self) -> Role {
        Role::Admin
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("token list")
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let tokens = ctx.relay.store.tokens().await?;
        let n = tokens.len();
        let sent = reply
            .parts(None, tokens, |tokens| Message::Tokens { tokens })
            .await;
        Reply::outcome(sent, format!("ok: {n} tokens"))
    }
}

/// A new token; the audit entry names its id (in the outcome), never its
/// secret.
#[derive(Debug, Clone)]
pub struct TokenCreate {
    pub uses: u32,
    pub ttl_secs: Option<u64>,
    /// Tags every agent enrolled with it starts with.
    pub tags: Vec<String>,
}

impl Request for TokenCreate {
    fn role(&self) -> Role {
        Role::Admin
    }

    fn audit(&self) -> AuditLine {
        let mut args = match self.ttl_secs {
            Some(t) => format!("--uses {} --ttl {t}s", self.uses),
            None => format!("--uses {}", self.uses),
        };
        args.push_str(&admin::tag_flags(&self.tags));
        AuditLine::new("token create").args(args)
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let relay = ctx.relay;
        let config = &relay.dir.config;
        let ttl = Duration::from_secs(self.ttl_secs.unwrap_or(config.token_ttl_secs));
        let (token, _) =
            admin::new_token(&relay.store, &relay.ca, self.uses, ttl, &self.tags).await?;
        let info = relay
            .store
            .tokens()
            .await?
            .into_iter()
            .find(|t| t.id == token.id)
            .ok_or_else(|| RelayError::internal(format!("token {} vanished", token.id)))?;
        let args = admin::token_args(&info.id, self.uses, ttl, &info.tags);
        let (done, relay_addr) = match config.dialable_public_addr() {
            Some(addr) => (format!("ok: {args}, valid until {}", info.expires_at), addr),
            None => {
                // The token is made; only the hint is missing.
                tracing::warn!("{}", admin::no_public_addr(&relay.dir));
                (
                    format!("ok: {args} (no public_addr for the hint)"),
                    String::new(),
                )
            }
        };
        let msg = Message::TokenCreated {
            token: token.to_string(),
            info,
            relay: relay_addr,
        };
        Reply::outcome(reply.finish_with(msg).await, done)
    }
}

#[derive(Debug, Clone)]
pub struct TokenRevoke {
    pub id: String,
}

impl Request for TokenRevoke {
    fn role(&self) -> Role {
        Role::Admin
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("token revoke").args(self.id.clone())
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let done = admin::revoke_token(&ctx.relay.store, &self.id).await?;
        let outcome = admin::revoke_outcome(&done);
        let sent = reply
            .finish_with(Message::TokenRevoked { token: done.0 })
            .await;
        Reply::outcome(sent, outcome)
    }
}
