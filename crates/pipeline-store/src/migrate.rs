//! The schema migrator (the migrations live at the top of the repository, in `migrations/`).

use sqlx::PgPool;

/// Every migration of the schema, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// Versions applied by this run (empty: the schema was already current).
    pub applied: Vec<i64>,
    /// Versions known to the binary.
    pub known: usize,
}

/// Applies the pending migrations. Running it again is a no-op. Concurrent runs (several
/// replicas starting at once) serialise on the migrator's advisory lock.
pub async fn migrate(pool: &PgPool) -> crate::Result<MigrateReport> {
    let before = applied_versions(pool).await?;
    MIGRATOR.run(pool).await?;
    let after = applied_versions(pool).await?;
    let applied = after
        .into_iter()
        .filter(|v| !before.contains(v))
        .collect::<Vec<_>>();
    Ok(MigrateReport {
        applied,
        known: MIGRATOR.iter().count(),
    })
}

async fn applied_versions(pool: &PgPool) -> crate::Result<Vec<i64>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    Ok(
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await?,
    )
}
