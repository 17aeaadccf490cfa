//! `firstline web [--listen ADDR:PORT] [--open]`: connect to the relay as
//! the logged-in operator, listen on loopback, print a URL with a one-time
//! login code (`--open`: hand the browser another, short-lived), serve
//! until Ctrl-C or SIGTERM.
//!
//! Loopback is the default and the only address taken silently: another
//! one must be named with `--listen` and is warned about, since the
//! console then answers other machines, in plain HTTP, as this operator.

use super::{router, Web};
use crate::client::Client;
use anyhow::{Context, Result};
use firstline_net::cli::UsageError;
use firstline_net::credential::Credential;
use firstline_net::tls::Sessions;
use std::future::IntoFuture;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the web console listens unless told: loopback, a free port.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// How long requests in flight may take to end after Ctrl-C.
const GRACE: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(clap::Args, Debug, Clone, Default)]
pub struct WebArgs {
    /// Listen on this address (default 127.0.0.1 and a free port; port 0
    /// picks one). Another address than loopback serves other machines
    /// too, in plain HTTP: it is warned about.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen)]
    pub listen: Option<SocketAddr>,
    /// Open the URL in the browser (`xdg-open`).
    #[arg(long)]
    pub open: bool,
}

/// `127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`; an unspecified address
/// (`0.0.0.0`) is refused: the `Host` check needs the name pages are
/// asked by.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let addr = match text.strip_prefix("localhost:") {
        Some(port) => port
            .parse::<u16>()
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p))
            .map_err(|_| format!("`{text}`: the port is not a number"))?,
        None => text
            .parse::<SocketAddr>()
            .map_err(|_| format!("`{text}` is not ADDR:PORT (e.g. 127.0.0.1:8080)"))?,
    };
    if addr.ip().is_unspecified() {
        return Err(format!(
            "`{text}`: name one address to listen on (e.g. 127.0.0.1:8080 or this machine's own address), not every address"
        ));
    }
    Ok(addr)
}

/// `firstline web`: the operator's credential at `cred` (or the logged-in
/// one).
pub async fn run(cred: Option<PathBuf>, args: WebArgs) -> Result<i32> {
    let path = cred.unwrap_or_else(crate::client::credential_path);
    let credential = load(&path)?;
    serve(credential, args, shutdown()).await?;
    Ok(0)
}

fn load(path: &Path) -> Result<Credential> {
    if !path.exists() {
        return Err(UsageError(format!(
            "not logged in: no credential at {}; run `firstline login --credential FILE` first",
            path.display()
        ))
        .into());
    }
    Ok(Credential::load(path)?)
}

/// Serve the web console with `credential` until `stop` completes: the
/// relay is reached first (a relay that is down is said at once), then
/// the URL is printed.
pub async fn serve(
    credential: Credential,
    args: WebArgs,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let mut sessions = Sessions::default();
    let client = Client::connect_resuming(credential.clone(), &mut sessions).await?;
    let wanted = args.listen.unwrap_or(DEFAULT_LISTEN);
    if !wanted.ip().is_loopback() {
        eprintln!(
            "warning: the web console listens on {wanted}, not loopback: other machines can reach it, in plain HTTP; whoever has the URL acts as {} ({}) on the relay",
            credential.name, credential.role
        );
    }
    let listener = tokio::net::TcpListener::bind(wanted)
        .await
        .with_context(|| format!("cannot listen on {wanted}"))?;
    let addr = listener.local_addr()?;
    let web = Arc::new(Web::new(credential, Some((client, sessions)), addr));
    let url = web.guard.login_url();
    println!("firstline web console for {} at {url}", web.operator());
    println!("(open it in a browser on this machine: it logs in once; Ctrl-C stops it)");
    if args.open {
        // Not the printed URL: a code of its own, spent by the browser's
        // first request and dead after a few seconds anyway — `xdg-open`'s
        // and the browser's command lines are readable by every local user.
        open(&web.guard.open_url());
    }
    // Live pages hold their event streams open for good: after the stop,
    // requests in flight get a moment to end, then the server is dropped.
    let (stopped, when) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router(web)).with_graceful_shutdown(async move {
        stop.await;
        let _ = stopped.send(());
    });
    tokio::select! {
        served = server.into_future() => served.context("the web server failed")?,
        _ = async {
            let _ = when.await;
            tokio::time::sleep(GRACE).await;
        } => {}
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Hand the URL to the desktop's browser (waited for in the background);
/// a failure is only said.
fn open(url: &str) {
    let spawned = tokio::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
        Err(e) => eprintln!("warning: cannot run xdg-open ({e}): open the URL above by hand"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("127.0.0.1:0").map(|a| a.port()), Ok(0));
        assert!(parse_listen("localhost:8080").is_ok_and(|a| a.ip().is_loopback()));
        assert!(parse_listen("[::1]:8080").is_ok_and(|a| a.ip().is_loopback()));
        assert!(parse_listen("0.0.0.0:8080").is_err());
        assert!(parse_listen("[::]:8080").is_err());
        assert!(parse_listen("8080").is_err());
        assert!(DEFAULT_LISTEN.ip().is_loopback());
    }
}
