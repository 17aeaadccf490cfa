//! Frame decoding: arbitrary bytes fed to a `FrameDecoder` in chunks whose
//! sizes come from the input, checked against a shadow model of the stream.
//!
//! Input layout: `[limit, chunking, stream...]`
//! * `limit` < 0x80: `FrameDecoder::new()` (1 MiB cap); otherwise
//!   `with_limit((limit & 0x7f) * 16)`, i.e. a cap of 0..=2032 bytes.
//! * `chunking` 0: the whole stream in one `push`; otherwise chunks of
//!   1..=`chunking` bytes, sizes from a PRNG seeded with the byte.
//!
//! Checked, for every step:
//! * the decoder never holds more than `limit + 4` (prefix) bytes before a
//!   push, hence never more than `limit + 4 + chunk` after it;
//! * `buffered()` is exactly what the model says is not yet consumed;
//! * `Ok(None)` only when the next frame is really incomplete, `TooLarge`
//!   exactly when its declared length is over the cap, a frame or a decode
//!   error exactly as `decode_payload` says for that frame's bytes;
//! * every decoded envelope re-encodes, decodes back to an equal value, and
//!   re-encodes to the same bytes;
//! * `finish()` is `Ok` exactly when nothing is buffered.
#![no_main]

use firstline_proto::frame::{decode_payload, encode, FrameDecoder, FrameError, MAX_FRAME_LEN};
use firstline_proto::message::ENVELOPE_VERSION;
use firstline_proto::Envelope;
use libfuzzer_sys::fuzz_target;


const PREFIX: usize = 4;

/// Re-encode `env`, decode it again (both ways), compare.
fn round_trip(env: &Envelope) {
    assert_eq!(env.v, ENVELOPE_VERSION);
    let bytes = match encode(env) {
        Ok(b) => b,
        Err(e) => panic!("decoded envelope does not re-encode: {e}: {env:?}"),
    };
    let len = u32::from_be_bytes(bytes[..PREFIX].try_into().unwrap()) as usize;
    assert_eq!(len, bytes.len() - PREFIX, "prefix does not match payload");
    assert!(len <= MAX_FRAME_LEN);
    let back = match decode_payload(&bytes[PREFIX..]) {
        Ok(back) => back,
        Err(e) => panic!("re-encoded envelope does not decode: {e}: {env:?}"),
    };
    assert_eq!(&back, env, "round trip changed the envelope");
    let mut d = FrameDecoder::new();
    d.push(&bytes);
    assert_eq!(d.next_frame(), Ok(Some(back.clone())));
    assert_eq!(d.next_frame(), Ok(None));
    assert_eq!(d.finish(), Ok(()));
    assert_eq!(encode(&back).ok(), Some(bytes), "encoding is not stable");
}

struct Chunks {
    max: usize,
    state: u32,
}

impl Chunks {
    fn next(&mut self, left: usize) -> usize {
        if self.max == 0 {
            return left;
        }
        // xorshift32
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        (1 + self.state as usize % self.max).min(left)
    }
}

fuzz_target!(|data: &[u8]| {
    let [limit_sel, chunking, stream @ ..] = data else {
        return;
    };
    let (mut d, limit) = if *limit_sel < 0x80 {
        (FrameDecoder::new(), MAX_FRAME_LEN)
    } else {
        let limit = usize::from(limit_sel & 0x7f) * 16;
        (FrameDecoder::with_limit(limit), limit)
    };
    let mut chunks = Chunks {
        max: usize::from(*chunking),
        state: 0x9e37_79b9 ^ u32::from(*chunking),
    };

    // Shadow model: `stream[consumed..pushed]` is what the decoder holds.
    let mut pushed = 0;
    let mut consumed = 0;
    let mut failed = false;
    'stream: while pushed < stream.len() {
        let n = chunks.next(stream.len() - pushed);
        assert!(d.buffered() < PREFIX + limit, "holds a whole frame or more");
        d.push(&stream[pushed..pushed + n]);
        pushed += n;
        assert!(
            d.buffered() <= limit + PREFIX + n,
            "buffer over limit + chunk"
        );
        assert_eq!(d.buffered(), pushed - consumed);

        loop {
            let held = &stream[consumed..pushed];
            let declared = (held.len() >= PREFIX)
                .then(|| u32::from_be_bytes(held[..PREFIX].try_into().unwrap()) as usize);
            match d.next_frame() {
                Ok(None) => {
                    match declared {
                        None => {}
                        Some(len) => {
                            assert!(len <= limit, "oversized length {len} not refused");
                            assert!(held.len() < PREFIX + len, "complete frame not returned");
                        }
                    }
                    break;
                }
                Ok(Some(env)) => {
                    let len = declared.expect("frame returned before its prefix");
                    assert!(len <= limit && held.len() >= PREFIX + len);
                    let expected = decode_payload(&held[PREFIX..PREFIX + len]);
                    assert_eq!(expected.as_ref(), Ok(&env), "frame differs from its bytes");
                    round_trip(&env);
                    consumed += PREFIX + len;
                    assert_eq!(d.buffered(), pushed - consumed);
                }
                Err(FrameError::TooLarge { len, max }) => {
                    assert_eq!(Some(len), declared);
                    assert_eq!(max, limit);
                    assert!(len > limit);
                    failed = true;
                    break 'stream;
                }
                Err(e) => {
                    let len = declared.expect("error before the prefix");
                    assert!(len <= limit && held.len() >= PREFIX + len);
                    assert_eq!(decode_payload(&held[PREFIX..PREFIX + len]), Err(e.clone()));
                    let _ = e.code();
                    let _ = e.to_string();
                    failed = true;
                    break 'stream;
                }
            }
        }
    }
    // After an error the caller closes the stream; `finish` still must not
    // panic. Without one, it reports exactly the bytes left over.
    match d.finish() {
        Ok(()) => assert_eq!(d.buffered(), 0),
        Err(FrameError::Truncated { buffered }) => {
            assert!(buffered > 0);
            assert_eq!(buffered, d.buffered());
            if !failed {
                assert_eq!(buffered, pushed - consumed);
            }
        }
        Err(e) => panic!("finish: unexpected {e:?}"),
    }
});
