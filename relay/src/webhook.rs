//! Ticket events to an external help desk: each ticket change is queued in
//! the relay's database in the same transaction as the change (a
//! transactional outbox), then POSTed as JSON with an HMAC-SHA256 signature,
//! retried with capped exponential backoff until the receiver answers 2xx.
//!
//! The body is `{"event_id", "ticket_key", "event", "ticket", "entry"}`;
//! `entry` is the timeline entry the change added, as consoles get it
//! ([`firstline_proto::TicketEntry`]): `at` (when the relay stored it),
//! `observed_at` (when the agent observed it, or null), `kind`, `author`,
//! and `body` — a JSON object for results, diagnostic bundles, runbook
//! verdicts and the `opened` entry of an alert ticket, a string otherwise.
//!
//! Every delivery carries a stable `ticket_key` and a unique `event_id`
//! (also in the `X-Firstline-Event-Id` header), so a receiver dedupes
//! retries by id and never creates duplicates.
//!
//! The signature covers the time of sending: `X-Firstline-Timestamp` is
//! the Unix time in seconds and `X-Firstline-Signature` is
//! `sha256=HEX(HMAC-SHA256(secret, TIMESTAMP + "." + BODY))`. A receiver
//! checks the signature (in constant time), rejects a timestamp more than
//! five minutes from its own clock, and remembers the event ids it has seen
//! for at least as long: a captured delivery cannot be replayed later, and
//! cannot be replayed within the window either.

use crate::server::Relay;
use crate::store::now;
use crate::tickets::Change;
use anyhow::Result;
use rusqlite::{params, Connection};
use std::sync::Arc;
use std::time::Duration;

pub const SIGNATURE_HEADER: &str = "X-Firstline-Signature";
pub const EVENT_ID_HEADER: &str = "X-Firstline-Event-Id";
pub const TIMESTAMP_HEADER: &str = "X-Firstline-Timestamp";

/// Queue one ticket change for delivery (inside the change's transaction).
pub fn enqueue(db: &Connection, relay_name: &str, change: &Change) -> Result<()> {
    let event_id = format!("{relay_name}-{}-{}", change.ticket.id, change.entry_id);
    let body = serde_json::json!({
        "event_id": event_id,
        "ticket_key": format!("{relay_name}-{}", change.ticket.id),
        "event": change.entry.kind,
        "ticket": change.ticket,
        "entry": change.entry,
    });
    db.execute(
        "INSERT OR IGNORE INTO webhook_outbox (event_id, body, next_at) VALUES (?1, ?2, ?3)",
        params![event_id, body.to_string(), now()],
    )?;
    Ok(())
}

/// `sha256=HEX` of the HMAC-SHA256 of `TIMESTAMP.BODY` under `secret`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(format!("{timestamp}.").as_bytes());
    ctx.update(body);
    format!("sha256={}", hex::encode(ctx.sign()))
}

/// Deliver queued events forever (spawned by `serve` when a URL is set).
pub async fn deliver(relay: Arc<Relay>) {
    let c = &relay.dir.config;
    let Some(url) = c.webhook_url.clone() else {
        return;
    };
    let secret = c.webhook_secret.clone().unwrap_or_default();
    let client = match client(Duration::from_secs(c.webhook_timeout_secs)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("webhook disabled: {e}");
            return;
        }
    };
    loop {
        let due = relay.store.with_tx(|tx| due_events(tx)).unwrap_or_default();
        if due.is_empty() {
            tokio::select! {
                _ = relay.webhook_wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        }
        for (id, event_id, body, attempts) in due {
            let at = now();
            let sent = client
                .post(&url)
                .header("Content-Type", "application/json")
                .header(TIMESTAMP_HEADER, at.to_string())
                .header(SIGNATURE_HEADER, signature(&secret, at, body.as_bytes()))
                .header(EVENT_ID_HEADER, &event_id)
                .body(body)
                .send()
                .await;
            let outcome = match sent {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            };
            let stored = relay.store.with_tx(|tx| match &outcome {
                Ok(()) => Ok(tx.execute("DELETE FROM webhook_outbox WHERE id = ?1", [id]).map(|_| ())?),
                Err(_) => {
                    let backoff = 1i64 << attempts.min(16);
                    let delay = backoff.min(c.webhook_max_backoff_secs as i64);
                    Ok(tx
                        .execute(
                            "UPDATE webhook_outbox SET attempts = attempts + 1, next_at = ?2 WHERE id = ?1",
                            params![id, now() + delay],
                        )
                        .map(|_| ())?)
                }
            });
            if let Err(e) = outcome {
                tracing::warn!(%event_id, attempts = attempts + 1, "webhook delivery failed: {e}");
            }
            if let Err(e) = stored {
                tracing::error!("webhook outbox: {e:#}");
            }
        }
    }
}

fn due_events(db: &Connection) -> Result<Vec<(i64, String, String, i64)>> {
    let mut stmt = db.prepare(
        "SELECT id, event_id, body, attempts FROM webhook_outbox WHERE next_at <= ?1 ORDER BY id LIMIT 50",
    )?;
    let rows = stmt.query_map([now()], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn client(timeout: Duration) -> Result<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_rfc_4231_hmac_over_timestamp_and_body() {
        // RFC 4231 test case 2, its message split as TIMESTAMP "." BODY is
        // not possible; check the construction against a plain HMAC instead.
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let plain = hex::encode(ring::hmac::sign(&key, b"1700000000.what do ya want"));
        assert_eq!(
            signature("Jefe", 1_700_000_000, b"what do ya want"),
            format!("sha256={plain}")
        );
        assert_ne!(
            signature("Jefe", 1_700_000_001, b"what do ya want"),
            signature("Jefe", 1_700_000_000, b"what do ya want"),
            "the timestamp is signed"
        );
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        assert_eq!(
            hex::encode(ring::hmac::sign(&k, b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            "RFC 4231 test case 2"
        );
    }
}
