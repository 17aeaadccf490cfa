//! Console requests about tickets: list, open, show, change, and `watch`
//! (live notices). Role checks and audit happen in [`crate::operator`]
//! before these run.

use crate::answer::send_parts;
use crate::operator::{internal, sent_outcome, unknown_agent, Failure, Operator};
use crate::server::Relay;
use crate::tickets::{NewTicket, TicketStore};
use firstline_net::FramedSend;
use firstline_proto::{limits, ErrorCode, Message, Notice, TicketChange};
use tokio::sync::broadcast::error::RecvError;

pub async fn list(
    relay: &Relay,
    status: Option<String>,
    agent: Option<String>,
    send: FramedSend,
) -> Result<String, Failure> {
    match relay
        .store
        .read(|db| db.list(status.as_deref(), agent.as_deref()))
    {
        Ok(tickets) => {
            let n = tickets.len();
            let sent =
                send_parts(send, None, tickets, |tickets| Message::Tickets { tickets }).await;
            Ok(sent_outcome(sent, format!("ok: {n} tickets")))
        }
        Err(e) => Err(internal(e, send)),
    }
}

pub async fn open(
    relay: &Relay,
    op: &Operator,
    title: &str,
    agent: Option<&str>,
    body: Option<&str>,
    send: FramedSend,
) -> Result<String, Failure> {
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
    if let Some(a) = agent {
        match relay.store.agent(a) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(unknown_agent(a, send)),
            Err(e) => return Err(internal(e, send)),
        }
    }
    let new = NewTicket {
        title,
        agent,
        check: None,
        monitor: None,
        priority: "normal",
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
    let outcome = relay.ticket_tx(|tx| {
        let c = match &change {
            TicketChange::Comment { text } => tx.append(id, "comment", author, text)?,
            TicketChange::Assign { operator } => tx.assign(id, operator, author)?,
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
            let status = ticket.status.clone();
            let sent = send.finish_with(Message::Ticket { ticket }).await;
            Ok(sent_outcome(sent, format!("ok: ticket {id} {status}")))
        }
        Ok(None) => Err(no_ticket(id, send)),
        Err(e) => Err((ErrorCode::BadRequest, format!("{e:#}"), send)),
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
