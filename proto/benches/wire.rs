//! Micro-benchmarks of the wire (issue 17): what every request, result and
//! event costs before it reaches a socket or after it leaves one — frame
//! encoding, incremental decoding, the bounds applied to what an agent
//! sends, and escaping wire text for a terminal. `cargo bench -p
//! firstline-proto`; a regression shows up as a number, not a failed test.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use firstline_proto::{
    encode, AgentEvent, CheckResult, Envelope, EventKind, FrameDecoder, Message, Status,
};
use std::hint::black_box;

/// A `result` as a `disk` check sends it: metrics and fields.
fn result() -> CheckResult {
    let mut r = CheckResult::new(
        "disk",
        "/var",
        Status::Warn,
        "/var: 86.4% used (78.5 GiB of 252.0 GiB, 12.4 GiB free)",
    )
    .metric("used_pct", 86.4)
    .metric("free_bytes", 13_314_398_208.0)
    .metric("inodes_used_pct", 3.0)
    .field("fs", "ext4")
    .field("device", "/dev/vda1");
    r.duration_ms = 2;
    r.at = "2026-11-29T22:00:00Z".into();
    r
}

/// An `events` message of `n` incident events, as an agent's outbox
/// sends a batch.
fn events(n: u64) -> Message {
    let events = (1..=n)
        .map(|seq| AgentEvent {
            seq,
            monitor: format!("disk-{seq}"),
            kind: EventKind::IncidentOpened,
            in_incident: true,
            result: result(),
            diagnostics: None,
            help: None,
        })
        .collect();
    Message::Events { events }
}

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    let one = Envelope::new(Message::Result { result: result() });
    let bytes = encode(&one).expect("encodes");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode result", |b| {
        b.iter(|| encode(black_box(&one)).expect("encodes"))
    });
    g.bench_function("decode result", |b| {
        b.iter_batched(
            FrameDecoder::new,
            |mut d| {
                d.push(black_box(&bytes));
                d.next_frame().expect("decodes").expect("a frame")
            },
            BatchSize::SmallInput,
        )
    });
    let batch = Envelope::new(events(64));
    let batch_bytes = encode(&batch).expect("encodes");
    g.throughput(Throughput::Bytes(batch_bytes.len() as u64));
    g.bench_function("encode events x64", |b| {
        b.iter(|| encode(black_box(&batch)).expect("encodes"))
    });
    g.bench_function("decode events x64, in 1 KiB reads", |b| {
        b.iter_batched(
            FrameDecoder::new,
            |mut d| {
                let mut out = None;
                for chunk in batch_bytes.chunks(1024) {
                    d.push(chunk);
                    if let Some(e) = d.next_frame().expect("decodes") {
                        out = Some(e);
                    }
                }
                out.expect("a frame")
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn validation(c: &mut Criterion) {
    let mut g = c.benchmark_group("validation");
    let Message::Events { events } = events(64) else {
        unreachable!("events() makes events")
    };
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("bound 64 events", |b| {
        b.iter_batched(
            || events.clone(),
            |ev| ev.into_iter().map(AgentEvent::bounded).collect::<Vec<_>>(),
            BatchSize::SmallInput,
        )
    });
    let hostile: String = "printer \u{1b}[31mjammed\u{7} \u{202e}gnp.exe "
        .repeat(32)
        .chars()
        .take(1024)
        .collect();
    g.throughput(Throughput::Bytes(hostile.len() as u64));
    g.bench_function("printable 1 KiB with escapes", |b| {
        b.iter(|| firstline_proto::text::printable(black_box(&hostile)).len())
    });
    let clean = "a".repeat(1024);
    g.bench_function("printable 1 KiB clean", |b| {
        b.iter(|| firstline_proto::text::printable(black_box(&clean)).len())
    });
    g.finish();
}

criterion_group!(benches, frames, validation);
criterion_main!(benches);
