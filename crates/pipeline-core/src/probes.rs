//! The probe server every daemon mounts: `/health` (the process is up), `/ready` (Postgres
//! and Redis answer) and `/metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How long `/ready` waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, which this process never does;
            // the handle still renders this recorder's (then empty) registry.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// What the probe handlers check.
#[derive(Clone)]
pub struct ProbeState {
    /// The process's Postgres pool.
    pub db: PgPool,
    /// The process's Redis pool.
    pub redis: dlq_core::RedisPool,
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
    let body = serde_json::json!({
        "postgres": db.as_ref().map(|_| "ok").unwrap_or_else(|e| e.as_str()),
        "redis": redis.as_ref().map(|_| "ok").unwrap_or_else(|e| e.as_str()),
    });
    let status = if db.is_ok() && redis.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// `SELECT 1` within the readiness timeout.
pub async fn check_postgres(db: &PgPool) -> Result<(), String> {
    match tokio::time::timeout(READY_TIMEOUT, sqlx::query("SELECT 1").execute(db)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("error: {e}")),
        Err(_) => Err("timeout".into()),
    }
}

/// `PING` within the readiness timeout.
pub async fn check_redis(pool: &dlq_core::RedisPool) -> Result<(), String> {
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
