//! The walls a worker puts up around itself before it reads a single
//! argument: rlimits, a lower priority, another user, only the declared
//! capabilities, `no_new_privs`, and a Landlock view of the file system.
//!
//! The order matters and is written once, in [`Sandbox::enter`]:
//! 1. the paths the *configuration* names (system folders, the plugins and
//!    scripts folders, `clean_temp_roots`) are opened while the worker still
//!    has the agent's rights, so a plugins folder only root can traverse
//!    still works;
//! 2. rlimits and `nice`, the bounding set cut to the declared
//!    capabilities, then the switch to the worker's user with those
//!    capabilities kept and every other dropped, and `no_new_privs`;
//! 3. the paths the *request* names (`http --ca FILE`, `du PATH`) are opened
//!    only now, as the worker's user: whatever it cannot reach stays out of
//!    the view, and nothing tells the requester whether it exists;
//! 4. Landlock: every file-system right the kernel knows is handled, and
//!    only the rules above grant any; signals and abstract sockets outside
//!    the worker are out of reach.
//!
//! A kernel without Landlock still gets steps 1–3 (the worker says so on
//! its standard error, which the agent logs).

use landlock::{
    Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use rustix::process::{Resource, Rlimit};
use rustix::thread::{CapabilitySet, CapabilitySets};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use firstline_proto::declare::Cap;

/// The kernel's bit of a declared capability.
fn cap_set(cap: Cap) -> CapabilitySet {
    match cap {
        Cap::NetRaw => CapabilitySet::NET_RAW,
        Cap::DacOverride => CapabilitySet::DAC_OVERRIDE,
        Cap::DacReadSearch => CapabilitySet::DAC_READ_SEARCH,
        Cap::Fowner => CapabilitySet::FOWNER,
        Cap::Kill => CapabilitySet::KILL,
        Cap::SysPtrace => CapabilitySet::SYS_PTRACE,
    }
}

/// Everything a worker may hold, derived from the action's declaration
/// (`super::declare`) by the resident, never from the wire.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sandbox {
    /// The user to become (only possible when the agent runs as root;
    /// otherwise the worker keeps the agent's user, without its
    /// capabilities).
    pub user: Option<String>,
    /// `user` was named by the admin (`[policy] run_as`): a worker that
    /// cannot become it refuses to run rather than run as another.
    pub require_user: bool,
    /// Capabilities kept (each also needs to be in the agent's own set).
    pub caps: Vec<Cap>,
    /// Read (files and folders), from the configuration: opened before the
    /// switch of user.
    pub read: Vec<PathBuf>,
    /// Read, named by the request: opened as the worker's user.
    pub read_args: Vec<PathBuf>,
    /// Programs that may be run (folders or files).
    pub exec: Vec<PathBuf>,
    /// Write, create and delete below these (from the configuration).
    pub write: Vec<PathBuf>,
    /// No Landlock view at all (the admin's own scripts): the user, the
    /// capabilities and the limits still apply.
    pub unrestricted_files: bool,
    /// Signals may reach processes outside the worker (`flush-dns`).
    pub signals: bool,
    /// CPU seconds before the kernel kills the worker.
    pub cpu_secs: u64,
    /// Address space, bytes.
    pub memory: u64,
    /// Scheduling priority (`nice`): behind the resident, third-party
    /// programs behind the agent's own checks.
    pub nice: i32,
}

/// Folders every worker reads: programs, libraries, the machine's state in
/// /proc and /sys, name resolution and certificates. `/etc` is opened entry
/// by entry so the agent's own configuration folder stays out of view.
pub const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/bin",
    "/sbin",
    "/proc",
    "/sys",
    "/run/systemd/resolve",
    "/run/resolvconf",
    "/run/NetworkManager",
    "/run/cups",
    "/var/lib/nagios",
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
    "/dev/full",
];

/// Folders whose programs a worker may run.
pub const SYSTEM_EXEC: &[&str] = &["/usr", "/lib", "/lib64", "/bin", "/sbin"];

