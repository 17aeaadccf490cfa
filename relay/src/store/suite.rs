//! The store test suite: every use case of [`Store`], the concurrency
//! rules included, written once and run on every backend.
//!
//! A backend's tests call [`crate::store_suite!`] with a function that
//! opens a fresh store with the given [`Options`] (and returns a guard kept
//! alive for the test, e.g. its temp dir):
//!
//! ```ignore
//! async fn open(options: Options) -> (tempfile::TempDir, Store) { … }
//! firstline_relay::store_suite!(open);
//! ```
//!
//! which makes one `#[tokio::test]` per case. The cases use names of their
//! own (a random suffix), so they may share one database and run at once.

// Test code, built with the library so other crates' tests can run it.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::ticket::{Priority, Source, TicketStatus};
use firstline_proto::{CheckResult, EventKind, Facts, Status, TicketChange};

/// Every case, by name (the macro makes a test of each).
#[macro_export]
macro_rules! store_suite {
    ($open:path) => {
        $crate::store_suite!(@cases $open;
            tokens_and_enrollment,
            a_single_use_token_enrolls_once_however_many_race_for_it,
            revocation_is_of_the_identity,
            agents_presence_and_removal,
            operators_and_roles,
            tickets_and_their_timeline,
            ticket_filters,
            ingest_is_idempotent_even_when_two_ingest_at_once,
            absurd_sequence_jumps_are_refused_not_trusted,
            names_differing_only_in_case_are_one_name,
            the_reopen_window_is_read_on_the_clock,
            configuration_problems_open_no_ticket,
            concurrent_audit_appends_make_one_chain,
            a_webhook_delivery_is_claimed_once,
            a_helpdesk_link_is_claimed_once_and_resolved_once,
            tags_from_tokens_and_admins,
            facts_are_kept_per_agent,
            selection_health_and_open_tickets,
            queued_actions_are_delivered_once_expire_or_are_cancelled,
            central_monitor_sets_and_reports,
            queued_actions_are_bound_to_the_enrollment,
            monitor_sets_die_with_their_authors_authority,
            support_report_from_a_scripted_history
        );
    };
    (@cases $open:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let clock = $crate::clock::ManualClock::new(1_800_000_000);
                let options = $crate::store::Options {
                    clock: clock.clone(),
                    webhook_source: Some("suite".into()),
                    helpdesk: true,
                };
                let (guard, store) = $open(options).await;
                $crate::store::suite::$case(&store, &clock).await;
                drop(guard);
            }
        )*
    };
}

/// A name no other case (or run) uses.
fn unique(tag: &str) -> String {
    format!("{tag}-{:08x}", rand::random::<u32>())
}

/// A stand-in for the CA: a fresh serial, valid for a day.
fn sign(now: i64) -> impl FnMut() -> anyhow::Result<Signed<String>> + Send + 'static {
    move || {
        let serial = format!("{:016x}", rand::random::<u64>());
        Ok(Signed {
            out: serial.clone(),
            serial,
            not_after: now + 86_400,
        })
    }
}

async fn enroll(s: &Store, token: &str, name: &str) -> Result<String, EnrollRefusal> {
    s.enroll(token, "secret", name, sign(s.now()))
        .await
        .unwrap()
}

async fn agent(s: &Store, name: &str) {
    let token = unique("t");
    s.add_token(&token, "secret", 1, Duration::from_secs(60))
        .await
        .unwrap();
    enroll(s, &token, name).await.unwrap();
}

pub async fn tokens_and_enrollment(s: &Store, clock: &ManualClock) {
    let (t1, t2) = (unique("t1"), unique("t2"));
    let expires = s
        .add_token(&t1, "secret", 2, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(expires, clock.now() + 60);
    s.add_token(&t2, "secret", 5, Duration::from_secs(10))
        .await
        .unwrap();
    let (a1, a2, a3) = (unique("pc"), unique("pc"), unique("pc"));
    assert!(enroll(s, &t1, &a1).await.is_ok());
    let token = |e| Err(EnrollRefusal::Token(e));
    assert_eq!(enroll(s, "nope", &a2).await, token(TokenError::Unknown));
    let wrong = s.enroll(&t1, "other", &a2, sign(0)).await.unwrap();
    assert_eq!(
        wrong,
        token(TokenError::Unknown),
        "a wrong secret learns nothing"
    );
    // A taken name does not spend the token.
    assert!(matches!(
        enroll(s, &t1, &a1).await,
        Err(EnrollRefusal::NameTaken(_))
    ));
    assert!(enroll(s, &t1, &a2).await.is_ok());
    assert_eq!(enroll(s, &t1, &a3).await, token(TokenError::Used));
    clock.advance(Duration::from_secs(10));
    assert_eq!(enroll(s, &t2, &a3).await, token(TokenError::Expired));
    let listed: Vec<(String, String, u32)> = s
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.id == t1 || t.id == t2)
        .map(|t| (t.id, t.state, t.uses_left))
        .collect();
    assert_eq!(
        listed,
        [
            (t1.clone(), "used".into(), 0),
            (t2.clone(), "expired".into(), 5)
        ]
    );
    // Revoked: enrolls nothing, listed so, once.
    let t3 = unique("t3");
    s.add_token(&t3, "secret", 3, Duration::from_secs(60))
        .await
        .unwrap();
    let (info, newly) = s.revoke_token(&t3).await.unwrap().unwrap();
    assert!(newly);
    assert_eq!(
        (info.state.as_str(), info.uses, info.uses_left),
        ("revoked", Some(3), 3)
    );
    assert!(
        !s.revoke_token(&t3).await.unwrap().unwrap().1,
        "already revoked"
    );
    assert!(s.revoke_token("nope").await.unwrap().is_none());
    assert_eq!(enroll(s, &t3, &a3).await, token(TokenError::Revoked));
    assert!(s.agent(&a3).await.unwrap().is_none());
}

pub async fn a_single_use_token_enrolls_once_however_many_race_for_it(s: &Store, _: &ManualClock) {
    let t = unique("t");
    s.add_token(&t, "secret", 1, Duration::from_secs(60))
        .await
        .unwrap();
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let (s, t) = (s.clone(), t.clone());
            tokio::spawn(async move { enroll(&s, &t, &unique("racer")).await })
        })
        .collect();
    let mut enrolled = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(_) => enrolled += 1,
            Err(e) => assert_eq!(e, EnrollRefusal::Token(TokenError::Used)),
        }
    }
    assert_eq!(enrolled, 1);
    let token = s
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.id == t)
        .unwrap();
    assert_eq!(token.uses_left, 0);
}

