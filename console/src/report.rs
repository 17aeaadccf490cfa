//! `firstline report [--since 30d] [--json]`: the help desk's numbers over
//! the tickets opened in a window — computed by the relay from the
//! tickets' timelines on its own clock, so every console sees the same
//! figures; this file only asks and prints. The definitions (in
//! [`REPORT_HELP`], shown by `--help`) are those of the relay's
//! `store/report.rs`.

use crate::client::{classify, Client};
use crate::output;
use anyhow::{bail, Result};
use clap::Args;
use firstline_net::cli::UsageError;
use firstline_proto::report::{Durations, SupportReport};
use firstline_proto::text::printable;
use firstline_proto::Message;
use std::path::PathBuf;

/// What each figure means (the command's long help).
pub const REPORT_HELP: &str = "\
Support metrics over the tickets opened in the window (--since, default 30d), by the relay's clock:

  opened by source       alert, technician, user… (each source that has tickets)
  first-contact rate     of the tickets resolved or closed now: those never reopened, with no
                         `escalate` verdict, and at most one action (a runbook's verdict, or a fix
                         that changed something) before their resolution
  resolved with no human of the resolved: those with no entry by an operator (a technician, viewer or
                         admin on record) up to their resolution — a monitor that recovered
                         (resolved by the agent) or self-service (by someone who is no operator)
  time to first response opening → first entry by an operator, or first action by anyone
  time to resolution     opening → last move to resolved (or to closed, if never resolved)
                         median and p90 by nearest rank (a time that really occurred)
  backlog                every ticket open or in progress now, by age and priority
  escalations            `escalate` verdicts on the window's tickets, by cause and team

A resolution is the last move to `resolved` not followed by a reopening.";

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The window: tickets opened in the last DURATION (`7d`, `24h`, `4w`; up to 10 years).
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    since: String,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// `--since DURATION`: whole seconds, at least one, at most ten years.
fn since_secs(text: &str) -> Result<u64> {
    let bad = |why: &str| -> anyhow::Error {
        UsageError(format!("--since {}: {why}", printable(text))).into()
    };
    let d = humantime::parse_duration(text.trim())
        .map_err(|_| bad("not a duration (write 7d, 24h or 4w)"))?;
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if secs == 0 {
        return Err(bad("must be at least 1s"));
    }
    if secs > 10 * 366 * 86_400 {
        return Err(bad("at most 10 years"));
    }
    Ok(secs)
}

pub async fn run(cred: Option<PathBuf>, args: ReportArgs) -> Result<i32> {
    let since_secs = since_secs(&args.since)?;
    let client = Client::connect(cred.as_deref()).await?;
    let answer = client.call(Message::Report { since_secs }).await;
    client.close().await;
    let report = match answer.map_err(|e| classify(e, Some("firstline report")))? {
        Message::SupportReport(r) => r,
        other => bail!("unexpected answer from the relay: {}", other.kind()),
    };
    if args.json {
        output::json(&report);
    } else {
        print(&report);
    }
    Ok(0)
}

fn pct(rate: Option<f64>) -> String {
    rate.map_or("-".into(), |r| format!("{:.1}%", r * 100.0))
}

fn time(secs: Option<u64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) => humantime::format_duration(std::time::Duration::from_secs(s)).to_string(),
    }
}

fn durations(d: &Durations) -> String {
    format!(
        "median {}, p90 {} (over {})",
        time(d.median_secs),
        time(d.p90_secs),
        d.count
    )
}

fn print(r: &SupportReport) {
    let line = |s: String| output::line(printable(&s));
    line(format!("tickets opened {} … {}", r.since, r.until));
    let sources: Vec<String> = r
        .by_source
        .iter()
        .map(|s| format!("{} {}", s.source, s.count))
        .collect();
    let sources = if sources.is_empty() {
        String::new()
    } else {
        format!(" ({})", sources.join(", "))
    };
    line(format!("opened                  {}{sources}", r.opened));
    line(format!("resolved                {}", r.resolved));
    line(format!(
        "first-contact rate      {} ({} of {})",
        pct(r.first_contact_rate),
        r.first_contact,
        r.resolved
    ));
    line(format!(
        "resolved with no human  {} ({} of {}: monitor {}, self-service {})",
        pct(r.no_human_share),
        r.no_human,
        r.resolved,
        r.no_human_monitor,
        r.no_human_self_service
    ));
    line(format!(
        "time to first response  {}",
        durations(&r.first_response)
    ));
    line(format!(
        "time to resolution      {}",
        durations(&r.resolution)
    ));
    line(String::new());
    line(format!(
        "backlog (open, in progress now): {}",
        r.backlog_total
    ));
    if !r.backlog.is_empty() {
        let rows: Vec<Vec<String>> = r
            .backlog
            .iter()
            .map(|b| vec![b.age.clone(), b.priority.clone(), b.count.to_string()])
            .collect();
        output::table(&["AGE", "PRIORITY", "TICKETS"], &rows);
    }
    line(String::new());
    let escalated: u64 = r.escalations.iter().map(|e| e.count).sum();
    line(format!("escalations: {escalated}"));
    if !r.escalations.is_empty() {
        let rows: Vec<Vec<String>> = r
            .escalations
            .iter()
            .map(|e| {
                let team = if e.team.is_empty() { "-" } else { &e.team };
                vec![e.cause.clone(), team.to_string(), e.count.to_string()]
            })
            .collect();
        output::table(&["CAUSE", "TEAM", "COUNT"], &rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_checked() {
        assert_eq!(since_secs("30d").unwrap(), 30 * 86_400);
        assert_eq!(since_secs("90m").unwrap(), 5_400);
        assert!(since_secs("0s").is_err());
        assert!(since_secs("soon").is_err());
        assert!(since_secs("20y").is_err());
    }
}
