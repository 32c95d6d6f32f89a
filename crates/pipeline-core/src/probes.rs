//! The probe server every daemon mounts: `/health` (the process is up), `/ready` (Postgres
//! and Redis answer, and the schema is there) and `/metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How long `/ready` waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Buckets of every `*_seconds` histogram: 1 ms to 2 min, covering a queue round trip, a
/// page fetch and a slow embedding batch.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Buckets of the count histograms (texts per embedding batch, chunks per source).
const COUNT_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// The process-wide Prometheus recorder, installed on first use.
///
/// Durations and sizes are rendered as histograms (buckets), not summaries: quantiles of a
/// summary cannot be added up across replicas, buckets can (`histogram_quantile` over a
/// `sum by (le)`). Every metric gets its `# HELP` from [`describe_metrics`].
pub fn metrics_handle() -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("pipeline_embedding_batch_size".into()),
                        COUNT_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("pipeline_extractions_per_source".into()),
                        COUNT_BUCKETS,
                    )
                })
                .expect("bucket lists are not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, which this process never does;
            // the handle still renders this recorder's (then empty) registry.
            let _ = metrics::set_global_recorder(recorder);
            describe_metrics();
            handle
        })
        .clone()
}

/// Every metric the workspace records, with its help text: one list, so `/metrics` of any
/// process explains each series it shows.
fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    for (name, help) in COUNTERS {
        describe_counter!(*name, *help);
    }
    for (name, help) in GAUGES {
        describe_gauge!(*name, *help);
    }
    for (name, help) in HISTOGRAMS {
        if name.ends_with("_seconds") {
            describe_histogram!(*name, Unit::Seconds, *help);
        } else {
            describe_histogram!(*name, *help);
        }
    }
}

/// Counters: name and help.
const COUNTERS: &[(&str, &str)] = &[
    (
        "pipeline_extraction_abandoned_waits_total",
        "Times an extraction delivery waited for abandoned parser threads to finish",
    ),
    (
        "pipeline_messages_total",
        "Deliveries processed, by family and outcome (succeeded, retry_scheduled, dead_lettered, lease_lost, ack_failed, settle_failed)",
    ),
    (
        "pipeline_submitted_sources_total",
        "Sources enqueued by submissions",
    ),
    (
        "pipeline_dlq_redriven_total",
        "DLQ items redriven by a person (API or CLI), by family and actor",
    ),
    ("scrape_fetches_total", "Page fetches, by outcome"),
    (
        "crawl_links_total",
        "Links read from crawled pages, by outcome (admitted, known, or the skip reason)",
    ),
    (
        "crawl_sitemap_files_total",
        "Sitemap files read for crawls, by outcome (urlset, index, not_a_sitemap, failed)",
    ),
    (
        "scrape_revisits_total",
        "Pages fetched again for a recrawl, by content (unchanged, changed)",
    ),
    (
        "scrape_politeness_waits_total",
        "Fetches that waited for a host's politeness slot",
    ),
    (
        "pipeline_entities_status_total",
        "Entity extraction outcomes, by status (complete, partial, failed)",
    ),
    (
        "pipeline_extraction_too_expensive_total",
        "Pages refused as too expensive to extract, by limit",
    ),
    (
        "pipeline_extraction_abandoned_total",
        "Extractions given up while their thread still ran (budget + grace passed)",
    ),
    (
        "pipeline_embedding_failures_total",
        "Failed embedding calls, by kind (transient, permanent)",
    ),
    (
        "requeue_redriven_total",
        "DLQ items redriven automatically, by family",
    ),
    (
        "requeue_parked_total",
        "DLQ items parked after their last automatic redrive, by family",
    ),
    (
        "requeue_reconciled_total",
        "Sources Redis had forgotten, enqueued again from Postgres, by family",
    ),
    (
        "requeue_bookkeeping_failures_total",
        "Redrive batches whose Postgres record failed, by family",
    ),
    ("work_queue_enqueued_total", "Messages enqueued, by family"),
    (
        "work_queue_reserved_total",
        "Messages reserved (leased), by family",
    ),
    ("work_queue_acked_total", "Messages acked, by family"),
    (
        "work_queue_retried_total",
        "Messages scheduled for another attempt, by family",
    ),
    (
        "work_queue_dead_lettered_total",
        "Messages moved to the DLQ, by family",
    ),
    (
        "work_queue_lease_lost_total",
        "Acks or settles refused because the lease had passed to another worker",
    ),
    (
        "work_queue_leases_expired_total",
        "Leases that expired and put their message back",
    ),
    (
        "work_queue_orphans_dropped_total",
        "Queue entries without a message hash, dropped",
    ),
    (
        "pipeline_event_partitions_total",
        "Event-trail partitions created or dropped by the maintenance, by change",
    ),
    (
        "pipeline_scheduled_recrawls_total",
        "Recrawls started by their schedule (crawl_schedules)",
    ),
    (
        "api_connections_evicted_total",
        "API connections closed to make room under the connection cap, by reason",
    ),
    (
        "api_connections_refused_total",
        "API connections refused with 503 because every connection was busy",
    ),
];

