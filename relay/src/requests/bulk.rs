//! `bulk`: one action (`run`, `fix`, `runbook`) on every machine a
//! selector picks, paced.
//!
//! Why paced: sending to thousands of agents at once loses requests (the
//! load generator lost 18 % of an unpaced broadcast to UDP buffer
//! overflow) and holds a stream per machine. So at most `max_in_flight`
//! machines are asked at a time — the console's (`--max-in-flight`),
//! [`DEFAULT_MAX_IN_FLIGHT`] when it gives none, never more than
//! [`MAX_IN_FLIGHT_CAP`] — and the next starts as one ends.
//!
//! Why streamed: the answer is `bulk_started`, one `bulk_item` per machine
//! in the order they end, then `done`. The relay keeps the selection (a
//! name and a few flags per machine), the items in flight and eight
//! counts, never the results, so a bulk action of any size costs it
//! bounded memory; the console builds the summary.
//!
//! Each machine is one [`routing::collect`]: the agent checks the role
//! again and applies its own policy, exactly as for one machine; with
//! `--ticket` every result goes into the ticket; every machine gets its
//! own audit entry beside the request's (`bulk run disk /var --select …`,
//! `ok: 12 selected: 10 ok, 1 offline, 1 refused`). A role too low is
//! refused once, for the whole request, before anything is sent
//! ([`crate::console`]). Machines offline are reported `offline`, or with
//! `queue_for_secs` their action is queued ([`crate::queue`]). When the
//! console goes away no further machine is started; those in flight end
//! and are recorded.

use super::{AuditLine, Ctx, Outcome, Reply, Request};
use crate::error::RelayError;
use crate::routing;
use crate::store::AuditEntry;
use firstline_proto::action::{Action, BulkItem, ItemOutcome};
use firstline_proto::select::AgentView;
use firstline_proto::{Message, Role, Selector};
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::future::Future;

/// Machines asked at a time when the console does not say.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 32;
/// Never more than this many at a time, whatever the console asks.
pub const MAX_IN_FLIGHT_CAP: u32 = 256;

/// `run|fix|runbook --select SEL … [--ticket N] [--max-in-flight N]
/// [--queue-for DUR]`.
#[derive(Debug, Clone)]
pub struct Bulk {
    /// The selector as sent (checked as the request is handled, so a bad
    /// one is audited).
    pub select: String,
    pub action: Action,
    pub ticket: Option<u64>,
    pub max_in_flight: Option<u32>,
    pub queue_for_secs: Option<u64>,
}

impl Request for Bulk {
    fn role(&self) -> Role {
        let role = self.action.role();
        match self.ticket {
            // Writing into a ticket is a technician's change.
            Some(_) => role.max(Role::Technician),
            None => role,
        }
    }

    fn audit(&self) -> AuditLine {
        let mut args = format!("--select {}", self.select);
        if let Some(t) = self.ticket {
            args.push_str(&format!(" --ticket {t}"));
        }
        if let Some(n) = self.max_in_flight {
            args.push_str(&format!(" --max-in-flight {n}"));
        }
        if let Some(s) = self.queue_for_secs {
            args.push_str(&format!(" --queue-for {s}s"));
        }
        AuditLine::new(format!("bulk {}", self.action.describe())).args(args)
    }

    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        let relay = ctx.relay;
        let sel = Selector::parse(&self.select).map_err(RelayError::bad_request)?;
        let max = match self.max_in_flight {
            Some(0) => return Err(RelayError::bad_request("max_in_flight must be 1 or more")),
            Some(n) => n.min(MAX_IN_FLIGHT_CAP),
            None => DEFAULT_MAX_IN_FLIGHT,
        };
        if let Some(t) = self.ticket {
            if relay.store.ticket(t).await?.is_none() {
                return Err(RelayError::no_ticket(t));
            }
        }
        let targets = selection(ctx, &sel).await?;
        let selected = targets.len() as u64;
        let started = Message::BulkStarted {
            selected,
            max_in_flight: max,
        };
        if let Err(e) = reply.send(started).await {
            return Ok(Outcome(format!(
                "failed: the answer could not be sent: {e}"
            )));
        }
        let line = self.audit();
        let mut counts = Counts::default();
        let mut paced = Paced::new(targets, max as usize, |t| self.one(ctx, &line, t));
        let mut gone = None;
        while let Some(item) = paced.next().await {
            counts.add(item.outcome);
            if gone.is_none() {
                if let Err(e) = reply.send(Message::BulkItem(Box::new(item))).await {
                    // No one reads on: start no further machine.
                    paced.stop();
                    gone = Some(e);
                }
            }
        }
        let ended = counts.total();
        let text = format!("{selected} selected: {}", counts.describe());
        Ok(Outcome(match gone {
            None => match reply.finish_with(Message::Done {}).await {
                Ok(()) => format!("ok: {text}"),
                Err(e) => format!("failed: the answer could not be sent: {e}; {text}"),
            },
            Some(e) => format!(
                "stopped: the console went away ({e}) after {ended} of {selected}; {}",
                counts.describe()
            ),
        }))
    }
}

