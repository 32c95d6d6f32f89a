//! Webhooks: the endpoints a project registers (URL, events, signing secret), their
//! deliveries (newest first, by status), one delivery's payload and trail, a test delivery
//! (`ping`) and a replay. Input is checked by [`pipeline_ops::webhooks`] (the same checks as
//! the CLI and the console): an invalid field is a 422 that names it, and an endpoint URL
//! whose host is a non-public address is refused unless `webhooks.allow_private_hosts`
//! lists it.
//!
//! The signing secret is in one answer only: the creation's. Every other answer leaves it
//! out, a PATCH that sets a new one included.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use pipeline_ops::webhooks::{self as ops, EndpointChange, EndpointInput, Replay, WebhookError};
use pipeline_store::webhooks::{self as store, Delivery, DeliveryEvent, Endpoint};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::schemas::project_of;

/// Who the delivery trail names for changes made through the API.
const ACTOR: pipeline_store::Actor = pipeline_store::Actor::Api;

/// Largest page of deliveries.
pub const MAX_DELIVERIES_LIMIT: i64 = 200;

/// Page size of deliveries when none is asked for.
pub const DEFAULT_DELIVERIES_LIMIT: i64 = 50;

/// An event an endpoint may subscribe to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[allow(dead_code)]
pub enum EventType {
    /// A job ended `completed`.
    #[serde(rename = "job.completed")]
    JobCompleted,
    /// A job ended `completed_with_errors`.
    #[serde(rename = "job.completed_with_errors")]
    JobCompletedWithErrors,
    /// A job ended `failed`.
    #[serde(rename = "job.failed")]
    JobFailed,
    /// A crawl job ended (any end; with its start URL, pages and whether it was cancelled).
    #[serde(rename = "crawl.ended")]
    CrawlEnded,
    /// A page reached `extracted` (one delivery per page: opt in only if you want them).
    #[serde(rename = "page.extracted")]
    PageExtracted,
    /// A page went to a dead-letter queue.
    #[serde(rename = "item.dead_lettered")]
    ItemDeadLettered,
    /// A page was parked (automatic redrive gave up).
    #[serde(rename = "item.parked")]
    ItemParked,
}

/// `POST /api/v1/projects/{project}/webhooks` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "url": "https://hooks.example.com/pipeline",
    "events": ["job.completed", "item.dead_lettered"],
    "description": "ops channel"
}))]
pub struct CreateWebhookRequest {
    /// Where deliveries are POSTed: `http` or `https`, no credentials, at most 2,048 bytes;
    /// a host written as an address must be public (loopback, private and link-local
    /// addresses are refused unless `webhooks.allow_private_hosts` lists them).
    #[schema(min_length = 1, max_length = 2048)]
    pub url: String,
    /// The events to deliver (at least one; duplicates are dropped).
    #[schema(min_items = 1, value_type = Vec<EventType>)]
    pub events: Vec<String>,
    /// The HMAC-SHA256 signing key: at least 16 characters, at most 256 bytes, no control
    /// characters; when absent, one is generated (`whsec_` and 64 hex digits). Returned in this answer only.
    #[schema(
        min_length = 16,
        max_length = 256,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub secret: Option<String>,
    /// A note for people, at most 500 characters.
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub description: Option<String>,
}

/// `PATCH /api/v1/webhooks/{id}` body: every field is optional; an absent (or `null`) one
/// is kept.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"events": ["job.failed"], "enabled": false}))]
pub struct UpdateWebhookRequest {
    /// A new URL (the same rules as at creation).
    #[schema(min_length = 1, max_length = 2048)]
    pub url: Option<String>,
    /// A new set of events (at least one).
    #[schema(min_items = 1, value_type = Option<Vec<EventType>>)]
    pub events: Option<Vec<String>>,
    /// A new signing secret (rotation: deliveries sent from now on are signed with it). It
    /// is not returned.
    #[schema(
        min_length = 16,
        max_length = 256,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub secret: Option<String>,
    /// A new description.
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub description: Option<String>,
    /// `false` stops deliveries to the endpoint (new events are not written for it; queued
    /// ones are cancelled when their turn comes); `true` starts them again.
    pub enabled: Option<bool>,
}

