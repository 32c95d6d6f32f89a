//! Jobs: creation with their sources, progress refresh, listing and detail.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::sources::{SourceRow, query_source_rows};
use crate::status::JobStatus;
use crate::{Actor, Result, StoreError};

/// The name of the project used when a submission names none.
pub const DEFAULT_PROJECT: &str = "default";

/// A URL refused at submission, with the reason.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct InvalidUrl {
    pub url: String,
    pub reason: String,
}

/// What to create for a submission (URLs already validated by the caller).
#[derive(Debug, Clone)]
pub struct NewScrapeJob<'a> {
    pub project: ProjectRef<'a>,
    pub source_group: Option<&'a str>,
    pub urls: &'a [String],
    pub invalid: &'a [InvalidUrl],
    /// Who submitted (recorded on each source's `enqueued` event).
    pub actor: Actor,
    /// Most model tokens the job's pages may spend (`jobs.model_token_cap`).
    pub model_token_cap: Option<i64>,
    /// `high`, `normal` or `low` (`jobs.priority`).
    pub priority: &'a str,
    /// `never`, `auto` or `always` (`jobs.render`); `None`: the scrape worker's default.
    pub render: Option<&'a str>,
}

/// A project by id or by name (created when missing).
#[derive(Debug, Clone, Copy)]
pub enum ProjectRef<'a> {
    Id(Uuid),
    Name(&'a str),
}

/// One source of a new job.
#[derive(Debug, Clone, Serialize)]
pub struct JobSource {
    pub source_id: Uuid,
    pub url: String,
    /// `false` when the URL already had a source in the project (it joins the job).
    pub created: bool,
}

/// The rows a submission created.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedJob {
    pub job_id: Uuid,
    pub project_id: Uuid,
    pub sources: Vec<JobSource>,
}

/// Sources written per transaction by [`create_scrape_job`].
pub const SUBMIT_BATCH: usize = 500;

/// Creates the job, upserts one source per URL (unique per project and URL) with
/// `created_by_job_id`, links them to the job and records an `enqueued` event each.
///
/// The job row commits first, then the sources in transactions of [`SUBMIT_BATCH`] (three
/// statements each, over arrays), then the job's progress. A 10,000-URL submission thus
/// holds a pooled connection for a few milliseconds at a time instead of for ten thousand
/// round trips in one transaction, and concurrent submissions and readers interleave. URLs
/// are written in sorted order, so two submissions sharing URLs lock them in the same order
/// and cannot deadlock.
///
/// The caller enqueues after this returns; if it crashes before (or between batches), the
/// reconciler finds the `queued` sources and enqueues them. A batch that fails is recorded
/// in the job's `error` and the error returned; the batches before it stay.
pub async fn create_scrape_job(pool: &PgPool, new: &NewScrapeJob<'_>) -> Result<CreatedJob> {
    let mut tx = pool.begin().await?;
    let project_id = match new.project {
        ProjectRef::Id(id) => {
            let exists = sqlx::query_scalar!("SELECT id FROM projects WHERE id = $1", id)
                .fetch_optional(&mut *tx)
                .await?;
            exists.ok_or_else(|| StoreError::NotFound(format!("project {id}")))?
        }
        ProjectRef::Name(name) => ensure_project_in(&mut tx, name).await?,
    };
    let job_id = Uuid::now_v7();
    let payload = json!({
        "urls": new.urls,
        "invalid_urls": new.invalid,
        "source_group": new.source_group,
    });
    sqlx::query!(
        "INSERT INTO jobs (id, project_id, type, status, payload, result, model_token_cap,
                           priority)
         VALUES ($1, $2, 'scrape', $3, $4, $5, $6, $7)",
        job_id,
        project_id,
        JobStatus::Queued.as_str(),
        &payload,
        json!({"total": new.urls.len(), "invalid_urls": new.invalid.len()}),
        new.model_token_cap,
        new.priority,
    )
    .execute(&mut *tx)
    .await?;
    crate::job_settings::set_render_in(&mut tx, job_id, new.render).await?;
    tx.commit().await?;
    drop(payload);

    let mut order: Vec<usize> = (0..new.urls.len()).collect();
    order.sort_by(|&a, &b| new.urls[a].cmp(&new.urls[b]));
    let mut written: Vec<Option<JobSource>> = vec![None; new.urls.len()];
    for (n, batch) in order.chunks(SUBMIT_BATCH).enumerate() {
        let urls: Vec<&str> = batch.iter().map(|&i| new.urls[i].as_str()).collect();
        match write_sources(pool, job_id, project_id, new.source_group, &urls, new.actor).await {
            Ok(rows) => {
                for (&i, row) in batch.iter().zip(rows) {
                    written[i] = Some(row);
                }
            }
            Err(err) => {
                let note = format!(
                    "submission interrupted after {} of {} sources",
                    n * SUBMIT_BATCH,
                    new.urls.len()
                );
                // Best effort: the batch error is what the caller needs; a failure to note
                // it on the job is only logged.
                if let Err(e) =
                    sqlx::query!("UPDATE jobs SET error = $2 WHERE id = $1", job_id, note)
                        .execute(pool)
                        .await
                {
                    tracing::warn!(%job_id, error = %e, "could not record the interrupted submission");
                }
                return Err(err);
            }
        }
    }
    let mut tx = pool.begin().await?;
    refresh_in(&mut tx, job_id).await?;
    tx.commit().await?;
    Ok(CreatedJob {
        job_id,
        project_id,
        sources: written.into_iter().flatten().collect(),
    })
}

