//! The L1 checks, one file each, dispatched by name.
//!
//! A check's arguments are exactly its command line (`disk /var --warn 80`),
//! parsed with clap, so the same words work locally (`firstline-agent check
//! disk /var`), remotely (`firstline run AGENT disk /var`) and in a
//! `[[monitor]]` table. Every check returns one [`CheckResult`]; this module
//! stamps `duration_ms` and `at`, and bounds every check by a timeout so a
//! hung target never hangs the agent.

pub mod cpu;
pub mod disk;
pub mod dns;
pub mod du;
pub mod http;
pub mod load;
pub mod memory;
pub mod net;
pub mod ping;
pub mod plugin;
pub mod printer;
pub mod service;
pub mod tcp;

use firstline_proto::message::{ArgInfo, CheckInfo};
use firstline_proto::{CheckResult, Status};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// Hard upper bound on any check, whatever its own `--timeout` says.
pub const MAX_CHECK_TIME: Duration = Duration::from_secs(120);

/// Names of the checks this agent offers (also sent in `hello`).
pub const NAMES: &[&str] = &[
    "ping", "dns", "printer", "disk", "du", "net", "service", "tcp", "http", "cpu", "memory",
    "load", "plugin",
];

/// Every check, declared once (its role, user, capabilities and view) in
/// `firstline_proto::declare`.
pub use firstline_proto::declare::Check;

/// Why a check could not even start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckError {
    #[error("unknown check `{0}`{hint} (this agent offers: {list})",
        hint = suggest(.0), list = NAMES.join(", "))]
    Unknown(String),
    /// Bad arguments; the text is clap's message (or the check's help).
    #[error("{0}")]
    Usage(String),
    /// The agent's policy does not let this run here.
    #[error("refused: {0}")]
    Refused(String),
}

/// `, did you mean `disk`?` for a likely typo of a check's name.
fn suggest(name: &str) -> String {
    firstline_net::cli::did_you_mean(name, NAMES)
        .map(|n| format!("; did you mean `{n}`?"))
        .unwrap_or_default()
}

/// Where a running check reports progress lines (streamed to the console).
#[derive(Clone, Default)]
pub struct Progress(Option<mpsc::UnboundedSender<String>>);

impl Progress {
    pub fn new(tx: mpsc::UnboundedSender<String>) -> Self {
        Progress(Some(tx))
    }

    pub fn say(&self, text: impl Into<String>) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(text.into());
        }
    }
}

/// What a check may need besides its arguments.
#[derive(Clone)]
pub struct CheckContext {
    /// Where progress lines go.
    pub progress: Progress,
    /// Folder of Nagios-compatible plugins (`plugin NAME`).
    pub plugins_dir: PathBuf,
    /// This machine's wall: which plugins may run, and as whom.
    pub policy: std::sync::Arc<crate::policy::Policy>,
    /// In a sandboxed worker (the daemon) or in this process.
    pub runner: crate::worker::Runner,
}

impl Default for CheckContext {
    fn default() -> Self {
        CheckContext {
            progress: Progress::default(),
            plugins_dir: PathBuf::from(crate::config::DEFAULT_PLUGINS_DIR),
            policy: Default::default(),
            runner: Default::default(),
        }
    }
}

impl CheckContext {
    /// The same context reporting progress to `progress`.
    pub fn with_progress(&self, progress: Progress) -> CheckContext {
        CheckContext {
            progress,
            ..self.clone()
        }
    }
}

/// Run one check by name: in a worker where the context says so
/// (`crate::worker`), else here.
pub async fn run(
    name: &str,
    args: &[String],
    ctx: &CheckContext,
) -> Result<CheckResult, CheckError> {
    match &ctx.runner {
        crate::worker::Runner::Worker(w) => {
            let job = crate::worker::declare::check(name, args, ctx, &w.user)?;
            crate::worker::run(w, job, &ctx.progress).await
        }
        crate::worker::Runner::InProcess => run_here(name, args, ctx).await,
    }
}

