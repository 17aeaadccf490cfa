//! The storage primitives: what each backend implements, in SQL of its own
//! dialect, on its own transaction type. They do one thing each and hold no
//! rule; the rules (`super::tickets`, `super::incidents`, `super::audit`,
//! `super::identity`, `super::webhooks`) are written once on top of
//! `&mut dyn Tx` and run inside one transaction per use case.
//!
//! **What a backend must guarantee**, so that several relays can share one
//! database:
//! * every method runs inside the transaction the [`Tx`] stands for;
//! * [`Tx::spend_token`] is one conditional update (no read-then-write);
//! * [`Tx::lock_last_seq`] locks the agent's row until the transaction ends
//!   (PostgreSQL: `SELECT … FOR UPDATE`; SQLite: its write transactions are
//!   serialized already, `BEGIN IMMEDIATE`);
//! * [`Tx::lock_audit`] serializes audit appends across relays (PostgreSQL:
//!   the one row of `audit_head`, `FOR UPDATE`; SQLite: nothing to do);
//! * [`Tx::claim_webhooks`] hands a delivery to one claimer only (a lease in
//!   `claimed_until`; PostgreSQL adds `FOR UPDATE SKIP LOCKED`);
//! * [`Tx::insert_revocation`] numbers revocations in commit order, so a
//!   relay polling [`Tx::revocations_since`] its last seen `seq` skips none
//!   (PostgreSQL: numbered under an advisory lock held to the commit;
//!   SQLite: one writer);
//! * [`Tx::claim_queued`] and [`Tx::expire_queued`] hand a queued action
//!   to one caller only: one conditional update on `state = 'pending'`
//!   (PostgreSQL adds `FOR UPDATE SKIP LOCKED`);
//! * a lost race surfaces as [`super::StoreError::Retry`], and the store
//!   runs the whole use case again.
//!
//! Times are Unix seconds, always passed in (`now`): no backend reads a
//! clock.

use super::error::StoreResult;
use crate::ticket::{NewTicket, Priority, Ticket, TicketFilter, TicketStatus};
use firstline_proto::message::{AgentRecord, OperatorInfo};
use firstline_proto::{AgentInfo, AuditRecord, Facts, Role, Status, TicketEntry};

/// Who a certificate, a revocation or an identity is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKind {
    Agent,
    Operator,
    /// The relay's own server certificate.
    Relay,
}

impl PeerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::Agent => "agent",
            PeerKind::Operator => "operator",
            PeerKind::Relay => "relay",
        }
    }

    /// From the text stored in `certs.kind` and `revocations.kind`.
    pub fn parse(s: &str) -> Option<PeerKind> {
        match s {
            "agent" => Some(PeerKind::Agent),
            "operator" => Some(PeerKind::Operator),
            "relay" => Some(PeerKind::Relay),
            _ => None,
        }
    }
}

impl std::fmt::Display for PeerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row of `monitor_status`: a monitor's latest result of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorStatusRow {
    pub monitor: String,
    pub status: String,
    pub summary: String,
    /// Unix seconds it was stored.
    pub at: i64,
}

/// A row of `tokens`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub secret_sha256: String,
    /// Enrollments it was made for (`None`: made by an older relay).
    pub uses: Option<i64>,
    pub uses_left: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// An agent's record, as far as enrollment cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentState {
    pub revoked_at: Option<i64>,
    pub removed_at: Option<i64>,
}

/// A certificate on record and the state of its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    pub kind: String,
    pub name: String,
    pub revoked_at: Option<i64>,
    /// `None`: no such identity (an agent removed, a relay certificate);
    /// else the identity's `revoked_at`.
    pub identity: Option<Option<i64>>,
}

/// One recorded revocation, in the order they were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub seq: i64,
    pub kind: String,
    pub name: String,
}

/// What an agent says of itself at each connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub version: String,
    pub os: String,
    pub hostname: String,
}

/// What a listing of agents asks of the database: every pattern and tag
/// must hold (empty lists: no condition). The patterns are globs (`*` any
/// run, `?` one character; [`firstline_proto::select::Glob`]) each backend
/// turns into its own SQL; a backend may let through more than they say —
/// never less —, as the caller checks every agent again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFilter {
    /// Globs on the name, case as it is.
    pub names: Vec<String>,
    /// Globs on the OS line, ASCII lowercase, matched against the OS line
    /// in ASCII lowercase.
    pub oses: Vec<String>,
    /// Tags it must carry, each.
    pub tags: Vec<String>,
}

