//! Reconnect delays: capped exponential backoff with full jitter, so a
//! relay restart is not met by every agent at the same instant; and which
//! of the agent's relays to dial next ([`Failover`]).

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The delay before the next attempt: uniform in
    /// `[ceiling/2, ceiling]`, ceiling = min·2^attempt capped at max.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// After a connection that worked.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Which relay to dial next, and when: a pure state machine over the list
/// of relays and the outcome of each attempt (the link does the dialing).
///
/// * The relays are tried in rounds, in the listed order, starting from the
///   *preferred* one: the last relay that held a stable session (the first
///   relay until one has).
/// * Within a round a failed relay is followed at once by the next one;
///   only a round in which every relay failed waits, for the backoff's next
///   delay (capped, jittered, growing from round to round), before the next
///   round starts again from the preferred relay.
/// * A stable session that ends makes its relay the preferred one, resets
///   the backoff and, after the backoff's first delay, starts a new round
///   there: a relay that restarts gets its agents back, a dead one costs
///   one connect timeout before the next relay is tried.
/// * Nothing ever moves the agent off a relay that works: when the agent
///   is on B because A failed, A coming back changes nothing (no flapping).
/// * A session that ends before it is stable counts as a failure of its
///   relay within the round, so a relay that accepts and then drops every
///   agent cannot hold them: the others get their turn.
///
/// With one relay this is the plain backoff: one attempt per round.
#[derive(Debug, Clone)]
pub struct Failover {
    count: usize,
    preferred: usize,
    current: usize,
    failed_in_round: usize,
    backoff: Backoff,
}

/// How the attempt at [`Failover::current`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No session (unreachable, handshake or `hello` refused), or a session
    /// that ended before it was stable.
    Failed,
    /// A stable session ended.
    Lost,
}

/// The next attempt: which relay, after how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    pub index: usize,
    pub delay: Duration,
    /// Every relay failed in the round that just ended (the delay is the
    /// backoff between rounds).
    pub round_failed: bool,
}

impl Failover {
    /// `count` relays (at least one is assumed; zero is treated as one).
    pub fn new(count: usize, min: Duration, max: Duration) -> Self {
        Failover {
            count: count.max(1),
            preferred: 0,
            current: 0,
            failed_in_round: 0,
            backoff: Backoff::new(min, max),
        }
    }

    /// The relay to dial now.
    pub fn current(&self) -> usize {
        self.current
    }

    /// Where each round starts.
    pub fn preferred(&self) -> usize {
        self.preferred
    }

