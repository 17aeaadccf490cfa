//! Length-prefixed frames: a u32 big-endian length, then that many bytes of
//! JSON holding one [`Envelope`].
//!
//! The decoder is incremental (feed it whatever bytes arrived, ask for the
//! next frame, get `Ok(None)` while one is incomplete, as mini-redis does) and
//! hostile-input safe: a declared length over [`MAX_FRAME_LEN`] is refused as
//! soon as the 4-byte prefix is seen, and the buffer only ever grows with
//! bytes that actually arrived — a peer cannot make it allocate what it
//! merely declares.

use crate::message::{Envelope, ErrorCode, Message, ENVELOPE_VERSION};
use serde::Deserialize;

/// Hard cap on one frame's payload: 1 MiB.
pub const MAX_FRAME_LEN: usize = 1 << 20;
const PREFIX: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame of {len} bytes is over the {max}-byte cap")]
    TooLarge { len: usize, max: usize },
    #[error("undecodable frame: {0}")]
    Malformed(String),
    #[error("frame has envelope version {found}; this build speaks {ENVELOPE_VERSION}")]
    UnknownVersion { found: u64 },
    #[error("stream ended in the middle of a frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
}

impl FrameError {
    /// The wire error code that reports this failure to the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            FrameError::Malformed(_) | FrameError::Truncated { .. } => ErrorCode::Malformed,
            FrameError::UnknownVersion { .. } => ErrorCode::UnknownVersion,
        }
    }
}