/// A machine a bulk action is for: only what is needed to act on it.
#[derive(Debug)]
struct Target {
    name: String,
    revoked: bool,
    last_seen: Option<String>,
}

/// The machines `sel` picks, by name, `online` as the relays know it now.
async fn selection(ctx: &Ctx<'_>, sel: &Selector) -> Result<Vec<Target>, RelayError> {
    let relay = ctx.relay;
    let mut agents = relay.store.select_agents(sel).await?;
    for a in &mut agents {
        a.online = relay.is_online(&a.name);
    }
    agents.retain(|a| sel.matches(&AgentView::from(a)));
    let mut targets: Vec<Target> = agents
        .into_iter()
        .map(|a| Target {
            name: a.name,
            revoked: a.revoked,
            last_seen: a.last_seen,
        })
        .collect();
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(targets)
}

impl Bulk {
    /// The action on one machine, audited: run it if the machine is online
    /// now, else report it offline or queue it.
    async fn one(&self, ctx: &Ctx<'_>, line: &AuditLine, t: Target) -> BulkItem {
        let relay = ctx.relay;
        let op = ctx.operator;
        let item = |outcome, summary: String| BulkItem {
            agent: t.name.clone(),
            outcome,
            summary,
            result: None,
            verdict: None,
            queued: None,
        };
        let item = if t.revoked {
            let why = format!("agent `{}` has been revoked", t.name);
            item(ItemOutcome::Failed, why)
        } else if !relay.is_online(&t.name) {
            let seen = t.last_seen.as_deref().unwrap_or("never");
            match self.queue_for_secs {
                None => item(ItemOutcome::Offline, format!("offline (last seen {seen})")),
                Some(ttl) => {
                    let action = self.action.clone();
                    let queued = crate::queue::enqueue(
                        relay,
                        &op.name,
                        op.role,
                        &t.name,
                        action,
                        self.ticket,
                        ttl,
                    )
                    .await;
                    match queued {
                        Ok(q) => {
                            let why = format!(
                                "offline (last seen {seen}): queued as #{} until {}",
                                q.id, q.expires_at
                            );
                            BulkItem {
                                queued: Some(q.id),
                                ..item(ItemOutcome::Queued, why)
                            }
                        }
                        Err(e) => item(
                            ItemOutcome::Failed,
                            format!("offline (last seen {seen}), not queued: {}", e.message),
                        ),
                    }
                }
            }
        } else {
            routing::collect(relay, &op.name, op.role, &t.name, &self.action, self.ticket).await
        };
        relay
            .audit(AuditEntry {
                who: op.name.clone(),
                role: Some(op.role.as_str().into()),
                agent: Some(item.agent.clone()),
                action: line.action.clone(),
                args: line.args.clone(),
                outcome: format!("{}: {}", item.outcome, item.summary),
            })
            .await;
        item
    }
}

/// How many machines ended each way (all a bulk action keeps of them).
#[derive(Debug, Default)]
struct Counts([u64; ItemOutcome::ALL.len()]);

impl Counts {
    fn add(&mut self, o: ItemOutcome) {
        if let Some(i) = ItemOutcome::ALL.iter().position(|x| *x == o) {
            self.0[i] += 1;
        }
    }

    fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `10 ok, 1 offline, 1 refused` (the outcomes that occurred), or
    /// `none`.
    fn describe(&self) -> String {
        let parts: Vec<String> = ItemOutcome::ALL
            .iter()
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
            .map(|(o, n)| format!("{n} {o}"))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// `each` over `items`, at most `max` at a time, in the order they end: a
/// new item starts as soon as one ends, until [`Paced::stop`].
struct Paced<I: Iterator, F, Fut> {
    rest: I,
    each: F,
    running: FuturesUnordered<Fut>,
    max: usize,
}

impl<I, F, Fut> Paced<I, F, Fut>
where
    I: Iterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future,
{
    fn new(items: impl IntoIterator<IntoIter = I>, max: usize, each: F) -> Self {
        let mut p = Paced {
            rest: items.into_iter(),
            each,
            running: FuturesUnordered::new(),
            max: max.max(1),
        };
        p.fill();
        p
    }

    fn fill(&mut self) {
        while self.running.len() < self.max {
            match self.rest.next() {
                Some(item) => self.running.push((self.each)(item)),
                None => break,
            }
        }
    }

    /// The next output to end; `None` when all have ended.
    async fn next(&mut self) -> Option<Fut::Output> {
        let out = self.running.next().await?;
        self.fill();
        Some(out)
    }

    /// Start nothing more; those running still end.
    fn stop(&mut self) {
        self.rest.by_ref().for_each(drop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Never more than `max` in flight, and `max` reached: real tasks that
    /// count themselves while they sleep.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_than_max_in_flight() {
        for (n, max) in [(20usize, 3usize), (5, 8), (7, 1)] {
            let now = Arc::new(AtomicUsize::new(0));
            let peak = Arc::new(AtomicUsize::new(0));
            let work = |i: usize| {
                let (now, peak) = (now.clone(), peak.clone());
                async move {
                    let in_flight = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(in_flight, Ordering::SeqCst);
                    let ms = 5 + (i * 7 % 11) as u64;
                    tokio::spawn(tokio::time::sleep(Duration::from_millis(ms)))
                        .await
                        .unwrap();
                    now.fetch_sub(1, Ordering::SeqCst);
                    i
                }
            };
            let mut paced = Paced::new(0..n, max, work);
            let mut seen = Vec::new();
            while let Some(i) = paced.next().await {
                seen.push(i);
            }
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "every item ends once");
            assert_eq!(peak.load(Ordering::SeqCst), max.min(n), "n {n} max {max}");
        }
    }

    #[tokio::test]
    async fn stop_starts_nothing_more() {
        let started = AtomicUsize::new(0);
        let mut paced = Paced::new(0..10, 2, |i: usize| {
            started.fetch_add(1, Ordering::SeqCst);
            async move { i }
        });
        assert!(paced.next().await.is_some());
        paced.stop();
        let mut rest = 0;
        while paced.next().await.is_some() {
            rest += 1;
        }
        assert_eq!(started.load(Ordering::SeqCst), 3, "2 at first, 1 refill");
        assert_eq!(rest, 2, "those in flight end");
    }

    #[test]
    fn counts_and_audit_line() {
        let mut c = Counts::default();
        for o in [ItemOutcome::Ok, ItemOutcome::Ok, ItemOutcome::Refused] {
            c.add(o);
        }
        c.add(ItemOutcome::Offline);
        assert_eq!(c.describe(), "2 ok, 1 refused, 1 offline");
        assert_eq!(c.total(), 4);
        assert_eq!(Counts::default().describe(), "none");
        let b = Bulk {
            select: "tag=floor2".into(),
            action: Action::Run {
                check: "disk".into(),
                args: vec!["/var".into()],
            },
            ticket: Some(3),
            max_in_flight: Some(4),
            queue_for_secs: None,
        };
        let line = b.audit();
        assert_eq!(line.action, "bulk run disk /var");
        assert_eq!(
            line.args,
            "--select tag=floor2 --ticket 3 --max-in-flight 4"
        );
        assert_eq!(b.role(), Role::Technician, "writing into a ticket");
    }
}
