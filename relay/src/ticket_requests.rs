//! Console requests about tickets: list, open, show, change, and `watch`
//! (live notices). Role checks and audit happen in [`crate::operator`]
//! before these run.

use crate::answer::send_parts;
use crate::operator::{internal, sent_outcome, unknown_agent, Failure, Operator};
use crate::server::Relay;
use crate::tickets::{
    check_priority, check_status, InvalidValue, NewTicket, NotAllowed, TicketFilter, TicketStore,
};
use firstline_net::FramedSend;
use firstline_proto::{limits, ErrorCode, Message, Notice, TicketChange};
use tokio::sync::broadcast::error::RecvError;

/// What `tickets` asked for, as it came from the console.
#[derive(Debug, Default)]
pub struct ListFilter {
    pub status: Option<String>,
    pub agent: Option<String>,
    pub assignee: Option<String>,
    pub priority: Option<String>,
    pub search: Option<String>,
    pub since_secs: Option<u64>,
    pub older_than_secs: Option<u64>,
}

/// Check a listing's filters: a status or priority that does not exist, or
/// an agent or assignee the relay never knew, is the caller's mistake, told
/// with the valid values (an empty list would hide the typo).
fn check_filter(relay: &Relay, f: &ListFilter) -> Result<(), (ErrorCode, String)> {
    let bad = |e: crate::tickets::InvalidValue| (ErrorCode::BadRequest, e.0);
    if let Some(s) = &f.status {
        check_status(s).map_err(bad)?;
    }
    if let Some(p) = &f.priority {
        check_priority(p).map_err(bad)?;
    }
    if f.search.as_ref().is_some_and(|s| s.len() > limits::TITLE) {
        let why = format!("--search is at most {} bytes", limits::TITLE);
        return Err((ErrorCode::BadRequest, why));
    }
    let internal = |e: anyhow::Error| (ErrorCode::Internal, format!("relay error: {e:#}"));
    if let Some(a) = &f.agent {
        // Removed agents' tickets are kept: any name the relay knew is fine.
        if !relay.store.agent_known(a).map_err(internal)? {
            return Err((
                ErrorCode::UnknownAgent,
                crate::admin::unknown_agent(&relay.store, a),
            ));
        }
    }
    if let Some(o) = &f.assignee {
        // Revoked operators may still hold tickets.
        if relay.store.operator(o).map_err(internal)?.is_none() {
            let why = crate::admin::unknown_operator(&relay.store, o).map_err(internal)?;
            return Err((ErrorCode::UnknownOperator, why));
        }
    }
    Ok(())
}

pub async fn list(relay: &Relay, f: ListFilter, send: FramedSend) -> Result<String, Failure> {
    if let Err((code, why)) = check_filter(relay, &f) {
        return Err((code, why, send));
    }
    let now = crate::store::now();
    let ago =
        |secs: Option<u64>| secs.map(|s| now.saturating_sub(i64::try_from(s).unwrap_or(i64::MAX)));
    let filter = TicketFilter {
        status: f.status.as_deref(),
        agent: f.agent.as_deref(),
        assignee: f.assignee.as_deref(),
        priority: f.priority.as_deref(),
        search: f.search.as_deref().filter(|s| !s.is_empty()),
        created_after: ago(f.since_secs),
        created_before: ago(f.older_than_secs),
    };
    match relay.store.read(|db| db.list(&filter)) {
        Ok(tickets) => {
            let n = tickets.len();
            let sent =
                send_parts(send, None, tickets, |tickets| Message::Tickets { tickets }).await;
            Ok(sent_outcome(sent, format!("ok: {n} tickets")))
        }
        Err(e) => Err(internal(e, send)),
    }
}

/// A ticket a person opens.
pub struct Opening<'a> {
    pub title: &'a str,
    pub agent: Option<&'a str>,
    pub body: Option<&'a str>,
    /// `normal` when not given.
    pub priority: Option<&'a str>,
}

pub async fn open(
    relay: &Relay,
    op: &Operator,
    new: Opening<'_>,
    send: FramedSend,
) -> Result<String, Failure> {
    let Opening {
        title,
        agent,
        body,
        priority,
    } = new;
    if title.trim().is_empty() {
        return Err((ErrorCode::BadRequest, "a ticket needs a title".into(), send));
    }
    if title.len() > limits::TITLE || title.contains(['\n', '\r']) {
        let why = format!(
            "a ticket title is one line of at most {} bytes",
            limits::TITLE
        );
        return Err((ErrorCode::BadRequest, why, send));
    }
    if body.is_some_and(|b| b.len() > limits::BODY) {
        let why = format!("a ticket's text is at most {} bytes", limits::BODY);
        return Err((ErrorCode::BadRequest, why, send));
    }
    let priority = priority.unwrap_or("normal");
    if let Err(e) = check_priority(priority) {
        return Err((ErrorCode::BadRequest, e.0, send));
    }
    if let Some(a) = agent {
        match relay.store.agent(a) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(unknown_agent(relay, a, send)),
            Err(e) => return Err(internal(e, send)),
        }
    }
    let new = NewTicket {
        title,
        agent,
        check: None,
        monitor: None,
        priority,
        source: "technician",
        author: &op.name,
        body,
    };
    match relay.ticket_tx(|tx| {
        let change = tx.create(&new)?;
        Ok((change.ticket.clone(), vec![change]))
    }) {
        Ok(ticket) => {
            let id = ticket.id;
            let sent = send.finish_with(Message::Ticket { ticket }).await;
            Ok(sent_outcome(sent, format!("ok: ticket {id}")))
        }
        Err(e) => Err(internal(e, send)),
    }
}

