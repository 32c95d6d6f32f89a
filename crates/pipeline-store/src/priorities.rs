//! Jobs' priorities (`jobs.priority`: `high`, `normal` or `low`), read for the answers that
//! show jobs. A plain `sqlx::query_as` (checked by the tests, not by the query macros), so
//! the job summaries' checked statements and their offline data stay as they are.

use std::collections::HashMap;

use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;

/// The priority of each of `job_ids` that exists, by id.
pub async fn of_jobs(pool: &PgPool, job_ids: &[Uuid]) -> Result<HashMap<Uuid, String>> {
    if job_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, priority FROM jobs WHERE id = ANY($1)")
            .bind(job_ids)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}
