//! `firstline-bench rtt`: the remote check round trip, with real
//! processes: `firstline run AGENT ping 127.0.0.1` through a release relay
//! to a release agent, timed from the outside, `--runs` times; then the same
//! requests over one kept operator connection, which leaves out the
//! console's start-up and handshake.

use crate::stats::{ms, Latency, Table};
use crate::world::World;
use anyhow::{bail, Result};
use firstline_net::credential::Credential;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug, Clone)]
pub struct RttArgs {
    /// Round trips of each kind.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// Folder of the release binaries.
    #[arg(long, default_value = "target/release")]
    pub bin_dir: PathBuf,
}

pub fn main(args: RttArgs) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("firstline-rtt-")
        .tempdir()?;
    let w = World::new(tmp.path(), &args.bin_dir, "rtt1")?;
    let _agent = w.start_agent()?;
    let mut table = Table::default();
    let variants: [(&str, &[&str]); 2] = [
        ("ping 127.0.0.1", &["ping", "127.0.0.1"]),
        (
            "ping 127.0.0.1 --count 1",
            &["ping", "127.0.0.1", "--count", "1"],
        ),
    ];
    for (label, check) in variants {
        let mut times = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            let mut argv = vec!["run", "rtt1"];
            argv.extend_from_slice(check);
            argv.push("--json");
            let t = Instant::now();
            let out = w.console(&argv)?;
            times.push(ms(t.elapsed()));
            if !out.status.success() {
                bail!(
                    "`firstline {}` failed: {}",
                    argv.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        table.row(
            format!("firstline run rtt1 {label} (process)"),
            Latency::of(times).to_string(),
        );
    }
    let cred = Credential::load(&tmp.path().join("tech.credential.toml"))?;
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
            let mut times = Vec::with_capacity(args.runs);
            for _ in 0..args.runs {
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
    })?;
    println!();
    table.print();
    Ok(())
}
