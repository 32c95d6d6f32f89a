//! What a job's messages carry from the job: its priority (`jobs.priority`: `high`, `normal`
//! or `low`) and its render mode (`jobs.render`: `never`, `auto`, `always`, or NULL for the
//! scrape worker's `render.default`). Read in one statement wherever a message is built
//! from its job (a crawl's discovered pages) and for the answers that show jobs.
//!
//! Plain `sqlx::query` statements (checked by the tests, not by the query macros), so the
//! checked statements of jobs and crawls and their offline data stay as they are.

use std::collections::HashMap;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::Result;

/// A job's priority and render mode, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// `high`, `normal` or `low`.
    pub priority: String,
    /// `never`, `auto` or `always`; `None`: the worker's `render.default`.
    pub render: Option<String>,
}

impl Default for JobSettings {
    /// A job that does not exist (or was written before these columns): normal priority, the
    /// worker's render default.
    fn default() -> Self {
        Self {
            priority: "normal".to_owned(),
            render: None,
        }
    }
}

/// The settings of job `job_id`, or `None` when there is no such job.
///
/// # Errors
/// Postgres.
pub async fn of_job(db: impl sqlx::PgExecutor<'_>, job_id: Uuid) -> Result<Option<JobSettings>> {
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT priority, render FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(db)
            .await?;
    Ok(row.map(|(priority, render)| JobSettings { priority, render }))
}

/// The settings of each of `job_ids` that exists, by id.
///
/// # Errors
/// Postgres.
pub async fn of_jobs(
    db: impl sqlx::PgExecutor<'_>,
    job_ids: &[Uuid],
) -> Result<HashMap<Uuid, JobSettings>> {
    if job_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, String, Option<String>)> =
        sqlx::query_as("SELECT id, priority, render FROM jobs WHERE id = ANY($1)")
            .bind(job_ids)
            .fetch_all(db)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, priority, render)| (id, JobSettings { priority, render }))
        .collect())
}

/// Sets a new job's render mode (`None` leaves the column NULL: nothing is written). Called
/// inside the transaction that inserts the job, beside its checked `INSERT`.
pub(crate) async fn set_render_in(
    conn: &mut PgConnection,
    job_id: Uuid,
    render: Option<&str>,
) -> Result<()> {
    if let Some(render) = render {
        sqlx::query("UPDATE jobs SET render = $2 WHERE id = $1")
            .bind(job_id)
            .bind(render)
            .execute(conn)
            .await?;
    }
    Ok(())
}
