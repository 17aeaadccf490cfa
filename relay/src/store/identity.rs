//! Who may connect, written once on the storage primitives: enrollment
//! tokens (spent with one conditional update, so two enrollments racing for
//! the last use — on one relay or two — cannot both get it), enrollment and
//! renewal, the certificate check of every connection, revocation of an
//! identity, agents' removal and operators' roles.

use super::error::StoreResult;
use super::tx::{PeerKind, TokenRow, Tx};
use crate::clock::rfc3339;
use firstline_proto::action::QueuedAction;
use firstline_proto::message::{AgentRecord, OperatorInfo, TokenInfo};
use firstline_proto::Role;

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("unknown enrollment token (not issued by this relay, or mistyped)")]
    Unknown,
    #[error("enrollment token expired; create a new one with `firstline-relay token create`")]
    Expired,
    #[error(
        "enrollment token already used up; create a new one with `firstline-relay token create`"
    )]
    Used,
    #[error("enrollment token revoked by the relay admin; ask for a new one")]
    Revoked,
}

/// Why an enrollment or a renewal was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollRefusal {
    #[error("{0}")]
    Token(TokenError),
    #[error("an agent named `{0}` is already enrolled (names are one whatever their case); pick another --name, or remove the old one first (`firstline-relay agent remove {0}`)")]
    NameTaken(String),
    #[error("the agent named `{0}` was revoked (names are one whatever their case); enroll under a new --name")]
    Revoked(String),
    #[error("no agent named `{0}` is enrolled at this relay")]
    Unknown(String),
}

/// Status of a certificate serial as the relay recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    Unknown,
    Revoked,
    Valid,
}

/// Why a role change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleRefusal {
    Unknown,
    Revoked,
}

/// What removing an agent did.
#[derive(Debug, Clone, PartialEq)]
pub struct Removed {
    /// The record as it was.
    pub agent: AgentRecord,
    /// The name may enroll again (it was not revoked).
    pub name_freed: bool,
    /// Its tickets, kept.
    pub tickets: u64,
    /// The actions that were queued for it, cancelled.
    pub cancelled: Vec<QueuedAction>,
}

/// What revoking an identity did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Revoked {
    /// There is such an identity (revoked now, or before).
    pub exists: bool,
    /// An agent's: the actions that were queued for it, cancelled.
    pub cancelled: Vec<QueuedAction>,
    /// An operator's: the central monitor sets they set, suspended.
    pub suspended: Vec<String>,
}

/// A new enrollment id: 128 random bits, never one an agent had before.
pub fn new_enrollment() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// A certificate signed for an enrollment or a renewal: what to give the
/// caller, and the serial and expiry to record.
pub struct Signed<T> {
    pub out: T,
    pub serial: String,
    pub not_after: i64,
}

/// A token as `token list` shows it at `now`.
pub fn token_info(t: &TokenRow, now: i64) -> TokenInfo {
    let state = if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at <= now {
        "expired"
    } else if t.uses_left <= 0 {
        "used"
    } else {
        "active"
    };
    TokenInfo {
        id: t.id.clone(),
        state: state.into(),
        uses: t.uses.map(|n| n.clamp(0, u32::MAX.into()) as u32),
        uses_left: t.uses_left.clamp(0, u32::MAX.into()) as u32,
        created_at: rfc3339(t.created_at),
        expires_at: rfc3339(t.expires_at),
        revoked_at: t.revoked_at.map(rfc3339),
        tags: Vec::new(),
    }
}

/// [`token_info`] with the token's tags.
pub fn token_info_tagged(tx: &mut dyn Tx, t: &TokenRow, now: i64) -> StoreResult<TokenInfo> {
    let mut info = token_info(t, now);
    info.tags = tx.token_tags(&t.id)?;
    Ok(info)
}

/// Why token `id` with secret hash `secret` cannot enroll at `now`, if it
/// cannot. Only the holder of the secret learns more than "unknown".
fn token_refusal(t: Option<&TokenRow>, secret: &str, now: i64) -> Option<TokenError> {
    match t {
        None => Some(TokenError::Unknown),
        Some(t) if !constant_time_eq(&t.secret_sha256, secret) => Some(TokenError::Unknown),
        Some(t) if t.revoked_at.is_some() => Some(TokenError::Revoked),
        Some(t) if t.expires_at <= now => Some(TokenError::Expired),
        Some(t) if t.uses_left <= 0 => Some(TokenError::Used),
        Some(_) => None,
    }
}

