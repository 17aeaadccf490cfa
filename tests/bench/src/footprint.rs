//! `firstline-bench footprint`: idle memory and CPU of `firstline-agent`
//! with 10 monitors, next to `zabbix_agentd` and `zabbix_agent2` (Debian)
//! with 10 comparable items, sampled the same way from /proc for the whole
//! process family of each (RSS and PSS summed, CPU = user + system,
//! reaped children included), for `--duration` seconds after a warm-up.
//!
//! Our agent runs its monitors on its own schedule and keeps its QUIC link
//! to a relay (a separate process, not counted). The zabbix agents run
//! passive checks only (no `ServerActive`): a poller here asks each of
//! them for its 10 items on the same schedule, over the zabbix protocol.
//!
//! `--baseline DIR` runs the agent of another build beside ours (same
//! monitors, a relay of its own): on a shared, noisy machine a before/after
//! comparison is only fair in one run. `--breakdown` prints what each of
//! our agents' resident set is made of (the executable's pages, libraries,
//! heap and arenas, threads), and the CPU per monitor run.

use crate::procfs::{self, TreeSample};
use crate::stats::Table;
use crate::world::{free_tcp_port, Proc, World};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct FootprintArgs {
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 300)]
    pub duration: u64,
    /// Seconds before measuring (first runs of every monitor).
    #[arg(long, default_value_t = 35)]
    pub warmup: u64,
    /// Monitor / polling interval, seconds, for all three.
    #[arg(long, default_value_t = 30)]
    pub every: u64,
    /// Folder of the release binaries.
    #[arg(long, default_value = "target/release")]
    pub bin_dir: PathBuf,
    #[arg(long, default_value = "/usr/sbin/zabbix_agentd")]
    pub zabbix_agentd: PathBuf,
    #[arg(long, default_value = "/usr/sbin/zabbix_agent2")]
    pub zabbix_agent2: PathBuf,
    #[arg(long, default_value = "/usr/lib/nagios/plugins")]
    pub plugins: PathBuf,
    /// Also run the agent of another build (a folder holding its
    /// `firstline-agent`, `firstline-relay` and `firstline`, e.g. a copy of
    /// an older target/release) with the same monitors and its own relay,
    /// measured side by side: a before/after comparison under the same load
    /// on a shared machine.
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
    /// Also print what our agents' resident sets are made of at the end of
    /// the window (/proc/PID/status and smaps: heap, stacks, the binary's
    /// pages, libraries; threads).
    #[arg(long)]
    pub breakdown: bool,
}

/// What one process's resident set is made of, from /proc/PID/status and
/// /proc/PID/smaps, in KiB.
fn breakdown(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_string()
    };
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    // Rss per kind of mapping: the executable, other files (libraries), the
    // heap ([heap] and anonymous mappings, malloc arenas included), stacks.
    let (mut bin, mut libs, mut heap, mut stacks, mut other) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut anon_maps, mut kind) = (0usize, 0u8);
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && first.chars().next().is_some_and(|c| c.is_ascii_hexdigit()) {
            let path = line.split_whitespace().nth(5).unwrap_or("");
            kind = if Path::new(path) == exe {
                0
            } else if path.starts_with('/') {
                1
            } else if path.is_empty() || path == "[heap]" {
                anon_maps += usize::from(path.is_empty());
                2
            } else if path.starts_with("[stack") {
                3
            } else {
                4
            };
        } else if first == "Rss:" {
            let kib: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match kind {
                0 => bin += kib,
                1 => libs += kib,
                2 => heap += kib,
                3 => stacks += kib,
                _ => other += kib,
            }
        }
    }
    format!(
        "RssAnon {} KiB, RssFile {} KiB; by mapping: binary {bin} KiB, libraries {libs} KiB, \
         heap and anonymous {heap} KiB ({anon_maps} anonymous mappings: arenas, thread stacks), \
         main stack {stacks} KiB, other {other} KiB; {} threads",
        field("RssAnon:"),
        field("RssFile:"),
        field("Threads:"),
    )
}

