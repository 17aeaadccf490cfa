//! Requests routed to an agent: checks, fixes, runbooks, runbook lists.
//!
//! The relay opens a stream on the agent's live connection, sends the
//! agent-side request, and copies every answer to the console as it
//! arrives; with `--ticket`, a check's or a fix's result is appended to the
//! ticket on the way, and a runbook is recorded as one `verdict` entry by
//! the operator who ran it: its parameters, every step's result or why it
//! was skipped, and the verdict with its cause.
//!
//! **An agent held by another relay** of the deployment: the request goes
//! to that relay over NATS ([`crate::cluster`]), which opens the stream on
//! the agent's connection and sends every answer frame back as it arrives
//! ([`serve_forwarded`]); this relay — the one the operator is connected
//! to — does the rest as for a local agent: the role check before, the
//! ticket entries on the way, the audit entry after (`crate::console`).
//! So a forwarded request is recorded once, by the relay that took it, and
//! the holding relay is a pipe. A holding relay that dies mid-request is
//! reported within `presence_ttl_ms` (its heartbeats stop); one that does
//! not answer within `request_timeout_secs` (and a few seconds) too.
//!
//! **One machine of many** ([`collect`]): a bulk action, or an action
//! queued for a machine and delivered when it reconnects, has no console
//! stream per machine; the same answer loop writes into a [`Sink`] that
//! keeps the last result and verdict instead, and the answers become one
//! [`BulkItem`]. Routing, forwarding and ticket entries are the same as
//! for one machine: there is one way of talking to an agent.

use crate::clock::parse_rfc3339;
use crate::cluster::{ForwardError, Forwarded, RemoteAnswers};
use crate::error::RelayError;
use crate::reply::{Outcome, Reply};
use crate::state::{Holder, Relay};
use firstline_net::stream::request;
use firstline_net::{FramedRecv, FramedSend, LinkError};
use firstline_proto::action::{Action, BulkItem, ItemOutcome};
use firstline_proto::runbook::{Verdict, VerdictKind};
use firstline_proto::{CheckResult, ErrorCode, Message, Role};
use std::time::Duration;

/// A request on its way to an agent.
pub struct Routed<'a> {
    agent: &'a str,
    request: Message,
    ticket: Option<u64>,
    runbook: bool,
}

