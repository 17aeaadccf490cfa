//! `firstline-agent enroll`: first contact with the relay.
//!
//! The key is generated here and never leaves the machine; the relay gets a
//! CSR and the token. The relay is trusted only if its CA matches the
//! fingerprint carried by the token (pinning), and the CA it returns must
//! match it too. The result is `identity.pem` (certificate + key, 0600),
//! `ca.pem`, and the `relay`/`name`/`state_dir` keys of `agent.toml`
//! (other keys of an existing file are kept).
//!
//! **Everything local is checked before the token is spent.** The relay
//! spends a use of the token and takes the name the moment it answers, so
//! whatever could fail here afterwards is tried first
//! ([`prepare_local`]): the name, the state folder (created 0700 when
//! missing) and that private files can be made in it, the config's folder
//! (created 0755 when missing, 0700 when it is the state folder) and the
//! new config itself — written beside its final name and loaded as the
//! agent will load it, then renamed into place once the relay answered.
//! Not root, a read-only or wrong path, a broken agent.toml: a clear error,
//! and the token still enrolls the machine once that is fixed.
//!
//! Several relays of one deployment (`--relay a:4433 --relay b:4433`, or
//! `--relay a:4433,b:4433`): the enrollment goes to the first, in that
//! order, that answers; the token's CA fingerprint pins every one of them
//! (they share the CA), and `relay` is written as the whole list.

use crate::config::{Loaded, Relays};
use anyhow::{anyhow, bail, Context, Result};
use firstline_net::cli::UsageError;
use firstline_net::credential::write_private;
use firstline_net::endpoint;
use firstline_net::stream::request;
use firstline_proto::{ErrorCode, Message};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Time the relay has to answer the enrollment once connected (it signs a
/// certificate and writes its database).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// `relay`: one address (`String`: commas may separate several) or the
/// addresses of a repeated `--relay` (`Vec<String>`), anything that makes
/// [`Relays`].
pub struct EnrollRequest<R = String> {
    pub relay: R,
    pub token: String,
    pub name: String,
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
}

/// The environment variable `enroll` reads the token from.
pub const TOKEN_ENV: &str = "FIRSTLINE_TOKEN";

/// The enrollment token from exactly one source: `--token` (other users can
/// read it in the process list), `--token-file FILE` (`-`: standard input)
/// or `$FIRSTLINE_TOKEN` (`env`), which is read only when neither option is
/// given (an option wins over the environment). None, or both options: a
/// usage error (exit 2) naming the three.
pub fn token_from(
    token: Option<String>,
    token_file: Option<&Path>,
    env: Option<String>,
) -> Result<String> {
    let text = match (token, token_file) {
        (Some(_), Some(_)) => {
            return Err(UsageError("give the enrollment token once: --token or --token-file, not both".into()).into())
        }
        (Some(t), None) => t,
        (None, Some(file)) => {
            let read = if file == Path::new("-") {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(file)
            };
            let text = read.map_err(|e| {
                UsageError(format!("cannot read the token file {}: {e}", file.display()))
            })?;
            if text.trim().is_empty() {
                return Err(UsageError(format!("the token file {} is empty", file.display())).into());
            }
            text
        }
        (None, None) => match env.filter(|t| !t.trim().is_empty()) {
            Some(t) => t,
            None => {
                return Err(UsageError(format!(
                    "no enrollment token: pass --token-file FILE, set {TOKEN_ENV}, or pass --token TOKEN \
                     (other users can see --token in the process list)"
                ))
                .into())
            }
        },
    };
    Ok(text.trim().to_string())
}

/// Why the relay refused, as an error the CLI shows as is.
#[derive(Debug, thiserror::Error)]
#[error("enrollment refused: {message}")]
pub struct Refused {
    pub code: ErrorCode,
    pub message: String,
}

/// A CSR and its private key (PEM), for enrollment and renewal.
pub fn new_key_and_csr(name: &str) -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key.serialize_pem(), csr))
}

