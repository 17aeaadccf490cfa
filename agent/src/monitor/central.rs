//! Central monitors: the sets an admin defined on the relay for the agents
//! a selector picks (`firstline monitors set`), run here beside the local
//! `[[monitor]]`s of `agent.toml`.
//!
//! **The wall stays the agent's.** A central monitor is a request that
//! repeats, so it is checked as a remote `exec` is — and then some: it
//! runs only if
//! 1. `[policy] central_monitors` is true (the default);
//! 2. this agent has the check and the check takes the arguments
//!    ([`crate::config::check_monitor`], as for a local table);
//! 3. the role of the admin who set it, as the relay sends it, may run
//!    that check so ([`firstline_proto::effect::check_role`], as for
//!    `exec`);
//! 4. `[policy]` lets it run: a plugin must be in `plugins` (as for a
//!    local table and for `exec`; wrappers never);
//! 5. no local `[[monitor]]` has its id: **the local one wins** (the
//!    machine's admin has the last word), and no earlier set (by name) has
//!    a monitor of that id.
//!
//! Nothing here can widen the policy; each refused monitor is reported to
//! the relay with its reason (`central_monitors_report`), never dropped
//! silently, and logged.
//!
//! **Kept on disk.** The last sets received are written (owner-only,
//! atomically: [`firstline_net::private`]) to `central-monitors.json` in
//! the state folder, and run from there when the agent starts, so a
//! restart while no relay answers still monitors. A new message replaces
//! them whole: monitors whose table did not change keep running (and their
//! schedule), the others stop or start. Their results and incidents take
//! the path of local ones (outbox → relay → tickets), under their id.

use super::Monitor;
use crate::checks::CheckContext;
use crate::config::{check_monitor, policy_allows_monitor, Loaded};
use crate::outbox::Outbox;
use firstline_proto::central::{CentralMonitor, CentralReport, CentralSet, MonitorState};
use firstline_proto::effect;
use firstline_proto::text::printable;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The file of the last sets received, in the state folder.
pub const FILE: &str = "central-monitors.json";

/// What is kept on disk: the relay's message as it came.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    digest: String,
    sets: Vec<CentralSet>,
}

/// The central monitors of this agent: what runs, and the last report.
pub struct Central {
    cfg: Loaded,
    ctx: CheckContext,
    outbox: Arc<Outbox>,
    shutdown: watch::Receiver<bool>,
    /// Ids of the local monitors (they win).
    local: HashSet<String>,
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    running: HashMap<String, (Monitor, JoinHandle<()>)>,
    report: CentralReport,
}

/// Why `m` of `set` (of id `id`) may not run here, if it may not: the
/// rules of the module's doc, in order.
fn refusal(
    policy: &crate::policy::Policy,
    local: &HashSet<String>,
    taken: &HashMap<String, String>,
    set: &CentralSet,
    m: &firstline_proto::central::MonitorSpec,
    id: &str,
) -> Option<String> {
    if !policy.central_monitors {
        return Some("this agent's policy takes no central monitors ([policy] central_monitors = false in agent.toml)".into());
    }
    let problems = problems(m);
    if !problems.is_empty() {
        let all: Vec<String> = problems.into_iter().map(|(_, msg)| msg).collect();
        return Some(all.join("; "));
    }
    let needed = effect::check_role(&m.check, &m.args);
    if needed > set.role {
        return Some(format!(
            "the set was made by a {}, and running the check `{}` so needs the role {needed} here",
            set.role, m.check
        ));
    }
    if let Err(why) = policy_allows_monitor(policy, m) {
        return Some(why);
    }
    if local.contains(id) {
        return Some(format!(
            "a local [[monitor]] of agent.toml has the id `{id}`: the local one runs"
        ));
    }
    taken.get(id).map(|other| {
        format!("set `{other}` has a monitor of the id `{id}` already: give one a `name`")
    })
}

/// Which monitors of `sets` may run here, and what to tell the relay of
/// each (see the module's doc for the rules, in order).
pub fn evaluate(
    cfg: &Loaded,
    local: &HashSet<String>,
    digest: &str,
    sets: &[CentralSet],
) -> (Vec<Monitor>, CentralReport) {
    let policy = &cfg.config.policy;
    let mut taken: HashMap<String, String> = HashMap::new();
    let mut run = Vec::new();
    let mut report = CentralReport {
        digest: digest.to_string(),
        monitors: Vec::new(),
    };
    for set in sets {
        for m in &set.monitors {
            let id = m.id();
            let refusal = refusal(policy, local, &taken, set, m, &id);
            let state = match &refusal {
                None => {
                    taken.insert(id.clone(), set.name.clone());
                    run.push(cfg.monitor_of(m.clone()));
                    MonitorState::Active
                }
                Some(why) => {
                    tracing::warn!(
                        set = %printable(&set.name),
                        monitor = %printable(&id),
                        "central monitor refused: {}",
                        printable(why)
                    );
                    MonitorState::Refused
                }
            };
            report.monitors.push(CentralMonitor {
                set: set.name.clone(),
                monitor: id,
                check: m.check.clone(),
                state,
                reason: refusal,
            });
        }
    }
    (run, report)
}

