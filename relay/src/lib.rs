//! # firstline-relay
//!
//! The hub: a QUIC endpoint that agents dial out to and consoles connect to,
//! with a private CA, enrollment, routing of requests to live agents, the
//! ticket store and the audit log. The binary (`main.rs`) is a thin CLI over
//! this library, which `firstline demo` also embeds. ARCHITECTURE.md at the
//! workspace's root draws how the modules depend on each other.
//!
//! * connections: [`server`] (accept loop, who is who), [`admission`]
//!   (connection bounds, rate limits), [`enroll`] (first contact),
//!   [`agent_link`] (an agent's live connection), [`console`] (an
//!   operator's connection);
//! * console requests: [`requests`] (one file per request or small group:
//!   role, audit line, handler), [`routing`] (requests forwarded to
//!   agents), [`reply`] (answer streams, lists in parts), [`queue`]
//!   (actions queued for offline machines: delivered when they connect,
//!   expired by a sweep);
//! * shared state: [`state`] (the [`state::Relay`] every handler gets),
//!   [`registry`] (who is connected here), [`cluster`] (the other relays
//!   of the deployment, over NATS: presence, forwarded requests, notices,
//!   revocations, audit checkpoints), [`notices`] (live notices),
//!   [`central`] (central monitor sets sent to agents, their reports),
//!   [`clock`] (time, passed in), [`error`] (errors with their wire code);
//! * storage: [`store`] (one async interface, SQLite and PostgreSQL
//!   backends, the ticket rules, the incident engine, the audit chain, the
//!   webhook outbox), [`ticket`] (what a ticket is), [`audit`] (the
//!   anchor outside the database, `audit verify`), [`webhook`] (external
//!   help desks), [`helpdesk`] (tickets mirrored into Request Tracker);
//! * the rest: [`ca`] (certificates), [`token`], [`admin`] (offline admin
//!   commands and the lifecycle operations they share with the console's
//!   requests), [`config`] (`relay.toml`).

pub mod admin;
pub mod admission;
pub mod agent_link;
pub mod audit;
pub mod ca;
pub mod central;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod console;
pub mod enroll;
pub mod error;
pub mod helpdesk;
pub mod kb;
pub mod metrics;
pub mod notices;
pub mod queue;
pub mod registry;
pub mod reply;
pub mod requests;
pub mod routing;
pub mod server;
pub mod state;
pub mod store;
pub mod ticket;
pub mod token;
pub mod webhook;

pub use config::{RelayConfig, RelayDir};
pub use server::{start, RelayHandle};