/// An endpoint's deliveries by status.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct DeliveryCounts {
    /// Waiting in the queue, or retrying.
    pub pending: i64,
    /// Answered with a 2xx.
    pub delivered: i64,
    /// Out of attempts (or refused for good): in the `webhooks` dead-letter queue.
    pub dead_lettered: i64,
    /// Automatic redrive gave up; only a person retries it.
    pub parked: i64,
    /// Not sent: the endpoint was disabled, or the delivery was discarded from the DLQ.
    pub cancelled: i64,
}

impl DeliveryCounts {
    fn add(&mut self, status: &str, n: i64) {
        match status {
            "pending" => self.pending += n,
            "delivered" => self.delivered += n,
            "dead_lettered" => self.dead_lettered += n,
            "parked" => self.parked += n,
            "cancelled" => self.cancelled += n,
            _ => {}
        }
    }
}

/// A registered endpoint (never with its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookBody {
    /// Endpoint id.
    pub id: Uuid,
    /// Its project.
    pub project_id: Uuid,
    /// Where deliveries go.
    pub url: String,
    /// The events it receives.
    pub events: Vec<String>,
    /// A note for people.
    pub description: String,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Its deliveries by status.
    pub deliveries: DeliveryCounts,
}

impl WebhookBody {
    fn new(e: Endpoint, deliveries: DeliveryCounts) -> Self {
        Self {
            id: e.id,
            project_id: e.project_id,
            url: e.url,
            events: e.events,
            description: e.description,
            enabled: e.enabled,
            created_at: e.created_at,
            updated_at: e.updated_at,
            deliveries,
        }
    }
}

/// A new endpoint with its secret: the only answer that carries it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedWebhook {
    /// The endpoint.
    #[serde(flatten)]
    pub webhook: WebhookBody,
    /// The HMAC-SHA256 signing key of its deliveries. Shown here once: keep it.
    pub secret: String,
}

/// A project's endpoints.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    /// Oldest first.
    pub webhooks: Vec<WebhookBody>,
}

/// A delivery as lists show it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryBody {
    /// Delivery id: also the payload's `id` and the `Pipeline-Delivery` header, kept by
    /// retries and replays (receivers dedupe on it).
    pub id: Uuid,
    /// Its endpoint.
    pub endpoint_id: Uuid,
    /// Its project.
    pub project_id: Uuid,
    /// The event type (`ping` for a test delivery).
    pub event: String,
    /// `pending`, `delivered`, `dead_lettered`, `parked` or `cancelled`.
    pub status: String,
    /// HTTP requests made so far.
    pub attempts: i32,
    /// The last answer's HTTP status, when there was an answer.
    pub last_status: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the event happened.
    pub created_at: DateTime<Utc>,
    /// When the delivery last changed.
    pub updated_at: DateTime<Utc>,
    /// When the receiver accepted it.
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<Delivery> for DeliveryBody {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id,
            endpoint_id: d.endpoint_id,
            project_id: d.project_id,
            event: d.event,
            status: d.status,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            updated_at: d.updated_at,
            delivered_at: d.delivered_at,
        }
    }
}

/// A page of deliveries, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryPage {
    /// The deliveries.
    pub deliveries: Vec<DeliveryBody>,
    /// Pass as `before` for the next (older) page; `null` when this page was not full.
    pub next_before: Option<Uuid>,
}

/// One entry of a delivery's trail.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrailEntry {
    /// Entry id (increasing).
    pub id: i64,
    /// `attempt` (one HTTP request), `delivered`, `dead_lettered`, `redriven`, `parked`,
    /// `discarded`, `replayed`, `cancelled` or `reconciled`.
    pub kind: String,
    /// The attempt's number.
    pub attempt: Option<i32>,
    /// The receiver's HTTP status, when it answered.
    pub http_status: Option<i32>,
    /// How long the request took, in milliseconds.
    pub latency_ms: Option<i32>,
    /// Why it failed (a timeout, a refused connection, the answer's status and body).
    pub error: Option<String>,
    /// Who did it: `webhook-worker`, `requeue-daemon`, `api`, `cli`, `console`.
    pub actor: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

impl From<DeliveryEvent> for TrailEntry {
    fn from(e: DeliveryEvent) -> Self {
        Self {
            id: e.id,
            kind: e.kind,
            attempt: e.attempt,
            http_status: e.http_status,
            latency_ms: e.latency_ms,
            error: e.error,
            actor: e.actor,
            at: e.at,
        }
    }
}

