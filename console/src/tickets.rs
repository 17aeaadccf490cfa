//! `firstline tickets` and `firstline ticket …` (`firstline watch` is in
//! `watch.rs`).

use crate::client::Client;
use crate::output;
use anyhow::{bail, Result};
use firstline_proto::message::{PRIORITIES, STATUSES};
use firstline_proto::text::printable;
use firstline_proto::{Message, TicketChange, TicketEntry, TicketSummary};
use std::path::PathBuf;

/// A ticket number: `12` or `#12` (as tickets are shown). In a shell,
/// quote the `#` form (`'#12'`): an unquoted `#` starts a comment.
pub fn ticket_number(text: &str) -> Result<u64, String> {
    let digits = text.trim().strip_prefix('#').unwrap_or(text.trim());
    match digits.parse::<u64>() {
        Ok(n) if n > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("`{text}` is not a ticket number: write 12 or #12")),
    }
}

/// An age: a number and a unit — `s`, `m`, `h`, `d` or `w` — or several
/// (`1d12h`); as seconds.
pub fn parse_age(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not an age: write 30m, 12h, 7d or 2w");
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(total)
}

/// A ticket status, or an error that lists them.
pub fn status(text: &str) -> Result<String, String> {
    one_of("status", STATUSES, text)
}

/// A ticket priority, or an error that lists them.
pub fn priority(text: &str) -> Result<String, String> {
    one_of("priority", PRIORITIES, text)
}

fn one_of(what: &str, valid: &[&str], text: &str) -> Result<String, String> {
    if valid.contains(&text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "unknown {what} `{text}`: use one of {}",
            valid.join(", ")
        ))
    }
}