/// The columns of a listed agent beyond those of its record, as a backend
/// reads them ([`Tx::select_agents`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    pub kernel: Option<String>,
    /// A JSON array of strings.
    pub addresses: Option<String>,
    pub uptime_secs: Option<i64>,
    /// When the facts were stored.
    pub reported_at: Option<i64>,
    /// Tags joined by commas (no tag holds one), in any order.
    pub tags: Option<String>,
    /// The highest [`firstline_proto::select::health_rank`] of its
    /// monitors' statuses; `None`: no monitor.
    pub health: Option<i64>,
    pub open_incidents: i64,
    pub open_tickets: i64,
}

impl Listed {
    /// `a` with these columns.
    pub fn into_agent(self, mut a: AgentInfo) -> AgentInfo {
        let mut tags: Vec<String> = self
            .tags
            .unwrap_or_default()
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        tags.sort();
        a.tags = tags;
        a.facts = Facts {
            kernel: self.kernel,
            addresses: self
                .addresses
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default(),
            uptime_secs: self.uptime_secs.map(|u| u.max(0) as u64),
            reported_at: self.reported_at.map(crate::clock::rfc3339),
        };
        a.health = self.health.map_or(Status::Unknown, |r| {
            firstline_proto::select::health_of_rank(r.clamp(0, 3) as u8)
        });
        a.open_incidents = self.open_incidents.max(0) as u64;
        a.open_tickets = self.open_tickets.max(0) as u64;
        a
    }
}

/// A row of `monitor_sets` (`super::monitors`): a central monitor set.
/// `selector` in canonical form; `monitors` its
/// [`firstline_proto::central::MonitorSpec`]s as JSON; `role` the wire
/// name of its author's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorSetRow {
    pub name: String,
    pub selector: String,
    pub toml: String,
    pub monitors: String,
    pub role: String,
    pub updated_by: String,
    pub updated_at: i64,
    /// Why the set is not sent (its author was revoked or demoted), until
    /// an admin sets it again; `None`: in force.
    pub suspended: Option<String>,
}

/// A row of `monitor_reports`: an agent's last answer to its central
/// monitors (`report`: a [`firstline_proto::central::CentralReport`] as
/// JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorReportRow {
    pub agent: String,
    pub digest: String,
    pub report: String,
    pub at: i64,
}

/// The hashed fields of an audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub who: String,
    pub role: Option<String>,
    pub agent: Option<String>,
    pub action: String,
    pub args: String,
    pub outcome: String,
}

/// An audit row as stored, with its links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAudit {
    pub row: AuditRow,
    pub prev_hash: String,
    pub hash: String,
}

/// A queued webhook delivery, claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub event_id: String,
    pub body: String,
    /// Failed attempts so far.
    pub attempts: i64,
}

/// A row of `queued_actions` (`super::queue`): an action kept for an
/// offline agent. `action` is the [`firstline_proto::action::Action`] as
/// JSON; `role` and `state` their wire names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRow {
    pub id: i64,
    pub agent: String,
    pub action: String,
    pub ticket: Option<i64>,
    pub operator: String,
    pub role: String,
    pub queued_at: i64,
    pub expires_at: i64,
    pub state: String,
    pub ended_at: Option<i64>,
    pub outcome: Option<String>,
    /// The enrollment of the agent it was queued for
    /// ([`Tx::agent_enrollment`]): only that enrollment gets it.
    pub enrollment: Option<String>,
}

/// One timeline entry of [`Tx::timelines_since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineRow {
    pub ticket: u64,
    /// Unix seconds the relay stored it.
    pub at: i64,
    pub kind: String,
    pub author: String,
    pub body: Option<String>,
}

