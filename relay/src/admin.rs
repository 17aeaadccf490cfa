//! The admin commands that work on a relay directory without a running
//! relay: `init`, `token create|list|revoke`, `operator
//! add|list|role|revoke`, `agent list|revoke|remove`. A running `serve`
//! picks up their effects from the shared database. Each is audited, as the
//! local user who ran it, with its outcome ([`crate::audit::admin_command`]).
//!
//! The lifecycle operations themselves ([`new_token`], [`revoke_token`],
//! [`set_role`], [`remove_agent`]) work on a [`Store`] and are shared with
//! the console's requests to a running relay (`crate::requests`), so both
//! paths refuse the same things with the same words. A refusal is a
//! [`RelayError`] with the error code the console gets; offline, unknown names
//! are usage errors (exit 2) that list the valid ones.

use crate::ca::Ca;
use crate::config::{RelayConfig, RelayDir};
use crate::error::RelayError;
use crate::store::{wait, AuditEntry, PeerKind, Removed, RoleRefusal, Store};
use crate::token::Token;
use anyhow::{anyhow, bail, Context, Result};
use firstline_net::cli::UsageError;
use firstline_net::credential::{write_private, Credential};
use firstline_net::identity::valid_name;
use firstline_net::Identity;
use firstline_proto::action::QueuedAction;
use firstline_proto::message::{AgentRecord, OperatorInfo, TokenInfo};
use firstline_proto::{ErrorCode, Role};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The columns of a token list (`token list`, offline and through the
/// relay), for [`token_row`].
pub const TOKEN_COLUMNS: &[&str] = &[
    "ID",
    "STATE",
    "USES LEFT",
    "EXPIRES",
    "CREATED",
    "REVOKED",
    "TAGS",
];

/// One token as a row of [`TOKEN_COLUMNS`] (not yet escaped: the table
/// printer escapes each cell).
pub fn token_row(t: &TokenInfo) -> Vec<String> {
    let uses = match t.uses {
        Some(n) => format!("{}/{n}", t.uses_left),
        None => t.uses_left.to_string(),
    };
    let or_dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    vec![
        t.id.clone(),
        t.state.clone(),
        uses,
        t.expires_at.clone(),
        t.created_at.clone(),
        or_dash(&t.revoked_at),
        if t.tags.is_empty() {
            "-".into()
        } else {
            t.tags.join(",")
        },
    ]
}

/// Server certificates are re-issued by `init` only; 5 years.
const SERVER_CERT_TTL: Duration = Duration::from_secs(5 * 365 * 86_400);

/// Where `init` makes the relay when no `--dir` is given: the folder of
/// [`DEFAULT_CONFIG`], so every other command finds it without `--config`.
pub const DEFAULT_DIR: &str = "/etc/firstline";
/// The `--config` every command but `init` reads by default (the packages
/// install it there too).
pub const DEFAULT_CONFIG: &str = "/etc/firstline/relay.toml";

/// A refused lifecycle request, offline: a name or value that does not
/// exist is the caller's mistake (exit 2), anything else an error.
fn offline(e: RelayError) -> anyhow::Error {
    match e.code {
        ErrorCode::BadRequest | ErrorCode::UnknownAgent | ErrorCode::UnknownOperator => {
            UsageError(e.message).into()
        }
        _ => e.into(),
    }
}

/// Create a relay directory: config, CA, server certificate, database.
/// Refuses to overwrite an existing relay. `public_addr` is the listen
/// address when that is a specific one with a port (see [`init_with`]);
/// with port 0 (chosen at `serve`), it is left out.
pub fn init(dir: &Path, listen: SocketAddr, name: &str) -> Result<PathBuf> {
    let public =
        crate::config::default_public_addr(listen, None, None).filter(|_| listen.port() != 0);
    init_with(dir, listen, name, public.as_deref())
}

/// [`init`] with the `public_addr` agents and consoles dial, written into
/// relay.toml (and from there into token hints and credential files);
/// `None` leaves it out (the relay then falls back to `listen`).
pub fn init_with(
    dir: &Path,
    listen: SocketAddr,
    name: &str,
    public_addr: Option<&str>,
) -> Result<PathBuf> {
    init_shared(dir, listen, name, public_addr, &Shared::default())
}

/// Where the first relay of a deployment of several keeps its data and
/// meets the others (`init --store URL --nats URL`); both unset: a relay on
/// its own, with its SQLite file.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// `[store] url`.
    pub store: Option<String>,
    /// `[cluster] nats`.
    pub nats: Option<String>,
    /// An nkey user seed file the NATS server already admits (`--nats-nkey`);
    /// unset with `nats`: `init` makes one (unless the URL carries a
    /// credential).
    pub nats_nkey: Option<PathBuf>,
}

