//! Every action an agent offers, declared once, beside its name: the least
//! operator role that may ask for it (by effect, from its arguments), who
//! its worker runs as, the capabilities it keeps, and the view of the file
//! system it gets. The relay's role check (`effect.rs`), the agent's own
//! check of a request and of every runbook step, central monitor
//! validation, and the worker's sandbox (`agent/src/worker/declare.rs`) are
//! all read from here; each `match` below has no wildcard, so a check or
//! fix added without saying all of it does not compile.
//!
//! Roles by effect:
//! * viewer — read-only checks: they look, they change nothing and reveal
//!   no content of local services beyond status and timing;
//! * technician — checks that write to a service or test its content
//!   (`tcp --send`, `http --contains`), checks that read what is on the
//!   machine (`du`), third-party plugins (their options can post data or
//!   run commands), built-in fixes, runbooks;
//! * admin — the admin's own scripts.

use crate::message::Role;
use serde::{Deserialize, Serialize};

/// A capability an action may keep in its worker. Nothing else is ever
/// granted to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cap {
    /// Raw ICMP sockets (`ping` where unprivileged ICMP is not allowed).
    NetRaw,
    /// Open any file (deleting other users' files in a temp folder).
    DacOverride,
    /// Read any folder (`du`, walking a temp folder).
    DacReadSearch,
    /// Delete in sticky folders files others own.
    Fowner,
    /// Signal another user's process (`flush-dns` reloading dnsmasq).
    Kill,
    /// Read other users' processes' namespaces and sockets (`flush-dns`
    /// finding the DNS cache of this network namespace).
    SysPtrace,
}

/// Whom a worker runs as when the agent runs as root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunsAs {
    /// The unprivileged worker user (`worker_user`).
    WorkerUser,
    /// `[policy] run_as`, else the worker user.
    PluginUser,
    /// The agent's own user, with only the declared capabilities.
    Agent,
    /// `[policy] run_as`, else the agent's own user (admin scripts).
    ScriptUser,
}

/// What a worker sees of the file system besides the system folders
/// (read-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Nothing more.
    System,
    /// The paths its arguments name, read as the worker's user.
    ArgPaths,
    /// The plugins folder (run) and `plugin_write_paths` (write).
    Plugins,
    /// `clean_temp_roots` (write).
    CleanTempRoots,
    /// The journal's folders (write).
    Journal,
    /// No Landlock domain at all (the action reads other processes, or is
    /// the admin's own code).
    Unrestricted,
}

/// Everything an action needs, said once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declaration {
    /// The least role that may ask for it.
    pub role: Role,
    pub runs_as: RunsAs,
    pub caps: &'static [Cap],
    pub view: View,
    /// Signals may reach processes outside the worker.
    pub signals: bool,
}

impl Declaration {
    const fn check(role: Role, caps: &'static [Cap], view: View) -> Declaration {
        Declaration {
            role,
            runs_as: RunsAs::WorkerUser,
            caps,
            view,
            signals: false,
        }
    }
}

/// Every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Ping,
    Dns,
    Printer,
    Disk,
    Du,
    Net,
    Service,
    Tcp,
    Http,
    Cpu,
    Memory,
    Load,
    Plugin,
}

impl Check {
    pub const ALL: &[Check] = &[
        Check::Ping,
        Check::Dns,
        Check::Printer,
        Check::Disk,
        Check::Du,
        Check::Net,
        Check::Service,
        Check::Tcp,
        Check::Http,
        Check::Cpu,
        Check::Memory,
        Check::Load,
        Check::Plugin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::Ping => "ping",
            Check::Dns => "dns",
            Check::Printer => "printer",
            Check::Disk => "disk",
            Check::Du => "du",
            Check::Net => "net",
            Check::Service => "service",
            Check::Tcp => "tcp",
            Check::Http => "http",
            Check::Cpu => "cpu",
            Check::Memory => "memory",
            Check::Load => "load",
            Check::Plugin => "plugin",
        }
    }

    pub fn from_name(name: &str) -> Option<Check> {
        Check::ALL.iter().copied().find(|c| c.name() == name)
    }

    /// What this check needs, run with `args`.
    pub fn declare(self, args: &[String]) -> Declaration {
        use Declaration as D;
        use Role::{Technician, Viewer};
        // Options that send data to a service or test its content.
        let probes = |opt: &str| {
            if args.iter().any(|a| names_option(a, opt)) {
                Technician
            } else {
                Viewer
            }
        };
        match self {
            Check::Ping => D::check(Viewer, &[Cap::NetRaw], View::System),
            // Folder names and sizes anywhere on the machine: it reads every
            // folder below PATH. Not CAP_SYS_PTRACE: under Landlock no
            // capability lets a worker read other processes' `/proc/PID/fd`,
            // so the space held by deleted open files is measured instead
            // (used − walked) and the holders named only where they can be
            // seen.
            Check::Du => D::check(Technician, &[Cap::DacReadSearch], View::ArgPaths),
            Check::Http => D::check(probes("--contains"), &[], View::ArgPaths),
            Check::Tcp => D::check(probes("--send"), &[], View::System),
            Check::Plugin => Declaration {
                runs_as: RunsAs::PluginUser,
                ..D::check(Technician, &[], View::Plugins)
            },
            Check::Dns
            | Check::Printer
            | Check::Disk
            | Check::Net
            | Check::Service
            | Check::Cpu
            | Check::Memory
            | Check::Load => D::check(Viewer, &[], View::System),
        }
    }
}