    /// Record how the attempt at [`current`](Self::current) ended; the
    /// answer (also the new `current`) says where to go and when.
    pub fn next(&mut self, outcome: Outcome) -> Next {
        match outcome {
            Outcome::Lost => {
                self.preferred = self.current;
                self.failed_in_round = 0;
                self.backoff.reset();
                Next {
                    index: self.current,
                    delay: self.backoff.next_delay(),
                    round_failed: false,
                }
            }
            Outcome::Failed => {
                self.failed_in_round += 1;
                if self.failed_in_round < self.count {
                    self.current = (self.current + 1) % self.count;
                    return Next {
                        index: self.current,
                        delay: Duration::ZERO,
                        round_failed: false,
                    };
                }
                self.failed_in_round = 0;
                self.current = self.preferred;
                Next {
                    index: self.current,
                    delay: self.backoff.next_delay(),
                    round_failed: true,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(2);

    /// Feed `outcomes` to a failover over `relays`: each step's relay (by
    /// address) and delay, starting with the first attempt.
    fn plan(relays: &[&str], outcomes: &[Outcome]) -> Vec<(String, Duration)> {
        let mut f = Failover::new(relays.len(), MIN, MAX);
        let mut steps = vec![(relays[f.current()].to_string(), Duration::ZERO)];
        for o in outcomes {
            let n = f.next(*o);
            assert_eq!(n.index, f.current());
            steps.push((relays[n.index].to_string(), n.delay));
        }
        steps
    }

    fn names(steps: &[(String, Duration)]) -> Vec<&str> {
        steps.iter().map(|(r, _)| r.as_str()).collect()
    }

    use Outcome::{Failed, Lost};

    #[test]
    fn a_round_tries_every_relay_in_order_then_backs_off() {
        let steps = plan(
            &["a", "b", "c"],
            &[Failed, Failed, Failed, Failed, Failed, Failed],
        );
        assert_eq!(names(&steps), ["a", "b", "c", "a", "b", "c", "a"]);
        // No wait inside a round; the backoff between rounds, growing.
        let delays: Vec<Duration> = steps.iter().map(|(_, d)| *d).collect();
        assert_eq!(delays[1], Duration::ZERO);
        assert_eq!(delays[2], Duration::ZERO);
        assert!(delays[3] >= MIN / 2 && delays[3] <= MIN, "{delays:?}");
        assert_eq!(delays[4], Duration::ZERO);
        assert_eq!(delays[5], Duration::ZERO);
        assert!(delays[6] >= MIN && delays[6] <= MIN * 2, "{delays:?}");
    }

    #[test]
    fn the_backoff_between_rounds_is_capped() {
        let mut f = Failover::new(2, MIN, MAX);
        for _ in 0..40 {
            let n = f.next(Failed);
            assert!(n.delay <= MAX);
        }
        f.next(Failed);
        let n = f.next(Failed);
        assert!(n.round_failed && n.delay >= MAX / 2, "{n:?}");
    }

    #[test]
    fn a_dead_first_relay_costs_one_attempt_per_round() {
        // a is a closed port, b answers: the agent is on b after one failure.
        let steps = plan(&["a", "b"], &[Failed]);
        assert_eq!(names(&steps), ["a", "b"]);
        assert_eq!(steps[1].1, Duration::ZERO);
    }

    #[test]
    fn a_lost_relay_is_tried_again_first_then_the_next_at_once() {
        // Stable on a, a dies: a once more (after the short first delay),
        // then b without waiting.
        let steps = plan(&["a", "b"], &[Lost, Failed]);
        assert_eq!(names(&steps), ["a", "a", "b"]);
        assert!(steps[1].1 <= MIN, "{steps:?}");
        assert_eq!(steps[2].1, Duration::ZERO);
    }

    #[test]
    fn stays_on_the_relay_that_works_no_flapping() {
        // a dies, the agent moves to b and holds a stable session there: b
        // is now where rounds start. When b goes, b first, then a.
        let mut f = Failover::new(2, MIN, MAX);
        f.next(Lost); // stable on a, lost
        f.next(Failed); // a does not answer: b
        assert_eq!(f.current(), 1);
        let n = f.next(Lost); // stable on b, lost (a is back meanwhile)
        assert_eq!((n.index, f.preferred()), (1, 1));
        let n = f.next(Failed);
        assert_eq!((n.index, n.delay), (0, Duration::ZERO));
        // b again is lost (stable) while on a: a is preferred now.
        let n = f.next(Lost);
        assert_eq!((n.index, f.preferred()), (0, 0));
    }

    #[test]
    fn a_relay_dropping_agents_at_once_does_not_hold_them() {
        // a accepts and drops every session before it is stable (a Failed
        // outcome): b gets its turn in the same round.
        let steps = plan(&["a", "b"], &[Failed, Lost]);
        assert_eq!(names(&steps), ["a", "b", "b"]);
    }

    #[test]
    fn rounds_start_from_the_preferred_relay() {
        let mut f = Failover::new(3, MIN, MAX);
        f.next(Failed); // a
        f.next(Lost); // stable on b
        assert_eq!(f.preferred(), 1);
        let order: Vec<usize> = (0..6).map(|_| f.next(Failed).index).collect();
        // b failed: c, a, then (round over) b again, c, a, b.
        assert_eq!(order, [2, 0, 1, 2, 0, 1]);
    }

    #[test]
    fn a_stable_session_resets_the_backoff() {
        let mut f = Failover::new(2, MIN, MAX);
        for _ in 0..20 {
            f.next(Failed);
        }
        let n = f.next(Lost);
        assert!(n.delay <= MIN, "{n:?}");
    }

    #[test]
    fn one_relay_is_the_plain_backoff() {
        let steps = plan(&["a"], &[Failed, Failed, Lost, Failed]);
        assert_eq!(names(&steps), ["a"; 5]);
        assert!(steps[1].1 >= MIN / 2 && steps[1].1 <= MIN);
        assert!(steps[2].1 >= MIN && steps[2].1 <= MIN * 2);
        assert!(steps[3].1 <= MIN, "reset after a stable session");
        assert!(steps[4].1 >= MIN / 2 && steps[4].1 <= MIN * 2);
    }

    #[test]
    fn grows_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..30 {
            assert!(b.next_delay() <= Duration::from_secs(2));
        }
        assert!(
            b.next_delay() >= Duration::from_secs(1),
            "capped ceiling reached"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
