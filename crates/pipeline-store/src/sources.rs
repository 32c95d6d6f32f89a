//! Sources: status transitions with their events, fetch results, event trails, and the
//! reconciler's query for stuck sources.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::progress::Progress;
use crate::status::SourceStatus;
use crate::{Actor, Result, StoreError};

/// A status change of a source, with the event that explains it.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    /// The source.
    pub source_id: Uuid,
    /// The job on whose behalf the work ran, when known.
    pub job_id: Option<Uuid>,
    /// The new status.
    pub to: SourceStatus,
    /// The event kind written to `job_events` (`succeeded`, `dead_lettered`, ...).
    pub event: &'a str,
    /// The queue family the event is about: `scrape`, `extraction` or `facts`.
    pub stage: &'a str,
    /// Who records it.
    pub actor: Actor,
    /// The delivery attempt, when the event is about one.
    pub attempt: Option<i32>,
    /// Free-form detail for the trail (error, kind, worker, counts).
    pub detail: Value,
    /// The error to record on the source (`(kind, message)`), or `None` to clear it.
    pub error: Option<(&'a str, &'a str)>,
}

/// Applies a transition: the source's status and its event in one transaction, then the
/// progress of every job that includes the source ([`crate::progress`]). Returns `false`
/// when the source does not exist.
pub async fn transition(pool: &PgPool, progress: &Progress, t: &Transition<'_>) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let jobs = transition_in(&mut tx, t).await?;
    tx.commit().await?;
    progress.after_transition(pool, jobs).await
}

/// [`transition`] inside the caller's transaction (for callers that write more rows
/// atomically with the status change): one statement writes the status and the event.
/// Returns the jobs that include the source (`None`: no such source); the caller passes
/// them to [`Progress::after_transition`] once its transaction has committed.
///
/// No job row is locked here, so transitions of one job's sources run in parallel; only
/// the short progress refresh afterwards is serialised per job.
pub async fn transition_in(
    tx: &mut Transaction<'_, Postgres>,
    t: &Transition<'_>,
) -> Result<Option<Vec<Uuid>>> {
    let (kind, message) = match t.error {
        Some((k, m)) => (Some(k), Some(m)),
        None => (None, None),
    };
    let row = sqlx::query_scalar!(
        "WITH u AS (
             UPDATE sources SET status = $2, updated_at = now(), last_error_kind = $3,
                    last_error = $4,
                    last_error_stage = CASE WHEN $3::text IS NULL THEN NULL ELSE $7 END
             WHERE id = $1
             RETURNING id
         ), e AS (
             INSERT INTO job_events (job_id, source_id, kind, stage, actor, attempt, detail)
             SELECT $5, u.id, $6, $7, $10, $8, $9 FROM u
         )
         SELECT (SELECT array_agg(job_id ORDER BY job_id) FROM job_sources WHERE source_id = u.id)
         FROM u",
        t.source_id,
        t.to.as_str(),
        kind,
        message,
        t.job_id,
        t.event,
        t.stage,
        t.attempt,
        &t.detail,
        t.actor.as_str(),
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(Option::unwrap_or_default))
}

/// One event to append to a source's trail.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    /// The job on whose behalf, when known.
    pub job_id: Option<Uuid>,
    /// The source.
    pub source_id: Uuid,
    /// `started`, `reconciled`, ...
    pub kind: &'a str,
    /// The queue family it is about.
    pub stage: &'a str,
    /// Who records it.
    pub actor: Actor,
    /// The delivery attempt, when it is about one.
    pub attempt: Option<i32>,
    /// Free-form detail.
    pub detail: &'a Value,
}