/// `firstline tickets`: the tickets matching every filter given.
#[derive(clap::Args)]
pub struct ListArgs {
    /// open, in_progress, resolved or closed.
    #[arg(long, value_parser = status)]
    pub status: Option<String>,
    /// Tickets of this agent (removed agents' too).
    #[arg(long)]
    pub agent: Option<String>,
    /// Tickets assigned to this operator.
    #[arg(long, value_name = "OPERATOR")]
    pub assignee: Option<String>,
    /// low, normal, high or urgent.
    #[arg(long, value_parser = priority)]
    pub priority: Option<String>,
    /// Text in the title, the opening text or a comment (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub search: Option<String>,
    /// Opened within the last AGE: 30m, 12h, 7d, 2w.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub since: Option<u64>,
    /// Opened more than AGE ago: 1d, 2w.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub older_than: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Subcommand)]
pub enum TicketCommand {
    /// Open a ticket.
    New {
        title: String,
        #[arg(long)]
        agent: Option<String>,
        /// low, normal (default), high or urgent.
        #[arg(long, value_parser = priority)]
        priority: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The ticket and its whole timeline.
    Show {
        /// Ticket number: 12 or '#12'.
        #[arg(value_name = "N", value_parser = ticket_number)]
        id: u64,
        #[arg(long)]
        json: bool,
    },
    /// Add a comment.
    Comment {
        #[arg(value_name = "N", value_parser = ticket_number)]
        id: u64,
        text: String,
        #[arg(long)]
        json: bool,
    },
    /// Assign to an operator (`firstline operator list` shows them).
    Assign {
        #[arg(value_name = "N", value_parser = ticket_number)]
        id: u64,
        operator: String,
        #[arg(long)]
        json: bool,
    },
    /// Set the priority: low, normal, high or urgent.
    Priority {
        #[arg(value_name = "N", value_parser = ticket_number)]
        id: u64,
        #[arg(value_parser = priority)]
        priority: String,
        #[arg(long)]
        json: bool,
    },
    /// Mark as being worked on (open → in_progress).
    Start {
        #[arg(value_name = "N", value_parser = ticket_number)]
        id: u64,
        #[arg(long)]
        json: bool,
    },
    /// Resolve, with an optional comment.
    Resolve {
        #[arg(value_name = "N", value_parser = ticket_number)]
        id: u64,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Close for good.
    Close {
        #[arg(value_name = "N", value_parser = ticket_number)]
        id: u64,
        #[arg(long)]
        json: bool,
    },
}

pub async fn list(cred: Option<PathBuf>, args: ListArgs) -> Result<i32> {
    let ListArgs {
        status,
        agent,
        assignee,
        priority,
        search,
        since,
        older_than,
        json,
    } = args;
    let request = Message::ListTickets {
        status,
        agent,
        assignee,
        priority,
        search,
        since_secs: since,
        older_than_secs: older_than,
    };
    let client = Client::connect(cred.as_deref()).await?;
    let parts = client.parts(request).await;
    client.close().await;
    let mut tickets = Vec::new();
    for part in parts? {
        match part {
            Message::Tickets { tickets: t } => tickets.extend(t),
            other => bail!("unexpected answer: {}", other.kind()),
        }
    }
    if json {
        output::json(&tickets);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = tickets.iter().map(row).collect();
    output::table(
        &[
            "ID", "STATUS", "PRIORITY", "AGENT", "SOURCE", "ASSIGNEE", "OPENED", "TITLE",
        ],
        &rows,
    );
    Ok(0)
}

fn row(t: &TicketSummary) -> Vec<String> {
    vec![
        format!("#{}", t.id),
        t.status.clone(),
        t.priority.clone(),
        t.agent.clone().unwrap_or_default(),
        t.source.clone(),
        t.assignee.clone().unwrap_or_default(),
        t.created_at.clone(),
        t.title.clone(),
    ]
}

pub async fn command(cred: Option<PathBuf>, cmd: TicketCommand) -> Result<i32> {
    let (request, json) = match cmd {
        TicketCommand::New {
            title,
            agent,
            priority,
            json,
        } => (
            Message::TicketNew {
                title,
                agent,
                body: None,
                priority,
            },
            json,
        ),
        TicketCommand::Show { id, json } => (Message::TicketShow { id }, json),
        TicketCommand::Comment { id, text, json } => {
            (update(id, TicketChange::Comment { text }), json)
        }
        TicketCommand::Assign { id, operator, json } => {
            (update(id, TicketChange::Assign { operator }), json)
        }
        TicketCommand::Priority { id, priority, json } => {
            (update(id, TicketChange::Priority { priority }), json)
        }
        TicketCommand::Start { id, json } => (update(id, TicketChange::Start {}), json),
        TicketCommand::Resolve { id, comment, json } => {
            (update(id, TicketChange::Resolve { comment }), json)
        }
        TicketCommand::Close { id, json } => (update(id, TicketChange::Close {}), json),
    };
    let client = Client::connect(cred.as_deref()).await?;
    let answer = match request {
        Message::TicketShow { .. } => detail(client.parts(request).await),
        _ => client.call(request).await,
    };
    client.close().await;
    match answer? {
        Message::Ticket { ticket } if json => output::json(&ticket),
        Message::Ticket { ticket } => output::line(summary_line(&ticket)),
        Message::TicketDetail { ticket, entries } if json => {
            output::json(&serde_json::json!({ "ticket": ticket, "entries": entries }))
        }
        Message::TicketDetail { ticket, entries } => show(&ticket, &entries),
        other => bail!("unexpected answer: {}", other.kind()),
    }
    Ok(0)
}

/// `#7 [open] urgent · tina · printer jammed`: a ticket after a change.
pub fn summary_line(t: &TicketSummary) -> String {
    format!(
        "#{} [{}] {} · {} · {}",
        t.id,
        printable(&t.status),
        printable(&t.priority),
        printable(t.assignee.as_deref().unwrap_or("unassigned")),
        printable(&t.title)
    )
}

/// A ticket and its timeline, put back together from its parts.
fn detail(parts: Result<Vec<Message>>) -> Result<Message> {
    let mut parts = parts?.into_iter();
    let Some(Message::TicketDetail {
        ticket,
        mut entries,
    }) = parts.next()
    else {
        bail!("unexpected answer to `ticket show`");
    };
    for part in parts {
        match part {
            Message::TicketEntries { entries: e } => entries.extend(e),
            other => bail!("unexpected answer: {}", other.kind()),
        }
    }
    Ok(Message::TicketDetail { ticket, entries })
}

fn update(id: u64, change: TicketChange) -> Message {
    Message::TicketUpdate { id, change }
}

fn show(t: &TicketSummary, entries: &[TicketEntry]) {
    for line in render_ticket(t, entries) {
        output::line(line);
    }
}

/// `ticket show` for a person: the ticket, then each entry of its timeline
/// as a line — when it happened (the agent's observation time when there is
/// one, and the arrival at the relay too when that came more than a few
/// seconds later), its kind, its author and what it says — with the details
/// of results, diagnostic bundles and runbook verdicts on indented lines.
/// Everything from the wire is escaped ([`printable`]).
pub fn render_ticket(t: &TicketSummary, entries: &[TicketEntry]) -> Vec<String> {
    let mut lines = vec![format!("#{} {}", t.id, printable(&t.title))];
    let observed = entries
        .iter()
        .find(|e| e.kind == "opened")
        .and_then(|e| e.observed_at.as_deref())
        .filter(|o| apart(o, &t.created_at))
        .map(|o| format!(" (observed {} on the agent)", printable(o)))
        .unwrap_or_default();
    lines.push(format!(
        "status {} · priority {} · source {} · agent {} · assignee {} · opened {}{observed}",
        printable(&t.status),
        printable(&t.priority),
        printable(&t.source),
        printable(t.agent.as_deref().unwrap_or("-")),
        printable(t.assignee.as_deref().unwrap_or("-")),
        printable(&t.created_at),
    ));
    for e in entries {
        lines.extend(render_entry(e));
    }
    lines
}

/// Seconds apart beyond which an entry's arrival is shown next to the time
/// the agent observed it.
const LATE_SECS: i64 = 5;

/// Kinds of entries whose body is JSON data (and `opened` on an alert).
const DATA_KINDS: &[&str] = &["result", "diagnostics", "verdict", "opened"];

/// One timeline entry: its line, then its details indented.
pub fn render_entry(e: &TicketEntry) -> Vec<String> {
    let when = e.observed_at.as_deref().unwrap_or(&e.at);
    let arrived = match &e.observed_at {
        Some(o) if apart(o, &e.at) => format!("  (arrived {})", printable(&e.at)),
        _ => String::new(),
    };
    let (headline, details) = describe(&e.kind, &data(&e.kind, &e.body));
    let mut lines = vec![format!(
        "{}  {:<11} {:<12} {headline}{arrived}",
        printable(when),
        printable(&e.kind),
        printable(&e.author),
    )];
    lines.extend(details.into_iter().map(|d| format!("    {d}")));
    lines
}

/// The body as data: a JSON object as the relay sends it, or — from an
/// older relay — a string holding one.
fn data(kind: &str, body: &serde_json::Value) -> serde_json::Value {
    if let serde_json::Value::String(text) = body {
        if DATA_KINDS.contains(&kind) {
            if let Ok(v @ serde_json::Value::Object(_)) = serde_json::from_str(text) {
                return v;
            }
        }
    }
    body.clone()
}

/// A headline and detail lines for one entry's body (escaped).
fn describe(kind: &str, body: &serde_json::Value) -> (String, Vec<String>) {
    use serde_json::{from_value, Value};
    if let Value::String(text) = body {
        return (printable(text).into_owned(), vec![]);
    }
    let rendered = match kind {
        "result" | "opened" => from_value(body.clone()).ok().map(|r| render_result(&r)),
        "diagnostics" => from_value(body.clone())
            .ok()
            .map(|d| ("diagnostic bundle".to_string(), render_diagnostics(&d))),
        "verdict" => from_value(body.clone()).ok().map(|v| render_verdict(&v)),
        _ => None,
    };
    // Data this console cannot read: as it came, escaped.
    rendered.unwrap_or_else(|| (printable(&body.to_string()).into_owned(), vec![]))
}

/// `CRIT disk /: 95% used`, and its metrics and fields when they are short.
fn render_result(r: &firstline_proto::CheckResult) -> (String, Vec<String>) {
    let headline = format!(
        "{} {} {}: {}",
        r.status.as_str().to_uppercase(),
        printable(&r.check),
        printable(&r.target),
        printable(&r.summary)
    );
    let facts: Vec<String> = r
        .metrics
        .iter()
        .map(|(k, v)| format!("{}={}", printable(k), number(*v)))
        .chain(
            r.fields
                .iter()
                .map(|(k, v)| format!("{}={}", printable(k), printable(v))),
        )
        .collect();
    (headline, short_line(&facts, 100).into_iter().collect())
}

/// Items joined with `, ` up to about `max` characters (`…` when cut).
fn short_line(items: &[String], max: usize) -> Option<String> {
    let mut line = String::new();
    for (i, item) in items.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        if line.chars().count() + sep.len() + item.chars().count() > max {
            if line.is_empty() {
                return None;
            }
            line.push_str(", …");
            return Some(line);
        }
        line.push_str(sep);
        line.push_str(item);
    }
    (!line.is_empty()).then_some(line)
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Megabytes, or gigabytes when large.
fn size(bytes: u64) -> String {
    const MB: f64 = 1024.0 * 1024.0;
    let mb = bytes as f64 / MB;
    if mb >= 1024.0 {
        format!("{:.1} GB", mb / 1024.0)
    } else if mb >= 10.0 {
        format!("{mb:.0} MB")
    } else {
        format!("{mb:.1} MB")
    }
}

/// Disks this full or more are shown.
const FULL_PCT: f64 = 80.0;
/// Processes shown per ranking.
const TOP_SHOWN: usize = 3;

/// The bundle in a few lines: the top processes by CPU and by memory, the
/// disks over 80 %, the default route and the DNS servers.
fn render_diagnostics(d: &firstline_proto::Diagnostics) -> Vec<String> {
    let procs = |list: &[firstline_proto::event::ProcessInfo]| {
        if list.is_empty() {
            return "none listed".to_string();
        }
        list.iter()
            .take(TOP_SHOWN)
            .map(|p| {
                format!(
                    "{} (pid {}) {:.1}% {}",
                    printable(&p.name),
                    p.pid,
                    p.cpu_pct,
                    size(p.memory_bytes)
                )
            })
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let full: Vec<String> = d
        .disks
        .iter()
        .filter(|k| k.used_pct >= FULL_PCT)
        .map(|k| {
            format!(
                "{} {:.1}% used ({} free)",
                printable(&k.mount),
                k.used_pct,
                size(k.free_bytes)
            )
        })
        .collect();
    let disks = if full.is_empty() {
        format!(
            "disks: none over {FULL_PCT:.0}% ({} checked)",
            d.disks.len()
        )
    } else {
        format!("disks over {FULL_PCT:.0}%: {}", full.join(" · "))
    };
    let dns = if d.dns_servers.is_empty() {
        "none".to_string()
    } else {
        d.dns_servers
            .iter()
            .map(|s| printable(s).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        format!("top CPU:    {}", procs(&d.top_cpu)),
        format!("top memory: {}", procs(&d.top_memory)),
        disks,
        format!(
            "route: {}",
            d.default_route
                .as_deref()
                .map_or("no default route".into(), printable)
        ),
        format!("DNS: {dns}"),
    ]
}

/// The verdict's own lines, then one line per step.
fn render_verdict(v: &firstline_proto::runbook::Verdict) -> (String, Vec<String>) {
    let mut lines = v.render().into_iter();
    let headline = format!(
        "{} · {}",
        printable(&v.runbook),
        lines.next().unwrap_or_default()
    );
    let mut details: Vec<String> = lines.map(|l| l.trim_start().to_string()).collect();
    // The article is one command away.
    if let Some(kb) = v.kb.as_deref().filter(|k| firstline_proto::kb::valid_id(k)) {
        for l in details
            .iter_mut()
            .filter(|l| l.starts_with("knowledge base: "))
        {
            l.push_str(&format!(" · firstline kb show {kb}"));
        }
    }
    for step in &v.steps {
        let what = match (&step.result, &step.skipped) {
            (Some(r), _) => format!(
                "{} {}",
                r.status.as_str().to_uppercase(),
                printable(&r.summary)
            ),
            (None, Some(why)) => format!("skipped ({})", printable(why)),
            (None, None) => "did not run".into(),
        };
        details.push(format!("{}: {what}", printable(&step.id)));
    }
    (headline, details)
}

/// Whether two RFC 3339 times are more than [`LATE_SECS`] apart (false
/// when either does not parse).
fn apart(a: &str, b: &str) -> bool {
    match (unix_secs(a), unix_secs(b)) {
        (Some(a), Some(b)) => (a - b).abs() > LATE_SECS,
        _ => false,
    }
}

/// Unix seconds of an RFC 3339 UTC time (`2026-01-01T10:00:00Z`, with or
/// without fractions).
fn unix_secs(t: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if t.get(4..5) != Some("-") || !matches!(t.get(10..11), Some("T" | "t" | " ")) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3_600 + mi * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(at: &str, observed: Option<&str>, kind: &str, body: serde_json::Value) -> TicketEntry {
        TicketEntry {
            at: at.into(),
            observed_at: observed.map(str::to_string),
            kind: kind.into(),
            author: "pc1".into(),
            body,
        }
    }

    fn ticket() -> TicketSummary {
        TicketSummary {
            id: 7,
            title: "plugin crit on pc1: STATE 2: m".into(),
            agent: Some("pc1".into()),
            check: Some("plugin".into()),
            status: "open".into(),
            priority: "high".into(),
            source: "alert".into(),
            monitor: Some("state".into()),
            assignee: None,
            created_at: "2026-01-01T10:05:00Z".into(),
            updated_at: "2026-01-01T10:05:00Z".into(),
            requester: None,
        }
    }

    fn result_json(status: &str, summary: &str) -> serde_json::Value {
        json!({"check": "plugin", "target": "check_state m", "status": status,
               "summary": summary, "metrics": {"state": 2.0}, "duration_ms": 3,
               "at": "2026-01-01T10:00:00.120Z"})
    }

    #[test]
    fn an_alert_ticket_reads_like_a_story() {
        let diagnostics = json!({
            "top_cpu": [{"pid": 4242, "name": "firefox", "cpu_pct": 87.5, "memory_bytes": 850_000_000u64},
                        {"pid": 1, "name": "systemd", "cpu_pct": 0.0, "memory_bytes": 12_000_000u64}],
            "top_memory": [{"pid": 4242, "name": "firefox", "cpu_pct": 87.5, "memory_bytes": 850_000_000u64}],
            "disks": [{"mount": "/", "used_pct": 91.2, "free_bytes": 2_000_000_000u64},
                      {"mount": "/boot", "used_pct": 20.0, "free_bytes": 1_000_000u64}],
            "default_route": "via 192.168.1.1 dev eth0",
            "dns_servers": ["10.0.0.2", "::1"]
        });
        let verdict = json!({
            "runbook": "disk-full", "agent": "pc1", "verdict": "escalate", "cause": "disk-full",
            "team": "desktop", "message": "still full", "user_message": "", "kb": null,
            "params": [], "dry_run": false,
            "steps": [
                {"id": "usage", "action": "check disk", "args": ["/"],
                 "result": result_json("crit", "91% used")},
                {"id": "clean", "action": "fix clean-temp", "skipped": "dry run"}
            ]
        });
        let entries = vec![
            entry(
                "2026-01-01T10:05:00Z",
                Some("2026-01-01T10:00:00Z"),
                "opened",
                result_json("crit", "STATE 2: m"),
            ),
            entry(
                "2026-01-01T10:05:00Z",
                Some("2026-01-01T10:00:00Z"),
                "diagnostics",
                diagnostics,
            ),
            entry(
                "2026-01-01T10:05:01Z",
                Some("2026-01-01T10:05:00Z"),
                "result",
                result_json("crit", "STATE 2: m"),
            ),
            entry("2026-01-01T10:06:00Z", None, "verdict", verdict),
            entry(
                "2026-01-01T10:07:00Z",
                None,
                "comment",
                json!("called the user\u{1b}[2J"),
            ),
        ];
        let text = render_ticket(&ticket(), &entries).join("\n");
        eprintln!("{text}");
        assert!(
            text.contains(
                "opened 2026-01-01T10:05:00Z (observed 2026-01-01T10:00:00Z on the agent)"
            ),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        // The observation time leads; a late arrival is shown, a prompt one is not.
        assert!(
            lines[2].starts_with("2026-01-01T10:00:00Z  opened"),
            "{text}"
        );
        assert!(
            lines[2].contains("CRIT plugin check_state m: STATE 2: m"),
            "{text}"
        );
        assert!(
            lines[2].ends_with("(arrived 2026-01-01T10:05:00Z)"),
            "{text}"
        );
        assert_eq!(lines[3], "    state=2");
        assert!(
            text.contains(
                "    top CPU:    firefox (pid 4242) 87.5% 811 MB · systemd (pid 1) 0.0% 11 MB"
            ),
            "{text}"
        );
        assert!(
            text.contains("    disks over 80%: / 91.2% used (1.9 GB free)"),
            "{text}"
        );
        assert!(!text.contains("/boot"), "{text}");
        assert!(
            text.contains("    route: via 192.168.1.1 dev eth0"),
            "{text}"
        );
        assert!(text.contains("    DNS: 10.0.0.2, ::1"), "{text}");
        let prompt = lines.iter().find(|l| l.contains("  result ")).unwrap();
        assert!(!prompt.contains("arrived"), "{prompt}");
        assert!(
            text.contains("disk-full · VERDICT ESCALATE (disk-full, team desktop): still full"),
            "{text}"
        );
        assert!(text.contains("    usage: CRIT 91% used"), "{text}");
        assert!(text.contains("    clean: skipped (dry run)"), "{text}");
        assert!(
            text.contains("called the user\\u{1b}[2J"),
            "escaped: {text}"
        );
        assert!(!text.contains('\u{1b}'));
        assert!(!text.contains("see --json"));
    }

    #[test]
    fn bodies_of_an_older_relay_are_read_too() {
        let old = entry(
            "2026-01-01T10:00:00Z",
            None,
            "result",
            json!(result_json("warn", "81% used").to_string()),
        );
        let lines = render_entry(&old);
        assert!(
            lines[0].contains("WARN plugin check_state m: 81% used"),
            "{lines:?}"
        );
        // Text that is not data stays text, escaped.
        let odd = entry("2026-01-01T10:00:00Z", None, "result", json!("two\nlines"));
        assert!(render_entry(&odd)[0].ends_with("two\\nlines"));
        let unknown = entry(
            "2026-01-01T10:00:00Z",
            None,
            "result",
            json!({"x": "\u{1b}"}),
        );
        assert!(!render_entry(&unknown)[0].contains('\u{1b}'));
    }

    #[test]
    fn numbers_and_ages() {
        assert_eq!(ticket_number("12"), Ok(12));
        assert_eq!(ticket_number("#12"), Ok(12));
        for bad in ["", "#", "x", "#-1", "0", "+3", "1 2"] {
            assert!(ticket_number(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_age("7d"), Ok(7 * 86_400));
        assert_eq!(parse_age("1d12h"), Ok(36 * 3_600));
        assert_eq!(parse_age("30m"), Ok(1_800));
        assert_eq!(parse_age("2w"), Ok(14 * 86_400));
        for bad in ["", "7", "d", "7x", "0d", "-1d"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(unix_secs("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_secs("2026-01-01T00:00:00Z"), Some(1_767_225_600));
        assert_eq!(unix_secs("2024-02-29T12:34:56.789Z"), Some(1_709_210_096));
        assert_eq!(unix_secs("soon"), None);
        assert!(apart("2026-01-01T00:00:00Z", "2026-01-01T00:00:06Z"));
        assert!(!apart("2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z"));
        assert!(!apart("x", "2026-01-01T00:00:05Z"));
    }
}
