//! Operator credential files: what `firstline-relay operator add --out FILE`
//! writes and `firstline login --credential FILE` reads. One TOML file with
//! the relay address, the operator's certificate and key, and the relay CA.

use crate::config::{self, ConfigError};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// `HOST:PORT` of the relay.
    pub relay: String,
    pub name: String,
    pub role: firstline_proto::Role,
    /// Client certificate (PEM).
    pub cert: String,
    /// Private key (PEM). Keep the file mode 0600.
    pub key: String,
    /// Relay CA (PEM).
    pub ca: String,
}

impl Credential {
    pub fn load(path: &Path) -> Result<Credential, ConfigError> {
        config::load(path)
    }

    /// Write with mode 0600 (it holds a private key).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = format!(
            "# firstline operator credential for {} ({}). It holds a private key: keep it secret.\n{}",
            self.name,
            self.role,
            toml::to_string(self).map_err(std::io::Error::other)?
        );
        write_private(path, text.as_bytes())
    }

    /// A rustls client config for this operator.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        let (chain, key, ca) = self.parts()?;
        crate::tls::client_config(chain, key, &ca).map_err(|e| e.to_string())
    }

    /// The client config for this operator kept in `sessions`, so that a
    /// process that connects again resumes its TLS session.
    pub fn resuming(
        &self,
        sessions: &mut crate::tls::Sessions,
    ) -> Result<(rustls::ClientConfig, crate::tls::Handshake), String> {
        let (chain, key, ca) = self.parts()?;
        sessions
            .client_config(chain, key, &ca)
            .map_err(|e| e.to_string())
    }

    /// The certificate chain, the key and the CA, parsed.
    fn parts(&self) -> Result<(Certs, PrivateKeyDer<'static>, Certs), String> {
        let chain = crate::pem::certs(&self.cert).map_err(|e| format!("certificate: {e}"))?;
        let key = crate::pem::key(&self.key).map_err(|e| format!("key: {e}"))?;
        let ca = crate::pem::certs(&self.ca).map_err(|e| format!("CA: {e}"))?;
        Ok((chain, key, ca))
    }
}

/// Write a file readable by its owner only: see [`crate::private::write_private`]
/// (fresh randomly named temp file, `O_EXCL`, 0600, fsync, atomic rename).
pub use crate::private::write_private;

type Certs = Vec<CertificateDer<'static>>;