/// The storage primitives of one transaction. See the module's doc for
/// what each backend guarantees.
pub trait Tx {
    // ---- enrollment tokens ----
    fn insert_token(&mut self, t: &TokenRow) -> StoreResult<()>;
    fn token(&mut self, id: &str) -> StoreResult<Option<TokenRow>>;
    /// Every token, oldest first.
    fn tokens(&mut self) -> StoreResult<Vec<TokenRow>>;
    /// Set `revoked_at` unless set; whether this call set it.
    fn revoke_token(&mut self, id: &str, now: i64) -> StoreResult<bool>;
    /// Take one use of a live token in one conditional update: `uses_left >
    /// 0`, not revoked, `expires_at > now`. False when it could not.
    fn spend_token(&mut self, id: &str, now: i64) -> StoreResult<bool>;

    // ---- certificates, identities, revocations ----
    fn insert_cert(
        &mut self,
        serial: &str,
        kind: PeerKind,
        name: &str,
        not_after: i64,
        now: i64,
    ) -> StoreResult<()>;
    fn cert(&mut self, serial: &str) -> StoreResult<Option<CertRow>>;
    /// Revoke every live certificate of `kind` `name`.
    fn revoke_certs(&mut self, kind: PeerKind, name: &str, now: i64) -> StoreResult<()>;
    /// Mark an agent or operator revoked unless it is; whether this call did.
    fn revoke_identity(&mut self, kind: PeerKind, name: &str, now: i64) -> StoreResult<bool>;
    /// Whether an agent (removed or not) or operator of that name is on record.
    fn identity_exists(&mut self, kind: PeerKind, name: &str) -> StoreResult<bool>;
    fn insert_revocation(&mut self, kind: PeerKind, name: &str, now: i64) -> StoreResult<()>;
    fn revocations_since(&mut self, seq: i64) -> StoreResult<Vec<Revocation>>;

    // ---- agents ----
    fn agent_state(&mut self, name: &str) -> StoreResult<Option<AgentState>>;
    /// The state of the agent whose name is `name` without regard to case
    /// (`PC-A` finds `pc-a`): whether a name is free to enroll.
    fn agent_state_any_case(&mut self, name: &str) -> StoreResult<Option<(String, AgentState)>>;
    /// Insert an agent of a new `enrollment` (an id no other enrollment
    /// had); false when the name is taken (in any case).
    fn insert_agent(&mut self, name: &str, enrollment: &str, now: i64) -> StoreResult<bool>;
    /// The enrollment of the live (neither revoked nor removed) agent
    /// `name`: it changes when the name is removed and enrolled again, not
    /// when its certificate is renewed.
    fn agent_enrollment(&mut self, name: &str) -> StoreResult<Option<String>>;
    fn agent_seen(&mut self, name: &str, p: &Presence, now: i64) -> StoreResult<()>;
    fn agent_left(&mut self, name: &str, now: i64) -> StoreResult<()>;
    /// One agent not removed (`online` false: the caller knows).
    fn agent(&mut self, name: &str) -> StoreResult<Option<AgentInfo>>;
    /// Every agent not removed, by name.
    fn agents(&mut self) -> StoreResult<Vec<AgentInfo>>;
    fn agent_record(&mut self, name: &str) -> StoreResult<Option<AgentRecord>>;
    fn agent_records(&mut self) -> StoreResult<Vec<AgentRecord>>;
    /// The first `limit` agents not removed, by name (never all of them:
    /// a message naming some costs the same in any fleet).
    fn agent_names(&mut self, limit: u32) -> StoreResult<Vec<String>>;
    /// Enrolled (even revoked or removed) or named by a ticket.
    fn agent_known(&mut self, name: &str) -> StoreResult<bool>;
    /// Delete an agent's record, with its tags and facts.
    fn delete_agent(&mut self, name: &str) -> StoreResult<()>;
    fn mark_agent_removed(&mut self, name: &str, now: i64) -> StoreResult<()>;
    /// The agent's highest ingested event sequence, its row locked until
    /// the transaction ends; `None` when there is no such agent.
    fn lock_last_seq(&mut self, agent: &str) -> StoreResult<Option<i64>>;
    fn set_last_seq(&mut self, agent: &str, seq: i64) -> StoreResult<()>;
    fn record_monitor_status(
        &mut self,
        agent: &str,
        monitor: &str,
        status: &str,
        summary: &str,
        now: i64,
    ) -> StoreResult<()>;
    /// `(status, summary)` of a monitor's latest result.
    fn monitor_status(
        &mut self,
        agent: &str,
        monitor: &str,
    ) -> StoreResult<Option<(String, String)>>;
    fn delete_monitor_status(&mut self, agent: &str) -> StoreResult<()>;
    /// Every monitor of an agent with its latest `(status, summary, at)`,
    /// by monitor id.
    fn monitor_statuses(&mut self, agent: &str) -> StoreResult<Vec<MonitorStatusRow>>;

