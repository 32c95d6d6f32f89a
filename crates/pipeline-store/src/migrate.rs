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
/// replicas starting at once) serialise on the migrator's advisory lock (`pg_advisory_lock`,
/// keyed by the database). Migrations applied by a newer release, unknown to this binary,
/// are left alone rather than refused, so an older binary (the old pods of a rolling upgrade,
/// or a rollback) can still run this, as a Kubernetes init container does on every start.
pub async fn migrate(pool: &PgPool) -> crate::Result<MigrateReport> {
    let before = applied_versions(pool).await?;
    // The same embedded migrations as MIGRATOR (a static, so not mutable), with the one
    // setting changed through sqlx's public API rather than by copying its fields.
    let mut migrator = sqlx::migrate!("../../migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await?;
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

/// How the database's schema compares with the migrations this binary knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Migrations this binary knows that the database has applied successfully.
    pub have: usize,
    /// Migrations this binary knows: every one must be applied before it may run.
    pub need: usize,
}

impl SchemaStatus {
    /// Every migration this binary knows is applied. Migrations it does not know (a newer
    /// binary already migrated the database, as in a rolling upgrade) do not count against
    /// it: they only add to the schema.
    pub fn is_current(&self) -> bool {
        self.have >= self.need
    }
}

/// Reads `_sqlx_migrations` (absent: nothing applied) and counts which of this binary's
/// migrations are there. Applies nothing.
pub async fn schema_status(pool: &PgPool) -> crate::Result<SchemaStatus> {
    let applied = applied_versions(pool).await?;
    let need = MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .count();
    let have = MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && applied.contains(&m.version))
        .count();
    Ok(SchemaStatus { have, need })
}

async fn applied_versions(pool: &PgPool) -> crate::Result<Vec<i64>> {
    let exists =
        sqlx::query_scalar!(r#"SELECT to_regclass('_sqlx_migrations') IS NOT NULL AS "exists!""#)
            .fetch_one(pool)
            .await?;
    if !exists {
        return Ok(Vec::new());
    }
    // Checked against a migrated schema like every query; at run time it only runs once
    // the check above found the table.
    Ok(
        sqlx::query_scalar!("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await?,
    )
}
