//! # firstline-relay
//!
//! The hub: a QUIC endpoint that agents dial out to and consoles connect to,
//! with a private CA, enrollment, routing of requests to live agents, the
//! ticket store and the audit log. The binary (`main.rs`) is a thin CLI over
//! this library, which `firstline demo` also embeds.
//!
//! Where things live: [`server`] (accept loop, who is who), [`admission`]
//! (connection bounds, rate limits), [`enroll`]
//! (first contact), [`agent_link`] (an agent's live connection),
//! [`operator`] (console requests), [`answer`] (lists in parts), [`policy`] (roles), [`registry`] (who is
//! online), [`store`] (SQLite), [`audit`] (the anchored audit chain), [`tickets`], [`incidents`] (alert →
//! ticket engine), [`webhook`] (external help desks), [`ca`]
//! (certificates), [`token`], [`admin`] (offline admin commands and the lifecycle
//! operations they share with [`admin_requests`], the console's),
//! [`config`] (`relay.toml`).

pub mod admin;
pub mod admin_requests;
pub mod admission;
pub mod agent_link;
pub mod answer;
pub mod audit;
pub mod ca;
pub mod config;
pub mod enroll;
pub mod incidents;
pub mod operator;
pub mod policy;
pub mod registry;
pub mod routing;
pub mod server;
pub mod store;
pub mod ticket_requests;
pub mod tickets;
pub mod token;
pub mod webhook;

pub use config::{RelayConfig, RelayDir};
pub use server::{start, RelayHandle};