pub async fn enroll<R: Into<Relays>>(req: EnrollRequest<R>) -> Result<Loaded> {
    let relays: Relays = req.relay.into();
    if relays.is_empty() {
        return Err(UsageError("--relay: give the relay's HOST:PORT".into()).into());
    }
    if let Some(problem) = relays.problems().into_iter().next() {
        return Err(UsageError(format!("--relay: {problem}")).into());
    }
    if !firstline_net::identity::valid_name(&req.name) {
        bail!(
            "invalid agent name `{}`: use 1-64 letters, digits, `.`, `_` or `-` (set --name)",
            req.name
        );
    }
    let fingerprint = token_fingerprint(&req.token)?;
    let identity_path = req.state_dir.join("identity.pem");
    if identity_path.exists() {
        bail!(
            "this agent is already enrolled ({} exists); to enroll again, have the admin revoke it and remove that file",
            identity_path.display()
        );
    }
    // Nothing below may fail for a local reason once the relay has the
    // token: it would be spent, the name taken, and nothing enrolled.
    let local = prepare_local(&req.config_path, &req.state_dir, &req.name, &relays)?;
    let (key_pem, csr_pem) = new_key_and_csr(&req.name)?;
    let connect_timeout = connect_timeout(&req.config_path);
    // The first relay that answers (its certificate chaining to the pinned
    // CA) gets the enrollment; one that cannot be reached is skipped. Once
    // a relay has the token, its answer is final: a refusal is not retried
    // elsewhere (the token may be used up).
    let mut unreachable = Vec::new();
    let mut reached = None;
    for relay in relays.list() {
        match dial(relay, &fingerprint, connect_timeout, &req.config_path).await {
            Ok(c) => {
                reached = Some((relay.as_str(), c));
                break;
            }
            Err(e) => {
                if relays.len() > 1 {
                    // `enroll` runs without a log: say it on stderr.
                    eprintln!("{}", firstline_net::cli::terminal_safe(&format!("{e:#}")));
                }
                unreachable.push(e);
            }
        }
    }
    let Some((relay, (ep, conn))) = reached else {
        return Err(match unreachable.len() {
            1 => unreachable.remove(0),
            _ => anyhow!(
                "none of the {} relays answered: {}",
                unreachable.len(),
                unreachable
                    .iter()
                    .map(|e| format!("{e:#}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
    };
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, async {
        let (_send, mut recv) = request(
            &conn,
            Message::Enroll {
                token: req.token.trim().to_string(),
                name: req.name.clone(),
                csr_pem,
            },
        )
        .await?;
        let answer = recv.recv().await?;
        conn.close(0u32.into(), b"enrolled");
        anyhow::Ok(answer)
    })
    .await
    .map_err(|_| {
        anyhow!(
            "relay {relay} accepted the connection but did not answer the enrollment within {}",
            seconds(ANSWER_TIMEOUT)
        )
    })??;
    endpoint::finish(&ep).await;
    let (cert_pem, ca_pem) = match answer {
        Some(Message::Enrolled {
            cert_pem, ca_pem, ..
        }) => (cert_pem, ca_pem),
        Some(Message::Error { code, message }) => return Err(Refused { code, message }.into()),
        other => bail!("unexpected answer from the relay: {other:?}"),
    };
    let ca_der = firstline_net::pem::certs(&ca_pem)?;
    if firstline_net::fingerprint(&ca_der[0]) != fingerprint {
        bail!(
            "the relay returned a CA that does not match the token's fingerprint; nothing written"
        );
    }
    write_private(&identity_path, format!("{cert_pem}{key_pem}").as_bytes())
        .with_context(|| format!("cannot write {}", identity_path.display()))?;
    let ca_path = req.state_dir.join("ca.pem");
    write_private(&ca_path, ca_pem.as_bytes())
        .with_context(|| format!("cannot write {}", ca_path.display()))?;
    local
        .config
        .persist(&req.config_path)
        .map_err(|e| anyhow!("cannot write {}: {}", req.config_path.display(), e.error))?;
    Loaded::load(&req.config_path)
}

/// What [`prepare_local`] made ready: the new config, written and loaded
/// beside its final name (renamed into place after the relay answered).
pub struct Prepared {
    config: tempfile::NamedTempFile,
}

/// Try everything enrollment will do on this machine, before the token
/// goes to the relay: create the config's folder (0755; 0700 when it is
/// the state folder) and the state folder (0700), make a private file in the state
/// folder (where `identity.pem` and `ca.pem` go), and write the new
/// config beside its final name and load it as the agent will. Each
/// failure says what to do.
pub fn prepare_local(
    config_path: &Path,
    state: &Path,
    name: &str,
    relays: &Relays,
) -> Result<Prepared> {
    let not_root = || {
        if rustix::process::geteuid().is_root() {
            ""
        } else {
            " (enrollment usually runs as root: sudo firstline-agent enroll …)"
        }
    };
    let config_dir = match config_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The config's folder first: parents the two share are then public
    // (0755) as the config's must be, the state folder alone private.
    let same = |a: &Path, b: &Path| std::path::absolute(a).ok() == std::path::absolute(b).ok();
    let dir_mode = if same(&config_dir, state) {
        0o700
    } else {
        0o755
    };
    firstline_net::private::create_dir(&config_dir, dir_mode).with_context(|| {
        format!(
            "cannot create the config's folder {}{}",
            config_dir.display(),
            not_root()
        )
    })?;
    firstline_net::private::create_dir(state, 0o700).with_context(|| {
        format!(
            "cannot create the state folder {}{}",
            state.display(),
            not_root()
        )
    })?;
    let probe = tempfile::Builder::new()
        .prefix(".enroll-check.")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(state);
    match probe {
        Ok(f) if f.as_file().metadata()?.mode() & 0o077 == 0 => {}
        Ok(_) => bail!(
            "cannot make a private file in {}: files made there are readable by others (mode or ACL); \
             identity.pem would not stay private",
            state.display()
        ),
        Err(e) => bail!(
            "cannot write in the state folder {} ({e}): identity.pem and ca.pem go there{}",
            state.display(),
            not_root()
        ),
    }
    let text = render_config(config_path, relays, name, state)?;
    // The config holds no secret (firstline-help reads help_socket from
    // it): an existing file keeps its mode and owner, a new one is 0644.
    let existing = std::fs::metadata(config_path).ok();
    let mode = existing.as_ref().map_or(0o644, |m| m.mode() & 0o7777);
    let mut config = tempfile::Builder::new()
        .prefix(".agent.toml.")
        .suffix(".tmp")
        .rand_bytes(16)
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(&config_dir)
        .map_err(|e| anyhow!("cannot write {} ({e}){}", config_path.display(), not_root()))?;
    // umask-proof, and the owner of an existing file kept where allowed.
    config
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    if let Some(m) = &existing {
        let _ = std::os::unix::fs::fchown(config.as_file(), Some(m.uid()), Some(m.gid()));
    }
    config
        .write_all(text.as_bytes())
        .and_then(|()| config.as_file().sync_all())
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let tmp_name = config.path().display().to_string();
    Loaded::load(config.path()).map_err(|e| {
        anyhow!(
            "{}",
            format!("{e:#}").replace(&tmp_name, &config_path.display().to_string())
        )
    })?;
    Ok(Prepared { config })
}

/// A connection to `relay` whose certificate chains to the pinned CA.
async fn dial(
    relay: &str,
    fingerprint: &str,
    connect_timeout: Duration,
    config_path: &Path,
) -> Result<(quinn::Endpoint, quinn::Connection)> {
    let remote = endpoint::resolve(relay).map_err(|e| anyhow!(e))?;
    let tls = firstline_net::tls::enroll_client_config(fingerprint)?;
    let ep = endpoint::client(tls, remote, Default::default())?;
    let conn = tokio::time::timeout(connect_timeout, endpoint::connect(&ep, remote))
        .await
        .map_err(|_| {
            anyhow!(
                "relay {relay} did not answer within {}: is it running, and does UDP reach it? \
                 (connect_timeout_ms in {} sets the wait)",
                seconds(connect_timeout),
                config_path.display()
            )
        })?
        .map_err(|e| anyhow!("cannot reach relay {relay}: {e}"))?;
    Ok((ep, conn))
}

/// The connect timeout for enrolling: `connect_timeout_ms` of the config
/// being written when it already exists and sets it (a packaged
/// agent.toml may), else [`crate::config::DEFAULT_CONNECT_TIMEOUT_MS`].
fn connect_timeout(config: &Path) -> Duration {
    let ms = std::fs::read_to_string(config)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| t.get("connect_timeout_ms")?.as_integer())
        .and_then(|ms| u64::try_from(ms).ok())
        .filter(|ms| *ms >= 100)
        .unwrap_or(crate::config::DEFAULT_CONNECT_TIMEOUT_MS);
    Duration::from_millis(ms)
}

/// `3 s`, `2.5 s`.
fn seconds(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn token_fingerprint(token: &str) -> Result<String> {
    let fp = token.trim().rsplit('.').next().unwrap_or_default();
    if !token.trim().starts_with("fl1.")
        || fp.len() != 64
        || !fp.bytes().all(|b| b.is_ascii_hexdigit())
    {
        bail!("malformed enrollment token: expected `fl1.ID.SECRET.FINGERPRINT` as printed by `firstline-relay token create`");
    }
    Ok(fp.to_ascii_lowercase())
}

/// The config at `path` with `relay` (a string for one relay, a list for
/// several), `name` and `state_dir` set, keeping the rest.
fn render_config(path: &Path, relays: &Relays, name: &str, state_dir: &Path) -> Result<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "# firstline agent configuration; written by `firstline-agent enroll`.\n".to_string()
        }
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("cannot update {}", path.display()))?;
    let state = relative_to(path, state_dir);
    doc["relay"] = match relays.list() {
        [one] => toml_edit::value(one.as_str()),
        many => toml_edit::value(
            many.iter()
                .map(String::as_str)
                .collect::<toml_edit::Array>(),
        ),
    };
    doc["name"] = toml_edit::value(name);
    doc["state_dir"] = toml_edit::value(state.display().to_string());
    Ok(doc.to_string())
}

/// `state_dir` as written in the config: "." when it is the config's folder.
fn relative_to(config: &Path, state_dir: &Path) -> PathBuf {
    let parent = config.parent().unwrap_or(Path::new(""));
    match state_dir.strip_prefix(parent) {
        Ok(rest) if rest.as_os_str().is_empty() => PathBuf::from("."),
        Ok(rest) if !parent.as_os_str().is_empty() => rest.to_path_buf(),
        _ => state_dir.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(path: &Path, relays: &Relays, name: &str, state_dir: &Path) -> Result<()> {
        std::fs::write(path, render_config(path, relays, name, state_dir)?)?;
        Ok(())
    }

    #[test]
    fn token_fingerprint_checked() {
        let fp = "ab".repeat(32);
        assert_eq!(
            token_fingerprint(&format!("fl1.00000000.{}.{fp}", "0".repeat(32))).unwrap(),
            fp
        );
        assert!(token_fingerprint("nonsense").is_err());
    }

    #[test]
    fn token_comes_from_exactly_one_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "fl1.from-file\n").unwrap();
        let env = || Some("fl1.from-env".to_string());
        let t = |s: &str| Some(s.to_string());
        assert_eq!(token_from(t("fl1.arg"), None, None).unwrap(), "fl1.arg");
        assert_eq!(
            token_from(None, Some(&file), None).unwrap(),
            "fl1.from-file"
        );
        assert_eq!(token_from(None, None, env()).unwrap(), "fl1.from-env");
        // An option wins over the environment.
        assert_eq!(
            token_from(None, Some(&file), env()).unwrap(),
            "fl1.from-file"
        );
        assert_eq!(token_from(t("fl1.arg"), None, env()).unwrap(), "fl1.arg");
        let usage = |r: Result<String>| {
            let e = r.unwrap_err();
            assert!(e.downcast_ref::<UsageError>().is_some(), "{e:#}");
            e.to_string()
        };
        let none = usage(token_from(None, None, None));
        for name in ["--token-file", "FIRSTLINE_TOKEN", "--token "] {
            assert!(none.contains(name), "{none}");
        }
        usage(token_from(None, None, t("  ")));
        usage(token_from(t("fl1.arg"), Some(&file), None));
        usage(token_from(None, Some(&dir.path().join("missing")), None));
        std::fs::write(&file, "\n").unwrap();
        assert!(usage(token_from(None, Some(&file), None)).contains("empty"));
    }

    #[test]
    fn connect_timeout_from_the_config_or_three_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        assert_eq!(connect_timeout(&p), Duration::from_secs(3));
        std::fs::write(&p, "connect_timeout_ms = 1500\n").unwrap();
        assert_eq!(connect_timeout(&p), Duration::from_millis(1500));
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
        std::fs::write(&p, "connect_timeout_ms = 0\n").unwrap();
        assert_eq!(connect_timeout(&p), Duration::from_secs(3));
    }

    #[test]
    fn one_relay_is_written_as_a_string_several_as_a_list() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        write_config(&p, &"a.example:4433".into(), "pc1", dir.path()).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("relay = \"a.example:4433\""), "{text}");
        let several = Relays::from(vec!["a.example:4433".to_string(), "b.example:4433".into()]);
        write_config(&p, &several, "pc1", dir.path()).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("relay = [\"a.example:4433\", \"b.example:4433\"]"),
            "{text}"
        );
        assert_eq!(Loaded::load(&p).unwrap().config.relay, several);
        // Commas in one --relay: the same list.
        assert_eq!(Relays::from("a.example:4433, b.example:4433"), several);
    }

    fn request<'a>(relay: &'a str, dir: &Path) -> EnrollRequest<&'a str> {
        EnrollRequest {
            relay,
            token: format!("fl1.00000000.{}.{}", "0".repeat(32), "ab".repeat(32)),
            name: "pc1".into(),
            config_path: dir.join("agent.toml"),
            state_dir: dir.to_path_buf(),
        }
    }

    #[tokio::test]
    async fn a_bad_relay_address_is_a_usage_error_before_anything_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "",
            "relay.example:0",
            "::1",
            "a.example:4433,a.example:4433",
        ] {
            let e = enroll(request(bad, dir.path())).await.err().unwrap();
            assert!(e.downcast_ref::<UsageError>().is_some(), "{bad}: {e:#}");
            assert!(e.to_string().contains("--relay"), "{e}");
        }
        assert!(!dir.path().join("agent.toml").exists());
    }

    #[tokio::test]
    async fn when_no_relay_answers_each_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("agent.toml"), "connect_timeout_ms = 200\n").unwrap();
        // Two loopback ports nobody listens on.
        let port = || {
            std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (a, b) = (
            format!("127.0.0.1:{}", port()),
            format!("127.0.0.1:{}", port()),
        );
        let e = enroll(request(&format!("{a},{b}"), dir.path()))
            .await
            .err()
            .unwrap();
        let msg = format!("{e:#}");
        assert!(msg.starts_with("none of the 2 relays answered"), "{msg}");
        for relay in [&a, &b] {
            assert!(
                msg.contains(&format!("relay {relay} did not answer within 0.2 s")),
                "{msg}"
            );
        }
        assert!(!dir.path().join("identity.pem").exists());
    }

    #[test]
    fn config_update_keeps_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(&p, "# mine\nkeep_alive_secs = 3\n").unwrap();
        write_config(&p, &"127.0.0.1:1".into(), "pc1", dir.path()).unwrap();
        let loaded = Loaded::load(&p).unwrap();
        assert_eq!(loaded.config.keep_alive_secs, 3);
        assert_eq!(loaded.config.name, "pc1");
        assert_eq!(loaded.state_dir, dir.path().join("."));
        assert!(std::fs::read_to_string(&p).unwrap().contains("# mine"));
    }
}
