//! The probe server every daemon mounts: `/health` (the process is up), `/ready` (Postgres
//! and Redis answer, and the schema is there) and `/metrics` (Prometheus text: see
//! [`crate::metrics`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// How long `/ready` waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

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
    let handle = crate::metrics::handle();
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
                        crate::metrics::render(&handle),
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
