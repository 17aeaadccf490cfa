//! The help desk of record (`[helpdesk]` in relay.toml): every firstline
//! ticket mirrored into Request Tracker 5 through its REST 2 API —
//! created, each timeline entry as a comment (the entry rendered as plain
//! text), its status kept in step — and a ticket resolved in RT resolved
//! here, by `rt:USER`. The signed webhook (`crate::webhook`) stays for
//! other help desks; the two are independent.
//!
//! Why it cannot duplicate: what is to be mirrored is queued in the
//! transaction of each ticket change, one row per ticket
//! (`crate::store::helpdesk`), claimed by one sender at a time with a
//! lease that each recorded step renews (several relays, a dead sender's
//! claim runs out). The RT id is stored once known; a ticket without one is
//! first looked for in RT by the tag in its subject (`[firstline
//! DEPLOYMENT #N]`), so a create whose answer was lost (the relay killed
//! mid-request) is not made again. Each comment carries the tag and its
//! entry id as its subject, and the entry is recorded as being sent before
//! it is sent: a sender taking over looks for that subject in RT before
//! sending it again.
//!
//! Resolution in RT: every `poll_secs` the relay asks RT for the status of
//! the mirrored tickets that are open here and fully delivered; one RT
//! resolved is resolved here in one conditional update (once, also with
//! several relays), authored `rt:` and the RT user who resolved it.

use crate::config::{read_helpdesk_token, HelpdeskConfig};
use crate::state::Relay;
use crate::store::helpdesk::Pending;
use crate::store::tx::HelpdeskLink;
use crate::ticket::{Ticket, TicketStatus};
use firstline_proto::TicketEntry;
use reqwest::{Method, Url};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Tickets claimed at once.
const BATCH: u32 = 5;
/// Mirrored tickets asked about at once (one request each).
const WATCH_PAGE: u32 = 100;

/// Mirror tickets and follow their resolution forever (spawned by `serve`
/// when `[helpdesk]` is set). `wake` is notified when a change was queued.
pub async fn run(relay: Arc<Relay>, wake: Arc<Notify>) {
    let Some(config) = relay.dir.config.helpdesk.clone() else {
        return;
    };
    let token = match relay
        .dir
        .helpdesk_token_file()
        .map(|p| read_helpdesk_token(&p))
    {
        Some(Ok(token)) => token,
        Some(Err(e)) => {
            tracing::error!("help desk mirror disabled: {e}");
            return;
        }
        None => return,
    };
    let rt = match Rt::new(&config, token, relay.dir.deployment()) {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("help desk mirror disabled: {e}");
            return;
        }
    };
    tokio::join!(
        mirror(&relay, &rt, &config, wake),
        follow(&relay, &rt, &config)
    );
}

/// Deliver what is queued: claim tickets with entries not yet in RT and
/// send them, ticket by ticket, in order.
async fn mirror(relay: &Relay, rt: &Rt, config: &HelpdeskConfig, wake: Arc<Notify>) {
    // Each recorded step renews the claim; between two steps a sender
    // makes at most three requests.
    let lease = Duration::from_secs(config.timeout_secs * 4 + 2);
    loop {
        let due = crate::webhook::next_due("help desk mirror", &wake, || {
            relay.store.claim_helpdesk(BATCH, lease)
        })
        .await;
        for p in due {
            let (id, attempts) = (p.ticket.id, p.link.attempts);
            let (lease_until, outcome) = deliver(relay, rt, p, lease).await;
            let (backoff, attempts) = match outcome {
                Ok(()) => (0, 0),
                Err(Failed::Lost) => continue,
                Err(Failed::Remote(why)) => {
                    tracing::warn!(
                        ticket = id,
                        attempts = attempts + 1,
                        "help desk delivery failed: {why}"
                    );
                    let backoff =
                        (1i64 << attempts.clamp(0, 16)).min(config.max_backoff_secs.max(1) as i64);
                    (backoff, attempts + 1)
                }
            };
            if let Err(e) = relay
                .store
                .release_helpdesk(id, lease_until, backoff, attempts)
                .await
            {
                tracing::error!("help desk mirror: {e}");
            }
        }
    }
}

/// Why a delivery stopped.
enum Failed {
    /// The claim is no longer ours (or the store failed): leave the ticket.
    Lost,
    /// RT failed or refused: retry later.
    Remote(String),
}

