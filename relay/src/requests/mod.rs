//! Console requests, one place each: every request is a type in this
//! folder that says the least role it needs ([`Request::role`]), the line
//! the audit log gets for it ([`Request::audit`]) and how it is answered
//! ([`Request::handle`]). [`ConsoleRequest`] is built once from the wire
//! message — the only place a message that is no console request is turned
//! away — and the three matches over it below have no wildcard: a new
//! request is a new file, a variant, and the arms the compiler asks for.
//!
//! The role checked is the one the relay's database holds at the time of
//! the request, not the one the operator's certificate was issued with
//! ([`crate::console`]); what a check or fix needs comes from
//! [`firstline_proto::effect`], the table the agent checks again.
//!
//! | file | requests |
//! |---|---|
//! | [`agents`] | `list_agents`, `select_agents` |
//! | [`remote`] | `run`, `fix`, `runbook`, `list_runbooks`, `list_checks` (routed to the agent) |
//! | [`tickets`] | `list_tickets`, `ticket_new`, `ticket_show`, `ticket_update` |
//! | [`watch`] | `watch` |
//! | [`audit`] | `list_audit`, `audit_verify` |
//! | [`whoami`] | `who_am_i` (the operator's current role, for the web console) |
//! | [`tokens`] | `list_tokens`, `token_create`, `token_revoke` |
//! | [`operators`] | `list_operators`, `operator_role` |
//! | [`agent_records`] | `list_agent_records`, `agent_remove` |
//! | [`agent_tag`] | `agent_tag` |
//! | [`monitors`] | `monitors_set`, `monitors_remove`, `monitors_show` (central monitor sets) |
//! | [`monitor_status`] | `list_monitor_status` (an agent's monitors and their latest status) |
//! | [`queue`] | `list_queue`, `queue_cancel` (actions queued for offline machines) |
//! | [`bulk`] | `bulk` (run, fix or runbook on every machine a selector picks) |
//! | [`report`] | `report` (support metrics over a window of tickets) |
//! | [`kb`] | `kb_search`, `kb_show` (knowledge-base articles) |

pub mod agent_records;
pub mod agent_tag;
pub mod agents;
pub mod audit;
pub mod bulk;
pub mod kb;
pub mod monitor_status;
pub mod monitors;
pub mod operators;
pub mod queue;
pub mod remote;
pub mod report;
pub mod tickets;
pub mod tokens;
pub mod watch;
pub mod whoami;

pub use crate::reply::{Outcome, Reply};

use crate::error::RelayError;
use crate::state::Relay;
use firstline_proto::{Message, Role};

/// Who sent a request: the name from the verified certificate, the role
/// from the database at the time of the request.
#[derive(Debug, Clone)]
pub struct Operator {
    pub name: String,
    pub role: Role,
}

/// What a handler works with.
pub struct Ctx<'a> {
    pub relay: &'a Relay,
    pub operator: &'a Operator,
}

/// What the audit log records of a request, besides who and the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLine {
    pub agent: Option<String>,
    pub action: String,
    pub args: String,
}

impl AuditLine {
    pub fn new(action: impl Into<String>) -> AuditLine {
        AuditLine {
            agent: None,
            action: action.into(),
            args: String::new(),
        }
    }
    pub fn args(mut self, args: impl Into<String>) -> AuditLine {
        self.args = args.into();
        self
    }
    pub fn agent(mut self, agent: Option<String>) -> AuditLine {
        self.agent = agent;
        self
    }
}

/// One console request.
#[allow(async_fn_in_trait)] // used by static dispatch only, in this crate
pub trait Request {
    /// The least role allowed to send it.
    fn role(&self) -> Role;
    /// Its audit line.
    fn audit(&self) -> AuditLine;
    /// Answer it on `reply`; an error is sent to the console by the caller
    /// (unless the handler already ended the stream) and audited.
    async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError>;
}