/// Entries of `/etc` never shown to a worker: the agent's configuration
/// (it may be readable by the agent's own user, which a worker can be).
const ETC_HIDDEN: &[&str] = &["firstline"];

/// Files every worker may write to.
const SYSTEM_WRITE_FILES: &[&str] = &["/dev/null"];

/// Open files and processes (of the worker's user) a worker may have.
const MAX_FILES: u64 = 256;
const MAX_PROCS: u64 = 512;
/// Largest file a worker may write.
const MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

impl Sandbox {
    /// Put up every wall, in order. An error means the worker must not run
    /// the action at all.
    pub fn enter(&self) -> Result<Enforced, String> {
        let abi = ABI::V7;
        let trusted = self.trusted_rules(abi);
        self.limits()?;
        let owner = self.switch_user()?;
        rustix::thread::set_no_new_privs(true).map_err(|e| format!("no_new_privs: {e}"))?;
        if self.unrestricted_files {
            return Ok(Enforced {
                landlock: false,
                user: owner,
            });
        }
        let mut rules = trusted;
        let read = AccessFs::from_read(abi) & !AccessFs::Execute;
        for p in &self.read_args {
            rules.extend(rule(p, read, abi));
        }
        let landlock = restrict(rules, abi, self.signals)?;
        Ok(Enforced {
            landlock,
            user: owner,
        })
    }

    /// Rules for the configuration's paths, opened with the agent's rights.
    fn trusted_rules(&self, abi: ABI) -> Vec<PathBeneath<PathFd>> {
        let read = AccessFs::from_read(abi) & !AccessFs::Execute;
        let exec = AccessFs::from_read(abi);
        let write = AccessFs::from_all(abi);
        let mut rules = Vec::new();
        for p in SYSTEM_READ
            .iter()
            .map(Path::new)
            .chain(self.read.iter().map(PathBuf::as_path))
        {
            rules.extend(rule(p, read, abi));
        }
        if let Ok(dir) = std::fs::read_dir("/etc") {
            for entry in dir.flatten() {
                let name = entry.file_name();
                if !ETC_HIDDEN.iter().any(|h| name == *h) {
                    rules.extend(rule(&entry.path(), read, abi));
                }
            }
        }
        for p in SYSTEM_EXEC
            .iter()
            .map(Path::new)
            .chain(self.exec.iter().map(PathBuf::as_path))
        {
            rules.extend(rule(p, exec, abi));
        }
        for p in SYSTEM_WRITE_FILES.iter().map(Path::new) {
            rules.extend(rule(p, read | AccessFs::WriteFile, abi));
        }
        for p in &self.write {
            rules.extend(rule(p, write, abi));
        }
        rules
    }

    fn limits(&self) -> Result<(), String> {
        let set = |r: Resource, v: u64| {
            rustix::process::setrlimit(
                r,
                Rlimit {
                    current: Some(v),
                    maximum: Some(v),
                },
            )
            .map_err(|e| format!("setrlimit {r:?}: {e}"))
        };
        set(Resource::Cpu, self.cpu_secs.max(1))?;
        set(Resource::As, self.memory)?;
        set(Resource::Fsize, MAX_FILE_SIZE)?;
        set(Resource::Nofile, MAX_FILES)?;
        set(Resource::Core, 0)?;
        // A fork bomb in a plugin stops at this many processes of its user.
        if self.user.is_some() {
            set(Resource::Nproc, MAX_PROCS)?;
        }
        let _ = rustix::process::setpriority_process(None, self.nice);
        Ok(())
    }

