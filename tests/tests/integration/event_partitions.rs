//! The partitioned event trail: the migration from the plain table keeps every row and the
//! id sequence, every migration is safe to run twice, partitions are created ahead (rows
//! that reached the default partition move into their month), and retention drops whole
//! old partitions.

use integration_tests::TestDb;
use pipeline_core::settings::EventsSettings;
use pipeline_store::{events, sources};
use sqlx::PgPool;
use uuid::Uuid;

const PROJECT: &str = "00000000-0000-0000-0000-0000000000a1";
const JOB: &str = "00000000-0000-0000-0000-0000000000b1";
const SOURCE: &str = "00000000-0000-0000-0000-0000000000c1";

async fn partition_of(pool: &PgPool, id: i64) -> anyhow::Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT tableoid::regclass::text FROM job_events WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

/// Runs every migration file again, in order, over the migrated schema. The `trace` views
/// are dropped first: they hold no data, and a later migration may have added columns at the
/// end of one, which the earlier file's `CREATE OR REPLACE VIEW` cannot take away again (the
/// files then recreate them as the last one left them).
async fn apply_every_migration_file_again(pool: &PgPool) -> anyhow::Result<()> {
    let views: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.views WHERE table_schema = 'trace'",
    )
    .fetch_all(pool)
    .await?;
    for view in views {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP VIEW IF EXISTS trace.{view} CASCADE"
        )))
        .execute(pool)
        .await?;
    }
    for m in pipeline_store::MIGRATOR.iter() {
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(m.sql.clone())
            .execute(&mut *tx)
            .await
            .map_err(|e| anyhow::anyhow!("migration {} run again: {e}", m.version))?;
        tx.commit().await?;
    }
    Ok(())
}

#[tokio::test]
async fn the_migration_keeps_the_old_trail_and_its_ids() -> anyhow::Result<()> {
    let db = TestDb::empty().await?;
    let pool = &db.pool;
    // The schema as it was before partitioning, with a trail spanning three months.
    for m in pipeline_store::MIGRATOR
        .iter()
        .filter(|m| m.version < 20261210000000)
    {
        sqlx::raw_sql(m.sql.clone()).execute(pool).await?;
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO projects (id, name) VALUES ('{PROJECT}', 'p');
         INSERT INTO jobs (id, project_id, type, status) VALUES ('{JOB}', '{PROJECT}', 'scrape', 'running');
         INSERT INTO sources (id, project_id, uri, status, created_by_job_id)
              VALUES ('{SOURCE}', '{PROJECT}', 'https://example.com/', 'extracted', '{JOB}');
         INSERT INTO job_events (job_id, source_id, kind, stage, detail, at) VALUES
             ('{JOB}', '{SOURCE}', 'enqueued', 'submit', '{{\"n\": 1}}', now() - interval '70 days'),
             ('{JOB}', '{SOURCE}', 'started', 'scrape', NULL, now() - interval '35 days'),
             ('{JOB}', '{SOURCE}', 'succeeded', 'scrape', NULL, now());"
    )))
    .execute(pool)
    .await?;
    let before: Vec<(
        i64,
        String,
        Option<serde_json::Value>,
        chrono::DateTime<chrono::Utc>,
    )> = sqlx::query_as("SELECT id, kind, detail, at FROM job_events ORDER BY id")
        .fetch_all(pool)
        .await?;

    pipeline_store::migrate(pool).await?;
    let relkind: String =
        sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE oid = 'job_events'::regclass")
            .fetch_one(pool)
            .await?;
    assert_eq!(relkind, "p", "job_events is partitioned");
    let after: Vec<(
        i64,
        String,
        Option<serde_json::Value>,
        chrono::DateTime<chrono::Utc>,
    )> = sqlx::query_as("SELECT id, kind, detail, at FROM job_events ORDER BY id")
        .fetch_all(pool)
        .await?;
    assert_eq!(after, before);
    // Each old row sits in its month's partition, none in the default.
    for (id, ..) in &before {
        let p = partition_of(pool, *id).await?.unwrap();
        assert!(p.starts_with("job_events_y"), "row {id} in {p}");
    }
    assert_eq!(events::rows_in_default_partition(pool).await?, 0);

    // The store's writers and readers work on the new table, and ids go on from the old ones.
    let source = Uuid::parse_str(SOURCE)?;
    let job = Uuid::parse_str(JOB)?;
    sources::record_event(
        pool,
        &sources::NewEvent {
            job_id: Some(job),
            source_id: source,
            kind: "reconciled",
            stage: "scrape",
            actor: pipeline_store::Actor::RequeueDaemon,
            attempt: None,
            detail: &serde_json::json!({}),
        },
    )
    .await?;
    let trail = sources::events(pool, source).await?;
    let kinds: Vec<&str> = trail.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["enqueued", "started", "succeeded", "reconciled"]);
    // The old submission's event names its family now; who submitted was never recorded.
    assert_eq!(trail[0].stage.as_deref(), Some("scrape"));
    assert_eq!(trail[0].actor, None);
    assert_eq!(trail[3].actor.as_deref(), Some("requeue-daemon"));
    assert!(trail[3].id > before.last().unwrap().0);

    // Every migration, run again by hand, changes nothing; the migrator has nothing to do.
    apply_every_migration_file_again(pool).await?;
    assert!(pipeline_store::migrate(pool).await?.applied.is_empty());
    assert_eq!(sources::events(pool, source).await?.len(), 4);

    // The foreign keys keep their actions: a deleted job leaves its events, unattributed;
    // a deleted source takes its trail with it.
    sqlx::query("DELETE FROM jobs WHERE id = $1")
        .bind(job)
        .execute(pool)
        .await?;
    let attributed: i64 = sqlx::query_scalar("SELECT count(job_id) FROM job_events")
        .fetch_one(pool)
        .await?;
    assert_eq!(attributed, 0);
    sqlx::query("DELETE FROM sources WHERE id = $1")
        .bind(source)
        .execute(pool)
        .await?;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM job_events")
        .fetch_one(pool)
        .await?;
    assert_eq!(left, 0);
    Ok(())
}

