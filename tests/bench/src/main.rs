//! `firstline-bench`: the instruments behind BENCHMARKS.md.
//!
//! * `load` — N simulated agents (real QUIC + mutual TLS connections, real
//!   certificates from the relay's CA) against a release relay process:
//!   RSS per connection, handshake rate, fan-out latency, alert → ticket
//!   throughput and latency. Driven by `tests/bench/run`.
//! * `footprint` — idle RSS and CPU of the agent with 10 monitors next to
//!   `zabbix_agentd` and `zabbix_agent2` with comparable items. Driven by
//!   `tests/bench/footprint`.
//! * `rtt` — `firstline run AGENT ping 127.0.0.1`, end to end with real
//!   processes, p50/p99 over 200 runs.
//!
//! Traffic goes to loopback only, bounded in count and time.

mod deploy;
mod footprint;
mod load;
mod procfs;
mod rtt;
mod sim;
mod stats;
mod world;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "firstline-bench",
    about = "firstline benchmarks (see BENCHMARKS.md)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Simulated agents against a release relay.
    Load(load::LoadArgs),
    /// Idle agent footprint against zabbix_agentd and zabbix_agent2.
    Footprint(footprint::FootprintArgs),
    /// Remote check round trip through the console, relay and a real agent.
    Rtt(rtt::RttArgs),
}

fn main() {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Cmd::Load(a) => load::main(a),
        Cmd::Footprint(a) => footprint::main(a),
        Cmd::Rtt(a) => rtt::main(a),
    };
    if let Err(e) = outcome {
        eprintln!("firstline-bench: {e:#}");
        std::process::exit(1);
    }
}

/// Raise the open-file limit to at least `wanted` where allowed (the hard
/// limit too when running as root, up to fs.nr_open); returns the limit in
/// force. Only the one-endpoint-per-agent mode needs many descriptors.
pub fn raise_fd_limit(wanted: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let cur = getrlimit(Resource::Nofile);
    let soft = cur.current.unwrap_or(u64::MAX);
    if soft >= wanted {
        return soft;
    }
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let target = wanted.min(nr_open);
    let hard = cur.maximum.unwrap_or(u64::MAX).max(target);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: Some(hard),
        },
    )
    .or_else(|_| {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: cur.maximum,
                maximum: cur.maximum,
            },
        )
    });
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// MemTotal of /proc/meminfo, MiB.
pub fn mem_total_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
        / 1024
}
