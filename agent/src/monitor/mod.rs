//! Proactive monitoring: the `[[monitor]]` schedule of `agent.toml`, and
//! the central monitor sets the relay sends ([`central`]).
//!
//! Each monitor is a task that runs its check every `every` (the first run
//! jittered over one period, so ten thousand agents started together do not
//! fire together), feeds the result to its incident state machine
//! ([`incident`]) and writes the resulting event to the durable outbox —
//! with a diagnostic bundle ([`diagnostics`]) when an incident opens. The
//! outbox write comes before any network I/O: a relay outage loses nothing.
//! The state moves only together with its event, written or held in memory
//! while the outbox cannot be written ([`Outbox::push_or_hold`]): a full
//! disk loses no incident event either.
//!
//! A check that cannot even start ([`CheckError`]: arguments its parser or
//! its own rules reject, a check this agent does not have, a plugin its
//! policy refuses) is a configuration problem, not an incident: it is
//! logged, reported to the relay once (a `result` event whose result is
//! `unknown` with field `error = "config"`, which never becomes a ticket)
//! and that monitor stops until the agent restarts — never a result per
//! run, never an incident. `firstline-agent validate` catches most of these
//! before the agent starts ([`crate::checks::validate_args`]).

pub mod central;
pub mod diagnostics;
pub mod incident;

use crate::checks::{self, CheckContext, CheckError};
use crate::outbox::Outbox;
use firstline_proto::{AgentEvent, CheckResult, EventKind, Status};
use incident::IncidentState;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A monitor ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    /// Stable id: the configured name, or `check args…`.
    pub id: String,
    pub check: String,
    pub args: Vec<String>,
    pub every: Duration,
    pub fail_after: u32,
    pub recover_after: u32,
}

/// Start one task per monitor; they stop when `shutdown` turns true.
pub fn start(
    monitors: Vec<Monitor>,
    ctx: CheckContext,
    outbox: Arc<Outbox>,
    shutdown: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for m in monitors {
        set.spawn(run(m, ctx.clone(), outbox.clone(), shutdown.clone()));
    }
    set
}

/// Run one monitor until `shutdown` (also the central ones: [`central`]).
pub(crate) async fn run(
    m: Monitor,
    ctx: CheckContext,
    outbox: Arc<Outbox>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut state: IncidentState = outbox
        .load_state(&m.id)
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let first = m.every.mul_f64(rand::random::<f64>());
    tokio::select! {
        _ = tokio::time::sleep(first) => {}
        _ = shutdown.changed() => return,
    }
    let mut ticker = tokio::time::interval(m.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let result = match checks::run(&m.check, &m.args, &ctx).await {
            Ok(r) => r,
            Err(e) => {
                if let Err(e) = report_config_problem(&m, &state, &e, &outbox) {
                    tracing::error!(monitor = %m.id, "cannot write to the outbox: {e:#}");
                }
                return;
            }
        };
        if let Err(e) = record(&m, &mut state, result, &outbox).await {
            tracing::error!(monitor = %m.id, "cannot write to the outbox: {e:#}");
        }
    }
}

/// The value of a result's `error` field that marks a configuration problem.
pub const CONFIG_ERROR: &str = "config";

/// The result that reports a monitor which cannot run: `unknown`, the
/// check's name, one line, field `error = "config"`.
pub fn config_problem(m: &Monitor, error: &CheckError) -> CheckResult {
    let why = match error {
        CheckError::Usage(msg) => checks::usage_line(msg),
        other => other.to_string(),
    };
    let mut r = CheckResult::new(
        &m.check,
        m.args.join(" "),
        Status::Unknown,
        format!(
            "configuration problem: {why} (fix this [[monitor]] in agent.toml; \
             it does not run until the agent restarts)"
        ),
    )
    .field("error", CONFIG_ERROR);
    r.at = checks::now_rfc3339();
    r
}

