//! Webhooks: endpoints, deliveries and each delivery's trail (`webhook_*` tables).
//!
//! Deliveries are written by triggers in the transaction of the change they report
//! (migration `20261223000001_webhooks.sql`), so no event is lost between a change and its
//! delivery. The webhook worker relays new deliveries to its queue ([`claim_unrelayed`],
//! then [`mark_relayed`] once the queue has them), sends them ([`for_delivery`],
//! [`record_attempt`]), and queues again the pending ones Redis lost ([`stale_pending`]).
//! Dead-letters, redrives, parks and discards of the `webhooks` DLQ are booked here too
//! ([`mark`]), and a delivery can be sent again on request ([`replay`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::{Actor, Result};

/// The event types an endpoint may subscribe to (the table's `pipeline_webhook_event_types`).
pub const EVENT_TYPES: [&str; 7] = [
    "job.completed",
    "job.completed_with_errors",
    "job.failed",
    "crawl.ended",
    "page.extracted",
    "item.dead_lettered",
    "item.parked",
];

/// The event a test delivery carries (`POST /api/v1/webhooks/{id}/test`): never subscribed
/// to, always sent to the endpoint asked for.
pub const PING_EVENT: &str = "ping";

/// The channel the triggers notify when they write deliveries.
pub const NOTIFY_CHANNEL: &str = "pipeline_webhooks";

/// A registered endpoint, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub id: Uuid,
    pub project_id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What registering an endpoint needs (the caller has checked the URL and the events).
#[derive(Debug, Clone)]
pub struct NewEndpoint<'a> {
    pub project_id: Uuid,
    pub url: &'a str,
    pub events: &'a [String],
    pub secret: &'a str,
    pub description: &'a str,
}

/// Changes to an endpoint; `None` keeps the field.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch<'a> {
    pub url: Option<&'a str>,
    pub events: Option<&'a [String]>,
    pub secret: Option<&'a str>,
    pub description: Option<&'a str>,
    pub enabled: Option<bool>,
}

/// Registers an endpoint.
pub async fn create_endpoint(pool: &PgPool, new: &NewEndpoint<'_>) -> Result<Endpoint> {
    let id = Uuid::now_v7();
    let r = sqlx::query_as!(
        Endpoint,
        "INSERT INTO webhook_endpoints (id, project_id, url, events, secret, description)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, project_id, url, events, description, enabled, created_at, updated_at",
        id,
        new.project_id,
        new.url,
        new.events,
        new.secret,
        new.description,
    )
    .fetch_one(pool)
    .await?;
    Ok(r)
}

/// A project's endpoints, oldest first.
pub async fn list_endpoints(pool: &PgPool, project_id: Uuid) -> Result<Vec<Endpoint>> {
    Ok(sqlx::query_as!(
        Endpoint,
        "SELECT id, project_id, url, events, description, enabled, created_at, updated_at
           FROM webhook_endpoints WHERE project_id = $1 ORDER BY created_at, id",
        project_id
    )
    .fetch_all(pool)
    .await?)
}

/// One endpoint.
pub async fn get_endpoint(pool: &PgPool, id: Uuid) -> Result<Option<Endpoint>> {
    Ok(sqlx::query_as!(
        Endpoint,
        "SELECT id, project_id, url, events, description, enabled, created_at, updated_at
           FROM webhook_endpoints WHERE id = $1",
        id
    )
    .fetch_optional(pool)
    .await?)
}

/// Changes an endpoint; `None` when there is none with that id.
pub async fn update_endpoint(
    pool: &PgPool,
    id: Uuid,
    patch: &EndpointPatch<'_>,
) -> Result<Option<Endpoint>> {
    Ok(sqlx::query_as!(
        Endpoint,
        "UPDATE webhook_endpoints
            SET url = COALESCE($2, url), events = COALESCE($3, events),
                secret = COALESCE($4, secret), description = COALESCE($5, description),
                enabled = COALESCE($6, enabled), updated_at = now()
          WHERE id = $1
         RETURNING id, project_id, url, events, description, enabled, created_at, updated_at",
        id,
        patch.url,
        patch.events,
        patch.secret,
        patch.description,
        patch.enabled,
    )
    .fetch_optional(pool)
    .await?)
}

