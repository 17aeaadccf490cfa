//! `POST /actions`: a check, fix or runbook on one machine, a list of
//! machines, or every machine a selector picks — started as a job
//! ([`super::jobs`]) whose answers `GET /jobs/ID/events` streams, and
//! `GET /jobs/ID` shows (the page a browser without script lands on).
//!
//! The form is mapped to exactly what the CLI sends: one machine → `run`,
//! `fix` or `runbook`; several → `bulk`, whose selector names them as
//! `name=pc1|pc2|…` (alternatives of the selector grammar,
//! [`firstline_proto::select`]) — one request, so the relay paces them,
//! checks the role once and audits each machine as for `--select`; more
//! names than one selector holds are sent as a few such requests in turn.
//! Nothing here decides what the operator may do: a viewer's forged fix
//! goes to the relay, which refuses it, and the refusal is the job's end.

use super::jobs::{self, Job, JobInfo};
use super::view::Item;
use super::{field, fields, form_pairs, render, AppState, Nav, WebError};
use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use firstline_proto::action::Action;
use firstline_proto::select::{self, Selector};
use firstline_proto::Message;
use std::convert::Infallible;
use std::time::Instant;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/actions", post(start))
        .route("/jobs/{id}", get(page))
        .route("/jobs/{id}/events", get(events))
}

/// Which machines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    One(String),
    /// Several, by name (checked, without repeats).
    Names(Vec<String>),
    /// A selector, as written (checked).
    Select(String),
}

/// What a form asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub target: Target,
    pub action: Action,
    pub ticket: Option<u64>,
    pub max_in_flight: Option<u32>,
}

impl Plan {
    /// Read the action form (see [`super`] for its fields); the error is
    /// one line saying what to fix.
    pub fn from_form(pairs: &[(String, String)]) -> Result<Plan, String> {
        let target = target(pairs)?;
        let name = field(pairs, "name")
            .ok_or("say which check, fix or runbook to run (the `name` field is empty)")?
            .to_string();
        if name.starts_with('-') || name.contains(char::is_whitespace) {
            return Err(format!("`{name}` is not a check, fix or runbook name"));
        }
        let mut args = split_args(field(pairs, "args").unwrap_or(""))?;
        let dry_run = field(pairs, "dry_run").is_some_and(truthy);
        let action = match field(pairs, "kind").unwrap_or("run") {
            // A check changes nothing: a ticked "dry run" is moot.
            "run" => Action::Run { check: name, args },
            "fix" => Action::Fix {
                fix: name,
                args,
                dry_run,
            },
            "runbook" => {
                args.extend(params(pairs)?);
                Action::Runbook {
                    name,
                    params: args,
                    dry_run,
                }
            }
            other => return Err(format!("unknown kind `{other}`: use run, fix or runbook")),
        };
        let ticket = field(pairs, "ticket")
            .map(crate::tickets::ticket_number)
            .transpose()?;
        let max_in_flight = field(pairs, "max_in_flight")
            .map(|n| match n.parse::<u32>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!(
                    "at most `{n}` machines at a time: give a number, 1 or more"
                )),
            })
            .transpose()?;
        Ok(Plan {
            target,
            action,
            ticket,
            max_in_flight,
        })
    }

    /// The requests to send, in turn.
    pub fn requests(&self) -> Vec<Message> {
        let ticket = self.ticket;
        let selectors = match &self.target {
            Target::One(agent) => return vec![one(agent.clone(), self.action.clone(), ticket)],
            Target::Select(s) => vec![s.clone()],
            Target::Names(names) => name_selectors(names),
        };
        selectors
            .into_iter()
            .map(|select| Message::Bulk {
                select,
                action: self.action.clone(),
                ticket,
                max_in_flight: self.max_in_flight,
                queue_for_secs: None,
            })
            .collect()
    }

    /// `fix clean-temp /tmp (dry run) on pc1`.
    pub fn what(&self) -> String {
        let on = match &self.target {
            Target::One(a) => a.clone(),
            Target::Names(n) if n.len() <= 3 => n.join(", "),
            Target::Names(n) => format!("{} machines", n.len()),
            Target::Select(s) => format!("`{s}`"),
        };
        let into = self
            .ticket
            .map(|t| format!(" into #{t}"))
            .unwrap_or_default();
        super::text(&format!("{} on {on}{into}", self.action.describe()))
    }

    pub fn is_dry_run(&self) -> bool {
        matches!(
            self.action,
            Action::Fix { dry_run: true, .. } | Action::Runbook { dry_run: true, .. }
        )
    }

    /// The job's description; a dry run carries the form that runs it
    /// for real.
    pub fn info(&self, pairs: &[(String, String)]) -> JobInfo {
        let agent = match &self.target {
            Target::One(a) => Some(a.clone()),
            _ => None,
        };
        let for_real = self.is_dry_run().then(|| {
            pairs
                .iter()
                .filter(|(k, _)| k != "dry_run")
                .cloned()
                .collect()
        });
        let names = match &self.target {
            Target::Names(n) => n.clone(),
            _ => Vec::new(),
        };
        JobInfo {
            what: self.what(),
            agent,
            for_real,
            names,
        }
    }
}

