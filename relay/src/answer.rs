//! Answers of any length. A list (agents, tickets, a ticket's timeline, the
//! audit log) does not fit one 1 MiB frame once a fleet or a ticket is
//! large enough, so it is sent in parts of at most
//! [`limits::ANSWER_PART`] bytes of items, then `done`; the console puts
//! the parts back together. A send that fails is an error for the caller
//! to audit as a failure, never as done.

use firstline_net::{FramedSend, LinkError};
use firstline_proto::{limits, Message};
use serde::Serialize;

/// Send `head` (if any), then `items` in parts made by `wrap`, then `done`.
pub async fn send_parts<T: Serialize>(
    mut send: FramedSend,
    head: Option<Message>,
    items: Vec<T>,
    wrap: impl Fn(Vec<T>) -> Message,
) -> Result<(), LinkError> {
    if let Some(h) = head {
        send.send(h).await?;
    }
    let mut part = Vec::new();
    let mut bytes = 0;
    for item in items {
        let size = serde_json::to_vec(&item).map_or(0, |v| v.len());
        if !part.is_empty() && bytes + size > limits::ANSWER_PART {
            send.send(wrap(std::mem::take(&mut part))).await?;
            bytes = 0;
        }
        bytes += size;
        part.push(item);
    }
    if !part.is_empty() {
        send.send(wrap(part)).await?;
    }
    send.finish_with(Message::Done {}).await
}
