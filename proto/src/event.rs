//! Monitoring events: what an agent's scheduler produces and its durable
//! outbox delivers to the relay, at least once, in sequence order.
//!
//! Sequence numbers are per agent and only grow, so the relay ingests
//! idempotently by (agent, seq). Plain results may be dropped by a full
//! outbox; incident events never are.

use crate::result::{CheckResult, Status};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A scheduled result outside of any state change.
    Result,
    /// N consecutive non-ok results: an incident starts.
    IncidentOpened,
    /// The incident's status changed (warn → crit, crit → warn…).
    IncidentUpdated,
    /// M consecutive ok results: the incident is over.
    IncidentResolved,
    /// The person at the machine asked for help (`firstline-help ask`):
    /// the relay opens a ticket of source `user` ([`AgentEvent::help`]).
    HelpRequest,
}

impl EventKind {
    /// Whether a full outbox may drop this event.
    pub fn droppable(self) -> bool {
        self == EventKind::Result
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Result => "result",
            EventKind::IncidentOpened => "incident_opened",
            EventKind::IncidentUpdated => "incident_updated",
            EventKind::IncidentResolved => "incident_resolved",
            EventKind::HelpRequest => "help_request",
        }
    }
}

/// One event of an agent's outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEvent {
    /// Per-agent sequence number, strictly increasing.
    pub seq: u64,
    /// Stable id of the monitor (`disk /var --warn 80`, or its configured name).
    pub monitor: String,
    pub kind: EventKind,
    /// Whether the monitor is inside an incident after this event.
    pub in_incident: bool,
    pub result: CheckResult,
    /// Gathered when an incident opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Diagnostics>,
    /// What the person asked, for a `help_request` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<HelpRequest>,
}

/// Longest text of a `firstline-help ask`, in bytes.
pub const HELP_TEXT: usize = 4 * 1024;
/// Longest local user name carried in a help request.
pub const HELP_USER: usize = 64;
/// Most steps of the evidence a help request carries.
pub const HELP_STEPS: usize = 64;

/// A request for help from the person at the machine (`firstline-help
/// ask`): who (the local account the agent read from the socket's peer
/// credentials, never what the client said), what they wrote, and — with
/// `--after NAME` — the verdict of the self-service runbook they had just
/// run, with its steps: the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelpRequest {
    pub user: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<crate::runbook::Verdict>,
}

/// One of a user's tickets as `firstline-help tickets` shows it: the
/// ticket and the technicians' public replies (its comments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelpTicket {
    pub ticket: crate::message::TicketSummary,
    #[serde(default)]
    pub replies: Vec<crate::message::TicketEntry>,
}

/// The state of the machine at the moment a failure became an incident.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Diagnostics {
    pub top_cpu: Vec<ProcessInfo>,
    pub top_memory: Vec<ProcessInfo>,
    pub disks: Vec<DiskInfo>,
    pub default_route: Option<String>,
    pub dns_servers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub name: String,
    /// f64, not f32: a value out of f32's range would decode to infinity,
    /// which JSON cannot carry back (found by the fuzz target `payload`).
    pub cpu_pct: f64,
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskInfo {
    pub mount: String,
    pub used_pct: f64,
    pub free_bytes: u64,
}

impl AgentEvent {
    /// This event cut to the sizes of [`crate::limits`] (what the relay
    /// stores, whatever an agent sent): the monitor id, the result's
    /// fields, and the diagnostic bundle's lists.
    pub fn bounded(mut self) -> Self {
        if self.monitor.len() > crate::limits::MONITOR_ID {
            self.monitor =
                crate::text::truncate(&self.monitor, crate::limits::MONITOR_ID).into_owned();
        }
        self.result = self.result.bounded();
        if let Some(d) = &mut self.diagnostics {
            d.top_cpu.truncate(20);
            d.top_memory.truncate(20);
            d.disks.truncate(64);
            d.dns_servers.truncate(16);
            for p in d.top_cpu.iter_mut().chain(d.top_memory.iter_mut()) {
                p.name = crate::text::truncate(&p.name, 128).into_owned();
            }
            for disk in &mut d.disks {
                disk.mount = crate::text::truncate(&disk.mount, 512).into_owned();
            }
            for s in &mut d.dns_servers {
                *s = crate::text::truncate(s, 128).into_owned();
            }
            if let Some(r) = &mut d.default_route {
                *r = crate::text::truncate(r, 128).into_owned();
            }
        }
        if let Some(h) = &mut self.help {
            h.user = crate::text::truncate(&h.user, HELP_USER).into_owned();
            h.text = crate::text::truncate(&h.text, HELP_TEXT).into_owned();
            if let Some(mut v) = h.after.take() {
                v.steps.truncate(HELP_STEPS);
                h.after = Some(v.bounded());
            }
        }
        self
    }
}

/// Ticket priority from an incident's severity.
pub fn priority_of(status: Status) -> &'static str {
    match status {
        Status::Crit => "high",
        Status::Warn | Status::Unknown => "normal",
        Status::Ok => "low",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_help_requests_verdict_is_cut_in_every_field() {
        use crate::runbook::{StepRecord, Verdict, VerdictKind};
        let big = "v".repeat(5_000);
        let step = StepRecord {
            id: big.clone(),
            action: big.clone(),
            args: vec![big.clone(); 40],
            result: Some(CheckResult::new("dns", &big, Status::Crit, &big)),
            skipped: Some(big.clone()),
        };
        let verdict = Verdict {
            runbook: big.clone(),
            agent: big.clone(),
            verdict: VerdictKind::Escalate,
            cause: big.clone(),
            team: big.clone(),
            message: big.clone(),
            user_message: big.clone(),
            kb: Some(big.clone()),
            params: vec![big.clone(); 40],
            dry_run: false,
            steps: vec![step; 100],
        };
        let event = AgentEvent {
            seq: 1,
            monitor: big.clone(),
            kind: EventKind::HelpRequest,
            in_incident: false,
            result: CheckResult::new("help", &big, Status::Warn, &big),
            diagnostics: None,
            help: Some(HelpRequest {
                user: big.clone(),
                text: big.clone(),
                after: Some(verdict),
            }),
        };
        let whole = serde_json::to_vec(&event).unwrap().len();
        let cut = serde_json::to_vec(&event.bounded()).unwrap().len();
        assert!(whole > 10_000_000, "{whole}");
        // The steps within their budget, a few fields of 4 KiB, the
        // event's own result: some 200 KB at most.
        assert!(cut < 250_000, "a help request is stored as {cut} bytes");
    }

    #[test]
    fn only_plain_results_are_droppable() {
        assert!(EventKind::Result.droppable());
        for k in [
            EventKind::IncidentOpened,
            EventKind::IncidentUpdated,
            EventKind::IncidentResolved,
            EventKind::HelpRequest,
        ] {
            assert!(!k.droppable());
        }
    }
}
