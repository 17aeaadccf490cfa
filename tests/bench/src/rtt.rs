//! `firstline-bench rtt`: the remote check round trip, with real
//! processes: `firstline run AGENT ping 127.0.0.1` through a release relay
//! to a release agent, timed from the outside, `--runs` times; then the same
//! requests over one kept operator connection, which leaves out the
//! console's start-up and handshake.
//!
//! `--compare OTHER` times a second console binary (an older build, say)
//! against the same relay and agent, its runs interleaved with the first's,
//! so that both see the same machine load; `--quick` times only the
//! `--count 1` round trip through new console processes.

use crate::stats::{ms, Latency, Table};
use crate::world::World;
use anyhow::{bail, Result};
use firstline_net::credential::Credential;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args, Debug, Clone)]
pub struct RttArgs {
    /// Round trips of each kind.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// Folder of the release binaries.
    #[arg(long, default_value = "target/release")]
    pub bin_dir: PathBuf,
    /// Another `firstline` binary, timed run for run alternately with the
    /// one in --bin-dir (same relay, same agent, same machine load).
    #[arg(long, value_name = "CONSOLE")]
    pub compare: Option<PathBuf>,
    /// Only `run … ping 127.0.0.1 --count 1` through new console processes.
    #[arg(long)]
    pub quick: bool,
}

pub fn main(args: RttArgs) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("firstline-rtt-")
        .tempdir()?;
    let w = World::new(tmp.path(), &args.bin_dir, "rtt1")?;
    let _agent = w.start_agent()?;
    let mut table = Table::default();
    let all: [(&str, &[&str]); 2] = [
        ("ping 127.0.0.1", &["ping", "127.0.0.1"]),
        (
            "ping 127.0.0.1 --count 1",
            &["ping", "127.0.0.1", "--count", "1"],
        ),
    ];
    let variants = if args.quick { &all[1..] } else { &all[..] };
    let mine = args.bin_dir.join("firstline");
    let mut consoles: Vec<(&str, &Path)> = vec![("", &mine)];
    if let Some(other) = &args.compare {
        consoles.push((" [--compare]", other));
    }
    for (label, check) in variants {
        let mut times = vec![Vec::with_capacity(args.runs); consoles.len()];
        for _ in 0..args.runs {
            for (i, (_, bin)) in consoles.iter().enumerate() {
                let mut argv = vec!["run", "rtt1"];
                argv.extend_from_slice(check);
                argv.push("--json");
                let t = Instant::now();
                let out = console(&w, bin, &argv)?;
                times[i].push(ms(t.elapsed()));
                if !out.status.success() {
                    bail!(
                        "`{} {}` failed: {}",
                        bin.display(),
                        argv.join(" "),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        for ((suffix, _), times) in consoles.iter().zip(times) {
            table.row(
                format!("firstline run rtt1 {label} (process){suffix}"),
                Latency::of(times).to_string(),
            );
        }
    }
    if !args.quick {
        let cred = tmp.path().join("tech.credential.toml");
        kept_connection(&cred, variants, args.runs, &mut table)?;
    }
    println!();
    table.print();
    Ok(())
}

/// The same requests over one kept operator connection.
fn kept_connection(
    credential: &Path,
    variants: &[(&str, &[&str])],
    runs: usize,
    table: &mut Table,
) -> Result<()> {
    let cred = Credential::load(credential)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let remote = firstline_net::endpoint::resolve(&cred.relay).map_err(anyhow::Error::msg)?;
        let tls = cred.client_config().map_err(anyhow::Error::msg)?;
        let ep = firstline_net::endpoint::client(tls, remote, Default::default())?;
        let conn = firstline_net::endpoint::connect(&ep, remote)
            .await
            .map_err(anyhow::Error::msg)?;
        for (label, check) in variants {
            let mut times = Vec::with_capacity(runs);
            for _ in 0..runs {
                let t = Instant::now();
                crate::sim::run_check(&conn, "rtt1", check[0], &check[1..]).await?;
                times.push(ms(t.elapsed()));
            }
            table.row(
                format!("run {label} over a kept connection"),
                Latency::of(times).to_string(),
            );
        }
        conn.close(0u32.into(), b"done");
        anyhow::Ok(())
    })
}

/// `bin ARGS…` as the logged-in operator of `w` ([`World::console`] with
/// another binary).
fn console(w: &World, bin: &Path, args: &[&str]) -> Result<std::process::Output> {
    Ok(std::process::Command::new(bin)
        .args(args)
        .env("XDG_CONFIG_HOME", &w.console_home)
        .env("HOME", &w.console_home)
        .stdin(std::process::Stdio::null())
        .output()?)
}