/// The nkey seed file of a relay folder (`[cluster] nats_nkey`).
pub const NATS_NKEY_FILE: &str = "nats.nk";
/// The nats-server `authorization` block `init` writes beside it.
pub const NATS_AUTH_FILE: &str = "nats-authorization.conf";

/// The nats-server configuration that admits the holder of `public` (an
/// nkey user public key, `U…`) — to the deployment's subjects and inboxes
/// only.
pub fn nats_authorization(public: &str) -> String {
    format!(
        "# The relays of a firstline deployment (firstline-relay init wrote this).\n\
         # Include it in nats-server.conf (`include nats-authorization.conf`) or pass it with -c.\n\
         authorization {{\n  users = [\n    {{ nkey: \"{public}\", permissions: {{ publish: [\"firstline.>\", \"_INBOX.>\"], subscribe: [\"firstline.>\", \"_INBOX.>\"] }} }}\n  ]\n}}\n"
    )
}

/// Put the deployment's NATS credential in the new folder: the seed of
/// `from`, or a new one; and the authorization block beside it.
fn write_nkey(relay_dir: &RelayDir, from: Option<&Path>) -> Result<String> {
    let seed = match from {
        Some(p) => crate::cluster::nats::read_nkey(p)?.0,
        None => nkeys::KeyPair::new_user()
            .seed()
            .map_err(|e| anyhow!("cannot make an nkey: {e}"))?,
    };
    let public = nkeys::KeyPair::from_seed(&seed)
        .map_err(|e| anyhow!("not an nkey seed: {e}"))?
        .public_key();
    write_private(
        &relay_dir.dir.join(NATS_NKEY_FILE),
        format!("{seed}\n").as_bytes(),
    )?;
    std::fs::write(
        relay_dir.dir.join(NATS_AUTH_FILE),
        nats_authorization(&public),
    )?;
    Ok(public)
}

/// [`init_with`], on a store and NATS of the caller's choosing.
pub fn init_shared(
    dir: &Path,
    listen: SocketAddr,
    name: &str,
    public_addr: Option<&str>,
    shared: &Shared,
) -> Result<PathBuf> {
    check_new(dir, name, public_addr)?;
    let mut config = RelayConfig::new(listen, name.to_string());
    config.public_addr = public_addr.map(str::to_string);
    config.relay_id = Some(crate::config::new_relay_id());
    if let Some(url) = &shared.store {
        crate::store::Location::parse(url, dir).map_err(|e| UsageError(format!("--store: {e}")))?;
        config.store.url = Some(url.clone());
    }
    if let Some(nats) = &shared.nats {
        crate::config::nats_servers(nats).map_err(|e| UsageError(format!("--nats: {e}")))?;
        config.cluster.nats = Some(nats.clone());
        if shared.nats_nkey.is_some() || !crate::config::carries_secret(nats) {
            config.cluster.nats_nkey = Some(NATS_NKEY_FILE.into());
        }
    }
    // Holds the CA key, the audit key and the database: 0700, whatever the umask.
    firstline_net::private::create_dir(dir, 0o700)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let relay_dir = RelayDir {
        config,
        dir: dir.to_path_buf(),
        config_path: dir.join("relay.toml"),
    };
    if relay_dir.config.cluster.nats_nkey.is_some() {
        write_nkey(&relay_dir, shared.nats_nkey.as_deref())?;
    }
    let (ca, ca_key) = Ca::generate(&format!("firstline relay CA ({name})"))?;
    write_private(&relay_dir.ca_key(), ca_key.as_bytes())?;
    std::fs::write(relay_dir.ca_cert(), &ca.cert_pem)?;
    let mut args = format!("--name {name} --listen {listen}");
    if let Some(p) = public_addr {
        args.push_str(&format!(" --public-addr {p}"));
    }
    if let Some(url) = &shared.store {
        args.push_str(&format!(" --store {}", crate::store::redact(url)));
    }
    if let Some(n) = &shared.nats {
        args.push_str(&format!(" --nats {}", crate::store::redact(n)));
    }
    finish_relay(&relay_dir, &ca, "init", &args)?;
    Ok(relay_dir.config_path)
}