/// The 10 monitors and the zabbix item that does the same work.
fn items(port: u16, plugins: &Path) -> Vec<(Vec<String>, String)> {
    let p = plugins.display();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        (s(&["disk", "/"]), "vfs.fs.size[/,pused]".into()),
        (s(&["disk", "/var"]), "vfs.fs.size[/var,pused]".into()),
        (s(&["cpu"]), "system.cpu.util[,user]".into()),
        (s(&["memory"]), "vm.memory.size[pavailable]".into()),
        (s(&["load"]), "system.cpu.load[all,avg1]".into()),
        (
            vec!["tcp".into(), format!("127.0.0.1:{port}")],
            format!("net.tcp.port[127.0.0.1,{port}]"),
        ),
        (
            vec!["http".into(), format!("http://127.0.0.1:{port}/")],
            format!("web.page.get[127.0.0.1,/,{port}]"),
        ),
        (
            s(&["ping", "127.0.0.1", "--count", "1"]),
            format!("net.tcp.service.perf[tcp,127.0.0.1,{port}]"),
        ),
        (
            s(&["plugin", "check_dummy", "0", "ok"]),
            format!("system.run[\"{p}/check_dummy 0 ok\"]"),
        ),
        (
            s(&["plugin", "check_load", "-w", "50,50,50", "-c", "99,99,99"]),
            format!("system.run[\"{p}/check_load -w 50,50,50 -c 99,99,99\"]"),
        ),
    ]
}

/// A tiny HTTP server on loopback for the tcp and http items.
fn http_target(port: u16, stop: Arc<AtomicBool>) -> Result<std::thread::JoinHandle<()>> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    std::thread::spawn(move || {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                        let mut buf = [0u8; 2048];
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(
                            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n",
                        );
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }))
}

/// One passive zabbix request: `ZBXD\x01`, u32 LE length, u32 reserved, key.
fn zabbix_get(port: u16, key: &str) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = b"ZBXD\x01".to_vec();
    req.extend_from_slice(&(key.len() as u32).to_le_bytes());
    req.extend_from_slice(&0u32.to_le_bytes());
    req.extend_from_slice(key.as_bytes());
    s.write_all(&req)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    if resp.len() < 13 || &resp[..4] != b"ZBXD" {
        bail!("bad answer to {key}: {resp:?}");
    }
    let value = String::from_utf8_lossy(&resp[13..]).replace('\0', " ");
    if value.starts_with("ZBX_NOTSUPPORTED") {
        bail!("{key}: {value}");
    }
    Ok(value)
}