/// Run one check in this process.
async fn run_here(
    name: &str,
    args: &[String],
    ctx: &CheckContext,
) -> Result<CheckResult, CheckError> {
    let started = Instant::now();
    let work = async {
        match name {
            "ping" => ping::run(args, ctx).await,
            "dns" => dns::run(args, ctx).await,
            "printer" => printer::run(args, ctx).await,
            "disk" => disk::run(args, ctx).await,
            "du" => du::run(args, ctx).await,
            "net" => net::run(args, ctx).await,
            "service" => service::run(args, ctx).await,
            "tcp" => tcp::run(args, ctx).await,
            "http" => http::run(args, ctx).await,
            "cpu" => cpu::run(args, ctx).await,
            "memory" => memory::run(args, ctx).await,
            "load" => load::run(args, ctx).await,
            "plugin" => plugin::run(args, ctx).await,
            other => Err(CheckError::Unknown(other.to_string())),
        }
    };
    let mut result = match tokio::time::timeout(MAX_CHECK_TIME, work).await {
        Ok(r) => r?,
        Err(_) => CheckResult::new(
            name,
            args.join(" "),
            Status::Unknown,
            format!("{name} did not finish within {}s", MAX_CHECK_TIME.as_secs()),
        ),
    };
    result.duration_ms = started.elapsed().as_millis() as u64;
    result.at = now_rfc3339();
    Ok(result)
}

/// Check a check's arguments without running it: parse them with the
/// check's own clap definition (what `firstline-agent validate` does for
/// every `[[monitor]]`). A check whose run rejects further combinations
/// (`--warn` above `--crit`, a URL that does not parse…) still returns
/// [`CheckError::Usage`] from [`run`]; the scheduler reports that once as a
/// configuration problem.
///
/// Every check of [`NAMES`] needs an arm here, next to its arm in [`run`].
pub fn validate_args(name: &str, args: &[String]) -> Result<(), CheckError> {
    fn parse<T: clap::Parser>(name: &str, args: &[String]) -> Result<(), CheckError> {
        parse_args::<T>(name, args).map(drop)
    }
    match name {
        "ping" => parse::<ping::PingArgs>(name, args),
        "dns" => parse::<dns::DnsArgs>(name, args),
        "printer" => parse::<printer::PrinterArgs>(name, args),
        "disk" => parse::<disk::DiskArgs>(name, args),
        "du" => parse::<du::DuArgs>(name, args),
        "net" => parse::<net::NetArgs>(name, args),
        "service" => {
            let a: service::ServiceArgs = parse_args(name, args)?;
            service::unit_name(&a.unit)
                .map(drop)
                .map_err(CheckError::Usage)
        }
        "tcp" => parse::<tcp::TcpArgs>(name, args),
        "http" => parse::<http::HttpArgs>(name, args),
        "cpu" => parse::<cpu::CpuArgs>(name, args),
        "memory" => parse::<memory::MemoryArgs>(name, args),
        "load" => parse::<load::LoadArgs>(name, args),
        "plugin" => {
            let a: plugin::PluginArgs = parse_args(name, args)?;
            plugin::check_name(&a.name).map_err(CheckError::Usage)
        }
        // A check without an arm yet is only checked when it runs
        // (`tests::every_name_is_validated` fails until it has one).
        other if NAMES.contains(&other) => Ok(()),
        other => Err(CheckError::Unknown(other.to_string())),
    }
}

/// The clap definition of a check: its arguments, their defaults (the
/// thresholds) and help. `None` for a name this agent does not offer.
///
/// Every check of [`NAMES`] needs an arm here, next to its arm in [`run`].
pub fn command(name: &str) -> Option<clap::Command> {
    use clap::CommandFactory;
    Some(match name {
        "ping" => ping::PingArgs::command(),
        "dns" => dns::DnsArgs::command(),
        "printer" => printer::PrinterArgs::command(),
        "disk" => disk::DiskArgs::command(),
        "du" => du::DuArgs::command(),
        "net" => net::NetArgs::command(),
        "service" => service::ServiceArgs::command(),
        "tcp" => tcp::TcpArgs::command(),
        "http" => http::HttpArgs::command(),
        "cpu" => cpu::CpuArgs::command(),
        "memory" => memory::MemoryArgs::command(),
        "load" => load::LoadArgs::command(),
        "plugin" => plugin::PluginArgs::command(),
        _ => return None,
    })
}

