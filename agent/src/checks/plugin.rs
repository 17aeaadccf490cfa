//! `plugin [--timeout DURATION] NAME [ARGS…]`
//!
//! Runs a Nagios-compatible plugin from the agent's plugins folder, so every
//! `check_*` of monitoring-plugins is a check: exit 0/1/2/3 → ok/warn/crit/
//! unknown, the first line of output is the summary, and the performance
//! data (`label=value[UOM];warn;crit;min;max`, after `|` on any line) become
//! metrics named `label` or `label_UNIT` (`time_s`, `pl_pct`, `/_MB`).
//!
//! Only a bare file name in the plugins folder that the agent's `[policy]
//! plugins` allow-list names can run — never a path, never `..`, never a
//! wrapper that runs other programs (`negate`, `urlize`, `check_by_ssh`) —
//! with its arguments as an argv (no shell), its rights dropped
//! ([`crate::process::run_confined`]), and without `--extra-opts` (which
//! reads options from any file). Options of this check go
//! before NAME; everything after NAME is the plugin's. stdout and stderr are
//! read concurrently (a plugin filling its stderr pipe cannot stall), each
//! capped; at the timeout the plugin's whole process group is killed.

use super::{parse_args, parse_duration, CheckContext, CheckError};
use firstline_proto::{CheckResult, Status};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

#[derive(clap::Parser, Debug)]
#[command(
    name = "plugin",
    about = "Run a Nagios-compatible plugin from the agent's plugins folder"
)]
pub struct PluginArgs {
    /// Kill the plugin after this long (options of this check go before NAME).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// File name of the plugin in the plugins folder (e.g. check_disk).
    pub name: String,
    /// Arguments passed to the plugin as they are.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

pub async fn run(args: &[String], ctx: &CheckContext) -> Result<CheckResult, CheckError> {
    let a: PluginArgs = parse_args("plugin", args)?;
    check_name(&a.name).map_err(CheckError::Usage)?;
    ctx.policy
        .allows_plugin(&a.name)
        .map_err(CheckError::Refused)?;
    if let Some(bad) = a.args.iter().find(|x| x.starts_with("--extra-opts")) {
        return Err(CheckError::Refused(format!(
            "`{bad}`: plugins may not read their options from a file here"
        )));
    }
    let target = std::iter::once(a.name.clone())
        .chain(a.args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let path = ctx.plugins_dir.join(&a.name);
    if let Err(why) = runnable(&path) {
        return Ok(CheckResult::new("plugin", target, Status::Unknown, why));
    }

    ctx.progress.say(format!("running {}", path.display()));
    let run_as = ctx.policy.run_as.as_deref();
    let finished = match crate::process::run_confined(
        &path,
        &a.args,
        Some(&ctx.plugins_dir),
        a.timeout,
        run_as,
    )
    .await
    {
        Ok(f) => f,
        Err(why) => return Ok(CheckResult::new("plugin", target, Status::Unknown, why)),
    };
    let (out, err, exit) = (finished.stdout, finished.stderr, finished.status);
    let parsed = parse_output(&out);
    let status = match exit.code() {
        Some(code) => Status::from_nagios_code(code),
        None => Status::Unknown,
    };
    let stderr_line = err
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string);
    let mut summary = if parsed.summary.is_empty() {
        stderr_line
            .clone()
            .unwrap_or_else(|| format!("{} printed nothing", a.name))
    } else {
        parsed.summary.clone()
    };
    match exit.code() {
        Some(code) if !(0..=3).contains(&code) => {
            summary.push_str(&format!(" (exit status {code}, not a plugin status)"))
        }
        None => {
            use std::os::unix::process::ExitStatusExt;
            summary.push_str(&format!(
                " (killed by signal {})",
                exit.signal().unwrap_or_default()
            ));
        }
        _ => {}
    }
    let mut r = CheckResult::new("plugin", target, status, summary);
    r.metrics = parsed.metrics;
    Ok(r)
}

/// A plugin name is a bare file name: no path, no `..`, no hidden file.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.contains('/')
        || name.contains("..")
        || name.starts_with('.')
        || name.starts_with('-')
        || name.contains('\0')
    {
        return Err(format!(
            "`{name}` is not a plugin name: give the bare file name of a plugin in the plugins folder"
        ));
    }
    Ok(())
}

fn runnable(path: &Path) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "no plugin {} in {}",
                path.file_name().unwrap_or_default().to_string_lossy(),
                dir.display()
            )
        } else {
            format!("cannot use {}: {e}", path.display())
        }
    })?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not executable", path.display()));
    }
    Ok(())
}

/// A plugin's output, taken apart.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    pub summary: String,
    pub long_text: Vec<String>,
    pub metrics: BTreeMap<String, f64>,
}

/// Nagios plugin output: `TEXT | PERFDATA` on the first line, then long text
/// lines, any of which may carry `| PERFDATA` that goes on to the end.
pub fn parse_output(text: &str) -> Parsed {
    let mut p = Parsed::default();
    let mut lines = text.lines();
    let mut perf = String::new();
    if let Some(first) = lines.next() {
        let (summary, data) = first.split_once('|').unwrap_or((first, ""));
        p.summary = summary.trim().to_string();
        perf.push_str(data);
    }
    let mut in_perf = false;
    for line in lines {
        if in_perf {
            perf.push(' ');
            perf.push_str(line);
        } else if let Some((txt, data)) = line.split_once('|') {
            if !txt.trim().is_empty() {
                p.long_text.push(txt.trim().to_string());
            }
            perf.push(' ');
            perf.push_str(data);
            in_perf = true;
        } else if !line.trim().is_empty() {
            p.long_text.push(line.trim().to_string());
        }
    }
    for (label, value, unit) in perfdata(&perf) {
        let key = match unit.as_str() {
            "" => label,
            "%" => format!("{label}_pct"),
            u => format!("{label}_{u}"),
        };
        p.metrics.insert(key, value);
    }
    p
}

