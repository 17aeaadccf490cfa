//! The admin commands that work on a relay directory without a running
//! relay: `init`, `token create`, `operator add`, `agent|operator revoke`.
//! A running `serve` picks up their effects from the shared database.
//! Each is audited, as the local user who ran it, with its outcome
//! ([`crate::audit::admin_command`]).

use crate::ca::Ca;
use crate::config::{RelayConfig, RelayDir};
use crate::store::Store;
use crate::token::Token;
use anyhow::{bail, Context, Result};
use firstline_net::credential::{write_private, Credential};
use firstline_net::identity::valid_name;
use firstline_net::Identity;
use firstline_proto::Role;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Server certificates are re-issued by `init` only; 5 years.
const SERVER_CERT_TTL: Duration = Duration::from_secs(5 * 365 * 86_400);

/// Create a relay directory: config, CA, server certificate, database.
/// Refuses to overwrite an existing relay.
pub fn init(dir: &Path, listen: SocketAddr, name: &str) -> Result<PathBuf> {
    let config_path = dir.join("relay.toml");
    if config_path.exists() {
        bail!(
            "{} already exists: this folder already holds a relay (remove it to start over)",
            config_path.display()
        );
    }
    if !valid_name(name) {
        bail!("invalid --name `{name}`: use letters, digits, `.`, `_` or `-`");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let config = RelayConfig::new(listen, name.to_string());
    let relay_dir = RelayDir {
        config: config.clone(),
        dir: dir.to_path_buf(),
        config_path: config_path.clone(),
    };
    let (ca, ca_key) = Ca::generate(&format!("firstline relay CA ({name})"))?;
    write_private(&relay_dir.ca_key(), ca_key.as_bytes())?;
    std::fs::write(relay_dir.ca_cert(), &ca.cert_pem)?;
    let (server, server_key) = ca.issue_server(name, SERVER_CERT_TTL)?;
    write_private(&relay_dir.server_key(), server_key.as_bytes())?;
    std::fs::write(relay_dir.server_cert(), &server.cert_pem)?;
    relay_dir.load_reset_secret()?;
    let store = Store::open(&relay_dir.database())?;
    store.record_cert(&server.serial, "relay", name, server.not_after)?;
    let args = format!("--name {name} --listen {listen}");
    crate::audit::admin_command(&store, "init", None, &args, Ok("ok".into()));
    let text = format!(
        "# firstline relay configuration (see `firstline-relay --help`).\n\
         # Paths (CA, certificates, relay.db) are relative to this file's folder.\n{}",
        toml::to_string(&config)?
    );
    // 0600: relay.toml may later hold webhook_secret.
    write_private(&config_path, text.as_bytes())?;
    Ok(config_path)
}

/// Create an enrollment token; prints nothing, returns the token text.
/// Audited with the token's id, never its secret.
pub fn token_create(dir: &RelayDir, uses: u32, ttl: Option<Duration>) -> Result<(String, i64)> {
    let ttl = ttl.unwrap_or(Duration::from_secs(dir.config.token_ttl_secs));
    let store = Store::open(&dir.database())?;
    let created = (|| -> Result<(Token, i64)> {
        if uses == 0 {
            bail!("--uses must be at least 1");
        }
        let ca = Ca::load(&dir.ca_cert(), &dir.ca_key())?;
        let token = Token::generate(&ca.fingerprint()?);
        let expires = store.add_token(&token.id, &token.secret_sha256(), uses, ttl)?;
        Ok((token, expires))
    })();
    let id = created.as_ref().map_or("-", |(t, _)| t.id.as_str());
    let args = format!(
        "id {id} --uses {uses} --ttl {}",
        humantime::format_duration(ttl)
    );
    let outcome = created
        .as_ref()
        .map(|(_, expires)| format!("ok: valid until {}", crate::store::rfc3339(*expires)));
    crate::audit::admin_command(&store, "token create", None, &args, outcome);
    let (token, expires) = created?;
    Ok((token.to_string(), expires))
}

/// Add an operator and write its credential file.
pub fn operator_add(dir: &RelayDir, name: &str, role: Role, out: &Path) -> Result<()> {
    let store = Store::open(&dir.database())?;
    let added = add_operator(dir, &store, name, role, out);
    let outcome = added
        .as_ref()
        .map(|()| format!("ok: credential written to {}", out.display()));
    let args = format!("{name} --role {role}");
    crate::audit::admin_command(&store, "operator add", None, &args, outcome);
    added
}

fn add_operator(dir: &RelayDir, store: &Store, name: &str, role: Role, out: &Path) -> Result<()> {
    if !valid_name(name) {
        bail!("invalid operator name `{name}`: use 1-64 letters, digits, `.`, `_` or `-`");
    }
    if !store.add_operator(name, role)? {
        bail!("an operator named `{name}` already exists (revoked names stay taken)");
    }
    let ca = Ca::load(&dir.ca_cert(), &dir.ca_key())?;
    let identity = Identity::Operator {
        name: name.to_string(),
        role,
    };
    let ttl = Duration::from_secs(dir.config.operator_cert_ttl_secs);
    let (issued, key) = ca.issue_operator(&identity, ttl)?;
    store.record_cert(&issued.serial, "operator", name, issued.not_after)?;
    let credential = Credential {
        relay: dir.config.public_addr(),
        name: name.to_string(),
        role,
        cert: issued.cert_pem,
        key,
        ca: ca.cert_pem.clone(),
    };
    credential
        .save(out)
        .with_context(|| format!("cannot write {}", out.display()))
}

/// Revoke an agent or an operator for good.
pub fn revoke(dir: &RelayDir, kind: &str, name: &str) -> Result<()> {
    let store = Store::open(&dir.database())?;
    let revoked = match store.revoke(kind, name) {
        Ok(true) => Ok(()),
        Ok(false) => Err(anyhow::anyhow!("no {kind} named `{name}` at this relay")),
        Err(e) => Err(e),
    };
    let agent = (kind == "agent").then_some(name);
    let outcome = revoked.as_ref().map(|()| "ok".to_string());
    crate::audit::admin_command(&store, &format!("{kind} revoke"), agent, name, outcome);
    revoked
}

/// Enroll `n` agents named `{prefix}1` … `{prefix}{n}` at once, without the
/// token round trip: for load tests that need thousands of real identities.
///
/// Each agent gets its own key and a CSR that goes through the very signing
/// path of enrollment ([`Ca::sign_agent_csr`]); every agent and certificate
/// is recorded in one transaction (all or nothing; a name already taken
/// fails the whole batch). Returns `(name, identity PEM)` pairs, the PEM
/// being what an enrolled agent keeps in `identity.pem`: certificate, then
/// key. Signing runs on every core.
pub fn bulk_agents(
    dir: &RelayDir,
    prefix: &str,
    n: usize,
    ttl: Duration,
) -> Result<Vec<(String, String)>> {
    let enrolled = bulk_enroll(dir, prefix, n, ttl);
    // One entry for the batch (the store is opened even when the batch failed).
    if let Ok(store) = Store::open(&dir.database()) {
        let args = format!(
            "--prefix {prefix} -n {n} --ttl {}",
            humantime::format_duration(ttl)
        );
        let outcome = enrolled
            .as_ref()
            .map(|a| format!("ok: {} agents enrolled", a.len()));
        crate::audit::admin_command(&store, "agent bulk-enroll", None, &args, outcome);
    }
    enrolled
}

fn bulk_enroll(
    dir: &RelayDir,
    prefix: &str,
    n: usize,
    ttl: Duration,
) -> Result<Vec<(String, String)>> {
    let names: Vec<String> = (1..=n).map(|i| format!("{prefix}{i}")).collect();
    if let Some(bad) = names.iter().find(|name| !valid_name(name)) {
        bail!("invalid agent name `{bad}`: use letters, digits, `.`, `_` or `-` in the prefix");
    }
    let ca = Ca::load(&dir.ca_cert(), &dir.ca_key())?;
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let chunk = names.len().div_ceil(threads).max(1);
    let issued: Vec<(String, String, String, i64)> = std::thread::scope(|s| {
        let workers: Vec<_> = names
            .chunks(chunk)
            .map(|part| {
                let ca = &ca;
                s.spawn(move || -> Result<Vec<_>> {
                    part.iter()
                        .map(|name| {
                            let key = rcgen::KeyPair::generate()?;
                            let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
                            params
                                .distinguished_name
                                .push(rcgen::DnType::CommonName, name.as_str());
                            let csr = params.serialize_request(&key)?.pem()?;
                            let cert = ca.sign_agent_csr(name, &csr, ttl)?;
                            let pem = format!("{}{}", cert.cert_pem, key.serialize_pem());
                            Ok((name.clone(), pem, cert.serial, cert.not_after))
                        })
                        .collect()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(names.len());
        for w in workers {
            match w.join() {
                Ok(part) => all.extend(part?),
                Err(_) => bail!("a signing thread panicked"),
            }
        }
        Ok(all)
    })?;
    let store = Store::open(&dir.database())?;
    let now = crate::store::now();
    store.with_tx(|tx| {
        let mut agent = tx.prepare("INSERT INTO agents (name, enrolled_at) VALUES (?1, ?2)")?;
        let mut cert = tx.prepare(
            "INSERT INTO certs (serial, kind, name, not_after, issued_at) VALUES (?1, 'agent', ?2, ?3, ?4)",
        )?;
        for (name, _, serial, not_after) in &issued {
            agent
                .execute(rusqlite::params![name, now])
                .with_context(|| format!("cannot record agent {name} (already enrolled?)"))?;
            cert.execute(rusqlite::params![serial, name, not_after, now])?;
        }
        Ok(())
    })?;
    Ok(issued
        .into_iter()
        .map(|(name, pem, _, _)| (name, pem))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CertStatus;

    #[test]
    fn bulk_agents_are_enrolled_and_their_certs_recorded() {
        let tmp = tempfile::tempdir().unwrap();
        let config = init(tmp.path(), "127.0.0.1:0".parse().unwrap(), "relay").unwrap();
        let dir = RelayDir::load(&config).unwrap();
        let agents = bulk_agents(&dir, "sim-", 5, Duration::from_secs(3600)).unwrap();
        assert_eq!(agents.len(), 5);
        let store = Store::open(&dir.database()).unwrap();
        assert_eq!(store.agents().unwrap().len(), 5);
        for (name, pem) in &agents {
            let der = firstline_net::pem::certs(pem).unwrap();
            let info = firstline_net::identity::cert_info(&der[0]).unwrap();
            assert_eq!(info.identity, Some(Identity::Agent { name: name.clone() }));
            assert_eq!(
                store.cert_status(&info.serial, "agent", name).unwrap(),
                CertStatus::Valid
            );
            assert!(firstline_net::pem::key(pem).is_ok());
        }
        // A taken name fails the whole batch and records nothing more.
        assert!(bulk_agents(&dir, "sim-", 6, Duration::from_secs(3600)).is_err());
        assert_eq!(store.agents().unwrap().len(), 5);
    }
}
