//! Every message that travels on a firstline stream.
//!
//! Streams follow one pattern (DESIGN.md, "The channel"): the opener sends one
//! request message, the other side answers with any number of `progress` and
//! `result` messages and ends with exactly one final message (`done`, an
//! answer such as `agents`, or `error`). Each message is wrapped in an
//! [`Envelope`] that carries the envelope version `v`, so that a frame from a
//! future version is told apart from garbage.

use crate::event::AgentEvent;
use crate::result::{CheckResult, Status};
use serde::{Deserialize, Serialize};

/// Envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u16 = 1;

/// What goes inside one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u16,
    #[serde(flatten)]
    pub msg: Message,
}

impl Envelope {
    pub fn new(msg: Message) -> Self {
        Envelope {
            v: ENVELOPE_VERSION,
            msg,
        }
    }
}

/// An operator's role; each includes the rights of the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Technician,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Technician => "technician",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "technician" => Ok(Role::Technician),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role `{other}` (expected viewer, technician or admin)"
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a stream (or a request) failed. Sent in an `error` message and, as a
/// number, as the QUIC stream reset / stop code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// A frame declared a length over the 1 MiB cap.
    FrameTooLarge,
    /// Bytes that do not decode to a message.
    Malformed,
    /// An envelope version this build does not speak.
    UnknownVersion,
    /// A message that is valid but not expected here.
    BadRequest,
    /// No verified identity (no client certificate).
    Unauthenticated,
    /// The identity's role does not allow this request.
    Forbidden,
    /// The agent's own policy refused the request.
    Refused,
    UnknownAgent,
    AgentOffline,
    TokenUnknown,
    TokenExpired,
    TokenUsed,
    Revoked,
    UnknownCheck,
    UnknownTicket,
    Timeout,
    Internal,
    /// No operator of that name (the message lists the valid ones).
    UnknownOperator,
    /// The enrollment token was revoked by the relay admin.
    TokenRevoked,
    /// A valid request the current state does not allow (a closed ticket
    /// cannot be resolved, a revoked operator's role cannot change).
    Conflict,
    /// A code from a newer peer.
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The application error code used for QUIC stream resets and stops.
    pub fn quic_code(self) -> u32 {
        match self {
            ErrorCode::FrameTooLarge => 1,
            ErrorCode::Malformed => 2,
            ErrorCode::UnknownVersion => 3,
            ErrorCode::BadRequest => 4,
            ErrorCode::Unauthenticated => 5,
            ErrorCode::Forbidden => 6,
            ErrorCode::Refused => 7,
            ErrorCode::UnknownAgent => 8,
            ErrorCode::AgentOffline => 9,
            ErrorCode::TokenUnknown => 10,
            ErrorCode::TokenExpired => 11,
            ErrorCode::TokenUsed => 12,
            ErrorCode::Revoked => 13,
            ErrorCode::UnknownCheck => 14,
            ErrorCode::UnknownTicket => 15,
            ErrorCode::Timeout => 16,
            ErrorCode::Internal => 17,
            ErrorCode::UnknownOperator => 18,
            ErrorCode::TokenRevoked => 19,
            ErrorCode::Conflict => 20,
            ErrorCode::Other => 99,
        }
    }
}

/// Sent by an agent first on every connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub version_min: u16,
    pub version_max: u16,
    /// Software version, e.g. `0.1.0`.
    pub software: String,
    /// Operating system, one line (`Debian GNU/Linux 12`).
    pub os: String,
    pub hostname: String,
    /// Checks and features this agent offers.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The digest of the central monitor sets it runs, as last received
    /// ([`crate::central`]); none if it never received any. The relay
    /// sends the sets again only when they differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub central_digest: Option<String>,
}

/// The relay's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// Negotiated protocol version.
    pub version: u16,
    /// The identity the relay read from the verified certificate.
    pub name: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// One row of `firstline agents`. The fields after `revoked` came with
/// tags and health (older relays leave them out: they parse as empty,
/// `unknown` and 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub name: String,
    pub online: bool,
    /// RFC 3339; `None` when the agent never connected.
    pub last_seen: Option<String>,
    pub version: Option<String>,
    /// Its OS line, from its `hello` (`Debian GNU/Linux 12`).
    pub os: Option<String>,
    pub hostname: Option<String>,
    #[serde(default)]
    pub revoked: bool,
    /// Its tags, sorted: from its enrollment token, then `agent tag`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// What it reported of its machine at its last connection.
    #[serde(default)]
    pub facts: Facts,
    /// The worst latest status of its monitors (`ok` < `unknown` < `warn`
    /// < `crit`); `unknown` when the relay has none of it
    /// ([`crate::select::worst`]).
    #[serde(default = "unknown_status")]
    pub health: Status,
    /// Its alert tickets still open or in progress.
    #[serde(default)]
    pub open_incidents: u64,
    /// Its other tickets (people's) still open or in progress.
    #[serde(default)]
    pub open_tickets: u64,
}

