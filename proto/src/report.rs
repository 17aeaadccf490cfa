//! Support metrics as the relay computes them and `firstline report`
//! shows them (`report` → `support_report`): how the help desk is doing
//! over a window of time, from the tickets' own timelines. What each figure
//! means is defined once, in the relay's `store/report.rs`; these are the
//! numbers on the wire, kept flat so `--json` is easy to script against.

use serde::{Deserialize, Serialize};

/// Median and 90th percentile of a set of durations (nearest rank: the
/// value at rank ⌈p·n⌉ of the sorted values); `None` when there are none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durations {
    /// How many tickets the figures are over.
    pub count: u64,
    pub median_secs: Option<u64>,
    pub p90_secs: Option<u64>,
}

/// How many tickets (of a source, an age and priority, a cause and team).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCount {
    /// `alert`, `technician`, `user`… (whatever sources the relay has).
    pub source: String,
    pub count: u64,
}

/// Open and in-progress tickets of one age bucket and priority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BacklogCount {
    /// One of [`AGE_BUCKETS`].
    pub age: String,
    /// `low`, `normal`, `high`, `urgent`.
    pub priority: String,
    pub count: u64,
}

/// Escalations (runbook verdicts of kind `escalate`) of one cause to one
/// team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationCount {
    pub cause: String,
    pub team: String,
    pub count: u64,
}

/// The backlog's age buckets, youngest first: under an hour, a day, a
/// week, 30 days, and older.
pub const AGE_BUCKETS: &[&str] = &["<1h", "1h-1d", "1d-7d", "7d-30d", ">30d"];

/// The age bucket of a ticket opened `age_secs` ago.
pub fn age_bucket(age_secs: i64) -> &'static str {
    const HOUR: i64 = 3600;
    const DAY: i64 = 24 * HOUR;
    match age_secs {
        a if a < HOUR => AGE_BUCKETS[0],
        a if a < DAY => AGE_BUCKETS[1],
        a if a < 7 * DAY => AGE_BUCKETS[2],
        a if a < 30 * DAY => AGE_BUCKETS[3],
        _ => AGE_BUCKETS[4],
    }
}

/// The support report over the tickets opened in `[since, until]`; the
/// backlog is every ticket still open or in progress at `until`, whenever
/// it was opened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SupportReport {
    /// RFC 3339, by the relay's clock.
    pub since: String,
    pub until: String,
    /// Tickets opened in the window.
    pub opened: u64,
    /// Of them, by source (by name; only sources that have tickets).
    pub by_source: Vec<SourceCount>,
    /// Of them, those resolved or closed now.
    pub resolved: u64,
    /// Of the resolved, those resolved at first contact.
    pub first_contact: u64,
    /// `first_contact / resolved`; `None` when nothing was resolved.
    pub first_contact_rate: Option<f64>,
    /// Of the resolved, those no technician touched before they were.
    pub no_human: u64,
    /// Of those, resolved by the agent itself (a monitor that recovered).
    pub no_human_monitor: u64,
    /// Of those, resolved by someone who is no operator (self-service).
    pub no_human_self_service: u64,
    /// `no_human / resolved`; `None` when nothing was resolved.
    pub no_human_share: Option<f64>,
    /// From opening to the first response, over the tickets that had one.
    pub first_response: Durations,
    /// From opening to the resolution, over the resolved tickets.
    pub resolution: Durations,
    /// Open and in-progress tickets by age and priority (non-zero ones).
    pub backlog: Vec<BacklogCount>,
    /// Their total.
    pub backlog_total: u64,
    /// Escalations on the tickets opened in the window, most first.
    pub escalations: Vec<EscalationCount>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_buckets_edges() {
        assert_eq!(age_bucket(0), "<1h");
        assert_eq!(age_bucket(3599), "<1h");
        assert_eq!(age_bucket(3600), "1h-1d");
        assert_eq!(age_bucket(86_400), "1d-7d");
        assert_eq!(age_bucket(7 * 86_400), "7d-30d");
        assert_eq!(age_bucket(30 * 86_400), ">30d");
    }
}