/// One machine's request.
fn one(agent: String, action: Action, ticket: Option<u64>) -> Message {
    match action {
        Action::Run { check, args } => Message::Run {
            agent,
            check,
            args,
            ticket,
            queue_for_secs: None,
        },
        Action::Fix { fix, args, dry_run } => Message::Fix {
            agent,
            action: fix,
            args,
            dry_run,
            ticket,
            queue_for_secs: None,
        },
        Action::Runbook {
            name,
            params,
            dry_run,
        } => Message::Runbook {
            agent,
            name,
            params,
            dry_run,
            ticket,
            queue_for_secs: None,
        },
    }
}

/// The form's target: `target`, `agents` or `select`, exactly one.
fn target(pairs: &[(String, String)]) -> Result<Target, String> {
    let one = field(pairs, "target");
    let mut names: Vec<&str> = fields(pairs, "agents");
    let select = field(pairs, "select");
    let given =
        usize::from(one.is_some()) + usize::from(!names.is_empty()) + usize::from(select.is_some());
    if given != 1 {
        return Err(if given == 0 {
            "choose the machines: none is selected".into()
        } else {
            "give one machine, a list of machines or a selector, not several".into()
        });
    }
    if let Some(s) = select {
        Selector::parse(s).map_err(|e| format!("selector: {e}"))?;
        return Ok(Target::Select(s.to_string()));
    }
    if let Some(a) = one {
        names.push(a);
    }
    for n in &names {
        check_name(n)?;
    }
    let mut unique: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        if !unique.iter().any(|u| u == n) {
            unique.push(n.to_string());
        }
    }
    Ok(match (one, unique.len()) {
        (Some(_), _) | (None, 1) => Target::One(unique.remove(0)),
        _ => Target::Names(unique),
    })
}

/// An agent name: 1–64 letters, digits, `.`, `_`, `-` (never a glob).
pub(super) fn check_name(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= select::MAX_TAG_LEN
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a machine name (letters, digits, `.`, `_`, `-`)",
            super::text(n)
        ))
    }
}