fn unknown_status() -> Status {
    Status::Unknown
}

/// What an agent reports of its machine, besides the OS line and host name
/// of its `hello`: sent in a `facts` message after `welcome` on each
/// connection. Every field may be missing (an older agent, a fact it could
/// not read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// The kernel release (`uname -r`).
    #[serde(default)]
    pub kernel: Option<String>,
    /// Its global addresses (IPv4 and IPv6, no loopback or link-local),
    /// as the `net` check reads them, with their prefix length
    /// (`192.0.2.7/24`).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Seconds since it booted: as reported, plus the time since for an
    /// agent online when listed.
    #[serde(default)]
    pub uptime_secs: Option<u64>,
    /// RFC 3339 time the relay stored them (set by the relay; an agent
    /// leaves it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<String>,
}

impl Facts {
    /// Cut to sane sizes, one printable line each: what the relay stores
    /// of an agent's report (as with its `hello`).
    pub fn bounded(self) -> Facts {
        use crate::limits;
        use crate::text::{printable, truncate};
        let line = |s: &str, max| printable(&truncate(s, max)).into_owned();
        Facts {
            kernel: self.kernel.map(|k| line(&k, limits::HELLO_FIELD)),
            addresses: self
                .addresses
                .iter()
                .take(limits::FACT_ADDRESSES)
                .map(|a| line(a, limits::FACT_ADDRESS))
                .collect(),
            uptime_secs: self.uptime_secs,
            reported_at: None,
        }
    }
}

/// One monitor of an agent with its latest status, as the relay stored it
/// from the agent's results (`list_monitor_status`): what `health` is the
/// worst of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorStatusInfo {
    /// The monitor's id (`disk /var`, or the id a `[[monitor]]` gave).
    pub monitor: String,
    pub status: Status,
    /// Its latest result's summary, one line.
    pub summary: String,
    /// RFC 3339 time the relay stored it.
    pub at: String,
}

/// The fleet at a glance: the counts of a listing (`firstline agents`'s
/// last line), over the agents it selected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSummary {
    pub machines: u64,
    pub online: u64,
    pub ok: u64,
    pub warn: u64,
    pub crit: u64,
    pub unknown: u64,
    pub open_incidents: u64,
    pub open_tickets: u64,
}

impl FleetSummary {
    /// The counts of `agents`.
    pub fn of(agents: &[AgentInfo]) -> FleetSummary {
        let mut s = FleetSummary::default();
        for a in agents {
            s.machines += 1;
            s.online += u64::from(a.online);
            match a.health {
                Status::Ok => s.ok += 1,
                Status::Warn => s.warn += 1,
                Status::Crit => s.crit += 1,
                Status::Unknown => s.unknown += 1,
            }
            s.open_incidents += a.open_incidents;
            s.open_tickets += a.open_tickets;
        }
        s
    }
}

/// One row of `firstline tickets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketSummary {
    pub id: u64,
    pub title: String,
    pub agent: Option<String>,
    pub check: Option<String>,
    pub status: String,
    pub priority: String,
    pub source: String,
    /// The monitor whose incident opened it (alert tickets).
    #[serde(default)]
    pub monitor: Option<String>,
    #[serde(default)]
    pub assignee: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The local user who asked, for an end user's ticket (source `user`,
    /// `firstline-help ask`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
}

/// One entry of a ticket's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketEntry {
    /// RFC 3339 time the relay stored the entry (its arrival).
    pub at: String,
    /// RFC 3339 time the agent observed what the entry reports (the `at` of
    /// the agent's result), for entries an agent's event made; it differs
    /// from `at` when the event waited in the agent's outbox (a relay
    /// outage). Absent for entries people made, and from older relays.
    #[serde(default)]
    pub observed_at: Option<String>,
    /// `opened`, `result`, `comment`, `status`, `assigned`, `diagnostics`,
    /// `verdict`…
    pub kind: String,
    pub author: String,
    /// A JSON object for entries that carry data — `result` (a
    /// [`crate::CheckResult`]), `diagnostics` (a [`crate::Diagnostics`]),
    /// `verdict` (a [`crate::runbook::Verdict`]) and the `opened` entry of
    /// an alert ticket (the result that opened it) — and a string for
    /// everything people read as text (comments, state changes, the opening
    /// text of a technician's ticket).
    pub body: serde_json::Value,
}

