//! The relay's Prometheus metrics: counted where the work happens
//! (`console.rs` after each request, `agent_link.rs` after each ingest),
//! served as OpenMetrics text on `GET /metrics` when relay.toml sets
//! `metrics_listen` — opt-in, plain HTTP, meant for loopback, because the
//! figures say how busy the help desk is and nothing here authenticates.
//!
//! The registry and the text encoding are `prometheus-client`'s (the
//! format is never written by hand). What is read at scrape time — agents
//! connected here, tickets by state from the store — is refreshed at most
//! every [`TICKETS_TTL`], one scrape at a time, so a scrape storm costs the
//! store one query per few seconds.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `firstline_agents_online` | gauge | — (agents connected to this relay) |
//! | `firstline_console_requests_total` | counter | `kind`, `outcome` (`ok`, `error`, `forbidden`, `refused`, `bad_request`) |
//! | `firstline_console_request_duration_seconds` | histogram | `kind` |
//! | `firstline_events_ingested_total` | counter | — (monitoring events stored, duplicates left out) |
//! | `firstline_alerts_ingested_total` | counter | `kind` (`incident_opened`, `incident_updated`, `incident_resolved`, `result`) |
//! | `firstline_ingest_duration_seconds` | histogram | — |
//! | `firstline_tickets` | gauge | `state` (`open`, `in_progress`, `resolved`, `closed`) |
//! | `firstline_tls_sessions_resumed_total` | counter | — (connections that came back with a TLS session ticket of this relay: no certificate signatures in their handshake) |

