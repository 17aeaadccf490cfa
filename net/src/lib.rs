//! # firstline-net
//!
//! The one place where firstline touches QUIC and TLS, shared by the agent,
//! the relay and the console so that each of them sets up connections, reads
//! frames and reads identities the same way.
//!
//! * [`tls`] — rustls configs with the `ring` provider passed explicitly:
//!   mutual TLS for peers, CA pinning by fingerprint for enrollment.
//! * [`endpoint`] — quinn endpoints and the transport limits (keep-alive,
//!   idle timeout, stream counts).
//! * [`stream`] — framed request streams over quinn (uses `firstline-proto`).
//! * [`identity`] — who a verified certificate belongs to.
//! * [`pem`] — PEM loading helpers.
//! * [`credential`] — operator credential files.
//! * [`private`] — owner-only files: keys, databases, configs with secrets.
//! * [`cli`] — logging and exit codes shared by the binaries.
//! * [`config`] — TOML config files whose errors name the file and line.
//! * [`monitors`] — files of `[[monitor]]` tables (central monitor sets).
//! * [`notify`] — systemd readiness, status, watchdog and stopping notices.

pub mod cli;
pub mod config;
pub mod credential;
pub mod endpoint;
pub mod identity;
pub mod monitors;
pub mod notify;
pub mod pem;
pub mod private;
pub mod stream;
pub mod tls;

pub use identity::{fingerprint, Identity};
pub use stream::{FramedRecv, FramedSend, LinkError};