pub async fn revocation_is_of_the_identity(s: &Store, _: &ManualClock) {
    let pc = unique("pc");
    agent(s, &pc).await;
    let renewed = s.renew_agent(&pc, sign(s.now())).await.unwrap().unwrap();
    let status = |serial: String, kind| {
        let (s, pc) = (s.clone(), pc.clone());
        async move { s.cert_status(&serial, kind, &pc).await.unwrap() }
    };
    assert_eq!(
        status(renewed.clone(), PeerKind::Agent).await,
        CertStatus::Valid
    );
    assert_eq!(
        status(renewed.clone(), PeerKind::Operator).await,
        CertStatus::Unknown,
        "a serial logs in only as the identity it was issued to"
    );
    assert_eq!(
        status("nope".into(), PeerKind::Agent).await,
        CertStatus::Unknown
    );
    let before = s
        .revocations_since(0)
        .await
        .unwrap()
        .last()
        .map_or(0, |r| r.seq);
    assert!(s.revoke(PeerKind::Agent, &pc, "test").await.unwrap().exists);
    assert_eq!(
        status(renewed.clone(), PeerKind::Agent).await,
        CertStatus::Revoked
    );
    let refused = s.renew_agent(&pc, sign(s.now())).await.unwrap();
    assert!(matches!(refused, Err(EnrollRefusal::Revoked(_))));
    // A certificate recorded for the name by any other path after the
    // revocation is refused too.
    s.record_cert("late-serial-0", PeerKind::Agent, &pc, s.now() + 60)
        .await
        .ok();
    let late = unique("late");
    s.record_cert(&late, PeerKind::Agent, &pc, s.now() + 60)
        .await
        .unwrap();
    assert_eq!(status(late, PeerKind::Agent).await, CertStatus::Revoked);
    let since: Vec<Revocation> = s.revocations_since(before).await.unwrap();
    assert!(
        since.iter().any(|r| r.kind == "agent" && r.name == pc),
        "{since:?}"
    );
    assert!(
        s.revoke(PeerKind::Agent, &pc, "test").await.unwrap().exists,
        "still there"
    );
    assert!(
        !s.revoke(PeerKind::Agent, &unique("ghost"), "test")
            .await
            .unwrap()
            .exists
    );
    let ghost = s.renew_agent(&unique("ghost"), sign(0)).await.unwrap();
    assert!(matches!(ghost, Err(EnrollRefusal::Unknown(_))));
    // A revoked name enrolls no more.
    let t = unique("t");
    s.add_token(&t, "secret", 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(matches!(
        enroll(s, &t, &pc).await,
        Err(EnrollRefusal::Revoked(_))
    ));
}

pub async fn agents_presence_and_removal(s: &Store, clock: &ManualClock) {
    let (live, gone) = (unique("pc"), unique("pc"));
    agent(s, &live).await;
    agent(s, &gone).await;
    let hello = Presence {
        version: "1.2".into(),
        os: "debian".into(),
        hostname: "host1".into(),
    };
    s.agent_seen(&live, hello).await.unwrap();
    let a = s.agent(&live).await.unwrap().unwrap();
    assert_eq!(
        (a.version.as_deref(), a.os.as_deref()),
        (Some("1.2"), Some("debian"))
    );
    assert_eq!(a.last_seen, Some(crate::clock::rfc3339(clock.now())));
    clock.advance(Duration::from_secs(30));
    s.agent_left(&live).await.unwrap();
    let a = s.agent(&live).await.unwrap().unwrap();
    assert_eq!(a.last_seen, Some(crate::clock::rfc3339(clock.now())));
    let names = s.agent_names(100).await.unwrap();
    assert!(names.contains(&live) && names.contains(&gone));
    assert_eq!(s.agent_names(1).await.unwrap().len(), 1, "a limit");
    assert!(s.agents().await.unwrap().iter().any(|a| a.name == live));
    let record = s
        .agent_records()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.name == live)
        .unwrap();
    assert!(record.cert_expires.is_some());
    // A live agent removed: its name is free, its tickets kept.
    let ticket = NewTicket {
        title: "printer".into(),
        agent: Some(live.clone()),
        check: None,
        monitor: None,
        priority: Priority::Normal,
        source: Source::Technician,
        author: "tina".into(),
        body: None,
        requester: None,
    };
    s.create_ticket(ticket).await.unwrap();
    let removed = s.remove_agent(&live, "test").await.unwrap().unwrap();
    assert!(removed.name_freed);
    assert_eq!(removed.tickets, 1);
    assert!(s.agent(&live).await.unwrap().is_none());
    assert!(
        s.agent_known(&live).await.unwrap(),
        "its tickets remember it"
    );
    assert!(s.remove_agent(&live, "test").await.unwrap().is_none());
    agent(s, &live).await;
    // A revoked agent removed: hidden, and its name stays revoked.
    assert!(
        s.revoke(PeerKind::Agent, &gone, "test")
            .await
            .unwrap()
            .exists
    );
    let removed = s.remove_agent(&gone, "test").await.unwrap().unwrap();
    assert!(!removed.name_freed);
    assert!(!s.agent_names(100).await.unwrap().contains(&gone));
    assert!(s.agent_known(&gone).await.unwrap());
    let t = unique("t");
    s.add_token(&t, "secret", 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(matches!(
        enroll(s, &t, &gone).await,
        Err(EnrollRefusal::Revoked(_))
    ));
    assert!(!s.agent_known(&unique("never")).await.unwrap());
    // Bulk: all or nothing.
    let (b1, b2) = (unique("bulk"), unique("bulk"));
    let batch = |names: &[&String]| {
        names
            .iter()
            .map(|n| ((*n).clone(), unique("serial"), 0))
            .collect::<Vec<_>>()
    };
    s.bulk_enroll(batch(&[&b1])).await.unwrap();
    let e = s.bulk_enroll(batch(&[&b2, &b1])).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    assert!(
        s.agent(&b2).await.unwrap().is_none(),
        "nothing of a failed batch"
    );
}

pub async fn operators_and_roles(s: &Store, _: &ManualClock) {
    let bob = unique("bob");
    assert!(s.add_operator(&bob, Role::Technician).await.unwrap());
    assert!(!s.add_operator(&bob, Role::Admin).await.unwrap(), "taken");
    let (after, before) = s
        .set_operator_role(&bob, Role::Viewer, "test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((before, after.role), (Role::Technician, Role::Viewer));
    assert_eq!(s.operator(&bob).await.unwrap().unwrap().role, Role::Viewer);
    let ghost = s
        .set_operator_role(&unique("ghost"), Role::Admin, "test")
        .await
        .unwrap();
    assert_eq!(ghost, Err(RoleRefusal::Unknown));
    assert!(
        s.revoke(PeerKind::Operator, &bob, "test")
            .await
            .unwrap()
            .exists
    );
    let revoked = s
        .set_operator_role(&bob, Role::Admin, "test")
        .await
        .unwrap();
    assert_eq!(revoked, Err(RoleRefusal::Revoked));
    let listed = s.operators().await.unwrap();
    assert!(listed
        .iter()
        .any(|o| o.name == bob && o.revoked_at.is_some()));
}

fn new_ticket(title: &str, agent: &str, body: Option<&str>) -> NewTicket {
    NewTicket {
        title: title.into(),
        agent: Some(agent.into()),
        check: None,
        monitor: None,
        priority: Priority::Normal,
        source: Source::Technician,
        author: "tina".into(),
        body: body.map(str::to_string),
        requester: None,
    }
}

pub async fn tickets_and_their_timeline(s: &Store, clock: &ManualClock) {
    let pc = unique("pc");
    let tina = unique("tina");
    s.add_operator(&tina, Role::Technician).await.unwrap();
    let opened = s
        .create_ticket(new_ticket("printer down", &pc, None))
        .await
        .unwrap();
    let id = opened.ticket.id;
    assert_eq!(
        (opened.ticket.status.as_str(), opened.entry.kind.as_str()),
        ("open", "opened")
    );
    assert_eq!(opened.entry.body, serde_json::json!("printer down"));
    let edit = |c: TicketChange| TicketEdit::try_from(c).unwrap();
    let c = s
        .change_ticket(
            id,
            edit(TicketChange::Comment {
                text: "looking".into(),
            }),
            "tina",
        )
        .await
        .unwrap();
    assert_eq!(c.entry.kind, "comment");
    let c = s
        .change_ticket(
            id,
            edit(TicketChange::Assign {
                operator: tina.clone(),
            }),
            "bob",
        )
        .await
        .unwrap();
    assert_eq!(c.ticket.assignee.as_deref(), Some(tina.as_str()));
    let nobody = edit(TicketChange::Assign {
        operator: unique("nobody"),
    });
    let e = s.change_ticket(id, nobody, "bob").await.unwrap_err();
    assert!(
        matches!(e, StoreError::NotFound(Missing::Operator(_))),
        "{e}"
    );
    let urgent = edit(TicketChange::Priority {
        priority: "urgent".into(),
    });
    let c = s.change_ticket(id, urgent, "bob").await.unwrap();
    assert_eq!(
        (c.ticket.priority.as_str(), c.entry.body.as_str()),
        ("urgent", Some("normal → urgent"))
    );
    let c = s
        .change_ticket(id, edit(TicketChange::Start {}), "tina")
        .await
        .unwrap();
    assert_eq!(c.ticket.status, "in_progress");
    clock.advance(Duration::from_secs(5));
    let resolve = edit(TicketChange::Resolve {
        comment: Some("toner".into()),
    });
    let c = s.change_ticket(id, resolve, "tina").await.unwrap();
    assert_eq!(c.entry.body.as_str(), Some("in_progress → resolved: toner"));
    assert_eq!(
        s.ticket(id).await.unwrap().unwrap().resolved_at,
        Some(clock.now())
    );
    s.change_ticket(id, edit(TicketChange::Close {}), "tina")
        .await
        .unwrap();
    let again = edit(TicketChange::Resolve { comment: None });
    let e = s.change_ticket(id, again, "tina").await.unwrap_err();
    assert_eq!(
        e,
        StoreError::Conflict(format!(
            "ticket #{id} is closed; it cannot move to resolved"
        ))
    );
    let e = s
        .change_ticket(u64::MAX >> 2, edit(TicketChange::Start {}), "x")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(Missing::Ticket(_))));
    // Results appended by routing keep when the agent observed them.
    let result = r#"{"check":"disk","target":"/","status":"crit","summary":"95%","metrics":{},"duration_ms":1,"at":"2026-01-01T00:00:00Z"}"#;
    let c = s
        .append_to_ticket(id, "result", &pc, result, Some(1_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.entry.observed_at.as_deref(), Some("1970-01-01T00:16:40Z"));
    assert!(s
        .append_to_ticket(u64::MAX >> 2, "result", &pc, "{}", None)
        .await
        .unwrap()
        .is_none());
    let (ticket, entries) = s.ticket_detail(id).await.unwrap().unwrap();
    assert_eq!(ticket.status, TicketStatus::Closed);
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["opened", "comment", "assigned", "priority", "status", "status", "status", "result"]
    );
    // On a technician's ticket only data entries are JSON.
    assert!(entries[7].body.is_object() && entries[1].body.is_string());
    assert!(s.ticket_detail(u64::MAX >> 2).await.unwrap().is_none());
}

