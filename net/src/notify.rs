//! The systemd notification protocol (`sd_notify(3)`) for the daemons:
//! `READY=1` once started, `STATUS=` with a one-line state, `WATCHDOG=1`
//! while the main loop turns, `STOPPING=1` on shutdown.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing. The
//! environment is read, never changed: children (plugins, scripts) inherit
//! `NOTIFY_SOCKET`, and systemd ignores them (`NotifyAccess=main`, the
//! default of `Type=notify`).
//!
//! ```no_run
//! # async fn main_loop() {}
//! # async fn example() {
//! let notify = firstline_net::notify::Notifier::from_env();
//! notify.ready("listening");
//! // WATCHDOG=1 is sent only while `main_loop` is being polled: a loop
//! // stuck in a blocking call stops the pings and systemd restarts us.
//! notify.drive(main_loop()).await;
//! notify.stopping();
//! # }
//! ```

use sd_notify::NotifyState;
use std::future::Future;
use std::time::Duration;

/// A handle on the service manager's notification socket (cheap to copy).
#[derive(Debug, Clone, Copy)]
pub struct Notifier {
    enabled: bool,
    /// Half the watchdog interval systemd asked for, when it asked.
    watchdog_every: Option<Duration>,
}

impl Notifier {
    /// Read `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`.
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        let watchdog_every = sd_notify::watchdog_enabled()
            .filter(|d| enabled && !d.is_zero())
            .map(|d| (d / 2).max(Duration::from_millis(1)));
        Notifier {
            enabled,
            watchdog_every,
        }
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// How often [`drive`](Self::drive) sends `WATCHDOG=1`: half of
    /// `WatchdogSec=`, or `None` when the watchdog is off.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_every
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
    }

    /// `STATUS=…`, shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(&one_line(status))]);
    }

    /// `WATCHDOG=1`: the main loop is alive.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// Run `main_loop` to its end, sending `WATCHDOG=1` every half watchdog
    /// interval from the same task that polls it: when the loop blocks its
    /// thread, the pings stop and systemd restarts the service.
    pub async fn drive<F: Future>(&self, main_loop: F) -> F::Output {
        let Some(every) = self.watchdog_every else {
            return main_loop.await;
        };
        let mut main_loop = std::pin::pin!(main_loop);
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                out = &mut main_loop => return out,
                _ = ticks.tick() => self.watchdog(),
            }
        }
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!("sd_notify failed: {e}");
        }
    }
}

/// A status is one line: newlines would start new assignments.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_one_line() {
        assert_eq!(one_line("a\nb\rc"), "a b c");
    }
}