/// Selectors `name=a|b|…` naming every one of `names`, each at most
/// [`select::MAX_LEN`] bytes.
pub fn name_selectors(names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for n in names {
        if !current.is_empty() && current.len() + 1 + n.len() > select::MAX_LEN {
            out.push(std::mem::take(&mut current));
        }
        current.push_str(if current.is_empty() { "name=" } else { "|" });
        current.push_str(n);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A runbook's parameters from `param.KEY` fields: `KEY=VALUE` for each
/// one filled in (left empty: the runbook's default).
fn params(pairs: &[(String, String)]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        let Some(key) = k.strip_prefix("param.") else {
            continue;
        };
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        let ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if !ok {
            return Err(format!("`{}` is not a parameter name", super::text(key)));
        }
        out.push(format!("{key}={v}"));
    }
    Ok(out)
}

/// A checkbox or button value that means yes.
fn truthy(v: &str) -> bool {
    matches!(v, "on" | "true" | "1" | "yes")
}

/// Split arguments as a shell would, without a shell: blanks separate
/// words; `'…'` keeps everything as it is; `"…"` keeps blanks, and `\"`,
/// `\\` inside it are a quote and a backslash; a `\` outside quotes keeps
/// the next character as it is. Nothing is expanded (no `$`, `*`, `~`).
pub fn split_args(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether a word has started (`''` is an empty word).
    let mut started = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            '\'' => {
                started = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("arguments: a `'` is not closed".into()),
                    }
                }
            }
            '"' => {
                started = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("arguments: a `\"` is not closed".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("arguments: a `\"` is not closed".into()),
                    }
                }
            }
            '\\' => {
                started = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => {
                        return Err(
                            "arguments: a `\\` ends them; write `\\\\` for a backslash".into()
                        )
                    }
                }
            }
            c => {
                started = true;
                word.push(c);
            }
        }
    }
    if started {
        words.push(word);
    }
    Ok(words)
}

/// Whether the browser asked for JSON (the page's script) rather than a
/// page (a form posted without script).
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn start(State(web): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let as_json = wants_json(&headers);
    let refuse = |status: StatusCode, message: String| {
        if as_json {
            json(status, serde_json::json!({ "error": message }))
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            (status, WebError::Internal(message)).into_response()
        } else {
            WebError::BadRequest(message).into_response()
        }
    };
    let pairs = form_pairs(&body);
    let plan = match Plan::from_form(&pairs) {
        Ok(p) => p,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, super::text(&e)),
    };
    let job = Job::new(&jobs::owner(&headers), plan.info(&pairs));
    let job = match web.jobs.add(job, Instant::now()) {
        Ok(j) => j,
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let id = job.id.clone();
    let what = job.info.what.clone();
    jobs::start(web.clone(), job, plan.requests());
    if as_json {
        json(
            StatusCode::ACCEPTED,
            serde_json::json!({
                "job": id,
                "what": what,
                "events": format!("/jobs/{id}/events"),
                "page": format!("/jobs/{id}"),
            }),
        )
    } else {
        (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, format!("/jobs/{id}"))],
        )
            .into_response()
    }
}

/// A job's page: what it is, its answers so far (the script follows the
/// rest), and for a dry run the form that runs it for real.
#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    nav: Nav,
    id: String,
    what: String,
    agent: Option<String>,
    items: Vec<Item>,
    ended: bool,
    /// `running…`, `done`, `refused` or `failed`.
    state: String,
    for_real: Option<Vec<(String, String)>>,
}

async fn page(
    State(web): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let job = find(&web, &id, &headers)?;
    let nav = web.nav("fleet").await?;
    let (items, ended) = job.items(0);
    let state = job.state_word();
    let for_real = job.info.for_real.clone().filter(|_| nav.can_fix());
    render(&JobPage {
        nav,
        id: job.id.clone(),
        what: job.info.what.clone(),
        agent: job.info.agent.clone(),
        items,
        ended,
        state,
        for_real,
    })
}

fn find(web: &AppState, id: &str, headers: &HeaderMap) -> Result<std::sync::Arc<Job>, WebError> {
    web.jobs
        .get(id, &jobs::owner(headers), Instant::now())
        .ok_or_else(|| {
            WebError::NotFound(
                "no such action: it ended more than a few minutes ago, or another session started it"
                    .into(),
            )
        })
}

#[derive(serde::Deserialize)]
struct From {
    from: Option<usize>,
}