/// A delivery with the body it sends and its trail.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryDetailBody {
    /// The delivery.
    #[serde(flatten)]
    pub delivery: DeliveryBody,
    /// The JSON body POSTed: `{id, type, created_at, project_id, data}`.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Every attempt and state change, oldest first (the latest 500).
    pub trail: Vec<TrailEntry>,
}

/// A delivery status, as a filter.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting in the queue, or retrying.
    Pending,
    /// Accepted by the receiver.
    Delivered,
    /// In the `webhooks` dead-letter queue.
    DeadLettered,
    /// Parked in the dead-letter queue.
    Parked,
    /// Not sent.
    Cancelled,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::DeadLettered => "dead_lettered",
            Self::Parked => "parked",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Query of an endpoint's deliveries.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only deliveries in this status.
    pub status: Option<DeliveryStatus>,
    /// Only deliveries older than this one (the previous page's `next_before`).
    pub before: Option<Uuid>,
    /// Page size, 1..=200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// A test delivery written.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PingAccepted {
    /// The `ping` delivery's id (follow it at `/api/v1/webhook-deliveries/{id}`).
    pub delivery_id: Uuid,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplayOutcome {
    /// A delivered or cancelled delivery is pending again, with the same id.
    Replayed,
    /// A dead-lettered or parked delivery went back from the DLQ to the queue.
    Redriven,
}

/// A replay accepted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReplayAccepted {
    /// The delivery (its id is kept: receivers dedupe on it).
    pub delivery_id: Uuid,
    /// What was done.
    pub outcome: ReplayOutcome,
}

impl From<WebhookError> for ApiError {
    fn from(err: WebhookError) -> Self {
        match err {
            WebhookError::Invalid(e) => ApiError::unprocessable(clip_detail(&e.to_string())),
            WebhookError::Store(e) => e.into(),
            WebhookError::Dlq(e) => e.into(),
            WebhookError::Queue(e) if dlq_core::is_unreachable(&e) => {
                tracing::warn!(error = %e, "Redis unavailable");
                ApiError::unavailable("the queue store is unavailable; retry later")
            }
            other => ApiError::internal("webhook operation failed", &other),
        }
    }
}

/// A validation message, which may quote the client's input, bounded in length.
fn clip_detail(text: &str) -> String {
    crate::error::clip_to(text, 300)
}

/// Counts by status for each of `ids`.
async fn counts_of(
    state: &AppState,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, DeliveryCounts>, ApiError> {
    let mut out: HashMap<Uuid, DeliveryCounts> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    for (id, status, n) in store::delivery_counts_many(&state.services.db, ids).await? {
        out.entry(id).or_default().add(&status, n);
    }
    Ok(out)
}

async fn endpoint_body(state: &AppState, e: Endpoint) -> Result<WebhookBody, ApiError> {
    let counts = counts_of(state, &[e.id]).await?.remove(&e.id);
    Ok(WebhookBody::new(e, counts.unwrap_or_default()))
}

fn no_endpoint(id: Uuid) -> ApiError {
    ApiError::not_found(format!("webhook {id} not found"))
}

fn no_delivery(id: Uuid) -> ApiError {
    ApiError::not_found(format!("webhook delivery {id} not found"))
}

/// Registers an endpoint for the project's events. The answer carries the signing secret:
/// it is never shown again.
#[utoipa::path(
    post, path = "/api/v1/projects/{project}/webhooks", tag = "webhooks",
    params(("project" = String, Path, description = "Project id or name")),
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "The endpoint and its secret (shown only here)", body = CreatedWebhook),
        (status = 404, description = "No such project", body = ErrorBody),
        (status = 422, description = "A field is invalid; `detail` starts with its name (`url: ...`): a URL that is not http(s), has credentials, is over 2,048 bytes or names a non-public address; no events or an unknown one; a secret outside 16..=256 bytes or with control characters; a description over 500 characters or with NUL", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    ApiPath(project): ApiPath<String>,
    ApiJson(body): ApiJson<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    let p = project_of(&state, &project).await?;
    let created = ops::create(
        &state.services,
        p.id,
        &EndpointInput {
            url: body.url,
            events: body.events,
            secret: body.secret,
            description: body.description,
        },
    )
    .await?;
    // The host only: a receiver's URL may carry a token in its path or query.
    let host = url::Url::parse(&created.endpoint.url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    tracing::info!(webhook_id = %created.endpoint.id, project_id = %p.id,
        host = %host, "webhook endpoint registered through the API");
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook: WebhookBody::new(created.endpoint, DeliveryCounts::default()),
            secret: created.secret,
        }),
    ))
}

