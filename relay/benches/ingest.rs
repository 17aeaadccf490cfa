//! Micro-benchmark of alert ingest on the SQLite store (issue 17): one
//! `incident_opened` event for a new monitor — a new alert ticket, its
//! first entry, the monitor's status and the webhook outbox, in one
//! transaction committed to disk (WAL) — as `Store::ingest_events` does it
//! for an agent's `events` message. Sequential (one in flight), so it is
//! the latency of one ingest through the store's thread, not the relay's
//! throughput (the load generator measures that). `cargo bench -p
//! firstline-relay`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use firstline_proto::{AgentEvent, CheckResult, EventKind, Status};
use firstline_relay::store::{Signed, Store};
use std::time::Duration;

fn alert(seq: u64) -> AgentEvent {
    let mut result =
        CheckResult::new("disk", "/var", Status::Crit, "/var: 97.0% used").metric("used_pct", 97.0);
    result.at = "2026-11-29T22:00:00Z".into();
    AgentEvent {
        seq,
        monitor: format!("bench-{seq}"),
        kind: EventKind::IncidentOpened,
        in_incident: true,
        result,
        diagnostics: None,
        help: None,
    }
}

fn ingest(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Store::open_sqlite(&dir.path().join("relay.db")).expect("a store");
    rt.block_on(async {
        store
            .add_token("bench", "secret", 1, Duration::from_secs(60))
            .await
            .expect("a token");
        let now = store.now();
        store
            .enroll("bench", "secret", "pc-bench", move || {
                Ok(Signed {
                    out: (),
                    serial: "00bench".into(),
                    not_after: now + 86_400,
                })
            })
            .await
            .expect("enrolls")
            .expect("accepted");
    });
    let mut seq = 0u64;
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(1));
    g.sample_size(50);
    g.bench_function("sqlite: one alert, a new ticket", |b| {
        b.iter(|| {
            seq += 1;
            let done = rt
                .block_on(store.ingest_events("pc-bench", vec![alert(seq)], 3600))
                .expect("ingests");
            assert_eq!(done.upto, seq);
        })
    });
    g.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
