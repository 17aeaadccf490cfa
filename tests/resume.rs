//! TLS session resumption against the relay, as an attacker would use it.
//!
//! The relay's rustls configuration keeps sessions (rustls' default: a
//! 256-entry in-memory store, two TLS 1.3 tickets per connection), so a
//! client that kept a ticket resumes: the handshake then carries no
//! client certificate and the client-certificate verifier does not run;
//! rustls hands the relay the certificate chain verified when the session
//! was made. Whatever the relay decides about a peer must therefore be
//! decided per connection from that chain, not in the verifier.
//!
//! * `revoked_operator_cannot_resume`: an operator connects, keeps its
//!   tickets, is revoked, and comes back with a resumed session (no
//!   certificate sent): the relay must close it out as revoked.
//! * `expired_certificate_cannot_resume`: the same with a certificate that
//!   expired after the session was made. rustls checks the validity
//!   period only in the verifier, which a resumed session skips; the relay
//!   checks it again for every connection (`server::authenticate`).
//!
//! Each test proves that its handshakes really were resumed: the client's
//! certificate resolver is asked for the certificate on full handshakes
//! only (a resumed TLS 1.3 handshake has no CertificateRequest).

use firstline_net::credential::Credential;
use firstline_proto::Message;
use firstline_tests::raw::{runtime, Peer};
use firstline_tests::{text, Relay};
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A client certificate resolver that counts full handshakes: it is only
/// asked when the relay requests a certificate.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ResolvesClientCert>,
    asked: AtomicUsize,
}

impl ResolvesClientCert for Counting {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.inner.resolve(root_hint_subjects, sigschemes)
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}

/// The operator's TLS configuration with its resolver counted. Clones of
/// the returned config share the session store (and the resolver), as
/// connections of one process do.
fn counted_config(credential: &Path) -> (rustls::ClientConfig, Arc<Counting>, String) {
    let cred = Credential::load(credential).expect("credential");
    let mut tls = cred.client_config().expect("client config");
    let counting = Arc::new(Counting {
        inner: tls.client_auth_cert_resolver.clone(),
        asked: AtomicUsize::new(0),
    });
    tls.client_auth_cert_resolver = counting.clone();
    (tls, counting, cred.relay)
}

/// A request that any operator may make and that the relay answers.
async fn list_agents(peer: &Peer) -> Result<(), String> {
    let answer = peer.ask(Message::ListAgents {}).await;
    if let Some((code, message)) = answer.error() {
        return Err(format!("{code:?}: {message}"));
    }
    match (&answer.broken, answer.messages.last()) {
        (None, Some(Message::Done {})) => Ok(()),
        _ => Err(format!(
            "{:?}; closed: {:?}",
            answer,
            peer.conn.close_reason()
        )),
    }
}

/// Connect with a clone of `tls` (sharing its session store); the
/// connection's request outcome and close reason.
async fn attempt(tls: &rustls::ClientConfig, relay: &str) -> (Result<(), String>, String) {
    let peer = match Peer::dial(tls.clone(), relay, "127.0.0.1:0".parse().expect("literal")).await {
        Ok(p) => p,
        Err(e) => return (Err(e.clone()), e),
    };
    let outcome = list_agents(&peer).await;
    let reason = match tokio::time::timeout(Duration::from_secs(5), peer.conn.closed()).await {
        Ok(e) => firstline_net::endpoint::describe_connection_error(&e),
        Err(_) => "still open".into(),
    };
    peer.close().await;
    (outcome, reason)
}

/// One full handshake, then a resumed one that works: the relay does
/// resume sessions (else the attack below would prove nothing).
async fn full_then_resumed(tls: &rustls::ClientConfig, counting: &Counting, relay: &str) {
    let peer = Peer::dial(tls.clone(), relay, "127.0.0.1:0".parse().expect("literal"))
        .await
        .expect("first connection");
    // The answer comes after the relay's session tickets: they are kept.
    list_agents(&peer).await.expect("first request");
    peer.close().await;
    assert_eq!(
        counting.asked.load(Ordering::SeqCst),
        1,
        "one full handshake"
    );

    let peer = Peer::dial(tls.clone(), relay, "127.0.0.1:0".parse().expect("literal"))
        .await
        .expect("second connection");
    list_agents(&peer)
        .await
        .expect("request on a resumed session");
    peer.close().await;
    assert_eq!(
        counting.asked.load(Ordering::SeqCst),
        1,
        "the second handshake was not resumed: the relay no longer resumes sessions, \
         so this test no longer exercises the attack (update it)"
    );
}

#[test]
fn revoked_operator_cannot_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    relay.configure("revocation_poll_ms = 100");
    relay.serve();
    let credential = relay.operator("eve", "technician");
    let (tls, counting, addr) = counted_config(&credential);
    let rt = runtime();
    rt.block_on(full_then_resumed(&tls, &counting, &addr));

    let before = requests_audited(&relay, "eve");
    let out = relay.cmd(&["operator", "revoke", "eve"]);
    assert!(out.status.success(), "operator revoke: {}", text(&out));

    // Back with a kept ticket: no certificate sent, no verifier run.
    let (outcome, reason) = rt.block_on(attempt(&tls, &addr));
    assert_eq!(
        counting.asked.load(Ordering::SeqCst),
        1,
        "the attack's handshake was a full one, not a resumed one"
    );
    assert!(
        outcome.is_err(),
        "a revoked operator got an answer through a resumed session\n{}",
        relay.log()
    );
    assert!(
        reason.contains("revoked"),
        "the resumed connection of a revoked operator was not closed out as revoked: \
         {reason}; request: {outcome:?}"
    );
    // Nothing was served to it: no request of eve's in the audit trail
    // since the revocation.
    assert_eq!(
        requests_audited(&relay, "eve"),
        before,
        "a request of the revoked operator was served"
    );
}

/// Requests of operator `name` in the relay's audit trail.
fn requests_audited(relay: &Relay, name: &str) -> i64 {
    let db = rusqlite::Connection::open(relay.dir.join("relay.db")).expect("relay.db");
    db.query_row("SELECT COUNT(*) FROM audit WHERE who = ?1", [name], |r| {
        r.get(0)
    })
    .expect("audit count")
}

#[test]
fn expired_certificate_cannot_resume() {
    const TTL_SECS: u64 = 3;
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    relay.configure(&format!("operator_cert_ttl_secs = {TTL_SECS}"));
    relay.serve();
    let credential = relay.operator("old", "technician");
    let (tls, counting, addr) = counted_config(&credential);
    let rt = runtime();
    rt.block_on(full_then_resumed(&tls, &counting, &addr));

    std::thread::sleep(Duration::from_secs(TTL_SECS + 2));
    // A new full handshake with the expired certificate is refused by the
    // verifier (control)...
    let (tls_fresh, _, _) = counted_config(&credential);
    let (outcome, reason) = rt.block_on(attempt(&tls_fresh, &addr));
    assert!(
        outcome.is_err(),
        "an expired certificate passed a full handshake: {reason}"
    );
    // ...and a resumed session of it must be refused too.
    let (outcome, reason) = rt.block_on(attempt(&tls, &addr));
    assert_eq!(counting.asked.load(Ordering::SeqCst), 1, "not resumed");
    assert!(
        outcome.is_err(),
        "an expired operator certificate got an answer through a resumed session ({reason})\n{}",
        relay.log()
    );
}
