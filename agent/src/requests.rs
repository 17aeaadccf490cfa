//! Requests the relay routes to this agent, one stream each: run a check,
//! run a fix, run a runbook, list runbooks, list checks. Progress lines and results are
//! streamed as they come; the agent's policy is applied here, whatever the
//! relay already allowed.

use crate::checks::{self, CheckError, Progress};
use crate::config::Loaded;
use crate::fixes;
use crate::runbook::run;
use firstline_net::FramedSend;
use firstline_proto::{effect, CheckResult, ErrorCode, Message, Role, RunbookInfo};
use std::future::Future;
use tokio::sync::mpsc;

pub async fn handle(cfg: Loaded, msg: Message, send: FramedSend) {
    match msg {
        Message::Exec { check, args, role } => {
            let needed = effect::check_role(&check, &args);
            if role < needed {
                return refuse(send, role, needed, &format!("run the check `{check}` so")).await;
            }
            let ctx = cfg.check_context();
            one_result(send, |p| async move {
                checks::run(&check, &args, &ctx.with_progress(p)).await
            })
            .await
        }
        Message::ExecFix {
            action,
            args,
            dry_run,
            role,
        } => {
            // An unknown name is a usage error that lists the fixes, before
            // any role or policy says it may not run.
            if let Err(e) = fixes::known(&action) {
                send.fail(ErrorCode::BadRequest, e.to_string()).await;
                return;
            }
            let needed = effect::fix_role(&action);
            if role < needed {
                return refuse(send, role, needed, &format!("run the fix `{action}`")).await;
            }
            // `--help` only reads the fix's definition: no policy applies,
            // and nothing can change (a dry run whose arguments stop at help).
            let help = args.iter().any(|a| a == "--help" || a == "-h");
            if !help {
                if let Err(why) = cfg.config.policy.allows_fix(&action) {
                    tracing::warn!(%action, "refused by policy: {why}");
                    send.fail(ErrorCode::Refused, why).await;
                    return;
                }
            }
            let mut ctx = cfg.fix_context(dry_run || help);
            one_result(send, |p| async move {
                ctx.progress = p;
                fixes::run(&action, &args, &ctx).await
            })
            .await
        }
        Message::ExecRunbook {
            name,
            params,
            dry_run,
            role,
        } => runbook(cfg, &name, &params, dry_run, role, send).await,
        Message::ExecListChecks {} => {
            let _ = send
                .finish_with(Message::Checks {
                    checks: checks::catalog(),
                })
                .await;
        }
        Message::ExecListRunbooks {} => {
            let (books, invalid) = cfg.runbooks();
            let runbooks = books
                .into_iter()
                .map(|b| RunbookInfo {
                    params: b
                        .params
                        .iter()
                        .map(|(k, p)| match &p.default {
                            Some(d) => (format!("{k}={d}"), p.help.clone()),
                            None => (k.clone(), p.help.clone()),
                        })
                        .collect(),
                    name: b.name,
                    description: b.description,
                    source: b.source,
                })
                .collect();
            let _ = send
                .finish_with(Message::Runbooks { runbooks, invalid })
                .await;
        }
        other => {
            send.fail(
                ErrorCode::BadRequest,
                format!("agents do not serve `{}`", other.kind()),
            )
            .await
        }
    }
}

/// Refuse a request whose requester's role is below what it does.
async fn refuse(send: FramedSend, role: Role, needed: Role, what: &str) {
    let why = format!("a {role} may not {what} here: it needs the role {needed} or above");
    tracing::warn!("refused: {why}");
    send.fail(ErrorCode::Forbidden, why).await;
}

/// Run `work` (a check or a fix), streaming its progress, then its result.
async fn one_result<F, Fut>(mut send: FramedSend, work: F)
where
    F: FnOnce(Progress) -> Fut,
    Fut: Future<Output = Result<CheckResult, CheckError>>,
{
    let (tx, mut rx) = mpsc::unbounded_channel();
    let work = work(Progress::new(tx));
    tokio::pin!(work);
    let outcome = loop {
        tokio::select! {
            outcome = &mut work => break outcome,
            Some(text) = rx.recv() => {
                if send.send(Message::Progress { text }).await.is_err() {
                    return;
                }
            }
            // Nobody waits for the answer any more: dropping the work
            // kills its worker.
            _ = send.stopped() => return,
        }
    };
    while let Ok(text) = rx.try_recv() {
        let _ = send.send(Message::Progress { text }).await;
    }
    match outcome {
        Ok(result) => {
            if send.send(Message::Result { result }).await.is_ok() {
                let _ = send.finish_with(Message::Done {}).await;
            }
        }
        Err(e @ CheckError::Unknown(_)) => send.fail(ErrorCode::UnknownCheck, e.to_string()).await,
        Err(e @ CheckError::Usage(_)) => send.fail(ErrorCode::BadRequest, e.to_string()).await,
        Err(CheckError::Refused(why)) => {
            tracing::warn!(
                "refused by policy: {}",
                firstline_proto::text::printable(&why)
            );
            send.fail(ErrorCode::Refused, why).await
        }
    }
}

async fn runbook(
    cfg: Loaded,
    name: &str,
    params: &[String],
    dry_run: bool,
    role: Role,
    mut send: FramedSend,
) {
    let prepared = match run::prepare(&cfg, name, params, role) {
        Ok(p) => p,
        Err((code, why)) => {
            tracing::warn!(
                "runbook {name} refused: {}",
                firstline_proto::text::printable(&why)
            );
            send.fail(code, why).await;
            return;
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let work = run::drive(&cfg, &prepared, dry_run, tx);
    tokio::pin!(work);
    let mut finished = false;
    loop {
        tokio::select! {
            _ = &mut work, if !finished => finished = true,
            m = rx.recv() => match m {
                Some(m) => if send.send(m).await.is_err() { return },
                None => break,
            },
        }
    }
    let _ = send.finish_with(Message::Done {}).await;
}