#[tokio::test]
async fn partitions_are_made_ahead_and_retention_drops_whole_months() -> anyhow::Result<()> {
    let db = TestDb::migrated().await?;
    let pool = &db.pool;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO projects (id, name) VALUES ('{PROJECT}', 'p');
         INSERT INTO sources (id, project_id, uri, status)
              VALUES ('{SOURCE}', '{PROJECT}', 'https://example.com/', 'queued');"
    )))
    .execute(pool)
    .await?;
    let insert_at = |at: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
            "INSERT INTO job_events (source_id, kind, at) VALUES ('{SOURCE}', 'enqueued', {at})
             RETURNING id"
        )))
        .fetch_one(pool)
        .await
    };

    // Months without a partition: the default partition takes the rows, no insert fails.
    let future = insert_at("now() + interval '6 months'").await?;
    let old = insert_at("now() - interval '5 months'").await?;
    let current = insert_at("now()").await?;
    assert_eq!(
        partition_of(pool, future).await?.unwrap(),
        "job_events_default"
    );
    assert_eq!(
        partition_of(pool, old).await?.unwrap(),
        "job_events_default"
    );
    assert!(
        partition_of(pool, current)
            .await?
            .unwrap()
            .starts_with("job_events_y")
    );

    // The daemon's maintenance creates the coming months; the future row moves out of the
    // default partition into its month.
    let settings = EventsSettings {
        retention_days: 0,
        partitions_ahead_months: 7,
        maintenance_interval_secs: 3600,
    };
    let changes = requeue_daemon::partitions::maintain(pool, &settings).await?;
    assert!(
        !changes.is_empty() && changes.iter().all(|c| c.change == "created"),
        "{changes:?}"
    );
    let p = partition_of(pool, future).await?.unwrap();
    assert!(p.starts_with("job_events_y"), "{p}");
    assert!(changes.iter().any(|c| c.partition_name == p), "{changes:?}");
    assert_eq!(events::rows_in_default_partition(pool).await?, 1);
    // Nothing left to do the second time.
    assert!(
        requeue_daemon::partitions::maintain(pool, &settings)
            .await?
            .is_empty()
    );

    // The old month gets its partition (the row moves), then retention drops that month
    // whole; this month and the coming ones stay.
    let made: bool = sqlx::query_scalar(
        "SELECT pipeline_create_event_partition((now() - interval '5 months')::date)",
    )
    .fetch_one(pool)
    .await?;
    assert!(made);
    let old_partition = partition_of(pool, old).await?.unwrap();
    assert!(old_partition.starts_with("job_events_y"), "{old_partition}");
    assert_eq!(events::rows_in_default_partition(pool).await?, 0);
    let changes = requeue_daemon::partitions::maintain(
        pool,
        &EventsSettings {
            retention_days: 30,
            ..settings.clone()
        },
    )
    .await?;
    let dropped: Vec<&str> = changes
        .iter()
        .filter(|c| c.change == "dropped")
        .map(|c| c.partition_name.as_str())
        .collect();
    assert_eq!(dropped, [old_partition.as_str()], "{changes:?}");
    assert_eq!(partition_of(pool, old).await?, None);
    assert!(partition_of(pool, current).await?.is_some());
    assert!(partition_of(pool, future).await?.is_some());
    let gone: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(&old_partition)
        .fetch_one(pool)
        .await?;
    assert_eq!(gone, None, "the partition table itself is dropped");
    Ok(())
}

