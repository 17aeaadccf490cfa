//! Role by effect: the least operator role that may ask for an action, from
//! what the action does rather than what it is called.
//!
//! One table, used twice: the relay checks it before routing a request, and
//! the agent checks it again with the role the relay read from the
//! operator's certificate (for a runbook, against every step it could run).
//!
//! * viewer — read-only checks: they look, they change nothing and reveal
//!   no content of local services beyond status and timing;
//! * technician — checks that write to a service or test its content
//!   (`tcp --send`, `http --contains`, a byte-by-byte oracle for a local
//!   page's secret otherwise), checks that read what is on the machine
//!   (`du`: folder names and sizes anywhere), third-party plugins (their
//!   options can post data or run commands: their effect cannot be vetted
//!   here), built-in fixes, runbooks;
//! * admin — the admin's own scripts.

use crate::message::Role;

/// Checks that run programs of their own (`plugin`) or read what is on
/// the machine (`du`: the names and sizes of any user's folders).
const LOCAL_CONTENT: &[&str] = &["plugin", "du"];

/// Check options that send data to a service or test its content.
const CONTENT_OPTIONS: &[(&str, &str)] = &[("tcp", "--send"), ("http", "--contains")];

/// The least role that may run `check` with `args`.
pub fn check_role(check: &str, args: &[String]) -> Role {
    if LOCAL_CONTENT.contains(&check) {
        return Role::Technician;
    }
    let sensitive = CONTENT_OPTIONS
        .iter()
        .filter(|(c, _)| *c == check)
        .any(|(_, opt)| args.iter().any(|a| names_option(a, opt)));
    if sensitive {
        Role::Technician
    } else {
        Role::Viewer
    }
}

/// The least role that may run the fix `action`.
pub fn fix_role(action: &str) -> Role {
    match action {
        "script" => Role::Admin,
        _ => Role::Technician,
    }
}

/// Whether `arg` is `opt` or `opt=…` (clap's two spellings).
fn names_option(arg: &str, opt: &str) -> bool {
    arg == opt || arg.strip_prefix(opt).is_some_and(|r| r.starts_with('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn read_only_checks_are_for_viewers() {
        assert_eq!(check_role("disk", &s(&["/"])), Role::Viewer);
        assert_eq!(
            check_role("tcp", &s(&["h:1", "--expect", "SSH"])),
            Role::Viewer
        );
        assert_eq!(check_role("http", &s(&["http://h/"])), Role::Viewer);
    }

    #[test]
    fn content_probes_and_plugins_need_a_technician() {
        assert_eq!(
            check_role("plugin", &s(&["check_dummy", "0"])),
            Role::Technician
        );
        assert_eq!(
            check_role("tcp", &s(&["h:1", "--send=PING"])),
            Role::Technician
        );
        assert_eq!(
            check_role("http", &s(&["http://h/", "--contains", "s"])),
            Role::Technician
        );
        assert_eq!(fix_role("flush-dns"), Role::Technician);
        assert_eq!(fix_role("script"), Role::Admin);
    }
}