/// Enroll an agent: check the token, check the name is free, spend one use
/// of the token, sign, record agent and certificate, and give the agent the
/// token's tags.
pub fn enroll<T>(
    tx: &mut dyn Tx,
    token_id: &str,
    secret_sha256: &str,
    name: &str,
    now: i64,
    sign: &mut dyn FnMut() -> anyhow::Result<Signed<T>>,
) -> StoreResult<Result<T, EnrollRefusal>> {
    let token = tx.token(token_id)?;
    if let Some(e) = token_refusal(token.as_ref(), secret_sha256, now) {
        return Ok(Err(EnrollRefusal::Token(e)));
    }
    if let Some(refusal) = name_refusal(tx, name)? {
        return Ok(Err(refusal));
    }
    if !tx.spend_token(token_id, now)? {
        // Another enrollment took the last use (or a revocation came)
        // between the read and the update: say which.
        let token = tx.token(token_id)?;
        let e = token_refusal(token.as_ref(), secret_sha256, now).unwrap_or(TokenError::Used);
        return Ok(Err(EnrollRefusal::Token(e)));
    }
    if !tx.insert_agent(name, &new_enrollment(), now)? {
        // Another relay enrolled this name since `name_refusal` looked
        // (PostgreSQL; SQLite's writers run one at a time): refusing now
        // would commit the token's use. Roll back and run again: the name
        // is then refused before anything is spent.
        return Err(super::StoreError::Retry(format!(
            "agent name `{name}` taken by a concurrent enrollment"
        )));
    }
    let tags = tx.token_tags(token_id)?;
    tx.add_agent_tags(name, &tags)?;
    let signed = sign().map_err(|e| super::StoreError::Invalid(format!("{e:#}")))?;
    tx.insert_cert(&signed.serial, PeerKind::Agent, name, signed.not_after, now)?;
    Ok(Ok(signed.out))
}

/// Why `name` cannot enroll: it is taken, or revoked, in any case of its
/// letters — `PC-A` is `pc-a`, which cannot then be told apart in lists,
/// selections and a technician's commands.
fn name_refusal(tx: &mut dyn Tx, name: &str) -> StoreResult<Option<EnrollRefusal>> {
    Ok(match tx.agent_state_any_case(name)? {
        Some((held, s)) if s.revoked_at.is_some() => Some(EnrollRefusal::Revoked(held)),
        Some((held, _)) => Some(EnrollRefusal::NameTaken(held)),
        None => None,
    })
}

/// Renew an agent's certificate: check the agent is enrolled and not
/// revoked, sign, record — in one transaction, so a revocation either comes
/// first (and the renewal is refused) or after (and revokes the new
/// certificate too).
pub fn renew<T>(
    tx: &mut dyn Tx,
    name: &str,
    now: i64,
    sign: &mut dyn FnMut() -> anyhow::Result<Signed<T>>,
) -> StoreResult<Result<T, EnrollRefusal>> {
    match tx.agent_state(name)? {
        None => return Ok(Err(EnrollRefusal::Unknown(name.into()))),
        Some(s) if s.revoked_at.is_some() => return Ok(Err(EnrollRefusal::Revoked(name.into()))),
        Some(s) if s.removed_at.is_some() => return Ok(Err(EnrollRefusal::Unknown(name.into()))),
        Some(_) => {}
    }
    let signed = sign().map_err(|e| super::StoreError::Invalid(format!("{e:#}")))?;
    tx.insert_cert(&signed.serial, PeerKind::Agent, name, signed.not_after, now)?;
    Ok(Ok(signed.out))
}

/// Whether certificate `serial` may log in as `kind` `name`: on record for
/// that very identity, and neither the certificate nor the identity
/// revoked. Revocation is of the identity: a certificate issued for a name
/// after that name was revoked — by any path — is refused too.
pub fn cert_status(
    tx: &mut dyn Tx,
    serial: &str,
    kind: PeerKind,
    name: &str,
) -> StoreResult<CertStatus> {
    let Some(c) = tx.cert(serial)? else {
        return Ok(CertStatus::Unknown);
    };
    Ok(if c.kind != kind.as_str() || c.name != name {
        CertStatus::Unknown
    } else if c.revoked_at.is_some() {
        // A revoked certificate says so, even once its identity is gone
        // (`agent remove`): the peer stops instead of retrying.
        CertStatus::Revoked
    } else {
        match c.identity {
            None => CertStatus::Unknown,
            Some(Some(_)) => CertStatus::Revoked,
            Some(None) => CertStatus::Valid,
        }
    })
}

