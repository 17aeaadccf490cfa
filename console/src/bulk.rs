//! `firstline run|fix|runbook --select SEL …`: one action on every machine
//! a selector picks, paced by the relay.
//!
//! Why here and not a shell loop: the relay asks at most `--max-in-flight`
//! machines at a time (32 unless told, never more than 256: the relay's
//! `DEFAULT_MAX_IN_FLIGHT` and `MAX_IN_FLIGHT_CAP`), applies the operator's role once for the whole request and each
//! agent's policy per machine, writes every result into `--ticket N`, and
//! streams one `bulk_item` per machine as it ends. This console shows a
//! progress line on stderr while they come (on a terminal only), then a
//! summary table — each outcome, how many, which machines — and what each
//! machine that is not ok said; `--json` prints one JSON line per machine
//! (the `bulk_item` as sent) instead, and the summary line on stderr.
//!
//! Exit 0 only when every selected machine ended ok — or, with
//! `--queue-for`, was queued, as for one machine; 1 otherwise (a warning,
//! a refusal, an offline machine, nothing selected), 2 on a usage error. Everything printed that came from the wire is escaped.

use crate::client::{classify, Client};
use crate::output;
use crate::remote::take_flags;
use anyhow::{bail, Result};
use firstline_net::cli::UsageError;
use firstline_proto::action::{Action, BulkItem, ItemOutcome};
use firstline_proto::text::printable;
use firstline_proto::{Message, Selector};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// The flags that make `run`, `fix` and `runbook` act on many machines.
#[derive(clap::Args, Debug, Default)]
pub struct BulkArgs {
    /// Act on every machine this selector picks instead of one AGENT:
    /// KEY=VALUE,… with keys name, tag, os, online, health (e.g.
    /// `tag=floor2,os=debian*`); a summary table ends the output.
    #[arg(long, value_name = "SEL")]
    pub select: Option<String>,
    /// With --select: at most N machines at a time (default 32; the relay
    /// caps it at 256).
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<u32>,
}

/// Which command it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Run,
    Fix,
    Runbook,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Run => "run",
            Kind::Fix => "fix",
            Kind::Runbook => "runbook",
        }
    }
}

/// What a command line asks for.
#[derive(Debug)]
pub enum Target {
    /// One machine: AGENT, the name, its arguments (as before).
    One(Option<String>, Option<String>, Vec<String>),
    /// Many: the words after the command (NAME ARGS…, console flags
    /// among them).
    Many(Many),
}

#[derive(Debug)]
pub struct Many {
    select: String,
    max_in_flight: Option<u32>,
    words: Vec<String>,
}

impl BulkArgs {
    /// One machine or many: many when `--select` is given, before the
    /// name or among the arguments. Then the first word is the check, fix
    /// or runbook (there is no AGENT). `help`: a `--help` before the
    /// name, which shows the command's help either way.
    pub fn split(
        self,
        first: Option<String>,
        second: Option<String>,
        rest: Vec<String>,
        help: bool,
    ) -> Result<Target> {
        let words: Vec<String> = first.iter().chain(&second).chain(&rest).cloned().collect();
        let in_words = |flag: &str| {
            words
                .iter()
                .any(|w| w == flag || w.starts_with(&format!("{flag}=")))
        };
        let select = self.select.is_some() || in_words("--select");
        if !select {
            if self.max_in_flight.is_some() || in_words("--max-in-flight") {
                bail!(UsageError(
                    "--max-in-flight goes with --select SEL (one AGENT is one request)".into()
                ));
            }
            return Ok(Target::One(first, second, rest));
        }
        if help || words.iter().any(|w| w == "--help" || w == "-h") {
            return Ok(Target::One(None, None, Vec::new()));
        }
        Ok(Target::Many(Many {
            select: self.select.unwrap_or_default(),
            max_in_flight: self.max_in_flight,
            words,
        }))
    }
}

/// `--select SEL`'s value, from the words after the command.
pub fn selector(value: Option<String>) -> Result<String> {
    value.ok_or_else(|| UsageError("--select needs a selector, e.g. tag=floor2".into()).into())
}

/// `--max-in-flight N`'s value, from the words after the command.
pub fn in_flight(value: Option<String>) -> Result<u32> {
    let value = value.unwrap_or_default();
    match value.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(UsageError(format!(
            "--max-in-flight `{value}`: give a number of machines, 1 or more"
        ))
        .into()),
    }
}