    // ---- tags, facts, listings ----
    /// Give a token tags (once, as it is created).
    fn insert_token_tags(&mut self, token: &str, tags: &[String]) -> StoreResult<()>;
    /// A token's tags, sorted.
    fn token_tags(&mut self, token: &str) -> StoreResult<Vec<String>>;
    /// An agent's tags, sorted.
    fn agent_tags(&mut self, agent: &str) -> StoreResult<Vec<String>>;
    /// Add tags to an agent (those it has stay, once).
    fn add_agent_tags(&mut self, agent: &str, tags: &[String]) -> StoreResult<()>;
    /// Take tags off an agent (those it has not: nothing).
    fn remove_agent_tags(&mut self, agent: &str, tags: &[String]) -> StoreResult<()>;
    /// Record what an agent reported of its machine (its `reported_at`
    /// ignored: `now` is stored).
    fn set_agent_facts(&mut self, agent: &str, facts: &Facts, now: i64) -> StoreResult<()>;
    /// The agents (not removed) `filter` lets through, by name, each with
    /// its tags, facts (`reported_at` the time stored), health (the worst
    /// latest status of its monitors in the order of
    /// [`firstline_proto::select::health_rank`]; `unknown` when none) and
    /// open tickets: alert ones (`open_incidents`) and the others, open or
    /// in progress. `online` false: the caller knows.
    fn select_agents(&mut self, filter: &AgentFilter) -> StoreResult<Vec<AgentInfo>>;

    // ---- central monitors ----
    /// One set, its row locked until the transaction ends (in a write
    /// transaction).
    fn monitor_set(&mut self, name: &str) -> StoreResult<Option<MonitorSetRow>>;
    /// Every set, by name.
    fn monitor_sets(&mut self) -> StoreResult<Vec<MonitorSetRow>>;
    /// Insert the set, or replace the one of its name.
    fn put_monitor_set(&mut self, row: &MonitorSetRow) -> StoreResult<()>;
    /// Delete a set; whether there was one.
    fn delete_monitor_set(&mut self, name: &str) -> StoreResult<bool>;
    /// Suspend every set `author` set that is in force, saying `why`: the
    /// names of those this call suspended.
    fn suspend_monitor_sets(&mut self, author: &str, why: &str) -> StoreResult<Vec<String>>;
    /// Insert an agent's report, or replace its last one.
    fn put_monitor_report(&mut self, row: &MonitorReportRow) -> StoreResult<()>;
    /// Every agent's last report, by agent.
    fn monitor_reports(&mut self) -> StoreResult<Vec<MonitorReportRow>>;

    // ---- operators ----
    /// Insert an operator; false when the name is taken.
    fn insert_operator(&mut self, name: &str, role: Role, now: i64) -> StoreResult<bool>;
    fn operator(&mut self, name: &str) -> StoreResult<Option<OperatorInfo>>;
    fn operators(&mut self) -> StoreResult<Vec<OperatorInfo>>;
    fn set_operator_role(&mut self, name: &str, role: Role) -> StoreResult<bool>;

