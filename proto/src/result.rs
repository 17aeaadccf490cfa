//! The one result shape every check and fix returns (DESIGN.md, "Checks"):
//! `{"check","target","status","summary","metrics","duration_ms","at"}`, in
//! the Nagios plugin spirit. Fixes add what they changed.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Outcome of a check, ordered by severity (`Ok < Warn < Crit`; `Unknown`
/// sorts last but is reported as its own thing, as Nagios does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Crit,
    Unknown,
}

impl Status {
    /// The Nagios plugin exit code of this status (0/1/2/3).
    pub fn nagios_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warn => 1,
            Status::Crit => 2,
            Status::Unknown => 3,
        }
    }

    /// Status of a Nagios plugin exit code; anything unexpected is `Unknown`.
    pub fn from_nagios_code(code: i32) -> Self {
        match code {
            0 => Status::Ok,
            1 => Status::Warn,
            2 => Status::Crit,
            _ => Status::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Crit => "crit",
            Status::Unknown => "unknown",
        }
    }

    /// The status for a person: `OK`, `WARN`, `CRIT`, `UNKNOWN` — the one
    /// spelling every line uses.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Crit => "CRIT",
            Status::Unknown => "UNKNOWN",
        }
    }

    /// The worse of two statuses (`Unknown` only wins over `Ok`).
    pub fn worst(self, other: Status) -> Status {
        use Status::*;
        match (self, other) {
            (Crit, _) | (_, Crit) => Crit,
            (Warn, _) | (_, Warn) => Warn,
            (Unknown, _) | (_, Unknown) => Unknown,
            _ => Ok,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Width of the status label that starts [`CheckResult::line`].
pub const LABEL_WIDTH: usize = 7;

/// Result of one check or fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Check or fix name (`disk`, `dns`, `flush-dns`…).
    pub check: String,
    /// What was checked (a path, a host, a URI).
    pub target: String,
    pub status: Status,
    /// One line for a human.
    pub summary: String,
    /// Numbers, Nagios perfdata style (`used_pct`, `rtt_avg_ms`…); whole
    /// numbers are written as JSON integers (`"queued_jobs": 1`, not `1.0`).
    #[serde(default, serialize_with = "metrics::serialize")]
    pub metrics: BTreeMap<String, f64>,
    pub duration_ms: u64,
    /// RFC 3339 time the check finished, set by whoever ran it.
    pub at: String,
    /// For fixes: what was changed (empty for checks and dry runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Facts that are not numbers, for runbooks to branch on and people to
    /// read: `error = "nxdomain"`, `reasons = "media-empty-error"`,
    /// `gateway = "192.0.2.1"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

impl CheckResult {
    /// A result with no metrics yet; `duration_ms` and `at` are filled in by
    /// whoever ran the check.
    pub fn new(
        check: impl Into<String>,
        target: impl Into<String>,
        status: Status,
        summary: impl Into<String>,
    ) -> Self {
        CheckResult {
            check: check.into(),
            target: target.into(),
            status,
            summary: summary.into(),
            metrics: BTreeMap::new(),
            duration_ms: 0,
            at: String::new(),
            changed: Vec::new(),
            fields: BTreeMap::new(),
        }
    }

    /// Add a metric (builder style).
    pub fn metric(mut self, name: impl Into<String>, value: f64) -> Self {
        self.metrics.insert(name.into(), value);
        self
    }

    /// `OK      disk /: summary (3 ms)`: one line for a person, escaped for
    /// a terminal, uncoloured (the status label, [`Status::label`], padded
    /// to [`LABEL_WIDTH`], comes first so a printer may colour it).
    pub fn line(&self) -> String {
        use crate::text::printable;
        format!(
            "{:<LABEL_WIDTH$} {} {}: {} ({} ms)",
            self.status.label(),
            printable(&self.check),
            printable(&self.target),
            printable(&self.summary),
            self.duration_ms
        )
    }

    /// Add a field (builder style).
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.insert(name.into(), value.into());
        self
    }

    /// This result cut to the sizes of [`crate::limits`]: what a relay
    /// stores of a result an agent sent, whatever the agent sent.
    pub fn bounded(mut self) -> Self {
        use crate::limits::{CHANGED_LINES, METRICS, SUMMARY, TARGET};
        use crate::text::truncate;
        let cut = |s: &mut String, max: usize| {
            if s.len() > max {
                *s = truncate(s, max).into_owned();
            }
        };
        cut(&mut self.check, 64);
        cut(&mut self.target, TARGET);
        cut(&mut self.summary, SUMMARY);
        cut(&mut self.at, 64);
        if self.metrics.len() > METRICS || self.metrics.keys().any(|k| k.len() > 128) {
            self.metrics = std::mem::take(&mut self.metrics)
                .into_iter()
                .filter(|(k, _)| k.len() <= 128)
                .take(METRICS)
                .collect();
        }
        self.changed.truncate(CHANGED_LINES);
        for line in &mut self.changed {
            cut(line, TARGET);
        }
        if self.fields.len() > METRICS {
            self.fields = std::mem::take(&mut self.fields)
                .into_iter()
                .take(METRICS)
                .collect();
        }
        self.fields.retain(|k, _| k.len() <= 128);
        for v in self.fields.values_mut() {
            cut(v, TARGET);
        }
        self
    }
}

/// Metrics as JSON: whole numbers as integers (`1`, not `1.0`: counts
/// read as counts), others as they are (`0.271`). Reading takes both.
mod metrics {
    use serde::ser::SerializeMap;
    use serde::Serializer;
    use std::collections::BTreeMap;

    /// Largest whole number an f64 holds exactly (2^53).
    const EXACT: f64 = 9_007_199_254_740_992.0;

    pub fn serialize<S: Serializer>(m: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(m.len()))?;
        for (k, v) in m {
            if v.fract() == 0.0 && v.abs() <= EXACT {
                map.serialize_entry(k, &(*v as i64))?;
            } else {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_matches_design() {
        let r = CheckResult {
            check: "disk".into(),
            target: "/".into(),
            status: Status::Warn,
            summary: "81% used".into(),
            metrics: [("used_pct".to_string(), 81.0)].into(),
            duration_ms: 3,
            at: "2026-11-23T00:00:00Z".into(),
            changed: vec![],
            fields: Default::default(),
        };
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "at",
                "check",
                "duration_ms",
                "metrics",
                "status",
                "summary",
                "target"
            ]
        );
        assert_eq!(v["status"], "warn");
    }

    #[test]
    fn bounded_cuts_every_field() {
        let mut r = CheckResult::new("disk", "t".repeat(5000), Status::Ok, "s".repeat(400_000));
        for i in 0..1000 {
            r.metrics.insert(format!("m{i}"), 1.0);
        }
        r.changed = vec!["c".repeat(10_000); 1000];
        let b = r.bounded();
        assert!(b.summary.len() <= crate::limits::SUMMARY);
        assert!(b.target.len() <= crate::limits::TARGET);
        assert_eq!(b.metrics.len(), crate::limits::METRICS);
        assert_eq!(b.changed.len(), crate::limits::CHANGED_LINES);
    }

    #[test]
    fn whole_metrics_are_integers_in_json() {
        let r = CheckResult::new("printer", "ipp://p", Status::Ok, "idle")
            .metric("queued_jobs", 1.0)
            .metric("rtt_ms", 0.271)
            .metric("zero", -0.0)
            .metric("big", 1e300);
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""queued_jobs":1,"#), "{text}");
        assert!(text.contains(r#""rtt_ms":0.271"#), "{text}");
        assert!(text.contains(r#""zero":0"#), "{text}");
        let back: CheckResult = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        // Older peers wrote floats: still read.
        let old = text.replace(r#""queued_jobs":1,"#, r#""queued_jobs":1.0,"#);
        assert_eq!(serde_json::from_str::<CheckResult>(&old).unwrap(), r);
    }

    #[test]
    fn one_spelling_per_status() {
        let mut r = CheckResult::new("disk", "/", Status::Unknown, "no answer");
        r.duration_ms = 3;
        assert_eq!(r.line(), "UNKNOWN disk /: no answer (3 ms)");
        r.status = Status::Ok;
        assert_eq!(r.line(), "OK      disk /: no answer (3 ms)");
        assert!(!r.line().ends_with(' '));
    }

    #[test]
    fn worst_status() {
        assert_eq!(Status::Ok.worst(Status::Warn), Status::Warn);
        assert_eq!(Status::Unknown.worst(Status::Crit), Status::Crit);
        assert_eq!(Status::Ok.worst(Status::Unknown), Status::Unknown);
    }
}
