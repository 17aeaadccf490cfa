//! `firstline demo`: a newcomer's first run, with nothing to set up.
//!
//! In one process and a temporary folder: a relay (its own CA, on a
//! loopback port), a real enrollment of an agent with a one-time token, the
//! agent's QUIC link, and an admin console that runs the standard checks on
//! this machine through the relay, streaming results — then opens a ticket
//! for whatever failed. Everything is the production code path; only the
//! processes are merged.

use crate::client::Client;
use crate::output;
use anyhow::{anyhow, Context, Result};
use firstline_agent::enroll::{enroll, EnrollRequest};
use firstline_agent::link::{self, LinkState};
use firstline_net::credential::Credential;
use firstline_proto::{CheckResult, Message, Role, Status};
use firstline_relay::{admin, RelayDir};
use std::time::Duration;
use tokio::sync::watch;

/// The checks a first-line technician starts with, as `(check, args)`.
/// Only those this agent build offers are run.
const DEMO_CHECKS: &[(&str, &[&str])] = &[
    ("ping", &["127.0.0.1", "--count", "3"]),
    ("dns", &["localhost"]),
    ("disk", &[]),
    ("cpu", &[]),
    ("memory", &[]),
    ("load", &[]),
    ("printer", &[]),
];

pub async fn run(keep: bool, web: bool) -> Result<i32> {
    let tmp = tempfile::Builder::new()
        .prefix("firstline-demo-")
        .tempdir()?;
    let root = tmp.path().to_path_buf();
    let step = |n: u32, text: &str| output::line(format!("[{n}/6] {text}"));

    step(
        1,
        "creating a relay: private CA, server certificate, SQLite database",
    );
    let port = free_udp_port()?;
    let config = admin::init(
        &root.join("relay"),
        format!("127.0.0.1:{port}").parse()?,
        "firstline-relay",
    )?;
    let relay = firstline_relay::start(RelayDir::load(&config)?).await?;
    output::line(format!(
        "      relay listening on udp://{} (QUIC, TLS 1.3, mutual TLS)",
        relay.addr
    ));

    step(
        2,
        "enrolling an agent with a one-time token (key made locally, CSR signed by the relay)",
    );
    let (token, _) = admin::token_create(&relay.relay.dir, 1, Some(Duration::from_secs(600)))?;
    let name = sysinfo::System::host_name()
        .ok()
        .filter(|n| firstline_net::identity::valid_name(n))
        .unwrap_or_else(|| "demo-agent".into());
    let agent_dir = root.join("agent");
    let loaded = enroll(EnrollRequest {
        relay: relay.addr.to_string(),
        token,
        name: name.clone(),
        config_path: agent_dir.join("agent.toml"),
        state_dir: agent_dir.clone(),
    })
    .await?;
    output::line(format!(
        "      enrolled as `{name}`; identity in {}",
        loaded.identity_path().display()
    ));

    step(3, "starting the agent's link to the relay");
    let (stop_agent, shutdown) = watch::channel(false);
    let (state_tx, mut state) = watch::channel(LinkState::Connecting);
    let agent_task = tokio::spawn(link::run(loaded.with_workers(), shutdown, state_tx));
    let connected = tokio::time::timeout(
        Duration::from_secs(15),
        state.wait_for(|s| matches!(s, LinkState::Connected { .. })),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if !connected {
        return Err(anyhow!(
            "the agent did not connect within 15 s: {}",
            *state.borrow()
        ));
    }
    output::line(format!("      {}", *state.borrow()));

    step(
        4,
        "logging in as an admin operator (client certificate issued by the relay CA)",
    );
    let cred_path = root.join("demo-admin.credential.toml");
    admin::operator_add(&relay.relay.dir, "demo-admin", Role::Admin, &cred_path)?;
    let client = Client::connect_with(Credential::load(&cred_path)?).await?;
    show_agents(&client).await?;

    step(
        5,
        "running the standard L1 checks on the agent, over QUIC through the relay",
    );
    let offered = firstline_agent::checks::NAMES;
    let mut failed: Vec<CheckResult> = Vec::new();
    for (check, args) in DEMO_CHECKS.iter().filter(|(c, _)| offered.contains(c)) {
        let shown: Vec<&str> = [name.as_str(), check]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        output::line(format!("$ firstline run {}", shown.join(" ")));
        let args = args.iter().map(|s| s.to_string()).collect();
        let request = Message::Run {
            agent: name.clone(),
            check: check.to_string(),
            args,
            ticket: None,
            queue_for_secs: None,
        };
        match crate::remote::stream(&client, request, &name, false).await {
            Ok(outcome) => failed.extend(
                outcome
                    .results
                    .into_iter()
                    .filter(|r| r.status != Status::Ok),
            ),
            Err(e) => output::line(format!("      failed: {e:#}")),
        }
    }

    step(6, "opening a ticket for each check that is not ok");
    for r in &failed {
        let title = format!("{} {} on {name}: {}", r.check, r.status, r.summary);
        let body = serde_json::to_string(r)?;
        let answer = client
            .call(Message::TicketNew {
                title,
                agent: Some(name.clone()),
                body: Some(body),
                priority: None,
            })
            .await?;
        if let Message::Ticket { ticket } = answer {
            output::line(format!(
                "      ticket #{} opened: {}",
                ticket.id, ticket.title
            ));
        }
    }
    if failed.is_empty() {
        output::line("      every check is ok: no ticket needed");
    }

    client.close().await;
    if web {
        output::line("the web console, as the demo's admin (Ctrl-C stops the demo):");
        let credential = Credential::load(&cred_path)?;
        crate::web::serve(
            credential,
            Default::default(),
            crate::web::serve::shutdown(),
        )
        .await?;
    }
    let _ = stop_agent.send(true);
    let _ = agent_task.await;
    relay.shutdown().await;
    if keep {
        let kept = tmp.keep();
        output::line(format!("demo files kept in {}", kept.display()));
        output::line(format!(
            "try: firstline --credential {} agents   (after `firstline-relay serve --config {}`)",
            kept.join("demo-admin.credential.toml").display(),
            kept.join("relay/relay.toml").display()
        ));
    }
    output::line(
        "done. Next: `firstline-relay init --dir DIR` to set up a real relay (see README.md).",
    );
    Ok(0)
}

async fn show_agents(client: &Client) -> Result<()> {
    for a in client.agents().await? {
        output::line(format!(
            "      agent {}: online={} version={} os={}",
            a.name,
            a.online,
            a.version.unwrap_or_default(),
            a.os.unwrap_or_default()
        ));
    }
    Ok(())
}

fn free_udp_port() -> Result<u16> {
    let socket =
        std::net::UdpSocket::bind("127.0.0.1:0").context("cannot bind a loopback UDP port")?;
    Ok(socket.local_addr()?.port())
}