    // ---- tickets ----
    /// Insert an open ticket; its id.
    fn insert_ticket(&mut self, t: &NewTicket, now: i64) -> StoreResult<u64>;
    /// Append a timeline entry and touch `updated_at`; the entry's id, or
    /// `None` when there is no such ticket.
    fn insert_entry(
        &mut self,
        id: u64,
        kind: &str,
        author: &str,
        body: &str,
        observed_at: Option<i64>,
        now: i64,
    ) -> StoreResult<Option<i64>>;
    /// Set the status (and `resolved_at` when resolving); false if no ticket.
    fn update_status(&mut self, id: u64, status: TicketStatus, now: i64) -> StoreResult<bool>;
    fn update_assignee(&mut self, id: u64, operator: &str) -> StoreResult<bool>;
    fn update_priority(&mut self, id: u64, priority: Priority) -> StoreResult<bool>;
    fn ticket(&mut self, id: u64) -> StoreResult<Option<Ticket>>;
    /// The tickets matching every filter given, by id.
    fn tickets(&mut self, filter: &TicketFilter) -> StoreResult<Vec<Ticket>>;
    /// A ticket's timeline, oldest first.
    fn entries(&mut self, id: u64) -> StoreResult<Vec<TicketEntry>>;
    /// The most recent alert ticket of a monitor.
    fn latest_alert_ticket(&mut self, agent: &str, monitor: &str) -> StoreResult<Option<Ticket>>;
    fn count_tickets(&mut self, agent: &str) -> StoreResult<u64>;
    /// The timeline entries of the tickets opened at or after `since`, by
    /// ticket then entry id (for `super::report`). `body` is given only
    /// where the rules read it — `verdict` and `status` entries, and
    /// `result` entries whose body contains `"changed":` (a fix's may) —
    /// and `None` elsewhere, so a month of monitor results stays cheap.
    fn timelines_since(&mut self, since: i64) -> StoreResult<Vec<TimelineRow>>;
    /// How many tickets there are of each status (those that have any).
    fn count_by_status(&mut self) -> StoreResult<Vec<(String, u64)>>;

    // ---- audit ----
    /// Serialize audit appends until the transaction ends.
    fn lock_audit(&mut self) -> StoreResult<()>;
    /// The newest entry's `(id, hash)`.
    fn audit_head(&mut self) -> StoreResult<Option<(i64, String)>>;
    fn insert_audit(&mut self, row: &AuditRow, prev_hash: &str, hash: &str) -> StoreResult<()>;
    /// Entries oldest first, optionally of one agent, the newest `limit`.
    fn audit_records(
        &mut self,
        agent: Option<&str>,
        limit: Option<u32>,
    ) -> StoreResult<Vec<AuditRecord>>;
    /// Every entry with its links, by id (for `audit verify`).
    fn audit_chain(&mut self) -> StoreResult<Vec<StoredAudit>>;
    /// The entries with an id of at least `from`, by id (the tail checked
    /// before an append).
    fn audit_from(&mut self, from: i64) -> StoreResult<Vec<StoredAudit>>;

