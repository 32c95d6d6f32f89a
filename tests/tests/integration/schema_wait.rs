//! Daemons started before the schema is there wait instead of crashing: `/health` answers,
//! `/ready` answers 503 with the reason, the wait is logged, SIGTERM still ends the process at
//! once, and after `pipelinectl migrate` the same process becomes ready and works. A schema
//! newer than the binary (a rolling upgrade's) is accepted.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_tests::pages::PageServer;
use integration_tests::{TestDb, TestRedis, binary, redis_url, settings_for};
use pipeline_ops::Services;
use pipeline_ops::submit::{SubmitRequest, submit};
use pipeline_store::sources;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A daemon process whose log lines (human text, no colour) are collected as they come.
struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Daemon {
    fn start(bin: &str, db: &TestDb, redis: &TestRedis) -> anyhow::Result<Self> {
        let mut child = Command::new(binary(bin))
            .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
            .env_remove("PIPELINE_CONFIG")
            .env("DATABASE_URL", &db.url)
            .env("REDIS_URL", redis_url())
            .env("PIPELINE__REDIS__KEY_PREFIX", &redis.prefix)
            .env("PIPELINE__PROBES__HOST", "127.0.0.1")
            .env("PIPELINE__PROBES__SCRAPE_WORKER_PORT", "0")
            .env("PIPELINE__PROBES__EXTRACTION_WORKER_PORT", "0")
            .env("PIPELINE__PROBES__REQUEUE_DAEMON_PORT", "0")
            .env("PIPELINE__QUEUE__BLOCK_TIMEOUT_MS", "200")
            .env("PIPELINE__SCRAPE__ALLOW_PRIVATE_HOSTS", "127.0.0.1")
            .env("PIPELINE__SCRAPE__PER_HOST_MIN_DELAY_MS", "0")
            .env("PIPELINE__SHUTDOWN__DRAIN_TIMEOUT_SECS", "2")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Ok(Self { child, log })
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`.
    async fn wait_log(&self, needle: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return Ok(log);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "`{needle}` never logged; log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The probe address from the start-up line (`probes=127.0.0.1:PORT`).
    async fn probes(&self) -> anyhow::Result<SocketAddr> {
        let log = self.wait_log("probes=").await?;
        let rest = &log[log.find("probes=").expect("found") + "probes=".len()..];
        let addr = rest
            .split(|c: char| c.is_whitespace() || c == '"' || c == ',')
            .find(|s| !s.is_empty())
            .expect("an address follows probes=");
        Ok(addr.parse()?)
    }

    fn still_running(&mut self) -> anyhow::Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }

    /// SIGTERM; returns the exit code and how long the exit took.
    async fn terminate(&mut self) -> anyhow::Result<(Option<i32>, Duration)> {
        let pid = self.child.id().expect("the child is running");
        let sent = Instant::now();
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??;
        Ok((status.code(), sent.elapsed()))
    }
}

async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let resp = integration_tests::http_client()
        .get(format!("http://{addr}{path}"))
        .send()
        .await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

async fn wait_ready(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(addr, "/ready").await?;
        if status == 200 {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "never ready: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn known_migrations() -> usize {
    pipeline_store::MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .count()
}

async fn pipelinectl_migrate(db: &TestDb) -> anyhow::Result<()> {
    let out = Command::new(binary("pipelinectl"))
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", redis_url())
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "pipelinectl migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_on_an_unmigrated_database_waits_not_ready_then_works_after_migrate()
-> anyhow::Result<()> {
    pipeline_core::install_crypto_provider();
    let db = TestDb::empty().await?;
    let redis = TestRedis::new()?;
    let mut worker = Daemon::start("scrape-worker", &db, &redis)?;
    let probes = worker.probes().await?;

    let need = known_migrations();
    let waiting = format!("waiting for migrations: have 0, need {need}; run `pipelinectl migrate`");
    worker.wait_log(&waiting).await?;
    // Alive, not ready, with the reason; and still so a while later (not crashed).
    for _ in 0..2 {
        assert_eq!(get(probes, "/health").await?.0, 200);
        let (status, body) = get(probes, "/ready").await?;
        assert_eq!(status, 503, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!(body["schema"], waiting.as_str());
        assert_eq!(body["postgres"], "ok");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            worker.still_running()?,
            "the worker exited:\n{}",
            worker.log()
        );
    }
    // Logged every few seconds, not on every look.
    let logged = worker.log().matches(&waiting).count();
    assert!((1..=2).contains(&logged), "logged {logged} times");

    pipelinectl_migrate(&db).await?;
    wait_ready(probes).await?;
    worker.wait_log("migrations applied; starting").await?;

    // It works: a submitted page is scraped by this process.
    let server = PageServer::start().await;
    let services = Services::with_pools(
        settings_for(&db, &redis),
        db.pool.clone(),
        redis.pool.clone(),
    )?;
    let out = submit(
        &services,
        &SubmitRequest {
            urls: vec![server.url("/ok/1")],
            project_id: None,
            project_name: None,
            source_group: None,
            model_token_cap: None,
            priority: Default::default(),
            render: None,
        },
        pipeline_store::Actor::Cli,
    )
    .await?;
    let id = out.sources[0].source_id;
    let deadline = Instant::now() + Duration::from_secs(30);
    while sources::get(&db.pool, id).await?.status != "scraped" {
        anyhow::ensure!(
            Instant::now() < deadline,
            "not scraped; log:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = worker.terminate().await?;
    assert_eq!(code, Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_waiting_for_the_schema_exits_at_once_with_0() -> anyhow::Result<()> {
    let db = TestDb::empty().await?;
    let redis = TestRedis::new()?;
    for bin in ["extraction-worker", "requeue-daemon"] {
        let mut daemon = Daemon::start(bin, &db, &redis)?;
        daemon.wait_log("waiting for migrations: have 0").await?;
        let (code, took) = daemon.terminate().await?;
        assert_eq!(code, Some(0), "{bin}:\n{}", daemon.log());
        assert!(took < Duration::from_secs(2), "{bin} took {took:?} to exit");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_waits_for_the_schema_and_accepts_a_newer_one() -> anyhow::Result<()> {
    let db = TestDb::empty().await?;
    let redis = TestRedis::new()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut cmd = Command::new(binary("pipeline-api"));
    cmd.env("DATABASE_URL", &db.url)
        .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &redis.prefix)
        .env("PIPELINE__API__BIND", addr.to_string())
        .env_remove("PIPELINE_CONFIG")
        .env_remove("PIPELINE_API_KEY")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut api = cmd.spawn()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Ok((503, body)) = get(addr, "/ready").await
            && body.contains("waiting for migrations")
        {
            break body;
        }
        anyhow::ensure!(Instant::now() < deadline, "the API never reported the wait");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        body.contains(&format!("have 0, need {}", known_migrations())),
        "{body}"
    );
    assert!(api.try_wait()?.is_none(), "the API exited");

    // Migrated, plus a migration from a newer release this binary does not know.
    pipelinectl_migrate(&db).await?;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99991231000000, 'from a newer release', true, '\\x00'::bytea, 1)",
    )
    .execute(&db.pool)
    .await?;
    // This (older) pipelinectl still migrates such a database: a no-op, not a refusal, as the
    // old pods' init containers need during a rolling upgrade.
    pipelinectl_migrate(&db).await?;
    wait_ready(addr).await?;
    let (status, _) = get(addr, "/api/v1/dlq/stats").await?;
    assert_eq!(status, 200);
    api.start_kill()?;
    api.wait().await?;
    Ok(())
}
