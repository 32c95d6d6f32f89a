//! The pipeline's admin HTTP API (axum): the DLQs (stats, lists, retry, retry-all, delete),
//! submissions, jobs, sources as documents ([`sources`]: metadata and Markdown) and their
//! event trails, chunk search ([`search`]), projects' extraction schemas ([`schemas`]) and
//! the records and quoted values the schema stage found ([`records`]), plus the probes
//! (`/health`, `/ready`, `/metrics`) and a generated OpenAPI document (`/openapi.json`).
//!
//! Every `/api/v1` route needs an `X-API-Key` header matching a configured key
//! (`PIPELINE_API_KEY` or the file named by `api.key_file`); the probes and `/openapi.json`
//! are open. With no key configured, [`serve`] refuses to bind anything but loopback. Errors
//! are `{"detail": "..."}`.
//!
//! The OpenAPI document is collected from the handlers' `#[utoipa::path]` attributes by the
//! same router that serves them, so a route cannot exist without being documented; the
//! answers common to every operation are added by [`openapi_doc`].
//!
//! Hostile clients are bounded at every layer: [`server`] (header and idle timeouts, a cap on
//! connections that sheds idle ones first), [`layers`] (key check before routing, body size
//! and time, request deadline, request ids), validation before SQL, paged answers, and 503
//! with `Retry-After` for overload.
//!
//! ```no_run
//! # async fn demo(services: pipeline_ops::Services) -> anyhow::Result<()> {
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let (addr, task) = pipeline_api::serve(
//!     services, None, "127.0.0.1:0".parse()?, cancel.clone()).await?;
//! println!("listening on {addr}");
//! cancel.cancel();
//! task.await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod console;
pub mod crawl;
pub mod dlq;
pub mod error;
pub mod export;
pub mod jobs;
pub mod layers;
pub mod limits;
pub mod model;
pub mod openapi_doc;
pub mod queues;
pub mod records;
pub mod schemas;
pub mod search;
pub mod server;
pub mod sources;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pipeline_ops::Services;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::ApiKeys;
pub use error::{ApiError, ErrorBody};

/// What every handler sees.
#[derive(Clone)]
pub struct AppState {
    /// The process's pools and queue handles.
    pub services: Services,
    /// The accepted API keys.
    pub keys: ApiKeys,
    /// Chunk search, or why it is unavailable.
    pub search: search::SearchState,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pipeline-api",
        description = "Admin API of the scraping pipeline: dead-letter queues, submissions, \
            jobs and source event trails. Send the key in `X-API-Key`; errors are \
            `{\"detail\": \"...\"}`."
    ),
    modifiers(&ApiKeyScheme),
    tags(
        (name = "dlq", description = "Dead-letter queues"),
        (name = "jobs", description = "Submissions, jobs and source trails"),
        (name = "crawl", description = "Crawl jobs: start, progress, cancel, discovery paths"),
        (name = "export", description = "Sources, chunks, entities and records streamed as JSON Lines or CSV, resumable by cursor"),
        (name = "queues", description = "Queue state, live daemons, pause and resume"),
        (name = "search", description = "Chunks that answer a query"),
        (name = "schemas", description = "Projects' extraction schemas, templates, records and their quoted values"),
        (name = "webhooks", description = "Signed webhooks: endpoints, deliveries, their trails, tests and replays"),
    )
)]
struct ApiDoc;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// The `/api/v1` routes and the OpenAPI document collected from them.
fn api_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(dlq::stats))
        .routes(routes!(dlq::list))
        .routes(routes!(dlq::retry))
        .routes(routes!(dlq::retry_all))
        .routes(routes!(dlq::delete))
        .routes(routes!(dlq::purge))
        .routes(routes!(jobs::scrape))
        .routes(routes!(crawl::start))
        .routes(routes!(crawl::show))
        .routes(routes!(crawl::cancel))
        .routes(routes!(crawl::recrawl))
        .routes(routes!(
            crawl::set_schedule,
            crawl::show_schedule,
            crawl::delete_schedule
        ))
        .routes(routes!(crawl::path))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::show))
        .routes(routes!(jobs::job_sources))
        .routes(routes!(jobs::job_invalid_urls))
        .routes(routes!(jobs::source_events))
        .routes(routes!(sources::show))
        .routes(routes!(jobs::projects, schemas::create_project))
        .routes(routes!(
            schemas::show_schema,
            schemas::put_schema,
            schemas::delete_schema
        ))
        .routes(routes!(schemas::schema_versions))
        .routes(routes!(schemas::templates))
        .routes(routes!(schemas::template))
        .routes(routes!(records::list))
        .routes(routes!(records::show))
        .routes(routes!(records::source_facts))
        .routes(routes!(export::sources))
        .routes(routes!(export::chunks))
        .routes(routes!(export::entities))
        .routes(routes!(export::records))
        .routes(routes!(queues::queues))
        .routes(routes!(queues::workers))
        .routes(routes!(queues::pause_family))
        .routes(routes!(queues::resume_family))
        .routes(routes!(limits::show))
        .routes(routes!(limits::set, limits::clear))
        .routes(routes!(search::search))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::show, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::test))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::delivery))
        .routes(routes!(webhooks::replay))
        .split_for_parts();
    openapi_doc::complete(&mut doc);
    (router, doc)
}