#[tokio::test]
async fn every_trace_view_column_is_documented() -> anyhow::Result<()> {
    let db = TestDb::migrated().await?;
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname || '.' || a.attname
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          WHERE n.nspname = 'trace' AND c.relkind = 'v'
            AND col_description(c.oid, a.attnum) IS NULL
          ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await?;
    assert!(missing.is_empty(), "columns without a COMMENT: {missing:?}");
    let views: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'trace' AND c.relkind = 'v' AND obj_description(c.oid) IS NOT NULL
          ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await?;
    assert_eq!(
        views,
        [
            "dlq_history",
            "events",
            "job_sources",
            "jobs",
            "sources",
            "stage_runs"
        ]
    );
    // The doc describes every view.
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/traceability.md"
    ))?;
    for v in &views {
        assert!(
            doc.contains(&format!("### `trace.{v}`")),
            "docs/traceability.md lacks trace.{v}"
        );
    }
    Ok(())
}

/// Partition maintenance that meets a long reader of the trail (a `pg_dump` holds ACCESS
/// SHARE on every table it dumps) gives up after its lock timeout instead of waiting in the
/// lock queue, where every insert into the trail would wait behind it until the dump ends.
#[tokio::test]
async fn partition_maintenance_does_not_queue_the_trail_behind_a_dump() -> anyhow::Result<()> {
    let db = TestDb::migrated().await?;
    let pool = &db.pool;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO projects (id, name) VALUES ('{PROJECT}', 'p');
         INSERT INTO sources (id, project_id, uri, status)
              VALUES ('{SOURCE}', '{PROJECT}', 'https://example.com/', 'queued');"
    )))
    .execute(pool)
    .await?;
    // What a dump holds while it reads the trail.
    let mut dump = pool.begin().await?;
    sqlx::query("LOCK TABLE job_events IN ACCESS SHARE MODE")
        .execute(&mut *dump)
        .await?;
    // Maintenance with a partition to create (nine months ahead was never made).
    let settings = EventsSettings {
        retention_days: 0,
        partitions_ahead_months: 9,
        maintenance_interval_secs: 3600,
    };
    let started = std::time::Instant::now();
    let maintained = tokio::spawn({
        let (pool, settings) = (pool.clone(), settings.clone());
        async move { requeue_daemon::partitions::maintain(&pool, &settings).await }
    });
    // Meanwhile a worker writes an event: it is not stuck behind the waiting DDL for longer
    // than the DDL's lock timeout.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let insert = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO job_events (source_id, kind) VALUES ('{SOURCE}', 'enqueued')"
        )))
        .execute(pool),
    )
    .await;
    assert!(
        matches!(insert, Ok(Ok(_))),
        "the insert finished while the dump still ran: {insert:?}"
    );
    let result = maintained.await?;
    let err = result.expect_err("maintenance gives up while the dump holds its lock");
    assert!(format!("{err:#}").contains("lock timeout"), "{err:#}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    dump.commit().await?;
    // Once the dump is over, the next run does the work.
    let changes = requeue_daemon::partitions::maintain(pool, &settings).await?;
    assert!(!changes.is_empty(), "{changes:?}");
    Ok(())
}
