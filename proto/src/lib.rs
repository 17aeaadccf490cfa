//! # firstline-proto
//!
//! The wire contract shared by the agent, the relay and the console, kept
//! sans-IO (no sockets, no async runtime, no clock reads) so that it can be
//! fuzzed, property-tested and reused by any transport.
//!
//! * [`frame`] — length-prefixed frames (u32 big-endian) with a hard 1 MiB cap
//!   and an incremental decoder that never preallocates what a peer declares.
//! * [`message`] — every message that travels on a stream, inside a versioned
//!   [`message::Envelope`].
//! * [`result`] — the check/fix result shape from DESIGN.md.
//! * [`version`] — protocol version negotiation at connect.
//! * [`event`] — monitoring events from an agent's outbox.
//! * [`declare`] — every check and fix declared once: its role by effect, who
//!   its worker runs as, its capabilities and its view of the file system.
//! * [`effect`] — the least role each action needs (relay and agent agree),
//!   read from [`declare`].
//! * [`text`] — wire text made safe for terminals and logs.
//! * [`limits`] — the sizes peers are held to.
//! * [`runbook`] — a runbook run's step records and verdict.
//! * [`select`] — selectors (`tag=floor2,os=debian*`) and agents' health.
//! * [`action`] — actions on many machines, and queued for offline ones.
//! * [`central`] — monitor sets defined on the relay for the agents a selector picks.

pub mod action;
pub mod central;
pub mod declare;
pub mod effect;
pub mod event;
pub mod frame;
pub mod kb;
pub mod limits;
pub mod message;
pub mod report;
pub mod result;
pub mod runbook;
pub mod select;
pub mod text;
pub mod version;

pub use event::{AgentEvent, Diagnostics, EventKind, HelpRequest, HelpTicket};
pub use frame::{encode, FrameDecoder, FrameError, MAX_FRAME_LEN};
pub use message::{
    AgentInfo, AuditRecord, AuditVerification, Envelope, ErrorCode, Facts, FleetSummary, Hello,
    Message, Notice, Role, RunbookInfo, TicketChange, TicketEntry, TicketSummary, Welcome,
};
pub use result::{CheckResult, Status};
pub use select::Selector;
pub use version::{negotiate, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN};

/// ALPN for authenticated peers (agents and operators, mutual TLS).
pub const ALPN: &[u8] = b"firstline/1";
/// ALPN for first contact: an agent with a token but no certificate yet.
/// The relay accepts exactly one `Enroll` request on such a connection.
pub const ALPN_ENROLL: &[u8] = b"firstline-enroll/1";
/// Server name every client checks the relay certificate against. Only the
/// relay's certificate, issued by the relay's private CA, carries it.
pub const RELAY_SERVER_NAME: &str = "firstline-relay";
/// Default UDP port of the relay.
pub const DEFAULT_PORT: u16 = 4433;