/// Encode one envelope as a frame (prefix included).
pub fn encode(envelope: &Envelope) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; PREFIX];
    serde_json::to_writer(&mut out, envelope)
        .map_err(|e| FrameError::Malformed(format!("cannot encode: {e}")))?;
    let len = out.len() - PREFIX;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    out[..PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Decode one frame payload (without its prefix).
pub fn decode_payload(payload: &[u8]) -> Result<Envelope, FrameError> {
    #[derive(Deserialize)]
    struct Header {
        v: u64,
    }
    let header: Header = serde_json::from_slice(payload)
        .map_err(|e| FrameError::Malformed(format!("no envelope version: {e}")))?;
    if header.v != u64::from(ENVELOPE_VERSION) {
        return Err(FrameError::UnknownVersion { found: header.v });
    }
    // The message alone: it ignores `v`, and is buffered once (an
    // `Envelope`, its message flattened, buffered it twice — twice the
    // cost of decoding: the `frame` micro-benchmark).
    let msg: Message =
        serde_json::from_slice(payload).map_err(|e| FrameError::Malformed(e.to_string()))?;
    Ok(Envelope {
        v: ENVELOPE_VERSION,
        msg,
    })
}

/// Incremental frame decoder.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Largest payload this decoder accepts (at most [`MAX_FRAME_LEN`]).
    limit: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::with_limit(MAX_FRAME_LEN)
    }
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder for streams whose frames are known to be small (requests
    /// before authentication, console requests): a larger declared length
    /// is refused as soon as its prefix arrives.
    pub fn with_limit(limit: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            limit: limit.min(MAX_FRAME_LEN),
        }
    }

    /// Lower the cap for the frames still to come (e.g. after the first).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.min(MAX_FRAME_LEN);
    }

    /// Append bytes received from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    /// After an error the stream is unusable: the caller closes it.
    pub fn next_frame(&mut self) -> Result<Option<Envelope>, FrameError> {
        if self.buf.len() < PREFIX {
            return Ok(None);
        }
        let mut prefix = [0u8; PREFIX];
        prefix.copy_from_slice(&self.buf[..PREFIX]);
        let len = u32::from_be_bytes(prefix) as usize;
        if len > self.limit {
            return Err(FrameError::TooLarge {
                len,
                max: self.limit,
            });
        }
        if self.buf.len() < PREFIX + len {
            return Ok(None);
        }
        let result = decode_payload(&self.buf[PREFIX..PREFIX + len]);
        self.buf.drain(..PREFIX + len);
        result.map(Some)
    }

    /// Call when the stream ended: an incomplete frame is an error.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.buf.len() {
            0 => Ok(()),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use proptest::prelude::*;

    fn sample() -> Envelope {
        Envelope::new(Message::Progress {
            text: "resolving".into(),
        })
    }

    #[test]
    fn round_trip_byte_by_byte() {
        let bytes = encode(&sample()).unwrap();
        let mut d = FrameDecoder::new();
        for (i, b) in bytes.iter().enumerate() {
            assert_eq!(d.next_frame().unwrap(), None, "early frame at byte {i}");
            d.push(&[*b]);
        }
        assert_eq!(d.next_frame().unwrap(), Some(sample()));
        d.finish().unwrap();
    }

    #[test]
    fn two_frames_in_one_push() {
        let mut bytes = encode(&sample()).unwrap();
        bytes.extend(encode(&Envelope::new(Message::Done {})).unwrap());
        let mut d = FrameDecoder::new();
        d.push(&bytes);
        assert_eq!(d.next_frame().unwrap(), Some(sample()));
        assert_eq!(
            d.next_frame().unwrap(),
            Some(Envelope::new(Message::Done {}))
        );
        assert_eq!(d.next_frame().unwrap(), None);
    }

    #[test]
    fn oversized_prefix_refused_before_buffering() {
        let mut d = FrameDecoder::new();
        d.push(&((MAX_FRAME_LEN as u32) + 1).to_be_bytes());
        let err = d.next_frame().unwrap_err();
        assert_eq!(err.code(), ErrorCode::FrameTooLarge);
        assert!(
            d.buffered() < 8,
            "nothing preallocated for the declared length"
        );
    }

    #[test]
    fn a_lower_limit_refuses_at_the_prefix() {
        let bytes = encode(&sample()).unwrap();
        let mut d = FrameDecoder::with_limit(8);
        d.push(&bytes[..PREFIX]);
        assert!(matches!(
            d.next_frame(),
            Err(FrameError::TooLarge { max: 8, .. })
        ));
        let mut d = FrameDecoder::with_limit(bytes.len());
        d.push(&bytes);
        assert_eq!(d.next_frame().unwrap(), Some(sample()));
    }

    #[test]
    fn encode_refuses_oversized() {
        let big = Envelope::new(Message::Progress {
            text: "x".repeat(MAX_FRAME_LEN),
        });
        assert!(matches!(encode(&big), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn unknown_version_told_apart() {
        let payload = br#"{"v":7,"type":"done"}"#;
        let mut d = FrameDecoder::new();
        d.push(&(payload.len() as u32).to_be_bytes());
        d.push(payload);
        assert_eq!(
            d.next_frame().unwrap_err(),
            FrameError::UnknownVersion { found: 7 }
        );
    }

    #[test]
    fn garbage_and_unknown_type_are_malformed() {
        for payload in [&b"\xff\xfe garbage"[..], br#"{"v":1,"type":"teleport"}"#] {
            let err = decode_payload(payload).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Malformed, "{payload:?}");
        }
    }

    #[test]
    fn deeply_nested_input_is_an_error_not_a_crash() {
        let mut payload = br#"{"v":1,"type":"progress","text":"#.to_vec();
        payload.extend(std::iter::repeat_n(b'[', 100_000));
        assert!(decode_payload(&payload).is_err());
    }

    #[test]
    fn truncated_stream_reported() {
        let bytes = encode(&sample()).unwrap();
        let mut d = FrameDecoder::new();
        d.push(&bytes[..bytes.len() - 1]);
        assert_eq!(d.next_frame().unwrap(), None);
        assert!(matches!(d.finish(), Err(FrameError::Truncated { .. })));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut d = FrameDecoder::new();
            d.push(&bytes);
            while let Ok(Some(_)) = d.next_frame() {}
            let _ = d.finish();
        }

        #[test]
        fn random_payload_with_valid_prefix_never_panics(
            payload in proptest::collection::vec(any::<u8>(), 0..2048)
        ) {
            let mut d = FrameDecoder::new();
            d.push(&(payload.len() as u32).to_be_bytes());
            d.push(&payload);
            let json_like = payload.first() == Some(&b'{');
            prop_assert!(d.next_frame().is_err() || json_like);
        }

        #[test]
        fn any_truncation_of_a_valid_frame_is_incomplete(cut in 0usize..64) {
            let bytes = encode(&sample()).unwrap();
            let cut = cut.min(bytes.len() - 1);
            let mut d = FrameDecoder::new();
            d.push(&bytes[..cut]);
            prop_assert_eq!(d.next_frame().unwrap(), None);
            prop_assert!(cut == 0 || d.finish().is_err());
        }

        #[test]
        fn arbitrary_text_round_trips(text in ".{0,300}") {
            let e = Envelope::new(Message::Progress { text });
            let mut d = FrameDecoder::new();
            d.push(&encode(&e).unwrap());
            prop_assert_eq!(d.next_frame().unwrap(), Some(e));
        }
    }
}