impl<'a> Routed<'a> {
    pub fn new(agent: &'a str, request: Message) -> Routed<'a> {
        Routed {
            agent,
            request,
            ticket: None,
            runbook: false,
        }
    }

    /// Record the answers in this ticket.
    pub fn ticket(mut self, ticket: Option<u64>) -> Self {
        self.ticket = ticket;
        self
    }

    /// A runbook's answers: recorded once, whole, with its verdict.
    pub fn runbook(mut self) -> Self {
        self.runbook = true;
        self
    }
}

/// What `route` needs of the request's context.
pub trait Requester {
    fn relay(&self) -> &Relay;
    /// The operator's name (who a runbook's verdict is recorded by).
    fn operator(&self) -> &str;
}

/// Route the request to its agent and stream its answers back.
pub async fn route(
    ctx: &impl Requester,
    routed: Routed<'_>,
    reply: &mut Reply,
) -> Result<Outcome, RelayError> {
    let relay = ctx.relay();
    let agent = routed.agent;
    let holder = live_holder(relay, agent).await?;
    if let Some(t) = routed.ticket {
        if relay.store.ticket(t).await?.is_none() {
            return Err(RelayError::no_ticket(t));
        }
    }
    let mut answers = open(relay, agent, holder, routed.request, ctx.operator()).await?;
    let record = routed.ticket.map(|ticket| Record {
        ticket,
        operator: ctx.operator(),
        runbook: routed.runbook,
    });
    let text = relay_answers(relay, agent, record, &mut answers, reply).await?;
    reply.finish();
    Ok(Outcome(text))
}

/// Run `action` on `agent` (here or through the relay that holds it) for
/// `operator` with `role`, record its results in `ticket` as [`route`]
/// does, and say how it ended as one [`BulkItem`]: the last result's
/// status, or the verdict's (resolved → ok, user-action → warn, escalate
/// → crit); refused by a role or the agent's policy; offline; or failed.
/// The caller checks first that `ticket` exists (once for many machines).
pub async fn collect(
    relay: &Relay,
    operator: &str,
    role: Role,
    agent: &str,
    action: &Action,
    ticket: Option<u64>,
) -> BulkItem {
    let mut got = Collected::default();
    let ran = async {
        let holder = live_holder(relay, agent).await?;
        let mut answers = open(relay, agent, holder, action.exec(role), operator).await?;
        let record = ticket.map(|ticket| Record {
            ticket,
            operator,
            runbook: matches!(action, Action::Runbook { .. }),
        });
        relay_answers(relay, agent, record, &mut answers, &mut got).await
    }
    .await;
    got.item(agent, ran)
}

/// What [`collect`] keeps of an agent's answers: the last result and the
/// verdict, nothing else (a bulk action holds one of these per machine in
/// flight, never one per machine selected).
#[derive(Default)]
struct Collected {
    result: Option<CheckResult>,
    verdict: Option<Verdict>,
}

impl Collected {
    fn item(self, agent: &str, ran: Result<String, RelayError>) -> BulkItem {
        let mut item = BulkItem {
            agent: agent.to_string(),
            outcome: ItemOutcome::Failed,
            summary: String::new(),
            result: None,
            verdict: None,
            queued: None,
        };
        match (ran, self.verdict, self.result) {
            (Err(e), _, _) => {
                item.outcome = match e.code {
                    ErrorCode::Forbidden | ErrorCode::Refused => ItemOutcome::Refused,
                    ErrorCode::AgentOffline => ItemOutcome::Offline,
                    _ => ItemOutcome::Failed,
                };
                item.summary = e.message;
            }
            (Ok(_), Some(v), _) => {
                item.outcome = match v.verdict {
                    VerdictKind::Resolved => ItemOutcome::Ok,
                    VerdictKind::UserAction => ItemOutcome::Warn,
                    VerdictKind::Escalate => ItemOutcome::Crit,
                    VerdictKind::DryRun => ItemOutcome::Ok,
                    VerdictKind::Error => ItemOutcome::Unknown,
                };
                item.summary = format!("{} ({}): {}", v.verdict, v.cause, v.message);
                item.verdict = Some(v);
            }
            (Ok(_), None, Some(r)) => {
                item.outcome = ItemOutcome::of_status(r.status);
                item.summary = r.summary.clone();
                item.result = Some(r);
            }
            (Ok(text), None, None) => item.summary = format!("ended without a result ({text})"),
        }
        item
    }
}

/// Where the answers of an agent go as they arrive: the console's stream
/// ([`route`]) or a [`Collected`] ([`collect`]).
#[allow(async_fn_in_trait)] // static dispatch only, in this crate
pub trait Sink {
    async fn send(&mut self, msg: Message) -> Result<(), LinkError>;
    /// Resolves when nobody reads the answers any more.
    async fn gone(&mut self);
}

impl Sink for Reply {
    async fn send(&mut self, msg: Message) -> Result<(), LinkError> {
        Reply::send(self, msg).await
    }

    async fn gone(&mut self) {
        Reply::gone(self).await
    }
}

impl Sink for Collected {
    async fn send(&mut self, msg: Message) -> Result<(), LinkError> {
        match msg {
            Message::Result { result } => self.result = Some(result),
            Message::Verdict(v) => self.verdict = Some(v),
            _ => {}
        }
        Ok(())
    }

