//! Framed request streams over quinn.
//!
//! One bidirectional stream per request: the opener writes one request
//! message, the other side writes answers and a final message. Reading goes
//! through [`firstline_proto::FrameDecoder`], so the 1 MiB cap and every
//! decoding rule live in one place. A frame that breaks a rule ends only its
//! own stream: [`FramedSend::fail`] tells the peer why (an `error` message and
//! a stream reset code), the connection and its other streams carry on.

use firstline_proto::{encode, Envelope, ErrorCode, FrameDecoder, FrameError, Message};
use quinn::{Connection, RecvStream, SendStream, VarInt};
use std::time::Duration;

/// Read size per chunk: large enough for typical frames in one go.
const CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("stream already closed")]
    Closed(#[from] quinn::ClosedStream),
    #[error("no message within {0:?}")]
    Timeout(Duration),
    #[error("stream ended before the final message")]
    Ended,
}

impl LinkError {
    /// The wire code that reports this failure to the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            LinkError::Frame(f) => f.code(),
            LinkError::Timeout(_) => ErrorCode::Timeout,
            _ => ErrorCode::Internal,
        }
    }
}

/// Receiving half of a request stream.
pub struct FramedRecv {
    inner: RecvStream,
    decoder: FrameDecoder,
    /// Bytes read from the stream so far.
    received: u64,
}

impl FramedRecv {
    pub fn new(inner: RecvStream) -> Self {
        FramedRecv {
            inner,
            decoder: FrameDecoder::new(),
            received: 0,
        }
    }

    /// Bytes read from the stream so far (frames and their length
    /// prefixes): what the peer made us receive, to count answers and
    /// events by bytes as well as by messages.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Refuse frames over `limit` bytes from now on (see
    /// [`FrameDecoder::with_limit`]).
    pub fn limit(&mut self, limit: usize) {
        self.decoder.set_limit(limit);
    }

    /// The next message; `Ok(None)` when the peer finished the stream cleanly.
    pub async fn recv(&mut self) -> Result<Option<Message>, LinkError> {
        loop {
            if let Some(Envelope { msg, .. }) = self.decoder.next_frame()? {
                return Ok(Some(msg));
            }
            match self.inner.read_chunk(CHUNK, true).await? {
                Some(chunk) => {
                    self.received += chunk.bytes.len() as u64;
                    self.decoder.push(&chunk.bytes)
                }
                None => {
                    self.decoder.finish()?;
                    return Ok(None);
                }
            }
        }
    }

    /// Like [`recv`](Self::recv) but gives up after `limit`.
    pub async fn recv_within(&mut self, limit: Duration) -> Result<Option<Message>, LinkError> {
        tokio::time::timeout(limit, self.recv())
            .await
            .map_err(|_| LinkError::Timeout(limit))?
    }

    /// Tell the peer to stop sending (after a frame error).
    pub fn stop(&mut self, code: ErrorCode) {
        let _ = self.inner.stop(VarInt::from_u32(code.quic_code()));
    }
}

/// Sending half of a request stream.
pub struct FramedSend {
    inner: SendStream,
}

impl FramedSend {
    pub fn new(inner: SendStream) -> Self {
        FramedSend { inner }
    }

    /// Resolves when the peer no longer wants this stream (it stopped
    /// reading, or the connection is gone): the work behind it can stop.
    pub async fn stopped(&mut self) {
        let _ = self.inner.stopped().await;
    }

    pub async fn send(&mut self, msg: Message) -> Result<(), LinkError> {
        let bytes = encode(&Envelope::new(msg))?;
        self.inner.write_all(&bytes).await?;
        Ok(())
    }

    /// Send the final message and finish the stream.
    pub async fn finish_with(mut self, msg: Message) -> Result<(), LinkError> {
        self.send(msg).await?;
        self.inner.finish()?;
        Ok(())
    }

    /// End the stream with an `error` message saying why.
    pub async fn fail(self, code: ErrorCode, message: impl Into<String>) {
        let message = message.into();
        tracing::debug!(?code, %message, "stream failed");
        let _ = self.finish_with(Message::error(code, message)).await;
    }

    /// Write raw bytes, bypassing the encoder (tests of hostile input only).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        self.inner.write_all(bytes).await?;
        Ok(())
    }

    pub fn finish(mut self) -> Result<(), LinkError> {
        self.inner.finish()?;
        Ok(())
    }
}

/// Open a request stream on `conn` and send `request` on it.
pub async fn request(
    conn: &Connection,
    request: Message,
) -> Result<(FramedSend, FramedRecv), LinkError> {
    let (send, recv) = conn.open_bi().await?;
    let mut send = FramedSend::new(send);
    send.send(request).await?;
    Ok((send, FramedRecv::new(recv)))
}

/// A request stream just accepted, its request not read yet.
pub struct Incoming {
    send: FramedSend,
    recv: FramedRecv,
}

/// Accept the next request stream. Read its request with
/// [`Incoming::first`] in the task that serves it, so a peer that opens a
/// stream and sends nothing holds up only that stream.
pub async fn accept(conn: &Connection) -> Result<Incoming, quinn::ConnectionError> {
    let (send, recv) = conn.accept_bi().await?;
    Ok(Incoming {
        send: FramedSend::new(send),
        recv: FramedRecv::new(recv),
    })
}

impl Incoming {
    /// Read the request with a lower frame cap than 1 MiB: for peers whose
    /// requests are known to be small (before authentication, consoles).
    pub fn limit(mut self, limit: usize) -> Self {
        self.recv.limit(limit);
        self
    }

    /// The request message; a stream whose first frame breaks the rules,
    /// ends early or times out is failed here (with a reason) and `None`
    /// returned.
    pub async fn first(mut self, timeout: Duration) -> Option<(Message, FramedSend, FramedRecv)> {
        match self.recv.recv_within(timeout).await {
            Ok(Some(msg)) => Some((msg, self.send, self.recv)),
            Ok(None) => {
                self.send
                    .fail(ErrorCode::BadRequest, "stream ended before a request")
                    .await;
                None
            }
            Err(e) => {
                self.recv.stop(e.code());
                self.send.fail(e.code(), e.to_string()).await;
                None
            }
        }
    }
}

/// Accept the next request stream and read its request message, in turn
/// (for connections that carry one request at a time: hello, enroll), its
/// frame no larger than `limit`. The peer has `first_message_timeout` to
/// open the stream too, not only to fill it: a connection that opens none
/// is answered `Ok(None)` then, and the caller closes it — it cannot hold
/// its place (and, before authentication, its slot) forever.
pub async fn accept_request(
    conn: &Connection,
    first_message_timeout: Duration,
    limit: usize,
) -> Result<Option<(Message, FramedSend, FramedRecv)>, quinn::ConnectionError> {
    let incoming = match tokio::time::timeout(first_message_timeout, accept(conn)).await {
        Ok(incoming) => incoming?,
        Err(_) => return Ok(None),
    };
    Ok(incoming.limit(limit).first(first_message_timeout).await)
}