/// Gauges: name and help.
const GAUGES: &[(&str, &str)] = &[
    (
        "pipeline_extraction_waiting_on_abandoned",
        "Extraction deliveries waiting because abandoned parser threads are at their bound",
    ),
    ("api_connections_open", "Connections open to the API"),
    (
        "pipeline_in_flight",
        "Deliveries being processed now, by family",
    ),
    (
        "pipeline_queue_depth",
        "Messages in a family's work queue, by state (ready, leased, delayed)",
    ),
    (
        "dlq_items",
        "Items in a family's DLQ, by state (total, parked, transient, permanent)",
    ),
    (
        "pipeline_family_paused",
        "1 while a family's workers are paused, else 0 (published by the API)",
    ),
    ("scrape_fetches_in_flight", "Page fetches running now"),
    (
        "pipeline_extraction_abandoned_running",
        "Given-up extraction threads still running",
    ),
];

/// Histograms: name and help (`*_seconds` in seconds).
const HISTOGRAMS: &[(&str, &str)] = &[
    (
        "pipeline_message_duration_seconds",
        "Time from handler start to settled, by family",
    ),
    (
        "scrape_fetch_duration_seconds",
        "Page fetch time, redirects and body included",
    ),
    (
        "pipeline_extractions_per_source",
        "Chunks (extraction rows) per extracted source",
    ),
    (
        "pipeline_embedding_seconds",
        "Embedding time of one source's missing chunks",
    ),
    (
        "pipeline_embedding_batch_seconds",
        "Time of one embedding batch request",
    ),
    ("pipeline_embedding_batch_size", "Texts per embedding batch"),
];

/// Whether the process may call itself ready as far as the database schema goes. A new gate
/// is open (ready); a daemon closes it while it waits for migrations, with the reason `/ready`
/// reports, and opens it once the schema is there. Clones share the state.
#[derive(Clone, Default)]
pub struct SchemaGate(Arc<Mutex<Option<String>>>);

impl SchemaGate {
    /// Not ready: `/ready` answers 503 with `reason` as its `schema` field.
    pub fn wait(&self, reason: impl Into<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.into());
    }

    /// Ready as far as the schema goes.
    pub fn open(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// `None` when open, else why not.
    pub fn waiting(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The parts of a process that can fail while Postgres and Redis answer (the API's vector
/// index, which refreshes itself from Postgres, say). A part that reports a failure makes
/// `/ready` answer 503 with its name and reason until it reports success again; `/ready`
/// lists every part that reported, `"ok"` or the reason. Clones share the state.
#[derive(Clone, Default)]
pub struct Components(Arc<Mutex<std::collections::BTreeMap<&'static str, Option<String>>>>);

impl Components {
    /// `name` works (again).
    pub fn healthy(&self, name: &'static str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, None);
    }

    /// `name` is broken, for `reason`.
    pub fn failing(&self, name: &'static str, reason: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, Some(reason.into()));
    }

    /// Every part that reported, with `None` when it works, else why not.
    pub fn report(&self) -> std::collections::BTreeMap<&'static str, Option<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the probe handlers check.
#[derive(Clone)]
pub struct ProbeState {
    /// The process's Postgres pool.
    pub db: PgPool,
    /// The process's Redis pool.
    pub redis: pipeline_redis::RedisPool,
    /// Closed while the daemon waits for the schema.
    pub schema: SchemaGate,
    /// The process's own parts that can fail (see [`Components`]).
    pub components: Components,
}

/// The probe routes, to serve alone or merge into another router (the API does).
pub fn router(state: ProbeState) -> Router {
    let handle = metrics_handle();
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        handle.render(),
                    )
                }
            }),
        )
        .with_state(state)
}