/// What `init --join` made, for the command to report.
#[derive(Debug, Clone)]
pub struct Joined {
    pub config_path: PathBuf,
    pub relay_id: String,
    /// The relay joined: its id.
    pub with: String,
    /// Where the deployment's store is (no password).
    pub store: String,
    /// Relays share this SQLite file: only on one machine.
    pub sqlite: bool,
}

/// `init --dir DIR2 --join DIR/relay.toml`: another relay of the
/// deployment `DIR` belongs to. It gets the same CA (to sign enrollments
/// and renewals), the same store and NATS (`[store]`, `[cluster]`), the
/// same settings and deployment name, the same audit signing key and a
/// copy of the audit anchor so far; and its own id, server certificate
/// (`--name`), addresses (`--listen`, `--public-addr`) and stateless-reset
/// key.
pub fn join(
    dir: &Path,
    with: &Path,
    listen: SocketAddr,
    name: &str,
    public_addr: Option<&str>,
) -> Result<Joined> {
    if !with.is_file() {
        return Err(UsageError(format!(
            "--join {}: no such file; give the relay.toml of a relay of the deployment (a copy of its folder will do)",
            with.display()
        ))
        .into());
    }
    let other = RelayDir::load(with)?;
    if other.config.cluster.nats.is_none() {
        return Err(UsageError(format!(
            "{} has no [cluster] nats: the relays of a deployment meet over NATS; add `[cluster]` and `nats = \"nats://HOST:4222\"` at its end, restart that relay, then join again (README: \"From one relay to several\")",
            with.display()
        ))
        .into());
    }
    check_new(dir, name, public_addr)?;
    let (url, sqlite) = match other.store_location()? {
        crate::store::Location::Sqlite(path) => {
            let abs = std::path::absolute(&path)
                .with_context(|| format!("cannot resolve {}", path.display()))?;
            (format!("sqlite://{}", abs.display()), true)
        }
        crate::store::Location::Postgres(url) => (url, false),
    };
    let mut config = other.config.clone();
    config.listen = listen;
    config.name = name.to_string();
    config.public_addr = public_addr.map(str::to_string);
    config.relay_id = Some(crate::config::new_relay_id());
    config.deployment = Some(other.deployment());
    config.store.url = Some(url.clone());
    if let Some(ca) = other.nats_ca() {
        let abs = std::path::absolute(&ca).unwrap_or(ca);
        config.cluster.nats_ca = Some(abs.display().to_string());
    }
    let nkey = other.nats_nkey();
    if nkey.is_some() {
        config.cluster.nats_nkey = Some(NATS_NKEY_FILE.into());
    }
    // Holds the CA key, the audit key and the database: 0700, whatever the umask.
    firstline_net::private::create_dir(dir, 0o700)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let relay_dir = RelayDir {
        config,
        dir: dir.to_path_buf(),
        config_path: dir.join("relay.toml"),
    };
    let read =
        |p: PathBuf| std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()));
    std::fs::write(relay_dir.ca_cert(), read(other.ca_cert())?)?;
    write_private(&relay_dir.ca_key(), &read(other.ca_key())?)?;
    // One audit chain, one signing key: each relay's anchor can keep (and
    // check) every relay's checkpoints. The anchor so far comes along.
    for (from, to) in [
        (other.audit_key(), relay_dir.audit_key()),
        (other.audit_anchor(), relay_dir.audit_anchor()),
    ] {
        if from.exists() {
            write_private(&to, &read(from)?)?;
        }
    }
    // The deployment's NATS credential, copied like the audit key.
    if let Some(nkey) = &nkey {
        write_nkey(&relay_dir, Some(nkey))?;
    }
    let ca = Ca::load(&relay_dir.ca_cert(), &relay_dir.ca_key())?;
    let mut args = format!("--join {} --name {name} --listen {listen}", with.display());
    if let Some(p) = public_addr {
        args.push_str(&format!(" --public-addr {p}"));
    }
    finish_relay(&relay_dir, &ca, "init --join", &args)?;
    Ok(Joined {
        config_path: relay_dir.config_path.clone(),
        relay_id: relay_dir.relay_id(),
        with: other.relay_id(),
        store: crate::store::redact(&url),
        sqlite,
    })
}

/// `DIR` holds no relay yet, and the name and address are usable.
fn check_new(dir: &Path, name: &str, public_addr: Option<&str>) -> Result<()> {
    let config_path = dir.join("relay.toml");
    if config_path.exists() {
        bail!(
            "{} already exists: this folder already holds a relay (remove it to start over)",
            config_path.display()
        );
    }
    if !valid_name(name) {
        return Err(UsageError(format!(
            "invalid --name `{name}`: use letters, digits, `.`, `_` or `-`"
        ))
        .into());
    }
    if let Some(problem) = public_addr.and_then(crate::config::public_addr_problem) {
        return Err(UsageError(format!("--public-addr: {problem}")).into());
    }
    Ok(())
}

