//! Action jobs: a run, fix, runbook or bulk action started from a page,
//! kept while it runs and for a while after, so its answers can be streamed
//! to the page that started it (`GET /jobs/ID/events`) — also to a page
//! that connects late or reconnects, from where it left off.
//!
//! Why a job and not one long POST: the browser's form post ends at once
//! (a redirect or `{job}`), the action keeps running here whatever the
//! browser does (as the CLI would finish it), and the page follows it as
//! server-sent events (`EventSource` reconnects by itself, `Last-Event-ID`
//! says where it was).
//!
//! Bounded, as everything that a page can make this process keep: at most
//! [`MAX_JOBS`] jobs (a new one makes room by forgetting the oldest that
//! ended; when all are still running it is refused), each forgotten
//! [`KEEP_ENDED`] after it ends, and at most [`MAX_ITEMS`] items each (the
//! end is always kept). A job is read only with the session that made it.

use super::view::{self, Item};
use super::{AppState, WebError};
use firstline_proto::action::ItemOutcome;
use firstline_proto::Message;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Jobs kept at once, running or ended.
pub const MAX_JOBS: usize = 32;
/// How long an ended job is kept for its page.
pub const KEEP_ENDED: Duration = Duration::from_secs(10 * 60);
/// Items kept per job (a bulk action on this many machines still fits).
pub const MAX_ITEMS: usize = 5_000;

/// What a job is, as its page shows it.
#[derive(Debug, Clone, Default)]
pub struct JobInfo {
    /// `run disk /var on pc1`.
    pub what: String,
    /// Its one machine (jobs on several have none).
    pub agent: Option<String>,
    /// The form fields that run this dry run for real; `None` when it is
    /// no dry run.
    pub for_real: Option<Vec<(String, String)>>,
    /// The machines asked for by name (several): those the relay did not
    /// select are named at the end.
    pub names: Vec<String>,
}

/// One action and what came back of it so far.
pub struct Job {
    pub id: String,
    /// The session that made it (a digest of its cookie).
    owner: String,
    pub info: JobInfo,
    state: Mutex<JobState>,
    /// How many items there are: woken on each new one and at the end.
    changed: watch::Sender<usize>,
}

#[derive(Default)]
struct JobState {
    items: Vec<Item>,
    /// Items left out past [`MAX_ITEMS`].
    dropped: usize,
    ended: Option<Instant>,
    /// A bulk action's selection count and each machine's outcome.
    bulk: Option<(u64, Vec<(String, ItemOutcome)>)>,
}

impl Job {
    pub fn new(owner: &str, info: JobInfo) -> Job {
        Job {
            id: random_id(),
            owner: owner.to_string(),
            info,
            state: Mutex::new(JobState::default()),
            changed: watch::channel(0).0,
        }
    }

    fn state(&self) -> MutexGuard<'_, JobState> {
        // A panic while holding it cannot leave it half-written: recover.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The items from `from` on, and whether the job has ended.
    pub fn items(&self, from: usize) -> (Vec<Item>, bool) {
        let s = self.state();
        let items = s.items.get(from..).unwrap_or_default().to_vec();
        (items, s.ended.is_some())
    }

    pub fn ended(&self) -> bool {
        self.state().ended.is_some()
    }

    /// `running…`, `done`, `refused` or `failed`: as its page says it.
    pub fn state_word(&self) -> String {
        let s = self.state();
        match (s.ended, s.items.last()) {
            (None, _) => "running…".into(),
            (Some(_), Some(last)) if last.kind == "error" => {
                last.status.clone().unwrap_or_else(|| "failed".into())
            }
            (Some(_), _) => "done".into(),
        }
    }

