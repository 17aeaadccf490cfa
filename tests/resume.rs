//! TLS session resumption against the relay, as an attacker would use it.
//!
//! The relay gives every connection a stateless TLS 1.3 session ticket
//! (`firstline_net::tls::server_config`), so a client that kept it
//! resumes: the handshake then carries no
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
//! * `agent_reconnect_resumes_after_many_other_sessions`: what resumption
//!   is for — a real agent whose link timed out comes back with a resumed
//!   session (its log says `tls=resumed`, the relay counts it in
//!   `/metrics`), even after hundreds of other clients' sessions were made
//!   in between (rustls' default store kept only the last 256).
//!
//! Each test proves that its handshakes really were resumed: the client's
//! certificate resolver is asked for the certificate on full handshakes
//! only (a resumed TLS 1.3 handshake has no CertificateRequest).

use firstline_net::credential::Credential;
use firstline_proto::Message;
use firstline_tests::peers::free_tcp_port;
use firstline_tests::raw::{runtime, Peer};
use firstline_tests::{text, wait_until, Agent, Relay};
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use std::io::{Read, Write};
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

/// Sessions made with fresh client configs (so none of them resumes),
/// `total` of them, a few at a time: each leaves the relay a ticket's worth
/// of session.
async fn other_sessions(credential: &Path, relay: &str, total: usize) {
    let cred = Credential::load(credential).expect("credential");
    let mut made = 0;
    while made < total {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..8.min(total - made) {
            let tls = cred.client_config().expect("client config");
            let relay = relay.to_string();
            batch.spawn(async move {
                let peer = Peer::dial(tls, &relay, "127.0.0.1:0".parse().expect("literal"))
                    .await
                    .expect("another client's connection");
                peer.close().await;
            });
            made += 1;
        }
        while let Some(done) = batch.join_next().await {
            done.expect("a connection task");
        }
    }
}

/// `firstline_tls_sessions_resumed_total` from the relay's `/metrics`.
fn sessions_resumed(port: u16) -> u64 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics port");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("firstline_tls_sessions_resumed_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no firstline_tls_sessions_resumed_total in:\n{text}"))
}

/// The `connected` lines of an agent's log.
fn connections(agent: &Agent) -> Vec<String> {
    let mut lines = agent.log_lines("tls=");
    lines.retain(|l| l.contains("connected"));
    lines
}

#[test]
fn agent_reconnect_resumes_after_many_other_sessions() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::init(tmp.path());
    let port = free_tcp_port();
    relay.configure(&format!(
        "metrics_listen = \"127.0.0.1:{port}\"\nkeep_alive_secs = 1\nidle_timeout_secs = 2"
    ));
    relay.serve();
    let mut agent = Agent::enrolled(tmp.path(), "pc1", &relay);
    agent.configure("keep_alive_secs = 1\nidle_timeout_secs = 2\nreconnect_min_ms = 100");
    agent.start();
    assert!(
        wait_until(Duration::from_secs(20), || connections(&agent).len() == 1),
        "the agent did not connect:\n{}",
        agent.log()
    );
    assert!(
        connections(&agent)[0].contains("tls=full"),
        "the first connection of a new agent cannot be resumed: {:?}",
        connections(&agent)
    );
    assert_eq!(sessions_resumed(port), 0);

    // More sessions than rustls' default store holds.
    let credential = relay.operator("tina", "technician");
    runtime().block_on(other_sessions(&credential, &relay.addr, 300));

    // The agent's link times out: stopped past both idle timeouts.
    let pid = agent
        .proc
        .as_ref()
        .expect("agent running")
        .child
        .id()
        .to_string();
    let signal = |sig: &str| {
        let out = firstline_tests::run(std::process::Command::new("kill").args([sig, &pid]));
        assert!(out.status.success(), "kill {sig}: {}", text(&out));
    };
    signal("-STOP");
    std::thread::sleep(Duration::from_secs(4));
    signal("-CONT");
    assert!(
        wait_until(Duration::from_secs(30), || connections(&agent).len() >= 2),
        "the agent did not reconnect:\n{}",
        agent.log()
    );
    let again = connections(&agent)[1].clone();
    assert!(
        again.contains("tls=resumed"),
        "the agent's reconnect was a full handshake, not a resumed session: {again}\n{}",
        agent.log()
    );
    assert_eq!(
        sessions_resumed(port),
        1,
        "the relay did not count the resumed session\n{}",
        relay.log()
    );
}