/// `'label'=value[UOM];warn;crit;min;max` items: (label, value, UOM).
pub fn perfdata(text: &str) -> Vec<(String, f64, String)> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        // The label: quoted ('' is a quote inside), or up to '='.
        let mut label = String::new();
        if chars[i] == '\'' {
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        label.push('\'');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                label.push(chars[i]);
                i += 1;
            }
        } else {
            while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
                label.push(chars[i]);
                i += 1;
            }
        }
        if chars.get(i) != Some(&'=') {
            // Not perfdata: skip this word.
            while i < chars.len() && !chars[i].is_whitespace() {
                i += 1;
            }
            continue;
        }
        i += 1;
        let mut item = String::new();
        while i < chars.len() && !chars[i].is_whitespace() {
            item.push(chars[i]);
            i += 1;
        }
        let value_uom = item.split(';').next().unwrap_or("");
        let split = value_uom
            .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
            .unwrap_or(value_uom.len());
        // "1e" would eat a unit starting with e: back off to a number that parses.
        let (mut num, mut unit) = value_uom.split_at(split);
        while !num.is_empty() && num.parse::<f64>().is_err() {
            let cut = num.len() - 1;
            (num, unit) = value_uom.split_at(cut);
        }
        if let Ok(v) = num.parse::<f64>() {
            if v.is_finite() && !label.is_empty() {
                out.push((label.clone(), v, unit.to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bare() {
        assert!(check_name("check_disk").is_ok());
        assert!(check_name("check_v1.2").is_ok());
        for bad in [
            "",
            "../bin/sh",
            "/bin/sh",
            "sub/check",
            "..",
            ".hidden",
            "-x",
            "a..b",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn output_and_perfdata() {
        let p = parse_output(
            "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n\
             / 15272 MB (77%);\n\
             /boot 68 MB (69%);\n\
             /home 69357 MB (27%);\n\
             /var/log 819 MB (84%); | /boot=68MB;88;93;0;98\n\
             /home=69357MB;253404;253409;0;253414\n\
             /var/log=818MB;970;975;0;980\n",
        );
        assert_eq!(p.summary, "DISK OK - free space: / 3326 MB (56%);");
        assert_eq!(p.long_text.len(), 4);
        assert_eq!(p.metrics["/_MB"], 2643.0);
        assert_eq!(p.metrics["/boot_MB"], 68.0);
        assert_eq!(p.metrics["/home_MB"], 69357.0);
        assert_eq!(p.metrics["/var/log_MB"], 818.0);
    }

    #[test]
    fn perfdata_forms() {
        let items = perfdata(
            "'rta ms'=0.045ms;100;500;0 pl=0%;20;60;; 'it''s'=3 time=1.5e-3s c=12c u=U junk",
        );
        assert_eq!(
            items,
            vec![
                ("rta ms".to_string(), 0.045, "ms".to_string()),
                ("pl".to_string(), 0.0, "%".to_string()),
                ("it's".to_string(), 3.0, String::new()),
                ("time".to_string(), 0.0015, "s".to_string()),
                ("c".to_string(), 12.0, "c".to_string()),
            ]
        );
        let p = parse_output("PING OK - Packet loss = 0%, RTA = 0.05 ms|rta=0.050000ms;100.000000;500.000000;0.000000 pl=0%;20;60;0\n");
        assert_eq!(p.metrics["rta_ms"], 0.05);
        assert_eq!(p.metrics["pl_pct"], 0.0);
        assert_eq!(p.summary, "PING OK - Packet loss = 0%, RTA = 0.05 ms");
    }

    #[tokio::test]
    async fn refuses_paths_and_reports_missing_plugins() {
        let dir = tempfile::tempdir().unwrap();
        let policy = crate::policy::Policy {
            plugins: vec!["check_nothing".into(), "negate".into()],
            ..Default::default()
        };
        let ctx = CheckContext {
            plugins_dir: dir.path().to_path_buf(),
            policy: policy.into(),
            ..Default::default()
        };
        assert!(matches!(
            run(&["../../bin/true".into()], &ctx).await,
            Err(CheckError::Usage(_))
        ));
        for refused in [
            vec!["negate", "/bin/sh", "-c", "id"],
            vec!["check_other"],
            vec!["check_nothing", "--extra-opts=x@/etc/shadow"],
        ] {
            let args: Vec<String> = refused.iter().map(|s| s.to_string()).collect();
            assert!(
                matches!(run(&args, &ctx).await, Err(CheckError::Refused(_))),
                "{refused:?}"
            );
        }
        let r = run(&["check_nothing".into()], &ctx).await.unwrap();
        assert_eq!(r.status, Status::Unknown);
        assert!(
            r.summary.contains("no plugin check_nothing"),
            "{}",
            r.summary
        );
    }
}
