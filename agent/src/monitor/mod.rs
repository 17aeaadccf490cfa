//! Proactive monitoring: the `[[monitor]]` schedule of `agent.toml`.
//!
//! Each monitor is a task that runs its check every `every` (the first run
//! jittered over one period, so ten thousand agents started together do not
//! fire together), feeds the result to its incident state machine
//! ([`incident`]) and writes the resulting event to the durable outbox —
//! with a diagnostic bundle ([`diagnostics`]) when an incident opens. The
//! outbox write comes before any network I/O: a relay outage loses nothing.

pub mod diagnostics;
pub mod incident;

use crate::checks::{self, CheckContext};
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

async fn run(
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
            Err(e) => CheckResult::new(&m.check, m.args.join(" "), Status::Unknown, e.to_string()),
        };
        if let Err(e) = record(&m, &mut state, result, &outbox).await {
            tracing::error!(monitor = %m.id, "cannot write to the outbox: {e:#}");
        }
    }
}

/// Turn one result into an outbox event and persist the incident state.
pub async fn record(
    m: &Monitor,
    state: &mut IncidentState,
    result: CheckResult,
    outbox: &Outbox,
) -> anyhow::Result<EventKind> {
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
    };
    outbox.push(&event, Some(&serde_json::to_string(state)?))?;
    Ok(kind)
}