use crate::store::Store;
use crate::ticket::TicketStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the ticket counts read from the store are served again.
pub const TICKETS_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// The relay's metrics (cheap to record: atomics).
pub struct Metrics {
    registry: Registry,
    agents_online: Gauge,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<KindLabel, Histogram>,
    events: Counter,
    alerts: Family<KindLabel, Counter>,
    ingest_seconds: Histogram,
    tickets: Family<StateLabel, Gauge>,
    tls_resumed: Counter,
    audit_tampered: Gauge,
    audit_tamper_detected: Counter,
    nats_insecure: Gauge,
    cluster_rejected: Family<ReasonLabel, Counter>,
    /// When the ticket counts were last read; held across the read.
    tickets_read: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Latency buckets: 1 ms to about 2.5 min.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.5, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("firstline");
        let agents_online = Gauge::default();
        registry.register(
            "agents_online",
            "Agents connected to this relay",
            agents_online.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "console_requests",
            "Console requests by kind and outcome",
            requests.clone(),
        );
        let request_seconds =
            Family::<KindLabel, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        registry.register(
            "console_request_duration_seconds",
            "Time to answer a console request, by kind",
            request_seconds.clone(),
        );
        let events = Counter::default();
        registry.register(
            "events_ingested",
            "Monitoring events stored (duplicates left out)",
            events.clone(),
        );
        let alerts = Family::<KindLabel, Counter>::default();
        registry.register(
            "alerts_ingested",
            "Incident events (and monitor configuration problems) ingested, by kind",
            alerts.clone(),
        );
        let ingest_seconds = latency();
        registry.register(
            "ingest_duration_seconds",
            "Time to store a batch of an agent's events",
            ingest_seconds.clone(),
        );
        let tickets = Family::<StateLabel, Gauge>::default();
        registry.register(
            "tickets",
            "Tickets by state (read from the store at most every 5 s)",
            tickets.clone(),
        );
        let tls_resumed = Counter::default();
        registry.register(
            "tls_sessions_resumed",
            "Connections resumed from a TLS session ticket of this relay",
            tls_resumed.clone(),
        );
        let audit_tampered = Gauge::default();
        registry.register(
            "audit_chain_tampered",
            "1 while the audit chain holds rows no relay wrote (audited actions are refused until `firstline-relay audit acknowledge`)",
            audit_tampered.clone(),
        );
        let audit_tamper_detected = Counter::default();
        registry.register(
            "audit_tamper_detected",
            "Times this relay found rows in the audit chain that no relay wrote",
            audit_tamper_detected.clone(),
        );
        let nats_insecure = Gauge::default();
        registry.register(
            "cluster_nats_insecure",
            "1 when this relay talks to NATS without authentication ([cluster] nats_insecure = true)",
            nats_insecure.clone(),
        );
        let cluster_rejected = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "cluster_messages_rejected",
            "Messages from NATS dropped because they were not signed with the deployment's bus key, were stale, or replayed, by reason",
            cluster_rejected.clone(),
        );
        Metrics {
            registry,
            nats_insecure,
            cluster_rejected,
            audit_tampered,
            audit_tamper_detected,
            agents_online,
            requests,
            request_seconds,
            events,
            alerts,
            ingest_seconds,
            tickets,
            tls_resumed,
            tickets_read: tokio::sync::Mutex::new(None),
        }
    }

    /// A console request answered: its wire kind, how it ended, how long.
    pub fn console_request(&self, kind: &'static str, outcome: &'static str, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { kind, outcome })
            .inc();
        self.request_seconds
            .get_or_create(&KindLabel { kind })
            .observe(took.as_secs_f64());
    }

    /// A batch of events ingested: how many were new, the kinds of the
    /// alerts among them, how long it took.
    pub fn ingested(&self, applied: usize, alerts: &[&'static str], took: Duration) {
        self.events.inc_by(applied as u64);
        for &kind in alerts {
            self.alerts.get_or_create(&KindLabel { kind }).inc();
        }
        self.ingest_seconds.observe(took.as_secs_f64());
    }

    /// The audit chain was found tampered with (`true`), or acknowledged.
    pub fn audit_tampered(&self, tampered: bool, newly: bool) {
        self.audit_tampered.set(i64::from(tampered));
        if newly {
            self.audit_tamper_detected.inc();
        }
    }

    /// This relay talks to NATS without authentication (or not).
    pub fn nats_insecure(&self, insecure: bool) {
        self.nats_insecure.set(i64::from(insecure));
    }

    /// A message from NATS was dropped: `reason` (`unsigned`, `bad_signature`,
    /// `stale`, `replayed`).
    pub fn cluster_rejected(&self, reason: &'static str) {
        self.cluster_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// A connection came back with one of this relay's session tickets.
    pub fn session_resumed(&self) {
        self.tls_resumed.inc();
    }

    /// The metrics as OpenMetrics text, with the figures read at scrape
    /// time refreshed first.
    pub async fn render(&self, store: &Store, agents_online: usize) -> Result<String, String> {
        self.agents_online.set(agents_online as i64);
        {
            let mut read = self.tickets_read.lock().await;
            if read.is_none_or(|at| at.elapsed() >= TICKETS_TTL) {
                let counts = store
                    .ticket_counts()
                    .await
                    .map_err(|e| format!("cannot count tickets: {e}"))?;
                for status in TicketStatus::ALL {
                    let n = counts
                        .iter()
                        .find(|(s, _)| s == status.as_str())
                        .map_or(0, |(_, n)| *n);
                    self.tickets
                        .get_or_create(&StateLabel {
                            state: status.as_str(),
                        })
                        .set(n as i64);
                }
                *read = Some(Instant::now());
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|e| format!("cannot encode the metrics: {e}"))?;
        Ok(text)
    }
}

/// What `/metrics` needs besides the metrics: the store, and how many
/// agents are connected here now.
pub struct Source {
    pub metrics: Arc<Metrics>,
    pub store: Store,
    pub agents_online: Box<dyn Fn() -> usize + Send + Sync>,
}

/// Bind `addr` for `/metrics` (a non-loopback address is warned about).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "metrics_listen = {addr} is not a loopback address: anyone who reaches it can read the relay's metrics"
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr} (metrics_listen)"))?;
    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
    Ok(listener)
}

/// Serve `GET /metrics` until the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, source: Source) {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let source = Arc::new(source);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let source = source.clone();
            async move {
                let online = (source.agents_online)();
                match source.metrics.render(&source.store, online).await {
                    Ok(text) => (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response(),
                    Err(e) => {
                        tracing::error!("/metrics: {e}");
                        (StatusCode::INTERNAL_SERVER_ERROR, e).into_response()
                    }
                }
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("the metrics endpoint stopped: {e}");
    }
}
