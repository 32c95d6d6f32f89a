//! Foundation: migrations, configuration layering, probes.

use std::collections::HashMap;
use std::io::Write;

use integration_tests::{TestDb, TestRedis};
use pipeline_core::probes::{self, ProbeState};
use pipeline_core::{Settings, Sources};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn migrations_apply_once_then_are_a_no_op() -> anyhow::Result<()> {
    let db = TestDb::empty().await?;
    let first = pipeline_store::migrate(&db.pool).await?;
    assert_eq!(
        first.applied.len(),
        first.known,
        "first run applies every migration"
    );
    let second = pipeline_store::migrate(&db.pool).await?;
    assert!(second.applied.is_empty(), "second run applies nothing");

    // The schema the design names is there, with the columns users query.
    for (table, column) in [
        ("sources", "created_by_job_id"),
        ("extractions", "extraction_type"),
        ("extractions", "embeddings_created"),
        ("extractions", "entities_extracted"),
        ("extractions", "entities_status"),
        ("extraction_embeddings", "embedding"),
        ("entities", "normalized"),
        ("extraction_entities", "entity_id"),
        ("job_events", "kind"),
        ("jobs", "completed_at"),
        ("projects", "name"),
    ] {
        let found: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                            WHERE table_name = $1 AND column_name = $2)",
        )
        .bind(table)
        .bind(column)
        .fetch_one(&db.pool)
        .await?;
        assert!(found, "{table}.{column} missing");
    }
    let index: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE tablename = 'sources'
                        AND indexdef LIKE '%(created_by_job_id)%')",
    )
    .fetch_one(&db.pool)
    .await?;
    assert!(index, "index on sources.created_by_job_id missing");
    let nullable: String = sqlx::query_scalar(
        "SELECT is_nullable FROM information_schema.columns
         WHERE table_name = 'extractions' AND column_name = 'extraction_type'",
    )
    .fetch_one(&db.pool)
    .await?;
    assert_eq!(nullable, "NO");
    Ok(())
}

#[tokio::test]
async fn migration_sql_itself_is_idempotent() -> anyhow::Result<()> {
    // Even outside the migrator's bookkeeping, applying the SQL twice must succeed.
    let db = TestDb::empty().await?;
    for migration in pipeline_store::MIGRATOR.iter() {
        sqlx::raw_sql(migration.sql.clone())
            .execute(&db.pool)
            .await?;
        sqlx::raw_sql(migration.sql.clone())
            .execute(&db.pool)
            .await?;
    }
    Ok(())
}

fn sources(pairs: &[(&str, &str)]) -> Sources {
    Sources {
        env: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>(),
    }
}

#[test]
fn configuration_layers_file_then_environment() -> anyhow::Result<()> {
    let mut file = tempfile()?;
    writeln!(
        file.1,
        "[scrape]\nconcurrency = 3\nmax_redirects = 2\n[telemetry]\nformat = \"json\""
    )?;
    let path = file.0.to_string_lossy().to_string();

    // The file overrides the defaults...
    let s = Settings::load_from(&sources(&[("PIPELINE_CONFIG", &path)]))?;
    assert_eq!(s.scrape.concurrency, 3);
    assert_eq!(s.scrape.max_redirects, 2);
    assert_eq!(
        s.scrape.request_timeout_ms, 20_000,
        "untouched keys keep defaults"
    );

    // ...the environment overrides the file, DATABASE_URL/REDIS_URL override both.
    let s = Settings::load_from(&sources(&[
        ("PIPELINE_CONFIG", &path),
        ("PIPELINE__SCRAPE__CONCURRENCY", "7"),
        (
            "PIPELINE__SCRAPE__ALLOW_PRIVATE_HOSTS",
            "127.0.0.1,localhost",
        ),
        ("REDIS_URL", "redis://10.1.2.3:6380/2"),
    ]))?;
    assert_eq!(s.scrape.concurrency, 7);
    assert_eq!(s.scrape.max_redirects, 2);
    assert_eq!(s.scrape.allow_private_hosts, vec!["127.0.0.1", "localhost"]);
    assert_eq!(s.redis_url(), "redis://10.1.2.3:6380/2");
    std::fs::remove_file(&file.0)?;
    Ok(())
}