/// Every console request.
#[derive(Debug, Clone)]
pub enum ConsoleRequest {
    ListAgents(agents::ListAgents),
    Run(remote::Run),
    Fix(remote::Fix),
    Runbook(remote::Runbook),
    ListRunbooks(remote::ListRunbooks),
    ListChecks(remote::ListChecks),
    ListTickets(tickets::ListTickets),
    TicketNew(tickets::TicketNew),
    TicketShow(tickets::TicketShow),
    TicketUpdate(tickets::TicketUpdate),
    Watch(watch::Watch),
    ListAudit(audit::ListAudit),
    AuditVerify(audit::AuditVerify),
    WhoAmI(whoami::WhoAmI),
    ListTokens(tokens::ListTokens),
    TokenCreate(tokens::TokenCreate),
    TokenRevoke(tokens::TokenRevoke),
    ListOperators(operators::ListOperators),
    OperatorRole(operators::OperatorRole),
    ListAgentRecords(agent_records::ListAgentRecords),
    AgentRemove(agent_records::AgentRemove),
    AgentTag(agent_tag::AgentTag),
    MonitorsSet(monitors::MonitorsSet),
    MonitorsRemove(monitors::MonitorsRemove),
    MonitorsShow(monitors::MonitorsShow),
    ListMonitorStatus(monitor_status::ListMonitorStatus),
    Bulk(bulk::Bulk),
    ListQueue(queue::ListQueue),
    QueueCancel(queue::QueueCancel),
    Report(report::Report),
    KbSearch(kb::KbSearch),
    KbShow(kb::KbShow),
}

impl ConsoleRequest {
    /// The console request a wire message is; anything else is refused.
    pub fn parse(msg: Message) -> Result<ConsoleRequest, RelayError> {
        use ConsoleRequest as R;
        Ok(match msg {
            Message::ListAgents {} => R::ListAgents(agents::ListAgents::default()),
            Message::SelectAgents { select } => R::ListAgents(agents::ListAgents {
                select,
                summary: true,
            }),
            Message::Run {
                agent,
                check,
                args,
                ticket,
                queue_for_secs,
            } => R::Run(remote::Run {
                agent,
                check,
                args,
                ticket,
                queue_for_secs,
            }),
            Message::Fix {
                agent,
                action,
                args,
                dry_run,
                ticket,
                queue_for_secs,
            } => R::Fix(remote::Fix {
                agent,
                action,
                args,
                dry_run,
                ticket,
                queue_for_secs,
            }),
            Message::Runbook {
                agent,
                name,
                params,
                dry_run,
                ticket,
                queue_for_secs,
            } => R::Runbook(remote::Runbook {
                agent,
                name,
                params,
                dry_run,
                ticket,
                queue_for_secs,
            }),
            Message::ListRunbooks { agent } => R::ListRunbooks(remote::ListRunbooks { agent }),
            Message::ListChecks { agent } => R::ListChecks(remote::ListChecks { agent }),
            Message::ListTickets {
                status,
                agent,
                assignee,
                priority,
                search,
                since_secs,
                older_than_secs,
            } => R::ListTickets(tickets::ListTickets {
                status,
                agent,
                assignee,
                priority,
                search,
                since_secs,
                older_than_secs,
            }),
            Message::TicketNew {
                title,
                agent,
                body,
                priority,
            } => R::TicketNew(tickets::TicketNew {
                title,
                agent,
                body,
                priority,
            }),
            Message::TicketShow { id } => R::TicketShow(tickets::TicketShow { id }),
            Message::TicketUpdate { id, change } => {
                R::TicketUpdate(tickets::TicketUpdate { id, change })
            }
            Message::Watch {} => R::Watch(watch::Watch),
            Message::ListAudit { agent, limit } => R::ListAudit(audit::ListAudit { agent, limit }),
            Message::AuditVerify {} => R::AuditVerify(audit::AuditVerify),
            Message::WhoAmI {} => R::WhoAmI(whoami::WhoAmI),
            Message::ListTokens {} => R::ListTokens(tokens::ListTokens),
            Message::TokenCreate {
                uses,
                ttl_secs,
                tags,
            } => R::TokenCreate(tokens::TokenCreate {
                uses,
                ttl_secs,
                tags,
            }),
            Message::TokenRevoke { id } => R::TokenRevoke(tokens::TokenRevoke { id }),
            Message::ListOperators {} => R::ListOperators(operators::ListOperators),
            Message::OperatorRole { name, role } => {
                R::OperatorRole(operators::OperatorRole { name, role })
            }
            Message::ListAgentRecords {} => R::ListAgentRecords(agent_records::ListAgentRecords),
            Message::AgentRemove { name } => R::AgentRemove(agent_records::AgentRemove { name }),
            Message::AgentTag { agent, add, remove } => {
                R::AgentTag(agent_tag::AgentTag { agent, add, remove })
            }
            Message::MonitorsSet { name, select, toml } => {
                R::MonitorsSet(monitors::MonitorsSet { name, select, toml })
            }
            Message::MonitorsRemove { name } => {
                R::MonitorsRemove(monitors::MonitorsRemove { name })
            }
            Message::MonitorsShow {} => R::MonitorsShow(monitors::MonitorsShow),
            Message::ListMonitorStatus { agent } => {
                R::ListMonitorStatus(monitor_status::ListMonitorStatus { agent })
            }
            Message::Bulk {
                select,
                action,
                ticket,
                max_in_flight,
                queue_for_secs,
            } => R::Bulk(bulk::Bulk {
                select,
                action,
                ticket,
                max_in_flight,
                queue_for_secs,
            }),
            Message::ListQueue { all } => R::ListQueue(queue::ListQueue { all }),
            Message::QueueCancel { id } => R::QueueCancel(queue::QueueCancel { id }),
            Message::Report { since_secs } => R::Report(report::Report { since_secs }),
            Message::KbSearch { text } => R::KbSearch(kb::KbSearch { text }),
            Message::KbShow { id } => R::KbShow(kb::KbShow { id }),
            other => {
                return Err(RelayError::bad_request(format!(
                    "`{}` is not a console request",
                    other.kind()
                )))
            }
        })
    }

