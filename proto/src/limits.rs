//! Sizes every peer holds the others to. A frame may carry up to
//! [`crate::MAX_FRAME_LEN`], but most requests are far smaller, and a peer
//! that has not proved who it is gets the least room: the relay reads such
//! streams with these caps, and cuts what it stores to these lengths, so no
//! peer can make it buffer, store or log more than it needs.

/// An `enroll` request: a token, a name and a CSR.
pub const ENROLL_FRAME: usize = 16 * 1024;
/// An agent's `hello`.
pub const HELLO_FRAME: usize = 16 * 1024;
/// A console's request (a ticket comment is the largest).
pub const CONSOLE_REQUEST_FRAME: usize = 256 * 1024;
/// The parts of an enrollment request.
pub const TOKEN_LEN: usize = 256;
pub const CSR_LEN: usize = 8 * 1024;
/// One line of `hello` (software, OS, hostname).
pub const HELLO_FIELD: usize = 256;
/// An agent's facts: addresses listed, and the bytes of each.
pub const FACT_ADDRESSES: usize = 64;
pub const FACT_ADDRESS: usize = 64;
/// A monitor's id.
pub const MONITOR_ID: usize = 200;
/// A check result's one-line fields.
pub const TARGET: usize = 1024;
pub const SUMMARY: usize = 4 * 1024;
/// Metrics per result, and `changed` lines per fix result.
pub const METRICS: usize = 64;
pub const CHANGED_LINES: usize = 50;
/// A runbook verdict's one-word fields (runbook, agent, cause, team, kb)
/// and a step's id and action.
pub const VERDICT_ID: usize = 200;
/// A verdict's message for the technician, and the one for the user.
pub const VERDICT_MESSAGE: usize = 4 * 1024;
/// A verdict's parameters and a step's arguments: how many, how long each.
pub const VERDICT_ARGS: usize = 32;
pub const VERDICT_ARG: usize = 256;
/// Steps of a verdict.
pub const VERDICT_STEPS: usize = 64;
/// Bytes (as JSON) of a verdict's steps together: the steps past it are
/// left out, and a last step says how many.
pub const VERDICT_STEP_BYTES: usize = 64 * 1024;
/// A ticket title.
pub const TITLE: usize = 200;
/// A ticket comment or other text body from a console.
pub const BODY: usize = 64 * 1024;
/// Events in one `events` message from an agent.
pub const EVENTS_PER_MESSAGE: usize = 1000;
/// Answers are sent in messages of at most this many bytes of items, far
/// below the frame cap (lists of any length are streamed in parts).
pub const ANSWER_PART: usize = 256 * 1024;
