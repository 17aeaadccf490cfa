//! What a ticket is, without storage: its status (and the moves it may
//! make), priority and source as enums, the ticket as the relay holds it,
//! a change to it and the filter of a listing. Strings appear only at the
//! edges: the wire (`firstline_proto`'s `TicketSummary`, `TicketChange`)
//! and the SQL of each store backend.
//!
//! **Times.** Every time of a ticket is the relay's, when it stored the
//! thing: `created_at` (an alert ticket's too: when the incident reached
//! the relay), `updated_at`, and each entry's `at`. An entry an agent's
//! event made also keeps `observed_at`, the time the agent observed it (its
//! result's `at`): after a relay outage the two differ, and the timeline
//! still tells when things really happened.
//!
//! **Bodies.** An entry's body is stored as text; entries that carry data
//! (results, diagnostic bundles, runbook verdicts, the result that opened an
//! alert ticket) hold it as JSON and reach consoles and webhooks as JSON
//! objects ([`entry_body`]), never as strings of JSON.

use crate::clock::rfc3339;
use firstline_proto::{TicketEntry, TicketSummary};
use std::fmt;
use std::str::FromStr;

/// A ticket's status: open → in_progress → resolved → closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TicketStatus {
    Open,
    InProgress,
    Resolved,
    Closed,
}

impl TicketStatus {
    pub const ALL: [TicketStatus; 4] = [
        TicketStatus::Open,
        TicketStatus::InProgress,
        TicketStatus::Resolved,
        TicketStatus::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Open => "open",
            TicketStatus::InProgress => "in_progress",
            TicketStatus::Resolved => "resolved",
            TicketStatus::Closed => "closed",
        }
    }

    /// Whether a ticket of this status may move to `next`: open →
    /// in_progress → resolved → closed; resolved or in_progress back to
    /// open (a problem that is back); anything but closed may be closed.
    pub fn can_become(self, next: TicketStatus) -> bool {
        use TicketStatus::*;
        match next {
            InProgress => self == Open,
            Resolved => matches!(self, Open | InProgress),
            Closed => self != Closed,
            Open => matches!(self, Resolved | InProgress),
        }
    }

    /// The move to `next`, or why it is refused.
    pub fn transition(self, id: u64, next: TicketStatus) -> Result<TicketStatus, String> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(format!("ticket #{id} is {self}; it cannot move to {next}"))
        }
    }

    /// Still being worked on (an incident's ticket takes its results).
    pub fn is_active(self) -> bool {
        matches!(self, TicketStatus::Open | TicketStatus::InProgress)
    }
}

/// A ticket's priority, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Urgent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    /// The priority of an alert ticket from the severity of its result.
    pub fn of_status(status: firstline_proto::Status) -> Priority {
        use firstline_proto::Status;
        match status {
            Status::Crit => Priority::High,
            Status::Warn | Status::Unknown => Priority::Normal,
            Status::Ok => Priority::Low,
        }
    }
}

/// Who opened a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The incident engine, from an agent's monitor.
    Alert,
    /// A person, through the console.
    Technician,
    /// The person at the machine, through `firstline-help ask` (the
    /// agent's `help_request` event).
    User,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Alert => "alert",
            Source::Technician => "technician",
            Source::User => "user",
        }
    }
}

macro_rules! wire_names {
    ($t:ty, $what:literal) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $t {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, InvalidValue> {
                Self::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                        InvalidValue(format!(
                            concat!("unknown ", $what, " `{}`: use one of {}"),
                            s,
                            names.join(", ")
                        ))
                    })
            }
        }
    };
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Alert, Source::Technician, Source::User];
}

wire_names!(TicketStatus, "status");
wire_names!(Priority, "priority");
wire_names!(Source, "source");

/// A refused ticket value (an unknown status or priority): the message
/// lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// A ticket as the relay holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub id: u64,
    pub title: String,
    pub agent: Option<String>,
    pub check: Option<String>,
    pub monitor: Option<String>,
    pub status: TicketStatus,
    pub priority: Priority,
    pub source: Source,
    pub assignee: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
    pub resolved_at: Option<i64>,
    /// The local user who asked, for an end user's ticket
    /// (`firstline-help ask`, source `user`).
    pub requester: Option<String>,
}

impl Ticket {
    /// The ticket as consoles and webhooks get it.
    pub fn summary(&self) -> TicketSummary {
        TicketSummary {
            id: self.id,
            title: self.title.clone(),
            agent: self.agent.clone(),
            check: self.check.clone(),
            status: self.status.to_string(),
            priority: self.priority.to_string(),
            source: self.source.to_string(),
            monitor: self.monitor.clone(),
            assignee: self.assignee.clone(),
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
            requester: self.requester.clone(),
        }
    }
}

/// A ticket to open.
#[derive(Debug, Clone)]
pub struct NewTicket {
    pub title: String,
    pub agent: Option<String>,
    pub check: Option<String>,
    pub monitor: Option<String>,
    pub priority: Priority,
    pub source: Source,
    pub author: String,
    /// The opening entry's text (the title when none).
    pub body: Option<String>,
    /// The local user who asked (`firstline-help ask`).
    pub requester: Option<String>,
}

/// A change a person makes to a ticket (the wire's `TicketChange`, its
/// values checked).
#[derive(Debug, Clone, PartialEq)]
pub enum TicketEdit {
    Comment(String),
    Assign(String),
    Priority(Priority),
    Status { to: TicketStatus, note: String },
}