    /// A collector reads to the end (its bulk request may outlive a
    /// console: `bulk` ends by its own rules).
    async fn gone(&mut self) {
        std::future::pending().await
    }
}

/// Open the request on the agent's connection here, or forward it to the
/// relay that holds the agent.
async fn open(
    relay: &Relay,
    agent: &str,
    holder: Holder,
    request_msg: Message,
    operator: &str,
) -> Result<Answers, RelayError> {
    Ok(match holder {
        Holder::Here(conn) => {
            let (to, from) = request(&conn, request_msg).await.map_err(|e| {
                RelayError::new(
                    ErrorCode::AgentOffline,
                    format!("agent `{agent}` could not be reached: {e}"),
                )
            })?;
            Answers::Agent { _to: to, from }
        }
        Holder::Relay(id) => {
            let remote = relay
                .cluster
                .forward(&id, agent, request_msg, operator)
                .await
                .map_err(|e| forward_error(agent, &id, e))?;
            Answers::Relay(remote)
        }
    })
}

/// Where the agent's live connection is, or why there is none.
async fn live_holder(relay: &Relay, agent: &str) -> Result<Holder, RelayError> {
    let Some(info) = relay.store.agent(agent).await? else {
        return Err(relay.unknown_agent(agent).await);
    };
    if info.revoked {
        let why = format!("agent `{agent}` has been revoked");
        return Err(RelayError::new(ErrorCode::Revoked, why));
    }
    relay.holder(agent).ok_or_else(|| {
        let seen = info.last_seen.unwrap_or_else(|| "never".into());
        RelayError::new(
            ErrorCode::AgentOffline,
            format!("agent `{agent}` is offline (last seen {seen})"),
        )
    })
}

/// A failed forward, as the console reads it.
fn forward_error(agent: &str, relay: &str, e: ForwardError) -> RelayError {
    let (code, message) = match e {
        ForwardError::Refused { code, message } => (code, message),
        ForwardError::Gone => (
            ErrorCode::AgentOffline,
            format!(
                "agent `{agent}` is held by relay {relay}, which stopped answering (no heartbeat): \
                 whether the request ran there is unknown"
            ),
        ),
        ForwardError::NoResponder => (
            ErrorCode::AgentOffline,
            format!("agent `{agent}` is held by relay {relay}, which does not listen on NATS"),
        ),
        ForwardError::Timeout(d) => (
            ErrorCode::Timeout,
            format!(
                "agent `{agent}` (held by relay {relay}) did not answer within {} s",
                d.as_secs()
            ),
        ),
        e @ (ForwardError::Lost(_) | ForwardError::Nats(_)) => (
            ErrorCode::Internal,
            format!("agent `{agent}` is held by relay {relay}: {e}"),
        ),
    };
    RelayError::new(code, message)
}

/// The answers of a request: from the agent's stream here, or relayed by
/// the relay that holds the agent.
enum Answers {
    Agent { _to: FramedSend, from: FramedRecv },
    Relay(RemoteAnswers),
}

/// Time a holding relay gets beyond `request_timeout_secs`, so that its
/// own timeout (told as such) comes first.
const FORWARD_MARGIN: Duration = Duration::from_secs(5);

impl Answers {
    /// The next answer and the bytes it took; `Ok(None)` when the stream
    /// ended without a final message.
    async fn next(
        &mut self,
        relay: &Relay,
        agent: &str,
    ) -> Result<Option<(Message, u64)>, RelayError> {
        match self {
            Answers::Agent { from, .. } => {
                let before = from.received();
                match from.recv_within(relay.request_timeout()).await {
                    Ok(msg) => Ok(msg.map(|m| (m, from.received() - before))),
                    Err(e) => {
                        from.stop(e.code());
                        Err(RelayError::new(
                            e.code(),
                            format!("from agent `{agent}`: {e}"),
                        ))
                    }
                }
            }
            Answers::Relay(remote) => {
                let within = relay.request_timeout() + FORWARD_MARGIN;
                match remote.next(within).await {
                    Ok(msg) => {
                        // Relayed as a message: its size as JSON.
                        let size = serde_json::to_vec(&msg).map_or(0, |v| v.len() as u64);
                        Ok(Some((msg, size)))
                    }
                    Err(e) => Err(forward_error(agent, remote.relay(), e)),
                }
            }
        }
    }

    /// Tell the agent to stop sending (the answer went over its bound).
    fn stop(&mut self, code: ErrorCode) {
        if let Answers::Agent { from, .. } = self {
            from.stop(code);
        }
    }
}

/// Where the answers are recorded: a ticket, by whom, and whether they are
/// a runbook's (recorded once, whole, with its verdict).
struct Record<'a> {
    ticket: u64,
    operator: &'a str,
    runbook: bool,
}

impl Record<'_> {
    /// Append an entry, with the time the agent observed what it says.
    async fn append(&self, relay: &Relay, kind: &str, author: &str, body: &str, observed: &str) {
        let t = self.ticket;
        let observed = parse_rfc3339(observed);
        match relay
            .store
            .append_to_ticket(t, kind, author, body, observed)
            .await
        {
            Ok(change) => relay.announce(&change.into_iter().collect::<Vec<_>>()),
            Err(e) => tracing::error!("cannot append to ticket {t}: {e}"),
        }
    }
}

