//! The per-monitor incident state machine, pure and persisted as JSON.
//!
//! An incident opens after `fail_after` consecutive non-ok results (flap
//! damping: a check alternating fail/ok never opens one), a change of
//! non-ok status inside it is an update, and it resolves after
//! `recover_after` consecutive ok results.

use firstline_proto::{EventKind, Status};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct IncidentState {
    pub bad_streak: u32,
    pub ok_streak: u32,
    /// Status of the open incident, if one is open.
    pub open: Option<Status>,
}

impl IncidentState {
    /// Feed one result; what it means.
    pub fn observe(&mut self, status: Status, fail_after: u32, recover_after: u32) -> EventKind {
        if status == Status::Ok {
            self.bad_streak = 0;
            self.ok_streak = self.ok_streak.saturating_add(1);
            if self.open.is_some() && self.ok_streak >= recover_after.max(1) {
                self.open = None;
                return EventKind::IncidentResolved;
            }
            return EventKind::Result;
        }
        self.ok_streak = 0;
        self.bad_streak = self.bad_streak.saturating_add(1);
        match self.open {
            None if self.bad_streak >= fail_after.max(1) => {
                self.open = Some(status);
                EventKind::IncidentOpened
            }
            Some(prev) if prev != status => {
                self.open = Some(status);
                EventKind::IncidentUpdated
            }
            _ => EventKind::Result,
        }
    }

    pub fn in_incident(&self) -> bool {
        self.open.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    fn run(seq: &[Status]) -> Vec<EventKind> {
        let mut s = IncidentState::default();
        seq.iter().map(|st| s.observe(*st, 3, 2)).collect()
    }

    #[test]
    fn opens_after_three_updates_and_resolves_after_two() {
        use EventKind::*;
        assert_eq!(
            run(&[Warn, Warn, Warn, Crit, Crit, Ok, Ok, Ok]),
            [
                Result,
                Result,
                IncidentOpened,
                IncidentUpdated,
                Result,
                Result,
                IncidentResolved,
                Result
            ]
        );
    }

    #[test]
    fn flapping_never_opens() {
        let events = run(&[Crit, Ok, Crit, Ok, Crit, Ok, Crit, Ok, Crit, Crit, Ok]);
        assert!(events.iter().all(|e| *e == EventKind::Result), "{events:?}");
    }

    #[test]
    fn one_ok_inside_an_incident_does_not_resolve() {
        use EventKind::*;
        assert_eq!(
            run(&[Crit, Crit, Crit, Ok, Crit, Ok, Ok]),
            [
                Result,
                Result,
                IncidentOpened,
                Result,
                Result,
                Result,
                IncidentResolved
            ]
        );
    }
}
