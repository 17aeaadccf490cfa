//! What a page answers when it cannot show what was asked: an HTML page
//! with a status that says why — the relay's refusal mapped to its HTTP
//! meaning, or the guard's — in text escaped by the template.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use firstline_proto::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The relay refused or failed the request.
    #[error("{message}")]
    Relay { code: ErrorCode, message: String },
    /// The relay cannot be reached, or the connection dropped mid-answer.
    #[error("cannot reach the relay: {0}")]
    Lost(String),
    /// The request itself is wrong (a form field, a parameter).
    #[error("{0}")]
    BadRequest(String),
    /// The page is not for this operator's role (the relay would refuse
    /// what it shows too).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// No session: the browser did not come through the printed URL.
    #[error("open the web console with the latest URL `firstline web` printed: each logs in once (a used or expired one does not)")]
    Unauthorized,
    /// A `Host` this server is not (DNS rebinding) or a bad request line.
    #[error("{0}")]
    BadHost(String),
    /// A cross-site request.
    #[error("{0}")]
    CrossSite(String),
    #[error("{0}")]
    Internal(String),
}

impl WebError {
    /// The connection failed: its one-line reason.
    pub fn lost(e: anyhow::Error) -> WebError {
        WebError::Lost(firstline_net::cli::error_line(&e))
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::Relay { code, .. } => relay_status(*code),
            WebError::Lost(_) => StatusCode::BAD_GATEWAY,
            WebError::BadRequest(_) | WebError::BadHost(_) => StatusCode::BAD_REQUEST,
            WebError::Forbidden(_) | WebError::CrossSite(_) => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Unauthorized => StatusCode::UNAUTHORIZED,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The relay's error code as an HTTP status: refusals are 403, unknown
/// names 404, a wrong request 400, an agent away 409; the rest is the
/// relay's (or the agent's) failure, 502 — or 504 for a timeout.
pub fn relay_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Forbidden
        | ErrorCode::Refused
        | ErrorCode::Revoked
        | ErrorCode::Unauthenticated => StatusCode::FORBIDDEN,
        ErrorCode::UnknownAgent
        | ErrorCode::UnknownCheck
        | ErrorCode::UnknownTicket
        | ErrorCode::UnknownOperator => StatusCode::NOT_FOUND,
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::AgentOffline | ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// The error page: standalone (no navigation, no relay request), so it
/// can be shown before a session exists and when the relay is away.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    reason: String,
    message: String,
    /// Link back to the fleet and the stylesheet (neither on the 401 and
    /// 400 pages: without a session they would be refused too).
    home: bool,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        let page = ErrorPage {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("error").to_string(),
            message: super::text(&self.to_string()),
            home: !matches!(self, WebError::Unauthorized | WebError::BadHost(_)),
        };
        let html = page
            .render()
            .unwrap_or_else(|_| "<!doctype html><title>error</title>error".into());
        (status, Html(html)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_from_relay_codes() {
        let s = |code| {
            WebError::Relay {
                code,
                message: String::new(),
            }
            .status()
        };
        assert_eq!(s(ErrorCode::Forbidden), StatusCode::FORBIDDEN);
        assert_eq!(s(ErrorCode::Refused), StatusCode::FORBIDDEN);
        assert_eq!(s(ErrorCode::UnknownAgent), StatusCode::NOT_FOUND);
        assert_eq!(s(ErrorCode::BadRequest), StatusCode::BAD_REQUEST);
        assert_eq!(s(ErrorCode::AgentOffline), StatusCode::CONFLICT);
        assert_eq!(s(ErrorCode::Internal), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn the_page_escapes_what_it_shows() {
        let r = WebError::Relay {
            code: ErrorCode::Forbidden,
            message: "<script>alert(1)</script>\u{1b}[2J".into(),
        };
        let page = ErrorPage {
            status: 403,
            reason: "Forbidden".into(),
            message: super::super::text(&r.to_string()),
            home: true,
        }
        .render()
        .unwrap_or_default();
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&#60;script&#62;"), "{page}");
        assert!(page.contains("\\u{1b}"), "{page}");
    }
}
