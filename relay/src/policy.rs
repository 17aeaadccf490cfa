//! The relay's wall: which role may send which request. Each role includes
//! the rights of the one below it (viewer < technician < admin).
//!
//! * viewer — list agents, run read-only checks, read tickets;
//! * technician — also checks that write to or probe the content of a
//!   service, plugins, runbooks, built-in fixes, ticket changes, the audit log;
//! * admin — also custom script fixes, and the lifecycle: enrollment tokens
//!   (list, create, revoke), operators (list, change a role) and agents'
//!   records (list, remove) — the same as `firstline-relay` does offline
//!   on the relay host.
//!
//! The role is the one in the relay's database at the time of the request
//! (`crate::operator`), not the one the certificate was issued with.
//!
//! What a check or fix needs comes from [`firstline_proto::effect`], the
//! table the agent checks again. A runbook's steps are known only to the
//! agent: the relay lets technicians ask, and the agent refuses a runbook
//! any of whose steps needs more than the requester's role.

use firstline_proto::effect::{check_role, fix_role};
use firstline_proto::{Message, Role};

/// The least role allowed to send `msg`; `None` for messages that are not
/// operator requests at all.
pub fn required_role(msg: &Message) -> Option<Role> {
    Some(match msg {
        Message::ListAgents {}
        | Message::ListTickets { .. }
        | Message::TicketShow { .. }
        | Message::ListRunbooks { .. }
        | Message::ListChecks { .. }
        | Message::Watch {} => Role::Viewer,
        Message::Run {
            check,
            args,
            ticket,
            ..
        } => match ticket {
            // Writing into a ticket is a technician's change.
            Some(_) => check_role(check, args).max(Role::Technician),
            None => check_role(check, args),
        },
        Message::Fix { action, .. } => fix_role(action),
        Message::Runbook { .. }
        | Message::TicketNew { .. }
        | Message::TicketUpdate { .. }
        | Message::ListAudit { .. } => Role::Technician,
        Message::ListTokens {}
        | Message::TokenCreate { .. }
        | Message::TokenRevoke { .. }
        | Message::ListOperators {}
        | Message::OperatorRole { .. }
        | Message::ListAgentRecords {}
        | Message::AgentRemove { .. } => Role::Admin,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix() {
        let run = |ticket| Message::Run {
            agent: "a".into(),
            check: "disk".into(),
            args: vec![],
            ticket,
        };
        assert_eq!(required_role(&run(None)), Some(Role::Viewer));
        assert_eq!(required_role(&run(Some(1))), Some(Role::Technician));
        let plugin = Message::Run {
            agent: "a".into(),
            check: "plugin".into(),
            args: vec!["negate".into()],
            ticket: None,
        };
        assert_eq!(required_role(&plugin), Some(Role::Technician));
        assert_eq!(required_role(&Message::ListAgents {}), Some(Role::Viewer));
        assert_eq!(required_role(&Message::Done {}), None);
        let fix = |action: &str| Message::Fix {
            agent: "a".into(),
            action: action.into(),
            args: vec![],
            dry_run: false,
            ticket: None,
        };
        assert_eq!(required_role(&fix("flush-dns")), Some(Role::Technician));
        assert_eq!(required_role(&fix("script")), Some(Role::Admin));
        let runbook = Message::Runbook {
            agent: "a".into(),
            name: "cant-print".into(),
            params: vec![],
            dry_run: false,
            ticket: None,
        };
        assert_eq!(required_role(&runbook), Some(Role::Technician));
        for admin_only in [
            Message::ListTokens {},
            Message::TokenRevoke { id: "x".into() },
            Message::ListOperators {},
            Message::OperatorRole {
                name: "x".into(),
                role: Role::Admin,
            },
            Message::ListAgentRecords {},
            Message::AgentRemove { name: "x".into() },
        ] {
            assert_eq!(required_role(&admin_only), Some(Role::Admin));
        }
    }
}