/// The rest of a new relay folder, its CA in place: the server certificate
/// (recorded in the store), the stateless-reset key, the audit entry of
/// `action`, and relay.toml last (0600: it may later hold webhook_secret).
fn finish_relay(relay_dir: &RelayDir, ca: &Ca, action: &str, args: &str) -> Result<()> {
    let name = relay_dir.config.name.clone();
    let (server, server_key) = ca.issue_server(&name, SERVER_CERT_TTL)?;
    write_private(&relay_dir.server_key(), server_key.as_bytes())?;
    std::fs::write(relay_dir.server_cert(), &server.cert_pem)?;
    relay_dir.load_reset_secret()?;
    let kb = relay_dir.kb_dir();
    crate::kb::install_shipped(&kb)
        .with_context(|| format!("cannot write the knowledge base into {}", kb.display()))?;
    let store = relay_dir.open_store()?;
    wait(store.record_cert(&server.serial, PeerKind::Relay, &name, server.not_after))?;
    let mut paths = relay_dir.audit_paths();
    if action == "init" {
        // The first relay of a deployment: no other relay to tell.
        paths.cluster = None;
    }
    crate::audit::admin_command(&store, &paths, action, None, args, Ok("ok".into()));
    let unset = if relay_dir.config.public_addr.is_none() {
        "# public_addr = \"HOST:PORT\"   # set it: the address agents and consoles dial\n"
    } else {
        ""
    };
    let text = format!(
        "# firstline relay configuration (see `firstline-relay --help`).\n\
         # Paths (CA, certificates, relay.db) are relative to this file's folder.\n\
         # public_addr goes into enrollment hints and operators' credential files.\n{unset}{}",
        toml::to_string(&relay_dir.config)?
    );
    write_private(&relay_dir.config_path, text.as_bytes())?;
    Ok(())
}

/// Open the store, run `f`, audit it as the local admin (`outcome` words
/// the success), and turn a refusal of a name that does not exist into a
/// usage error.
fn audited<T>(
    dir: &RelayDir,
    action: &str,
    agent: Option<&str>,
    args: &str,
    f: impl FnOnce(&Store) -> Result<T, RelayError>,
    outcome: impl FnOnce(&T) -> String,
) -> Result<T> {
    let store = dir.open_store()?;
    let done = f(&store).map_err(offline);
    let paths = dir.audit_paths();
    crate::audit::admin_command(
        &store,
        &paths,
        action,
        agent,
        args,
        done.as_ref().map(outcome),
    );
    done
}

/// Create an enrollment token; prints nothing, returns the token text.
/// Audited with the token's id, never its secret.
pub fn token_create(dir: &RelayDir, uses: u32, ttl: Option<Duration>) -> Result<(String, i64)> {
    token_create_tagged(dir, uses, ttl, &[])
}

/// [`token_create`] of a token whose agents start with `tags`.
pub fn token_create_tagged(
    dir: &RelayDir,
    uses: u32,
    ttl: Option<Duration>,
    tags: &[String],
) -> Result<(String, i64)> {
    let ttl = ttl.unwrap_or(Duration::from_secs(dir.config.token_ttl_secs));
    let store = dir.open_store()?;
    let created = (|| -> Result<(Token, i64)> {
        let ca = Ca::load(&dir.ca_cert(), &dir.ca_key())?;
        wait(new_token(&store, &ca, uses, ttl, tags)).map_err(offline)
    })();
    let id = created.as_ref().map_or("-", |(t, _)| t.id.as_str());
    let outcome = created
        .as_ref()
        .map(|(_, expires)| format!("ok: valid until {}", crate::clock::rfc3339(*expires)));
    crate::audit::admin_command(
        &store,
        &dir.audit_paths(),
        "token create",
        None,
        &token_args(id, uses, ttl, tags),
        outcome,
    );
    let (token, expires) = created?;
    Ok((token.to_string(), expires))
}

/// What the audit log says of a `token create`: the id, never the secret.
pub fn token_args(id: &str, uses: u32, ttl: Duration, tags: &[String]) -> String {
    format!(
        "id {id} --uses {uses} --ttl {}{}",
        humantime::format_duration(ttl),
        tag_flags(tags)
    )
}