/// The OpenAPI document of the API, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().1
}

/// The whole application: `/api/v1` behind the key check (run before routing), the probes,
/// `/openapi.json`, `{"detail"}` answers for unknown routes and methods, and the request
/// limits of [`layers`] (the `[api]` settings of `services`).
///
/// Search is built from the `[embedding]` settings; if that fails, `/api/v1/search` answers
/// 503 with the reason ([`serve`] refuses to start instead).
pub fn app(services: Services, api_key: Option<SecretString>) -> Router {
    let searcher = search::build(&services).map_err(|e| Arc::from(e.to_string()));
    app_with_search(services, api_key, searcher)
}

fn app_with_search(
    services: Services,
    api_key: Option<SecretString>,
    search: search::SearchState,
) -> Router {
    let keys = ApiKeys::new(api_key);
    let limits = server::Limits::from_settings(&services.settings.api);
    let body_limits = layers::BodyLimits {
        max_bytes: limits.max_body_bytes,
        timeout: limits.body_timeout,
        request_timeout: limits.request_timeout,
    };
    let (api, doc) = api_routes();
    let doc = Arc::new(doc);
    let probes = pipeline_core::probes::router(services.probe_state());
    let state = AppState {
        services,
        keys: keys.clone(),
        search,
    };
    let ui = console::routes()
        .layer(middleware::from_fn_with_state(
            body_limits,
            layers::read_body,
        ))
        .with_state(state.clone());
    let api = api
        .layer(middleware::from_fn_with_state(
            body_limits,
            layers::read_body,
        ))
        .with_state(state);
    Router::new()
        .merge(api)
        .merge(ui)
        .merge(probes)
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(|| async { ApiError::not_found("no such route").into_response() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
            .into_response()
        })
        .layer(middleware::from_fn_with_state(
            body_limits,
            layers::deadline,
        ))
        .layer(middleware::from_fn_with_state(keys, auth::require_key))
        .layer(middleware::from_fn(layers::head_limits))
        .layer(middleware::from_fn(log_request))
        .layer(middleware::from_fn(layers::request_id))
        .layer(middleware::from_fn(layers::http_metrics))
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes))
}

/// One log line per request, with its status and duration.
async fn log_request(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_millis() as u64;
    if path.starts_with("/api/") {
        tracing::info!(%method, path, status, ms, "request");
    } else {
        tracing::debug!(%method, path, status, ms, "request");
    }
    response
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// No key is configured and the address is not loopback.
    #[error(
        "refusing to bind {0}: no API key is configured, so only a loopback address \
         (127.0.0.1, ::1) is allowed; set PIPELINE_API_KEY or api.key_file, or bind loopback"
    )]
    NoKeyNonLoopback(SocketAddr),
    /// The embedder for search queries could not be built (missing model files, a bad
    /// `[embedding]` setting).
    #[error("search: {0}")]
    Search(#[from] pipeline_search::SearchError),
    /// The address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Binds `addr` and serves [`app`] until `cancel` fires, then finishes the requests in flight
/// (graceful shutdown). Returns the bound address (useful with port 0) and the server task.
///
/// Connections are bounded as [`server`] describes (header and idle timeouts, a cap on open
/// connections that sheds idle ones first), with the `[api]` settings of `services`.
pub async fn serve(
    services: Services,
    api_key: Option<SecretString>,
    addr: SocketAddr,
    cancel: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let keyed = ApiKeys::new(api_key.clone()).is_configured();
    if !keyed && !addr.ip().is_loopback() {
        return Err(ServeError::NoKeyNonLoopback(addr));
    }
    let searcher = search::build(&services)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let limits = server::Limits::from_settings(&services.settings.api);
    // Named once here, so a later "Redis unavailable" or "database unavailable" line can be
    // matched to the servers this process talks to.
    let redis = services.redis.endpoint().to_owned();
    let postgres = pipeline_core::pools::pg_endpoint(&services.db);
    let app = app_with_search(services, api_key, Ok(searcher));
    tracing::info!(addr = %local, api_key = keyed, max_connections = limits.max_connections,
        redis, postgres, "API listening");
    let task = tokio::spawn(server::run(listener, app, limits, cancel));
    Ok((local, task))
}