pub async fn ticket_filters(s: &Store, clock: &ManualClock) {
    let (pc1, pc2, tina) = (unique("pc"), unique("pc"), unique("tina"));
    s.add_operator(&tina, Role::Technician).await.unwrap();
    let old = clock.now();
    let a = s
        .create_ticket(new_ticket("Printer jammed", &pc1, None))
        .await
        .unwrap()
        .ticket
        .id;
    clock.advance(Duration::from_secs(86_400 * 10));
    let b = s
        .create_ticket(new_ticket(
            "slow login",
            &pc2,
            Some("user says PRINTER is fine"),
        ))
        .await
        .unwrap()
        .ticket
        .id;
    let c = s
        .create_ticket(new_ticket("disk", &pc1, None))
        .await
        .unwrap()
        .ticket
        .id;
    let edit = |c: TicketChange| TicketEdit::try_from(c).unwrap();
    s.change_ticket(
        c,
        edit(TicketChange::Comment {
            text: "Toner low on floor 2".into(),
        }),
        "t",
    )
    .await
    .unwrap();
    s.change_ticket(
        a,
        edit(TicketChange::Assign {
            operator: tina.clone(),
        }),
        "b",
    )
    .await
    .unwrap();
    s.change_ticket(
        c,
        edit(TicketChange::Priority {
            priority: "urgent".into(),
        }),
        "b",
    )
    .await
    .unwrap();
    s.change_ticket(b, edit(TicketChange::Start {}), "b")
        .await
        .unwrap();
    let ours = [a, b, c];
    let ids = |f: TicketFilter| async move {
        s.list_tickets(f)
            .await
            .unwrap()
            .iter()
            .map(|t| t.id)
            .filter(|id| ours.contains(id))
            .collect::<Vec<u64>>()
    };
    let both = |f: TicketFilter| TicketFilter { ..f };
    assert_eq!(ids(TicketFilter::default()).await, [a, b, c]);
    let search = |text: &str| TicketFilter {
        search: Some(text.into()),
        ..Default::default()
    };
    assert_eq!(
        ids(search("printer")).await,
        [a, b],
        "title and opening text, any case"
    );
    assert_eq!(ids(search("TONER")).await, [c], "comments");
    assert_eq!(
        ids(search("50%")).await,
        Vec::<u64>::new(),
        "no pattern characters"
    );
    let assignee = TicketFilter {
        assignee: Some(tina.clone()),
        ..Default::default()
    };
    assert_eq!(ids(assignee).await, [a]);
    let urgent = TicketFilter {
        priority: Some(Priority::Urgent),
        ..Default::default()
    };
    assert_eq!(ids(urgent).await, [c]);
    let started = TicketFilter {
        status: Some(TicketStatus::InProgress),
        ..Default::default()
    };
    assert_eq!(ids(started).await, [b]);
    let pc1_open = both(TicketFilter {
        agent: Some(pc1.clone()),
        status: Some(TicketStatus::Open),
        ..Default::default()
    });
    assert_eq!(ids(pc1_open).await, [a, c]);
    let recent = TicketFilter {
        created_after: Some(old + 1),
        ..Default::default()
    };
    assert_eq!(ids(recent).await, [b, c]);
    let older = TicketFilter {
        created_before: Some(old),
        agent: Some(pc1.clone()),
        ..Default::default()
    };
    assert_eq!(ids(older).await, [a]);
}

fn event(seq: u64, kind: EventKind, status: Status, monitor: &str) -> firstline_proto::AgentEvent {
    let mut result = CheckResult::new("disk", "/", status, format!("{status} #{seq}"));
    result.at = "2026-01-01T10:00:00Z".into();
    firstline_proto::AgentEvent {
        seq,
        monitor: monitor.into(),
        kind,
        in_incident: kind != EventKind::IncidentResolved && kind != EventKind::Result,
        result,
        diagnostics: None,
        help: None,
    }
}

async fn alert_tickets(s: &Store, agent: &str) -> Vec<crate::ticket::Ticket> {
    let f = TicketFilter {
        agent: Some(agent.into()),
        ..Default::default()
    };
    s.list_tickets(f)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.source == Source::Alert)
        .collect()
}

pub async fn ingest_is_idempotent_even_when_two_ingest_at_once(s: &Store, _: &ManualClock) {
    let pc = unique("pc");
    agent(s, &pc).await;
    let mut opened = event(1, EventKind::IncidentOpened, Status::Crit, "disk /");
    opened.diagnostics = Some(Default::default());
    let batch = vec![opened, event(2, EventKind::Result, Status::Crit, "disk /")];
    let first = s.ingest_events(&pc, batch.clone(), 3600).await.unwrap();
    assert_eq!((first.upto, first.applied, first.alerts.len()), (2, 2, 1));
    let kinds: Vec<&str> = first
        .changes
        .iter()
        .map(|c| c.entry.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        ["opened", "diagnostics"],
        "a plain result outside... is appended only in an incident"
    );
    let again = s.ingest_events(&pc, batch, 3600).await.unwrap();
    assert_eq!((again.upto, again.applied, again.changes.len()), (2, 0, 0));
    // The same new events delivered twice at once (an agent that
    // reconnected to another relay): applied once.
    let next = vec![event(3, EventKind::IncidentOpened, Status::Crit, "cpu")];
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let (s, pc, next) = (s.clone(), pc.clone(), next.clone());
            tokio::spawn(async move { s.ingest_events(&pc, next, 3600).await.unwrap() })
        })
        .collect();
    let mut applied = 0;
    for r in racers {
        let i = r.await.unwrap();
        assert_eq!(i.upto, 3);
        applied += i.applied;
    }
    assert_eq!(applied, 1);
    assert_eq!(alert_tickets(s, &pc).await.len(), 2, "one per monitor");
    let resolved = vec![event(4, EventKind::IncidentResolved, Status::Ok, "disk /")];
    let r = s.ingest_events(&pc, resolved, 3600).await.unwrap();
    let last = r.changes.last().unwrap();
    assert_eq!(last.ticket.status, "resolved");
    assert!(last
        .entry
        .body
        .as_str()
        .unwrap()
        .starts_with("open → resolved: recovered: "));
    let unknown = s
        .ingest_events(&unique("ghost"), vec![], 3600)
        .await
        .unwrap_err();
    assert!(matches!(unknown, StoreError::NotFound(Missing::Agent(_))));
}

pub async fn names_differing_only_in_case_are_one_name(s: &Store, _: &ManualClock) {
    let tag = unique("pc");
    let (lower, upper, mixed) = (
        tag.to_lowercase(),
        tag.to_uppercase(),
        format!("P{}", &tag[1..]),
    );
    let t = unique("t");
    s.add_token(&t, "secret", 10, Duration::from_secs(60))
        .await
        .unwrap();
    enroll(s, &t, &lower).await.unwrap();
    for other in [&upper, &mixed] {
        let refused = enroll(s, &t, other).await.unwrap_err();
        assert_eq!(refused, EnrollRefusal::NameTaken(lower.clone()), "{other}");
    }
    // The store itself holds one name per case-folded spelling, whatever
    // path inserts it (bulk enrollment by an admin).
    let bulk = s
        .bulk_enroll(vec![(upper.clone(), unique("serial"), 1_900_000_000)])
        .await;
    assert!(bulk.is_err(), "{bulk:?}");
    // Revoked: the name stays revoked in every case.
    assert!(
        s.revoke(PeerKind::Agent, &lower, "test")
            .await
            .unwrap()
            .exists
    );
    let refused = enroll(s, &t, &upper).await.unwrap_err();
    assert_eq!(refused, EnrollRefusal::Revoked(lower.clone()));
    // Lookups by the exact name are unchanged.
    assert!(s.agent(&lower).await.unwrap().is_some());
}

pub async fn absurd_sequence_jumps_are_refused_not_trusted(s: &Store, _: &ManualClock) {
    use super::incidents::MAX_SEQ_JUMP;
    let pc = unique("pc");
    agent(s, &pc).await;
    let ev = |seq| event(seq, EventKind::IncidentOpened, Status::Crit, "disk /");
    let first = s.ingest_events(&pc, vec![ev(1)], 3600).await.unwrap();
    assert_eq!(first.upto, 1);
    // 2^63 − 1, 2^64 − 1 (negative as an i64), a jump just past the bound:
    // refused, and nothing moves.
    for absurd in [i64::MAX as u64, u64::MAX, 1 + MAX_SEQ_JUMP + 1] {
        let e = s
            .ingest_events(&pc, vec![ev(absurd)], 3600)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Invalid(m) if m.contains("jumps")),
            "{absurd}: {e}"
        );
    }
    // Good events before an absurd one are applied; it is not.
    let mixed = vec![ev(2), ev(3), ev(u64::MAX - 1)];
    let i = s.ingest_events(&pc, mixed, 3600).await.unwrap();
    assert_eq!((i.upto, i.applied), (3, 2));
    // Later events of the agent are still taken: it was not trusted.
    let i = s.ingest_events(&pc, vec![ev(4)], 3600).await.unwrap();
    assert_eq!((i.upto, i.applied), (4, 1));
    // A jump within the bound (dropped plain results) is a gap, fine.
    let i = s
        .ingest_events(&pc, vec![ev(4 + MAX_SEQ_JUMP)], 3600)
        .await
        .unwrap();
    assert_eq!(i.upto, 4 + MAX_SEQ_JUMP);
}

pub async fn the_reopen_window_is_read_on_the_clock(s: &Store, clock: &ManualClock) {
    let pc = unique("pc");
    agent(s, &pc).await;
    let mut seq = 0;
    let mut incident = |kind, status| {
        seq += 1;
        vec![event(seq, kind, status, "disk /")]
    };
    let window = 600;
    s.ingest_events(
        &pc,
        incident(EventKind::IncidentOpened, Status::Crit),
        window,
    )
    .await
    .unwrap();
    s.ingest_events(
        &pc,
        incident(EventKind::IncidentResolved, Status::Ok),
        window,
    )
    .await
    .unwrap();
    // Back within the window: the same ticket, reopened.
    clock.advance(Duration::from_secs(599));
    let back = s
        .ingest_events(
            &pc,
            incident(EventKind::IncidentOpened, Status::Warn),
            window,
        )
        .await
        .unwrap();
    assert_eq!(
        back.changes[0].entry.body.as_str(),
        Some("resolved → open: reopened: the problem is back")
    );
    let last = back.changes.last().unwrap();
    assert_eq!(
        last.ticket.priority, "normal",
        "priority follows the severity"
    );
    assert_eq!(alert_tickets(s, &pc).await.len(), 1);
    s.ingest_events(
        &pc,
        incident(EventKind::IncidentResolved, Status::Ok),
        window,
    )
    .await
    .unwrap();
    // Back after it: a new ticket.
    clock.advance(Duration::from_secs(601));
    let later = s
        .ingest_events(
            &pc,
            incident(EventKind::IncidentOpened, Status::Crit),
            window,
        )
        .await
        .unwrap();
    assert_eq!(later.changes[0].entry.kind, "opened");
    let tickets = alert_tickets(s, &pc).await;
    assert_eq!(tickets.len(), 2);
    assert_eq!(tickets[1].priority, Priority::High);
    assert_eq!(
        tickets[1].created_at,
        clock.now(),
        "created when it reached the relay"
    );
}