    /// The least role allowed to send it.
    pub fn role(&self) -> Role {
        use ConsoleRequest as R;
        match self {
            R::ListAgents(r) => r.role(),
            R::Run(r) => r.role(),
            R::Fix(r) => r.role(),
            R::Runbook(r) => r.role(),
            R::ListRunbooks(r) => r.role(),
            R::ListChecks(r) => r.role(),
            R::ListTickets(r) => r.role(),
            R::TicketNew(r) => r.role(),
            R::TicketShow(r) => r.role(),
            R::TicketUpdate(r) => r.role(),
            R::Watch(r) => r.role(),
            R::ListAudit(r) => r.role(),
            R::AuditVerify(r) => r.role(),
            R::WhoAmI(r) => r.role(),
            R::ListTokens(r) => r.role(),
            R::TokenCreate(r) => r.role(),
            R::TokenRevoke(r) => r.role(),
            R::ListOperators(r) => r.role(),
            R::OperatorRole(r) => r.role(),
            R::ListAgentRecords(r) => r.role(),
            R::AgentRemove(r) => r.role(),
            R::AgentTag(r) => r.role(),
            R::MonitorsSet(r) => r.role(),
            R::MonitorsRemove(r) => r.role(),
            R::MonitorsShow(r) => r.role(),
            R::ListMonitorStatus(r) => r.role(),
            R::Bulk(r) => r.role(),
            R::ListQueue(r) => r.role(),
            R::QueueCancel(r) => r.role(),
            R::Report(r) => r.role(),
            R::KbSearch(r) => r.role(),
            R::KbShow(r) => r.role(),
        }
    }

    /// Its audit line.
    pub fn audit(&self) -> AuditLine {
        use ConsoleRequest as R;
        match self {
            R::ListAgents(r) => r.audit(),
            R::Run(r) => r.audit(),
            R::Fix(r) => r.audit(),
            R::Runbook(r) => r.audit(),
            R::ListRunbooks(r) => r.audit(),
            R::ListChecks(r) => r.audit(),
            R::ListTickets(r) => r.audit(),
            R::TicketNew(r) => r.audit(),
            R::TicketShow(r) => r.audit(),
            R::TicketUpdate(r) => r.audit(),
            R::Watch(r) => r.audit(),
            R::ListAudit(r) => r.audit(),
            R::AuditVerify(r) => r.audit(),
            R::WhoAmI(r) => r.audit(),
            R::ListTokens(r) => r.audit(),
            R::TokenCreate(r) => r.audit(),
            R::TokenRevoke(r) => r.audit(),
            R::ListOperators(r) => r.audit(),
            R::OperatorRole(r) => r.audit(),
            R::ListAgentRecords(r) => r.audit(),
            R::AgentRemove(r) => r.audit(),
            R::AgentTag(r) => r.audit(),
            R::MonitorsSet(r) => r.audit(),
            R::MonitorsRemove(r) => r.audit(),
            R::MonitorsShow(r) => r.audit(),
            R::ListMonitorStatus(r) => r.audit(),
            R::Bulk(r) => r.audit(),
            R::ListQueue(r) => r.audit(),
            R::QueueCancel(r) => r.audit(),
            R::Report(r) => r.audit(),
            R::KbSearch(r) => r.audit(),
            R::KbShow(r) => r.audit(),
        }
    }