/// Removes an endpoint and its deliveries (a delivery still queued is then acked unsent).
pub async fn delete_endpoint(pool: &PgPool, id: Uuid) -> Result<bool> {
    let r = sqlx::query!("DELETE FROM webhook_endpoints WHERE id = $1", id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// A delivery as lists show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    /// Also the idempotency id the receiver sees.
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub project_id: Uuid,
    pub event: String,
    /// `pending`, `delivered`, `dead_lettered`, `parked` or `cancelled`.
    pub status: String,
    /// HTTP requests made so far.
    pub attempts: i32,
    /// The last answer's HTTP status, when there was an answer.
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// One entry of a delivery's trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryEvent {
    pub id: i64,
    /// `attempt`, `delivered`, `dead_lettered`, `redriven`, `parked`, `discarded`,
    /// `replayed`, `cancelled` or `reconciled`.
    pub kind: String,
    pub attempt: Option<i32>,
    pub http_status: Option<i32>,
    pub latency_ms: Option<i32>,
    pub error: Option<String>,
    pub actor: Option<String>,
    pub at: DateTime<Utc>,
}

/// An endpoint's deliveries, newest first: up to `limit` created before `before` (a
/// delivery id from the previous page), with status `status` when given.
pub async fn list_deliveries(
    pool: &PgPool,
    endpoint_id: Uuid,
    status: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Delivery>> {
    Ok(sqlx::query_as!(
        Delivery,
        "SELECT id, endpoint_id, project_id, event, status, attempts, last_status, last_error,
                created_at, updated_at, delivered_at
           FROM webhook_deliveries
          WHERE endpoint_id = $1 AND ($2::text IS NULL OR status = $2)
            AND ($3::uuid IS NULL OR (created_at, id) <
                 (SELECT created_at, id FROM webhook_deliveries WHERE id = $3))
          ORDER BY created_at DESC, id DESC
          LIMIT $4",
        endpoint_id,
        status,
        before,
        limit,
    )
    .fetch_all(pool)
    .await?)
}

/// One delivery with its payload and trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: Delivery,
    /// The JSON body sent.
    pub payload: serde_json::Value,
    /// The trail, oldest first.
    pub events: Vec<DeliveryEvent>,
}

/// One delivery, its payload and its trail (up to the latest 500 entries).
pub async fn get_delivery(pool: &PgPool, id: Uuid) -> Result<Option<DeliveryDetail>> {
    let Some(r) = sqlx::query!(
        "SELECT id, endpoint_id, project_id, event, status, attempts, last_status, last_error,
                created_at, updated_at, delivered_at, payload
           FROM webhook_deliveries WHERE id = $1",
        id
    )
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let mut events = sqlx::query_as!(
        DeliveryEvent,
        "SELECT id, kind, attempt, http_status, latency_ms, error, actor, at
           FROM webhook_delivery_events WHERE delivery_id = $1
          ORDER BY id DESC LIMIT 500",
        id
    )
    .fetch_all(pool)
    .await?;
    events.reverse();
    Ok(Some(DeliveryDetail {
        delivery: Delivery {
            id: r.id,
            endpoint_id: r.endpoint_id,
            project_id: r.project_id,
            event: r.event,
            status: r.status,
            attempts: r.attempts,
            last_status: r.last_status,
            last_error: r.last_error,
            created_at: r.created_at,
            updated_at: r.updated_at,
            delivered_at: r.delivered_at,
        },
        payload: r.payload,
        events,
    }))
}

/// Writes a `ping` delivery to endpoint `endpoint_id` (enabled or not); `None` when there
/// is no such endpoint.
pub async fn ping(pool: &PgPool, endpoint_id: Uuid) -> Result<Option<Uuid>> {
    let id = Uuid::now_v7();
    let r = sqlx::query_scalar!(
        "WITH d AS (
           INSERT INTO webhook_deliveries (id, endpoint_id, project_id, event, payload)
           SELECT $1, e.id, e.project_id, $2,
                  jsonb_build_object('id', $1::uuid, 'type', $2::text, 'created_at', now(),
                                     'project_id', e.project_id,
                                     'data', jsonb_build_object('endpoint_id', e.id))
             FROM webhook_endpoints e WHERE e.id = $3
           RETURNING id)
         SELECT id FROM d",
        id,
        PING_EVENT,
        endpoint_id,
    )
    .fetch_optional(pool)
    .await?;
    if r.is_some() {
        notify(pool).await?;
    }
    Ok(r)
}