/// One runbook an agent offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunbookInfo {
    pub name: String,
    pub description: String,
    /// `NAME=DEFAULT` (or `NAME` when required) and help, per parameter.
    pub params: Vec<(String, String)>,
    /// `shipped` or the file it was loaded from.
    pub source: String,
}

/// One check an agent offers, as `firstline checks AGENT` lists it: read
/// from the check's own command-line definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckInfo {
    pub name: String,
    /// What it checks, one line.
    pub about: String,
    /// `disk [PATH] [--warn=80] [--crit=90] …`: every argument, defaults
    /// (thresholds) shown.
    pub synopsis: String,
    #[serde(default)]
    pub args: Vec<ArgInfo>,
}

/// One argument of a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArgInfo {
    /// `PATH` for a positional argument, `--warn` for an option.
    pub name: String,
    /// The option's value placeholder (`PCT`); none for flags and positionals.
    #[serde(default)]
    pub value: Option<String>,
    /// Its default (a threshold, a timeout…), when it has one.
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    pub help: String,
}

/// One entry of the relay's audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: u64,
    pub at: String,
    pub who: String,
    pub role: Option<String>,
    pub agent: Option<String>,
    pub action: String,
    pub args: String,
    pub outcome: String,
    /// SHA-256 chaining this entry to the previous one.
    pub hash: String,
}

/// What `audit_verify` found: the relay walked its audit log's hash chain
/// and compared it with its signed anchor (`firstline-relay audit verify`
/// without other relays' anchor files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditVerification {
    /// Entries in the database.
    pub entries: u64,
    /// Entries whose hash matches a signed checkpoint of this relay's anchor.
    pub anchored: u64,
    /// The newest entry's hash.
    pub head: String,
    /// No error: the chain holds and matches the anchor (warnings allowed).
    pub holds: bool,
    /// What is wrong, one line each.
    pub errors: Vec<String>,
    /// What is worth knowing but proves nothing wrong, one line each.
    pub warnings: Vec<String>,
}

/// Ticket priorities, lowest first.
pub const PRIORITIES: &[&str] = &["low", "normal", "high", "urgent"];
/// Ticket statuses, in the order a ticket moves through them.
pub const STATUSES: &[&str] = &["open", "in_progress", "resolved", "closed"];

/// One enrollment token as `token list` shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    /// `active`, `expired`, `used` (no use left) or `revoked`.
    pub state: String,
    /// Enrollments it was created for (`None`: made by an older relay).
    #[serde(default)]
    pub uses: Option<u32>,
    pub uses_left: u32,
    /// RFC 3339.
    pub created_at: String,
    pub expires_at: String,
    #[serde(default)]
    pub revoked_at: Option<String>,
    /// Tags every agent enrolled with it starts with.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// One operator as `operator list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorInfo {
    pub name: String,
    /// The role the relay authorizes each request with (its database's,
    /// whatever role the operator's certificate was issued with).
    pub role: Role,
    pub created_at: String,
    #[serde(default)]
    pub revoked_at: Option<String>,
    /// Connected to the relay right now (always false offline).
    #[serde(default)]
    pub online: bool,
}

/// One enrolled agent as the admin's `agent list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub name: String,
    /// RFC 3339 times.
    pub enrolled_at: String,
    #[serde(default)]
    pub last_seen: Option<String>,
    /// Connected right now (always false offline).
    #[serde(default)]
    pub online: bool,
    #[serde(default)]
    pub revoked_at: Option<String>,
    /// Expiry of its newest certificate.
    #[serde(default)]
    pub cert_expires: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
}

/// A change a technician makes to a ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum TicketChange {
    Comment {
        text: String,
    },
    Assign {
        operator: String,
    },
    Start {},
    Resolve {
        #[serde(default)]
        comment: Option<String>,
    },
    Close {},
    /// One of [`PRIORITIES`].
    Priority {
        priority: String,
    },
}

/// A live notice for `firstline watch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub at: String,
    /// `alert`, `ticket_opened`, `ticket_updated`, `ticket_resolved`, `agent_online`…
    pub kind: String,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub ticket: Option<u64>,
    pub text: String,
}