    /// Answer it.
    pub async fn handle(self, ctx: &Ctx<'_>, reply: &mut Reply) -> Result<Outcome, RelayError> {
        use ConsoleRequest as R;
        match self {
            R::ListAgents(r) => r.handle(ctx, reply).await,
            R::Run(r) => r.handle(ctx, reply).await,
            R::Fix(r) => r.handle(ctx, reply).await,
            R::Runbook(r) => r.handle(ctx, reply).await,
            R::ListRunbooks(r) => r.handle(ctx, reply).await,
            R::ListChecks(r) => r.handle(ctx, reply).await,
            R::ListTickets(r) => r.handle(ctx, reply).await,
            R::TicketNew(r) => r.handle(ctx, reply).await,
            R::TicketShow(r) => r.handle(ctx, reply).await,
            R::TicketUpdate(r) => r.handle(ctx, reply).await,
            R::Watch(r) => r.handle(ctx, reply).await,
            R::ListAudit(r) => r.handle(ctx, reply).await,
            R::AuditVerify(r) => r.handle(ctx, reply).await,
            R::WhoAmI(r) => r.handle(ctx, reply).await,
            R::ListTokens(r) => r.handle(ctx, reply).await,
            R::TokenCreate(r) => r.handle(ctx, reply).await,
            R::TokenRevoke(r) => r.handle(ctx, reply).await,
            R::ListOperators(r) => r.handle(ctx, reply).await,
            R::OperatorRole(r) => r.handle(ctx, reply).await,
            R::ListAgentRecords(r) => r.handle(ctx, reply).await,
            R::AgentRemove(r) => r.handle(ctx, reply).await,
            R::AgentTag(r) => r.handle(ctx, reply).await,
            R::MonitorsSet(r) => r.handle(ctx, reply).await,
            R::MonitorsRemove(r) => r.handle(ctx, reply).await,
            R::MonitorsShow(r) => r.handle(ctx, reply).await,
            R::ListMonitorStatus(r) => r.handle(ctx, reply).await,
            R::Bulk(r) => r.handle(ctx, reply).await,
            R::ListQueue(r) => r.handle(ctx, reply).await,
            R::QueueCancel(r) => r.handle(ctx, reply).await,
            R::Report(r) => r.handle(ctx, reply).await,
            R::KbSearch(r) => r.handle(ctx, reply).await,
            R::KbShow(r) => r.handle(ctx, reply).await,
        }
    }
}

/// `ARGS --ticket N`, as the audit log shows a routed request's arguments.
pub(crate) fn with_ticket(args: &[String], ticket: Option<u64>) -> String {
    let mut s = args.join(" ");
    if let Some(t) = ticket {
        s.push_str(&format!(" --ticket {t}"));
    }
    s
}