/// Appends one event to a source's trail.
pub async fn record_event_in(tx: &mut Transaction<'_, Postgres>, e: &NewEvent<'_>) -> Result<()> {
    sqlx::query!(
        "INSERT INTO job_events (job_id, source_id, kind, stage, actor, attempt, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        e.job_id,
        e.source_id,
        e.kind,
        e.stage,
        e.actor.as_str(),
        e.attempt,
        e.detail,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Appends one event without changing the status.
pub async fn record_event(pool: &PgPool, e: &NewEvent<'_>) -> Result<()> {
    let mut tx = pool.begin().await?;
    record_event_in(&mut tx, e).await?;
    tx.commit().await?;
    Ok(())
}

/// Appends one `kind` event per source of `sources` (`(source, job)`), all with the same
/// stage, actor and detail, in one statement: an operation that queues many sources at once
/// (re-extraction, say) leaves its mark on each one's trail. Sources that do not exist are
/// skipped. Returns how many events were written.
pub async fn record_events_for(
    pool: &PgPool,
    sources: &[(Uuid, Option<Uuid>)],
    kind: &str,
    stage: &str,
    actor: Actor,
    detail: &Value,
) -> Result<u64> {
    let ids: Vec<Uuid> = sources.iter().map(|s| s.0).collect();
    let jobs: Vec<Option<Uuid>> = sources.iter().map(|s| s.1).collect();
    Ok(sqlx::query!(
        "INSERT INTO job_events (job_id, source_id, kind, stage, actor, detail)
         SELECT u.job_id, u.id, $3, $4, $5, $6
           FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS u(id, job_id, ord)
          WHERE EXISTS (SELECT 1 FROM sources s WHERE s.id = u.id)
          ORDER BY u.ord",
        &ids,
        &jobs as &[Option<Uuid>],
        kind,
        stage,
        actor.as_str(),
        detail,
    )
    .execute(pool)
    .await?
    .rows_affected())
}

/// A source row, without its (possibly large) bodies.
#[derive(Debug, Clone, Serialize)]
pub struct SourceRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub url: String,
    pub source_group: Option<String>,
    pub status: SourceStatus,
    pub title: Option<String>,
    pub content_type: Option<String>,
    pub http_status: Option<i32>,
    pub fetched_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_kind: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by_job_id: Option<Uuid>,
}

/// The one column list of [`SourceRow`]: `query_as!` over `SELECT <columns> ` + the rest of
/// the statement (`$from`, a string literal), optionally after a `WITH` clause. The query
/// macros take only literals (joined with `+`), hence a macro rather than a `const`. The
/// `!` marks keep the columns non-null when the statement reads them through a CTE, where
/// Postgres reports no table column for sqlx to infer nullability from.
macro_rules! query_source_rows {
    (with $with:tt, $from:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $crate::sources::SourceRow,
            $with
                + r#" SELECT id AS "id!", project_id AS "project_id!", uri AS "url!", source_group,
                  status AS "status!: crate::status::SourceStatus", title, content_type,
                  http_status, fetched_at, last_error, last_error_kind,
                  created_at AS "created_at!", updated_at AS "updated_at!", created_by_job_id "#
                + $from
            $(, $arg)*
        )
    };
    ($from:tt $(, $arg:expr)* $(,)?) => {
        query_source_rows!(with "", $from $(, $arg)*)
    };
}
pub(crate) use query_source_rows;

/// One source by id.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<SourceRow> {
    query_source_rows!("FROM sources WHERE id = $1", id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("source {id}")))
}

/// Sources with this exact URI, in any project, newest first.
pub async fn find_by_url(pool: &PgPool, url: &str) -> Result<Vec<SourceRow>> {
    Ok(
        query_source_rows!("FROM sources WHERE uri = $1 ORDER BY created_at DESC", url)
            .fetch_all(pool)
            .await?,
    )
}

/// The URLs of `ids` (sources that do not exist are left out), in one round trip: what a
/// DLQ listing shows beside each item.
pub async fn urls(pool: &PgPool, ids: &[Uuid]) -> Result<std::collections::HashMap<Uuid, String>> {
    let rows = sqlx::query!("SELECT id, uri AS url FROM sources WHERE id = ANY($1)", ids)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.url)).collect())
}

