//! `kb_search`, `kb_show`: the knowledge base's articles (`crate::kb`) for
//! viewers and up — what a technician reads beside a verdict's `kb` id.
//! Audited like every read (the text searched, the id shown). The folder
//! is read off the async workers, again only when it changed.

use super::{AuditLine, Ctx, Outcome, Reply, Request};
use crate::error::RelayError;
use firstline_proto::kb::SEARCH_LEN;
use firstline_proto::{Message, Role};

#[derive(Debug, Clone)]
pub struct KbSearch {
    pub text: String,
}

impl Request for KbSearch {
    fn role(&self) -> Role {
        Role::Viewer
    }

    fn audit(&self) -> AuditLine {
        let text: String = self.text.chars().take(SEARCH_LEN).collect();
        AuditLine::new("kb search").args(text)
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let text = self.text.trim();
        if text.is_empty() || text.len() > SEARCH_LEN {
            return Err(RelayError::bad_request(format!(
                "kb search: give 1 to {SEARCH_LEN} bytes of text"
            )));
        }
        let kb = crate::kb::current_async(ctx.relay.dir.kb_dir()).await;
        let hits = kb.search(text);
        let outcome = format!("ok: {} articles", hits.len());
        let sent = reply.finish_with(Message::KbHits { hits }).await;
        Reply::outcome(sent, outcome)
    }
}

#[derive(Debug, Clone)]
pub struct KbShow {
    pub id: String,
}

impl Request for KbShow {
    fn role(&self) -> Role {
        Role::Viewer
    }

    fn audit(&self) -> AuditLine {
        let id: String = self.id.chars().take(firstline_proto::kb::ID_LEN).collect();
        AuditLine::new("kb show").args(id)
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let article = crate::kb::article(ctx.relay.dir.kb_dir(), &self.id).await?;
        let outcome = format!("ok: {}", article.id);
        let sent = reply.finish_with(Message::KbArticle(article)).await;
        Reply::outcome(sent, outcome)
    }
}