    /// Items kept so far.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.state().items.len()
    }

    /// Wakes when items are added or the job ends.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.changed.subscribe()
    }

    fn push(&self, item: Item, last: bool) {
        let mut s = self.state();
        if s.ended.is_some() {
            return;
        }
        if s.items.len() < MAX_ITEMS - 1 || last {
            s.items.push(item);
        } else {
            s.dropped += 1;
        }
        let n = s.items.len();
        drop(s);
        self.changed.send_replace(n);
    }

    /// One answer of the relay.
    pub fn answer(&self, m: &Message) {
        match m {
            Message::BulkStarted { selected, .. } => {
                let mut s = self.state();
                let bulk = s.bulk.get_or_insert_with(Default::default);
                bulk.0 += selected;
            }
            Message::BulkItem(b) => {
                let mut s = self.state();
                let bulk = s.bulk.get_or_insert_with(Default::default);
                bulk.1.push((b.agent.clone(), b.outcome));
            }
            _ => {}
        }
        if let Some(item) = view::answer(m) {
            self.push(item, false);
        }
    }

    /// The end: the bulk summary (if any), then `done` or the error.
    pub fn finish(&self, error: Option<&WebError>) {
        let (bulk, dropped) = {
            let s = self.state();
            (s.bulk.clone(), s.dropped)
        };
        if let Some((selected, items)) = bulk {
            let mut summary = view::summary(&items, selected);
            let missing: Vec<&str> = self
                .info
                .names
                .iter()
                .filter(|n| !items.iter().any(|(a, _)| a == *n))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() && error.is_none() {
                summary.lines.push(super::text(&format!(
                    "not selected (not enrolled, or removed): {}",
                    missing.join(", ")
                )));
            }
            self.push(summary, true);
        }
        let mut end = match error {
            None => view::end(None),
            Some(WebError::Relay { code, message }) => {
                let code = serde_json::to_value(code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| "other".into());
                view::end(Some((&code, message)))
            }
            Some(e) => view::end(Some(("lost", &e.to_string()))),
        };
        if dropped > 0 {
            end.lines.push(format!(
                "{dropped} answers were not kept (at most {MAX_ITEMS})"
            ));
        }
        self.push(end, true);
        let mut s = self.state();
        s.ended = Some(Instant::now());
        let n = s.items.len();
        drop(s);
        self.changed.send_replace(n);
    }

    /// Results and verdicts this job got from `agent`, newest last.
    fn results_of(&self, agent: &str) -> Vec<Item> {
        let s = self.state();
        let mine = self.info.agent.as_deref() == Some(agent);
        s.items
            .iter()
            .filter(|i| match i.kind.as_str() {
                "result" | "verdict" => mine,
                "bulk_item" => i.agent.as_deref() == Some(agent),
                _ => false,
            })
            .cloned()
            .collect()
    }
}

/// Every job kept, oldest first.
#[derive(Default)]
pub struct Jobs {
    jobs: Mutex<Vec<Arc<Job>>>,
}

impl Jobs {
    fn list(&self) -> MutexGuard<'_, Vec<Arc<Job>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `job`, forgetting those ended more than [`KEEP_ENDED`] before
    /// `now` and, when full, the oldest ended one; refused when all
    /// [`MAX_JOBS`] are still running.
    pub fn add(&self, job: Job, now: Instant) -> Result<Arc<Job>, String> {
        let mut list = self.list();
        purge(&mut list, now);
        if list.len() >= MAX_JOBS {
            match list.iter().position(|j| j.ended()) {
                Some(oldest) => {
                    list.remove(oldest);
                }
                None => {
                    return Err(format!(
                        "{MAX_JOBS} actions are still running: wait for one to end"
                    ))
                }
            }
        }
        let job = Arc::new(job);
        list.push(job.clone());
        Ok(job)
    }

    /// The job `id`, if kept and made by `owner`.
    pub fn get(&self, id: &str, owner: &str, now: Instant) -> Option<Arc<Job>> {
        let mut list = self.list();
        purge(&mut list, now);
        list.iter()
            .find(|j| j.id == id && j.owner == owner)
            .cloned()
    }

    /// The results `owner`'s jobs got from `agent`, newest first, at most
    /// `max`.
    pub fn recent(&self, owner: &str, agent: &str, max: usize) -> Vec<Item> {
        let list: Vec<Arc<Job>> = self.list().clone();
        list.iter()
            .rev()
            .filter(|j| j.owner == owner)
            .flat_map(|j| j.results_of(agent).into_iter().rev())
            .take(max)
            .collect()
    }
}

fn purge(list: &mut Vec<Arc<Job>>, now: Instant) {
    list.retain(|j| {
        j.state()
            .ended
            .is_none_or(|at| now.saturating_duration_since(at) < KEEP_ENDED)
    });
}

/// Run `requests` one after the other for `job` (several for a bulk
/// action on more machines than one selector names), its answers kept as
/// they come; the first error ends it.
pub fn start(web: AppState, job: Arc<Job>, requests: Vec<Message>) {
    tokio::spawn(async move {
        for request in requests {
            let mut answers = match web.open(request).await {
                Ok(a) => a,
                Err(e) => return job.finish(Some(&e)),
            };
            loop {
                match answers.next().await {
                    Ok(Some(m)) => job.answer(&m),
                    Ok(None) => break,
                    Err(e) => return job.finish(Some(&e)),
                }
            }
        }
        job.finish(None);
    });
}

/// A job id: 128 random bits, hex.
fn random_id() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 16];
    // The system's random source failing is not something to go on without.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = t.to_le_bytes();
    }
    hex::encode(bytes)
}

