//! Micro-benchmark of the incident state machine (issue 17): every
//! monitor result goes through it, and its state is persisted as JSON
//! after each. `cargo bench -p firstline-agent`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use firstline_agent::monitor::incident::IncidentState;
use firstline_proto::Status;
use std::hint::black_box;

/// A day of a flapping monitor: ok, a failure, recovery, a long incident.
fn statuses() -> Vec<Status> {
    let mut s = Vec::new();
    for i in 0..1000u32 {
        s.push(match i % 50 {
            0..=29 => Status::Ok,
            30 => Status::Warn,
            31..=32 => Status::Ok,
            33..=44 => Status::Crit,
            _ => Status::Warn,
        });
    }
    s
}

fn incident(c: &mut Criterion) {
    let seq = statuses();
    let mut g = c.benchmark_group("incident");
    g.throughput(Throughput::Elements(seq.len() as u64));
    g.bench_function("observe 1000 results", |b| {
        b.iter(|| {
            let mut st = IncidentState::default();
            let mut opened = 0u32;
            for s in black_box(&seq) {
                if st.observe(*s, 3, 2) == firstline_proto::EventKind::IncidentOpened {
                    opened += 1;
                }
            }
            opened
        })
    });
    g.bench_function("observe and persist 1000 results", |b| {
        b.iter(|| {
            let mut st = IncidentState::default();
            let mut bytes = 0usize;
            for s in black_box(&seq) {
                st.observe(*s, 3, 2);
                bytes += serde_json::to_vec(&st).map_or(0, |v| v.len());
            }
            bytes
        })
    });
    g.finish();
}

criterion_group!(benches, incident);
criterion_main!(benches);