/// Wakes the webhook workers (as the triggers do).
pub async fn notify(pool: &PgPool) -> Result<()> {
    sqlx::query!("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
        .execute(pool)
        .await?;
    Ok(())
}

/// Up to `limit` pending deliveries never put on the queue, oldest first, locked in `tx`
/// (other workers skip them) and marked as queued when `tx` commits. The caller enqueues
/// them before committing: a crash in between leaves them unmarked, to be relayed again
/// (the queue's message id is the delivery id, and a delivered one is never sent twice).
pub async fn claim_unrelayed(
    tx: &mut Transaction<'_, Postgres>,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid)>> {
    let rows = sqlx::query!(
        "UPDATE webhook_deliveries d SET enqueued_at = now()
           FROM (SELECT id FROM webhook_deliveries
                  WHERE status = 'pending' AND enqueued_at IS NULL
                  ORDER BY created_at
                  LIMIT $1 FOR UPDATE SKIP LOCKED) c
          WHERE d.id = c.id
         RETURNING d.id, d.project_id",
        limit
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.project_id)).collect())
}

/// Pending deliveries queued more than `older_than_secs` ago (their message may be lost:
/// the caller asks Redis), up to `limit`, oldest first.
pub async fn stale_pending(
    pool: &PgPool,
    older_than_secs: i64,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid)>> {
    let rows = sqlx::query!(
        "SELECT id, project_id FROM webhook_deliveries
          WHERE status = 'pending'
            AND enqueued_at < now() - $1::bigint * interval '1 second'
          ORDER BY enqueued_at LIMIT $2",
        older_than_secs,
        limit
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.project_id)).collect())
}