/// Send one claimed ticket's pending entries; the claim as it is at the
/// end (renewed at each step).
async fn deliver(relay: &Relay, rt: &Rt, p: Pending, lease: Duration) -> (i64, Result<(), Failed>) {
    let mut step = Step {
        relay,
        link: p.link,
        lease_until: p.lease_until,
        lease,
    };
    let out = step.run(rt, &p.ticket, &p.entries).await;
    (step.lease_until, out)
}

struct Step<'a> {
    relay: &'a Relay,
    link: HelpdeskLink,
    lease_until: i64,
    lease: Duration,
}

impl Step<'_> {
    /// Record the link's progress (renewing the claim).
    async fn save(&mut self) -> Result<(), Failed> {
        match self
            .relay
            .store
            .save_helpdesk(self.link.clone(), self.lease_until, self.lease)
            .await
        {
            Ok(Some(renewed)) => {
                self.lease_until = renewed;
                Ok(())
            }
            Ok(None) => Err(Failed::Lost),
            Err(e) => {
                tracing::error!("help desk mirror: {e}");
                Err(Failed::Lost)
            }
        }
    }

    async fn run(
        &mut self,
        rt: &Rt,
        ticket: &Ticket,
        entries: &[(i64, TicketEntry)],
    ) -> Result<(), Failed> {
        let remote = match self.link.remote_id {
            Some(id) => id,
            None => {
                let opened = entries.first().filter(|(_, e)| e.kind == "opened");
                let remote = match rt.find(ticket.id).await.map_err(Failed::Remote)? {
                    Some(found) => {
                        // Made by a sender whose answer was lost: its status
                        // is not known, so it is set again below.
                        self.link.remote_status = None;
                        found
                    }
                    None => {
                        let text = opened.map(|(_, e)| render(e));
                        let status = rt_status(TicketStatus::Open);
                        let id = rt
                            .create(ticket, text.as_deref().unwrap_or(&ticket.title), status)
                            .await
                            .map_err(Failed::Remote)?;
                        self.link.remote_status = Some(status.into());
                        id
                    }
                };
                self.link.remote_id = Some(remote);
                if let Some((id, _)) = opened {
                    self.link.delivered_entry = *id;
                }
                self.save().await?;
                remote
            }
        };
        let last = entries.last().map(|(id, _)| *id);
        for (id, entry) in entries {
            if *id <= self.link.delivered_entry {
                continue;
            }
            // The opened entry is the RT ticket's own text; RT's own
            // resolution came from RT.
            if entry.kind != "opened" && !entry.author.starts_with("rt:") {
                let subject = format!("{} entry {id}", rt.tag(ticket.id));
                let there = self.link.sending_entry == Some(*id)
                    && rt
                        .has_comment(remote, &subject)
                        .await
                        .map_err(Failed::Remote)?;
                if !there {
                    self.link.sending_entry = Some(*id);
                    self.save().await?;
                    rt.comment(remote, &subject, &render(entry))
                        .await
                        .map_err(Failed::Remote)?;
                }
            }
            if Some(*id) == last {
                self.sync_status(rt, remote, ticket.status).await?;
            }
            self.link.delivered_entry = *id;
            self.link.sending_entry = None;
            self.save().await?;
        }
        if entries.is_empty() || self.link.delivered_entry < self.link.latest_entry {
            // Nothing (more) to send for what was queued: the status still
            // follows the ticket.
            self.sync_status(rt, remote, ticket.status).await?;
            self.link.delivered_entry = self.link.delivered_entry.max(self.link.latest_entry);
            self.save().await?;
        }
        Ok(())
    }

    async fn sync_status(
        &mut self,
        rt: &Rt,
        remote: i64,
        status: TicketStatus,
    ) -> Result<(), Failed> {
        let wanted = rt_status(status);
        if self.link.remote_status.as_deref() != Some(wanted) {
            rt.set_status(remote, wanted)
                .await
                .map_err(Failed::Remote)?;
            self.link.remote_status = Some(wanted.into());
        }
        Ok(())
    }
}