/// Send the action for every machine `many` selects; print as they end.
pub async fn run(cred: Option<PathBuf>, kind: Kind, many: Many) -> Result<i32> {
    let Many {
        select,
        max_in_flight,
        mut words,
    } = many;
    let f = take_flags(&mut words)?;
    let usage = |m: String| -> anyhow::Error { UsageError(m).into() };
    let select = match (select.is_empty(), f.select) {
        (false, Some(_)) => return Err(usage("--select is given twice".into())),
        (false, None) => select,
        (true, Some(s)) => s,
        (true, None) => return Err(usage("--select needs a selector".into())),
    };
    Selector::parse(&select).map_err(|e| usage(format!("--select: {e}")))?;
    let max_in_flight = match (max_in_flight, f.max_in_flight) {
        (Some(_), Some(_)) => return Err(usage("--max-in-flight is given twice".into())),
        (Some(0), _) => return Err(usage("--max-in-flight 0: give 1 or more".into())),
        (a, b) => a.or(b),
    };
    let command = kind.name();
    if words.is_empty() {
        let what = match kind {
            Kind::Run => "CHECK",
            Kind::Fix => "ACTION",
            Kind::Runbook => "NAME",
        };
        return Err(usage(format!(
            "firstline {command} --select SEL needs a {what} (give --select or an AGENT, not both)"
        )));
    }
    let name = words.remove(0);
    let action = match kind {
        Kind::Run if f.dry_run => {
            return Err(usage(
                "--dry-run is for fixes and runbooks; checks change nothing".into(),
            ))
        }
        Kind::Run => Action::Run {
            check: name,
            args: words,
        },
        Kind::Fix => Action::Fix {
            fix: name,
            args: words,
            dry_run: f.dry_run,
        },
        Kind::Runbook => Action::Runbook {
            name,
            params: words,
            dry_run: f.dry_run,
        },
    };
    let request = Message::Bulk {
        select: select.clone(),
        action,
        ticket: f.ticket,
        max_in_flight,
        queue_for_secs: f.queue_for,
    };
    let client = Client::connect(cred.as_deref()).await?;
    let shown = show(&client, request, f.json).await;
    client.close().await;
    let summary = shown.map_err(|e| classify(e, Some(&format!("firstline {command}"))))?;
    if summary.seen == 0 {
        eprintln!("no machine matches `{}`", printable(&select));
        return Ok(1);
    }
    Ok(summary.exit_code())
}

/// What the console keeps of the items: the machines of each outcome, and
/// what those not ok said.
#[derive(Debug, Default)]
struct Summary {
    selected: u64,
    seen: u64,
    by: BTreeMap<ItemOutcome, Vec<String>>,
    /// Machine, outcome and summary of each item that is not ok.
    problems: Vec<(String, ItemOutcome, String)>,
}

impl Summary {
    fn add(&mut self, item: &BulkItem) {
        self.seen += 1;
        self.by
            .entry(item.outcome)
            .or_default()
            .push(item.agent.clone());
        if item.outcome != ItemOutcome::Ok {
            self.problems
                .push((item.agent.clone(), item.outcome, item.summary.clone()));
        }
    }

    fn count(&self, o: ItemOutcome) -> usize {
        self.by.get(&o).map_or(0, Vec::len)
    }

    fn exit_code(&self) -> i32 {
        let fine = self.count(ItemOutcome::Ok) + self.count(ItemOutcome::Queued);
        let all_ok = self.seen > 0 && self.seen == self.selected && fine as u64 == self.seen;
        if all_ok {
            0
        } else {
            1
        }
    }

    /// `12 selected: 10 ok, 1 offline, 1 refused`.
    fn line(&self) -> String {
        let parts: Vec<String> = ItemOutcome::ALL
            .iter()
            .filter(|o| self.count(**o) > 0)
            .map(|o| format!("{} {o}", self.count(*o)))
            .collect();
        let parts = if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        };
        format!("{} selected: {parts}", self.selected)
    }

    /// The table: each outcome that occurred, how many, which machines (by
    /// name); then what each machine that is not ok said, by outcome and
    /// name.
    fn print(&mut self) {
        for names in self.by.values_mut() {
            names.sort();
        }
        self.problems.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        let rows: Vec<Vec<String>> = ItemOutcome::ALL
            .iter()
            .filter_map(|o| {
                let names = self.by.get(o)?;
                Some(vec![
                    o.as_str().to_string(),
                    names.len().to_string(),
                    names.join(" "),
                ])
            })
            .collect();
        output::table(&["OUTCOME", "COUNT", "MACHINES"], &rows);
        for (agent, outcome, summary) in &self.problems {
            output::line(format!(
                "{:<8} {}: {}",
                outcome.as_str(),
                printable(agent),
                printable(summary)
            ));
        }
        output::line(self.line());
    }
}