impl TryFrom<firstline_proto::TicketChange> for TicketEdit {
    type Error = InvalidValue;
    fn try_from(c: firstline_proto::TicketChange) -> Result<Self, InvalidValue> {
        use firstline_proto::TicketChange as C;
        Ok(match c {
            C::Comment { text } => TicketEdit::Comment(text),
            C::Assign { operator } => TicketEdit::Assign(operator),
            C::Priority { priority } => TicketEdit::Priority(priority.parse()?),
            C::Start {} => TicketEdit::Status {
                to: TicketStatus::InProgress,
                note: String::new(),
            },
            C::Resolve { comment } => TicketEdit::Status {
                to: TicketStatus::Resolved,
                note: comment.unwrap_or_default(),
            },
            C::Close {} => TicketEdit::Status {
                to: TicketStatus::Closed,
                note: String::new(),
            },
        })
    }
}

/// A ticket as it is after a change, and the entry the change added: what
/// becomes a live notice and a webhook delivery.
#[derive(Debug, Clone)]
pub struct Change {
    pub ticket: TicketSummary,
    pub entry: TicketEntry,
    pub entry_id: i64,
}

/// What a listing may filter on; `None` matches everything.
#[derive(Debug, Default, Clone)]
pub struct TicketFilter {
    pub status: Option<TicketStatus>,
    pub agent: Option<String>,
    pub assignee: Option<String>,
    pub priority: Option<Priority>,
    /// Case-insensitive (ASCII) substring of the title, the opening text of
    /// a technician's ticket, or a comment.
    pub search: Option<String>,
    /// Opened at or after this time (Unix seconds).
    pub created_after: Option<i64>,
    /// Opened at or before this time (Unix seconds).
    pub created_before: Option<i64>,
}

/// Entry kinds whose body is JSON data (for `opened`, only on alert tickets).
pub const DATA_KINDS: &[&str] = &["result", "diagnostics", "verdict"];

/// The body of an entry as consoles and webhooks get it: the JSON object
/// stored for a data entry ([`DATA_KINDS`], and the `opened` entry of an
/// alert ticket), text for everything else — and text too when a data
/// entry's body is not a JSON object (an entry of an older relay).
pub fn entry_body(kind: &str, alert: bool, stored: &str) -> serde_json::Value {
    let data = DATA_KINDS.contains(&kind) || (kind == "opened" && alert);
    if data {
        if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_str(stored) {
            return v;
        }
    }
    serde_json::Value::String(stored.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use TicketStatus::*;

    #[test]
    fn status_transitions() {
        let allowed = |from: TicketStatus| -> Vec<TicketStatus> {
            TicketStatus::ALL
                .into_iter()
                .filter(|&to| from.can_become(to))
                .collect()
        };
        assert_eq!(allowed(Open), [InProgress, Resolved, Closed]);
        assert_eq!(allowed(InProgress), [Open, Resolved, Closed]);
        assert_eq!(allowed(Resolved), [Open, Closed]);
        assert_eq!(allowed(Closed), Vec::<TicketStatus>::new());
        assert_eq!(
            Closed.transition(7, Resolved).unwrap_err(),
            "ticket #7 is closed; it cannot move to resolved"
        );
        assert_eq!(Open.transition(7, InProgress), Ok(InProgress));
        assert!(Open.is_active() && InProgress.is_active() && !Resolved.is_active());
    }

    #[test]
    fn wire_names_round_trip_and_refusals_list_the_valid_ones() {
        for s in TicketStatus::ALL {
            assert_eq!(s.as_str().parse::<TicketStatus>(), Ok(s));
        }
        for p in Priority::ALL {
            assert_eq!(p.as_str().parse::<Priority>(), Ok(p));
        }
        let names: Vec<&str> = TicketStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, firstline_proto::message::STATUSES);
        let names: Vec<&str> = Priority::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, firstline_proto::message::PRIORITIES);
        assert!("opn"
            .parse::<TicketStatus>()
            .unwrap_err()
            .0
            .contains("open, in_progress, resolved, closed"));
        assert!("hi"
            .parse::<Priority>()
            .unwrap_err()
            .0
            .contains("low, normal, high, urgent"));
        assert!(Priority::Urgent > Priority::High);
        assert_eq!(
            Priority::of_status(firstline_proto::Status::Crit).as_str(),
            firstline_proto::event::priority_of(firstline_proto::Status::Crit)
        );
    }

    #[test]
    fn a_data_entry_that_is_not_an_object_stays_text() {
        assert_eq!(entry_body("result", true, "{}"), json!({}));
        assert_eq!(entry_body("result", true, "not json"), json!("not json"));
        assert_eq!(entry_body("verdict", false, "[1]"), json!("[1]"));
        assert_eq!(entry_body("opened", false, "{}"), json!("{}"));
        assert_eq!(entry_body("status", true, "{}"), json!("{}"));
    }

    #[test]
    fn entries_of_older_peers_still_parse() {
        let old =
            r#"{"at":"2026-01-01T00:00:00Z","kind":"result","author":"pc1","body":"{\"a\":1}"}"#;
        let e: TicketEntry = serde_json::from_str(old).unwrap();
        assert_eq!(e.observed_at, None);
        assert_eq!(e.body, json!("{\"a\":1}"));
    }
}