/// RT's status for a firstline status (RT's default lifecycle has no
/// "in progress", and its `resolved` is final as `closed` is here).
fn rt_status(status: TicketStatus) -> &'static str {
    match status {
        TicketStatus::Open | TicketStatus::InProgress => "open",
        TicketStatus::Resolved | TicketStatus::Closed => "resolved",
    }
}

/// A timeline entry as plain text: what, who, when, then its body (data
/// entries as indented JSON).
pub fn render(e: &TicketEntry) -> String {
    let body = match &e.body {
        Value::String(text) => text.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    let observed = match &e.observed_at {
        Some(at) if at != &e.at => format!(" (observed {at})"),
        _ => String::new(),
    };
    format!("{} by {}, {}{observed}\n\n{body}", e.kind, e.author, e.at)
}

/// Ask RT about the mirrored tickets open here; resolve here those
/// resolved there.
async fn follow(relay: &Relay, rt: &Rt, config: &HelpdeskConfig) {
    let period = Duration::from_secs(config.poll_secs.max(1));
    loop {
        tokio::time::sleep(period).await;
        let mut after = 0;
        loop {
            let links = match relay.store.helpdesk_watched(after, WATCH_PAGE).await {
                Ok(links) => links,
                Err(e) => {
                    tracing::error!("help desk follow-up: {e}");
                    break;
                }
            };
            let Some(last) = links.last() else { break };
            after = last.ticket_id;
            for link in links {
                let Some(remote) = link.remote_id else {
                    continue;
                };
                match rt.resolved_by(remote).await {
                    Ok(Some(user)) => {
                        let author = format!("rt:{}", firstline_proto::text::truncate(&user, 64));
                        let note = format!("resolved in Request Tracker (ticket {remote})");
                        match relay
                            .store
                            .resolve_from_helpdesk(link.ticket_id, &author, &note)
                            .await
                        {
                            Ok(Some(change)) => {
                                tracing::info!(
                                    ticket = link.ticket_id,
                                    "resolved in Request Tracker by {user}"
                                );
                                relay.announce(&[change]);
                            }
                            Ok(None) => {}
                            Err(e) => tracing::warn!(
                                ticket = link.ticket_id,
                                "cannot resolve from the help desk: {e}"
                            ),
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(
                        ticket = link.ticket_id,
                        "cannot ask the help desk about ticket {remote}: {e}"
                    ),
                }
            }
        }
    }
}

/// A Request Tracker 5, through REST 2 with an auth token.
struct Rt {
    http: reqwest::Client,
    /// `URL/REST/2.0/`.
    base: Url,
    token: String,
    queue: String,
    deployment: String,
}

impl Rt {
    fn new(c: &HelpdeskConfig, token: String, deployment: String) -> anyhow::Result<Rt> {
        let base = Url::parse(&format!("{}/REST/2.0/", c.url.trim_end_matches('/')))?;
        Ok(Rt {
            http: crate::webhook::client(Duration::from_secs(c.timeout_secs))?,
            base,
            token,
            queue: c.queue.clone(),
            deployment,
        })
    }

    /// The tag of firstline ticket `id` in RT subjects.
    fn tag(&self, id: u64) -> String {
        format!("[firstline {} #{id}]", self.deployment)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut url = self.base.join(path).map_err(|e| e.to_string())?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut req = self
            .http
            .request(method, url)
            .header("Authorization", format!("token {}", self.token));
        if let Some(body) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            let text = firstline_proto::text::truncate(&text, 300).into_owned();
            return Err(format!("{path}: HTTP {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{path}: not JSON ({e})"))
    }

    /// The RT id of the ticket tagged for firstline ticket `id`, if one was
    /// made already.
    async fn find(&self, id: u64) -> Result<Option<i64>, String> {
        let tag = self.tag(id);
        let query = format!("Queue = '{}' AND Subject LIKE '{tag}'", self.queue);
        let found = self
            .call(
                Method::GET,
                "tickets",
                &[
                    ("query", &query),
                    ("fields", "Subject"),
                    ("orderby", "id"),
                    ("per_page", "100"),
                ],
                None,
            )
            .await?;
        // LIKE matches `_` anywhere: the subject's start is checked here.
        Ok(items(&found)
            .iter()
            .filter(|t| t["Subject"].as_str().is_some_and(|s| s.starts_with(&tag)))
            .find_map(|t| id_of(&t["id"])))
    }

    async fn create(&self, t: &Ticket, text: &str, status: &str) -> Result<i64, String> {
        let mut about = format!(
            "firstline ticket #{} · source {} · priority {}",
            t.id, t.source, t.priority
        );
        if let Some(agent) = &t.agent {
            about.push_str(&format!(" · machine {agent}"));
        }
        let body = json!({
            "Queue": self.queue,
            "Subject": format!("{} {}", self.tag(t.id), t.title),
            "Content": format!("{about}\n\n{text}"),
            "ContentType": "text/plain",
            "Status": status,
        });
        let made = self.call(Method::POST, "ticket", &[], Some(body)).await?;
        id_of(&made["id"]).ok_or_else(|| format!("RT answered a create without an id: {made}"))
    }

    async fn comment(&self, remote: i64, subject: &str, text: &str) -> Result<(), String> {
        let body = json!({"Subject": subject, "Content": text, "ContentType": "text/plain"});
        self.call(
            Method::POST,
            &format!("ticket/{remote}/comment"),
            &[],
            Some(body),
        )
        .await
        .map(drop)
    }

    /// Whether ticket `remote` has a message with this subject.
    async fn has_comment(&self, remote: i64, subject: &str) -> Result<bool, String> {
        let mut page = 1;
        loop {
            let p = page.to_string();
            let found = self
                .call(
                    Method::GET,
                    &format!("ticket/{remote}/attachments"),
                    &[("fields", "Subject"), ("per_page", "100"), ("page", &p)],
                    None,
                )
                .await?;
            if items(&found)
                .iter()
                .any(|a| a["Subject"].as_str() == Some(subject))
            {
                return Ok(true);
            }
            if page >= found["pages"].as_u64().unwrap_or(1) {
                return Ok(false);
            }
            page += 1;
        }
    }

    async fn set_status(&self, remote: i64, status: &str) -> Result<(), String> {
        self.call(
            Method::PUT,
            &format!("ticket/{remote}"),
            &[],
            Some(json!({ "Status": status })),
        )
        .await
        .map(drop)
    }

    /// Who resolved ticket `remote` in RT, when it is resolved there.
    async fn resolved_by(&self, remote: i64) -> Result<Option<String>, String> {
        let t = self
            .call(Method::GET, &format!("ticket/{remote}"), &[], None)
            .await?;
        if t["Status"].as_str() != Some("resolved") {
            return Ok(None);
        }
        let path = format!("ticket/{remote}/history");
        let fields = [
            ("fields", "Type,Field,NewValue,Creator"),
            ("per_page", "100"),
        ];
        let mut history = self.call(Method::GET, &path, &fields, None).await?;
        let pages = history["pages"].as_u64().unwrap_or(1);
        if pages > 1 {
            let last = pages.to_string();
            let mut q = fields.to_vec();
            q.push(("page", &last));
            history = self.call(Method::GET, &path, &q, None).await?;
        }
        let by = items(&history)
            .iter()
            .rev()
            .find(|tr| tr["Type"] == "Status" && tr["NewValue"] == "resolved")
            .and_then(|tr| tr["Creator"]["id"].as_str())
            .or_else(|| t["LastUpdatedBy"]["id"].as_str())
            .unwrap_or("unknown");
        Ok(Some(by.to_string()))
    }
}

fn items(v: &Value) -> &[Value] {
    v["items"].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// RT gives ids as strings (`"12"`) or numbers.
fn id_of(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_render_as_plain_text() {
        let e = TicketEntry {
            at: "2026-01-01T00:00:00Z".into(),
            observed_at: None,
            kind: "comment".into(),
            author: "alice".into(),
            body: json!("the printer is back"),
        };
        assert_eq!(
            render(&e),
            "comment by alice, 2026-01-01T00:00:00Z\n\nthe printer is back"
        );
        let data = TicketEntry {
            body: json!({"status": "crit"}),
            kind: "result".into(),
            ..e
        };
        assert!(render(&data).ends_with("{\n  \"status\": \"crit\"\n}"));
        assert_eq!(rt_status(TicketStatus::InProgress), "open");
        assert_eq!(rt_status(TicketStatus::Closed), "resolved");
        assert_eq!(id_of(&json!("12")), Some(12));
        assert_eq!(id_of(&json!(7)), Some(7));
    }
}
