//! One runbook run, for any caller — the relay's request
//! ([`crate::requests`]), the local `firstline-agent runbook` command, and
//! the end user's self-service: the runbook found, its parameters bound, the
//! agent's policy and the requester's role checked, then the tree walked
//! with progress, results and the verdict sent as messages.

use super::engine::{self, Env};
use super::Runbook;
use crate::checks::Progress;
use crate::config::Loaded;
use crate::policy::Policy;
use firstline_proto::runbook::Verdict;
use firstline_proto::{ErrorCode, Message, Role};
use std::collections::BTreeMap;
use tokio::sync::mpsc;

/// A runbook ready to run.
pub struct Prepared {
    pub runbook: Runbook,
    pub vars: BTreeMap<String, String>,
    /// The policy its steps run under: the agent's, or for self-service
    /// its narrower [`crate::policy::Policy::self_service`].
    pub policy: Policy,
}

/// Find `name`, bind `params`, and check that this agent runs runbooks and
/// that `role` may do everything the runbook could do (role by effect:
/// every step, its placeholders filled with these parameters).
pub fn prepare(
    cfg: &Loaded,
    name: &str,
    params: &[String],
    role: Role,
) -> Result<Prepared, (ErrorCode, String)> {
    cfg.config
        .policy
        .allows_runbooks()
        .map_err(|why| (ErrorCode::Refused, why))?;
    let (books, _) = cfg.runbooks();
    let Some(runbook) = books.into_iter().find(|b| b.name == name) else {
        let names: Vec<String> = cfg.runbooks().0.into_iter().map(|b| b.name).collect();
        return Err((
            ErrorCode::BadRequest,
            format!(
                "no runbook `{name}` on this agent (it has: {})",
                names.join(", ")
            ),
        ));
    };
    let vars = engine::bind(&runbook, params).map_err(|e| (ErrorCode::BadRequest, e))?;
    let (needed, step) = engine::required_role(&runbook, &vars);
    if role < needed {
        return Err((
            ErrorCode::Forbidden,
            format!(
                "a {role} may not run the runbook `{name}` here (its step `{step}` needs the role {needed} or above)"
            ),
        ));
    }
    let policy = cfg.config.policy.clone();
    Ok(Prepared {
        runbook,
        vars,
        policy,
    })
}

/// `firstline-help run NAME`: the self-service runbook `name` with its
/// defaults, for the person at the machine — the viewer role plus the
/// policy's self-service fixes, never more. Any other runbook is refused
/// as unknown (the person sees only what is offered to them).
pub fn prepare_self_service(cfg: &Loaded, name: &str) -> Result<Prepared, (ErrorCode, String)> {
    cfg.config
        .policy
        .allows_runbooks()
        .map_err(|why| (ErrorCode::Refused, why))?;
    let offered: Vec<Runbook> = cfg
        .runbooks()
        .0
        .into_iter()
        .filter(|b| b.self_service)
        .collect();
    let Some(runbook) = offered.iter().find(|b| b.name == name).cloned() else {
        let names: Vec<&str> = offered.iter().map(|b| b.name.as_str()).collect();
        return Err((
            ErrorCode::Refused,
            format!(
                "`{name}` is not offered for self-service on this computer (offered: {}); `firstline-help ask` reaches a technician",
                if names.is_empty() { "none".into() } else { names.join(", ") }
            ),
        ));
    };
    let vars = engine::bind(&runbook, &[]).map_err(|e| (ErrorCode::BadRequest, e))?;
    let policy = cfg.config.policy.self_service();
    // Again with the values it runs with (`runbooks()` checked the defaults).
    if let Some((_, why)) = engine::self_service_refusal(&runbook, &vars, &cfg.config.policy) {
        return Err((
            ErrorCode::Forbidden,
            format!("`{name}` cannot run for self-service: {why}"),
        ));
    }
    Ok(Prepared {
        runbook,
        vars,
        policy,
    })
}

/// Walk the runbook; every progress line, result and finally the verdict
/// go to `out` as they come. Returns the verdict too.
pub async fn drive(
    cfg: &Loaded,
    p: &Prepared,
    dry_run: bool,
    out: mpsc::UnboundedSender<Message>,
) -> Verdict {
    let (ptx, mut prx) = mpsc::unbounded_channel::<String>();
    let env = Env {
        checks: cfg
            .check_context()
            .with_progress(Progress::new(ptx.clone())),
        fixes: {
            let mut f = cfg.fix_context(dry_run);
            f.progress = Progress::new(ptx);
            f.policy = std::sync::Arc::new(p.policy.clone());
            f
        },
        policy: p.policy.clone(),
        agent: cfg.config.name.clone(),
    };
    let progress = out.clone();
    let forward = async move {
        while let Some(text) = prx.recv().await {
            let _ = progress.send(Message::Progress { text });
        }
    };
    let (verdict, ()) = tokio::join!(
        async {
            let v = engine::execute(&p.runbook, &p.vars, &env, &out).await;
            drop(env);
            v
        },
        forward
    );
    let _ = out.send(Message::Verdict(verdict.clone()));
    verdict
}
