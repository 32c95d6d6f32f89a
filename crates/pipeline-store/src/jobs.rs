//! Jobs: creation with their sources, progress refresh, listing and detail.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::sources::{SourceRow, record_event_in};
use crate::status::JobStatus;
use crate::{Result, StoreError};

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
    pub uri: String,
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

/// Creates the job, upserts one source per URL (unique per project and URL) with
/// `created_by_job_id`, links them to the job and records an `enqueued` event each, in one
/// transaction. The caller enqueues after commit; if it crashes before, the reconciler finds
/// the `queued` sources and enqueues them.
pub async fn create_scrape_job(pool: &PgPool, new: &NewScrapeJob<'_>) -> Result<CreatedJob> {
    let mut tx = pool.begin().await?;
    let project_id = match new.project {
        ProjectRef::Id(id) => {
            let exists: Option<Uuid> = sqlx::query_scalar("SELECT id FROM projects WHERE id = $1")
                .bind(id)
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
    sqlx::query(
        "INSERT INTO jobs (id, project_id, type, status, payload, result)
         VALUES ($1, $2, 'scrape', $3, $4, $5)",
    )
    .bind(job_id)
    .bind(project_id)
    .bind(JobStatus::Queued.as_str())
    .bind(&payload)
    .bind(json!({"total": new.urls.len(), "invalid_urls": new.invalid.len()}))
    .execute(&mut *tx)
    .await?;

    let mut sources = Vec::with_capacity(new.urls.len());
    for url in new.urls {
        // On conflict the existing source is re-queued for this job, keeping the job that
        // created it. `xmax = 0` tells an insert from an update.
        let (source_id, created): (Uuid, bool) = sqlx::query_as(
            "INSERT INTO sources (id, project_id, uri, source_group, status, created_by_job_id)
             VALUES ($1, $2, $3, $4, 'queued', $5)
             ON CONFLICT (project_id, uri) DO UPDATE
                SET status = 'queued', updated_at = now(),
                    source_group = COALESCE(EXCLUDED.source_group, sources.source_group)
             RETURNING id, (xmax = 0)",
        )
        .bind(Uuid::now_v7())
        .bind(project_id)
        .bind(url)
        .bind(new.source_group)
        .bind(job_id)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO job_sources (job_id, source_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(job_id)
        .bind(source_id)
        .execute(&mut *tx)
        .await?;
        record_event_in(
            &mut tx,
            Some(job_id),
            source_id,
            "enqueued",
            "submit",
            None,
            &json!({"uri": url, "created": created}),
        )
        .await?;
        sources.push(JobSource {
            source_id,
            uri: url.clone(),
            created,
        });
    }
    refresh_in(&mut tx, job_id).await?;
    tx.commit().await?;
    Ok(CreatedJob {
        job_id,
        project_id,
        sources,
    })
}

/// The project's id, creating it when missing.
pub async fn ensure_project_in(tx: &mut Transaction<'_, Postgres>, name: &str) -> Result<Uuid> {
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO projects (id, name) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(name)
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
    sqlx::query("SELECT pipeline_refresh_job_progress($1)")
        .bind(job_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A job row.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub project_id: Option<Uuid>,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub job_type: String,
    pub status: String,
    pub payload: Option<Value>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

const JOB_COLUMNS: &str = "id, project_id, type, status, payload, result, error, created_at, \
    updated_at, started_at, completed_at";

/// Filters for [`list`].
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub job_type: Option<String>,
    pub status: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// Jobs, newest first.
pub async fn list(pool: &PgPool, filter: &JobFilter) -> Result<Vec<JobRow>> {
    Ok(sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs
         WHERE ($1::text IS NULL OR type = $1) AND ($2::text IS NULL OR status = $2)
         ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
    )))
    .bind(&filter.job_type)
    .bind(&filter.status)
    .bind(filter.limit)
    .bind(filter.offset)
    .fetch_all(pool)
    .await?)
}

/// One job.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<JobRow> {
    sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("job {id}")))
}

/// The sources of a job, in submission order.
pub async fn sources(pool: &PgPool, job_id: Uuid) -> Result<Vec<SourceRow>> {
    Ok(sqlx::query_as::<_, SourceRow>(
        "SELECT s.id, s.project_id, s.uri, s.source_group, s.status, s.title, s.content_type,
                s.http_status, s.fetched_at, s.last_error, s.last_error_kind, s.created_at,
                s.updated_at, s.created_by_job_id
         FROM job_sources js JOIN sources s ON s.id = js.source_id
         WHERE js.job_id = $1 ORDER BY s.id",
    )
    .bind(job_id)
    .fetch_all(pool)
    .await?)
}
