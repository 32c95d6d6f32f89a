//! Maintenance of the event trail's partitions: `job_events` is partitioned by UTC month
//! (see the migration `job_events_partitioned`). Partitions are created ahead of time so
//! inserts land in their month, and retention drops whole months, never rows.

use sqlx::PgPool;

use crate::Result;

/// A partition created or dropped by [`ensure_partitions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionChange {
    /// The partition's table name (`job_events_y2026m12`).
    pub partition_name: String,
    /// `created` or `dropped`.
    pub change: String,
}

/// How long partition maintenance waits for a lock on `job_events` before it gives up (and
/// is tried again later). Creating or dropping a partition needs a lock that conflicts with
/// what a long reader holds (a `pg_dump`, say); while the DDL waits in the lock queue, every
/// insert into the trail queues behind it, so a wait without a bound stalls every worker
/// for as long as the dump runs.
pub const PARTITION_LOCK_TIMEOUT: &str = "2s";

/// Creates the partitions of the current month and the `months_ahead` next ones, and, with
/// `retention_days` > 0, drops the monthly partitions whose whole month ended more than
/// `retention_days` days ago (the SQL function `pipeline_ensure_event_partitions`). Safe to
/// call from many replicas at once: they serialise on an advisory lock. Fails, changing
/// nothing, when a lock it needs is not granted within [`PARTITION_LOCK_TIMEOUT`].
pub async fn ensure_partitions(
    pool: &PgPool,
    months_ahead: u32,
    retention_days: u32,
) -> Result<Vec<PartitionChange>> {
    // Settings are u32; the SQL function takes integers.
    let ahead = i32::try_from(months_ahead).unwrap_or(i32::MAX);
    let days = i32::try_from(retention_days).unwrap_or(i32::MAX);
    let mut tx = pool.begin().await?;
    // A constant statement: it reads no table, so the query macros have nothing to check.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = '{PARTITION_LOCK_TIMEOUT}'"
    )))
    .execute(&mut *tx)
    .await?;
    let changes = sqlx::query_as!(
        PartitionChange,
        r#"SELECT partition_name AS "partition_name!", change AS "change!"
             FROM pipeline_ensure_event_partitions($1, $2)"#,
        ahead,
        days,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(changes)
}

/// Rows sitting in the default partition: events whose month had no partition when they
/// were written. Non-zero means partition maintenance is not running (or was late); the
/// next [`ensure_partitions`] for that month moves them.
pub async fn rows_in_default_partition(pool: &PgPool) -> Result<i64> {
    Ok(
        sqlx::query_scalar!(r#"SELECT count(*) AS "rows!" FROM job_events_default"#)
            .fetch_one(pool)
            .await?,
    )
}