/// Every check this agent offers, with its arguments and thresholds, read
/// from the checks' own definitions (what `firstline checks AGENT` and
/// `firstline-agent check` list).
pub fn catalog() -> Vec<CheckInfo> {
    NAMES
        .iter()
        .filter_map(|name| command(name))
        .map(|cmd| describe(&cmd))
        .collect()
}

/// A check's name, what it does, its arguments, and a synopsis with the
/// defaults: `disk [PATH] [--warn=80] [--crit=90] …`.
fn describe(cmd: &clap::Command) -> CheckInfo {
    let args: Vec<ArgInfo> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"))
        .map(|a| {
            let placeholder = || {
                a.get_value_names()
                    .and_then(|v| v.first())
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| a.get_id().as_str().to_uppercase())
            };
            let takes_value = a.get_action().takes_values();
            let defaults: Vec<String> = a
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let (name, value) = match a.get_long() {
                Some(long) => (format!("--{long}"), takes_value.then(placeholder)),
                None => (placeholder(), None),
            };
            ArgInfo {
                name,
                value,
                default: (!defaults.is_empty() && takes_value).then(|| defaults.join(",")),
                required: a.is_required_set(),
                help: a.get_help().map(|h| h.to_string()).unwrap_or_default(),
            }
        })
        .collect();
    let mut synopsis = cmd.get_name().to_string();
    for (a, arg) in args.iter().zip(
        cmd.get_arguments()
            .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version")),
    ) {
        let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1);
        let word = match (&a.value, &a.default) {
            (_, Some(d)) => format!("{}={d}", a.name),
            (Some(v), None) => format!("{} {v}", a.name),
            (None, None) if arg.is_positional() && many => format!("{}...", a.name),
            (None, None) => a.name.clone(),
        };
        synopsis.push(' ');
        if a.required {
            synopsis.push_str(&if arg.is_positional() {
                format!("<{word}>")
            } else {
                word
            });
        } else {
            synopsis.push_str(&format!("[{word}]"));
        }
    }
    CheckInfo {
        name: cmd.get_name().to_string(),
        about: cmd.get_about().map(|a| a.to_string()).unwrap_or_default(),
        synopsis,
        args,
    }
}

/// A check's usage message as one line, for reports (monitors, config
/// validation): clap's `error: ` dropped, the arguments not provided, its
/// `tip:` and its usage line kept ([`firstline_net::cli::usage_line`]).
pub fn usage_line(message: &str) -> String {
    firstline_net::cli::usage_line(message, None)
}

/// Parse a check's arguments with its clap definition.
pub fn parse_args<T: clap::Parser>(check: &str, args: &[String]) -> Result<T, CheckError> {
    T::try_parse_from(std::iter::once(check.to_string()).chain(args.iter().cloned()))
        .map_err(|e| CheckError::Usage(e.render().to_string().trim_end().to_string()))
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A `--timeout`, `--interval`… value: `2s`, `500ms`, `1m`, `1.5s`; a bare
/// number is milliseconds (`--timeout 800`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || format!("`{text}` is not a duration (try 500ms, 2s or 1m)");
    if let Ok(ms) = t.parse::<f64>() {
        return if ms.is_finite() && ms >= 0.0 {
            Ok(Duration::from_secs_f64(ms / 1000.0))
        } else {
            Err(bad())
        };
    }
    // humantime has no fractions; take `1.5s` ourselves.
    for (unit, scale) in [("ms", 0.001), ("s", 1.0), ("m", 60.0)] {
        if let Some(num) = t.strip_suffix(unit) {
            if let Ok(v) = num.trim().parse::<f64>() {
                if v.is_finite() && v >= 0.0 && v * scale < 86_400.0 {
                    return Ok(Duration::from_secs_f64(v * scale));
                }
                return Err(bad());
            }
        }
    }
    humantime::parse_duration(t).map_err(|_| bad())
}

