//! docs/operations.md's "Restore from a dump", done as written: a database owned by a role
//! of its own holds waiting sources (their messages in Redis), transiently and permanently
//! dead-lettered ones (in a DLQ); the section's blocks dump it, restore the dump into a
//! fresh database as that role, and start the four daemons on it with an empty Redis (a
//! key prefix nothing used). Then the reconciler must put every waiting and transiently
//! failed source back to work, each through a `reconciled` event, until it is `extracted`,
//! while the permanently failed ones stay `dead_lettered`; the section's watch commands
//! must show it. Only names, addresses, ports, the reconciler's threshold and the test
//! pages' settings are changed; the daemons are the built binaries.

use std::collections::HashSet;
use std::time::Duration;

use dlq_core::ErrorKind;
use integration_tests::docs::{admin_execute, section_blocks, stop_group, subst};
use integration_tests::pages::PageServer;
use integration_tests::requeue::{World, eventually, free_port};
use integration_tests::{TestDb, TestRedis, admin_database_url, binary, redis_url, settings_for};
use pipeline_ops::messages::SourceMessage;
use pipeline_ops::{Family, Services};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md");
const SECTION: &str = "### Restore from a dump";

/// Waiting sources, transiently and permanently dead-lettered ones.
const WAITING: usize = 20;
const TRANSIENT: usize = 5;
const PERMANENT: usize = 3;

