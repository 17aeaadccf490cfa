//! Requests about tickets: `list_tickets`, `ticket_new`, `ticket_show`,
//! `ticket_update`. The rules (status moves, the timeline) are the store's
//! ([`crate::store::tickets`]); here are the checks of what the console
//! sent and the answers.

use super::{AuditLine, Ctx, Outcome, Reply, Request};
use crate::error::RelayError;
use crate::store::{Missing, StoreError};
use crate::ticket::{NewTicket, Priority, Source, TicketEdit, TicketFilter, TicketStatus};
use firstline_proto::{limits, Message, Role, TicketChange};

/// `tickets [--status S] [--agent A] [--assignee O] [--priority P]
/// [--search TEXT] [--since D] [--older-than D]`.
#[derive(Debug, Clone, Default)]
pub struct ListTickets {
    pub status: Option<String>,
    pub agent: Option<String>,
    pub assignee: Option<String>,
    pub priority: Option<String>,
    pub search: Option<String>,
    pub since_secs: Option<u64>,
    pub older_than_secs: Option<u64>,
}

impl ListTickets {
    /// Check the filters: a status or priority that does not exist, or an
    /// agent or assignee the relay never knew, is the caller's mistake,
    /// told with the valid values (an empty list would hide the typo).
    async fn filter(&self, ctx: &Ctx<'_>) -> Result<TicketFilter, RelayError> {
        let relay = ctx.relay;
        let status = self
            .status
            .as_deref()
            .map(str::parse::<TicketStatus>)
            .transpose()?;
        let priority = self
            .priority
            .as_deref()
            .map(str::parse::<Priority>)
            .transpose()?;
        if self
            .search
            .as_ref()
            .is_some_and(|s| s.len() > limits::TITLE)
        {
            let why = format!("--search is at most {} bytes", limits::TITLE);
            return Err(RelayError::bad_request(why));
        }
        if let Some(a) = &self.agent {
            // Removed agents' tickets are kept: any name the relay knew is fine.
            if !relay.store.agent_known(a).await? {
                return Err(relay.unknown_agent(a).await);
            }
        }
        if let Some(o) = &self.assignee {
            // Revoked operators may still hold tickets.
            if relay.store.operator(o).await?.is_none() {
                return Err(relay.unknown_operator(o).await);
            }
        }
        let now = relay.clock.now();
        let ago = |secs: Option<u64>| {
            secs.map(|s| now.saturating_sub(i64::try_from(s).unwrap_or(i64::MAX)))
        };
        Ok(TicketFilter {
            status,
            agent: self.agent.clone(),
            assignee: self.assignee.clone(),
            priority,
            search: self.search.clone().filter(|s| !s.is_empty()),
            created_after: ago(self.since_secs),
            created_before: ago(self.older_than_secs),
        })
    }
}

impl Request for ListTickets {
    fn role(&self) -> Role {
        Role::Viewer
    }

    fn audit(&self) -> AuditLine {
        let mut args = Vec::new();
        let mut flag = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                args.push(format!("--{name} {v}"));
            }
        };
        flag("status", self.status.clone());
        flag("assignee", self.assignee.clone());
        flag("priority", self.priority.clone());
        flag("search", self.search.clone());
        flag("since", self.since_secs.map(|s| format!("{s}s")));
        flag("older-than", self.older_than_secs.map(|s| format!("{s}s")));
        AuditLine::new("list tickets")
            .agent(self.agent.clone())
            .args(args.join(" "))
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let filter = self.filter(ctx).await?;
        let tickets = ctx.relay.store.list_tickets(filter).await?;
        let tickets: Vec<_> = tickets.iter().map(|t| t.summary()).collect();
        let n = tickets.len();
        let sent = reply
            .parts(None, tickets, |tickets| Message::Tickets { tickets })
            .await;
        Reply::outcome(sent, format!("ok: {n} tickets"))
    }
}

/// `ticket new TITLE [--agent A] [--priority P]`: a ticket a person opens.
#[derive(Debug, Clone)]
pub struct TicketNew {
    pub title: String,
    pub agent: Option<String>,
    pub body: Option<String>,
    /// `normal` when not given.
    pub priority: Option<String>,
}

impl Request for TicketNew {
    fn role(&self) -> Role {
        Role::Technician
    }

