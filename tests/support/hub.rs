//! A relay, one enrolled and running agent with the policy of the test,
//! and a technician's console — all on this host's loopback, or all inside
//! one network namespace over its own loopback (`net` ignores `lo`, so the
//! namespace's links stay the test's to break) — and the two ways to run a
//! runbook: locally on the agent's machine (`firstline-agent runbook`) and
//! through the relay (`firstline runbook AGENT`).

use crate::netlab::Ns;
use crate::{bin, run, text, wait_until, Agent, Console, Proc, Relay};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const SLOW: Duration = Duration::from_secs(30);

pub struct Hub {
    pub relay: Relay,
    pub agent: Agent,
    pub console: Console,
    netns: Option<String>,
}

impl Hub {
    /// In `root` (its own folder): a serving relay, an agent `name` enrolled
    /// with it whose agent.toml gets `settings` (top-level keys) then
    /// `tables` (`[policy]`…), running and shown online, and a console
    /// logged in as a technician. Inside `netns` when given.
    pub fn start(root: &Path, name: &str, settings: &str, tables: &str, netns: Option<&Ns>) -> Hub {
        let netns = netns.map(|n| n.name.clone());
        let mut relay = Relay::init(root);
        let log = relay.dir.join("serve.log");
        let serve = Proc::spawn(
            wrap(netns.as_deref(), &bin("firstline-relay"))
                .args(["serve", "--config"])
                .arg(&relay.config)
                .env("RUST_LOG", "info"),
            &log,
        );
        relay.proc = Some(serve);
        let listening = wait_until(SLOW, || relay.log().contains("relay listening"));
        assert!(listening, "relay did not start:\n{}", relay.log());

        let mut agent = Agent::new(root, name);
        let out = run(wrap(netns.as_deref(), &bin("firstline-agent"))
            .args(["enroll", "--relay", &relay.addr, "--token"])
            .arg(relay.token(&[]))
            .args(["--name", name, "--config"])
            .arg(&agent.config));
        assert!(out.status.success(), "enroll: {}", text(&out));
        agent.configure(settings);
        agent.append(tables);
        let log = agent.dir.join("run.log");
        agent.proc = Some(Proc::spawn(
            wrap(netns.as_deref(), &bin("firstline-agent"))
                .args(["run", "--config"])
                .arg(&agent.config)
                .env("RUST_LOG", "info"),
            &log,
        ));

        let console = Console::new(root);
        let hub = Hub {
            relay,
            agent,
            console,
            netns,
        };
        let credential = hub.relay.operator("tech", "technician");
        let out = hub.console_run(&["login", "--credential", &credential.display().to_string()]);
        assert!(out.status.success(), "login: {}", text(&out));
        let online = wait_until(SLOW, || hub.online());
        assert!(
            online,
            "agent never online\nagent log:\n{}\nrelay log:\n{}",
            hub.agent.log(),
            hub.relay.log()
        );
        hub
    }

    /// `firstline ARGS…` as the logged-in technician.
    pub fn console_run(&self, args: &[&str]) -> Output {
        run(wrap(self.netns.as_deref(), &bin("firstline"))
            .args(args)
            .env("XDG_CONFIG_HOME", &self.console.home)
            .env("HOME", &self.console.home))
    }

    fn online(&self) -> bool {
        let out = self.console_run(&["agents", "--json"]);
        let agents: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).unwrap_or_default();
        agents
            .iter()
            .any(|a| a["name"] == self.agent.name.as_str() && a["online"] == true)
    }

    /// `firstline-agent runbook NAME PARAMS… --json --config AGENT_TOML` on
    /// the agent's machine.
    pub fn local(&self, runbook: &str, params: &[String]) -> Output {
        run(wrap(self.netns.as_deref(), &bin("firstline-agent"))
            .args(["runbook", runbook])
            .args(params)
            .arg("--json")
            .arg("--config")
            .arg(&self.agent.config))
    }

    /// `firstline runbook AGENT NAME PARAMS… --json` through the relay.
    pub fn remote(&self, runbook: &str, params: &[String]) -> Output {
        let mut args = vec!["runbook", self.agent.name.as_str(), runbook];
        args.extend(params.iter().map(String::as_str));
        args.push("--json");
        self.console_run(&args)
    }
}

/// `program`, run inside `netns` when given.
fn wrap(netns: Option<&str>, program: &Path) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    }
}
