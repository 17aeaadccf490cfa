//! Running other programs (fix commands, admin scripts): argv only, never a
//! shell; stdout and stderr read concurrently and capped, so a chatty child
//! cannot stall or bloat the agent; a timeout that kills the child's whole
//! process group.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Output kept from each stream; the rest is read and dropped.
pub const OUTPUT_CAP: usize = 64 * 1024;

/// A program that ran to its end.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// First non-empty line of stderr, else of stdout, else the exit status.
    pub fn reason(&self) -> String {
        first_line(&self.stderr)
            .or_else(|| first_line(&self.stdout))
            .unwrap_or_else(|| self.status.to_string())
    }
}

fn first_line(s: &str) -> Option<String> {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// Run `program args…` (in `dir` when given) for at most `timeout`, with
/// the agent's own rights: for the system tools the built-in fixes use.
pub async fn run(
    program: &Path,
    args: &[String],
    dir: Option<&Path>,
    timeout: Duration,
) -> Result<Finished, String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    finish(cmd, program, dir, timeout).await
}

/// Run a program that is not ours — a plugin, an admin script — with the
/// fewest rights: through `setpriv`, it inherits none of the agent's
/// capabilities (inheritable and ambient sets cleared), cannot gain any
/// (no_new_privs: setuid bits and file capabilities do nothing), runs as
/// `run_as` with that user's groups when the admin configured one, and sees
/// none of the agent's environment but `PATH` and `LC_ALL=C`.
pub async fn run_confined(
    program: &Path,
    args: &[String],
    dir: Option<&Path>,
    timeout: Duration,
    run_as: Option<&str>,
) -> Result<Finished, String> {
    let setpriv = which("setpriv").ok_or_else(|| {
        "setpriv (util-linux) is not installed: plugins and scripts only run with their rights dropped"
            .to_string()
    })?;
    let mut cmd = tokio::process::Command::new(setpriv);
    cmd.args(["--no-new-privs", "--inh-caps=-all", "--ambient-caps=-all"]);
    if let Some(user) = run_as {
        let (uid, gid) = user_ids(user)?;
        cmd.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--init-groups");
    }
    cmd.arg("--").arg(program).args(args);
    cmd.env_clear().env("PATH", SAFE_PATH);
    finish(cmd, program, dir, timeout).await
}

/// `PATH` of confined programs.
pub const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// uid and primary gid of `user` (a name, through NSS).
pub fn user_ids(user: &str) -> Result<(u32, u32), String> {
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(format!(
            "no user `{user}` on this machine ([policy] run_as)"
        )),
        Err(e) => Err(format!("cannot look up user `{user}`: {e}")),
    }
}

async fn finish(
    mut cmd: tokio::process::Command,
    program: &Path,
    dir: Option<&Path>,
    timeout: Duration,
) -> Result<Finished, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("LC_ALL", "C")
        .process_group(0)
        .kill_on_drop(true);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let pid = child.id();
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(format!("cannot read the output of {}", program.display()));
    };
    let work = async { tokio::join!(capped(out), capped(err), child.wait()) };
    let result = tokio::time::timeout(timeout, work).await;
    kill_group(pid);
    let (stdout, stderr, status) = result.map_err(|_| {
        format!(
            "{} did not finish within {} s and was killed",
            program.display(),
            timeout.as_secs_f64()
        )
    })?;
    Ok(Finished {
        status: status.map_err(|e| format!("waiting for {}: {e}", program.display()))?,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// The full path of `name` on `PATH`, if it is installed.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin", "/sbin"].map(std::path::PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Read a stream to its end, keeping the first [`OUTPUT_CAP`] bytes.
pub async fn capped(mut r: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    kept
}

/// Kill a child's process group (the children it left behind go too).
pub fn kill_group(pid: Option<u32>) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_and_times_out() {
        let sh = Path::new("/bin/sh");
        let done = run(
            sh,
            &["-c".into(), "echo out; echo err >&2; exit 3".into()],
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(done.status.code(), Some(3));
        assert_eq!(done.stdout.trim(), "out");
        assert_eq!(done.reason(), "err");
        let slow = run(
            sh,
            &["-c".into(), "sleep 30".into()],
            None,
            Duration::from_millis(200),
        )
        .await;
        assert!(slow.unwrap_err().contains("killed"));
    }

    #[tokio::test]
    async fn confined_programs_drop_rights_and_environment() {
        std::env::set_var("FIRSTLINE_SECRET_FOR_TEST", "leak");
        let sh = Path::new("/bin/sh");
        let script = "grep -E '^(CapInh|CapAmb|NoNewPrivs)' /proc/self/status; env";
        let f = run_confined(
            sh,
            &["-c".into(), script.into()],
            None,
            Duration::from_secs(5),
            None,
        )
        .await
        .unwrap();
        assert!(f.stdout.contains("NoNewPrivs:\t1"), "{}", f.stdout);
        assert!(
            f.stdout.contains("CapInh:\t0000000000000000"),
            "{}",
            f.stdout
        );
        assert!(
            f.stdout.contains("CapAmb:\t0000000000000000"),
            "{}",
            f.stdout
        );
        assert!(!f.stdout.contains("FIRSTLINE_SECRET"), "{}", f.stdout);
        assert!(user_ids("no-such-user-here").is_err());
    }

    #[tokio::test]
    async fn output_is_capped() {
        let sh = Path::new("/bin/sh");
        let big = run(
            sh,
            &["-c".into(), "head -c 1000000 /dev/zero".into()],
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(big.stdout.len(), OUTPUT_CAP);
    }
}
