//! `firstline-help`: the person at the machine asks the running agent for
//! help over its local socket (see `firstline_agent::help`): the problems
//! offered for self-service, running one, asking a technician, and the
//! answers. It needs no rights: the agent knows who asks from the socket.

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand};
use firstline_agent::help::{Reply, Request, DEFAULT_SOCKET, MAX_REQUEST};
use firstline_net::cli::{exit_with, print_line, UsageError};
use firstline_proto::runbook::VerdictKind;
use firstline_proto::text::printable;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "firstline-help",
    version,
    about = "Get help with this computer: fix common problems yourself, or ask the help desk"
)]
struct Cli {
    /// The agent's help socket (default: `help_socket` of
    /// /etc/firstline/agent.toml, else /run/firstline-agent/help.sock).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The problems you can fix yourself here (the default).
    List,
    /// Try to fix one of them: `firstline-help run NAME` (names from `list`).
    Run {
        /// What to run, as `firstline-help list` names it.
        name: String,
    },
    /// Ask the help desk: `firstline-help ask "The printer jams" --after cant-print`.
    Ask {
        /// What is wrong, in your own words.
        text: String,
        /// Attach what `firstline-help run NAME` just found.
        #[arg(long, value_name = "NAME")]
        after: Option<String>,
    },
    /// Your requests to the help desk from this computer and the answers.
    Tickets,
}

fn main() {
    let cli: Cli = firstline_net::cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => exit_with(e),
    }
}

/// The socket: `--socket`, else `help_socket` of the agent's config
/// when it can be read, else the default.
fn socket(given: Option<PathBuf>) -> PathBuf {
    if let Some(p) = given {
        return p;
    }
    let config = std::path::Path::new(firstline_agent::config::DEFAULT_CONFIG);
    std::fs::read_to_string(config)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("help_socket")?.as_str().map(PathBuf::from))
        .map(|p| firstline_agent::config::resolve(config, &p))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

fn run(cli: Cli) -> Result<i32> {
    let request = match cli.command.unwrap_or(Command::List) {
        Command::List => Request::List {},
        Command::Run { name } => Request::Run { name },
        Command::Ask { text, after } => Request::Ask { text, after },
        Command::Tickets => Request::Tickets {},
    };
    let path = socket(cli.socket);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        anyhow!(
            "cannot reach the firstline agent at {} ({e}): is it running? (ask your IT team)",
            path.display()
        )
    })?;
    let line = serde_json::to_string(&request)? + "\n";
    if line.len() > MAX_REQUEST {
        return Err(UsageError(format!(
            "the text is too long ({} bytes); keep it under {} bytes",
            line.len(),
            MAX_REQUEST - 100
        ))
        .into());
    }
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    stream.write_all(line.as_bytes())?;
    let mut code = 0;
    let mut answered = false;
    for reply in BufReader::new(stream).lines() {
        let reply = reply.context("the agent's answer was cut short")?;
        let reply: Reply = serde_json::from_str(&reply).map_err(|e| {
            anyhow!("the agent answered something this firstline-help does not understand ({e})")
        })?;
        answered = true;
        code = show(reply)?;
    }
    if !answered {
        return Err(anyhow!("the agent closed the connection without answering"));
    }
    Ok(code)
}

/// Print one reply; the exit code it means.
fn show(reply: Reply) -> Result<i32> {
    let p = |s: &str| printable(s).into_owned();
    match reply {
        Reply::Offered { runbooks, .. } => {
            if runbooks.is_empty() {
                print_line("Nothing is offered for self-service on this computer.");
            } else {
                print_line("Problems you can fix yourself:");
                for b in &runbooks {
                    print_line(format!("  {:<16} {}", p(&b.name), p(&b.description)));
                }
                print_line("\nTry one: firstline-help run NAME");
            }
            print_line("Ask the help desk: firstline-help ask \"what is wrong\"");
            Ok(0)
        }
        Reply::Step { text } => {
            print_line(format!("  {}", p(&text)));
            Ok(0)
        }
        Reply::Verdict {
            verdict,
            article,
            article_note,
        } => {
            let head = match verdict.verdict {
                VerdictKind::Resolved => "Done",
                VerdictKind::UserAction => "What you can do",
                VerdictKind::Escalate => "This needs the help desk",
                VerdictKind::DryRun => "Nothing was changed",
                VerdictKind::Error => "This could not be checked",
            };
            print_line(format!("{head}: {}", p(&verdict.user_message)));
            if let Some(kb) = &verdict.kb {
                match &article {
                    Some(a) => {
                        print_line(format!("\nKnowledge base: {} ({})", p(&a.title), p(&a.id)));
                        for l in a.body.lines() {
                            print_line(format!("  {}", p(l)));
                        }
                        print_line("");
                    }
                    None => print_line(format!(
                        "Knowledge base article: {} ({})",
                        p(kb),
                        p(article_note.as_deref().unwrap_or("not available"))
                    )),
                }
            }
            if verdict.verdict != VerdictKind::Resolved {
                print_line(format!(
                    "To ask the help desk with these findings: firstline-help ask \"…\" --after {}",
                    p(&verdict.runbook)
                ));
                return Ok(1);
            }
            Ok(0)
        }
        Reply::Asked {
            delivered: true, ..
        } => {
            print_line("sent: the help desk has your request");
            Ok(0)
        }
        Reply::Asked {
            delivered: false, ..
        } => {
            print_line("queued: will reach the help desk when the relay is reachable");
            Ok(0)
        }
        Reply::Tickets {
            reachable,
            note,
            tickets,
            queued,
            ..
        } => {
            if let Some(note) = note {
                print_line(format!("note: {}", p(&note)));
            }
            if reachable && tickets.is_empty() {
                print_line("You have no requests with the help desk from this computer.");
            }
            for t in &tickets {
                let s = &t.ticket;
                print_line(format!(
                    "#{} [{}] {} (opened {})",
                    s.id,
                    p(&s.status),
                    p(&s.title),
                    p(&s.created_at)
                ));
                for r in &t.replies {
                    let body = match &r.body {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    print_line(format!(
                        "    {} wrote ({}): {}",
                        p(&r.author),
                        p(&r.at),
                        p(&body)
                    ));
                }
            }
            for q in &queued {
                print_line(format!(
                    "waiting to be sent ({}): {}",
                    p(&q.at),
                    p(q.text.lines().next().unwrap_or_default())
                ));
            }
            Ok(0)
        }
        Reply::Error { code, message } => match code.as_str() {
            "usage" => Err(UsageError(message).into()),
            _ => Err(anyhow!(message)),
        },
    }
}
