//! rustls configurations, all built on the `ring` provider passed explicitly
//! (so nothing silently picks another provider), TLS 1.3 only.
//!
//! * Relay: presents its certificate plus the CA; verifies client
//!   certificates against its CA. Clients without a certificate pass the
//!   handshake only so that enrollment can happen on the `firstline-enroll/1`
//!   ALPN; the relay closes any such connection that asks for anything else.
//! * Agents and operators: present their certificate, trust only the relay CA.
//! * Enrolling agent: no certificate yet; trusts whichever CA in the relay's
//!   chain has the SHA-256 fingerprint carried by the token (pinning, like
//!   `kubeadm join`), then verifies the relay's certificate against it.

use crate::identity::fingerprint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use rustls::Error as TlsError;

/// The one crypto provider of the project.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &[CertificateDer<'static>]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in ca {
        store.add(cert.clone())?;
    }
    Ok(store)
}

/// Relay side: its chain (leaf first, then CA), its key, client certs
/// verified against `ca`, both ALPNs offered; session tickets from
/// [`Tickets`], with `on_resume` called for each session resumed.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca: &[CertificateDer<'static>],
    on_resume: impl Fn() + Send + Sync + 'static,
) -> Result<ServerConfig, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::General(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![
        firstline_proto::ALPN.to_vec(),
        firstline_proto::ALPN_ENROLL.to_vec(),
    ];
    config.ticketer = Arc::new(Tickets {
        inner: rustls::crypto::ring::Ticketer::new()?,
        on_resume: Box::new(on_resume),
    });
    // Tickets carry the session: nothing is kept per session on the relay.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    // A reconnecting client uses one ticket and gets a new one with the
    // resumed session: one per connection is enough (rustls' default: 2).
    config.send_tls13_tickets = 1;
    Ok(config)
}

/// The relay's TLS 1.3 session tickets: stateless — the session (its keys
/// and the client's certificate chain) encrypted under a key that exists
/// only in the relay's memory, rotated every 6 hours (rustls' `ring`
/// ticketer, ChaCha20-Poly1305; a ticket lives at most 12 hours).
///
/// Why: an agent that reconnects to the same relay (a dropped link, an
/// idle timeout) resumes its session and skips the handshake's certificate
/// signatures and chain verification — most of a handshake's CPU on the
/// relay (BENCHMARKS.md "Profiles"). rustls' default instead keeps 256
/// sessions in memory, so in a fleet of thousands a reconnecting agent's
/// session was long gone. A resumed session skips the client-certificate
/// verifier, so the relay decides about the peer (revocation, validity
/// dates, role) per connection from the chain the ticket carries
/// (`relay/src/server.rs` `authenticate`; tests/resume.rs attacks it). A
/// relay restart makes a new key: every agent then makes a full handshake.
struct Tickets {
    inner: Arc<dyn rustls::server::ProducesTickets>,
    on_resume: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tickets")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl rustls::server::ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }

    fn lifetime(&self) -> u32 {
        self.inner.lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.inner.encrypt(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let plain = self.inner.decrypt(cipher);
        if plain.is_some() {
            (self.on_resume)();
        }
        plain
    }
}

/// Agent or operator side: mutual TLS against the relay CA.
pub fn client_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca: &[CertificateDer<'static>],
) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![firstline_proto::ALPN.to_vec()];
    Ok(config)
}

/// The TLS sessions a client keeps across its reconnects to the relay,
/// for one identity: a client that reconnects (a dropped link, an idle
/// timeout) resumes its session from the relay's ticket instead of a full
/// handshake with certificate signatures ([`Tickets`] on the relay).
///
/// rustls resumes a session only with the very configuration objects it
/// was made with (the same certificate verifier and resolver, compared by
/// pointer), so a client that built a new [`ClientConfig`] per connection
/// — to pick up a renewed certificate — never resumed. This keeps the one
/// config while the certificate chain and the CA are unchanged, and makes
/// a new one (with no sessions) when they change: a session made with an
/// old certificate would present the old certificate again.
#[derive(Debug, Default)]
pub struct Sessions {
    kept: Option<Kept>,
}

#[derive(Debug)]
struct Kept {
    /// SHA-256 of the chain and the CA certificates the config was made
    /// from.
    material: [u8; 32],
    config: ClientConfig,
    full: Arc<AtomicU64>,
}

/// Tells whether the handshake of the connection made with a config from
/// [`Sessions::client_config`] was a full one (not resumed).
#[derive(Debug)]
pub struct Handshake {
    full: Arc<AtomicU64>,
    before: u64,
}

impl Handshake {
    /// True once the relay asked for the client certificate: a full
    /// handshake (a resumed TLS 1.3 handshake has no CertificateRequest).
    pub fn full(&self) -> bool {
        self.full.load(Ordering::Relaxed) > self.before
    }
}

impl Sessions {
    /// The client config for this identity ([`client_config`]): the same
    /// one as last time, with its sessions, while `chain` and `ca` are.
    /// One connection at a time per [`Handshake`].
    pub fn client_config(
        &mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        ca: &[CertificateDer<'static>],
    ) -> Result<(ClientConfig, Handshake), TlsError> {
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        for cert in chain.iter().chain(ca) {
            // DER is self-delimiting: the concatenation is unambiguous.
            digest.update(cert.as_ref());
        }
        let mut material = [0u8; 32];
        material.copy_from_slice(digest.finish().as_ref());
        let kept = match self.kept.take() {
            Some(kept) if kept.material == material => kept,
            _ => {
                let mut config = client_config(chain, key, ca)?;
                let full = Arc::new(AtomicU64::new(0));
                config.client_auth_cert_resolver = Arc::new(CountsFullHandshakes {
                    inner: config.client_auth_cert_resolver.clone(),
                    full: full.clone(),
                });
                Kept {
                    material,
                    config,
                    full,
                }
            }
        };
        let handshake = Handshake {
            full: kept.full.clone(),
            before: kept.full.load(Ordering::Relaxed),
        };
        let config = kept.config.clone();
        self.kept = Some(kept);
        Ok((config, handshake))
    }
}

/// A client certificate resolver that counts being asked: the relay asks
/// for the certificate in full handshakes only.
#[derive(Debug)]
struct CountsFullHandshakes {
    inner: Arc<dyn rustls::client::ResolvesClientCert>,
    full: Arc<AtomicU64>,
}

impl rustls::client::ResolvesClientCert for CountsFullHandshakes {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.full.fetch_add(1, Ordering::Relaxed);
        self.inner.resolve(root_hint_subjects, sigschemes)
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}

/// First contact: no client certificate, relay CA pinned by fingerprint.
pub fn enroll_client_config(ca_fingerprint: &str) -> Result<ClientConfig, TlsError> {
    let verifier = Arc::new(PinnedCa {
        fingerprint: ca_fingerprint.to_ascii_lowercase(),
        provider: provider(),
    });
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![firstline_proto::ALPN_ENROLL.to_vec()];
    Ok(config)
}

/// Trusts the CA certificate in the presented chain whose fingerprint
/// matches, and nothing else; the leaf is then verified as usual against it.
#[derive(Debug)]
struct PinnedCa {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let ca = intermediates
            .iter()
            .find(|c| fingerprint(c) == self.fingerprint)
            .ok_or_else(|| {
                TlsError::General(format!(
                    "the relay's CA does not match the fingerprint in the token (sha256:{}); \
                     wrong relay address or token",
                    self.fingerprint
                ))
            })?;
        let roots = roots(&[ca.clone().into_owned()])?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| TlsError::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
