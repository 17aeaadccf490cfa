//! The relay's wall: which role may send which request. Each role includes
//! the rights of the one below it (viewer < technician < admin).
//!
//! * viewer — list agents, run read-only checks, read tickets;
//! * technician — also ticket changes (and, later, runbooks and fixes);
//! * admin — also custom script fixes, tokens, operators.

use firstline_proto::{Message, Role};

/// The least role allowed to send `msg`; `None` for messages that are not
/// operator requests at all.
pub fn required_role(msg: &Message) -> Option<Role> {
    Some(match msg {
        Message::ListAgents {}
        | Message::ListTickets { .. }
        | Message::TicketShow { .. }
        | Message::Watch {} => Role::Viewer,
        Message::Run { ticket: None, .. } => Role::Viewer,
        Message::Run {
            ticket: Some(_), ..
        }
        | Message::TicketNew { .. }
        | Message::TicketUpdate { .. } => Role::Technician,
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
        assert_eq!(required_role(&Message::ListAgents {}), Some(Role::Viewer));
        assert_eq!(required_role(&Message::Done {}), None);
    }
}