/// One batch of [`create_scrape_job`]: upserts the sources (on conflict the existing source
/// is re-queued for this job, keeping the job that created it; `xmax = 0` tells an insert
/// from an update), links them to the job and writes their events, in one transaction.
/// Returns the rows in the order of `urls`.
async fn write_sources(
    pool: &PgPool,
    job_id: Uuid,
    project_id: Uuid,
    source_group: Option<&str>,
    urls: &[&str],
    actor: Actor,
) -> Result<Vec<JobSource>> {
    let new_ids: Vec<Uuid> = urls.iter().map(|_| Uuid::now_v7()).collect();
    let mut tx = pool.begin().await?;
    let rows = sqlx::query!(
        r#"INSERT INTO sources (id, project_id, uri, source_group, status, created_by_job_id)
           SELECT u.id, $3, u.uri, $4, 'queued', $5
             FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS u(id, uri, ord)
            ORDER BY u.ord
           ON CONFLICT (project_id, uri) DO UPDATE
              SET status = 'queued', updated_at = now(),
                  source_group = COALESCE(EXCLUDED.source_group, sources.source_group)
           RETURNING id, uri AS url, (xmax = 0) AS "created!""#,
        &new_ids,
        urls as &[&str],
        project_id,
        source_group,
        job_id,
    )
    .fetch_all(&mut *tx)
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let row_urls: Vec<&str> = rows.iter().map(|r| r.url.as_str()).collect();
    let created: Vec<bool> = rows.iter().map(|r| r.created).collect();
    sqlx::query!(
        "INSERT INTO job_sources (job_id, source_id)
         SELECT $1, u.id FROM unnest($2::uuid[]) AS u(id) ON CONFLICT DO NOTHING",
        job_id,
        &ids,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO job_events (job_id, source_id, kind, stage, actor, detail)
         SELECT $1, u.id, 'enqueued', 'scrape', $5, jsonb_build_object('url', u.url, 'created', u.created)
           FROM unnest($2::uuid[], $3::text[], $4::bool[]) WITH ORDINALITY AS u(id, url, created, ord)
          ORDER BY u.ord",
        job_id,
        &ids,
        &row_urls as &[&str],
        &created,
        actor.as_str(),
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // RETURNING gives no order guarantee: match the rows back to the input by URL (unique
    // within a batch: the caller passes distinct URLs).
    let mut by_url: std::collections::HashMap<String, JobSource> = rows
        .into_iter()
        .map(|r| {
            (
                r.url.clone(),
                JobSource {
                    source_id: r.id,
                    url: r.url,
                    created: r.created,
                },
            )
        })
        .collect();
    Ok(urls.iter().filter_map(|u| by_url.remove(*u)).collect())
}

/// The project's id, creating it when missing.
pub async fn ensure_project_in(tx: &mut Transaction<'_, Postgres>, name: &str) -> Result<Uuid> {
    let id = sqlx::query_scalar!(
        "INSERT INTO projects (id, name) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        Uuid::now_v7(),
        name,
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

/// Recomputes a job's counts by outcome and its status from its sources' statuses, inside
/// the caller's transaction (the row lock is held until it commits).
///
/// A source is terminal for its job when `extracted`, `parked`, `discarded`, or
/// `dead_lettered` with a permanent error (a transient one still waits for its redrive).
/// The work is the `pipeline_refresh_job_progress` function of the schema: one indexed
/// aggregate over the job's sources, in one round trip.
pub async fn refresh_in(tx: &mut Transaction<'_, Postgres>, job_id: Uuid) -> Result<()> {
    sqlx::query!("SELECT FROM pipeline_refresh_job_progress($1)", job_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A job row.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    pub id: Uuid,
    pub project_id: Option<Uuid>,
    #[serde(rename = "type")]
    pub job_type: String,
    pub status: JobStatus,
    pub payload: Option<Value>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Filters for [`list_summaries`].
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub job_type: Option<String>,
    pub status: Option<JobStatus>,
    pub limit: i64,
    pub offset: i64,
}

/// One job.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<JobRow> {
    sqlx::query_as!(
        JobRow,
        r#"SELECT id, project_id, type AS job_type, status AS "status: JobStatus", payload,
                  result, error, created_at, updated_at, started_at, completed_at
             FROM jobs WHERE id = $1"#,
        id,
    )
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("job {id}")))
}

/// A job without its payload: what a list shows. Bounded in size whatever was submitted
/// (the payload holds every URL and refused URL of the submission).
#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    pub id: Uuid,
    pub project_id: Option<Uuid>,
    #[serde(rename = "type")]
    pub job_type: String,
    pub status: JobStatus,
    /// The submission's source group, from the payload.
    pub source_group: Option<String>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// The one column list of [`JobSummary`]: `query_as!` over `SELECT <columns> ` + `$from`
/// (a string literal; the query macros take only literals, hence a macro).
macro_rules! query_job_summaries {
    ($from:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            JobSummary,
            r#"SELECT id, project_id, type AS job_type, status AS "status: JobStatus",
                      payload ->> 'source_group' AS source_group, result, error, created_at,
                      updated_at, started_at, completed_at "#
                + $from
            $(, $arg)*
        )
    };
}