/// Log and report, once, that a monitor cannot run; the incident state is
/// left as it is (this is not an observation of the machine).
pub fn report_config_problem(
    m: &Monitor,
    state: &IncidentState,
    error: &CheckError,
    outbox: &Outbox,
) -> anyhow::Result<()> {
    let result = config_problem(m, error);
    tracing::error!(
        monitor = %m.id,
        check = %m.check,
        "monitor stopped: {}",
        result.summary
    );
    let event = AgentEvent {
        seq: 0,
        monitor: m.id.clone(),
        kind: EventKind::Result,
        in_incident: state.in_incident(),
        result,
        diagnostics: None,
        help: None,
    };
    outbox.push(&event, None)?;
    Ok(())
}

/// Turn one result into an outbox event and persist the incident state.
pub async fn record(
    m: &Monitor,
    state: &mut IncidentState,
    result: CheckResult,
    outbox: &Outbox,
) -> anyhow::Result<EventKind> {
    let before = state.clone();
    let kind = state.observe(result.status, m.fail_after, m.recover_after);
    let diagnostics = if kind == EventKind::IncidentOpened {
        Some(diagnostics::gather().await)
    } else {
        None
    };
    if kind != EventKind::Result {
        tracing::warn!(monitor = %m.id, status = %result.status, "{}: {}", kind.as_str(), result.summary);
    }
    let event = AgentEvent {
        seq: 0,
        monitor: m.id.clone(),
        kind,
        in_incident: state.in_incident() || kind == EventKind::IncidentResolved,
        result,
        diagnostics,
        help: None,
    };
    // The state moves only with its event written or held (in order, to
    // be written first once the disk has room): if neither, the previous
    // state stays and the next run observes the transition again.
    let saved = serde_json::to_string(state)?;
    if let Err(e) = outbox.push_or_hold(&event, Some(&saved)) {
        *state = before;
        return Err(e);
    }
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor(check: &str, args: &[&str]) -> Monitor {
        Monitor {
            id: "bad".into(),
            check: check.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            every: Duration::from_millis(20),
            fail_after: 1,
            recover_after: 1,
        }
    }

    /// Arguments only the check's run rejects (validate cannot see them):
    /// reported once as a configuration problem, never fed to the incident
    /// state machine, and the monitor stops.
    #[tokio::test]
    async fn a_check_that_cannot_start_is_reported_once_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Arc::new(Outbox::open(&dir.path().join("outbox.db"), 100).unwrap());
        let m = monitor("disk", &["/", "--warn", "95", "--crit", "90"]);
        assert_eq!(checks::validate_args(&m.check, &m.args), Ok(()));
        let (_tx, shutdown) = watch::channel(false);
        let task = run(m, CheckContext::default(), outbox.clone(), shutdown);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the monitor stops by itself");
        let events = outbox.peek(10).unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        let e = &events[0];
        assert_eq!(e.kind, EventKind::Result);
        assert!(!e.in_incident);
        assert_eq!(e.result.status, Status::Unknown);
        assert_eq!(e.result.check, "disk");
        assert_eq!(e.result.fields["error"], CONFIG_ERROR);
        assert!(
            e.result.summary.contains("--warn") && !e.result.summary.contains('\n'),
            "{}",
            e.result.summary
        );
        assert!(!e.result.at.is_empty());
        assert_eq!(outbox.load_state("bad").unwrap(), None, "no incident state");
    }

    #[test]
    fn config_problems_are_one_line() {
        let m = monitor("disk", &["/", "--wrn", "80"]);
        let usage = checks::validate_args(&m.check, &m.args).unwrap_err();
        let r = config_problem(&m, &usage);
        assert!(!r.summary.contains('\n'), "{}", r.summary);
        assert!(
            r.summary.contains("unexpected argument '--wrn'"),
            "{}",
            r.summary
        );
        let r = config_problem(&m, &CheckError::Refused("not in the allow-list".into()));
        assert!(
            r.summary.contains("refused: not in the allow-list"),
            "{}",
            r.summary
        );
        assert_eq!(r.fields["error"], "config");
    }
}