/// Marks deliveries as (re)queued now; with `reconciled`, their trail says why.
pub async fn mark_relayed(pool: &PgPool, ids: &[Uuid], reconciled: Option<Actor>) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "UPDATE webhook_deliveries SET enqueued_at = now() WHERE id = ANY($1)",
        ids
    )
    .execute(&mut *tx)
    .await?;
    if let Some(actor) = reconciled {
        sqlx::query!(
            "INSERT INTO webhook_delivery_events (delivery_id, kind, error, actor)
             SELECT id, 'reconciled', 'no queue or DLQ held its message; queued again', $2
               FROM unnest($1::uuid[]) AS id",
            ids,
            actor.as_str()
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// What sending a delivery needs.
#[derive(Debug, Clone)]
pub struct DeliveryWork {
    pub id: Uuid,
    pub status: String,
    pub event: String,
    /// The body, as stored.
    pub payload: serde_json::Value,
    pub attempts: i32,
    pub url: String,
    pub secret: String,
    pub enabled: bool,
}

/// A delivery with its endpoint's URL and secret; `None` when it (or its endpoint) was
/// removed.
pub async fn for_delivery(pool: &PgPool, id: Uuid) -> Result<Option<DeliveryWork>> {
    Ok(sqlx::query_as!(
        DeliveryWork,
        "SELECT d.id, d.status, d.event, d.payload, d.attempts, e.url, e.secret, e.enabled
           FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
          WHERE d.id = $1",
        id
    )
    .fetch_optional(pool)
    .await?)
}

/// One HTTP request of a delivery.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// Its number (1 for the first request).
    pub attempt: i32,
    /// The answer's status, when there was an answer.
    pub http_status: Option<i32>,
    pub latency_ms: i32,
    /// Why it failed; `None` for a delivered request.
    pub error: Option<&'a str>,
    pub actor: Actor,
}

/// Records an attempt; a successful one (no error) also marks the delivery `delivered`.
/// Returns `false` when the delivery no longer exists.
pub async fn record_attempt(pool: &PgPool, id: Uuid, a: &Attempt<'_>) -> Result<bool> {
    let delivered = a.error.is_none();
    let mut tx = pool.begin().await?;
    let r = sqlx::query!(
        "UPDATE webhook_deliveries
            SET attempts = GREATEST(attempts, $2), last_status = $3, last_error = $4,
                status = CASE WHEN $5 THEN 'delivered' ELSE status END,
                delivered_at = CASE WHEN $5 THEN now() ELSE delivered_at END,
                updated_at = now()
          WHERE id = $1",
        id,
        a.attempt,
        a.http_status,
        a.error,
        delivered,
    )
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query!(
        "INSERT INTO webhook_delivery_events
                (delivery_id, kind, attempt, http_status, latency_ms, error, actor)
         VALUES ($1, 'attempt', $2, $3, $4, $5, $6)",
        id,
        a.attempt,
        a.http_status,
        a.latency_ms,
        a.error,
        a.actor.as_str(),
    )
    .execute(&mut *tx)
    .await?;
    if delivered {
        sqlx::query!(
            "INSERT INTO webhook_delivery_events (delivery_id, kind, attempt, actor)
             VALUES ($1, 'delivered', $2, $3)",
            id,
            a.attempt,
            a.actor.as_str(),
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// A change of state booked for many deliveries at once (the DLQ's and the worker's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Out of attempts, or failed for good: in the `webhooks` DLQ.
    DeadLettered,
    /// Back on the queue from the DLQ.
    Redriven,
    /// Automatic redrive gave up.
    Parked,
    /// Removed from the DLQ by a person.
    Discarded,
    /// Its endpoint was disabled before it went out.
    Cancelled,
}

impl Mark {
    fn status(self) -> &'static str {
        match self {
            Self::DeadLettered => "dead_lettered",
            Self::Redriven => "pending",
            Self::Parked => "parked",
            Self::Discarded | Self::Cancelled => "cancelled",
        }
    }

    fn event(self) -> &'static str {
        match self {
            Self::DeadLettered => "dead_lettered",
            Self::Redriven => "redriven",
            Self::Parked => "parked",
            Self::Discarded => "discarded",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Books `mark` for `ids` (each with the error to keep, if any), in one transaction. A
/// delivered one keeps its status (a late duplicate settles nothing); a redrive moves only
/// dead-lettered or parked ones. Returns how many moved.
pub async fn mark(
    pool: &PgPool,
    mark: Mark,
    ids: &[Uuid],
    errors: &[Option<String>],
    actor: Actor,
) -> Result<u64> {
    debug_assert_eq!(ids.len(), errors.len());
    let mut tx = pool.begin().await?;
    let moved = sqlx::query_scalar!(
        "WITH m AS (
           UPDATE webhook_deliveries d
              SET status = $2, updated_at = now(),
                  last_error = COALESCE(x.error, d.last_error),
                  enqueued_at = CASE WHEN $2 = 'pending' THEN now() ELSE d.enqueued_at END
             FROM unnest($1::uuid[], $3::text[]) AS x(id, error)
            WHERE d.id = x.id AND d.status <> 'delivered'
              AND ($2 <> 'pending' OR d.status IN ('dead_lettered', 'parked'))
           RETURNING d.id, x.error)
         INSERT INTO webhook_delivery_events (delivery_id, kind, error, actor)
         SELECT id, $4, error, $5 FROM m
         RETURNING delivery_id",
        ids,
        mark.status(),
        errors as &[Option<String>],
        mark.event(),
        actor.as_str(),
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(moved.len() as u64)
}

/// Makes a finished delivery (delivered, cancelled) pending again, to be relayed and sent
/// once more with the same id; the trail says who asked. `None` when there is no such
/// delivery; `Some(false)` when it is not finished (pending ones are on their way, and
/// dead-lettered or parked ones are redriven from the DLQ instead).
pub async fn replay(pool: &PgPool, id: Uuid, actor: Actor) -> Result<Option<bool>> {
    let mut tx = pool.begin().await?;
    let Some(status) = sqlx::query_scalar!(
        "SELECT status FROM webhook_deliveries WHERE id = $1 FOR UPDATE",
        id
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    if !matches!(status.as_str(), "delivered" | "cancelled") {
        return Ok(Some(false));
    }
    sqlx::query!(
        "UPDATE webhook_deliveries
            SET status = 'pending', enqueued_at = NULL, delivered_at = NULL, updated_at = now()
          WHERE id = $1",
        id
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO webhook_delivery_events (delivery_id, kind, actor)
         VALUES ($1, 'replayed', $2)",
        id,
        actor.as_str()
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(true))
}

/// Delivery counts of an endpoint by status (for lists and the console).
pub async fn delivery_counts(pool: &PgPool, endpoint_id: Uuid) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query!(
        "SELECT status, count(*) AS \"n!\" FROM webhook_deliveries
          WHERE endpoint_id = $1 GROUP BY status ORDER BY status",
        endpoint_id
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.status, r.n)).collect())
}

/// Delivery counts by status of several endpoints at once, as `(endpoint, status, count)`
/// (for a project's list: one statement instead of one per endpoint).
pub async fn delivery_counts_many(
    pool: &PgPool,
    endpoint_ids: &[Uuid],
) -> Result<Vec<(Uuid, String, i64)>> {
    let rows = sqlx::query!(
        "SELECT endpoint_id, status, count(*) AS \"n!\" FROM webhook_deliveries
          WHERE endpoint_id = ANY($1) GROUP BY endpoint_id, status",
        endpoint_ids
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.endpoint_id, r.status, r.n))
        .collect())
}