pub async fn configuration_problems_open_no_ticket(s: &Store, _: &ManualClock) {
    let pc = unique("pc");
    agent(s, &pc).await;
    let mut bad = event(1, EventKind::IncidentOpened, Status::Unknown, "disk /");
    bad.result = bad.result.field("error", super::incidents::CONFIG_ERROR);
    bad.result.summary = "--warn (95) must not be above --crit (90)\nmore".into();
    let out = s.ingest_events(&pc, vec![bad], 3600).await.unwrap();
    assert_eq!((out.upto, out.changes.len(), out.alerts.len()), (1, 0, 1));
    assert!(alert_tickets(s, &pc).await.is_empty());
    let (status, summary) = s.monitor_status(&pc, "disk /").await.unwrap().unwrap();
    assert_eq!(status, "unknown");
    assert_eq!(
        summary,
        "configuration problem: --warn (95) must not be above --crit (90)"
    );
    // Every monitor of the agent, for the machine's page.
    let rows = s.monitor_statuses(&pc).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].monitor.as_str(), rows[0].status.as_str()),
        ("disk /", "unknown")
    );
    assert!(s.monitor_statuses("nobody").await.unwrap().is_empty());
}

pub async fn concurrent_audit_appends_make_one_chain(s: &Store, _: &ManualClock) {
    let who = unique("auditor");
    let chain = super::Chain::unanchored(super::ChainKey::new(b"store suite"));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (s, who, chain) = (s.clone(), who.clone(), chain.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..25 {
                    let entry = AuditEntry {
                        who: who.clone(),
                        role: Some("admin".into()),
                        agent: Some(format!("{who}-pc")),
                        action: "run check disk".into(),
                        args: format!("/{w}/{i}"),
                        outcome: "ok".into(),
                    };
                    ids.push(s.append_audit(entry, &chain).await.unwrap().id);
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for w in writers {
        ids.extend(w.await.unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 100, "every append got its own id");
    // One chain: each row links to the one before it and matches its hash.
    let rows = s.audit_chain().await.unwrap();
    let mut prev = super::audit::GENESIS.to_string();
    for row in &rows {
        assert_eq!(row.prev_hash, prev, "entry {} forks the chain", row.row.id);
        assert_eq!(
            row.row.hash(chain.key(), &row.prev_hash),
            row.hash,
            "entry {}",
            row.row.id
        );
        prev = row.hash.clone();
    }
    let ours = s
        .audit_records(Some(&format!("{who}-pc")), Some(10))
        .await
        .unwrap();
    assert_eq!(ours.len(), 10);
    assert!(ours.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    assert_eq!(ours.last().unwrap().id as i64, *ids.last().unwrap());
}

/// The help desk mirror's links (`super::helpdesk`): queued with each
/// change, claimed by one sender, progress recorded only under the claim,
/// a resolution in the help desk applied once.
pub async fn a_helpdesk_link_is_claimed_once_and_resolved_once(s: &Store, _clock: &ManualClock) {
    let pc = unique("pc");
    let c = s
        .create_ticket(new_ticket("printer jam", &pc, None))
        .await
        .unwrap();
    let id = c.ticket.id;
    s.change_ticket(id, TicketEdit::Comment("paper out".into()), "alice")
        .await
        .unwrap();
    let link = s.helpdesk_link(id).await.unwrap().unwrap();
    assert_eq!((link.remote_id, link.delivered_entry), (None, 0));
    assert!(link.latest_entry > c.entry_id, "raised by the comment");
    // Two claimers at once: one gets it (other cases' links come too).
    let claimers: Vec<_> = (0..2)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.claim_helpdesk(100_000, Duration::from_secs(60))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut mine = Vec::new();
    for c in claimers {
        mine.extend(c.await.unwrap().into_iter().filter(|p| p.ticket.id == id));
    }
    assert_eq!(mine.len(), 1, "claimed once");
    let p = mine.pop().unwrap();
    assert_eq!(p.entries.len(), 2, "opened and the comment");
    let mut link = p.link.clone();
    link.remote_id = Some(42);
    link.delivered_entry = p.entries[0].0;
    assert_eq!(
        s.save_helpdesk(link.clone(), p.lease_until - 1, Duration::from_secs(60))
            .await
            .unwrap(),
        None,
        "not under someone else's claim"
    );
    let lease = s
        .save_helpdesk(link.clone(), p.lease_until, Duration::from_secs(60))
        .await
        .unwrap()
        .expect("saved under its claim");
    assert!(lease > p.lease_until, "renewed");
    let again = s
        .claim_helpdesk(100_000, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(again.iter().all(|p| p.ticket.id != id), "still claimed");
    assert!(s.release_helpdesk(id, lease, 0, 0).await.unwrap());
    let again = s
        .claim_helpdesk(100_000, Duration::from_secs(60))
        .await
        .unwrap();
    let p = again
        .into_iter()
        .find(|p| p.ticket.id == id)
        .expect("the comment is left");
    assert_eq!(p.entries.len(), 1);
    assert_eq!(p.entries[0].1.kind, "comment");
    link.delivered_entry = p.entries[0].0;
    link.remote_status = Some("open".into());
    let lease = s
        .save_helpdesk(link, p.lease_until, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let watched = |s: Store| async move { s.helpdesk_watched(0, 1_000_000).await.unwrap() };
    assert!(
        watched(s.clone()).await.iter().all(|l| l.ticket_id != id),
        "not while claimed"
    );
    assert!(s.release_helpdesk(id, lease, 0, 0).await.unwrap());
    assert!(watched(s.clone()).await.iter().any(|l| l.ticket_id == id));
    // Resolved in the help desk, seen by two relays at once: once here.
    let resolvers: Vec<_> = (0..2)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.resolve_from_helpdesk(id, "rt:bob", "resolved in RT")
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut changes = Vec::new();
    for r in resolvers {
        changes.extend(r.await.unwrap());
    }
    assert_eq!(changes.len(), 1, "resolved once");
    assert_eq!(changes[0].entry.author, "rt:bob");
    let (t, entries) = s.ticket_detail(id).await.unwrap().unwrap();
    assert_eq!(t.status, TicketStatus::Resolved);
    assert_eq!(entries.iter().filter(|e| e.kind == "status").count(), 1);
    assert!(watched(s.clone()).await.iter().all(|l| l.ticket_id != id));
    let link = s.helpdesk_link(id).await.unwrap().unwrap();
    assert_eq!(link.remote_status.as_deref(), Some("resolved"));
    assert!(
        link.latest_entry > link.delivered_entry,
        "the resolution is queued too"
    );
}

pub async fn a_webhook_delivery_is_claimed_once(s: &Store, clock: &ManualClock) {
    // Leases are per claim; make sure what earlier cases queued is gone.
    clock.advance(Duration::from_secs(7 * 86_400));
    loop {
        let old = s
            .claim_webhooks(100, Duration::from_secs(60))
            .await
            .unwrap();
        if old.is_empty() {
            break;
        }
        for d in old {
            s.finish_webhook(d.id, Sent::Delivered).await.unwrap();
        }
    }
    let pc = unique("pc");
    let c = s
        .create_ticket(new_ticket("vpn down", &pc, None))
        .await
        .unwrap();
    let event = super::webhooks::event_id("suite", &c);
    // Two claimers at once: one gets it.
    let claimers: Vec<_> = (0..2)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(
                async move { s.claim_webhooks(10, Duration::from_secs(60)).await.unwrap() },
            )
        })
        .collect();
    let mut claimed = Vec::new();
    for c in claimers {
        claimed.extend(c.await.unwrap());
    }
    let ours: Vec<&Delivery> = claimed.iter().filter(|d| d.event_id == event).collect();
    assert_eq!(ours.len(), 1, "{claimed:?}");
    let d = ours[0].clone();
    let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(body["ticket_key"], format!("suite-{}", c.ticket.id));
    assert_eq!(body["entry"]["kind"], "opened");
    // Claimed: nobody else gets it until the lease runs out.
    assert!(s
        .claim_webhooks(10, Duration::from_secs(60))
        .await
        .unwrap()
        .iter()
        .all(|x| x.id != d.id));
    clock.advance(Duration::from_secs(61));
    let again = s.claim_webhooks(10, Duration::from_secs(60)).await.unwrap();
    assert!(
        again.iter().any(|x| x.id == d.id),
        "a dead claimer's lease runs out"
    );
    // Failed: due again after the backoff, one attempt more.
    s.finish_webhook(d.id, Sent::Failed { backoff_secs: 5 })
        .await
        .unwrap();
    assert!(s
        .claim_webhooks(10, Duration::from_secs(60))
        .await
        .unwrap()
        .iter()
        .all(|x| x.id != d.id));
    clock.advance(Duration::from_secs(5));
    let retry = s.claim_webhooks(10, Duration::from_secs(60)).await.unwrap();
    let retried = retry.iter().find(|x| x.id == d.id).unwrap();
    assert_eq!(retried.attempts, 1);
    s.finish_webhook(d.id, Sent::Delivered).await.unwrap();
    clock.advance(Duration::from_secs(3600));
    let left = s
        .claim_webhooks(100, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(left.iter().all(|x| x.id != d.id), "delivered: gone");
    // Queued once per event id, whatever happens to the change after.
    assert!(s.webhook_backlog().await.unwrap() >= left.len() as u64);
}

// ---- tags, facts, listings (store/fleet.rs) ----

fn select(text: &str) -> firstline_proto::Selector {
    firstline_proto::Selector::parse(text).unwrap()
}

async fn selected(s: &Store, text: &str) -> Vec<String> {
    s.select_agents(&select(text))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect()
}

pub async fn tags_from_tokens_and_admins(s: &Store, _: &ManualClock) {
    let (floor, lab) = (unique("floor"), unique("lab"));
    let token = unique("t");
    let tags = vec![lab.clone(), floor.clone()];
    s.add_token_tagged(&token, "secret", 2, Duration::from_secs(60), tags)
        .await
        .unwrap();
    let listed = s.tokens().await.unwrap();
    let info = listed.iter().find(|t| t.id == token).unwrap();
    let mut sorted = vec![floor.clone(), lab.clone()];
    sorted.sort();
    assert_eq!(info.tags, sorted, "a token's tags, sorted");
    let (pc1, pc2, pc3) = (unique("pc"), unique("pc"), unique("pc"));
    enroll(s, &token, &pc1).await.unwrap();
    enroll(s, &token, &pc2).await.unwrap();
    agent(s, &pc3).await;
    let a = s.agent(&pc1).await.unwrap().unwrap();
    assert!(a.tags.is_empty(), "`agent` reads no tags: listings do");
    let tagged = selected(s, &format!("tag={floor}")).await;
    assert_eq!(tagged, sorted_names(&[&pc1, &pc2]), "copied at enrollment");
    // Admins add and remove; the tags after come back sorted.
    let extra = unique("extra");
    let after = s
        .tag_agent(&pc1, vec![extra.clone()], vec![lab.clone()])
        .await
        .unwrap();
    let mut want = vec![floor.clone(), extra.clone()];
    want.sort();
    assert_eq!(after, want);
    assert_eq!(
        selected(s, &format!("tag={lab}")).await,
        std::slice::from_ref(&pc2)
    );
    assert_eq!(
        selected(s, &format!("tag={floor},tag={extra}")).await,
        std::slice::from_ref(&pc1),
        "terms are ANDed"
    );
    // Adding what it has, removing what it has not: no change, no error.
    let same = s
        .tag_agent(&pc1, vec![floor.clone()], vec![unique("never")])
        .await
        .unwrap();
    assert_eq!(same, want);
    // Refusals change nothing.
    let invalid = s
        .tag_agent(&pc1, vec!["no good".into()], vec![])
        .await
        .unwrap_err();
    assert!(matches!(invalid, StoreError::Invalid(_)), "{invalid}");
    let both = s
        .tag_agent(&pc1, vec![extra.clone()], vec![extra.clone()])
        .await
        .unwrap_err();
    assert!(
        both.to_string().contains("both added and removed"),
        "{both}"
    );
    let many: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    let too_many = s.tag_agent(&pc3, many.clone(), vec![]).await.unwrap_err();
    assert!(too_many.to_string().contains("at most 32"), "{too_many}");
    let filled = s
        .tag_agent(&pc3, many[..32].to_vec(), vec![])
        .await
        .unwrap();
    assert_eq!(filled.len(), 32);
    let over = s
        .tag_agent(&pc3, vec!["one-more".into()], vec![])
        .await
        .unwrap_err();
    assert!(over.to_string().contains("33 tags"), "{over}");
    let ghost = s
        .tag_agent(&unique("ghost"), vec!["x".into()], vec![])
        .await
        .unwrap_err();
    assert!(matches!(ghost, StoreError::NotFound(Missing::Agent(_))));
    // Removed, its name freed: enrolled again, it starts from its new
    // token's tags.
    s.remove_agent(&pc1, "test").await.unwrap().unwrap();
    assert!(s.tag_agent(&pc1, vec!["x".into()], vec![]).await.is_err());
    agent(s, &pc1).await;
    let again = s
        .select_agents(&select(&format!("name={pc1}")))
        .await
        .unwrap();
    assert!(again[0].tags.is_empty(), "{again:?}");
}

fn sorted_names(names: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    v.sort();
    v
}

pub async fn facts_are_kept_per_agent(s: &Store, clock: &ManualClock) {
    let pc = unique("pc");
    agent(s, &pc).await;
    let listed = |s: &Store, pc: &str| {
        let (s, sel) = (s.clone(), select(&format!("name={pc}")));
        async move { s.select_agents(&sel).await.unwrap().remove(0) }
    };
    assert_eq!(listed(s, &pc).await.facts, Facts::default(), "none yet");
    let facts = Facts {
        kernel: Some("6.1.0-18-amd64".into()),
        addresses: vec!["192.0.2.7/24".into(), "2001:db8::7/64".into()],
        uptime_secs: Some(3600),
        reported_at: Some("ignored".into()),
    };
    s.agent_facts(&pc, facts.clone()).await.unwrap();
    let a = listed(s, &pc).await;
    assert_eq!(
        a.facts,
        Facts {
            reported_at: Some(crate::clock::rfc3339(clock.now())),
            ..facts
        }
    );
    // The next connection's report replaces it.
    clock.advance(Duration::from_secs(10));
    let newer = Facts {
        kernel: Some("6.12.0".into()),
        addresses: vec![],
        uptime_secs: Some(5),
        reported_at: None,
    };
    s.agent_facts(&pc, newer.clone()).await.unwrap();
    let a = listed(s, &pc).await;
    assert_eq!(a.facts.kernel, newer.kernel);
    assert!(a.facts.addresses.is_empty());
    assert_eq!(a.facts.uptime_secs, Some(5));
}

pub async fn selection_health_and_open_tickets(s: &Store, _: &ManualClock) {
    // One run's agents: names of a prefix of their own.
    let run = format!("{:08x}", rand::random::<u32>());
    let name = |n: &str| format!("sel{run}-{n}");
    let (quiet, sick, warm, ok) = (name("quiet"), name("sick"), name("warm"), name("ok"));
    for a in [&quiet, &sick, &warm, &ok] {
        agent(s, a).await;
    }
    let hello = |os: &str| Presence {
        version: "1".into(),
        os: os.into(),
        hostname: "h".into(),
    };
    s.agent_seen(&sick, hello("Debian GNU/Linux 12"))
        .await
        .unwrap();
    s.agent_seen(&warm, hello("Fedora Linux 40 [Workstation]"))
        .await
        .unwrap();
    s.agent_seen(&ok, hello("debian 13")).await.unwrap();
    // sick: one monitor crit (an incident), one ok; warm: warn and unknown;
    // ok: ok; quiet: no monitor at all.
    let ingest = |agent: &str, events| {
        let (s, agent) = (s.clone(), agent.to_string());
        async move { s.ingest_events(&agent, events, 3600).await.unwrap() }
    };
    ingest(
        &sick,
        vec![
            event(1, EventKind::IncidentOpened, Status::Crit, "disk /"),
            event(2, EventKind::Result, Status::Ok, "cpu"),
        ],
    )
    .await;
    ingest(
        &warm,
        vec![
            event(1, EventKind::Result, Status::Warn, "disk /"),
            event(2, EventKind::Result, Status::Unknown, "cpu"),
        ],
    )
    .await;
    ingest(&ok, vec![event(1, EventKind::Result, Status::Ok, "cpu")]).await;
    // A person's ticket on sick, another on ok that is closed.
    let person = |agent: &str| NewTicket {
        title: "user cannot print".into(),
        agent: Some(agent.to_string()),
        check: None,
        monitor: None,
        priority: Priority::Normal,
        source: Source::Technician,
        author: "tina".into(),
        body: None,
        requester: None,
    };
    s.create_ticket(person(&sick)).await.unwrap();
    let closed = s.create_ticket(person(&ok)).await.unwrap();
    let close = crate::ticket::TicketEdit::Status {
        to: TicketStatus::Closed,
        note: String::new(),
    };
    s.change_ticket(closed.ticket.id, close, "tina")
        .await
        .unwrap();

    let all = s
        .select_agents(&select(&format!("name=sel{run}-*")))
        .await
        .unwrap();
    let row = |n: &str| all.iter().find(|a| a.name == n).unwrap().clone();
    assert_eq!(all.len(), 4);
    assert_eq!(
        all.iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
        sorted_names(&[&quiet, &sick, &warm, &ok]),
        "by name"
    );
    assert_eq!(row(&quiet).health, Status::Unknown, "no monitor");
    assert_eq!(row(&sick).health, Status::Crit);
    assert_eq!(
        row(&warm).health,
        Status::Warn,
        "warn is worse than unknown"
    );
    assert_eq!(row(&ok).health, Status::Ok);
    assert_eq!((row(&sick).open_incidents, row(&sick).open_tickets), (1, 1));
    assert_eq!((row(&ok).open_incidents, row(&ok).open_tickets), (0, 0));
    assert!(
        all.iter().all(|a| !a.online),
        "online is the relay's to fill"
    );

    let pick = |text: String| async move { selected(s, &text).await };
    assert_eq!(
        pick(format!("name=sel{run}-*,health=crit")).await,
        std::slice::from_ref(&sick)
    );
    assert_eq!(
        pick(format!("name=sel{run}-*,health=unknown")).await,
        std::slice::from_ref(&quiet)
    );
    assert_eq!(
        pick(format!("name=sel{run}-*,os=debian*")).await,
        sorted_names(&[&sick, &ok]),
        "OS globs ignore case"
    );
    assert_eq!(
        pick(format!("name=sel{run}-*,os=*[workstation]")).await,
        std::slice::from_ref(&warm),
        "`[` is itself"
    );
    assert_eq!(
        pick(format!("name=sel{run}-?ick")).await,
        std::slice::from_ref(&sick)
    );
    assert_eq!(
        pick(format!("name=sel{run}-sick,name=*ok")).await,
        Vec::<String>::new()
    );
    assert_eq!(
        pick(format!("name=sel{run}_*")).await,
        Vec::<String>::new(),
        "`_` is itself, not any character"
    );
    // `online` is not the store's: it lets every agent through.
    assert_eq!(
        pick(format!("name=sel{run}-ok,online=true")).await,
        std::slice::from_ref(&ok)
    );
    assert_eq!(
        pick(format!("name=sel{run}-ok,online=false")).await,
        std::slice::from_ref(&ok)
    );
    // Resolved, the incident counts no more; the monitor's status does.
    ingest(
        &sick,
        vec![event(3, EventKind::IncidentResolved, Status::Ok, "disk /")],
    )
    .await;
    let after = s
        .select_agents(&select(&format!("name={sick}")))
        .await
        .unwrap();
    assert_eq!((after[0].health, after[0].open_incidents), (Status::Ok, 0));
}

// ---- actions queued for offline agents (store/queue.rs) ----

fn queued_run(agent: &str, ttl_secs: u64) -> NewQueued {
    NewQueued {
        agent: agent.into(),
        action: firstline_proto::action::Action::Run {
            check: "disk".into(),
            args: vec!["/var".into()],
        },
        ticket: Some(7),
        operator: "alice".into(),
        role: Role::Technician,
        ttl_secs,
    }
}

pub async fn queued_actions_are_delivered_once_expire_or_are_cancelled(
    s: &Store,
    clock: &ManualClock,
) {
    use firstline_proto::action::QueueState;
    let (a, b, c) = (unique("pc"), unique("pc"), unique("pc"));
    for n in [&a, &b, &c] {
        agent(s, n).await;
    }
    fn err<T: std::fmt::Debug>(r: StoreResult<T>) -> StoreError {
        r.unwrap_err()
    }
    assert!(matches!(
        err(s.enqueue_action(queued_run(&unique("nobody"), 60)).await),
        StoreError::NotFound(Missing::Agent(_))
    ));
    for ttl in [0, super::queue::MAX_TTL_SECS + 1] {
        assert!(matches!(
            err(s.enqueue_action(queued_run(&a, ttl)).await),
            StoreError::Invalid(_)
        ));
    }
    assert!(s.revoke(PeerKind::Agent, &c, "test").await.unwrap().exists);
    let e = err(s.enqueue_action(queued_run(&c, 60)).await);
    assert!(
        matches!(&e, StoreError::Conflict(m) if m.contains("revoked")),
        "{e}"
    );

    let q1 = s.enqueue_action(queued_run(&a, 60)).await.unwrap();
    assert_eq!(q1.state, QueueState::Pending);
    assert_eq!((q1.ticket, q1.role), (Some(7), Role::Technician));
    assert_eq!(q1.expires_at, crate::clock::rfc3339(clock.now() + 60));
    let q2 = s.enqueue_action(queued_run(&a, 3600)).await.unwrap();
    let q3 = s.enqueue_action(queued_run(&b, 60)).await.unwrap();
    let agents = s.pending_agents().await.unwrap();
    assert!(agents.contains(&a) && agents.contains(&b), "{agents:?}");
    let pending = s.queued_actions(false).await.unwrap();
    for q in [&q1, &q2, &q3] {
        assert!(pending.contains(q), "{pending:?}");
    }

    // Cancel: once, and only a pending one.
    let cancelled = s.cancel_queued(q2.id).await.unwrap().unwrap();
    assert_eq!(cancelled.state, QueueState::Cancelled);
    assert!(cancelled.ended_at.is_some());
    let e = err(s.cancel_queued(q2.id).await);
    assert!(
        matches!(&e, StoreError::Conflict(m) if m.contains("cancelled")),
        "{e}"
    );
    assert_eq!(s.cancel_queued(i64::MAX as u64).await.unwrap(), None);

    // Two relays claim at once: q1 is delivered to one of them only.
    let claimers: Vec<_> = (0..2)
        .map(|_| {
            let (s, a) = (s.clone(), a.clone());
            tokio::spawn(async move { s.claim_queued(&a, 100).await.unwrap() })
        })
        .collect();
    let mut claimed = Vec::new();
    for c in claimers {
        claimed.extend(c.await.unwrap());
    }
    let ids: Vec<u64> = claimed.iter().map(|q| q.id).collect();
    assert_eq!(ids, vec![q1.id], "{claimed:?}");
    assert_eq!(claimed[0].state, QueueState::Delivered);
    assert!(
        s.claim_queued(&a, 100).await.unwrap().is_empty(),
        "at most once"
    );
    s.finish_queued(q1.id, "ok: /var 40% used").await.unwrap();
    let all = s.queued_actions(true).await.unwrap();
    let d = all.iter().find(|q| q.id == q1.id).unwrap();
    assert_eq!(d.state, QueueState::Delivered);
    assert_eq!(d.outcome.as_deref(), Some("ok: /var 40% used"));
    assert!(!s
        .queued_actions(false)
        .await
        .unwrap()
        .iter()
        .any(|q| q.id == q1.id || q.id == q2.id));

    // Past its time: never claimed; the sweep expires it once.
    clock.advance(Duration::from_secs(61));
    assert!(s.claim_queued(&b, 100).await.unwrap().is_empty());
    let expired = s.expire_queued(1000).await.unwrap();
    let ours: Vec<_> = expired.iter().filter(|q| q.agent == b).collect();
    assert_eq!(ours.len(), 1, "{expired:?}");
    assert_eq!(ours[0].id, q3.id);
    assert_eq!(ours[0].state, QueueState::Expired);
    assert!(!s
        .expire_queued(1000)
        .await
        .unwrap()
        .iter()
        .any(|q| q.id == q3.id));
    let e = err(s.cancel_queued(q3.id).await);
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");

    // A bound on what waits for one agent.
    for _ in 0..super::queue::MAX_PENDING_PER_AGENT {
        s.enqueue_action(queued_run(&b, 60)).await.unwrap();
    }
    let e = err(s.enqueue_action(queued_run(&b, 60)).await);
    assert!(
        matches!(&e, StoreError::Conflict(m) if m.contains("at most")),
        "{e}"
    );
}

pub async fn central_monitor_sets_and_reports(s: &Store, clock: &ManualClock) {
    use firstline_proto::central::{CentralMonitor, CentralReport, MonitorSpec, MonitorState};
    let (tag, set) = (unique("cm"), unique("set"));
    let (pc1, pc2) = (unique("pc"), unique("pc"));
    let alice = unique("alice");
    s.add_operator(&alice, Role::Admin).await.unwrap();
    agent(s, &pc1).await;
    agent(s, &pc2).await;
    s.tag_agent(&pc1, vec![tag.clone()], vec![]).await.unwrap();
    let spec = |port: u16| MonitorSpec {
        name: None,
        check: "tcp".into(),
        args: vec![format!("127.0.0.1:{port}")],
        every: "5s".into(),
        fail_after: Some(1),
        recover_after: None,
    };
    let new = |select: &str, port: u16| monitors::NewSet {
        name: set.clone(),
        selector: select.into(),
        toml: format!("# port {port}"),
        monitors: vec![spec(port)],
        role: Role::Admin,
        author: alice.clone(),
    };
    // Refused: what a set may not select by, a bad name, no monitor.
    let e = s
        .put_monitor_set(new(&format!("tag={tag},online=true"), 9))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Invalid(m) if m.contains("online")),
        "{e}"
    );
    let mut bad = new(&format!("tag={tag}"), 9);
    bad.name = "no spaces".into();
    assert!(matches!(
        s.put_monitor_set(bad).await,
        Err(StoreError::Invalid(_))
    ));
    let mut empty = new(&format!("tag={tag}"), 9);
    empty.monitors.clear();
    assert!(matches!(
        s.put_monitor_set(empty).await,
        Err(StoreError::Invalid(_))
    ));

    let (info, replaced) = s
        .put_monitor_set(new(&format!("tag={tag}"), 9))
        .await
        .unwrap();
    assert!(!replaced);
    assert_eq!(
        (info.select.as_str(), info.updated_by.as_str()),
        (format!("tag={tag}").as_str(), alice.as_str())
    );
    let (sets, digest) = s.central_monitors(&pc1).await.unwrap();
    assert_eq!(sets.len(), 1);
    assert_eq!(
        (sets[0].name.as_str(), sets[0].role),
        (set.as_str(), Role::Admin)
    );
    assert_eq!(sets[0].monitors, vec![spec(9)]);
    assert_ne!(digest, "-");
    let (none, nothing) = s.central_monitors(&pc2).await.unwrap();
    assert!(none.is_empty() && nothing == "-", "not selected");
    assert!(s.central_monitors("nobody").await.unwrap().0.is_empty());

    // Not reported yet: listed, not current.
    let mine = |all: Vec<firstline_proto::central::AgentMonitorReport>| {
        all.into_iter()
            .filter(|a| a.agent == pc1 || a.agent == pc2)
            .collect::<Vec<_>>()
    };
    let (listed, agents) = s.monitors_overview().await.unwrap();
    assert!(listed.iter().any(|l| l.name == set && l.toml == "# port 9"));
    let agents = mine(agents);
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(agents[0].sets, vec![set.clone()]);
    assert!(!agents[0].current && agents[0].reported_at.is_none());

    // Its report, kept (escaped to one line) and current.
    clock.advance(Duration::from_secs(5));
    let report = CentralReport {
        digest: digest.clone(),
        monitors: vec![CentralMonitor {
            set: set.clone(),
            monitor: "tcp 127.0.0.1:9".into(),
            check: "tcp".into(),
            state: MonitorState::Refused,
            reason: Some("no\nway".into()),
        }],
    };
    s.record_monitor_report(&pc1, report).await.unwrap();
    let agents = mine(s.monitors_overview().await.unwrap().1);
    assert!(agents[0].current, "{agents:?}");
    assert_eq!(agents[0].monitors[0].state, MonitorState::Refused);
    assert!(!agents[0].monitors[0]
        .reason
        .as_deref()
        .unwrap()
        .contains('\n'));

    // Replaced: a new digest, the report no longer current.
    let (_, replaced) = s
        .put_monitor_set(new(&format!("tag={tag}"), 10))
        .await
        .unwrap();
    assert!(replaced);
    let (_, changed) = s.central_monitors(&pc1).await.unwrap();
    assert_ne!(changed, digest);
    let agents = mine(s.monitors_overview().await.unwrap().1);
    assert!(!agents[0].current && agents[0].reported_at.is_some());

    // Removed: once.
    let gone = s.remove_monitor_set(&set).await.unwrap().unwrap();
    assert_eq!(gone.monitors, vec![spec(10)]);
    assert!(s.remove_monitor_set(&set).await.unwrap().is_none());
    assert!(s.central_monitors(&pc1).await.unwrap().0.is_empty());
    // The report (of monitors) keeps it listed, no longer current.
    let agents = mine(s.monitors_overview().await.unwrap().1);
    assert_eq!(agents.len(), 1);
    assert!(agents[0].sets.is_empty() && !agents[0].current);
}

/// A runbook's verdict entry body.
fn verdict_body(
    kind: firstline_proto::runbook::VerdictKind,
    cause: &str,
    team: &str,
    agent: &str,
) -> String {
    serde_json::to_string(&firstline_proto::runbook::Verdict {
        runbook: "cant-print".into(),
        agent: agent.into(),
        verdict: kind,
        cause: cause.into(),
        team: team.into(),
        message: "m".into(),
        user_message: String::new(),
        kb: None,
        params: vec![],
        dry_run: false,
        steps: vec![],
    })
    .unwrap()
}

/// `firstline report` over a history whose figures are known: tickets
/// opened, responded to, escalated, fixed, reopened and resolved at chosen
/// times. Its clock is twenty years after the other cases' (which may share
/// the database): the window holds this case's tickets only, and the
/// others' open ones fall in the backlog's oldest bucket, not asserted.
pub async fn support_report_from_a_scripted_history(s: &Store, clock: &ManualClock) {
    use firstline_proto::runbook::VerdictKind;
    const T0: i64 = 1_800_000_000 + 20 * 365 * 86_400;
    const DAY: i64 = 86_400;
    const END: i64 = T0 + 10 * DAY;
    let at = |t: i64| clock.set(T0 + t);
    let (pc, tina, bob, alice) = (unique("pc"), unique("tina"), unique("bob"), unique("alice"));
    agent(s, &pc).await;
    s.add_operator(&tina, Role::Technician).await.unwrap();
    s.add_operator(&bob, Role::Technician).await.unwrap();
    let mut seq = 0;
    let mut incident = |kind, status, monitor: &str| {
        seq += 1;
        vec![event(seq, kind, status, monitor)]
    };
    let open = |title: &str, author: &str, priority| NewTicket {
        title: title.into(),
        agent: Some(pc.clone()),
        check: None,
        monitor: None,
        priority,
        source: Source::Technician,
        author: author.into(),
        body: None,
        requester: None,
    };
    let edit = |c: TicketChange| TicketEdit::try_from(c).unwrap();
    let resolve = || edit(TicketChange::Resolve { comment: None });
    let comment = || {
        edit(TicketChange::Comment {
            text: "on it".into(),
        })
    };
    let fix = {
        let mut r = CheckResult::new("flush-dns", "", Status::Ok, "flushed");
        r.changed = vec!["dns cache flushed".into()];
        serde_json::to_string(&r).unwrap()
    };
    let window = 3600;

    // H, before the window (31 days before its end): escalated, resolved;
    // none of it counts.
    clock.set(END - 31 * DAY);
    let h = s
        .create_ticket(open("old", &tina, Priority::Normal))
        .await
        .unwrap();
    let v = verdict_body(VerdictKind::Escalate, "printer", "desktop", &pc);
    s.append_to_ticket(h.ticket.id, "verdict", &tina, &v, None)
        .await
        .unwrap();
    s.change_ticket(h.ticket.id, resolve(), &tina)
        .await
        .unwrap();

    // A: an alert that recovered by itself after 600 s.
    at(0);
    s.ingest_events(
        &pc,
        incident(EventKind::IncidentOpened, Status::Crit, "disk /"),
        window,
    )
    .await
    .unwrap();
    at(600);
    s.ingest_events(
        &pc,
        incident(EventKind::IncidentResolved, Status::Ok, "disk /"),
        window,
    )
    .await
    .unwrap();

    // B: comment at +300, one runbook at +600, resolved at +1000.
    at(1000);
    let b = s
        .create_ticket(open("b", &tina, Priority::Normal))
        .await
        .unwrap()
        .ticket
        .id;
    at(1300);
    s.change_ticket(b, comment(), &tina).await.unwrap();
    at(1600);
    let v = verdict_body(VerdictKind::Resolved, "fixed", "", &pc);
    s.append_to_ticket(b, "verdict", &tina, &v, None)
        .await
        .unwrap();
    at(2000);
    s.change_ticket(b, resolve(), &tina).await.unwrap();

    // C: escalated at +60, started by bob, resolved at +7000.
    at(3000);
    let c = s
        .create_ticket(open("c", &tina, Priority::High))
        .await
        .unwrap()
        .ticket
        .id;
    at(3060);
    let v = verdict_body(VerdictKind::Escalate, "no-default-route", "network", &pc);
    s.append_to_ticket(c, "verdict", &tina, &v, None)
        .await
        .unwrap();
    at(4000);
    s.change_ticket(c, edit(TicketChange::Start {}), &bob)
        .await
        .unwrap();
    at(10_000);
    s.change_ticket(c, resolve(), &bob).await.unwrap();

    // D: someone who is no operator helps themselves: a runbook at +30,
    // resolved at +100.
    at(20_000);
    let d = s
        .create_ticket(open("d", &alice, Priority::Low))
        .await
        .unwrap()
        .ticket
        .id;
    at(20_030);
    let v = verdict_body(VerdictKind::Resolved, "fixed", "", &pc);
    s.append_to_ticket(d, "verdict", &alice, &v, None)
        .await
        .unwrap();
    at(20_100);
    s.change_ticket(d, resolve(), &alice).await.unwrap();

    // E: an alert, a fix at +200, recovered at +500, back at +700
    // (reopened), bob comments, recovered again at +2000.
    at(30_000);
    let e = s
        .ingest_events(
            &pc,
            incident(EventKind::IncidentOpened, Status::Crit, "dns"),
            window,
        )
        .await
        .unwrap()
        .changes[0]
        .ticket
        .id;
    at(30_200);
    s.append_to_ticket(e, "result", &pc, &fix, None)
        .await
        .unwrap();
    at(30_500);
    s.ingest_events(
        &pc,
        incident(EventKind::IncidentResolved, Status::Ok, "dns"),
        window,
    )
    .await
    .unwrap();
    at(30_700);
    s.ingest_events(
        &pc,
        incident(EventKind::IncidentOpened, Status::Warn, "dns"),
        window,
    )
    .await
    .unwrap();
    at(31_000);
    s.change_ticket(e, comment(), &bob).await.unwrap();
    at(32_000);
    s.ingest_events(
        &pc,
        incident(EventKind::IncidentResolved, Status::Ok, "dns"),
        window,
    )
    .await
    .unwrap();

    // F: urgent, left open, never answered.
    at(40_000);
    s.create_ticket(open("f", &tina, Priority::Urgent))
        .await
        .unwrap();

    // I: two actions (a runbook at +100, a fix at +200), resolved at +300,
    // closed later (the resolution stays the first).
    at(50_000);
    let i = s
        .create_ticket(open("i", &tina, Priority::Normal))
        .await
        .unwrap()
        .ticket
        .id;
    at(50_100);
    let v = verdict_body(VerdictKind::UserAction, "paper", "", &pc);
    s.append_to_ticket(i, "verdict", &tina, &v, None)
        .await
        .unwrap();
    at(50_200);
    s.append_to_ticket(i, "result", &pc, &fix, None)
        .await
        .unwrap();
    at(50_300);
    s.change_ticket(i, resolve(), &tina).await.unwrap();
    at(50_400);
    s.change_ticket(i, edit(TicketChange::Close {}), &tina)
        .await
        .unwrap();

    // J: closed by a technician at +50 without being resolved.
    at(60_000);
    let j = s
        .create_ticket(open("j", &alice, Priority::Normal))
        .await
        .unwrap()
        .ticket
        .id;
    at(60_050);
    s.change_ticket(j, edit(TicketChange::Close {}), &tina)
        .await
        .unwrap();

    // G: opened half an hour before the end, started at +100.
    clock.set(END - 1800);
    let g = s
        .create_ticket(open("g", &bob, Priority::Normal))
        .await
        .unwrap()
        .ticket
        .id;
    clock.set(END - 1700);
    s.change_ticket(g, edit(TicketChange::Start {}), &bob)
        .await
        .unwrap();

    clock.set(END);
    let r = s.support_report(30 * DAY as u64).await.unwrap();
    assert_eq!(r.until, crate::clock::rfc3339(END));
    assert_eq!(r.opened, 9, "{r:#?}");
    let sources: Vec<(&str, u64)> = r
        .by_source
        .iter()
        .map(|x| (x.source.as_str(), x.count))
        .collect();
    assert_eq!(sources, [("alert", 2), ("technician", 7)]);
    assert_eq!(r.resolved, 7);
    assert_eq!(r.first_contact, 4, "A, B, D, J");
    assert_eq!(r.first_contact_rate, Some(4.0 / 7.0));
    assert_eq!(
        (r.no_human, r.no_human_monitor, r.no_human_self_service),
        (2, 1, 1),
        "A by its monitor, D by self-service"
    );
    assert_eq!(r.no_human_share, Some(2.0 / 7.0));
    // Responses: B 300, C 60, D 30, E 200, G 100, I 100, J 50.
    let fr = &r.first_response;
    assert_eq!(
        (fr.count, fr.median_secs, fr.p90_secs),
        (7, Some(100), Some(300))
    );
    // Resolutions: A 600, B 1000, C 7000, D 100, E 2000, I 300, J 50.
    let rs = &r.resolution;
    assert_eq!(
        (rs.count, rs.median_secs, rs.p90_secs),
        (7, Some(600), Some(7000))
    );
    let young: Vec<(&str, &str, u64)> = r
        .backlog
        .iter()
        .filter(|b| b.age != ">30d")
        .map(|b| (b.age.as_str(), b.priority.as_str(), b.count))
        .collect();
    assert_eq!(young, [("<1h", "normal", 1), ("7d-30d", "urgent", 1)]);
    assert!(r.backlog_total >= 2);
    let esc: Vec<(&str, &str, u64)> = r
        .escalations
        .iter()
        .map(|x| (x.cause.as_str(), x.team.as_str(), x.count))
        .collect();
    assert_eq!(esc, [("no-default-route", "network", 1)]);

    // A window of a day (from END - 1 d) holds G only.
    let day = s.support_report(DAY as u64).await.unwrap();
    assert_eq!(
        (day.opened, day.resolved, day.first_contact_rate),
        (1, 0, None)
    );
    // Tickets by state, for /metrics.
    let counts = s.ticket_counts().await.unwrap();
    let of = |st: &str| counts.iter().find(|(x, _)| x == st).map_or(0, |(_, n)| *n);
    assert!(
        of("open") >= 1 && of("in_progress") >= 1 && of("closed") >= 2,
        "{counts:?}"
    );
}

// ---- authority that dies with its grantor ----

/// An action is queued for one enrollment of a name: removing or revoking
/// the agent cancels it (saying who did), and a machine enrolled under the
/// name later never gets it — nor one left pending by hand.
pub async fn queued_actions_are_bound_to_the_enrollment(s: &Store, _: &ManualClock) {
    use firstline_proto::action::QueueState;
    let (a, b) = (unique("pc"), unique("pc"));
    agent(s, &a).await;
    agent(s, &b).await;
    let old = s.enqueue_action(queued_run(&a, 600)).await.unwrap();

    let removed = s.remove_agent(&a, "ada").await.unwrap().unwrap();
    assert_eq!(removed.cancelled.len(), 1, "{removed:?}");
    let c = &removed.cancelled[0];
    assert_eq!((c.id, c.state), (old.id, QueueState::Cancelled));
    let why = c.outcome.clone().unwrap_or_default();
    assert!(why.contains("removed by ada"), "{why}");

    // Another machine enrolls under the name: a new enrollment.
    agent(s, &a).await;
    let (name, stale) = (a.clone(), old.id as i64);
    // A row of the old enrollment put back to pending (a database edited
    // by hand, a race): never claimed by the new one.
    s.write(move |tx| {
        let row = tx.queued(stale)?.expect("the old row");
        tx.insert_queued(&super::tx::QueueRow {
            state: "pending".into(),
            ended_at: None,
            outcome: None,
            ..row
        })
    })
    .await
    .unwrap();
    let fresh = s.enqueue_action(queued_run(&a, 600)).await.unwrap();
    let claimed = s.claim_queued(&name, 100).await.unwrap();
    assert_eq!(
        claimed.iter().map(|q| q.id).collect::<Vec<_>>(),
        vec![fresh.id],
        "only the action queued for this enrollment"
    );

    // Renewal keeps the enrollment: what is queued still reaches it.
    let again = s.enqueue_action(queued_run(&b, 600)).await.unwrap();
    s.renew_agent(&b, sign(s.now())).await.unwrap().unwrap();
    let claimed = s.claim_queued(&b, 100).await.unwrap();
    assert_eq!(
        claimed.iter().map(|q| q.id).collect::<Vec<_>>(),
        vec![again.id]
    );

    // Revocation cancels too.
    let gone = s.enqueue_action(queued_run(&b, 600)).await.unwrap();
    let revoked = s.revoke(PeerKind::Agent, &b, "bea").await.unwrap();
    assert_eq!(
        revoked.cancelled.iter().map(|q| q.id).collect::<Vec<_>>(),
        vec![gone.id]
    );
    let why = revoked.cancelled[0].outcome.clone().unwrap_or_default();
    assert!(why.contains("revoked by bea"), "{why}");
    assert!(s.claim_queued(&b, 100).await.unwrap().is_empty());
}

/// A central monitor set holds while its author is an admin: demoted or
/// revoked, their sets are suspended (with why) and sent to no agent —
/// also when the role comes back — until an admin sets them again.
pub async fn monitor_sets_die_with_their_authors_authority(s: &Store, _: &ManualClock) {
    use firstline_proto::central::MonitorSpec;
    let (ada, bob) = (unique("ada"), unique("bob"));
    s.add_operator(&ada, Role::Admin).await.unwrap();
    s.add_operator(&bob, Role::Admin).await.unwrap();
    let (tag, pc) = (unique("auth"), unique("pc"));
    agent(s, &pc).await;
    s.tag_agent(&pc, vec![tag.clone()], vec![]).await.unwrap();
    let (x, y) = (unique("x"), unique("y"));
    let new = |name: &str, author: &str| monitors::NewSet {
        name: name.into(),
        selector: format!("tag={tag}"),
        toml: "# t".into(),
        monitors: vec![MonitorSpec {
            name: None,
            check: "disk".into(),
            args: vec!["/".into()],
            every: "5m".into(),
            fail_after: None,
            recover_after: None,
        }],
        role: Role::Admin,
        author: author.into(),
    };
    s.put_monitor_set(new(&x, &ada)).await.unwrap();
    s.put_monitor_set(new(&y, &bob)).await.unwrap();
    let sent = |s: &Store| {
        let pc = pc.clone();
        let s = s.clone();
        async move {
            let (sets, _) = s.central_monitors(&pc).await.unwrap();
            sets.into_iter().map(|c| c.name).collect::<Vec<_>>()
        }
    };
    let mut both = vec![x.clone(), y.clone()];
    both.sort();
    assert_eq!(sent(s).await, both);

    // Demoted: suspended, with who and why.
    s.set_operator_role(&ada, Role::Technician, &bob)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sent(s).await, vec![y.clone()]);
    let (sets, agents) = s.monitors_overview().await.unwrap();
    let shown = |n: &str| sets.iter().find(|i| i.name == n).unwrap().clone();
    let why = shown(&x).suspended.unwrap_or_default();
    assert!(
        why.contains(&ada) && why.contains("technician") && why.contains(&bob),
        "{why}"
    );
    assert_eq!(shown(&y).suspended, None);
    let mine = agents.iter().find(|a| a.agent == pc).unwrap();
    assert_eq!(mine.sets, vec![y.clone()], "a suspended set selects nobody");
    assert!(!s.monitor_sets_in_force().await.unwrap().contains(&x));

    // Promoted again: still suspended until an admin sets it again.
    s.set_operator_role(&ada, Role::Admin, &bob)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sent(s).await, vec![y.clone()]);
    s.put_monitor_set(new(&x, &bob)).await.unwrap();
    assert_eq!(sent(s).await, both);

    // Revoked: every set they set is suspended.
    let revoked = s.revoke(PeerKind::Operator, &bob, &ada).await.unwrap();
    let mut named = revoked.suspended.clone();
    named.sort();
    assert_eq!(named, both);
    assert!(sent(s).await.is_empty());
    let (sets, _) = s.monitors_overview().await.unwrap();
    for i in sets.iter().filter(|i| i.name == x || i.name == y) {
        let why = i.suspended.clone().unwrap_or_default();
        assert!(why.contains("revoked") && why.contains(&ada), "{why}");
    }
}