/// What keeps `m` from running here whatever the policy says: its table
/// (`every`, counters), its check and arguments.
fn problems(m: &firstline_proto::central::MonitorSpec) -> Vec<(&'static str, String)> {
    let mut all = firstline_net::monitors::spec_problems(m);
    all.extend(check_monitor(m));
    all
}

impl Central {
    /// Start the central monitors kept on disk (none when there is no
    /// file, or it cannot be read: logged).
    pub fn start(
        cfg: &Loaded,
        ctx: CheckContext,
        outbox: Arc<Outbox>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Central> {
        let local = cfg.monitors().into_iter().map(|m| m.id).collect();
        let central = Arc::new(Central {
            path: cfg.state_dir.join(FILE),
            cfg: cfg.clone(),
            ctx,
            outbox,
            shutdown,
            local,
            inner: Mutex::new(Inner::default()),
        });
        let saved = match std::fs::read(&central.path) {
            Ok(bytes) => match serde_json::from_slice::<Saved>(&bytes) {
                Ok(saved) => Some(saved),
                Err(e) => {
                    tracing::error!(
                        "cannot read {}: {e}; no central monitors until the relay sends them",
                        central.path.display()
                    );
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::error!("cannot read {}: {e}", central.path.display());
                None
            }
        };
        if let Some(saved) = saved {
            let report = central.run(&saved.digest, &saved.sets);
            tracing::info!(
                sets = saved.sets.len(),
                active = active(&report),
                "central monitors from the last relay message"
            );
        }
        central
    }

    /// Apply the sets the relay sent: keep them on disk, run those the
    /// wall allows; the report for the relay.
    pub fn apply(&self, digest: String, sets: Vec<CentralSet>) -> CentralReport {
        let saved = Saved { digest, sets };
        match serde_json::to_vec(&saved) {
            Ok(bytes) => {
                if let Err(e) = firstline_net::private::write_private(&self.path, &bytes) {
                    tracing::error!(
                        "cannot keep the central monitors in {}: {e} (they run until the agent stops)",
                        self.path.display()
                    );
                }
            }
            Err(e) => tracing::error!("cannot encode the central monitors: {e}"),
        }
        let report = self.run(&saved.digest, &saved.sets);
        tracing::info!(
            sets = saved.sets.len(),
            active = active(&report),
            refused = report.monitors.len() - active(&report),
            "central monitors applied"
        );
        report
    }

    /// The report of what runs now.
    pub fn report(&self) -> CentralReport {
        self.lock().report.clone()
    }

    /// Stop every central monitor (the agent stops).
    pub fn stop(&self) {
        for (_, (_, task)) in self.lock().running.drain() {
            task.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run what `sets` allow: unchanged monitors keep running, the others
    /// stop or start.
    fn run(&self, digest: &str, sets: &[CentralSet]) -> CentralReport {
        let (wanted, report) = evaluate(&self.cfg, &self.local, digest, sets);
        let mut inner = self.lock();
        let mut wanted: HashMap<String, Monitor> =
            wanted.into_iter().map(|m| (m.id.clone(), m)).collect();
        inner.running.retain(|id, (m, task)| {
            let keep = wanted.get(id) == Some(m) && !task.is_finished();
            if keep {
                wanted.remove(id);
            } else {
                task.abort();
            }
            keep
        });
        for (id, m) in wanted {
            let task = tokio::spawn(super::run(
                m.clone(),
                self.ctx.clone(),
                self.outbox.clone(),
                self.shutdown.clone(),
            ));
            inner.running.insert(id, (m, task));
        }
        inner.report = report.clone();
        report
    }
}

fn active(r: &CentralReport) -> usize {
    r.monitors
        .iter()
        .filter(|m| m.state == MonitorState::Active)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use firstline_proto::central::MonitorSpec;
    use firstline_proto::Role;

    fn loaded(extra: &str) -> (tempfile::TempDir, Loaded) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(
            &p,
            format!("relay = \"x:1\"\nname = \"pc1\"\ndefault_monitors = false\n\n[[monitor]]\nname = \"root\"\ncheck = \"disk\"\nargs = [\"/\"]\nevery = \"5m\"\n{extra}"),
        )
        .unwrap();
        let l = Loaded::load(&p).unwrap();
        (dir, l)
    }

    fn spec(name: Option<&str>, check: &str, args: &[&str]) -> MonitorSpec {
        MonitorSpec {
            name: name.map(str::to_string),
            check: check.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            every: "1m".into(),
            fail_after: None,
            recover_after: None,
        }
    }

    fn states(cfg: &Loaded, sets: &[CentralSet]) -> Vec<(String, MonitorState, String)> {
        let local = cfg.monitors().into_iter().map(|m| m.id).collect();
        let (_, report) = evaluate(cfg, &local, "d", sets);
        report
            .monitors
            .into_iter()
            .map(|m| (m.monitor, m.state, m.reason.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn the_wall_decides_and_says_why() {
        let (_d, cfg) = loaded("\n[policy]\nplugins = [\"check_disk\"]\n");
        let sets = vec![
            CentralSet {
                name: "a".into(),
                role: Role::Admin,
                monitors: vec![
                    spec(None, "tcp", &["127.0.0.1:9"]),
                    spec(Some("root"), "disk", &["/var"]),
                    spec(None, "plugin", &["check_dummy", "0"]),
                    spec(None, "plugin", &["check_disk", "-w", "10%"]),
                    spec(None, "teleport", &[]),
                    spec(None, "disk", &["/", "--wrn", "80"]),
                ],
            },
            CentralSet {
                name: "b".into(),
                role: Role::Viewer,
                monitors: vec![
                    spec(None, "tcp", &["127.0.0.1:9"]),
                    spec(Some("p"), "plugin", &["check_disk", "-w", "10%"]),
                ],
            },
        ];
        let got = states(&cfg, &sets);
        let expect: &[(&str, MonitorState, &str)] = &[
            ("tcp 127.0.0.1:9", MonitorState::Active, ""),
            ("root", MonitorState::Refused, "the local one runs"),
            (
                "plugin check_dummy 0",
                MonitorState::Refused,
                "does not allow the plugin `check_dummy`",
            ),
            ("plugin check_disk -w 10%", MonitorState::Active, ""),
            (
                "teleport",
                MonitorState::Refused,
                "unknown check `teleport`",
            ),
            ("disk / --wrn 80", MonitorState::Refused, "--wrn"),
            ("tcp 127.0.0.1:9", MonitorState::Refused, "set `a` has"),
            ("p", MonitorState::Refused, "needs the role technician"),
        ];
        assert_eq!(got.len(), expect.len(), "{got:?}");
        for ((id, state, why), (eid, estate, ewhy)) in got.iter().zip(expect) {
            assert_eq!((id.as_str(), *state), (*eid, *estate), "{got:?}");
            assert!(why.contains(ewhy), "{id}: {why}");
        }
        let (_d, off) = loaded("\n[policy]\ncentral_monitors = false\n");
        let got = states(&off, &sets[..1]);
        assert!(got
            .iter()
            .all(|(_, s, why)| *s == MonitorState::Refused && why.contains("central_monitors")));
    }

    #[tokio::test]
    async fn sets_are_kept_on_disk_and_run_after_a_restart() {
        let (dir, cfg) = loaded("");
        let outbox = Arc::new(Outbox::open(&dir.path().join("outbox.db"), 100).unwrap());
        let (_tx, shutdown) = watch::channel(false);
        let central = Central::start(
            &cfg,
            CheckContext::default(),
            outbox.clone(),
            shutdown.clone(),
        );
        assert!(central.report().monitors.is_empty());
        let sets = vec![CentralSet {
            name: "a".into(),
            role: Role::Admin,
            monitors: vec![spec(None, "tcp", &["127.0.0.1:9"])],
        }];
        let report = central.apply("d1".into(), sets.clone());
        assert_eq!(active(&report), 1);
        let path = cfg.state_dir.join(FILE);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "private: {mode:o}");
        central.stop();
        let again = Central::start(&cfg, CheckContext::default(), outbox, shutdown);
        let report = again.report();
        assert_eq!((report.digest.as_str(), active(&report)), ("d1", 1));
        assert_eq!(again.lock().running.len(), 1);
        // Replaced whole: an empty message stops them.
        let report = again.apply("d2".into(), vec![]);
        assert!(report.monitors.is_empty());
        assert!(again.lock().running.is_empty());
        again.stop();
    }
}
