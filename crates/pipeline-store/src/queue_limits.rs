//! A project's share and limits per queue family (`project_queue_limits`): its weight
//! against other projects with ready work, its cap of messages in flight, and its start
//! rate. Postgres holds the truth; `pipeline_ops::limits` validates what is written here
//! and copies it into Redis, where the queue's scripts read it.
//!
//! A row with weight 1 and no limits means the same as no row. The table's checks bound
//! every column (weight 1..=1000, max_in_flight 1..=1,000,000, per_second in (0, 1000],
//! burst 1..=10,000), so a value out of range is a database error, not a stored row;
//! callers validate first to say which value is wrong.
//!
//! These statements are plain `sqlx::query_as` (checked against the schema by the tests,
//! not by the query macros), so the committed offline data does not have to change with
//! them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;

/// One project's limits in one family.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct QueueLimits {
    /// The project.
    pub project_id: Uuid,
    /// The queue family (`scrape`, `extraction`, `facts`, `webhooks`).
    pub family: String,
    /// The project's share against other projects with ready work (1..=1000).
    pub weight: i32,
    /// At most this many of its messages in flight at once; `None`: no cap.
    pub max_in_flight: Option<i32>,
    /// At most this many starts per second on average; `None`: no rate.
    pub per_second: Option<f64>,
    /// Starts allowed at once by the rate (at least 1).
    pub burst: i32,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
}

/// The values of a row to write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitValues {
    /// See [`QueueLimits::weight`].
    pub weight: i32,
    /// See [`QueueLimits::max_in_flight`].
    pub max_in_flight: Option<i32>,
    /// See [`QueueLimits::per_second`].
    pub per_second: Option<f64>,
    /// See [`QueueLimits::burst`].
    pub burst: i32,
}

/// The rows of project `project_id`, by family name.
pub async fn for_project(pool: &PgPool, project_id: Uuid) -> Result<Vec<QueueLimits>> {
    Ok(sqlx::query_as::<_, QueueLimits>(
        "SELECT project_id, family, weight, max_in_flight, per_second, burst, updated_at
           FROM project_queue_limits WHERE project_id = $1 ORDER BY family",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await?)
}

/// The row of project `project_id` in `family`, if it has one.
pub async fn get(pool: &PgPool, project_id: Uuid, family: &str) -> Result<Option<QueueLimits>> {
    Ok(sqlx::query_as::<_, QueueLimits>(
        "SELECT project_id, family, weight, max_in_flight, per_second, burst, updated_at
           FROM project_queue_limits WHERE project_id = $1 AND family = $2",
    )
    .bind(project_id)
    .bind(family)
    .fetch_optional(pool)
    .await?)
}

/// Writes (inserts or replaces) the row of project `project_id` in `family`.
///
/// # Errors
/// [`crate::StoreError::NotFound`] when no project has that id; Postgres errors (a value
/// outside the table's checks among them).
pub async fn upsert(
    pool: &PgPool,
    project_id: Uuid,
    family: &str,
    values: &LimitValues,
) -> Result<QueueLimits> {
    // Insert through a SELECT of the project, so a missing project is no row (NotFound), not
    // a foreign-key violation to tell apart from the other errors.
    let row = sqlx::query_as::<_, QueueLimits>(
        "INSERT INTO project_queue_limits
                (project_id, family, weight, max_in_flight, per_second, burst)
         SELECT p.id, $2, $3, $4, $5, $6 FROM projects p WHERE p.id = $1
         ON CONFLICT (project_id, family) DO UPDATE
            SET weight = EXCLUDED.weight, max_in_flight = EXCLUDED.max_in_flight,
                per_second = EXCLUDED.per_second, burst = EXCLUDED.burst, updated_at = now()
         RETURNING project_id, family, weight, max_in_flight, per_second, burst, updated_at",
    )
    .bind(project_id)
    .bind(family)
    .bind(values.weight)
    .bind(values.max_in_flight)
    .bind(values.per_second)
    .bind(values.burst)
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| crate::StoreError::NotFound(format!("project {project_id}")))
}

/// Removes the row of project `project_id` in `family` and returns it (`None`: it had none).
pub async fn delete(pool: &PgPool, project_id: Uuid, family: &str) -> Result<Option<QueueLimits>> {
    Ok(sqlx::query_as::<_, QueueLimits>(
        "DELETE FROM project_queue_limits WHERE project_id = $1 AND family = $2
         RETURNING project_id, family, weight, max_in_flight, per_second, burst, updated_at",
    )
    .bind(project_id)
    .bind(family)
    .fetch_optional(pool)
    .await?)
}

/// Every row, by project and family: what a full copy into Redis writes. One row per project
/// and family at most, so the answer is bounded by the projects that set limits.
pub async fn all(pool: &PgPool) -> Result<Vec<QueueLimits>> {
    Ok(sqlx::query_as::<_, QueueLimits>(
        "SELECT project_id, family, weight, max_in_flight, per_second, burst, updated_at
           FROM project_queue_limits ORDER BY project_id, family",
    )
    .fetch_all(pool)
    .await?)
}