/// Copy the agent's answers to the console (or a collector) until the
/// final message.
async fn relay_answers(
    relay: &Relay,
    agent: &str,
    record: Option<Record<'_>>,
    answers: &mut Answers,
    to_console: &mut impl Sink,
) -> Result<String, RelayError> {
    let mut last_status = String::from("no result");
    let internal =
        |e: firstline_net::LinkError| RelayError::new(ErrorCode::Internal, e.to_string());
    // Counted in bytes as well as messages: an agent answers one request
    // with a bounded amount, however it splits it into frames.
    let max_bytes = u64::from(relay.dir.config.max_answer_bytes);
    let (mut bytes, mut messages) = (0u64, 0u64);
    loop {
        let next = tokio::select! {
            next = answers.next(relay, agent) => next?,
            // The console went away: the agent stops the work (its worker
            // is killed) instead of finishing it for nobody.
            () = to_console.gone() => {
                answers.stop(ErrorCode::Timeout);
                return Err(RelayError::new(
                    ErrorCode::Timeout,
                    format!("the console stopped reading: the request on `{agent}` was stopped"),
                ));
            }
        };
        let Some((msg, size)) = next else {
            return Err(ended_early(agent));
        };
        bytes += size;
        messages += 1;
        if bytes > max_bytes {
            answers.stop(ErrorCode::BadRequest);
            tracing::warn!(%agent, bytes, messages, "answer stopped: over max_answer_bytes");
            return Err(RelayError::bad_request(format!(
                "agent `{agent}` answered with more than {max_bytes} bytes ({messages} \
                 messages): the answer was stopped (max_answer_bytes in relay.toml)"
            )));
        }
        // What an agent says is cut to size before it is stored or passed
        // on, as its events are.
        let msg = match msg {
            Message::Result { result } => Message::Result {
                result: result.bounded(),
            },
            Message::Verdict(v) => Message::Verdict(v.bounded()),
            other => other,
        };
        match &msg {
            Message::Result { result } => {
                last_status = format!("{}: {}", result.status, result.summary);
                if let Some(r) = record.as_ref().filter(|r| !r.runbook) {
                    let body = serde_json::to_string(result).unwrap_or_default();
                    r.append(relay, "result", agent, &body, &result.at).await;
                }
            }
            Message::Verdict(v) => {
                last_status = format!("{} ({}): {}", v.verdict, v.cause, v.message);
                if let Some(r) = &record {
                    let body = serde_json::to_string(v).unwrap_or_default();
                    let observed = v.evidence().last().map_or("", |e| e.at.as_str());
                    r.append(relay, "verdict", r.operator, &body, observed)
                        .await;
                }
            }
            Message::Progress { .. } => {}
            Message::Runbooks { .. } | Message::Checks { .. } => {
                let what = match &msg {
                    Message::Runbooks { runbooks, .. } => format!("{} runbooks", runbooks.len()),
                    Message::Checks { checks } => format!("{} checks", checks.len()),
                    _ => String::new(),
                };
                to_console.send(msg).await.map_err(internal)?;
                return Ok(format!("ok: {what}"));
            }
            Message::Done {} => {
                to_console.send(msg).await.map_err(internal)?;
                return Ok(last_status);
            }
            Message::Error { code, message } => {
                return Err(RelayError::new(
                    *code,
                    format!("agent `{agent}`: {message}"),
                ));
            }
            other => {
                return Err(RelayError::bad_request(format!(
                    "agent `{agent}` sent an unexpected `{}`",
                    other.kind()
                )))
            }
        }
        if to_console.send(msg).await.is_err() {
            return Ok("console went away".into());
        }
    }
}

fn ended_early(agent: &str) -> RelayError {
    RelayError::new(
        ErrorCode::Internal,
        format!("agent `{agent}` ended the stream without a final message"),
    )
}

/// Whether `msg` ends an agent's answer.
fn is_final(msg: &Message) -> bool {
    matches!(
        msg,
        Message::Done {}
            | Message::Error { .. }
            | Message::Runbooks { .. }
            | Message::Checks { .. }
    )
}

/// Serve a request another relay forwarded for an agent held here: open
/// the stream on the agent's connection and send every answer frame back
/// as it arrives, until the final one. Nothing is recorded here: the
/// asking relay records the ticket entries and the audit entry.
pub async fn serve_forwarded(relay: &Relay, f: Forwarded) {
    let Forwarded {
        from: asker,
        operator,
        agent,
        request: msg,
        mut reply,
    } = f;
    // Recorded here too, by the relay that runs it: who asked through
    // which relay, what, and how it ended.
    let (role, args) = forwarded_args(&msg);
    let entry = |outcome: String| crate::store::AuditEntry {
        who: operator.clone(),
        role: role.clone(),
        agent: Some(agent.clone()),
        action: format!("forwarded {}", msg.kind()),
        args: format!("from relay {asker}: {args}"),
        outcome,
    };
    let outcome = serve_forwarded_inner(relay, &asker, &agent, msg.clone(), &mut reply).await;
    relay.audit(entry(outcome)).await;
}

