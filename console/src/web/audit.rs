//! `/audit` (admins): who did what, on which machine, with what outcome —
//! the relay's audit log (`list_audit`), newest first, filtered by machine
//! (the relay filters) and text (this page filters) — and, on request,
//! what `audit_verify` found: the hash chain walked and compared with the
//! relay's signed anchor. The page says exactly that and no more: it is
//! one relay's check of its own anchor, not of other relays' anchor files.
//!
//! The relay lets technicians list the log too; the page is an admin's
//! because verification is, and the navigation shows it to admins only.

use super::{field, form_pairs, render, text, AppState, Nav, WebError};
use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use firstline_proto::{AuditRecord, AuditVerification, Message};

/// Entries asked of the relay at most: the newest ones.
const LIMIT: u32 = 500;

pub fn routes() -> Router<AppState> {
    Router::new().route("/audit", get(page))
}

/// One entry, its text made safe.
pub struct Row {
    pub id: u64,
    pub at: String,
    pub who: String,
    pub role: String,
    pub agent: String,
    pub action: String,
    pub args: String,
    pub outcome: String,
    /// `ok`, `refused` or `failed`: how the outcome reads, as a word.
    pub result: &'static str,
}

/// What the verification found, made safe.
pub struct Verified {
    pub holds: bool,
    pub entries: u64,
    pub anchored: u64,
    pub head: String,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    agent: String,
    q: String,
    rows: Vec<Row>,
    limit: u32,
    verified: Option<Verified>,
}

async fn page(
    State(web): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, WebError> {
    let nav = web.nav("audit").await?;
    if !nav.is_admin() {
        return Err(WebError::Forbidden(
            "the audit log is for admins (your role is ".to_string() + nav.role_name() + ")",
        ));
    }
    let pairs = form_pairs(query.unwrap_or_default().as_bytes());
    let agent = field(&pairs, "agent").map(str::to_string);
    let q = field(&pairs, "q").unwrap_or("").to_string();
    let verify = field(&pairs, "verify").is_some();
    let mut entries = Vec::new();
    for m in web
        .ask(Message::ListAudit {
            agent: agent.clone(),
            limit: Some(LIMIT),
        })
        .await?
    {
        if let Message::Audit { entries: e } = m {
            entries.extend(e);
        }
    }
    let needle = q.to_lowercase();
    let rows = entries
        .iter()
        .rev()
        .filter(|e| needle.is_empty() || haystack(e).contains(&needle))
        .map(row)
        .collect();
    let verified = if verify {
        verification(&web).await?
    } else {
        None
    };
    render(&AuditPage {
        nav,
        agent: text(agent.as_deref().unwrap_or("")),
        q: text(&q),
        rows,
        limit: LIMIT,
        verified,
    })
}

async fn verification(web: &super::Web) -> Result<Option<Verified>, WebError> {
    let answers = web.ask(Message::AuditVerify {}).await?;
    Ok(answers.into_iter().find_map(|m| match m {
        Message::AuditVerified(v) => Some(verified(v)),
        _ => None,
    }))
}

fn verified(v: AuditVerification) -> Verified {
    Verified {
        holds: v.holds,
        entries: v.entries,
        anchored: v.anchored,
        head: text(&v.head),
        errors: v.errors.iter().map(|e| text(e)).collect(),
        warnings: v.warnings.iter().map(|w| text(w)).collect(),
    }
}

/// Everything the text search looks in, lower case.
fn haystack(e: &AuditRecord) -> String {
    format!(
        "{} {} {} {} {} {}",
        e.who,
        e.agent.as_deref().unwrap_or(""),
        e.action,
        e.args,
        e.outcome,
        e.at
    )
    .to_lowercase()
}

fn row(e: &AuditRecord) -> Row {
    let o = e.outcome.trim_start();
    let result = if o.starts_with("ok") {
        "ok"
    } else if o.starts_with("refused") || o.starts_with("forbidden") {
        "refused"
    } else {
        "failed"
    };
    Row {
        id: e.id,
        at: text(&e.at),
        who: text(&e.who),
        role: text(e.role.as_deref().unwrap_or("")),
        agent: text(e.agent.as_deref().unwrap_or("")),
        action: text(&e.action),
        args: text(&e.args),
        outcome: text(&e.outcome),
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_as_words() {
        let e = |outcome: &str| AuditRecord {
            id: 1,
            at: "2026-11-29T19:06:33Z".into(),
            who: "alice".into(),
            role: Some("admin".into()),
            agent: Some("pc1".into()),
            action: "fix flush-dns".into(),
            args: String::new(),
            outcome: outcome.into(),
            hash: String::new(),
        };
        assert_eq!(row(&e("ok: done")).result, "ok");
        assert_eq!(row(&e("forbidden: needs admin")).result, "refused");
        assert_eq!(row(&e("error: agent offline")).result, "failed");
        assert!(haystack(&e("ok")).contains("flush-dns"));
    }
}
