//! Signed messages between the relays of a deployment.
//!
//! Whoever can connect to NATS can publish on the deployment's subjects;
//! what a relay acts on must come from a relay. Every message a relay
//! publishes carries, in headers, the sender's id (`Fl-From`), the time
//! (`Fl-Ts`, ms since the epoch), a random nonce (`Fl-Nonce`) and an
//! HMAC-SHA-256 (`Fl-Sig`) over those, the subject, the reply subject, the
//! stream headers (`Fl-Seq`, `Fl-Kind`, `Fl-More`) and the payload, keyed
//! with the **bus key**: derived from the deployment's audit signing key
//! (`audit-key.pk8`, 0600, which every relay of the deployment holds —
//! `init --join` copies it — and a NATS credential alone does not).
//!
//! A receiver drops a message whose tag is missing or wrong, whose time is
//! more than [`WINDOW_MS`] from its own clock (stale, or from the future),
//! or whose `(sender, nonce)` it has seen within the window (replayed);
//! each is counted on `/metrics` (`firstline_cluster_messages_rejected`,
//! by reason) and logged once a minute per reason.

use async_nats::HeaderMap;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub const FROM: &str = "Fl-From";
pub const TS: &str = "Fl-Ts";
pub const NONCE: &str = "Fl-Nonce";
pub const SIG: &str = "Fl-Sig";

/// How far a message's time may be from the receiver's clock (either
/// way); within it, each `(sender, nonce)` is taken once.
pub const WINDOW_MS: u64 = 60_000;

/// The label of the bus key's derivation (the audit chain's key has
/// another: the two never coincide).
const LABEL: &[u8] = b"firstline-cluster-bus-key v1";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The deployment's bus key.
#[derive(Clone)]
pub struct BusKey(ring::hmac::Key);

impl std::fmt::Debug for BusKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusKey(..)")
    }
}

impl BusKey {
    /// Derived from the audit signing key's bytes (PKCS#8).
    pub fn from_audit_key(pkcs8: &[u8]) -> BusKey {
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, pkcs8);
        let derived = ring::hmac::sign(&k, LABEL);
        BusKey(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            derived.as_ref(),
        ))
    }

    /// The bus key of the audit key file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<BusKey> {
        let bytes = std::fs::read(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read {} (the relays sign what they send each other with a key derived \
                 from it): {e}",
                path.display()
            )
        })?;
        Ok(BusKey::from_audit_key(&bytes))
    }

    fn tag(&self, fields: &Fields<'_>, payload: &[u8]) -> ring::hmac::Tag {
        ring::hmac::sign(&self.0, &signed_bytes(fields, payload))
    }

    /// Sign a message about to be published by relay `from`: adds the
    /// headers to `headers` (which may hold the stream headers already).
    pub fn sign(
        &self,
        from: &str,
        subject: &str,
        reply: Option<&str>,
        headers: &mut HeaderMap,
        payload: &[u8],
    ) {
        let ts = now_ms().to_string();
        let nonce = format!("{:016x}", rand::random::<u64>());
        let get = |k: &str| {
            headers
                .get(k)
                .map(|v| v.as_str().to_string())
                .unwrap_or_default()
        };
        let (seq, kind, more) = (
            get(super::nats::SEQ),
            get(super::nats::KIND),
            get(super::nats::MORE),
        );
        let tag = self.tag(
            &Fields {
                from,
                ts: &ts,
                nonce: &nonce,
                subject,
                reply: reply.unwrap_or_default(),
                seq: &seq,
                kind: &kind,
                more: &more,
            },
            payload,
        );
        headers.insert(FROM, from);
        headers.insert(TS, ts.as_str());
        headers.insert(NONCE, nonce.as_str());
        headers.insert(SIG, hex::encode(tag.as_ref()).as_str());
    }

    /// A message in `headers` for `subject`, signed with signed fields all
    /// present: whether its tag holds (constant time).
    fn holds(&self, fields: &Fields<'_>, payload: &[u8], sig: &str) -> bool {
        let Ok(sig) = hex::decode(sig) else {
            return false;
        };
        ring::hmac::verify(&self.0, &signed_bytes(fields, payload), &sig).is_ok()
    }
}

/// What a bus signature covers, one way for signing and checking: each
/// signed field with its length, then the payload.
fn signed_bytes(fields: &Fields<'_>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 256);
    for f in [
        fields.from,
        fields.ts,
        fields.nonce,
        fields.subject,
        fields.reply,
        fields.seq,
        fields.kind,
        fields.more,
    ] {
        out.extend_from_slice(&(f.len() as u64).to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    out.extend_from_slice(payload);
    out
}

struct Fields<'a> {
    from: &'a str,
    ts: &'a str,
    nonce: &'a str,
    subject: &'a str,
    reply: &'a str,
    seq: &'a str,
    kind: &'a str,
    more: &'a str,
}

/// Why a message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// No signature headers.
    Unsigned,
    /// A tag that does not hold: not a relay of this deployment, or altered.
    BadSignature,
    /// Time more than the window away from this relay's clock.
    Stale,
    /// Its `(sender, nonce)` was taken already.
    Replayed,
}

impl Rejected {
    pub fn label(self) -> &'static str {
        match self {
            Rejected::Unsigned => "unsigned",
            Rejected::BadSignature => "bad_signature",
            Rejected::Stale => "stale",
            Rejected::Replayed => "replayed",
        }
    }
}

/// Signs what this relay sends; checks what it receives.
pub struct Guard {
    key: BusKey,
    me: String,
    /// `(sender, nonce)` → time, of the messages taken within the window.
    seen: Mutex<Seen>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Per reason, the minute of the last warning.
    warned: [AtomicU64; 4],
}