/// Read the answers: `bulk_started`, items until `done`.
async fn show(client: &Client, request: Message, json: bool) -> Result<Summary> {
    let mut answers = client.stream(request).await?;
    let mut sum = Summary::default();
    let bar = Progress::new();
    while let Some(msg) = answers.next().await? {
        match msg {
            Message::BulkStarted { selected, .. } => {
                sum.selected = selected;
                bar.draw(&sum);
            }
            Message::BulkItem(item) => {
                sum.add(&item);
                if json {
                    bar.clear();
                    output::json(&item);
                }
                bar.draw(&sum);
            }
            Message::Done {} => {
                bar.clear();
                if json {
                    eprintln!("{}", sum.line());
                } else {
                    sum.print();
                }
                return Ok(sum);
            }
            other => {
                bar.clear();
                bail!("unexpected answer from the relay: {}", other.kind())
            }
        }
    }
    bar.clear();
    bail!(
        "the relay ended its answer early, after {} of {} machines",
        sum.seen,
        sum.selected
    )
}

/// A progress line on stderr, redrawn in place: only when stderr is a
/// terminal, and only counts (no text from the wire).
struct Progress {
    on: bool,
}

/// Cells of the bar.
const WIDTH: u64 = 30;

impl Progress {
    fn new() -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
        }
    }

    fn draw(&self, s: &Summary) {
        if !self.on {
            return;
        }
        let done = s.seen.min(s.selected);
        let filled = (done * WIDTH).checked_div(s.selected).unwrap_or(WIDTH);
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { '.' })
            .collect();
        let not_ok: usize = ItemOutcome::ALL[1..].iter().map(|o| s.count(*o)).sum();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[K[{bar}] {done}/{} · ok {} · not ok {not_ok}",
            s.selected,
            s.count(ItemOutcome::Ok)
        );
        let _ = err.flush();
    }

    fn clear(&self) {
        if self.on {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_or_many() {
        let none = BulkArgs::default();
        let t = none
            .split(
                Some("pc1".into()),
                Some("disk".into()),
                words(&["/"]),
                false,
            )
            .unwrap();
        assert!(matches!(t, Target::One(Some(_), Some(_), _)));
        let sel = BulkArgs {
            select: Some("tag=x".into()),
            max_in_flight: Some(2),
        };
        let Target::Many(m) = sel
            .split(Some("disk".into()), Some("/var".into()), vec![], false)
            .unwrap()
        else {
            panic!("many")
        };
        assert_eq!(m.words, ["disk", "/var"]);
        let Target::Many(m) = BulkArgs::default()
            .split(
                Some("disk".into()),
                Some("/".into()),
                words(&["--select", "tag=x"]),
                false,
            )
            .unwrap()
        else {
            panic!("many, from the words")
        };
        assert_eq!(m.words, ["disk", "/", "--select", "tag=x"]);
        let e = BulkArgs {
            select: None,
            max_in_flight: Some(3),
        }
        .split(Some("pc1".into()), Some("disk".into()), vec![], false)
        .unwrap_err();
        assert!(e.to_string().contains("goes with --select"), "{e}");
        assert!(in_flight(Some("0".into())).is_err());
        assert_eq!(in_flight(Some("8".into())).unwrap(), 8);
    }

    /// The help says the relay's numbers.
    #[test]
    fn help_states_the_relay_default_and_cap() {
        use clap::CommandFactory;
        use firstline_relay::requests::bulk::{DEFAULT_MAX_IN_FLIGHT, MAX_IN_FLIGHT_CAP};
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            b: BulkArgs,
        }
        let help = P::command().render_long_help().to_string();
        let says =
            format!("default {DEFAULT_MAX_IN_FLIGHT}; the relay caps it at {MAX_IN_FLIGHT_CAP}");
        assert!(help.contains(&says), "{help}");
    }

    #[test]
    fn summary_counts_and_exit() {
        let item = |agent: &str, outcome| BulkItem {
            agent: agent.into(),
            outcome,
            summary: "said\x1b[2J".into(),
            result: None,
            verdict: None,
            queued: None,
        };
        let mut s = Summary {
            selected: 3,
            ..Default::default()
        };
        s.add(&item("a", ItemOutcome::Ok));
        s.add(&item("b", ItemOutcome::Ok));
        assert_eq!(s.exit_code(), 1, "one still missing");
        s.add(&item("c", ItemOutcome::Offline));
        assert_eq!(s.line(), "3 selected: 2 ok, 1 offline");
        assert_eq!(s.exit_code(), 1);
        let mut all = Summary {
            selected: 2,
            ..Default::default()
        };
        all.add(&item("a", ItemOutcome::Ok));
        all.add(&item("b", ItemOutcome::Queued));
        assert_eq!(all.exit_code(), 0, "queued as asked: as for one machine");
        assert_eq!(Summary::default().exit_code(), 1, "nothing selected");
    }
}