/// Every message, tagged by `type` on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Message {
    // --- connection set-up (agent → relay, on the first stream) ---
    Hello(Hello),
    Welcome(Welcome),

    // --- enrollment (agent without certificate → relay) ---
    Enroll {
        token: String,
        name: String,
        csr_pem: String,
    },
    Enrolled {
        name: String,
        cert_pem: String,
        ca_pem: String,
    },
    /// Agent asks for a fresh certificate over its live, authenticated link.
    Renew {
        csr_pem: String,
    },
    Renewed {
        cert_pem: String,
    },

    // --- console → relay requests ---
    /// Every agent: `agents` parts, then `done` (as older consoles ask).
    ListAgents {},
    Agents {
        agents: Vec<AgentInfo>,
    },
    /// The agents a selector picks ([`crate::select`]; none: every agent),
    /// health at a glance: `agents` parts, then one `fleet_summary` of
    /// them, then `done`.
    SelectAgents {
        #[serde(default)]
        select: Option<String>,
    },
    FleetSummary(FleetSummary),
    /// Run a check on an agent; results also go to `ticket` when given.
    Run {
        agent: String,
        check: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        ticket: Option<u64>,
        /// The agent offline: keep the action for it this many seconds
        /// (answered by `queued`, then `done`), instead of failing.
        #[serde(default)]
        queue_for_secs: Option<u64>,
    },
    TicketNew {
        title: String,
        #[serde(default)]
        agent: Option<String>,
        #[serde(default)]
        body: Option<String>,
        /// One of [`PRIORITIES`]; `normal` when absent.
        #[serde(default)]
        priority: Option<String>,
    },
    /// Answer to `ticket_new` and `ticket_update`.
    Ticket {
        ticket: TicketSummary,
    },
    /// Tickets matching every filter given: `tickets` parts, then `done`.
    ListTickets {
        /// One of [`STATUSES`].
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        agent: Option<String>,
        #[serde(default)]
        assignee: Option<String>,
        /// One of [`PRIORITIES`].
        #[serde(default)]
        priority: Option<String>,
        /// Case-insensitive text in the title, the opening text or a comment.
        #[serde(default)]
        search: Option<String>,
        /// Opened at most this many seconds ago (by the relay's clock).
        #[serde(default)]
        since_secs: Option<u64>,
        /// Opened at least this many seconds ago.
        #[serde(default)]
        older_than_secs: Option<u64>,
    },
    TicketShow {
        id: u64,
    },
    /// Answer to `ticket_show`: the ticket, then its timeline in
    /// `ticket_entries` parts, then `done`.
    TicketDetail {
        ticket: TicketSummary,
        #[serde(default)]
        entries: Vec<TicketEntry>,
    },
    TicketEntries {
        entries: Vec<TicketEntry>,
    },
    TicketUpdate {
        id: u64,
        #[serde(flatten)]
        change: TicketChange,
    },
    /// Follow alerts and ticket changes; answered by `notice` messages until
    /// the console goes away.
    Watch {},
    Notice(Notice),

    // --- agent → relay: monitoring events from the outbox ---
    Events {
        events: Vec<AgentEvent>,
    },
    /// Every event up to and including `upto` is stored.
    Ack {
        upto: u64,
    },
    Tickets {
        tickets: Vec<TicketSummary>,
    },

    /// Run a fix on an agent (`dry_run`: say what it would do, change nothing).
    Fix {
        agent: String,
        action: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        dry_run: bool,
        #[serde(default)]
        ticket: Option<u64>,
        /// As for `run`.
        #[serde(default)]
        queue_for_secs: Option<u64>,
    },
    /// Run a runbook on an agent with `NAME=VALUE` parameters.
    Runbook {
        agent: String,
        name: String,
        #[serde(default)]
        params: Vec<String>,
        #[serde(default)]
        dry_run: bool,
        #[serde(default)]
        ticket: Option<u64>,
        /// As for `run`.
        #[serde(default)]
        queue_for_secs: Option<u64>,
    },
    /// An action on every agent a selector picks ([`crate::action`]), at
    /// most `max_in_flight` at a time: answered by `bulk_started`, one
    /// `bulk_item` per agent as each ends, then `done`.
    Bulk {
        select: String,
        action: crate::action::Action,
        #[serde(default)]
        ticket: Option<u64>,
        /// `None`: the relay's default.
        #[serde(default)]
        max_in_flight: Option<u32>,
        /// Agents offline: keep the action for them this many seconds
        /// (their items say `queued`) instead of reporting them offline.
        #[serde(default)]
        queue_for_secs: Option<u64>,
    },
    BulkStarted {
        /// How many agents the selector picked.
        selected: u64,
        max_in_flight: u32,
    },
    /// Boxed: a result and a verdict make it the largest message by far.
    BulkItem(Box<crate::action::BulkItem>),
    /// An action kept for an offline agent (answer to `run`, `fix`,
    /// `runbook` with `queue_for_secs`, and to `queue_cancel`).
    Queued(crate::action::QueuedAction),
    /// Queued actions, pending first: `queued_actions` parts, then `done`.
    ListQueue {
        /// Also those delivered, expired or cancelled (the newest first).
        #[serde(default)]
        all: bool,
    },
    QueuedActions {
        actions: Vec<crate::action::QueuedAction>,
    },
    /// Cancel a pending queued action: answered by `queued` (its new
    /// state).
    QueueCancel {
        id: u64,
    },
    /// Support metrics over the tickets opened in the last `since_secs`
    /// (viewers): answered by `support_report`.
    Report {
        since_secs: u64,
    },
    SupportReport(crate::report::SupportReport),
    /// Knowledge-base articles whose title, tags or body contain `text`
    /// (case-insensitive; title hits first): answered by `kb_hits`.
    KbSearch {
        text: String,
    },
    KbHits {
        hits: Vec<crate::kb::KbHit>,
    },
    /// One knowledge-base article (consoles; agents too, for
    /// `firstline-help`): answered by `kb_article`.
    KbShow {
        id: String,
    },
    KbArticle(crate::kb::KbArticle),
    /// The runbooks an agent has.
    ListRunbooks {
        agent: String,
    },
    Runbooks {
        runbooks: Vec<RunbookInfo>,
        /// Files the agent rejected: `FILE:LINE: reason`.
        #[serde(default)]
        invalid: Vec<String>,
    },
    /// The audit log, newest last: `audit` parts, then `done`.
    ListAudit {
        #[serde(default)]
        agent: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    Audit {
        entries: Vec<AuditRecord>,
    },

    /// An agent's monitors with their latest status (viewers): one
    /// `monitor_statuses` message (possibly in parts), then `done`.
    ListMonitorStatus {
        agent: String,
    },
    MonitorStatuses {
        agent: String,
        monitors: Vec<MonitorStatusInfo>,
    },

    /// Who the sender is as the relay authorizes them now: the name from
    /// their certificate, the role its database holds (any operator);
    /// answered by `operator`.
    WhoAmI {},
    Operator {
        operator: OperatorInfo,
    },
    /// Check the audit log's hash chain against this relay's signed anchor
    /// (admins): answered by `audit_verified`.
    AuditVerify {},
    AuditVerified(AuditVerification),

    // --- console → relay: lifecycle, for admins ---
    /// Enrollment tokens: `tokens` parts, then `done`.
    ListTokens {},
    Tokens {
        tokens: Vec<TokenInfo>,
    },
    /// A new enrollment token (default lifetime: the relay's `token_ttl_secs`).
    TokenCreate {
        uses: u32,
        #[serde(default)]
        ttl_secs: Option<u64>,
        /// Tags every agent enrolled with it starts with.
        #[serde(default)]
        tags: Vec<String>,
    },
    TokenCreated {
        /// The token itself, shown once.
        token: String,
        info: TokenInfo,
        /// The address agents enroll with (`public_addr` of the relay).
        relay: String,
    },
    /// A revoked token can no longer enroll anything.
    TokenRevoke {
        id: String,
    },
    TokenRevoked {
        token: TokenInfo,
    },
    /// Operators: `operators` parts, then `done`.
    ListOperators {},
    Operators {
        operators: Vec<OperatorInfo>,
    },
    /// Change an operator's role; it holds from their next request on.
    OperatorRole {
        name: String,
        role: Role,
    },
    OperatorUpdated {
        operator: OperatorInfo,
    },
    /// Enrollment records of every agent: `agent_records` parts, then `done`.
    ListAgentRecords {},
    AgentRecords {
        agents: Vec<AgentRecord>,
    },
    /// Delete an agent's record (its tickets are kept).
    AgentRemove {
        name: String,
    },
    AgentRemoved {
        agent: AgentRecord,
        /// Whether the name may enroll again (false for a revoked agent:
        /// a revoked name stays revoked).
        name_freed: bool,
        /// Its tickets, kept.
        tickets: u64,
    },
    /// Add and remove an agent's tags (`firstline agent tag NAME +T -T`);
    /// answered by `agent_tagged`.
    AgentTag {
        agent: String,
        #[serde(default)]
        add: Vec<String>,
        #[serde(default)]
        remove: Vec<String>,
    },
    AgentTagged {
        agent: String,
        /// Its tags after the change, sorted.
        tags: Vec<String>,
    },

    // --- console → relay: central monitors ([`crate::central`]) ---
    /// Define or replace the monitor set `name`: the `[[monitor]]` tables
    /// of `toml`, for the agents `select` picks (admins); answered by
    /// `monitor_set`.
    MonitorsSet {
        name: String,
        select: String,
        toml: String,
    },
    /// A set as stored (answer to `monitors_set` and `monitors_remove`).
    MonitorSet(crate::central::MonitorSetInfo),
    /// Remove the monitor set `name` (admins); answered by `monitor_set`
    /// (the set removed).
    MonitorsRemove {
        name: String,
    },
    /// The sets, one `monitor_sets` message each, then each agent's
    /// central monitors in `agent_monitors` parts, then `done`.
    MonitorsShow {},
    MonitorSets {
        sets: Vec<crate::central::MonitorSetInfo>,
    },
    AgentMonitors {
        agents: Vec<crate::central::AgentMonitorReport>,
    },

    // --- agent → relay, after `welcome` ---
    /// What the agent reads of its machine; answered by `done`.
    Facts(Facts),
    /// `firstline-help tickets`: the tickets the local user `user` opened
    /// on this agent (the relay filters by the agent of the certificate
    /// *and* this user); answered by one `help_tickets_list`.
    HelpTickets {
        user: String,
    },
    HelpTicketsList {
        tickets: Vec<crate::event::HelpTicket>,
    },

    // --- relay → agent requests ---
    // `role` is the requester's role as the relay read it from the verified
    // certificate; the agent checks it again against what the action does
    // ([`crate::effect`]). Missing means the least role.
    Exec {
        check: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default = "least_role")]
        role: Role,
    },
    ExecFix {
        action: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        dry_run: bool,
        #[serde(default = "least_role")]
        role: Role,
    },
    ExecRunbook {
        name: String,
        #[serde(default)]
        params: Vec<String>,
        #[serde(default)]
        dry_run: bool,
        #[serde(default = "least_role")]
        role: Role,
    },
    ExecListRunbooks {},
    /// The checks an agent offers, with their arguments: answered by
    /// `checks`.
    ListChecks {
        agent: String,
    },
    ExecListChecks {},
    Checks {
        checks: Vec<CheckInfo>,
    },
    /// The end of a runbook: the leaf it reached, with every step.
    Verdict(crate::runbook::Verdict),
    /// The central monitor sets that select this agent (relay → agent,
    /// after `welcome` and whenever they change); answered by
    /// `central_monitors_report`.
    CentralMonitors {
        /// Of the sets' content: the same sets, the same digest.
        digest: String,
        sets: Vec<crate::central::CentralSet>,
    },
    CentralMonitorsReport(crate::central::CentralReport),

    // --- answers on any request stream ---
    Progress {
        text: String,
    },
    Result {
        result: CheckResult,
    },
    /// Final frame of a successful stream.
    Done {},
    /// Final frame of a failed stream.
    Error {
        code: ErrorCode,
        message: String,
    },
}