/// The job's items as server-sent events, from `?from=N` or after the
/// `Last-Event-ID` the browser reconnects with; the stream ends after the
/// job's last item (`done` or `error`).
async fn events(
    State(web): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<From>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let job = find(&web, &id, &headers)?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .map(|last| last + 1);
    let from = resume.or(q.from).unwrap_or(0);
    let rx = job.subscribe();
    let stream = futures_util::stream::unfold(
        (job, rx, from, Vec::<(usize, Item)>::new(), false),
        |(job, mut rx, mut next, mut queue, mut done)| async move {
            loop {
                if let Some((n, item)) = (!queue.is_empty()).then(|| queue.remove(0)) {
                    let data = serde_json::to_string(&item).unwrap_or_else(|_| "{}".into());
                    let event = Event::default()
                        .event(item.kind.clone())
                        .id(n.to_string())
                        .data(data);
                    return Some((Ok::<_, Infallible>(event), (job, rx, next, queue, done)));
                }
                if done {
                    return None;
                }
                rx.borrow_and_update();
                let (items, ended) = job.items(next);
                queue = items
                    .into_iter()
                    .enumerate()
                    .map(|(i, it)| (next + i, it))
                    .collect();
                next += queue.len();
                // Ended, or nothing new and the job gone: this is the last round.
                if ended || (queue.is_empty() && rx.changed().await.is_err()) {
                    done = true;
                }
            }
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(s: &str) -> Vec<(String, String)> {
        form_pairs(s.as_bytes())
    }

    #[test]
    fn arguments_split_like_a_shell_without_one() {
        let s = |t: &str| split_args(t).unwrap();
        assert_eq!(s("/var --warn 80"), ["/var", "--warn", "80"]);
        assert_eq!(s("  a\t b  "), ["a", "b"]);
        assert!(s("").is_empty() && s("   ").is_empty());
        assert_eq!(s("'My Printer' x"), ["My Printer", "x"]);
        assert_eq!(s(r#""a \"b\" c\\d" e"#), [r#"a "b" c\d"#, "e"]);
        assert_eq!(s(r#""\n""#), [r"\n"], "other escapes stay as written");
        assert_eq!(s(r"a\ b"), ["a b"]);
        assert_eq!(s("''"), [""], "an empty quoted word is a word");
        assert_eq!(s("name='x y'z"), ["name=x yz"]);
        assert_eq!(s("$HOME *"), ["$HOME", "*"], "nothing is expanded");
        assert!(split_args("'open").unwrap_err().contains("not closed"));
        assert!(split_args("\"open").unwrap_err().contains("not closed"));
        assert!(split_args("end\\").unwrap_err().contains("backslash"));
    }

    #[test]
    fn one_machine_is_its_own_request() {
        let p = Plan::from_form(&form(
            "target=pc1&kind=run&name=disk&args=%2Fvar+--warn+80&ticket=%2312",
        ))
        .unwrap();
        assert_eq!(
            p.requests(),
            [Message::Run {
                agent: "pc1".into(),
                check: "disk".into(),
                args: vec!["/var".into(), "--warn".into(), "80".into()],
                ticket: Some(12),
                queue_for_secs: None,
            }]
        );
        assert_eq!(p.what(), "run disk /var --warn 80 on pc1 into #12");
        let fix = Plan::from_form(&form(
            "target=pc1&kind=fix&name=clean-temp&args=%2Ftmp&dry_run=on",
        ))
        .unwrap();
        assert!(
            matches!(&fix.requests()[0], Message::Fix { dry_run: true, action, .. } if action == "clean-temp")
        );
        let info = fix.info(&form("target=pc1&kind=fix&name=clean-temp&dry_run=on"));
        let real = info.for_real.unwrap();
        assert!(real.iter().all(|(k, _)| k != "dry_run"), "{real:?}");
        let real = Plan::from_form(&real).unwrap();
        assert!(!real.is_dry_run());
        let rb = Plan::from_form(&form(
            "target=pc1&kind=runbook&name=cant-print&args=server%3Dlocalhost%3A631&param.printer=ipp%3A%2F%2Fp&param.server=&dry_run=off",
        ))
        .unwrap();
        assert!(
            matches!(&rb.requests()[0], Message::Runbook { params, dry_run: false, .. }
            if params == &["server=localhost:631", "printer=ipp://p"])
        );
        // One name in `agents` is one machine too.
        let single = Plan::from_form(&form("agents=pc1&kind=run&name=disk")).unwrap();
        assert_eq!(single.target, Target::One("pc1".into()));
        // A check ignores a ticked dry run.
        let run = Plan::from_form(&form("target=pc1&name=disk&dry_run=on")).unwrap();
        assert!(!run.is_dry_run());
    }

    #[test]
    fn several_machines_are_one_bulk_request() {
        let p = Plan::from_form(&form(
            "agents=pc1&agents=pc2&agents=pc1&kind=fix&name=flush-dns&max_in_flight=4",
        ))
        .unwrap();
        assert_eq!(p.target, Target::Names(vec!["pc1".into(), "pc2".into()]));
        let [Message::Bulk {
            select,
            action,
            max_in_flight,
            ..
        }] = &p.requests()[..]
        else {
            panic!("{:?}", p.requests())
        };
        assert_eq!(select, "name=pc1|pc2");
        assert_eq!(*max_in_flight, Some(4));
        assert_eq!(
            *action,
            Action::Fix {
                fix: "flush-dns".into(),
                args: vec![],
                dry_run: false
            }
        );
        // The relay reads back exactly those machines.
        let sel = Selector::parse(select).unwrap();
        let view = |name| firstline_proto::select::AgentView {
            name,
            tags: &[],
            os: "",
            online: true,
            health: firstline_proto::Status::Ok,
        };
        assert!(sel.matches(&view("pc2")) && !sel.matches(&view("pc3")));
        let by_sel = Plan::from_form(&form("select=tag%3Dfloor2&kind=run&name=disk")).unwrap();
        assert!(
            matches!(&by_sel.requests()[0], Message::Bulk { select, .. } if select == "tag=floor2")
        );
    }

    #[test]
    fn many_names_are_cut_into_selectors_that_fit() {
        let names: Vec<String> = (0..1000).map(|i| format!("machine-{i:04}")).collect();
        let sels = name_selectors(&names);
        assert!(sels.len() > 1);
        let mut seen = 0;
        for s in &sels {
            assert!(s.len() <= select::MAX_LEN, "{}", s.len());
            let sel = Selector::parse(s).unwrap();
            seen += s.trim_start_matches("name=").split('|').count();
            assert_eq!(sel.terms().len(), 1);
        }
        assert_eq!(seen, 1000);
        assert_eq!(name_selectors(&[]), Vec::<String>::new());
    }

    #[test]
    fn bad_forms_say_what_to_fix() {
        let e = |s: &str| Plan::from_form(&form(s)).unwrap_err();
        assert!(e("kind=run&name=disk").contains("none is selected"));
        assert!(e("target=pc1&select=tag%3Dx&name=disk").contains("not several"));
        assert!(e("target=pc1&kind=run").contains("name"));
        assert!(e("target=pc1&kind=reboot&name=x").contains("unknown kind"));
        assert!(e("target=pc*&name=disk").contains("not a machine name"));
        assert!(e("agents=a&agents=b%7Cc&name=disk").contains("not a machine name"));
        assert!(e("select=room%3D2&name=disk").contains("unknown selector key"));
        assert!(e("target=pc1&name=disk&ticket=x").contains("not a ticket number"));
        assert!(e("agents=a&agents=b&name=disk&max_in_flight=0").contains("1 or more"));
        assert!(e("target=pc1&name=disk&args=%27x").contains("not closed"));
        assert!(e("target=pc1&kind=runbook&name=x&param.a%20b=1").contains("parameter name"));
    }
}