pub async fn show(relay: &Relay, id: u64, send: FramedSend) -> Result<String, Failure> {
    let found = relay.store.read(|db| {
        Ok(match db.get(id)? {
            Some(t) => Some((t, db.entries(id)?)),
            None => None,
        })
    });
    match found {
        Ok(Some((ticket, entries))) => {
            let n = entries.len();
            let head = Message::TicketDetail {
                ticket,
                entries: vec![],
            };
            let sent = send_parts(send, Some(head), entries, |entries| {
                Message::TicketEntries { entries }
            })
            .await;
            Ok(sent_outcome(sent, format!("ok: {n} entries")))
        }
        Ok(None) => Err(no_ticket(id, send)),
        Err(e) => Err(internal(e, send)),
    }
}

pub async fn update(
    relay: &Relay,
    op: &Operator,
    id: u64,
    change: TicketChange,
    send: FramedSend,
) -> Result<String, Failure> {
    let author = op.name.as_str();
    let text_len = match &change {
        TicketChange::Comment { text } => text.len(),
        TicketChange::Resolve { comment } => comment.as_deref().map_or(0, str::len),
        TicketChange::Assign { operator } => operator.len(),
        _ => 0,
    };
    if text_len > limits::BODY {
        let why = format!("a ticket's text is at most {} bytes", limits::BODY);
        return Err((ErrorCode::BadRequest, why, send));
    }
    match &change {
        TicketChange::Priority { priority } => {
            if let Err(e) = check_priority(priority) {
                return Err((ErrorCode::BadRequest, e.0, send));
            }
        }
        // Only a live operator can be assigned a ticket.
        TicketChange::Assign { operator } => match relay.store.operator(operator) {
            Ok(Some(o)) if o.revoked_at.is_none() => {}
            Ok(_) => {
                return match crate::admin::unknown_operator(&relay.store, operator) {
                    Ok(why) => Err((ErrorCode::UnknownOperator, why, send)),
                    Err(e) => Err(internal(e, send)),
                }
            }
            Err(e) => return Err(internal(e, send)),
        },
        _ => {}
    }
    let outcome = relay.ticket_tx(|tx| {
        let c = match &change {
            TicketChange::Comment { text } => tx.append(id, "comment", author, text)?,
            TicketChange::Assign { operator } => tx.assign(id, operator, author)?,
            TicketChange::Priority { priority } => tx.change_priority(id, priority, author)?,
            TicketChange::Start {} => tx.set_status(id, "in_progress", author, "")?,
            TicketChange::Resolve { comment } => {
                tx.set_status(id, "resolved", author, comment.as_deref().unwrap_or(""))?
            }
            TicketChange::Close {} => tx.set_status(id, "closed", author, "")?,
        };
        Ok(match c {
            Some(c) => (Some(c.ticket.clone()), vec![c]),
            None => (None, vec![]),
        })
    });
    match outcome {
        Ok(Some(ticket)) => {
            let state = format!("{} {}", ticket.status, ticket.priority);
            let sent = send.finish_with(Message::Ticket { ticket }).await;
            Ok(sent_outcome(sent, format!("ok: ticket {id} {state}")))
        }
        Ok(None) => Err(no_ticket(id, send)),
        Err(e) if e.is::<NotAllowed>() => Err((ErrorCode::Conflict, format!("{e:#}"), send)),
        Err(e) if e.is::<InvalidValue>() => Err((ErrorCode::BadRequest, format!("{e:#}"), send)),
        Err(e) => Err(internal(e, send)),
    }
}

/// Stream notices until the console goes away.
pub async fn watch(relay: &Relay, mut send: FramedSend) -> Result<String, Failure> {
    let mut rx = relay.notices.subscribe();
    loop {
        let notice = match rx.recv().await {
            Ok(n) => n,
            Err(RecvError::Lagged(n)) => Notice {
                at: crate::store::rfc3339(crate::store::now()),
                kind: "lagged".into(),
                agent: None,
                ticket: None,
                text: format!("{n} notices skipped: this watcher is too slow"),
            },
            Err(RecvError::Closed) => return Ok("relay shutting down".into()),
        };
        if send.send(Message::Notice(notice)).await.is_err() {
            return Ok("watch ended".into());
        }
    }
}

fn no_ticket(id: u64, send: FramedSend) -> Failure {
    (ErrorCode::UnknownTicket, format!("no ticket #{id}"), send)
}