/// A free TCP port in 1024..=32767, the range zabbix accepts for ListenPort
/// (the kernel's ephemeral ports lie above it).
fn zabbix_port(not: u16) -> Result<u16> {
    let seed = std::process::id() as u16;
    for i in 0..2000u16 {
        let port = 20000 + (seed.wrapping_add(i.wrapping_mul(7))) % 12000;
        if port != not && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free TCP port in 20000..32000 for the zabbix agents")
}

fn zabbix_conf(dir: &Path, name: &str, port: u16, agent2: bool) -> Result<PathBuf> {
    let path = dir.join(format!("{name}.conf"));
    let mut text = format!(
        "LogFile={d}/{name}.log\nPidFile={d}/{name}.pid\nServer=127.0.0.1\nListenIP=127.0.0.1\n\
         ListenPort={port}\nServerActive=\nHostname=footprint\nAllowKey=system.run[*]\nTimeout=10\n",
        d = dir.display()
    );
    if agent2 {
        text.push_str(&format!("ControlSocket={}/{name}.sock\n", dir.display()));
    } else {
        text.push_str("AllowRoot=1\n");
    }
    std::fs::write(&path, text)?;
    Ok(path)
}

struct Subject {
    name: &'static str,
    proc: Proc,
    start: TreeSample,
    samples: Vec<TreeSample>,
}

pub fn main(args: FootprintArgs) -> Result<()> {
    for bin in [&args.zabbix_agentd, &args.zabbix_agent2] {
        if !bin.is_file() {
            bail!(
                "{} not found: install zabbix-agent and zabbix-agent2 (tests/bench/footprint does)",
                bin.display()
            );
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix("firstline-footprint-")
        .tempdir()?;
    let root = tmp.path();
    let port = free_tcp_port()?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = http_target(port, stop.clone())?;
    let items = items(port, &args.plugins);

    // Our agent: 10 [[monitor]]s, default link settings.
    let w = World::new(root, &args.bin_dir, "footprint")?;
    let mut monitors = String::new();
    for (argv, _) in &items {
        monitors.push_str(&format!(
            "[[monitor]]\ncheck = {:?}\nargs = {:?}\nevery = \"{}s\"\n\n",
            argv[0],
            &argv[1..],
            args.every
        ));
    }
    w.agent_toml(&format!(
        "plugins_dir = {:?}\n{monitors}",
        args.plugins.display().to_string()
    ))?;
    let ours = w.start_agent()?;
    eprintln!("firstline-agent pid {}", ours.pid());
    // The baseline build, with the same monitors and a relay of its own.
    let base = match &args.baseline {
        Some(dir) => {
            let root = root.join("baseline");
            std::fs::create_dir_all(&root)?;
            let bw = World::new(&root, dir, "footprint-baseline")?;
            bw.agent_toml(&format!(
                "plugins_dir = {:?}\n{monitors}",
                args.plugins.display().to_string()
            ))?;
            let p = bw.start_agent()?;
            eprintln!("baseline firstline-agent pid {}", p.pid());
            Some((bw, p))
        }
        None => None,
    };

    // The zabbix agents.
    let zd_port = zabbix_port(0)?;
    let z2_port = zabbix_port(zd_port)?;
    let zd = Proc::spawn(
        Command::new(&args.zabbix_agentd)
            .arg("-f")
            .arg("-c")
            .arg(zabbix_conf(root, "zabbix_agentd", zd_port, false)?),
        root.join("zabbix_agentd.out"),
    )?;
    let z2 = Proc::spawn(
        Command::new(&args.zabbix_agent2).arg("-c").arg(zabbix_conf(
            root,
            "zabbix_agent2",
            z2_port,
            true,
        )?),
        root.join("zabbix_agent2.out"),
    )?;
    let ready = |port: u16| {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if zabbix_get(port, "agent.ping").is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("zabbix agent on port {port} does not answer agent.ping")
    };
    ready(zd_port).context("zabbix_agentd")?;
    ready(z2_port).context("zabbix_agent2")?;

    // Poll the zabbix agents' items on the monitors' schedule.
    let answered = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let failed: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let poller = {
        let (stop, answered, failed) = (stop.clone(), answered.clone(), failed.clone());
        let keys: Vec<String> = items.iter().map(|(_, k)| k.clone()).collect();
        let every = Duration::from_secs(args.every);
        std::thread::spawn(move || {
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    next += every;
                    for (i, port) in [zd_port, z2_port].into_iter().enumerate() {
                        for k in &keys {
                            match zabbix_get(port, k) {
                                Ok(_) => {
                                    answered[i].fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => {
                                    if let Ok(mut f) = failed.lock() {
                                        if f.len() < 20 {
                                            f.push(format!("port {port}: {e:#}"));
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    eprintln!(
        "warm-up {} s, then measuring {} s (monitors and polls every {} s)…",
        args.warmup, args.duration, args.every
    );
    std::thread::sleep(Duration::from_secs(args.warmup));
    let (base_world, base_proc) = match base {
        Some((w, p)) => (Some(w), Some(p)),
        None => (None, None),
    };
    let mut subjects: Vec<Subject> = [
        ("firstline-agent", Some(ours)),
        ("firstline-agent (baseline)", base_proc),
        ("zabbix_agentd", Some(zd)),
        ("zabbix_agent2", Some(z2)),
    ]
    .into_iter()
    .filter_map(|(name, proc)| Some((name, proc?)))
    .map(|(name, proc)| {
        let start = procfs::sample_tree(proc.pid());
        Subject {
            name,
            proc,
            start,
            samples: Vec::new(),
        }
    })
    .collect();
    let polled_before = [
        answered[0].load(Ordering::Relaxed),
        answered[1].load(Ordering::Relaxed),
    ];
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(args.duration) {
        for s in &mut subjects {
            s.samples.push(procfs::sample_tree(s.proc.pid()));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let wall = t0.elapsed().as_secs_f64();
    let breakdowns: Vec<(String, String)> = subjects
        .iter()
        .filter(|s| args.breakdown && s.name.starts_with("firstline"))
        .map(|s| (format!("{} resident set", s.name), breakdown(s.proc.pid())))
        .collect();
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    let _ = server.join();

    let mut table = Table::default();
    table.row(
        "window",
        format!(
            "{wall:.0} s after a {} s warm-up; 10 monitors / items every {} s; sampled every 1 s",
            args.warmup, args.every
        ),
    );
    for s in &mut subjects {
        let n = s.samples.len().max(1) as f64;
        let mean_rss = s.samples.iter().map(|x| x.rss_kib as f64).sum::<f64>() / n;
        let max_rss = s.samples.iter().map(|x| x.rss_kib).max().unwrap_or(0);
        let mean_pss = s.samples.iter().map(|x| x.pss_kib as f64).sum::<f64>() / n;
        let end = s.samples.last().copied().unwrap_or_default();
        let cpu = (end.cpu_secs - s.start.cpu_secs).max(0.0);
        let procs = s.samples.iter().map(|x| x.processes).max().unwrap_or(0);
        table.row(
            s.name,
            format!(
                "RSS mean {:.1} MiB (max {:.1}), PSS mean {:.1} MiB, CPU {:.2} s = {:.3}% of one core, {procs} process(es)",
                mean_rss / 1024.0,
                max_rss as f64 / 1024.0,
                mean_pss / 1024.0,
                cpu,
                100.0 * cpu / wall
            ),
        );
        if s.name.starts_with("firstline") {
            // 10 monitors, each run every `every` seconds.
            let runs = 10.0 * wall / args.every as f64;
            table.row(
                format!("{} CPU per monitor run", s.name),
                format!(
                    "{:.2} ms (everything the agent did, over {runs:.0} runs)",
                    1000.0 * cpu / runs
                ),
            );
        }
        s.proc.stop();
    }
    for (name, text) in breakdowns {
        table.row(name, text);
    }
    let polled = [
        answered[0].load(Ordering::Relaxed) - polled_before[0],
        answered[1].load(Ordering::Relaxed) - polled_before[1],
    ];
    table.row(
        "zabbix items answered in the window",
        format!("zabbix_agentd {}, zabbix_agent2 {}", polled[0], polled[1]),
    );
    if let Ok(f) = failed.lock() {
        if !f.is_empty() {
            table.row("zabbix item failures", f.join(" | "));
        }
    }
    // Our monitors reached the relay: one status row per monitor.
    for (name, w) in [("firstline", Some(&w)), ("baseline", base_world.as_ref())] {
        let Some(w) = w else { continue };
        monitor_rows(&mut table, name, w)?;
    }
    println!();
    table.print();
    Ok(())
}

/// One status row per monitor, as the relay of `w` stored them.
fn monitor_rows(table: &mut Table, name: &str, w: &World) -> Result<()> {
    let db = rusqlite::Connection::open_with_flags(
        w.relay_dir.database(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let rows: Vec<(String, String, String)> = db
        .prepare("SELECT monitor, status, summary FROM monitor_status ORDER BY monitor")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    table.row(
        format!("{name} monitors seen by the relay"),
        format!(
            "{}: {}",
            rows.len(),
            rows.iter()
                .map(|(m, s, why)| if s == "ok" {
                    format!("{m}=ok")
                } else {
                    format!("{m}={s} ({why})")
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    Ok(())
}