#[derive(Default)]
struct Seen {
    taken: HashMap<(String, String), u64>,
    pruned: u64,
}

impl Guard {
    pub fn new(key: BusKey, me: &str, metrics: Option<Arc<crate::metrics::Metrics>>) -> Guard {
        Guard {
            key,
            me: me.to_string(),
            seen: Mutex::new(Seen::default()),
            metrics,
            warned: Default::default(),
        }
    }

    /// Sign a message this relay publishes.
    pub fn sign(&self, subject: &str, reply: Option<&str>, payload: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        self.key.sign(&self.me, subject, reply, &mut h, payload);
        h
    }

    /// Sign a message whose stream headers are in `h` already.
    pub fn sign_into(&self, subject: &str, h: &mut HeaderMap, payload: &[u8]) {
        self.key.sign(&self.me, subject, None, h, payload);
    }

    /// Check a received message: `Ok(sender)` when it is a relay's, fresh,
    /// and new; else it is counted, logged (once a minute per reason) and
    /// to be dropped.
    pub fn check(&self, msg: &async_nats::Message) -> Result<String, Rejected> {
        let r = self.verify(
            msg.subject.as_str(),
            msg.reply.as_ref().map(|r| r.as_str()),
            msg.headers.as_ref(),
            &msg.payload,
        );
        if let Err(why) = r {
            self.rejected(why, msg.subject.as_str(), msg.headers.as_ref());
        }
        r
    }

    fn rejected(&self, why: Rejected, subject: &str, headers: Option<&HeaderMap>) {
        if let Some(m) = &self.metrics {
            m.cluster_rejected(why.label());
        }
        let minute = now_ms() / 60_000 + 1;
        let slot = &self.warned[why as usize];
        if slot.swap(minute, Ordering::Relaxed) != minute {
            let from = headers
                .and_then(|h| h.get(FROM))
                .map(|v| v.as_str().to_string())
                .unwrap_or_else(|| "?".into());
            tracing::warn!(
                %subject,
                claimed_from = %from,
                reason = why.label(),
                "cluster: a message on NATS was dropped: not signed with this deployment's bus \
                 key, stale or replayed (firstline_cluster_messages_rejected counts them; one \
                 warning a minute per reason)"
            );
        }
    }

    fn verify(
        &self,
        subject: &str,
        reply: Option<&str>,
        headers: Option<&HeaderMap>,
        payload: &[u8],
    ) -> Result<String, Rejected> {
        let h = headers.ok_or(Rejected::Unsigned)?;
        let get = |k: &str| h.get(k).map(|v| v.as_str().to_string());
        let (Some(from), Some(ts), Some(nonce), Some(sig)) =
            (get(FROM), get(TS), get(NONCE), get(SIG))
        else {
            return Err(Rejected::Unsigned);
        };
        let opt = |k: &str| get(k).unwrap_or_default();
        let (seq, kind, more) = (
            opt(super::nats::SEQ),
            opt(super::nats::KIND),
            opt(super::nats::MORE),
        );
        let fields = Fields {
            from: &from,
            ts: &ts,
            nonce: &nonce,
            subject,
            reply: reply.unwrap_or_default(),
            seq: &seq,
            kind: &kind,
            more: &more,
        };
        if !self.key.holds(&fields, payload, &sig) {
            return Err(Rejected::BadSignature);
        }
        let ts: u64 = ts.parse().map_err(|_| Rejected::BadSignature)?;
        let now = now_ms();
        if ts.abs_diff(now) > WINDOW_MS {
            return Err(Rejected::Stale);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if now.saturating_sub(seen.pruned) > 1_000 {
            seen.taken.retain(|_, t| t.saturating_add(WINDOW_MS) >= now);
            seen.pruned = now;
        }
        match seen.taken.entry((from.clone(), nonce)) {
            std::collections::hash_map::Entry::Occupied(_) => Err(Rejected::Replayed),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(ts);
                Ok(from)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(subject: &str, h: HeaderMap, payload: &[u8]) -> async_nats::Message {
        async_nats::Message {
            subject: subject.into(),
            reply: None,
            payload: bytes::Bytes::copy_from_slice(payload),
            headers: Some(h),
            status: None,
            description: None,
            length: payload.len(),
        }
    }

    #[test]
    fn a_signed_message_is_taken_once_and_an_altered_or_foreign_one_never() {
        let a = Guard::new(BusKey::from_audit_key(b"deployment key"), "r-a", None);
        let b = Guard::new(BusKey::from_audit_key(b"deployment key"), "r-b", None);
        let other = Guard::new(BusKey::from_audit_key(b"another key"), "r-a", None);
        let h = a.sign("p.revoked", None, b"payload");
        assert_eq!(
            b.check(&msg("p.revoked", h.clone(), b"payload")),
            Ok("r-a".into())
        );
        assert_eq!(
            b.check(&msg("p.revoked", h.clone(), b"payload")),
            Err(Rejected::Replayed)
        );
        let h2 = a.sign("p.revoked", None, b"payload");
        assert_eq!(
            b.check(&msg("p.notice", h2.clone(), b"payload")),
            Err(Rejected::BadSignature)
        );
        assert_eq!(
            b.check(&msg("p.revoked", h2, b"payload!")),
            Err(Rejected::BadSignature)
        );
        let h3 = other.sign("p.revoked", None, b"payload");
        assert_eq!(
            b.check(&msg("p.revoked", h3, b"payload")),
            Err(Rejected::BadSignature)
        );
        assert_eq!(
            b.check(&msg("p.revoked", HeaderMap::new(), b"payload")),
            Err(Rejected::Unsigned)
        );
    }
}