/// Run blocking work (statvfs, reads of /proc…) on the blocking pool and
/// stop waiting after `timeout`: a hung filesystem cannot hang the agent.
/// (The thread itself stays blocked until the kernel lets it go.)
pub async fn blocking<T: Send + 'static>(
    timeout: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("the check failed: {e}")),
        Err(_) => Err(format!("no answer within {}", show_duration(timeout))),
    }
}

/// A duration as a person reads it: `850 ms`, `2.5 s`.
pub fn show_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        let s = d.as_secs_f64();
        if s.fract() == 0.0 {
            format!("{s:.0} s")
        } else {
            format!("{s:.1} s")
        }
    }
}

/// Milliseconds with a precision that suits their size (`0.042`, `3.1`, `250`).
pub fn ms(d: Duration) -> f64 {
    let v = d.as_secs_f64() * 1000.0;
    if v < 1.0 {
        (v * 1000.0).round() / 1000.0
    } else if v < 100.0 {
        (v * 10.0).round() / 10.0
    } else {
        v.round()
    }
}

/// `HOST:PORT`, `[V6]:PORT`, or a bare host with `default_port`.
pub fn split_host_port(text: &str, default_port: Option<u16>) -> Result<(String, u16), String> {
    let bad_port = |p: &str| format!("`{p}` is not a port number in `{text}`");
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{text}`: missing `]`"))?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host.to_string(), p.parse().map_err(|_| bad_port(p))?)),
            None if after.is_empty() => default_port
                .map(|p| (host.to_string(), p))
                .ok_or_else(|| format!("`{text}`: give a port, as [ADDRESS]:PORT")),
            None => Err(format!("`{text}` is not HOST:PORT")),
        };
    }
    // A bare IPv6 address has several colons and no port.
    if text.matches(':').count() > 1 {
        return default_port.map(|p| (text.to_string(), p)).ok_or_else(|| {
            format!("`{text}`: write an IPv6 address with a port as [ADDRESS]:PORT")
        });
    }
    match text.rsplit_once(':') {
        Some((host, p)) if !host.is_empty() => {
            Ok((host.to_string(), p.parse().map_err(|_| bad_port(p))?))
        }
        Some(_) => Err(format!("`{text}`: the host is missing")),
        None if text.is_empty() => Err("the host is missing".into()),
        None => default_port
            .map(|p| (text.to_string(), p))
            .ok_or_else(|| format!("`{text}`: give a port, as HOST:PORT")),
    }
}

/// The first error in a chain with its causes, one line (`a: b: c`), without
/// repeating a cause already contained in its parent's text.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cur = c.source();
    }
    text
}

/// `ok`/`warn`/`crit` of a value against "higher is worse" thresholds.
pub fn grade(value: f64, warn: f64, crit: f64) -> Status {
    if value >= crit {
        Status::Crit
    } else if value >= warn {
        Status::Warn
    } else {
        Status::Ok
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_check_and_bad_args() {
        let p = CheckContext::default();
        assert_eq!(
            run("teleport", &[], &p).await.unwrap_err(),
            CheckError::Unknown("teleport".into())
        );
        let err = run("disk", &["--warn".into(), "lots".into()], &p)
            .await
            .unwrap_err();
        assert!(
            matches!(err, CheckError::Usage(ref m) if m.contains("lots")),
            "{err}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("800").unwrap(), Duration::from_millis(800));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
        assert_eq!(show_duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(show_duration(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(ms(Duration::from_micros(42)), 0.042);
        assert_eq!(ms(Duration::from_micros(3140)), 3.1);
    }

    #[test]
    fn host_and_port() {
        let hp = |t, d| split_host_port(t, d);
        assert_eq!(
            hp("example.org:80", None).unwrap(),
            ("example.org".into(), 80)
        );
        assert_eq!(hp("[::1]:53", None).unwrap(), ("::1".into(), 53));
        assert_eq!(hp("::1", Some(53)).unwrap(), ("::1".into(), 53));
        assert_eq!(hp("127.0.0.1", Some(53)).unwrap(), ("127.0.0.1".into(), 53));
        assert!(hp("127.0.0.1", None).is_err());
        assert!(hp("host:http", None).is_err());
        assert!(hp(":80", None).is_err());
        assert!(hp("::1", None).is_err());
    }

    #[tokio::test]
    async fn every_name_is_dispatched() {
        let p = CheckContext::default();
        for name in NAMES {
            match run(name, &["--help".into()], &p).await {
                Err(CheckError::Usage(m)) => {
                    assert!(m.contains("Usage"), "{name}: {m}");
                    // Every check can be bounded the same way.
                    assert!(m.contains("--timeout"), "{name} has no --timeout: {m}");
                }
                other => panic!("{name} --help: {other:?}"),
            }
        }
    }

    #[test]
    fn every_name_is_validated() {
        for name in NAMES {
            match validate_args(name, &["--help".into()]) {
                Err(CheckError::Usage(m)) => assert!(m.contains("Usage"), "{name}: {m}"),
                other => panic!("{name} has no arm in validate_args: {other:?}"),
            }
        }
        assert_eq!(
            validate_args("teleport", &[]),
            Err(CheckError::Unknown("teleport".into()))
        );
    }

    #[test]
    fn every_name_is_listed_with_its_arguments() {
        let list = catalog();
        let names: Vec<&str> = list.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, NAMES);
        let disk = list.iter().find(|c| c.name == "disk").unwrap();
        assert!(!disk.about.is_empty());
        assert!(
            disk.synopsis
                .starts_with("disk [PATH] [--warn=80] [--crit=90]"),
            "{}",
            disk.synopsis
        );
        let warn = disk.args.iter().find(|a| a.name == "--warn").unwrap();
        assert_eq!(warn.default.as_deref(), Some("80"));
        assert!(!warn.help.is_empty());
        let tcp = list.iter().find(|c| c.name == "tcp").unwrap();
        assert!(tcp.synopsis.starts_with("tcp <TARGET>"), "{}", tcp.synopsis);
        for c in &list {
            assert!(!c.synopsis.contains("--help"), "{}", c.synopsis);
            assert!(!c.synopsis.ends_with(' '), "{}", c.synopsis);
        }
    }

    #[test]
    fn validate_args_parses_without_running() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(validate_args("disk", &args(&["/", "--warn", "80"])), Ok(()));
        let err = validate_args("disk", &args(&["/", "--wrn", "80"])).unwrap_err();
        let CheckError::Usage(m) = err else {
            panic!("{err:?}")
        };
        let line = usage_line(&m);
        assert!(line.starts_with("unexpected argument '--wrn'"), "{line}");
        assert!(line.contains("--warn"), "the tip is kept: {line}");
        assert!(!line.contains('\n'), "{line}");
        assert!(validate_args("plugin", &args(&["../bin/sh"])).is_err());
        assert!(validate_args("plugin", &args(&["check_x", "--anything"])).is_ok());
        let Err(CheckError::Usage(m)) = validate_args("tcp", &[]) else {
            panic!("a required argument")
        };
        assert!(usage_line(&m).contains("not provided: <TARGET>"), "{m}");
        assert_eq!(
            usage_line("--warn must not be above --crit"),
            "--warn must not be above --crit"
        );
    }

    #[test]
    fn grading() {
        assert_eq!(grade(79.9, 80.0, 90.0), Status::Ok);
        assert_eq!(grade(80.0, 80.0, 90.0), Status::Warn);
        assert_eq!(grade(95.0, 80.0, 90.0), Status::Crit);
    }
}