/// ` --tag A --tag B` (nothing without tags), for audit lines.
pub fn tag_flags(tags: &[String]) -> String {
    tags.iter().map(|t| format!(" --tag {t}")).collect()
}

/// A new token of `ca` for `uses` enrollments within `ttl`, stored hashed,
/// its agents to start with `tags` (kept with the token's id in the store,
/// not in the token).
pub async fn new_token(
    store: &Store,
    ca: &Ca,
    uses: u32,
    ttl: Duration,
    tags: &[String],
) -> Result<(Token, i64), RelayError> {
    if uses == 0 {
        return Err(RelayError::bad_request("--uses must be at least 1"));
    }
    if ttl.is_zero() {
        return Err(RelayError::bad_request("--ttl must be more than 0s"));
    }
    let tags = crate::store::fleet::tidy_tags(tags)
        .map_err(|e| RelayError::bad_request(format!("--tag: {e}")))?;
    let token = Token::generate(&ca.fingerprint().map_err(RelayError::internal)?);
    let expires = store
        .add_token_tagged(&token.id, &token.secret_sha256(), uses, ttl, tags)
        .await?;
    Ok((token, expires))
}

/// Add and remove an agent's tags ([`crate::store::fleet::tag`]): its tags
/// after. An unknown agent's refusal lists the enrolled ones.
pub async fn tag_agent(
    store: &Store,
    name: &str,
    add: Vec<String>,
    remove: Vec<String>,
) -> Result<Vec<String>, RelayError> {
    if add.is_empty() && remove.is_empty() {
        return Err(RelayError::bad_request(
            "nothing to change: give +TAG to add a tag, -TAG to remove one",
        ));
    }
    match store.tag_agent(name, add, remove).await {
        Ok(tags) => Ok(tags),
        Err(crate::store::StoreError::NotFound(crate::store::Missing::Agent(_))) => {
            Err(RelayError::new(
                ErrorCode::UnknownAgent,
                unknown_agent_text(name, &store.agent_names(AGENTS_NAMED).await?),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// `NAME +A -B`, as `agent tag` is audited.
pub fn tag_args(name: &str, add: &[String], remove: &[String]) -> String {
    let mut args = name.to_string();
    for t in add {
        args.push_str(&format!(" +{t}"));
    }
    for t in remove {
        args.push_str(&format!(" -{t}"));
    }
    args
}

/// The audit outcome of `agent tag`: the tags after.
pub fn tags_outcome(tags: &[String]) -> String {
    if tags.is_empty() {
        "ok: no tags".into()
    } else {
        format!("ok: tags {}", tags.join(","))
    }
}

/// `token list`: every enrollment token, never a secret.
pub fn token_list(dir: &RelayDir) -> Result<Vec<TokenInfo>> {
    let list = |s: &Store| Ok(wait(s.tokens())?);
    audited(dir, "token list", None, "", list, |t| {
        format!("ok: {} tokens", t.len())
    })
}

/// `token revoke ID`: the token can no longer enroll anything.
pub fn token_revoke(dir: &RelayDir, id: &str) -> Result<(TokenInfo, bool)> {
    audited(
        dir,
        "token revoke",
        None,
        id,
        |s| wait(revoke_token(s, id)),
        revoke_outcome,
    )
}

/// The audit outcome of a token revocation.
pub fn revoke_outcome((_, newly): &(TokenInfo, bool)) -> String {
    if *newly {
        "ok: revoked".into()
    } else {
        "ok: already revoked".into()
    }
}

/// Revoke token `id` (the id is the second part of `fl1.ID.SECRET.FP`, as
/// `token list` shows it).
pub async fn revoke_token(store: &Store, id: &str) -> Result<(TokenInfo, bool), RelayError> {
    match store.revoke_token(id).await? {
        Some(done) => Ok(done),
        None => {
            let live: Vec<String> = store
                .tokens()
                .await?
                .into_iter()
                .filter(|t| t.state == "active")
                .map(|t| t.id)
                .collect();
            Err(RelayError::bad_request(format!(
                "no enrollment token `{id}` at this relay ({}); the id is the part after `fl1.`",
                names_list("active tokens", &live)
            )))
        }
    }
}

/// Add an operator and write its credential file.
pub fn operator_add(dir: &RelayDir, name: &str, role: Role, out: &Path) -> Result<()> {
    let store = dir.open_store()?;
    let added = add_operator(dir, &store, name, role, out);
    let outcome = added
        .as_ref()
        .map(|()| format!("ok: credential written to {}", out.display()));
    let args = format!("{name} --role {role}");
    let paths = dir.audit_paths();
    crate::audit::admin_command(&store, &paths, "operator add", None, &args, outcome);
    added
}

fn add_operator(dir: &RelayDir, store: &Store, name: &str, role: Role, out: &Path) -> Result<()> {
    if !valid_name(name) {
        return Err(UsageError(format!(
            "invalid operator name `{name}`: use 1-64 letters, digits, `.`, `_` or `-`"
        ))
        .into());
    }
    // A credential that points at 0.0.0.0 reaches nothing: ask for the
    // address first, before anything is recorded.
    let Some(relay) = dir.config.dialable_public_addr() else {
        return Err(no_public_addr(dir).into());
    };
    if !wait(store.add_operator(name, role))? {
        bail!("an operator named `{name}` already exists (revoked names stay taken)");
    }
    let ca = Ca::load(&dir.ca_cert(), &dir.ca_key())?;
    let identity = Identity::Operator {
        name: name.to_string(),
        role,
    };
    let ttl = Duration::from_secs(dir.config.operator_cert_ttl_secs);
    let (issued, key) = ca.issue_operator(&identity, ttl)?;
    wait(store.record_cert(&issued.serial, PeerKind::Operator, name, issued.not_after))?;
    let credential = Credential {
        relay,
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

/// relay.toml has no `public_addr` and listens on a wildcard address: a
/// configuration error at the `listen` line.
pub fn no_public_addr(dir: &RelayDir) -> firstline_net::config::ConfigError {
    let text = std::fs::read_to_string(&dir.config_path).unwrap_or_default();
    firstline_net::config::invalid_key(
        &dir.config_path.display().to_string(),
        &text,
        "listen",
        format!(
            "listen = \"{}\" is not an address anyone can dial: set public_addr = \"HOST:PORT\" (the address agents and consoles dial)",
            dir.config.listen
        ),
    )
}

/// `operator list`.
pub fn operator_list(dir: &RelayDir) -> Result<Vec<OperatorInfo>> {
    audited(
        dir,
        "operator list",
        None,
        "",
        |s| Ok(wait(s.operators())?),
        |o| format!("ok: {} operators", o.len()),
    )
}

/// `operator role NAME ROLE`: the operator after, and the role before.
pub fn operator_role(dir: &RelayDir, name: &str, role: Role) -> Result<(OperatorInfo, Role)> {
    let args = format!("{name} {role}");
    audited(
        dir,
        "operator role",
        None,
        &args,
        |s| wait(set_role(s, name, role, &crate::audit::local_admin())),
        role_outcome,
    )
}

/// The audit outcome of a role change: `ok: technician → viewer`.
pub fn role_outcome((op, before): &(OperatorInfo, Role)) -> String {
    format!("ok: {before} → {}", op.role)
}

/// Change a live operator's role. The relay authorizes every request with
/// the role in its database, so the change holds from the operator's next
/// request on — their certificate (which names the role it was issued
/// with) stays valid and identifies them.
///
/// `by` (who changes it) is named in the reason recorded with the central
/// monitor sets this suspends: an operator no longer an admin no longer
/// keeps the sets they set running ([`crate::store::monitors`]).
pub async fn set_role(
    store: &Store,
    name: &str,
    role: Role,
    by: &str,
) -> Result<(OperatorInfo, Role), RelayError> {
    match store.set_operator_role(name, role, by).await? {
        Ok(done) => Ok(done),
        Err(RoleRefusal::Unknown) => Err(RelayError::new(
            ErrorCode::UnknownOperator,
            unknown_operator_text(name, &store.operators().await?),
        )),
        Err(RoleRefusal::Revoked) => Err(RelayError::new(
            ErrorCode::Conflict,
            format!("operator `{name}` is revoked: add a new operator instead"),
        )),
    }
}

/// `no operator named `x` (operators: a, b)`: the live ones of `operators`.
pub fn unknown_operator_text(name: &str, operators: &[OperatorInfo]) -> String {
    let live: Vec<String> = operators
        .iter()
        .filter(|o| o.revoked_at.is_none())
        .map(|o| o.name.clone())
        .collect();
    format!(
        "no operator named `{name}` at this relay ({})",
        names_list("operators", &live)
    )
}

/// `no agent named `x` is enrolled at this relay (agents: a, b)`.
/// Agents an unknown-agent message names: the first [`SHOWN`], and one
/// more to tell that there are more (read from the store; never the whole
/// fleet for one mistyped name).
pub const AGENTS_NAMED: u32 = SHOWN as u32 + 1;

/// Names a message lists.
const SHOWN: usize = 20;

/// `agents`: the first [`AGENTS_NAMED`] agents by name.
pub fn unknown_agent_text(name: &str, agents: &[String]) -> String {
    let list = match agents.get(..SHOWN) {
        Some(first) if agents.len() > SHOWN => format!(
            "agents: {} and more (`firstline agents` lists them all)",
            first.join(", ")
        ),
        _ => names_list("agents", agents),
    };
    format!("no agent named `{name}` is enrolled at this relay ({list})")
}

/// `KIND: a, b, c` (the first 20, then how many more), or `no KIND yet`.
pub fn names_list(kind: &str, names: &[String]) -> String {
    if names.is_empty() {
        return format!("no {kind} yet");
    }
    let mut list = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        list.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    format!("{kind}: {list}")
}

/// `agent list`: every agent's enrollment record.
pub fn agent_list(dir: &RelayDir) -> Result<Vec<AgentRecord>> {
    audited(
        dir,
        "agent list",
        None,
        "",
        |s| Ok(wait(s.agent_records())?),
        |a| format!("ok: {} agents", a.len()),
    )
}

/// `agent remove NAME` (see [`crate::store::identity::remove_agent`] for
/// what it does to the name).
///
/// The actions queued for it are cancelled, each audited as `relay`
/// naming who removed it ([`cancelled_entries`]).
pub fn agent_remove(dir: &RelayDir, name: &str) -> Result<Removed> {
    let by = crate::audit::local_admin();
    audited(
        dir,
        "agent remove",
        Some(name),
        name,
        |s| {
            let removed = wait(remove_agent(s, name, &by))?;
            let why = format!("agent `{name}` was removed by {by}");
            record_offline(s, dir, cancelled_entries(&removed.cancelled, &why));
            Ok(removed)
        },
        remove_outcome,
    )
}

/// Remove an agent on `by`'s word (see
/// [`crate::store::identity::remove_agent`]).
pub async fn remove_agent(store: &Store, name: &str, by: &str) -> Result<Removed, RelayError> {
    match store.remove_agent(name, by).await? {
        Some(removed) => Ok(removed),
        None => Err(RelayError::new(
            ErrorCode::UnknownAgent,
            unknown_agent_text(name, &store.agent_names(AGENTS_NAMED).await?),
        )),
    }
}

/// The audit outcome (and the CLI's report) of a removal.
pub fn remove_outcome(r: &Removed) -> String {
    let name = if r.name_freed {
        "the name may enroll again"
    } else {
        "the name stays revoked"
    };
    format!(
        "ok: removed; {name}; {} tickets kept{}",
        r.tickets,
        cancelled_text(&r.cancelled)
    )
}

/// `; 2 queued actions cancelled (#4, #5)`, or nothing.
fn cancelled_text(cancelled: &[QueuedAction]) -> String {
    if cancelled.is_empty() {
        return String::new();
    }
    let ids: Vec<String> = cancelled.iter().map(|q| format!("#{}", q.id)).collect();
    format!(
        "; {} queued actions cancelled ({})",
        cancelled.len(),
        ids.join(", ")
    )
}

/// The audit entries of queued actions cancelled because their agent was
/// removed or revoked (`why`, naming who did it): one each, by `relay`,
/// naming the operator who queued it.
pub fn cancelled_entries(cancelled: &[QueuedAction], why: &str) -> Vec<AuditEntry> {
    cancelled
        .iter()
        .map(|q| AuditEntry {
            who: "relay".into(),
            role: None,
            agent: Some(q.agent.clone()),
            action: format!("cancel queued {}", q.action.describe()),
            args: format!("#{} (queued by {})", q.id, q.operator),
            outcome: format!("cancelled: {why}"),
        })
        .collect()
}

/// Write `entries` to the audit log from an offline command (a failure
/// is a warning: what they record has happened).
fn record_offline(store: &Store, dir: &RelayDir, entries: Vec<AuditEntry>) {
    let paths = dir.audit_paths();
    for entry in entries {
        let action = entry.action.clone();
        if let Err(e) = crate::audit::record_blocking(store, &paths, entry) {
            eprintln!("warning: `{action}` was not audited: {e:#}");
        }
    }
}

/// Revoke an agent or an operator for good.
///
/// What was stored on its authority goes with it: an agent's queued
/// actions are cancelled (each audited as `relay`), an operator's central
/// monitor sets suspended (named in the outcome).
pub fn revoke(dir: &RelayDir, kind: PeerKind, name: &str) -> Result<crate::store::Revoked> {
    let store = dir.open_store()?;
    let by = crate::audit::local_admin();
    let revoked = match wait(store.revoke(kind, name, &by)) {
        Ok(r) if r.exists => Ok(r),
        Ok(_) => Err(anyhow::anyhow!(match kind {
            PeerKind::Agent => unknown_agent_text(name, &wait(store.agent_names(AGENTS_NAMED))?),
            _ => unknown_operator_text(name, &wait(store.operators())?),
        })),
        Err(e) => Err(e.into()),
    };
    if let Ok(r) = &revoked {
        let why = format!("agent `{name}` was revoked by {by}");
        record_offline(&store, dir, cancelled_entries(&r.cancelled, &why));
    }
    let agent = (kind == PeerKind::Agent).then_some(name);
    let outcome = revoked.as_ref().map(|r| {
        let mut text = format!("ok{}", cancelled_text(&r.cancelled));
        if !r.suspended.is_empty() {
            text.push_str(&format!(
                "; monitor sets suspended: {}",
                r.suspended.join(", ")
            ));
        }
        text
    });
    let (paths, action) = (dir.audit_paths(), format!("{kind} revoke"));
    crate::audit::admin_command(&store, &paths, &action, agent, name, outcome);
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
    if let Ok(store) = dir.open_store() {
        let args = format!(
            "--prefix {prefix} -n {n} --ttl {}",
            humantime::format_duration(ttl)
        );
        let outcome = enrolled
            .as_ref()
            .map(|a| format!("ok: {} agents enrolled", a.len()));
        let paths = dir.audit_paths();
        crate::audit::admin_command(&store, &paths, "agent bulk-enroll", None, &args, outcome);
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
    let store = dir.open_store()?;
    let records = issued
        .iter()
        .map(|(name, _, serial, not_after)| (name.clone(), serial.clone(), *not_after))
        .collect();
    wait(store.bulk_enroll(records))?;
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
    fn an_unknown_agent_is_told_with_a_bounded_read_of_names() {
        let tmp = tempfile::tempdir().unwrap();
        let config = init(tmp.path(), "127.0.0.1:0".parse().unwrap(), "relay").unwrap();
        let dir = RelayDir::load(&config).unwrap();
        let store = dir.open_store().unwrap();
        let made = bulk_agents(&dir, "pc", 30, Duration::from_secs(3600)).unwrap();
        assert_eq!(made.len(), 30);
        let names = wait(store.agent_names(AGENTS_NAMED)).unwrap();
        assert_eq!(
            names.len(),
            AGENTS_NAMED as usize,
            "read no more than it names"
        );
        let text = unknown_agent_text("pcx", &names);
        assert!(text.contains("and more (`firstline agents`"), "{text}");
        assert_eq!(text.matches(", ").count(), SHOWN - 1, "{text}");
        let few = unknown_agent_text("pcx", &names[..3]);
        assert!(few.ends_with("(agents: pc1, pc10, pc11)"), "{few}");
    }

    #[test]
    fn bulk_agents_are_enrolled_and_their_certs_recorded() {
        let tmp = tempfile::tempdir().unwrap();
        let config = init(tmp.path(), "127.0.0.1:0".parse().unwrap(), "relay").unwrap();
        let dir = RelayDir::load(&config).unwrap();
        let agents = bulk_agents(&dir, "sim-", 5, Duration::from_secs(3600)).unwrap();
        assert_eq!(agents.len(), 5);
        let store = dir.open_store().unwrap();
        assert_eq!(wait(store.agents()).unwrap().len(), 5);
        for (name, pem) in &agents {
            let der = firstline_net::pem::certs(pem).unwrap();
            let info = firstline_net::identity::cert_info(&der[0]).unwrap();
            assert_eq!(info.identity, Some(Identity::Agent { name: name.clone() }));
            assert_eq!(
                wait(store.cert_status(&info.serial, PeerKind::Agent, name)).unwrap(),
                CertStatus::Valid
            );
            assert!(firstline_net::pem::key(pem).is_ok());
        }
        // A taken name fails the whole batch and records nothing more.
        assert!(bulk_agents(&dir, "sim-", 6, Duration::from_secs(3600)).is_err());
        assert_eq!(wait(store.agents()).unwrap().len(), 5);
    }
}