    // ---- webhook outbox ----
    /// Queue a delivery once per `event_id` (a second enqueue is a no-op).
    fn enqueue_webhook(&mut self, event_id: &str, body: &str, now: i64) -> StoreResult<()>;
    /// Up to `limit` deliveries due at `now` and not claimed by anyone
    /// else, oldest first, claimed until `lease_until`.
    fn claim_webhooks(
        &mut self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>>;
    fn delete_webhook(&mut self, id: i64) -> StoreResult<()>;
    /// A failed attempt: one more, due again at `next_at`, claim released.
    fn retry_webhook(&mut self, id: i64, next_at: i64) -> StoreResult<()>;
    /// Deliveries queued (for tests and metrics).
    fn webhook_backlog(&mut self) -> StoreResult<u64>;

    // ---- actions queued for offline agents ----
    /// Insert a queued action (its `id` ignored): its id.
    fn insert_queued(&mut self, row: &QueueRow) -> StoreResult<i64>;
    /// One queued action, its row locked until the transaction ends (in a
    /// write transaction).
    fn queued(&mut self, id: i64) -> StoreResult<Option<QueueRow>>;
    /// Pending ones by id, then (`all`) the newest `limit` others, newest
    /// first.
    fn queued_list(&mut self, all: bool, limit: u32) -> StoreResult<Vec<QueueRow>>;
    /// How many of `agent`'s are pending.
    fn count_pending(&mut self, agent: &str) -> StoreResult<u64>;
    /// The agents with an action pending, by name.
    fn pending_agents(&mut self) -> StoreResult<Vec<String>>;
    /// Mark up to `limit` of `agent`'s pending ones not expired at `now`
    /// `delivered` (`ended_at` = `now`) in one conditional update, and
    /// return them by id: each is claimed by one caller only (PostgreSQL:
    /// row locks, `SKIP LOCKED`, `state = 'pending'` checked again).
    /// Only those queued for the agent's current enrollment
    /// ([`Tx::agent_enrollment`]) are claimed.
    fn claim_queued(&mut self, agent: &str, now: i64, limit: u32) -> StoreResult<Vec<QueueRow>>;
    /// Mark every pending one of `agent` `cancelled` (`ended_at` = `now`)
    /// with `outcome`, and return them by id.
    fn cancel_queued_for(
        &mut self,
        agent: &str,
        outcome: &str,
        now: i64,
    ) -> StoreResult<Vec<QueueRow>>;
    /// Move a pending one to `state` (`ended_at` = `now`); false when it
    /// is not pending (or not there).
    fn end_queued(&mut self, id: i64, state: &str, now: i64) -> StoreResult<bool>;
    /// Record how a delivered one ended.
    fn set_queued_outcome(&mut self, id: i64, outcome: &str) -> StoreResult<()>;
    /// Mark up to `limit` pending ones with `expires_at <= now` `expired`
    /// and return them (claimed as [`Tx::claim_queued`] does).
    fn expire_queued(&mut self, now: i64, limit: u32) -> StoreResult<Vec<QueueRow>>;

    // ---- help desk mirror (`super::helpdesk`) ----

    /// Entry `entry_id` of ticket `ticket_id` is to be mirrored: the
    /// ticket's link made (due at `now`) or its `latest_entry` raised.
    fn enqueue_helpdesk(&mut self, ticket_id: u64, entry_id: i64, now: i64) -> StoreResult<()>;
    /// Up to `limit` links with entries not yet delivered, due at `now`
    /// and not claimed by anyone else, claimed until `lease_until` (one
    /// claimer only, as [`Tx::claim_webhooks`]).
    fn claim_helpdesk(
        &mut self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<HelpdeskLink>>;
    /// Record a claimed link's progress (`remote_id`, `delivered_entry`,
    /// `sending_entry`, `remote_status`) and renew the claim to `renew_until`,
    /// only while the claim `lease_until` is still the link's: false when
    /// it was lost.
    fn save_helpdesk(
        &mut self,
        link: &HelpdeskLink,
        lease_until: i64,
        renew_until: i64,
    ) -> StoreResult<bool>;
    /// End the claim `lease_until` of a link: due again at `next_at` with
    /// `attempts` failed attempts; false when the claim was lost.
    fn release_helpdesk(
        &mut self,
        ticket_id: u64,
        lease_until: i64,
        next_at: i64,
        attempts: i64,
    ) -> StoreResult<bool>;
    fn helpdesk_link(&mut self, ticket_id: u64) -> StoreResult<Option<HelpdeskLink>>;
    /// Links whose help desk ticket may be resolved there: created, every
    /// entry delivered, not claimed at `now`, not known resolved there, and
    /// the firstline ticket still open or in progress; by ticket id after
    /// `after`, at most `limit`.
    fn helpdesk_watched(
        &mut self,
        now: i64,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<HelpdeskLink>>;
    /// Mark a watched link's help desk ticket resolved, in one conditional
    /// update (the conditions of [`Tx::helpdesk_watched`] checked again):
    /// false when it no longer qualifies (another relay did it first).
    fn mark_helpdesk_resolved(&mut self, ticket_id: u64, now: i64) -> StoreResult<bool>;
    /// A ticket's entries with ids above `after`, with their ids, in order.
    fn entries_after(&mut self, ticket_id: u64, after: i64)
        -> StoreResult<Vec<(i64, TicketEntry)>>;
}

/// A firstline ticket's mirror in the external help desk (a row of
/// `helpdesk_links`, see `super::helpdesk`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpdeskLink {
    pub ticket_id: u64,
    /// The help desk's id of the ticket, once created there (or found).
    pub remote_id: Option<i64>,
    /// The highest timeline entry id queued for the help desk.
    pub latest_entry: i64,
    /// Every entry up to this id is in the help desk.
    pub delivered_entry: i64,
    /// The entry a sender was sending: it may or may not have arrived (the
    /// sender died), so it is looked for before it is sent again.
    pub sending_entry: Option<i64>,
    /// The help desk status last set (or found resolved) there.
    pub remote_status: Option<String>,
    /// Failed attempts in a row.
    pub attempts: i64,
}