/// Revoke an agent or operator and every certificate of it, and record the
/// revocation so running relays cut it off. False when there is no such
/// identity.
///
/// What was stored on its authority goes with it: an agent's queued
/// actions are cancelled, an operator's central monitor sets suspended
/// (`by` names who revoked, for the reasons recorded).
pub fn revoke(
    tx: &mut dyn Tx,
    kind: PeerKind,
    name: &str,
    by: &str,
    now: i64,
) -> StoreResult<Revoked> {
    let newly = tx.revoke_identity(kind, name, now)?;
    let exists = tx.identity_exists(kind, name)?;
    tx.revoke_certs(kind, name, now)?;
    if newly {
        tx.insert_revocation(kind, name, now)?;
    }
    let mut done = Revoked {
        exists,
        ..Revoked::default()
    };
    match kind {
        PeerKind::Agent => {
            let why = format!("cancelled: agent `{name}` was revoked by {by}");
            done.cancelled = super::queue::cancel_for(tx, name, &why, now)?;
        }
        PeerKind::Operator => {
            let why = format!(
                "its author `{name}` was revoked by {by} at {}: an admin must set it again",
                rfc3339(now)
            );
            done.suspended = tx.suspend_monitor_sets(name, &why)?;
        }
        PeerKind::Relay => {}
    }
    Ok(done)
}

/// Remove an agent's record; `None` when there is no such agent (or it
/// was removed already). Its tickets are kept.
///
/// * A live agent's record is deleted, its certificates are revoked and
///   its connection cut (through `revocations`): the name is free, and the
///   machine — reinstalled, say — may enroll under it again with a new
///   token, starting a fresh event sequence. Its old certificates stay
///   refused.
/// * A revoked agent's record stays, marked removed: it is no longer
///   listed, and the name stays revoked — revocation is of the identity.
///
/// Either way, the actions queued for it are cancelled: they were queued
/// for this enrollment, never for a machine that enrolls under the name
/// later (`by` names who removed it, in their outcome).
pub fn remove_agent(
    tx: &mut dyn Tx,
    name: &str,
    by: &str,
    now: i64,
) -> StoreResult<Option<Removed>> {
    let Some(agent) = tx.agent_record(name)? else {
        return Ok(None);
    };
    let why = format!("cancelled: agent `{name}` was removed by {by}");
    let cancelled = super::queue::cancel_for(tx, name, &why, now)?;
    let name_freed = agent.revoked_at.is_none();
    if name_freed {
        tx.delete_agent(name)?;
        tx.revoke_certs(PeerKind::Agent, name, now)?;
        tx.insert_revocation(PeerKind::Agent, name, now)?;
    } else {
        tx.mark_agent_removed(name, now)?;
    }
    tx.delete_monitor_status(name)?;
    let tickets = tx.count_tickets(name)?;
    Ok(Some(Removed {
        agent,
        name_freed,
        tickets,
        cancelled,
    }))
}

/// Change a live operator's role: the operator after and the role before.
///
/// An operator no longer an admin no longer has the authority of the
/// central monitor sets they set (admins only): those are suspended (`by`
/// names who demoted them, in the reason recorded).
pub fn set_role(
    tx: &mut dyn Tx,
    name: &str,
    role: Role,
    by: &str,
    now: i64,
) -> StoreResult<Result<(OperatorInfo, Role), RoleRefusal>> {
    let before = match tx.operator(name)? {
        None => return Ok(Err(RoleRefusal::Unknown)),
        Some(op) if op.revoked_at.is_some() => return Ok(Err(RoleRefusal::Revoked)),
        Some(op) => op.role,
    };
    tx.set_operator_role(name, role)?;
    if role < super::monitors::SETTER_ROLE {
        let why = format!(
            "its author `{name}` was made a {role} by {by} at {}: an admin must set it again",
            rfc3339(now)
        );
        tx.suspend_monitor_sets(name, &why)?;
    }
    let after = tx
        .operator(name)?
        .ok_or_else(|| super::StoreError::Backend(format!("operator {name} vanished")))?;
    Ok(Ok((after, before)))
}

/// Record many agents and their certificates at once (all or nothing: a
/// name already taken fails the whole batch).
pub fn bulk_enroll(tx: &mut dyn Tx, agents: &[(String, String, i64)], now: i64) -> StoreResult<()> {
    for (name, serial, not_after) in agents {
        if !tx.insert_agent(name, &new_enrollment(), now)? {
            return Err(super::StoreError::Conflict(format!(
                "cannot record agent {name} (already enrolled?)"
            )));
        }
        tx.insert_cert(serial, PeerKind::Agent, name, *not_after, now)?;
    }
    Ok(())
}

/// Compare two hex digests without an early exit on the first difference.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