/// One event of a source's trail (the API returns it as it is: `EventBody`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = EventBody))]
pub struct EventRow {
    /// Event id (increasing).
    pub id: i64,
    /// The job it happened for.
    pub job_id: Option<Uuid>,
    /// The source.
    pub source_id: Option<Uuid>,
    /// `enqueued`, `started`, `succeeded`, `failed`, `dead_lettered`, `redriven`, `parked`,
    /// `discarded`, `reconciled`, `unchanged`.
    pub kind: String,
    /// The queue family it is about: `scrape`, `extraction` or `facts`.
    pub stage: Option<String>,
    /// Who recorded it: `scrape-worker`, `extraction-worker`, `requeue-daemon`, `api`,
    /// `cli` or `console` (`null` on submissions recorded before actors had a column).
    pub actor: Option<String>,
    /// The attempt number, when relevant.
    pub attempt: Option<i32>,
    /// Details (error, kind, delay, DLQ...).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub detail: Option<Value>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A source's event trail, oldest first.
pub async fn events(pool: &PgPool, source_id: Uuid) -> Result<Vec<EventRow>> {
    events_page(pool, source_id, 0, i64::MAX).await
}

/// A page of a source's events, oldest first, starting after the event id `after`.
pub async fn events_page(
    pool: &PgPool,
    source_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<EventRow>> {
    Ok(sqlx::query_as!(
        EventRow,
        "SELECT id, job_id, source_id, kind, stage, actor, attempt, detail, at
         FROM job_events WHERE source_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        source_id,
        after,
        limit,
    )
    .fetch_all(pool)
    .await?)
}

/// What the scrape worker stores about a fetched page.
#[derive(Debug, Clone)]
pub struct Fetched<'a> {
    /// The body decoded to text; empty for a binary document.
    pub raw_content: &'a str,
    /// The body byte for byte when it is a binary document (a PDF), stored in `raw_bytes`.
    pub raw_bytes: Option<&'a [u8]>,
    pub title: Option<&'a str>,
    pub content_type: &'a str,
    pub http_status: i32,
    /// The response's `ETag`, kept for a later conditional request.
    pub etag: Option<&'a str>,
    /// The response's `Last-Modified`, kept for a later conditional request.
    pub last_modified: Option<&'a str>,
    /// SHA-256 (hex) of the body as stored (`raw_bytes` when set, else `raw_content`).
    pub content_sha256: Option<&'a str>,
}

/// Stores a fetched page and moves the source to `scraped` with its `succeeded` event, in
/// one statement (so one round trip and one commit). The progress of the source's jobs is
/// refreshed in the background ([`Progress::refresh_in_background`]): `scraped` finishes
/// no job, so the worker need not wait for the job row. Returns `false` when the source
/// does not exist.
pub async fn store_fetched(
    pool: &PgPool,
    progress: &Progress,
    source_id: Uuid,
    job_id: Option<Uuid>,
    attempt: Option<i32>,
    page: &Fetched<'_>,
    detail: Value,
) -> Result<bool> {
    let row = sqlx::query_scalar!(
        "WITH u AS (
             UPDATE sources SET raw_content = $2, title = $3, content_type = $4,
                    http_status = $5, fetched_at = now(), status = 'scraped',
                    updated_at = now(), last_error_kind = NULL, last_error = NULL,
                    etag = $9, last_modified = $10, content_sha256 = $11, raw_bytes = $12
             WHERE id = $1
             RETURNING id
         ), e AS (
             INSERT INTO job_events (job_id, source_id, kind, stage, actor, attempt, detail)
             SELECT $6, u.id, 'succeeded', 'scrape', 'scrape-worker', $7, $8 FROM u
         )
         SELECT (SELECT array_agg(job_id ORDER BY job_id) FROM job_sources WHERE source_id = u.id)
         FROM u",
        source_id,
        page.raw_content,
        page.title,
        page.content_type,
        page.http_status,
        job_id,
        attempt,
        &detail,
        page.etag,
        page.last_modified,
        page.content_sha256,
        page.raw_bytes,
    )
    .fetch_optional(pool)
    .await?;
    match row {
        Some(jobs) => {
            progress.refresh_in_background(pool, jobs.unwrap_or_default());
            Ok(true)
        }
        None => Ok(false),
    }
}

