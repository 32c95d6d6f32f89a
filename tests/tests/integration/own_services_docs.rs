//! The README's "Run it on your own Postgres and Redis" section, done exactly as written
//! against a fresh role and database: its SQL block is run as the superuser, its shell blocks
//! as one bash script. Only names, addresses and ports are changed (a unique role and
//! database, the test Postgres and Redis, free ports, the test's Redis key prefix), and the
//! release build is replaced by the binaries the tests use. A changed section either still
//! works or fails here.

use std::time::Duration;

use integration_tests::docs::{admin_execute, section_blocks, stop_group, subst};
use integration_tests::requeue::free_port;
use integration_tests::{admin_database_url, binary, redis_url};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const SECTION: &str = "## Run it on your own Postgres and Redis";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_own_postgres_and_redis_section_works_as_written() -> anyhow::Result<()> {
    pipeline_core::telemetry::init_for_tests();
    let blocks = section_blocks(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"),
        SECTION,
    );
    let langs: Vec<&str> = blocks.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        langs,
        ["sh", "sql", "sh", "sh", "sh", "sh"],
        "the section's blocks"
    );
    assert!(
        blocks[0].1.contains("cargo build --release --locked"),
        "the first block builds the binaries"
    );

    let id = Uuid::new_v4().simple().to_string();
    let role = format!("pipeline_readme_{id}");
    let db = format!("pipeline_readme_{id}");
    let prefix = format!("test:{id}:");
    let workdir = std::env::temp_dir().join(format!("pipeline-readme-{id}"));
    std::fs::create_dir_all(&workdir)?;

    let result = run(&blocks, &role, &db, &prefix, &workdir).await;

    let _ = std::fs::remove_dir_all(&workdir);
    admin_execute(&format!(r#"DROP DATABASE IF EXISTS "{db}" WITH (FORCE)"#)).await?;
    admin_execute(&format!(r#"DROP ROLE IF EXISTS "{role}""#)).await?;
    // The README's commands ran against the single Redis at TEST_REDIS_URL.
    let target = pipeline_redis::RedisTarget::Single(redis_url());
    let keys = integration_tests::TestRedis {
        prefix: prefix.clone(),
        pool: target.pool(2, Duration::from_secs(10), Duration::from_secs(5))?,
        target,
    };
    drop(keys); // deletes the run's keys
    result
}

async fn run(
    blocks: &[(String, String)],
    role: &str,
    db: &str,
    prefix: &str,
    workdir: &std::path::Path,
) -> anyhow::Result<()> {
    // Step 1, as the superuser.
    let sql = subst(
        &blocks[1].1,
        "CREATE ROLE pipeline ",
        &format!(r#"CREATE ROLE "{role}" "#),
    );
    let sql = subst(
        &sql,
        "CREATE DATABASE pipeline OWNER pipeline;",
        &format!(r#"CREATE DATABASE "{db}" OWNER "{role}";"#),
    );
    for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        admin_execute(statement).await?;
    }

    // Steps 2 to 5, one script.
    let mut url = reqwest::Url::parse(&admin_database_url())?;
    url.set_username(role).expect("a postgres URL has a user");
    url.set_password(Some("change-me"))
        .expect("a postgres URL has a password");
    url.set_path(&format!("/{db}"));
    let ports = [
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    ];
    let api_port = free_port();
    let mut script = blocks[2..]
        .iter()
        .map(|(_, body)| body.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    script = subst(
        &script,
        "postgres://pipeline:change-me@db.example.com:5432/pipeline",
        url.as_str(),
    );
    script = subst(&script, "redis://redis.example.com:6379/0", &redis_url());
    script = subst(
        &script,
        "for port in 9101 9102 9103 9104 9105;",
        &format!(
            "for port in {} {} {} {} {};",
            ports[0], ports[1], ports[2], ports[3], ports[4]
        ),
    );
    script = subst(
        &script,
        "http://127.0.0.1:8742/",
        &format!("http://127.0.0.1:{api_port}/"),
    );
    let bin_dir = binary("pipelinectl")
        .parent()
        .expect("binaries live in a directory")
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(&script)
        .current_dir(workdir)
        .env("PATH", path)
        .env_remove("PIPELINE_CONFIG")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("PIPELINE__REDIS__KEY_PREFIX", prefix)
        .env("PIPELINE__PROBES__SCRAPE_WORKER_PORT", ports[0].to_string())
        .env(
            "PIPELINE__PROBES__EXTRACTION_WORKER_PORT",
            ports[1].to_string(),
        )
        .env(
            "PIPELINE__PROBES__REQUEUE_DAEMON_PORT",
            ports[2].to_string(),
        )
        .env("PIPELINE__PROBES__FACTS_WORKER_PORT", ports[3].to_string())
        .env(
            "PIPELINE__PROBES__WEBHOOK_WORKER_PORT",
            ports[4].to_string(),
        )
        .env("PIPELINE__API__BIND", format!("127.0.0.1:{api_port}"))
        // The section installs nothing; the model is the embedder's own tests' concern.
        .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
        // Its own process group, so the daemons it leaves running are stopped together.
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let pgid = child.id().expect("bash is running");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await;
    let stopped = stop_group(pgid).await;
    let out = out??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs: String = [
        "scrape-worker",
        "extraction-worker",
        "facts-worker",
        "webhook-worker",
        "requeue-daemon",
        "pipeline-api",
    ]
    .iter()
    .map(|d| {
        let log = std::fs::read_to_string(workdir.join(format!("{d}.log"))).unwrap_or_default();
        format!("--- {d}.log\n{log}")
    })
    .collect();
    assert!(
        out.status.success(),
        "the section's commands failed ({}):\n{stdout}\n{stderr}\n{logs}",
        out.status
    );
    stopped?;

    // Step 3 migrated; step 5 saw five ready daemons, the API and the CLI.
    let known = pipeline_store::MIGRATOR.iter().count();
    assert!(
        stdout.contains(&format!("applied {known} migration(s)")),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches(r#"{"postgres":"ok","redis":"ok","schema":"ok"}"#)
            .count(),
        5,
        "{stdout}"
    );
    // The API's DLQ stats (JSON) and the CLI's (a table with a row per family).
    assert!(stdout.contains(r#""scrape""#), "{stdout}");
    assert!(stdout.contains("KIND"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("extraction ")),
        "{stdout}"
    );
    let migrated: i64 = {
        let mut conn = PgConnection::connect(url.as_str()).await?;
        let n = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        n
    };
    assert_eq!(migrated as usize, known, "every migration applied");
    Ok(())
}
