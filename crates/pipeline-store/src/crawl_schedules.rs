//! Scheduled recrawls (`crawl_schedules`): a crawl repeated every `every_secs` seconds.
//!
//! A schedule is set on a crawl; each run repeats the latest one (`last_job_id`), so its
//! pages are fetched conditionally against what that run stored. A run starts when its time
//! has come **and** the previous run has ended: runs never overlap, and one still going
//! delays the next until it ends. Missed runs (the daemons were down) are not caught up: one
//! run starts, and the next is `every_secs` after it.
//!
//! [`start_due_in`] is what the requeue daemon calls: in one transaction it takes due rows
//! with `FOR UPDATE SKIP LOCKED`, creates each recrawl ([`crate::crawls::create_in`]) and
//! advances the row. Two replicas never take the same row, and a crash before the commit
//! starts nothing; the caller enqueues the start pages after the commit (if it crashes
//! first, the reconciler finds their `queued` sources).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::crawls::{self, NewCrawl};
use crate::jobs::ProjectRef;
use crate::{Result, StoreError};

/// Shortest interval between runs, in seconds (the table's check says the same).
pub const MIN_EVERY_SECS: u32 = 60;
/// Longest interval between runs, in seconds: 365 days.
pub const MAX_EVERY_SECS: u32 = 31_536_000;

/// A crawl's schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schedule {
    /// The crawl the schedule is set on.
    pub crawl_job_id: Uuid,
    /// Seconds between runs.
    pub every_secs: i32,
    /// When the next run is due (it starts then, or when the previous run ends if later).
    pub next_run_at: DateTime<Utc>,
    /// The latest run: the crawl itself until the first recrawl.
    pub last_job_id: Uuid,
    /// Runs started by the schedule.
    pub runs: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Sets (or replaces) the schedule of crawl `crawl_job_id`: the first run is due
/// `every_secs` from now. Replacing keeps the latest run and the run count.
///
/// # Errors
/// [`StoreError::NotFound`] when no crawl has that id; Postgres errors.
pub async fn set(pool: &PgPool, crawl_job_id: Uuid, every_secs: u32) -> Result<Schedule> {
    let every = i32::try_from(every_secs.clamp(MIN_EVERY_SECS, MAX_EVERY_SECS))
        .expect("the bounds fit an i32");
    let r = sqlx::query!(
        "INSERT INTO crawl_schedules (crawl_job_id, every_secs, next_run_at, last_job_id)
         SELECT c.job_id, $2::int, now() + $2::int * interval '1 second', c.job_id
           FROM crawls c WHERE c.job_id = $1
         ON CONFLICT (crawl_job_id) DO UPDATE
            SET every_secs = EXCLUDED.every_secs, next_run_at = EXCLUDED.next_run_at,
                updated_at = now()
         RETURNING crawl_job_id, every_secs, next_run_at, last_job_id, runs, created_at,
                   updated_at",
        crawl_job_id,
        every,
    )
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("crawl {crawl_job_id}")))?;
    Ok(Schedule {
        crawl_job_id: r.crawl_job_id,
        every_secs: r.every_secs,
        next_run_at: r.next_run_at,
        last_job_id: r.last_job_id,
        runs: r.runs,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// The schedule of crawl `crawl_job_id`, if it has one.
pub async fn get(pool: &PgPool, crawl_job_id: Uuid) -> Result<Option<Schedule>> {
    let r = sqlx::query_as!(
        Schedule,
        "SELECT crawl_job_id, every_secs, next_run_at, last_job_id, runs, created_at, updated_at
           FROM crawl_schedules WHERE crawl_job_id = $1",
        crawl_job_id,
    )
    .fetch_optional(pool)
    .await?;
    Ok(r)
}

/// Removes the schedule of crawl `crawl_job_id` and returns it, or `None` when it had none.
/// A run already started goes on.
pub async fn delete(pool: &PgPool, crawl_job_id: Uuid) -> Result<Option<Schedule>> {
    let r = sqlx::query_as!(
        Schedule,
        "DELETE FROM crawl_schedules WHERE crawl_job_id = $1
         RETURNING crawl_job_id, every_secs, next_run_at, last_job_id, runs, created_at,
                   updated_at",
        crawl_job_id
    )
    .fetch_optional(pool)
    .await?;
    Ok(r)
}

/// A run started by [`start_due_in`]; its start page still has to be enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedRun {
    /// The schedule's crawl.
    pub crawl_job_id: Uuid,
    /// The run it repeats.
    pub recrawl_of: Uuid,
    /// The new crawl job.
    pub job_id: Uuid,
    /// Its start page's source.
    pub source_id: Uuid,
    /// The crawl's project.
    pub project_id: Uuid,
    /// The crawl's priority (`jobs.priority`).
    pub priority: String,
    /// The crawl's render mode (`jobs.render`; `None`: the worker's default).
    pub render: Option<String>,
}

/// Starts the runs that are due (at most `limit`, the longest overdue first) whose previous
/// run has ended, inside `tx`: each a new crawl job repeating the previous run, and its
/// schedule moved on. Rows another transaction holds are skipped.
pub async fn start_due_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    limit: i64,
) -> Result<Vec<StartedRun>> {
    let due = sqlx::query!(
        "SELECT s.crawl_job_id, s.last_job_id
           FROM crawl_schedules s JOIN jobs j ON j.id = s.last_job_id
          WHERE s.next_run_at <= now() AND j.status NOT IN ('queued', 'running')
          ORDER BY s.next_run_at
          LIMIT $1
            FOR UPDATE OF s SKIP LOCKED",
        limit,
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut started = Vec::with_capacity(due.len());
    for d in due {
        let ended = crawls::for_recrawl(tx, d.last_job_id).await?;
        let created = crawls::create_in(
            tx,
            &NewCrawl {
                actor: crate::Actor::RequeueDaemon,
                project: ProjectRef::Id(ended.project_id),
                source_group: None,
                settings: &ended.settings,
                recrawl_of: Some(d.last_job_id),
                model_token_cap: ended.model_token_cap,
                priority: &ended.priority,
                render: ended.render.as_deref(),
            },
        )
        .await?;
        sqlx::query!(
            "UPDATE crawl_schedules
                SET last_job_id = $2, runs = runs + 1, updated_at = now(),
                    next_run_at = CASE
                        WHEN next_run_at + every_secs * interval '1 second' > now()
                        THEN next_run_at + every_secs * interval '1 second'
                        ELSE now() + every_secs * interval '1 second' END
              WHERE crawl_job_id = $1",
            d.crawl_job_id,
            created.job_id,
        )
        .execute(&mut **tx)
        .await?;
        let source_id = created
            .sources
            .first()
            .map(|s| s.source_id)
            .ok_or_else(|| StoreError::NotFound("the recrawl's start page".into()))?;
        started.push(StartedRun {
            crawl_job_id: d.crawl_job_id,
            recrawl_of: d.last_job_id,
            job_id: created.job_id,
            source_id,
            project_id: ended.project_id,
            priority: ended.priority,
            render: ended.render,
        });
    }
    Ok(started)
}