/// What a fetch for a recrawl compares with: the validators and hash of the body the
/// source's last extraction came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revisit {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// SHA-256 (hex) of the extracted body.
    pub sha256: String,
}

/// The [`Revisit`] of a source, when its stored body is the one its last extraction
/// finished with; `None` otherwise (never extracted, or a newer body stored since, whose
/// extraction has not finished): such a page is fetched and extracted as usual.
pub async fn revisit(pool: &PgPool, source_id: Uuid) -> Result<Option<Revisit>> {
    let row = sqlx::query!(
        r#"SELECT etag, last_modified, extracted_sha256 AS "sha256!" FROM sources
            WHERE id = $1 AND extracted_sha256 IS NOT NULL
              AND extracted_sha256 = content_sha256"#,
        source_id,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| Revisit {
        etag: r.etag,
        last_modified: r.last_modified,
        sha256: r.sha256,
    }))
}

/// The stored body of a source (to read the links of a page the server says is unchanged).
pub async fn raw_content(pool: &PgPool, source_id: Uuid) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar!("SELECT raw_content FROM sources WHERE id = $1", source_id)
            .fetch_optional(pool)
            .await?
            .flatten(),
    )
}

/// A page fetched again whose content did not change since its last extraction: the
/// source becomes `extracted` again with an `unchanged` event (`detail` says how it was
/// known: a 304, or the same hash), and no extraction is enqueued. When its project's
/// current schema is not the one its records were made with (or it has none yet), it
/// becomes `facts_pending` instead, for the caller to enqueue its facts message: the page
/// did not change, but the question did. Refreshes the progress of the source's jobs.
pub async fn store_unchanged(
    pool: &PgPool,
    progress: &Progress,
    source_id: Uuid,
    job_id: Option<Uuid>,
    attempt: Option<i32>,
    detail: Value,
) -> Result<crate::extractions::Finished> {
    use crate::extractions::Finished;
    let mut tx = pool.begin().await?;
    // One statement: the fetch time, and whether the project's current schema is not the
    // one the page's records were made with (or it has none yet).
    let needs_facts = sqlx::query_scalar!(
        r#"UPDATE sources s SET fetched_at = now()
             FROM projects p
            WHERE s.id = $1 AND p.id = s.project_id
        RETURNING (p.schema_version IS NOT NULL
                   AND (SELECT r.schema_version FROM fact_runs r WHERE r.source_id = s.id)
                       IS DISTINCT FROM p.schema_version) AS "needs!""#,
        source_id,
    )
    .fetch_optional(&mut *tx)
    .await?
    .unwrap_or(false);
    let jobs = transition_in(
        &mut tx,
        &Transition {
            source_id,
            job_id,
            to: if needs_facts {
                SourceStatus::FactsPending
            } else {
                SourceStatus::Extracted
            },
            event: "unchanged",
            stage: "scrape",
            actor: Actor::ScrapeWorker,
            attempt,
            detail,
            error: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(match progress.after_transition(pool, jobs).await? {
        false => Finished::Missing,
        true if needs_facts => Finished::FactsPending,
        true => Finished::Extracted,
    })
}

/// Loads a source for a worker about to work on it and, unless its status is one of
/// `done` (a redelivery of finished work), records the `started` event, in one statement.
/// The event's detail is `detail` plus the source's URL (`url`).
pub async fn start_work(
    pool: &PgPool,
    source_id: Uuid,
    job_id: Option<Uuid>,
    worker: Actor,
    attempt: Option<i32>,
    done: &[SourceStatus],
    detail: &Value,
) -> Result<SourceRow> {
    let done: Vec<&str> = done.iter().map(|s| s.as_str()).collect();
    // The event's CTE and the outer SELECT read the row in the same snapshot, each by the
    // primary key; neither touches the bodies.
    query_source_rows!(
        with "WITH e AS (
             INSERT INTO job_events (job_id, source_id, kind, stage, actor, attempt, detail)
             SELECT $2, s.id, 'started', $3, $7, $4, $5 || jsonb_build_object('url', s.uri)
             FROM sources s WHERE s.id = $1 AND s.status <> ALL($6)
         )",
        "FROM sources WHERE id = $1",
        source_id,
        job_id,
        worker.family(),
        attempt,
        detail,
        &done as &[&str],
        worker.as_str(),
    )
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("source {source_id}")))
}