impl crate::routing::Requester for Ctx<'_> {
    fn relay(&self) -> &Relay {
        self.relay
    }
    fn operator(&self) -> &str {
        &self.operator.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(msg: Message) -> Role {
        ConsoleRequest::parse(msg).unwrap().role()
    }

    #[test]
    fn roles_matrix() {
        let run = |ticket| Message::Run {
            agent: "a".into(),
            check: "disk".into(),
            args: vec![],
            ticket,
            queue_for_secs: None,
        };
        assert_eq!(role(run(None)), Role::Viewer);
        assert_eq!(
            role(run(Some(1))),
            Role::Technician,
            "writing into a ticket"
        );
        let plugin = Message::Run {
            agent: "a".into(),
            check: "plugin".into(),
            args: vec!["negate".into()],
            ticket: None,
            queue_for_secs: None,
        };
        assert_eq!(role(plugin), Role::Technician);
        assert_eq!(role(Message::ListAgents {}), Role::Viewer);
        assert_eq!(
            role(Message::ListMonitorStatus { agent: "a".into() }),
            Role::Viewer
        );
        assert_eq!(
            role(Message::SelectAgents {
                select: Some("tag=x".into())
            }),
            Role::Viewer
        );
        assert_eq!(role(Message::Watch {}), Role::Viewer);
        assert_eq!(role(Message::WhoAmI {}), Role::Viewer);
        assert_eq!(role(Message::Report { since_secs: 60 }), Role::Viewer);
        assert_eq!(role(Message::KbSearch { text: "x".into() }), Role::Viewer);
        assert_eq!(role(Message::KbShow { id: "x".into() }), Role::Viewer);
        assert_eq!(role(Message::MonitorsShow {}), Role::Viewer);
        assert_eq!(role(Message::TicketShow { id: 1 }), Role::Viewer);
        let fix = |action: &str| Message::Fix {
            agent: "a".into(),
            action: action.into(),
            args: vec![],
            dry_run: false,
            ticket: None,
            queue_for_secs: None,
        };
        assert_eq!(role(fix("flush-dns")), Role::Technician);
        assert_eq!(role(fix("script")), Role::Admin);
        let runbook = Message::Runbook {
            agent: "a".into(),
            name: "cant-print".into(),
            params: vec![],
            dry_run: false,
            ticket: None,
            queue_for_secs: None,
        };
        assert_eq!(role(runbook), Role::Technician);
        assert_eq!(
            role(Message::ListAudit {
                agent: None,
                limit: None
            }),
            Role::Technician
        );
        for admin_only in [
            Message::ListTokens {},
            Message::TokenCreate {
                uses: 1,
                ttl_secs: None,
                tags: vec![],
            },
            Message::TokenRevoke { id: "x".into() },
            Message::ListOperators {},
            Message::OperatorRole {
                name: "x".into(),
                role: Role::Admin,
            },
            Message::ListAgentRecords {},
            Message::AgentRemove { name: "x".into() },
            Message::AgentTag {
                agent: "x".into(),
                add: vec!["a".into()],
                remove: vec![],
            },
            Message::MonitorsSet {
                name: "s".into(),
                select: "tag=x".into(),
                toml: String::new(),
            },
            Message::MonitorsRemove { name: "s".into() },
            Message::AuditVerify {},
        ] {
            assert_eq!(role(admin_only), Role::Admin);
        }
    }

    #[test]
    fn messages_that_are_no_console_request_are_refused_once() {
        let e = ConsoleRequest::parse(Message::Done {}).unwrap_err();
        assert_eq!(e.code, firstline_proto::ErrorCode::BadRequest);
        assert_eq!(e.message, "`done` is not a console request");
        let e = ConsoleRequest::parse(Message::Exec {
            check: "disk".into(),
            args: vec![],
            role: Role::Admin,
        })
        .unwrap_err();
        assert!(e.message.contains("`exec`"));
    }

    #[test]
    fn audit_lines_say_what_was_asked() {
        let line = ConsoleRequest::parse(Message::Fix {
            agent: "pc1".into(),
            action: "flush-dns".into(),
            args: vec![],
            dry_run: true,
            ticket: Some(4),
            queue_for_secs: None,
        })
        .unwrap()
        .audit();
        assert_eq!(line.agent.as_deref(), Some("pc1"));
        assert_eq!(line.action, "fix flush-dns (dry run)");
        assert_eq!(line.args, " --ticket 4");
        let line = ConsoleRequest::parse(Message::TokenCreate {
            uses: 2,
            ttl_secs: Some(60),
            tags: vec![],
        })
        .unwrap()
        .audit();
        assert_eq!(
            (line.action.as_str(), line.args.as_str()),
            ("token create", "--uses 2 --ttl 60s")
        );
        let line = ConsoleRequest::parse(Message::TokenCreate {
            uses: 1,
            ttl_secs: None,
            tags: vec!["floor2".into(), "lab".into()],
        })
        .unwrap()
        .audit();
        assert_eq!(line.args, "--uses 1 --tag floor2 --tag lab");
        let line = ConsoleRequest::parse(Message::AgentTag {
            agent: "pc1".into(),
            add: vec!["floor2".into()],
            remove: vec!["lab".into()],
        })
        .unwrap()
        .audit();
        assert_eq!(line.agent.as_deref(), Some("pc1"));
        assert_eq!(
            (line.action.as_str(), line.args.as_str()),
            ("agent tag", "pc1 +floor2 -lab")
        );
        let line = ConsoleRequest::parse(Message::SelectAgents {
            select: Some("tag=floor2".into()),
        })
        .unwrap()
        .audit();
        assert_eq!(line.args, "--select tag=floor2");
    }
}