/// A project's endpoints, oldest first, each with its deliveries by status (no secrets).
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/webhooks", tag = "webhooks",
    params(("project" = String, Path, description = "Project id or name")),
    responses(
        (status = 200, description = "The project's endpoints", body = WebhookList),
        (status = 404, description = "No such project", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    ApiPath(project): ApiPath<String>,
) -> Result<Json<WebhookList>, ApiError> {
    let p = project_of(&state, &project).await?;
    let endpoints = store::list_endpoints(&state.services.db, p.id).await?;
    let ids: Vec<Uuid> = endpoints.iter().map(|e| e.id).collect();
    let mut counts = counts_of(&state, &ids).await?;
    Ok(Json(WebhookList {
        webhooks: endpoints
            .into_iter()
            .map(|e| {
                let c = counts.remove(&e.id).unwrap_or_default();
                WebhookBody::new(e, c)
            })
            .collect(),
    }))
}

/// One endpoint with its deliveries by status (no secret).
#[utoipa::path(
    get, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn show(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<WebhookBody>, ApiError> {
    let e = store::get_endpoint(&state.services.db, id)
        .await?
        .ok_or_else(|| no_endpoint(id))?;
    Ok(Json(endpoint_body(&state, e).await?))
}

/// Changes an endpoint: URL, events, description, enabled, or its secret (rotation: the
/// new secret is not returned, the caller chose it).
#[utoipa::path(
    patch, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    request_body = UpdateWebhookRequest,
    responses(
        (status = 200, description = "The endpoint as it is now (no secret)", body = WebhookBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 422, description = "The id is not a UUID, or a field is invalid (`detail` starts with its name; the rules of creation)", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateWebhookRequest>,
) -> Result<Json<WebhookBody>, ApiError> {
    let rotated = body.secret.is_some();
    let e = ops::update(
        &state.services,
        id,
        &EndpointChange {
            url: body.url,
            events: body.events,
            secret: body.secret,
            description: body.description,
            enabled: body.enabled,
        },
    )
    .await?
    .ok_or_else(|| no_endpoint(id))?;
    tracing::info!(webhook_id = %id, enabled = e.enabled, secret_rotated = rotated,
        "webhook endpoint changed through the API");
    Ok(Json(endpoint_body(&state, e).await?))
}

/// Removes an endpoint with its deliveries and their trails (a delivery still queued is
/// dropped unsent).
#[utoipa::path(
    delete, path = "/api/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    if !store::delete_endpoint(&state.services.db, id).await? {
        return Err(no_endpoint(id));
    }
    tracing::info!(webhook_id = %id, "webhook endpoint removed through the API");
    Ok(StatusCode::NO_CONTENT)
}

/// Writes a test delivery (event `ping`, `data: {endpoint_id}`) to the endpoint, enabled
/// or not; it is sent, retried and traced like any other.
#[utoipa::path(
    post, path = "/api/v1/webhooks/{id}/test", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id")),
    responses(
        (status = 202, description = "The `ping` delivery is written and will be sent", body = PingAccepted),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn test(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<PingAccepted>), ApiError> {
    let delivery_id = store::ping(&state.services.db, id)
        .await?
        .ok_or_else(|| no_endpoint(id))?;
    Ok((StatusCode::ACCEPTED, Json(PingAccepted { delivery_id })))
}

/// An endpoint's deliveries, newest first, paged with `before`.
#[utoipa::path(
    get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Endpoint id"), DeliveriesQuery),
    responses(
        (status = 200, description = "A page of deliveries, newest first", body = DeliveryPage),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 422, description = "The id or `before` is not a UUID, an unknown `status`, or `limit` outside 1..=200", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn deliveries(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_DELIVERIES_LIMIT);
    if !(1..=MAX_DELIVERIES_LIMIT).contains(&limit) {
        return Err(ApiError::unprocessable(format!(
            "limit must be between 1 and {MAX_DELIVERIES_LIMIT}, got {limit}"
        )));
    }
    let db = &state.services.db;
    store::get_endpoint(db, id)
        .await?
        .ok_or_else(|| no_endpoint(id))?;
    let rows = store::list_deliveries(
        db,
        id,
        q.status.map(DeliveryStatus::as_str),
        q.before,
        limit,
    )
    .await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|d| d.id))
        .flatten();
    Ok(Json(DeliveryPage {
        deliveries: rows.into_iter().map(Into::into).collect(),
        next_before,
    }))
}