    fn audit(&self) -> AuditLine {
        let args = match &self.priority {
            Some(p) => format!("{} --priority {p}", self.title),
            None => self.title.clone(),
        };
        AuditLine::new("open a ticket")
            .agent(self.agent.clone())
            .args(args)
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        if self.title.trim().is_empty() {
            return Err(RelayError::bad_request("a ticket needs a title"));
        }
        if self.title.len() > limits::TITLE || self.title.contains(['\n', '\r']) {
            let why = format!(
                "a ticket title is one line of at most {} bytes",
                limits::TITLE
            );
            return Err(RelayError::bad_request(why));
        }
        if self.body.as_ref().is_some_and(|b| b.len() > limits::BODY) {
            let why = format!("a ticket's text is at most {} bytes", limits::BODY);
            return Err(RelayError::bad_request(why));
        }
        let priority = match &self.priority {
            Some(p) => p.parse::<Priority>()?,
            None => Priority::Normal,
        };
        let relay = ctx.relay;
        if let Some(a) = &self.agent {
            if relay.store.agent(a).await?.is_none() {
                return Err(relay.unknown_agent(a).await);
            }
        }
        let change = relay
            .store
            .create_ticket(NewTicket {
                title: self.title,
                agent: self.agent,
                check: None,
                monitor: None,
                priority,
                source: Source::Technician,
                author: ctx.operator.name.clone(),
                body: self.body,
                requester: None,
            })
            .await?;
        relay.announce(std::slice::from_ref(&change));
        let id = change.ticket.id;
        let sent = reply
            .finish_with(Message::Ticket {
                ticket: change.ticket,
            })
            .await;
        Reply::outcome(sent, format!("ok: ticket {id}"))
    }
}

/// `ticket show N`: the ticket, then its timeline in parts.
#[derive(Debug, Clone)]
pub struct TicketShow {
    pub id: u64,
}

impl Request for TicketShow {
    fn role(&self) -> Role {
        Role::Viewer
    }

    fn audit(&self) -> AuditLine {
        AuditLine::new("show ticket").args(format!("#{}", self.id))
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let Some((ticket, entries)) = ctx.relay.store.ticket_detail(self.id).await? else {
            return Err(RelayError::no_ticket(self.id));
        };
        let n = entries.len();
        let head = Message::TicketDetail {
            ticket: ticket.summary(),
            entries: vec![],
        };
        let sent = reply
            .parts(Some(head), entries, |entries| Message::TicketEntries {
                entries,
            })
            .await;
        Reply::outcome(sent, format!("ok: {n} entries"))
    }
}

/// `ticket comment|assign|priority|start|resolve|close N …`.
#[derive(Debug, Clone)]
pub struct TicketUpdate {
    pub id: u64,
    pub change: TicketChange,
}

impl Request for TicketUpdate {
    fn role(&self) -> Role {
        Role::Technician
    }

    fn audit(&self) -> AuditLine {
        let change = serde_json::to_string(&self.change).unwrap_or_default();
        AuditLine::new("change ticket").args(format!("#{} {change}", self.id))
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let text_len = match &self.change {
            TicketChange::Comment { text } => text.len(),
            TicketChange::Resolve { comment } => comment.as_deref().map_or(0, str::len),
            TicketChange::Assign { operator } => operator.len(),
            _ => 0,
        };
        if text_len > limits::BODY {
            let why = format!("a ticket's text is at most {} bytes", limits::BODY);
            return Err(RelayError::bad_request(why));
        }
        let edit = TicketEdit::try_from(self.change)?;
        let relay = ctx.relay;
        let change = match relay
            .store
            .change_ticket(self.id, edit, &ctx.operator.name)
            .await
        {
            Ok(c) => c,
            // Only a live operator can be assigned a ticket.
            Err(StoreError::NotFound(Missing::Operator(o))) => {
                return Err(relay.unknown_operator(&o).await);
            }
            Err(e) => return Err(e.into()),
        };
        relay.announce(std::slice::from_ref(&change));
        let t = &change.ticket;
        let state = format!("{} {}", t.status, t.priority);
        let sent = reply
            .finish_with(Message::Ticket {
                ticket: change.ticket,
            })
            .await;
        Reply::outcome(sent, format!("ok: ticket {} {state}", self.id))
    }
}
