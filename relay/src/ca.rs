//! The relay's private certificate authority.
//!
//! It issues three kinds of certificates, each carrying its identity as a
//! subjectAltName URI (see `firstline_net::identity`):
//! * the relay's own server certificate (serverAuth, DNS name
//!   `firstline-relay` plus the configured name);
//! * agent certificates, from a CSR — the agent's key never leaves it;
//! * operator certificates, with a key made here and handed over once in the
//!   credential file.

use anyhow::{bail, Context, Result};
use firstline_net::Identity;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::path::Path;
use std::time::Duration;
use time::OffsetDateTime;

/// Tolerated clock skew between machines for `not_before`.
const BACKDATE: time::Duration = time::Duration::minutes(5);

/// A loaded CA: certificate (PEM) and signer.
pub struct Ca {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A freshly issued certificate.
#[derive(Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub serial: String,
    /// Unix seconds.
    pub not_after: i64,
}

impl Ca {
    /// Make a new CA (10 years). Returns it and its key in PEM.
    pub fn generate(common_name: &str) -> Result<(Ca, String)> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + time::Duration::days(3650);
        params.serial_number = Some(random_serial());
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok((
            Ca {
                cert_pem: cert.pem(),
                issuer: Issuer::new(params, key),
            },
            key_pem,
        ))
    }

    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Ca> {
        let cert_pem = std::fs::read_to_string(cert_path)
            .with_context(|| format!("cannot read CA certificate {}", cert_path.display()))?;
        let key_pem = std::fs::read_to_string(key_path)
            .with_context(|| format!("cannot read CA key {}", key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("bad CA key in {}", key_path.display()))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
            .with_context(|| format!("bad CA certificate in {}", cert_path.display()))?;
        Ok(Ca { cert_pem, issuer })
    }

    /// SHA-256 fingerprint of the CA certificate (what tokens carry).
    pub fn fingerprint(&self) -> Result<String> {
        let der = firstline_net::pem::certs(&self.cert_pem)?;
        Ok(firstline_net::fingerprint(&der[0]))
    }

    /// The relay's server certificate and key (PEM).
    pub fn issue_server(&self, name: &str, ttl: Duration) -> Result<(Issued, String)> {
        let mut names = vec![firstline_proto::RELAY_SERVER_NAME.to_string()];
        if name != firstline_proto::RELAY_SERVER_NAME {
            names.push(name.to_string());
        }
        let mut params = leaf_params(name, ttl)?;
        for n in names {
            params
                .subject_alt_names
                .push(SanType::DnsName(n.try_into()?));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((issued(&params, cert.pem()), key.serialize_pem()))
    }

    /// Sign an agent's CSR. Only the CSR's public key is used: the subject,
    /// names and validity are ours.
    pub fn sign_agent_csr(&self, name: &str, csr_pem: &str, ttl: Duration) -> Result<Issued> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .context("the certificate request is not a valid, self-signed CSR")?;
        csr.params = client_params(&Identity::Agent { name: name.into() }, ttl)?;
        let cert = csr.signed_by(&self.issuer)?;
        Ok(issued(&csr.params, cert.pem()))
    }

    /// An operator certificate and its new key (PEM).
    pub fn issue_operator(&self, identity: &Identity, ttl: Duration) -> Result<(Issued, String)> {
        if !matches!(identity, Identity::Operator { .. }) {
            bail!("not an operator identity");
        }
        let params = client_params(identity, ttl)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((issued(&params, cert.pem()), key.serialize_pem()))
    }
}

fn issued(params: &CertificateParams, cert_pem: String) -> Issued {
    let serial = params
        .serial_number
        .as_ref()
        .map(|s| hex::encode(s.as_ref()))
        .unwrap_or_default();
    Issued {
        cert_pem,
        serial,
        not_after: params.not_after.unix_timestamp(),
    }
}

fn leaf_params(common_name: &str, ttl: Duration) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + time::Duration::try_from(ttl)?;
    params.serial_number = Some(random_serial());
    Ok(params)
}

fn client_params(identity: &Identity, ttl: Duration) -> Result<CertificateParams> {
    let mut params = leaf_params(identity.name(), ttl)?;
    params
        .subject_alt_names
        .push(SanType::URI(identity.to_uri().try_into()?));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

/// 16 random bytes, positive (top bit clear), as RFC 5280 wants.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use firstline_proto::Role;

    #[test]
    fn agent_csr_signed_with_our_identity_only() {
        let (ca, _) = Ca::generate("test CA").unwrap();
        let key = KeyPair::generate().unwrap();
        let mut req = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        req.subject_alt_names.push(SanType::URI(
            "urn:firstline:operator:admin:mallory".try_into().unwrap(),
        ));
        let csr = req.serialize_request(&key).unwrap().pem().unwrap();
        let issued = ca
            .sign_agent_csr("pc1", &csr, Duration::from_secs(3600))
            .unwrap();
        let der = firstline_net::pem::certs(&issued.cert_pem).unwrap();
        let info = firstline_net::identity::cert_info(&der[0]).unwrap();
        assert_eq!(info.identity, Some(Identity::Agent { name: "pc1".into() }));
        assert_eq!(info.serial, issued.serial);
    }

    #[test]
    fn garbage_csr_refused() {
        let (ca, _) = Ca::generate("test CA").unwrap();
        let err = ca
            .sign_agent_csr(
                "pc1",
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                Duration::from_secs(60),
            )
            .unwrap_err();
        assert!(err.to_string().contains("not a valid"));
    }

    #[test]
    fn operator_identity_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, key_pem) = Ca::generate("test CA").unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
        std::fs::write(dir.path().join("ca-key.pem"), key_pem).unwrap();
        let ca = Ca::load(&dir.path().join("ca.pem"), &dir.path().join("ca-key.pem")).unwrap();
        let id = Identity::Operator {
            name: "alice".into(),
            role: Role::Viewer,
        };
        let (issued, _key) = ca.issue_operator(&id, Duration::from_secs(60)).unwrap();
        let der = firstline_net::pem::certs(&issued.cert_pem).unwrap();
        let info = firstline_net::identity::cert_info(&der[0]).unwrap();
        assert_eq!(info.identity, Some(id));
    }
}