async fn ready(State(state): State<ProbeState>) -> Response {
    let (db, redis) = tokio::join!(check_postgres(&state.db), check_redis(&state.redis));
    let schema = state.schema.waiting();
    let mut body = serde_json::json!({
        "postgres": db.as_ref().map(|_| "ok").unwrap_or_else(|e| e.as_str()),
        "redis": redis.as_ref().map(|_| "ok").unwrap_or_else(|e| e.as_str()),
        "schema": schema.as_deref().unwrap_or("ok"),
    });
    let mut parts_ok = true;
    for (name, failure) in state.components.report() {
        parts_ok &= failure.is_none();
        body[name] = failure.unwrap_or_else(|| "ok".into()).into();
    }
    let status = if db.is_ok() && redis.is_ok() && schema.is_none() && parts_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// `SELECT 1` within the readiness timeout.
pub async fn check_postgres(db: &PgPool) -> Result<(), String> {
    // The one service statement outside pipeline-store: it reads no table, so the query
    // macros would have nothing to check, and the probes need no dependency on the store.
    match tokio::time::timeout(READY_TIMEOUT, sqlx::query("SELECT 1").execute(db)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("error: {e}")),
        Err(_) => Err("timeout".into()),
    }
}

/// `PING` within the readiness timeout.
pub async fn check_redis(pool: &pipeline_redis::RedisPool) -> Result<(), String> {
    let ping = async {
        let mut conn = pool.get();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| format!("error: {e}"))
    };
    tokio::time::timeout(READY_TIMEOUT, ping)
        .await
        .unwrap_or_else(|_| Err("timeout".into()))
}

/// Binds `addr` and serves the probes until `cancel` fires. Returns the bound address (useful
/// with port 0 in tests) and the server task.
pub async fn serve(
    addr: SocketAddr,
    state: ProbeState,
    cancel: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    serve_router(addr, router(state), cancel).await
}

/// Binds `addr` and serves `app` until `cancel` fires.
pub async fn serve_router(
    addr: SocketAddr,
    app: Router,
    cancel: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
        if let Err(err) = result {
            tracing::error!(error = %err, "probe server failed");
        }
    });
    Ok((local, task))
}

#[cfg(test)]
mod metric_list_tests {
    use super::{COUNTERS, GAUGES, HISTOGRAMS};

    /// Every metric the workspace's code records is in one of the described lists, with the
    /// same kind, so `/metrics` never shows a series without `# HELP`.
    #[test]
    fn every_recorded_metric_is_described() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut missing = Vec::new();
        let mut stack = vec![root.join("crates")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("readable source tree") {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("readable source");
                    for (kind, list) in [
                        ("counter", COUNTERS),
                        ("gauge", GAUGES),
                        ("histogram", HISTOGRAMS),
                    ] {
                        let needle = format!("metrics::{kind}!(");
                        for (i, _) in text.match_indices(&needle) {
                            let rest = text[i + needle.len()..].trim_start();
                            let Some(name) =
                                rest.strip_prefix('"').and_then(|r| r.split('"').next())
                            else {
                                continue;
                            };
                            if !list.iter().any(|(n, _)| *n == name) {
                                missing.push(format!("{kind} {name} ({})", path.display()));
                            }
                        }
                    }
                }
            }
        }
        assert!(missing.is_empty(), "undescribed metrics: {missing:#?}");
    }
}