/// Who is asking: a digest of the session cookie (the cookie itself is
/// not kept), empty without one (the guard lets none such through).
pub fn owner(headers: &axum::http::HeaderMap) -> String {
    let cookie = headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == super::guard::COOKIE)
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        cookie.as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use firstline_proto::{CheckResult, Status};

    fn result(agent_summary: &str) -> Message {
        Message::Result {
            result: CheckResult::new("disk", "/", Status::Ok, agent_summary),
        }
    }

    fn job(owner: &str, agent: Option<&str>) -> Job {
        Job::new(
            owner,
            JobInfo {
                what: "run disk".into(),
                agent: agent.map(str::to_string),
                for_real: None,
                names: vec!["pc1".into(), "pc2".into(), "pc3".into()],
            },
        )
    }

    #[test]
    fn jobs_are_bounded_and_forgotten() {
        let jobs = Jobs::default();
        let t0 = Instant::now();
        let mut kept = Vec::new();
        for _ in 0..MAX_JOBS {
            kept.push(jobs.add(job("s", None), t0).unwrap());
        }
        // All running: the next one is refused, nothing is dropped.
        let Err(e) = jobs.add(job("s", None), t0) else {
            panic!("a 33rd running job was kept")
        };
        assert!(e.contains("still running"), "{e}");
        // One ended: it makes room.
        kept[3].finish(None);
        let newer = jobs.add(job("s", None), t0).unwrap();
        assert!(jobs.get(&kept[3].id, "s", t0).is_none());
        assert!(jobs.get(&newer.id, "s", t0).is_some());
        // Another session cannot read it.
        assert!(jobs.get(&newer.id, "other", t0).is_none());
        // Ended jobs go some minutes after their end, running ones stay.
        newer.finish(None);
        let later = Instant::now() + KEEP_ENDED + Duration::from_secs(1);
        assert!(jobs.get(&newer.id, "s", later).is_none());
        assert!(jobs.get(&kept[0].id, "s", later).is_some());
    }

    #[test]
    fn items_are_bounded_and_the_end_is_kept() {
        let j = job("s", Some("pc1"));
        for i in 0..MAX_ITEMS + 10 {
            j.answer(&Message::Progress {
                text: format!("{i}"),
            });
        }
        j.finish(None);
        let (items, ended) = j.items(0);
        assert!(ended);
        assert_eq!(items.len(), MAX_ITEMS);
        let end = items.last().unwrap();
        assert_eq!(end.kind, "done");
        assert!(
            end.lines[0].contains("11 answers were not kept"),
            "{:?}",
            end.lines
        );
        // Nothing is added after the end.
        j.answer(&result("late"));
        assert_eq!(j.count(), MAX_ITEMS);
    }

    #[test]
    fn a_bulk_job_ends_with_its_summary() {
        use firstline_proto::action::BulkItem;
        let j = job("s", None);
        j.answer(&Message::BulkStarted {
            selected: 2,
            max_in_flight: 32,
        });
        for (agent, outcome) in [("pc1", ItemOutcome::Ok), ("pc2", ItemOutcome::Refused)] {
            j.answer(&Message::BulkItem(Box::new(BulkItem {
                agent: agent.into(),
                outcome,
                summary: "s".into(),
                result: None,
                verdict: None,
                queued: None,
            })));
        }
        j.finish(None);
        let (items, _) = j.items(0);
        let kinds: Vec<&str> = items.iter().map(|i| i.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["bulk_started", "bulk_item", "bulk_item", "summary", "done"]
        );
        assert_eq!(items[3].head, "2 selected: 1 ok, 1 refused");
        assert_eq!(
            items[3].lines,
            ["not selected (not enrolled, or removed): pc3"]
        );
        assert_eq!(j.state_word(), "done");
        assert_eq!(j.results_of("pc2").len(), 1);
    }

    #[test]
    fn recent_results_are_the_sessions_own() {
        let jobs = Jobs::default();
        let now = Instant::now();
        let a = jobs.add(job("s", Some("pc1")), now).unwrap();
        a.answer(&result("first"));
        let b = jobs.add(job("s", Some("pc1")), now).unwrap();
        b.answer(&result("second"));
        let c = jobs.add(job("t", Some("pc1")), now).unwrap();
        c.answer(&result("theirs"));
        let heads: Vec<String> = jobs
            .recent("s", "pc1", 10)
            .into_iter()
            .map(|i| i.head)
            .collect();
        assert_eq!(heads, ["disk /: second", "disk /: first"]);
        assert!(jobs.recent("s", "pc2", 10).is_empty());
    }

    #[test]
    fn errors_end_a_job() {
        let j = job("s", Some("pc1"));
        j.finish(Some(&WebError::Relay {
            code: firstline_proto::ErrorCode::Forbidden,
            message: "fix needs the technician role".into(),
        }));
        let (items, ended) = j.items(0);
        assert!(ended);
        assert_eq!(items[0].kind, "error");
        assert_eq!(items[0].status_word(), "refused");
        assert_eq!(items[0].lines[0], "relay code: forbidden");
        assert_eq!(j.state_word(), "refused");
    }
}
