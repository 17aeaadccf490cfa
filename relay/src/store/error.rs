//! What can go wrong in the store, told apart: the caller maps each kind to
//! its wire code ([`crate::error::RelayError`]) without reading messages.

/// The thing that was not found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    Ticket(u64),
    Agent(String),
    Operator(String),
    Token(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such ticket, agent, operator or token.
    #[error("{}", missing_text(.0))]
    NotFound(Missing),
    /// A valid change the current state does not allow (a closed ticket
    /// cannot be resolved; a name already taken).
    #[error("{0}")]
    Conflict(String),
    /// A value the rules refuse (an unknown priority).
    #[error("{0}")]
    Invalid(String),
    /// The transaction lost a race with another writer and may simply be
    /// run again (PostgreSQL's serialization failures and deadlocks,
    /// SQLite's busy database). [`crate::store::Store`] retries these; a
    /// caller sees one only when the retries ran out.
    #[error("database busy: {0}")]
    Retry(String),
    /// The database cannot be used: not reachable, a newer schema, a
    /// backend not built in.
    #[error("{0}")]
    Unavailable(String),
    /// The audit chain holds rows no relay wrote (or lost rows a relay
    /// wrote): appends stop until an operator acknowledges it.
    #[error("audit chain tampered with: {0}")]
    Tampered(String),
    /// Anything else from the database or the rules (a bug, a corrupt row).
    #[error("database error: {0}")]
    Backend(String),
}

fn missing_text(m: &Missing) -> String {
    match m {
        Missing::Ticket(id) => format!("no ticket #{id}"),
        Missing::Agent(name) => format!("no agent named `{name}` is enrolled at this relay"),
        Missing::Operator(name) => format!("no operator named `{name}` at this relay"),
        Missing::Token(id) => format!("no enrollment token `{id}` at this relay"),
    }
}

impl StoreError {
    /// Any error of the rules or a backend's own type, as a backend error.
    pub fn backend(e: impl std::fmt::Display) -> StoreError {
        StoreError::Backend(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::backend(e)
    }
}

impl From<anyhow::Error> for StoreError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<StoreError>() {
            Ok(s) => s,
            Err(e) => StoreError::Backend(format!("{e:#}")),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