#[test]
fn unknown_keys_fail_naming_the_key() -> anyhow::Result<()> {
    let err = Settings::load_from(&sources(&[("PIPELINE__DATABASE__NOPE", "1")])).unwrap_err();
    assert!(err.to_string().contains("`database.nope`"), "{err}");

    let mut file = tempfile()?;
    writeln!(file.1, "[queue]\nmax_atempts = 3")?;
    let path = file.0.to_string_lossy().to_string();
    let err = Settings::load_from(&sources(&[("PIPELINE_CONFIG", &path)])).unwrap_err();
    assert!(err.to_string().contains("`queue.max_atempts`"), "{err}");
    std::fs::remove_file(&file.0)?;

    let err = Settings::load_from(&sources(&[("PIPELINE__NOSECTION__X", "1")])).unwrap_err();
    assert!(err.to_string().contains("nosection"), "{err}");

    let err = Settings::load_from(&sources(&[(
        "PIPELINE_CONFIG",
        "/nonexistent/pipeline.toml",
    )]))
    .unwrap_err();
    assert!(err.to_string().contains("PIPELINE_CONFIG"), "{err}");

    let err = Settings::load_from(&sources(&[
        ("PIPELINE__REDIS__RESPONSE_TIMEOUT_MS", "100"),
        ("PIPELINE__QUEUE__BLOCK_TIMEOUT_MS", "2000"),
    ]))
    .unwrap_err();
    assert!(
        err.to_string().contains("redis.response_timeout_ms"),
        "{err}"
    );
    Ok(())
}

fn tempfile() -> anyhow::Result<(std::path::PathBuf, std::fs::File)> {
    let path = std::env::temp_dir().join(format!("pipeline-test-{}.toml", uuid::Uuid::new_v4()));
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}

#[tokio::test]
async fn probes_answer_health_ready_and_metrics() -> anyhow::Result<()> {
    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let cancel = CancellationToken::new();
    let state = ProbeState {
        db: db.pool.clone(),
        redis: redis.pool.clone(),
        schema: Default::default(),
        components: Default::default(),
    };
    let (addr, task) = probes::serve("127.0.0.1:0".parse()?, state, cancel.clone()).await?;
    metrics::counter!("pipeline_test_probe_total").increment(1);
    let client = integration_tests::http_client();
    let health = client.get(format!("http://{addr}/health")).send().await?;
    assert_eq!(health.status(), 200);
    let ready = client.get(format!("http://{addr}/ready")).send().await?;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await?;
    assert_eq!(body["postgres"], "ok");
    assert_eq!(body["redis"], "ok");
    let metrics = client.get(format!("http://{addr}/metrics")).send().await?;
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await?.contains("pipeline_test_probe_total"));

    // Not ready when Postgres cannot be reached.
    let bad_db = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(500))
        .connect_lazy("postgres://postgres@127.0.0.1:1/nothing")?;
    let (bad_addr, bad_task) = probes::serve(
        "127.0.0.1:0".parse()?,
        ProbeState {
            db: bad_db,
            redis: redis.pool.clone(),
            schema: Default::default(),
            components: Default::default(),
        },
        cancel.clone(),
    )
    .await?;
    let not_ready = client
        .get(format!("http://{bad_addr}/ready"))
        .send()
        .await?;
    assert_eq!(not_ready.status(), 503);

    cancel.cancel();
    task.await?;
    bad_task.await?;
    Ok(())
}

/// The status columns accept exactly the words of the Rust enums: every variant goes in, a
/// stray word is refused by the constraint, and applying the migrations again changes nothing.
#[tokio::test]
async fn status_columns_accept_exactly_the_enum_words() -> anyhow::Result<()> {
    use pipeline_store::{JobStatus, SourceStatus};
    let db = TestDb::migrated().await?;
    pipeline_store::migrate(&db.pool).await?;
    let job: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO jobs (id, type, status) VALUES (gen_random_uuid(), 'scrape', 'queued')
         RETURNING id",
    )
    .fetch_one(&db.pool)
    .await?;
    for status in JobStatus::ALL {
        sqlx::query("UPDATE jobs SET status = $1 WHERE id = $2")
            .bind(status.as_str())
            .bind(job)
            .execute(&db.pool)
            .await?;
    }
    let refused = sqlx::query("UPDATE jobs SET status = 'done' WHERE id = $1")
        .bind(job)
        .execute(&db.pool)
        .await
        .expect_err("'done' is not a job status");
    assert!(
        refused.to_string().contains("jobs_status_check"),
        "{refused}"
    );

    let source: uuid::Uuid = sqlx::query_scalar(
        "WITH p AS (INSERT INTO projects (id, name) VALUES (gen_random_uuid(), 'statuses')
                    RETURNING id)
         INSERT INTO sources (id, project_id, uri, status)
         SELECT gen_random_uuid(), p.id, 'https://a.example/', 'queued' FROM p
         RETURNING id",
    )
    .fetch_one(&db.pool)
    .await?;
    for status in SourceStatus::ALL {
        sqlx::query("UPDATE sources SET status = $1 WHERE id = $2")
            .bind(status.as_str())
            .bind(source)
            .execute(&db.pool)
            .await?;
    }
    let refused = sqlx::query("UPDATE sources SET status = 'extracting' WHERE id = $1")
        .bind(source)
        .execute(&db.pool)
        .await
        .expect_err("'extracting' is not a source status");
    assert!(
        refused.to_string().contains("sources_status_check"),
        "{refused}"
    );
    Ok(())
}