/// Job summaries, newest first. Postgres extracts the one payload field shown, so the
/// payloads themselves never leave the database.
pub async fn list_summaries(pool: &PgPool, filter: &JobFilter) -> Result<Vec<JobSummary>> {
    Ok(query_job_summaries!(
        "FROM jobs
         WHERE ($1::text IS NULL OR type = $1) AND ($2::text IS NULL OR status = $2)
         ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4",
        filter.job_type.as_deref(),
        filter.status.map(JobStatus::as_str),
        filter.limit,
        filter.offset,
    )
    .fetch_all(pool)
    .await?)
}

/// One job's summary.
pub async fn get_summary(pool: &PgPool, id: Uuid) -> Result<JobSummary> {
    query_job_summaries!("FROM jobs WHERE id = $1", id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("job {id}")))
}

/// A page of a job's sources, in id order (creation order: ids are UUIDv7).
pub async fn sources_page(
    pool: &PgPool,
    job_id: Uuid,
    limit: i64,
    offset: i64,
) -> Result<Vec<SourceRow>> {
    Ok(query_source_rows!(
        "FROM sources
          WHERE id IN (SELECT source_id FROM job_sources WHERE job_id = $1)
          ORDER BY id LIMIT $2 OFFSET $3",
        job_id,
        limit,
        offset,
    )
    .fetch_all(pool)
    .await?)
}

/// A page of the URLs a job's submission refused, in submission order. Postgres walks the
/// payload's array, so only the page leaves the database.
pub async fn invalid_urls_page(
    pool: &PgPool,
    job_id: Uuid,
    limit: i64,
    offset: i64,
) -> Result<Vec<InvalidUrl>> {
    let rows = sqlx::query!(
        "SELECT e ->> 'url' AS url, e ->> 'reason' AS reason
           FROM jobs, jsonb_array_elements(COALESCE(payload -> 'invalid_urls', '[]'::jsonb))
                WITH ORDINALITY AS a(e, ord)
          WHERE jobs.id = $1 ORDER BY a.ord LIMIT $2 OFFSET $3",
        job_id,
        limit,
        offset,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| InvalidUrl {
            url: r.url.unwrap_or_default(),
            reason: r.reason.unwrap_or_default(),
        })
        .collect())
}

/// A project with how much it holds.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectRow {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Jobs submitted to it.
    pub jobs: i64,
    /// Sources it holds.
    pub sources: i64,
}

/// Projects by name, a page at a time, with their job and source counts (index lookups per
/// project on `jobs.project_id` and `sources (project_id, uri)`).
pub async fn projects_page(pool: &PgPool, limit: i64, offset: i64) -> Result<Vec<ProjectRow>> {
    Ok(sqlx::query_as!(
        ProjectRow,
        r#"SELECT p.id, p.name, p.created_at,
                  (SELECT count(*) FROM jobs j WHERE j.project_id = p.id) AS "jobs!",
                  (SELECT count(*) FROM sources s WHERE s.project_id = p.id) AS "sources!"
             FROM projects p ORDER BY p.name, p.id LIMIT $1 OFFSET $2"#,
        limit,
        offset,
    )
    .fetch_all(pool)
    .await?)
}