/// The role and arguments of a forwarded request, as its audit entry
/// names them.
fn forwarded_args(msg: &Message) -> (Option<String>, String) {
    let dry = |d: bool| if d { " --dry-run" } else { "" };
    let (role, args) = match msg {
        Message::Exec { check, args, role } => (Some(*role), format!("{check} {}", args.join(" "))),
        Message::ExecFix {
            action,
            args,
            dry_run,
            role,
        } => (
            Some(*role),
            format!("{action} {}{}", args.join(" "), dry(*dry_run)),
        ),
        Message::ExecRunbook {
            name,
            params,
            dry_run,
            role,
        } => (
            Some(*role),
            format!("{name} {}{}", params.join(" "), dry(*dry_run)),
        ),
        _ => (None, String::new()),
    };
    (
        role.map(|r| r.as_str().to_string()),
        args.trim().to_string(),
    )
}

/// How a forwarded request ended, from the agent's final answer.
fn final_outcome(msg: &Message) -> String {
    match msg {
        Message::Error { code, message } => format!("error: {code:?}: {message}"),
        other => format!("ok: {}", other.kind()),
    }
}

/// Serve a forwarded request; how it ended, for the audit entry.
async fn serve_forwarded_inner(
    relay: &Relay,
    asker: &str,
    agent: &str,
    msg: Message,
    reply: &mut crate::cluster::ReplySink,
) -> String {
    let agent_side = matches!(
        msg,
        Message::Exec { .. }
            | Message::ExecFix { .. }
            | Message::ExecRunbook { .. }
            | Message::ExecListRunbooks {}
            | Message::ExecListChecks {}
    );
    if !agent_side {
        let why = format!("`{}` is not a request for an agent", msg.kind());
        reply.fail(ErrorCode::BadRequest, &why).await;
        return format!("refused: {why}");
    }
    if let Err(why) = relay.audit_guard().await {
        reply.fail(ErrorCode::Internal, &why).await;
        return format!("refused: {why}");
    }
    let Some(conn) = relay.registry.agent(agent) else {
        let why = format!(
            "agent `{agent}` is no longer connected to relay {}; try again",
            relay.cluster.id().unwrap_or("?")
        );
        reply.fail(ErrorCode::AgentOffline, &why).await;
        return format!("error: {why}");
    };
    tracing::info!(%agent, from = %asker, request = msg.kind(), "forwarded request");
    let (_to_agent, mut from_agent) = match request(&conn, msg).await {
        Ok(s) => s,
        Err(e) => {
            let why = format!("agent `{agent}` could not be reached: {e}");
            reply.fail(ErrorCode::AgentOffline, &why).await;
            return format!("error: {why}");
        }
    };
    let mut outcome = String::from("ok");
    let max_bytes = u64::from(relay.dir.config.max_answer_bytes);
    loop {
        match from_agent.recv_within(relay.request_timeout()).await {
            Ok(Some(_)) if from_agent.received() > max_bytes => {
                // The asking relay counts too; this one stops the agent.
                from_agent.stop(ErrorCode::BadRequest);
                let why = format!(
                    "agent `{agent}` answered with more than {max_bytes} bytes: the answer \
                     was stopped (max_answer_bytes in relay.toml)"
                );
                reply.fail(ErrorCode::BadRequest, &why).await;
                return format!("error: {why}");
            }
            Ok(Some(msg)) => {
                let last = is_final(&msg);
                if last {
                    outcome = final_outcome(&msg);
                }
                if let Err(e) = reply.send(msg).await {
                    tracing::warn!(%agent, from = %asker, "cannot relay an answer: {e}");
                    from_agent.stop(ErrorCode::Internal);
                    return format!("error: cannot relay an answer: {e}");
                }
                if last {
                    break;
                }
            }
            Ok(None) => {
                let e = ended_early(agent);
                reply.fail(e.code, &e.message).await;
                return format!("error: {}", e.message);
            }
            Err(e) => {
                from_agent.stop(e.code());
                let why = format!("from agent `{agent}`: {e}");
                reply.fail(e.code(), &why).await;
                return format!("error: {why}");
            }
        }
    }
    reply.flush().await;
    outcome
}
