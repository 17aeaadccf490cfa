//! The relay's errors on the wire: a [`RelayError`] carries the
//! [`ErrorCode`] the peer gets with its message, so a handler says what
//! went wrong once, where it knows, and nobody guesses the code later.

use crate::store::{Missing, StoreError};
use firstline_proto::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RelayError {
    pub code: ErrorCode,
    pub message: String,
}

impl RelayError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> RelayError {
        RelayError {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> RelayError {
        RelayError::new(ErrorCode::BadRequest, message)
    }

    pub fn internal(message: impl std::fmt::Display) -> RelayError {
        RelayError::new(ErrorCode::Internal, format!("relay error: {message}"))
    }

    /// No ticket of that number.
    pub fn no_ticket(id: u64) -> RelayError {
        RelayError::new(ErrorCode::UnknownTicket, format!("no ticket #{id}"))
    }

    /// How the audit log words a failed request.
    pub fn audit_text(&self) -> String {
        format!("error {:?}: {}", self.code, self.message)
    }
}

impl From<StoreError> for RelayError {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::NotFound(Missing::Ticket(_)) => ErrorCode::UnknownTicket,
            StoreError::NotFound(Missing::Agent(_)) => ErrorCode::UnknownAgent,
            StoreError::NotFound(Missing::Operator(_)) => ErrorCode::UnknownOperator,
            StoreError::NotFound(Missing::Token(_)) => ErrorCode::BadRequest,
            StoreError::Conflict(_) => ErrorCode::Conflict,
            StoreError::Invalid(_) => ErrorCode::BadRequest,
            _ => return RelayError::internal(e),
        };
        RelayError::new(code, e.to_string())
    }
}

impl From<crate::ticket::InvalidValue> for RelayError {
    fn from(e: crate::ticket::InvalidValue) -> Self {
        RelayError::bad_request(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_carry_their_wire_code() {
        let code = |e: StoreError| RelayError::from(e).code;
        assert_eq!(
            code(StoreError::NotFound(Missing::Ticket(3))),
            ErrorCode::UnknownTicket
        );
        assert_eq!(
            code(StoreError::NotFound(Missing::Operator("x".into()))),
            ErrorCode::UnknownOperator
        );
        assert_eq!(
            code(StoreError::Conflict("closed".into())),
            ErrorCode::Conflict
        );
        assert_eq!(
            code(StoreError::Backend("disk".into())),
            ErrorCode::Internal
        );
        let e = RelayError::from(StoreError::NotFound(Missing::Ticket(3)));
        assert_eq!(e.message, "no ticket #3");
        assert_eq!(e.audit_text(), "error UnknownTicket: no ticket #3");
    }
}