/// One delivery: its status, the body it sends and its trail (every attempt with the
/// receiver's status, the latency and the error; dead-letters, redrives, replays).
#[utoipa::path(
    get, path = "/api/v1/webhook-deliveries/{id}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Delivery id")),
    responses(
        (status = 200, description = "The delivery, its payload and its trail", body = DeliveryDetailBody),
        (status = 404, description = "No such delivery", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn delivery(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<DeliveryDetailBody>, ApiError> {
    let d = store::get_delivery(&state.services.db, id)
        .await?
        .ok_or_else(|| no_delivery(id))?;
    Ok(Json(DeliveryDetailBody {
        delivery: d.delivery.into(),
        payload: d.payload,
        trail: d.events.into_iter().map(Into::into).collect(),
    }))
}

/// Sends a delivery again with the same id (receivers dedupe on it): a dead-lettered or
/// parked one is redriven from the `webhooks` DLQ, a delivered or cancelled one is made
/// pending again. A pending one is on its way already: 409.
#[utoipa::path(
    post, path = "/api/v1/webhook-deliveries/{id}/replay", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Delivery id")),
    responses(
        (status = 202, description = "The delivery will be sent again", body = ReplayAccepted),
        (status = 404, description = "No such delivery", body = ErrorBody),
        (status = 409, description = "The delivery is still pending (queued or retrying)", body = ErrorBody),
        (status = 422, description = "The id is not a UUID", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn replay(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<ReplayAccepted>), ApiError> {
    let outcome = match ops::replay(&state.services, id, ACTOR).await? {
        Replay::Replayed => ReplayOutcome::Replayed,
        Replay::Redriven => ReplayOutcome::Redriven,
        Replay::AlreadyPending => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("webhook delivery {id} is still pending: it is on its way already"),
            ));
        }
        Replay::NotFound => return Err(no_delivery(id)),
    };
    tracing::info!(delivery_id = %id, ?outcome, "webhook delivery replayed through the API");
    Ok((
        StatusCode::ACCEPTED,
        Json(ReplayAccepted {
            delivery_id: id,
            outcome,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events as the store keeps them.
    fn event_names(events: &[EventType]) -> Vec<String> {
        events
            .iter()
            .map(|e| match serde_json::to_value(e) {
                Ok(Value::String(s)) => s,
                _ => String::new(),
            })
            .collect()
    }

    /// The documented pattern of a secret: no control characters (the server also counts
    /// its bytes: 16 to 256).
    const SECRET_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*$";

    /// The event enum of the document is the store's catalogue, in its order.
    #[test]
    fn the_documented_events_are_the_catalogue() {
        let all = [
            EventType::JobCompleted,
            EventType::JobCompletedWithErrors,
            EventType::JobFailed,
            EventType::CrawlEnded,
            EventType::PageExtracted,
            EventType::ItemDeadLettered,
            EventType::ItemParked,
        ];
        assert_eq!(event_names(&all), store::EVENT_TYPES);
        let doc = serde_json::to_value(crate::openapi()).expect("document");
        let documented = &doc["components"]["schemas"]["EventType"]["enum"];
        assert_eq!(documented, &serde_json::json!(store::EVENT_TYPES));
    }

    /// The documented secret pattern refuses what the server's check refuses (control
    /// characters) and accepts the rest.
    #[test]
    fn the_documented_secret_pattern_says_what_the_server_accepts() {
        let re = regex::Regex::new(SECRET_PATTERN).expect("compiles");
        for s in [
            "a-long-enough-secret",
            "with space ok é",
            "x\u{85}y",
            "nul\0",
            "tab\t",
        ] {
            assert_eq!(re.is_match(s), !s.chars().any(char::is_control), "{s:?}");
        }
        let doc = serde_json::to_value(crate::openapi()).expect("document");
        let pattern = &doc["components"]["schemas"]["CreateWebhookRequest"]["properties"]["secret"]
            ["pattern"];
        assert_eq!(pattern, SECRET_PATTERN);
    }
}