fn least_role() -> Role {
    Role::Viewer
}

impl Message {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Message::Error {
            code,
            message: message.into(),
        }
    }

    /// Short name of the message type, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Welcome(_) => "welcome",
            Message::Enroll { .. } => "enroll",
            Message::Enrolled { .. } => "enrolled",
            Message::Renew { .. } => "renew",
            Message::Renewed { .. } => "renewed",
            Message::ListAgents {} => "list_agents",
            Message::Agents { .. } => "agents",
            Message::SelectAgents { .. } => "select_agents",
            Message::FleetSummary(_) => "fleet_summary",
            Message::Run { .. } => "run",
            Message::TicketNew { .. } => "ticket_new",
            Message::Ticket { .. } => "ticket",
            Message::ListTickets { .. } => "list_tickets",
            Message::TicketShow { .. } => "ticket_show",
            Message::TicketDetail { .. } => "ticket_detail",
            Message::TicketEntries { .. } => "ticket_entries",
            Message::TicketUpdate { .. } => "ticket_update",
            Message::Watch {} => "watch",
            Message::Notice(_) => "notice",
            Message::Events { .. } => "events",
            Message::Ack { .. } => "ack",
            Message::Tickets { .. } => "tickets",
            Message::Fix { .. } => "fix",
            Message::Runbook { .. } => "runbook",
            Message::Bulk { .. } => "bulk",
            Message::BulkStarted { .. } => "bulk_started",
            Message::BulkItem(_) => "bulk_item",
            Message::Queued(_) => "queued",
            Message::ListQueue { .. } => "list_queue",
            Message::QueuedActions { .. } => "queued_actions",
            Message::QueueCancel { .. } => "queue_cancel",
            Message::Report { .. } => "report",
            Message::SupportReport(_) => "support_report",
            Message::KbSearch { .. } => "kb_search",
            Message::KbHits { .. } => "kb_hits",
            Message::KbShow { .. } => "kb_show",
            Message::KbArticle(_) => "kb_article",
            Message::ListRunbooks { .. } => "list_runbooks",
            Message::Runbooks { .. } => "runbooks",
            Message::ListAudit { .. } => "list_audit",
            Message::Audit { .. } => "audit",
            Message::ListMonitorStatus { .. } => "list_monitor_status",
            Message::MonitorStatuses { .. } => "monitor_statuses",
            Message::WhoAmI {} => "who_am_i",
            Message::Operator { .. } => "operator",
            Message::AuditVerify {} => "audit_verify",
            Message::AuditVerified(_) => "audit_verified",
            Message::ListTokens {} => "list_tokens",
            Message::Tokens { .. } => "tokens",
            Message::TokenCreate { .. } => "token_create",
            Message::TokenCreated { .. } => "token_created",
            Message::TokenRevoke { .. } => "token_revoke",
            Message::TokenRevoked { .. } => "token_revoked",
            Message::ListOperators {} => "list_operators",
            Message::Operators { .. } => "operators",
            Message::OperatorRole { .. } => "operator_role",
            Message::OperatorUpdated { .. } => "operator_updated",
            Message::ListAgentRecords {} => "list_agent_records",
            Message::AgentRecords { .. } => "agent_records",
            Message::AgentRemove { .. } => "agent_remove",
            Message::AgentRemoved { .. } => "agent_removed",
            Message::AgentTag { .. } => "agent_tag",
            Message::AgentTagged { .. } => "agent_tagged",
            Message::MonitorsSet { .. } => "monitors_set",
            Message::MonitorSet(_) => "monitor_set",
            Message::MonitorsRemove { .. } => "monitors_remove",
            Message::MonitorsShow {} => "monitors_show",
            Message::MonitorSets { .. } => "monitor_sets",
            Message::AgentMonitors { .. } => "agent_monitors",
            Message::CentralMonitors { .. } => "central_monitors",
            Message::CentralMonitorsReport(_) => "central_monitors_report",
            Message::Facts(_) => "facts",
            Message::HelpTickets { .. } => "help_tickets",
            Message::HelpTicketsList { .. } => "help_tickets_list",
            Message::Exec { .. } => "exec",
            Message::ExecFix { .. } => "exec_fix",
            Message::ExecRunbook { .. } => "exec_runbook",
            Message::ExecListRunbooks {} => "exec_list_runbooks",
            Message::ListChecks { .. } => "list_checks",
            Message::ExecListChecks {} => "exec_list_checks",
            Message::Checks { .. } => "checks",
            Message::Verdict(_) => "verdict",
            Message::Progress { .. } => "progress",
            Message::Result { .. } => "result",
            Message::Done {} => "done",
            Message::Error { .. } => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_flat_and_tagged() {
        let e = Envelope::new(Message::Exec {
            check: "disk".into(),
            args: vec!["/".into()],
            role: Role::Viewer,
        });
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(
            s,
            r#"{"v":1,"type":"exec","check":"disk","args":["/"],"role":"viewer"}"#
        );
        let back: Envelope = serde_json::from_str(&s).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn unknown_error_code_from_newer_peer() {
        let s = r#"{"v":1,"type":"error","code":"quota_exceeded","message":"x"}"#;
        let e: Envelope = serde_json::from_str(s).unwrap();
        assert_eq!(e.msg, Message::error(ErrorCode::Other, "x"));
    }

    #[test]
    fn ticket_update_is_flat() {
        let e = Envelope::new(Message::TicketUpdate {
            id: 3,
            change: TicketChange::Assign {
                operator: "alice".into(),
            },
        });
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(
            s,
            r#"{"v":1,"type":"ticket_update","id":3,"change":"assign","operator":"alice"}"#
        );
        assert_eq!(serde_json::from_str::<Envelope>(&s).unwrap(), e);
    }

    #[test]
    fn new_fields_are_optional_for_older_consoles() {
        let old = r#"{"v":1,"type":"list_tickets","status":"open"}"#;
        let e: Envelope = serde_json::from_str(old).unwrap();
        assert!(matches!(
            e.msg,
            Message::ListTickets {
                ref status,
                search: None,
                since_secs: None,
                ..
            } if status.as_deref() == Some("open")
        ));
        let old = r#"{"v":1,"type":"ticket_new","title":"t"}"#;
        let e: Envelope = serde_json::from_str(old).unwrap();
        assert!(matches!(e.msg, Message::TicketNew { priority: None, .. }));
        let s = serde_json::to_string(&Envelope::new(Message::TicketUpdate {
            id: 1,
            change: TicketChange::Priority {
                priority: "urgent".into(),
            },
        }))
        .unwrap();
        assert_eq!(
            s,
            r#"{"v":1,"type":"ticket_update","id":1,"change":"priority","priority":"urgent"}"#
        );
        let s = serde_json::to_string(&Envelope::new(Message::OperatorRole {
            name: "bob".into(),
            role: Role::Viewer,
        }))
        .unwrap();
        assert_eq!(
            s,
            r#"{"v":1,"type":"operator_role","name":"bob","role":"viewer"}"#
        );
    }

    #[test]
    fn fleet_fields_are_optional_both_ways() {
        // An agent row of an older relay: no tags, facts or health.
        let old = r#"{"v":1,"type":"agents","agents":[{"name":"pc1","online":true,"last_seen":null,"version":null,"os":null,"hostname":null}]}"#;
        let Message::Agents { agents } = serde_json::from_str::<Envelope>(old).unwrap().msg else {
            panic!("agents")
        };
        assert_eq!(agents[0].health, Status::Unknown);
        assert!(agents[0].tags.is_empty() && agents[0].facts == Facts::default());
        assert_eq!((agents[0].open_incidents, agents[0].open_tickets), (0, 0));
        // What an older console sends still parses.
        let old = r#"{"v":1,"type":"token_create","uses":2}"#;
        let e: Envelope = serde_json::from_str(old).unwrap();
        assert!(matches!(e.msg, Message::TokenCreate { ref tags, .. } if tags.is_empty()));
        let e: Envelope = serde_json::from_str(r#"{"v":1,"type":"select_agents"}"#).unwrap();
        assert_eq!(e.msg, Message::SelectAgents { select: None });
        // Facts travel flat, the relay's time left out by agents.
        let facts = Facts {
            kernel: Some("6.1.0-18-amd64".into()),
            addresses: vec!["192.0.2.7/24".into()],
            uptime_secs: Some(3600),
            reported_at: None,
        };
        let s = serde_json::to_string(&Envelope::new(Message::Facts(facts.clone()))).unwrap();
        assert_eq!(
            s,
            r#"{"v":1,"type":"facts","kernel":"6.1.0-18-amd64","addresses":["192.0.2.7/24"],"uptime_secs":3600}"#
        );
        let back: Envelope = serde_json::from_str(&s).unwrap();
        assert_eq!(back.msg, Message::Facts(facts));
        let s = serde_json::to_string(&Envelope::new(Message::FleetSummary(FleetSummary {
            machines: 2,
            ..Default::default()
        })))
        .unwrap();
        assert!(
            s.starts_with(r#"{"v":1,"type":"fleet_summary","machines":2,"#),
            "{s}"
        );
    }

    #[test]
    fn monitor_statuses_are_flat() {
        let e = Envelope::new(Message::MonitorStatuses {
            agent: "pc1".into(),
            monitors: vec![MonitorStatusInfo {
                monitor: "disk /".into(),
                status: Status::Warn,
                summary: "81% used".into(),
                at: "2026-01-01T00:00:00Z".into(),
            }],
        });
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(
            s,
            r#"{"v":1,"type":"monitor_statuses","agent":"pc1","monitors":[{"monitor":"disk /","status":"warn","summary":"81% used","at":"2026-01-01T00:00:00Z"}]}"#
        );
        assert_eq!(serde_json::from_str::<Envelope>(&s).unwrap(), e);
        let ask = r#"{"v":1,"type":"list_monitor_status","agent":"pc1"}"#;
        let e: Envelope = serde_json::from_str(ask).unwrap();
        assert_eq!(
            e.msg,
            Message::ListMonitorStatus {
                agent: "pc1".into()
            }
        );
    }

    #[test]
    fn fleet_summary_counts() {
        let agent = |online, health, incidents| AgentInfo {
            name: "a".into(),
            online,
            last_seen: None,
            version: None,
            os: None,
            hostname: None,
            revoked: false,
            tags: vec![],
            facts: Facts::default(),
            health,
            open_incidents: incidents,
            open_tickets: 1,
        };
        let s = FleetSummary::of(&[
            agent(true, Status::Ok, 0),
            agent(true, Status::Crit, 2),
            agent(false, Status::Unknown, 0),
        ]);
        assert_eq!(
            s,
            FleetSummary {
                machines: 3,
                online: 2,
                ok: 1,
                warn: 0,
                crit: 1,
                unknown: 1,
                open_incidents: 2,
                open_tickets: 3,
            }
        );
    }

    #[test]
    fn role_order_and_parse() {
        assert!(Role::Admin > Role::Technician && Role::Technician > Role::Viewer);
        assert_eq!("technician".parse::<Role>().unwrap(), Role::Technician);
        assert!("root".parse::<Role>().unwrap_err().contains("unknown role"));
    }
}
