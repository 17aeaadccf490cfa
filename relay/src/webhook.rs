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

use crate::config::RelayConfig;
use crate::store::{Sent, Store};
use anyhow::Result;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub const SIGNATURE_HEADER: &str = "X-Firstline-Signature";
pub const EVENT_ID_HEADER: &str = "X-Firstline-Event-Id";
pub const TIMESTAMP_HEADER: &str = "X-Firstline-Timestamp";

/// Deliveries claimed at once.
const BATCH: u32 = 10;

/// `sha256=HEX` of the HMAC-SHA256 of `TIMESTAMP.BODY` under `secret`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(format!("{timestamp}.").as_bytes());
    ctx.update(body);
    format!("sha256={}", hex::encode(ctx.sign()))
}

/// The next batch an outbox sender claims (`claim`): while there is none,
/// wait for `wake` or half a second (a claim another relay let lapse is
/// found so). A store error is logged as `what`'s and waited out alike.
/// One loop for the webhook outbox and the help desk mirror.
pub(crate) async fn next_due<T, Fut>(
    what: &str,
    wake: &Notify,
    mut claim: impl FnMut() -> Fut,
) -> Vec<T>
where
    Fut: std::future::Future<Output = crate::store::StoreResult<Vec<T>>>,
{
    loop {
        match claim().await {
            Ok(due) if !due.is_empty() => return due,
            Ok(_) => {}
            Err(e) => tracing::error!("{what}: {e}"),
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Deliver queued events forever (spawned by `serve` when a URL is set):
/// claim what is due (a lease, so another relay on the same database does
/// not send it too), send each, and record what became of it. `wake` is
/// notified when a change was queued.
pub async fn deliver(store: Store, config: RelayConfig, wake: Arc<Notify>) {
    let Some(url) = config.webhook_url.clone() else {
        return;
    };
    let secret = config.webhook_secret.clone().unwrap_or_default();
    let timeout = Duration::from_secs(config.webhook_timeout_secs);
    let client = match client(timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("webhook disabled: {e}");
            return;
        }
    };
    // Long enough for a whole batch to time out one by one; a relay that
    // dies holding a claim delays those deliveries by this much.
    let lease = timeout * (BATCH + 1);
    loop {
        let due = next_due("webhook outbox", &wake, || {
            store.claim_webhooks(BATCH, lease)
        })
        .await;
        for d in due {
            let at = store.now();
            let sent = client
                .post(&url)
                .header("Content-Type", "application/json")
                .header(TIMESTAMP_HEADER, at.to_string())
                .header(SIGNATURE_HEADER, signature(&secret, at, d.body.as_bytes()))
                .header(EVENT_ID_HEADER, &d.event_id)
                .body(d.body)
                .send()
                .await;
            let outcome = match sent {
                Ok(r) if r.status().is_success() => Sent::Delivered,
                Ok(r) => failed(
                    &d.event_id,
                    d.attempts,
                    &format!("HTTP {}", r.status()),
                    &config,
                ),
                Err(e) => failed(&d.event_id, d.attempts, &e.to_string(), &config),
            };
            if let Err(e) = store.finish_webhook(d.id, outcome).await {
                tracing::error!("webhook outbox: {e}");
            }
        }
    }
}

/// A failed attempt: logged, retried after a capped exponential backoff.
fn failed(event_id: &str, attempts: i64, why: &str, c: &RelayConfig) -> Sent {
    tracing::warn!(%event_id, attempts = attempts + 1, "webhook delivery failed: {why}");
    let backoff = 1i64 << attempts.clamp(0, 16);
    Sent::Failed {
        backoff_secs: backoff.min(c.webhook_max_backoff_secs as i64),
    }
}

/// An HTTPS client with the `ring` provider and the platform's roots
/// (also the help desk mirror's, `crate::helpdesk`).
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client> {
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
