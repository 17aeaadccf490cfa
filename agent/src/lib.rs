//! # firstline-agent
//!
//! The daemon on each managed machine: it runs the checks an L1 technician
//! runs by hand and keeps one outbound QUIC connection to the relay, through
//! which technicians reach it. The binary (`main.rs`) is a thin CLI over this
//! library, which `firstline demo` also embeds.
//!
//! Where things live: [`checks`] (one file per check), [`link`] (the
//! connection to the relay, request serving, certificate renewal),
//! [`enroll`] (first contact), [`backoff`] (reconnect delays), [`config`]
//! (`agent.toml`), [`monitor`] (the schedule and incident state machine),
//! [`outbox`] (durable events until the relay acknowledges them), [`help`]
//! (the local socket of `firstline-help`, for the person at the machine).

pub mod backoff;
pub mod checks;
pub mod config;
pub mod enroll;
pub mod files;
pub mod fixes;
pub mod help;
pub mod link;
pub mod monitor;
pub mod outbox;
pub mod policy;
pub mod process;
pub mod requests;
pub mod runbook;
pub mod worker;

pub use config::Loaded;