/// A source the reconciler may enqueue again.
#[derive(Debug, Clone)]
pub struct StuckSource {
    pub id: Uuid,
    pub status: SourceStatus,
    pub created_by_job_id: Option<Uuid>,
    pub updated_at: DateTime<Utc>,
    /// When the page was fetched: tells a `retrying` source's family (none: scrape).
    pub fetched_at: Option<DateTime<Utc>>,
    /// The family whose stage failed last (`sources.last_error_stage`): a `retrying` or
    /// `dead_lettered` source waits for that stage.
    pub last_error_stage: Option<String>,
}

/// Sources that still wait for something, whose last progress is older than
/// `older_than_secs`, in `(updated_at, id)` order after `after` (a keyset cursor: the
/// reconciler walks past the sources it found held, instead of seeing the same oldest ones
/// every sweep), at most `limit`.
///
/// Waiting means an in-flight status ([`SourceStatus::IN_FLIGHT`]) or `dead_lettered` with
/// a transient error (the DLQ's redrive is still to come; a permanent one waits for a
/// person and is terminal).
pub async fn stuck(
    pool: &PgPool,
    older_than_secs: i64,
    limit: i64,
    after: Option<(DateTime<Utc>, Uuid)>,
) -> Result<Vec<StuckSource>> {
    let statuses: Vec<&str> = SourceStatus::IN_FLIGHT.iter().map(|s| s.as_str()).collect();
    let (after_at, after_id) = after.unzip();
    Ok(sqlx::query_as!(
        StuckSource,
        r#"SELECT id, status AS "status: SourceStatus", created_by_job_id, updated_at, fetched_at,
                 last_error_stage
           FROM sources
          WHERE (status = ANY($1)
                 OR (status = 'dead_lettered' AND last_error_kind IS DISTINCT FROM 'permanent'))
            AND updated_at < now() - make_interval(secs => $2)
            AND ($4::timestamptz IS NULL OR (updated_at, id) > ($4, $5))
          ORDER BY updated_at, id LIMIT $3"#,
        &statuses as &[&str],
        older_than_secs as f64,
        limit,
        after_at,
        after_id,
    )
    .fetch_all(pool)
    .await?)
}

/// Marks a source as seen by the reconciler without changing its status, so the next sweep
/// does not pick it again at once.
pub async fn touch(pool: &PgPool, source_id: Uuid) -> Result<()> {
    sqlx::query!(
        "UPDATE sources SET updated_at = now() WHERE id = $1",
        source_id
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// The queue lane of each source in `ids`: its project and the priority of the job that
/// created it (`normal` without one), with that job's render mode (`None`: the worker's
/// default). Sources that do not exist are left out.
///
/// # Errors
/// Postgres.
pub async fn lanes_of(
    db: impl sqlx::PgExecutor<'_>,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, (Uuid, String, Option<String>)>> {
    let rows: Vec<(Uuid, Uuid, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT s.id, s.project_id, j.priority, j.render
           FROM sources s LEFT JOIN jobs j ON j.id = s.created_by_job_id
          WHERE s.id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, project, priority, render)| {
            (
                id,
                (project, priority.unwrap_or_else(|| "normal".into()), render),
            )
        })
        .collect())
}
