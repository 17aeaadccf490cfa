//! Requests the relay routes to this agent, one stream each: run a check,
//! run a fix, run a runbook, list runbooks. Progress lines and results are
//! streamed as they come; the agent's policy is applied here, whatever the
//! relay already allowed.

use crate::checks::{self, CheckError, Progress};
use crate::config::Loaded;
use crate::fixes;
use crate::runbook::engine::{self, Env};
use firstline_net::FramedSend;
use firstline_proto::{CheckResult, ErrorCode, Message, RunbookInfo};
use std::future::Future;
use tokio::sync::mpsc;

pub async fn handle(cfg: Loaded, msg: Message, send: FramedSend) {
    match msg {
        Message::Exec { check, args } => {
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
        } => {
            if let Err(why) = cfg.config.policy.allows_fix(&action) {
                tracing::warn!(%action, "refused by policy: {why}");
                send.fail(ErrorCode::Refused, why).await;
                return;
            }
            let mut ctx = cfg.fix_context(dry_run);
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
        } => runbook(cfg, &name, &params, dry_run, send).await,
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
    }
}

async fn runbook(cfg: Loaded, name: &str, params: &[String], dry_run: bool, mut send: FramedSend) {
    if let Err(why) = cfg.config.policy.allows_runbooks() {
        send.fail(ErrorCode::Refused, why).await;
        return;
    }
    let (books, _) = cfg.runbooks();
    let Some(rb) = books.into_iter().find(|b| b.name == name) else {
        send.fail(
            ErrorCode::BadRequest,
            format!("no runbook `{name}` on this agent (see `firstline runbooks AGENT`)"),
        )
        .await;
        return;
    };
    let vars = match engine::bind(&rb, params) {
        Ok(v) => v,
        Err(e) => {
            send.fail(ErrorCode::BadRequest, e).await;
            return;
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let (ptx, mut prx) = mpsc::unbounded_channel::<String>();
    let env = Env {
        checks: cfg
            .check_context()
            .with_progress(Progress::new(ptx.clone())),
        fixes: {
            let mut f = cfg.fix_context(dry_run);
            f.progress = Progress::new(ptx);
            f
        },
        policy: cfg.config.policy.clone(),
    };
    let work = engine::execute(&rb, &vars, &env, &tx);
    tokio::pin!(work);
    let verdict = loop {
        tokio::select! {
            v = &mut work => break v,
            Some(m) = rx.recv() => { if send.send(m).await.is_err() { return; } }
            Some(text) = prx.recv() => { if send.send(Message::Progress { text }).await.is_err() { return; } }
        }
    };
    while let Ok(m) = rx.try_recv() {
        let _ = send.send(m).await;
    }
    if send.send(verdict.into_message()).await.is_ok() {
        let _ = send.finish_with(Message::Done {}).await;
    }
}