/// The admin URL with `role`'s credentials and database `db`.
fn role_url(role: &str, db: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(&admin_database_url())?;
    url.set_username(role).expect("a postgres URL has a user");
    url.set_password(Some("change-me"))
        .expect("a postgres URL has a password");
    url.set_path(&format!("/{db}"));
    Ok(url.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_dump_with_an_empty_redis_is_reconciled_as_the_doc_says() -> anyhow::Result<()> {
    pipeline_core::telemetry::init_for_tests();
    let blocks = section_blocks(DOC, SECTION);
    let langs: Vec<&str> = blocks.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        langs,
        ["sh", "sql", "sh", "sh", "sh"],
        "the section's blocks"
    );

    let id = Uuid::new_v4().simple().to_string();
    let role = format!("pipeline_restore_{id}");
    let restored = format!("pipeline_restored_{id}");
    let workdir = std::env::temp_dir().join(format!("pipeline-restore-{id}"));
    std::fs::create_dir_all(&workdir)?;
    admin_execute(&format!(
        r#"CREATE ROLE "{role}" LOGIN PASSWORD 'change-me'"#
    ))
    .await?;

    let result = run(&blocks, &role, &restored, &workdir).await;

    let _ = std::fs::remove_dir_all(&workdir);
    admin_execute(&format!(
        r#"DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)"#
    ))
    .await?;
    admin_execute(&format!(r#"DROP ROLE IF EXISTS "{role}""#)).await?;
    result
}

async fn run(
    blocks: &[(String, String)],
    role: &str,
    restored: &str,
    workdir: &std::path::Path,
) -> anyhow::Result<()> {
    // The database the dump is taken of, owned by the role as in the README.
    let original = format!("pipeline_original_{}", Uuid::new_v4().simple());
    admin_execute(&format!(r#"CREATE DATABASE "{original}" OWNER "{role}""#)).await?;
    let original_url = role_url(role, &original)?;
    let db = TestDb {
        name: original.clone(),
        url: original_url.clone(),
        pool: sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&original_url)
            .await?,
    };
    pipeline_store::migrate(&db.pool).await?;
    let redis = TestRedis::new()?;
    let settings = settings_for(&db, &redis);
    let services = Services::with_pools(settings, db.pool.clone(), redis.pool.clone())?;
    let w = World {
        db,
        redis,
        services,
    };
    let pages = PageServer::start().await;
    let urls: Vec<String> = (0..WAITING + TRANSIENT + PERMANENT)
        .map(|i| pages.url(&format!("/ok/{i}")))
        .collect();
    let (job, _) = w.submit(urls).await?;
    let queue = w.services.queue(Family::Scrape);
    let transient = queue.reserve(TRANSIENT).await?;
    assert_eq!(transient.len(), TRANSIENT);
    w.dead_letter(&transient, ErrorKind::Transient, "HTTP 503")
        .await?;
    let permanent = queue.reserve(PERMANENT).await?;
    assert_eq!(permanent.len(), PERMANENT);
    w.dead_letter(&permanent, ErrorKind::Permanent, "HTTP 404")
        .await?;
    let permanent: HashSet<Uuid> = permanent
        .iter()
        .map(|d| d.parse::<SourceMessage>().map(|m| m.source_id))
        .collect::<Result<_, _>>()?;

    // Step 2's SQL, as the superuser.
    let sql = subst(
        &blocks[1].1,
        "CREATE DATABASE pipeline_restored OWNER pipeline;",
        &format!(r#"CREATE DATABASE "{restored}" OWNER "{role}";"#),
    );
    admin_execute(sql.trim().trim_end_matches(';')).await?;

    // Steps 1, 3 and 4, one script; the daemons it starts keep running in its group.
    let restored_url = role_url(role, restored)?;
    let empty = TestRedis::new()?; // its prefix is the empty Redis; dropped: its keys go
    let mut script = [&blocks[0].1, &blocks[2].1, &blocks[3].1]
        .map(String::as_str)
        .join("\n");
    script = subst(
        &script,
        "'postgres://pipeline:change-me@db.example.com:5432/pipeline_restored'",
        &format!("'{restored_url}'"),
    );
    script = subst(
        &script,
        "PIPELINE__REDIS__KEY_PREFIX='pipeline-restored:'",
        &format!("PIPELINE__REDIS__KEY_PREFIX='{}'", empty.prefix),
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
    let bash = |script: &str| {
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg("-euo")
            .arg("pipefail")
            .arg("-c")
            .arg(script)
            .current_dir(workdir)
            .env("PATH", &path)
            .env_remove("PIPELINE_CONFIG")
            .env_remove("RUST_LOG")
            .env("DATABASE_URL", &original_url)
            .env("REDIS_URL", redis_url())
            .env("PIPELINE__PROBES__HOST", "127.0.0.1")
            .env(
                "PIPELINE__PROBES__SCRAPE_WORKER_PORT",
                free_port().to_string(),
            )
            .env(
                "PIPELINE__PROBES__EXTRACTION_WORKER_PORT",
                free_port().to_string(),
            )
            .env(
                "PIPELINE__PROBES__REQUEUE_DAEMON_PORT",
                free_port().to_string(),
            )
            .env("PIPELINE__API__BIND", format!("127.0.0.1:{}", free_port()))
            .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
            // The test pages are on 127.0.0.1 and answer at once.
            .env("PIPELINE__SCRAPE__ALLOW_PRIVATE_HOSTS", "127.0.0.1")
            .env("PIPELINE__SCRAPE__PER_HOST_MIN_DELAY_MS", "0")
            // The dump is seconds old, not the 600 s the threshold waits for.
            .env("PIPELINE__REQUEUE__RECONCILE_AFTER_SECS", "2")
            .env("PIPELINE__REQUEUE__RECONCILE_INTERVAL_SECS", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        cmd
    };
    let child = bash(&script).spawn()?;
    let pgid = child.id().expect("bash is running");
    let outcome = async {
        let out =
            tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await??;
        anyhow::ensure!(
            out.status.success(),
            "the section's commands failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        check(&blocks[4].1, &bash, &restored_url, job, &permanent).await
    }
    .await;
    let stopped = stop_group(pgid).await;
    let outcome = outcome.map_err(|e| {
        let logs: String = [
            "scrape-worker",
            "extraction-worker",
            "requeue-daemon",
            "pipeline-api",
        ]
        .iter()
        .map(|d| {
            let log = std::fs::read_to_string(workdir.join(format!("{d}.log"))).unwrap_or_default();
            format!("--- {d}.log\n{log}")
        })
        .collect();
        e.context(logs)
    });
    drop(empty);
    drop(w);
    outcome?;
    stopped
}

/// Waits for the restored database to settle, then runs the section's watch block and
/// checks what it and the database say.
async fn check(
    watch: &str,
    bash: &impl Fn(&str) -> tokio::process::Command,
    restored_url: &str,
    job: Uuid,
    permanent: &HashSet<Uuid>,
) -> anyhow::Result<()> {
    let waiting = (WAITING + TRANSIENT) as i64;
    let settled = || async {
        let mut conn = PgConnection::connect(restored_url).await?;
        let (extracted, status): (i64, String) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM sources WHERE status = 'extracted'),
                    (SELECT status FROM jobs WHERE id = $1)",
        )
        .bind(job)
        .fetch_one(&mut conn)
        .await?;
        conn.close().await?;
        anyhow::Ok((extracted == waiting && status == "completed_with_errors").then_some(()))
    };
    eventually(
        Duration::from_secs(120),
        "every waiting and transiently failed source extracted, the job ended",
        settled,
    )
    .await?;
    let mut conn = PgConnection::connect(restored_url).await?;

    // Every extracted source came back through the reconciler; the permanent ones did not.
    let reconciled: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT s.id, s.status FROM sources s
          WHERE EXISTS (SELECT 1 FROM job_events e WHERE e.source_id = s.id AND e.kind = 'reconciled')",
    )
    .fetch_all(&mut conn)
    .await?;
    assert_eq!(reconciled.len() as i64, waiting, "{reconciled:?}");
    assert!(
        reconciled
            .iter()
            .all(|(id, status)| status == "extracted" && !permanent.contains(id)),
        "{reconciled:?}"
    );
    let still: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, status FROM sources WHERE status <> 'extracted'")
            .fetch_all(&mut conn)
            .await?;
    assert_eq!(
        still.iter().map(|(id, _)| *id).collect::<HashSet<_>>(),
        *permanent
    );
    assert!(still.iter().all(|(_, s)| s == "dead_lettered"), "{still:?}");
    conn.close().await?;

    // Step 5's commands, against the restored database.
    let mut cmd = bash(watch);
    cmd.env("DATABASE_URL", restored_url);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the watch commands failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let logged: i64 = stdout
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("grep -c prints a count first");
    assert_eq!(logged, waiting, "{stdout}");
    let row = |status: &str, n: i64| {
        stdout.lines().any(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            cells == [status, &n.to_string()]
        })
    };
    assert!(row("extracted", waiting), "{stdout}");
    assert!(row("dead_lettered", PERMANENT as i64), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.trim() == waiting.to_string() && !l.contains('|')),
        "the reconciled count: {stdout}"
    );
    Ok(())
}
