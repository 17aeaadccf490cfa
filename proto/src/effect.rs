//! Role by effect: the least operator role that may ask for an action, from
//! what the action does rather than what it is called — read from each
//! action's one declaration (`crate::declare`).
//!
//! One rule, used twice: the relay checks it before routing a request, and
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

use crate::declare::{Check, Fix};
use crate::message::Role;

/// The least role that may run `check` with `args` (an unknown check is
/// refused by the agent whatever the role).
pub fn check_role(check: &str, args: &[String]) -> Role {
    Check::from_name(check).map_or(Role::Viewer, |c| c.declare(args).role)
}

/// The least role that may run the fix `action`.
pub fn fix_role(action: &str) -> Role {
    Fix::from_name(action).map_or(Role::Technician, |f| f.declare().role)
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