    /// Become the declared user (when root) keeping only the declared
    /// capabilities; drop every other capability whoever we are. The
    /// user's name, for the record.
    fn switch_user(&self) -> Result<String, String> {
        let wanted = self
            .caps
            .iter()
            .fold(CapabilitySet::empty(), |s, c| s | cap_set(*c));
        let have = rustix::thread::capabilities(None)
            .map_err(|e| format!("capget: {e}"))?
            .permitted;
        let keep = wanted & have;
        let root = rustix::process::geteuid().is_root();
        // The bounding set first, while CAP_SETPCAP may still be held:
        // nothing run later can regain what is not in it.
        if have.contains(CapabilitySet::SETPCAP) {
            for cap in each(CapabilitySet::all() - keep) {
                let _ = rustix::thread::remove_capability_from_bounding_set(cap);
            }
        }
        let mut owner = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| rustix::process::geteuid().as_raw().to_string());
        if let (true, Some(name)) = (root, &self.user) {
            let user = nix::unistd::User::from_name(name)
                .map_err(|e| format!("cannot look up the worker user `{name}`: {e}"))?
                .ok_or_else(|| format!("there is no user `{name}` on this machine"))?;
            if user.uid.is_root() {
                return Err(format!("the worker user `{name}` is root"));
            }
            rustix::thread::set_keep_capabilities(true).map_err(|e| format!("keepcaps: {e}"))?;
            nix::unistd::setgroups(&[user.gid]).map_err(|e| format!("setgroups: {e}"))?;
            nix::unistd::setresgid(user.gid, user.gid, user.gid)
                .map_err(|e| format!("setgid: {e}"))?;
            nix::unistd::setresuid(user.uid, user.uid, user.uid)
                .map_err(|e| format!("setuid: {e}"))?;
            rustix::thread::set_keep_capabilities(false).map_err(|e| format!("keepcaps: {e}"))?;
            owner = user.name;
        } else if let (true, Some(name)) = (self.require_user, &self.user) {
            if *name != owner {
                return Err(format!(
                    "cannot run as `{name}` ([policy] run_as): the agent runs as `{owner}`, not root"
                ));
            }
        }
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: keep,
                permitted: keep,
                inheritable: keep,
            },
        )
        .map_err(|e| format!("capset: {e}"))?;
        rustix::thread::clear_ambient_capability_set().map_err(|e| format!("ambient: {e}"))?;
        // Programs the worker runs (a plugin such as check_icmp) inherit
        // exactly the declared capabilities.
        for cap in each(keep) {
            rustix::thread::configure_capability_in_ambient_set(cap, true)
                .map_err(|e| format!("ambient: {e}"))?;
        }
        Ok(owner)
    }
}

/// What the worker ended up with (reported beside its result in the log).
#[derive(Debug, Clone)]
pub struct Enforced {
    pub landlock: bool,
    pub user: String,
}

/// A Landlock rule for `path` if it can be opened (a missing or unreachable
/// path grants nothing); files get only the rights files can have.
fn rule(path: &Path, access: BitFlags<AccessFs>, abi: ABI) -> Option<PathBeneath<PathFd>> {
    let fd = PathFd::new(path).ok()?;
    let is_dir = std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false);
    let access = if is_dir {
        access
    } else {
        access & AccessFs::from_file(abi)
    };
    Some(PathBeneath::new(fd, access))
}

/// Handle every file-system right and scope of `abi`, grant `rules`.
/// `Ok(false)`: this kernel has no Landlock.
fn restrict(rules: Vec<PathBeneath<PathFd>>, abi: ABI, signals: bool) -> Result<bool, String> {
    let mut scope = Scope::from_all(abi);
    if signals {
        scope.remove(Scope::Signal);
    }
    let fail = |e: landlock::RulesetError| format!("landlock: {e}");
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(fail)?
        .scope(scope)
        .map_err(fail)?
        .create()
        .map_err(fail)?
        .add_rules(rules.into_iter().map(Ok::<_, landlock::RulesetError>))
        .map_err(fail)?
        .restrict_self()
        .map_err(fail)?;
    Ok(status.ruleset != RulesetStatus::NotEnforced)
}

/// Each capability of `set`, one bit at a time.
fn each(set: CapabilitySet) -> impl Iterator<Item = CapabilitySet> {
    (0..64u32)
        .map(|bit| CapabilitySet::from_bits_retain(1u64 << bit))
        .filter(move |c| set.contains(*c))
}
