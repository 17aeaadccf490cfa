//! Who a certificate belongs to.
//!
//! The relay's CA writes the identity into each certificate it issues as one
//! subjectAltName URI — `urn:firstline:agent:NAME` or
//! `urn:firstline:operator:ROLE:NAME` — and every decision about a peer is
//! taken from the verified certificate, never from a message field.

use firstline_proto::Role;
use x509_parser::prelude::*;

const AGENT_PREFIX: &str = "urn:firstline:agent:";
const OPERATOR_PREFIX: &str = "urn:firstline:operator:";

/// A verified peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Agent { name: String },
    Operator { name: String, role: Role },
}

impl Identity {
    /// The subjectAltName URI that encodes this identity.
    pub fn to_uri(&self) -> String {
        match self {
            Identity::Agent { name } => format!("{AGENT_PREFIX}{name}"),
            Identity::Operator { name, role } => format!("{OPERATOR_PREFIX}{role}:{name}"),
        }
    }

    pub fn from_uri(uri: &str) -> Option<Identity> {
        if let Some(name) = uri.strip_prefix(AGENT_PREFIX) {
            return valid_name(name).then(|| Identity::Agent { name: name.into() });
        }
        let rest = uri.strip_prefix(OPERATOR_PREFIX)?;
        let (role, name) = rest.split_once(':')?;
        let role = role.parse().ok()?;
        valid_name(name).then(|| Identity::Operator {
            name: name.into(),
            role,
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Identity::Agent { name } | Identity::Operator { name, .. } => name,
        }
    }

    /// `agent NAME` or `operator NAME (role)`, for logs and the audit trail.
    pub fn describe(&self) -> String {
        match self {
            Identity::Agent { name } => format!("agent {name}"),
            Identity::Operator { name, role } => format!("operator {name} ({role})"),
        }
    }
}

/// Names of agents and operators: 1–64 of `A-Z a-z 0-9 . _ -`, not starting
/// with `.` or `-` (they end up in file names, URIs and table cells).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What the relay needs to know of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub identity: Option<Identity>,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
    pub not_before: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("unreadable certificate: {0}")]
pub struct CertError(String);

/// Read identity, serial and validity out of a DER certificate.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, CertError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertError(e.to_string()))?;
    let identity = cert
        .subject_alternative_name()
        .map_err(|e| CertError(e.to_string()))?
        .and_then(|san| {
            san.value.general_names.iter().find_map(|gn| match gn {
                GeneralName::URI(uri) => Identity::from_uri(uri),
                _ => None,
            })
        });
    Ok(CertInfo {
        identity,
        serial: hex::encode(cert.tbs_certificate.raw_serial()),
        not_after: cert.validity().not_after.timestamp(),
        not_before: cert.validity().not_before.timestamp(),
    })
}

/// SHA-256 fingerprint of a DER certificate, lowercase hex (what tokens carry).
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trip() {
        for id in [
            Identity::Agent {
                name: "pc-042".into(),
            },
            Identity::Operator {
                name: "alice".into(),
                role: Role::Technician,
            },
        ] {
            assert_eq!(Identity::from_uri(&id.to_uri()), Some(id));
        }
    }

    #[test]
    fn bad_uris_and_names() {
        assert_eq!(Identity::from_uri("urn:firstline:operator:root:bob"), None);
        assert_eq!(Identity::from_uri("urn:firstline:agent:../etc"), None);
        assert_eq!(Identity::from_uri("https://example"), None);
        assert!(!valid_name(""));
        assert!(!valid_name("-x"));
        assert!(!valid_name(&"a".repeat(65)));
        assert!(valid_name("host-1.example_2"));
    }

    #[test]
    fn reads_san_from_real_cert() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let id = Identity::Agent { name: "pc1".into() };
        params.subject_alt_names = vec![rcgen::SanType::URI(id.to_uri().try_into().unwrap())];
        params.serial_number = Some(vec![0x01, 0xab].into());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let info = cert_info(cert.der()).unwrap();
        assert_eq!(info.identity, Some(id));
        assert_eq!(info.serial, "01ab");
        assert!(info.not_after > info.not_before);
        assert_eq!(fingerprint(cert.der()).len(), 64);
    }
}