/// Every fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fix {
    FlushDns,
    RestartService,
    ResumePrinter,
    CancelPrintJobs,
    CleanTemp,
    VacuumJournal,
    Script,
}

impl Fix {
    pub const ALL: &[Fix] = &[
        Fix::FlushDns,
        Fix::RestartService,
        Fix::ResumePrinter,
        Fix::CancelPrintJobs,
        Fix::CleanTemp,
        Fix::VacuumJournal,
        Fix::Script,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fix::FlushDns => "flush-dns",
            Fix::RestartService => "restart-service",
            Fix::ResumePrinter => "resume-printer",
            Fix::CancelPrintJobs => "cancel-print-jobs",
            Fix::CleanTemp => "clean-temp",
            Fix::VacuumJournal => "vacuum-journal",
            Fix::Script => "script",
        }
    }

    pub fn from_name(name: &str) -> Option<Fix> {
        Fix::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// What this fix needs.
    pub fn declare(self) -> Declaration {
        let fix = |caps, view| Declaration {
            role: Role::Technician,
            runs_as: RunsAs::Agent,
            caps,
            view,
            signals: false,
        };
        match self {
            Fix::CleanTemp => fix(
                &[Cap::DacOverride, Cap::DacReadSearch, Cap::Fowner],
                View::CleanTempRoots,
            ),
            Fix::VacuumJournal => fix(&[Cap::DacOverride], View::Journal),
            // Takes no argument that names anything; finds the DNS cache of
            // this network namespace among other users' processes (which a
            // Landlock domain would hide) and signals it.
            Fix::FlushDns => Declaration {
                signals: true,
                ..fix(&[Cap::Kill, Cap::SysPtrace], View::Unrestricted)
            },
            // D-Bus to systemd, the CUPS socket: no capability, no file.
            Fix::RestartService | Fix::ResumePrinter | Fix::CancelPrintJobs => {
                fix(&[], View::System)
            }
            // The admin's own code: their role, their user, their files.
            Fix::Script => Declaration {
                role: Role::Admin,
                runs_as: RunsAs::ScriptUser,
                ..fix(&[], View::Unrestricted)
            },
        }
    }
}

/// Whether `arg` is `opt` or `opt=…` (clap's two spellings).
fn names_option(arg: &str, opt: &str) -> bool {
    arg == opt || arg.strip_prefix(opt).is_some_and(|r| r.starts_with('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Check::ALL {
            assert_eq!(Check::from_name(c.name()), Some(*c));
        }
        for f in Fix::ALL {
            assert_eq!(Fix::from_name(f.name()), Some(*f));
        }
        assert_eq!(Check::from_name("nope"), None);
    }

    #[test]
    fn only_ping_and_du_checks_keep_a_capability() {
        for c in Check::ALL {
            let d = c.declare(&[]);
            match c {
                Check::Ping => assert_eq!(d.caps, &[Cap::NetRaw]),
                Check::Du => assert_eq!(d.caps, &[Cap::DacReadSearch]),
                _ => assert!(d.caps.is_empty(), "{c:?}"),
            }
            assert_ne!(
                d.runs_as,
                RunsAs::Agent,
                "{c:?}: checks never run as the agent"
            );
        }
    }
}
