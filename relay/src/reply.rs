//! The answer stream of a console request, and answers of any length.
//!
//! A list (agents, tickets, a ticket's timeline, the audit log) does not
//! fit one 1 MiB frame once a fleet or a ticket is large enough, so it is
//! sent in parts of at most [`limits::ANSWER_PART`] bytes of items, then
//! `done`; the console puts the parts back together. A send that fails is
//! audited as a failure, never as done ([`Reply::outcome`]).

use crate::error::RelayError;
use firstline_net::{FramedSend, LinkError};
use firstline_proto::{limits, ErrorCode, Message};
use serde::Serialize;

/// How a request ended, as the audit log words it (`ok: 12 tickets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome(pub String);

/// The stream a request is answered on; ended once (by an answer, or by
/// the error the caller sends when the handler failed).
///
/// A console request's reply ([`Reply::held`]) keeps its last message —
/// the whole answer of a one-message request, the `done` of a list, which
/// the console waits for before it shows anything — until the request's
/// audit entry is written: [`Reply::release`] sends it, [`Reply::fail`]
/// sends an error instead (an answer that could not be audited is not
/// given).
pub struct Reply {
    send: Option<FramedSend>,
    /// Whether the last message waits for [`Reply::release`].
    hold: bool,
    held: Held,
}

/// The end of a held reply.
enum Held {
    Nothing,
    /// `finish`: the last message was sent already.
    Finish,
    /// `finish_with` this message.
    Last(Box<Message>),
}

fn ended() -> LinkError {
    LinkError::Ended
}

impl Reply {
    pub fn new(send: FramedSend) -> Reply {
        Reply {
            send: Some(send),
            hold: false,
            held: Held::Nothing,
        }
    }

    /// A reply whose end waits for [`Reply::release`] (see the type).
    pub fn held(send: FramedSend) -> Reply {
        Reply {
            hold: true,
            ..Reply::new(send)
        }
    }

    /// Send the held end of the answer (the audit entry is written).
    pub async fn release(&mut self) -> Result<(), LinkError> {
        self.hold = false;
        match std::mem::replace(&mut self.held, Held::Nothing) {
            Held::Nothing => Ok(()),
            Held::Finish => {
                self.finish();
                Ok(())
            }
            Held::Last(msg) => self.finish_with(*msg).await,
        }
    }

    /// Send one message and keep the stream open.
    pub async fn send(&mut self, msg: Message) -> Result<(), LinkError> {
        self.send.as_mut().ok_or_else(ended)?.send(msg).await
    }

    /// Resolves when the console no longer reads this answer (it stopped
    /// the stream, or its connection is gone); never for an ended reply.
    pub async fn gone(&mut self) {
        match self.send.as_mut() {
            Some(s) => s.stopped().await,
            None => std::future::pending().await,
        }
    }

    /// Send the last message and end the stream.
    pub async fn finish_with(&mut self, msg: Message) -> Result<(), LinkError> {
        if self.hold {
            if self.send.is_none() || !matches!(self.held, Held::Nothing) {
                return Err(ended());
            }
            self.held = Held::Last(Box::new(msg));
            return Ok(());
        }
        self.send.take().ok_or_else(ended)?.finish_with(msg).await
    }

    /// End the stream (the last message was sent already).
    pub fn finish(&mut self) {
        if self.hold {
            if matches!(self.held, Held::Nothing) {
                self.held = Held::Finish;
            }
            return;
        }
        if let Some(s) = self.send.take() {
            let _ = s.finish();
        }
    }

    /// Send `head` (if any), then `items` in parts made by `wrap`, then
    /// `done`.
    pub async fn parts<T: Serialize>(
        &mut self,
        head: Option<Message>,
        items: Vec<T>,
        wrap: impl Fn(Vec<T>) -> Message,
    ) -> Result<(), LinkError> {
        self.parts_then(head, items, wrap, None).await
    }

    /// [`Reply::parts`] with `tail` (if any) after the last part, before
    /// `done` (a summary of the list).
    pub async fn parts_then<T: Serialize>(
        &mut self,
        head: Option<Message>,
        items: Vec<T>,
        wrap: impl Fn(Vec<T>) -> Message,
        tail: Option<Message>,
    ) -> Result<(), LinkError> {
        if let Some(h) = head {
            self.send(h).await?;
        }
        let mut part = Vec::new();
        let mut bytes = 0;
        for item in items {
            let size = serde_json::to_vec(&item).map_or(0, |v| v.len());
            if !part.is_empty() && bytes + size > limits::ANSWER_PART {
                self.send(wrap(std::mem::take(&mut part))).await?;
                bytes = 0;
            }
            bytes += size;
            part.push(item);
        }
        if !part.is_empty() {
            self.send(wrap(part)).await?;
        }
        if let Some(t) = tail {
            self.send(t).await?;
        }
        self.finish_with(Message::Done {}).await
    }

    /// The audit outcome of an answer: `done` only if it was all sent.
    pub fn outcome(sent: Result<(), LinkError>, done: String) -> Result<Outcome, RelayError> {
        Ok(Outcome(match sent {
            Ok(()) => done,
            Err(e) => format!("failed: the answer could not be sent: {e}"),
        }))
    }

    /// Report `error` to the console, unless the stream was ended already.
    pub async fn fail(&mut self, code: ErrorCode, message: String) {
        self.held = Held::Nothing;
        if let Some(s) = self.send.take() {
            s.fail(code, message).await;
        }
    }
}
