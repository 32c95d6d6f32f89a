//! The `scrape-worker` binary as a process: killed with SIGKILL while holding messages,
//! they are delivered again and processed once; SIGTERM drains and exits 0.

use std::process::Stdio;
use std::time::{Duration, Instant};

use integration_tests::pages::PageServer;
use integration_tests::{TestDb, TestRedis, binary, redis_url, settings_for};
use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_ops::submit::{SubmitRequest, submit};
use pipeline_runner::run_next;
use pipeline_store::sources;
use tokio::process::{Child, Command};
use uuid::Uuid;

struct Setup {
    server: PageServer,
    services: Services,
    redis: TestRedis,
    db: TestDb,
}

async fn setup() -> anyhow::Result<Setup> {
    pipeline_core::install_crypto_provider();
    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let mut settings = settings_for(&db, &redis);
    settings.scrape.allow_private_hosts = vec!["127.0.0.1".into()];
    settings.scrape.per_host_min_delay_ms = 0;
    settings.scrape.per_host_max_concurrency = 16;
    settings.queue.visibility_timeout_secs = 2;
    let services = Services::with_pools(settings, db.pool.clone(), redis.pool.clone())?;
    Ok(Setup {
        server: PageServer::start().await,
        services,
        redis,
        db,
    })
}

impl Setup {
    fn spawn_worker(&self, drain_secs: u64) -> anyhow::Result<Child> {
        let logs = std::env::var_os("TEST_LOG").is_some();
        let out = || {
            if logs {
                Stdio::inherit()
            } else {
                Stdio::null()
            }
        };
        self.worker_command(drain_secs)
            .env("RUST_LOG", if logs { "info" } else { "error" })
            .stdout(out())
            .stderr(out())
            .spawn()
            .map_err(Into::into)
    }

    /// A worker whose log (human text, `warn` and up) the test reads from its stderr.
    fn spawn_worker_logged(&self, drain_secs: u64) -> anyhow::Result<Child> {
        self.worker_command(drain_secs)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Into::into)
    }

    fn worker_command(&self, drain_secs: u64) -> Command {
        let mut cmd = Command::new(binary("scrape-worker"));
        cmd.env("DATABASE_URL", &self.db.url)
            .env("REDIS_URL", redis_url())
            .env("PIPELINE__REDIS__KEY_PREFIX", &self.redis.prefix)
            .env("PIPELINE__SCRAPE__ALLOW_PRIVATE_HOSTS", "127.0.0.1")
            .env("PIPELINE__SCRAPE__PER_HOST_MIN_DELAY_MS", "0")
            .env("PIPELINE__SCRAPE__PER_HOST_MAX_CONCURRENCY", "16")
            .env("PIPELINE__QUEUE__VISIBILITY_TIMEOUT_SECS", "2")
            .env("PIPELINE__QUEUE__BLOCK_TIMEOUT_MS", "200")
            .env(
                "PIPELINE__SHUTDOWN__DRAIN_TIMEOUT_SECS",
                drain_secs.to_string(),
            )
            .env("PIPELINE__PROBES__HOST", "127.0.0.1")
            .env("PIPELINE__PROBES__SCRAPE_WORKER_PORT", "0")
            // Long enough that a hanging page holds its fetch for the whole test.
            .env("PIPELINE__SCRAPE__REQUEST_TIMEOUT_MS", "600000")
            .kill_on_drop(true);
        cmd
    }

    async fn submit(&self, paths: &[String]) -> anyhow::Result<Vec<Uuid>> {
        let urls = paths.iter().map(|p| self.server.url(p)).collect();
        let out = submit(
            &self.services,
            &SubmitRequest {
                urls,
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
        Ok(out.sources.iter().map(|s| s.source_id).collect())
    }

    /// Waits until the worker process holds `n` messages and the server sees them.
    /// Waits until the worker holds every message, has asked for every page and has recorded
    /// every `started` event (written beside the fetch, so a page being served does not mean
    /// the event has committed; a kill before that commit would leave one `started` too few).
    async fn wait_held(&self, paths: &[String], ids: &[Uuid]) -> anyhow::Result<()> {
        let queue = self.services.queue(Family::Scrape);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let leased = queue.depth().await?.leased as usize;
            let seen = paths.iter().filter(|p| self.server.hits(p) > 0).count();
            let mut started = 0;
            for id in ids {
                if self.count_events(*id, "started").await? > 0 {
                    started += 1;
                }
            }
            if leased == paths.len() && seen == paths.len() && started == ids.len() {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "the worker never held every message"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn statuses(&self, ids: &[Uuid]) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for id in ids {
            out.push(
                sources::get(&self.services.db, *id)
                    .await?
                    .status
                    .to_string(),
            );
        }
        Ok(out)
    }

    async fn count_events(&self, id: Uuid, kind: &str) -> anyhow::Result<usize> {
        Ok(sources::events(&self.services.db, id)
            .await?
            .iter()
            .filter(|e| e.kind == kind)
            .count())
    }

    /// Processes in-process until every source is scraped.
    async fn finish_in_process(&self, ids: &[Uuid]) -> anyhow::Result<()> {
        let handler = scrape_worker::handler_for(&self.services)?;
        let queue = self.services.queue(Family::Scrape);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.statuses(ids).await?.iter().any(|s| s != "scraped") {
            assert!(
                Instant::now() < deadline,
                "sources were not scraped after the crash"
            );
            if run_next(queue, &handler, 16).await? == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    async fn assert_scraped_once(&self, ids: &[Uuid]) -> anyhow::Result<()> {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sources")
            .fetch_one(&self.services.db)
            .await?;
        assert_eq!(rows as usize, ids.len(), "duplicate source rows");
        let extraction = self.services.queue(Family::Extraction);
        assert_eq!(extraction.depth().await?.total() as usize, ids.len());
        for id in ids {
            assert!(extraction.contains(&id.to_string()).await?);
            assert_eq!(self.count_events(*id, "succeeded").await?, 1, "{id}");
        }
        let scrape = self.services.queue(Family::Scrape);
        assert_eq!(scrape.depth().await?.total(), 0, "scrape queue not empty");
        Ok(())
    }
}

fn signal(child: &Child, sig: &str) -> anyhow::Result<()> {
    let pid = child.id().expect("the child is running");
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()?;
    anyhow::ensure!(status.success(), "kill -{sig} {pid} failed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_held_by_a_killed_worker_are_redelivered_and_processed_once() -> anyhow::Result<()>
{
    let s = setup().await?;
    let paths: Vec<String> = (0..6).map(|i| format!("/slow/4000/{i}")).collect();
    let ids = s.submit(&paths).await?;
    let mut child = s.spawn_worker(30)?;
    s.wait_held(&paths, &ids).await?;
    signal(&child, "KILL")?;
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await??;
    assert!(!status.success(), "the worker was killed");
    // Nothing was finished by the dead worker.
    assert!(s.statuses(&ids).await?.iter().all(|st| st == "queued"));

    s.finish_in_process(&ids).await?;
    s.assert_scraped_once(&ids).await?;
    for id in &ids {
        assert_eq!(
            s.count_events(*id, "started").await?,
            2,
            "{id} was not delivered twice"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_work_and_exits_zero() -> anyhow::Result<()> {
    let s = setup().await?;
    let paths: Vec<String> = (0..4).map(|i| format!("/slow/1500/{i}")).collect();
    let ids = s.submit(&paths).await?;
    let mut child = s.spawn_worker(20)?;
    s.wait_held(&paths, &ids).await?;
    let sent = Instant::now();
    signal(&child, "TERM")?;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    assert!(status.success(), "exit status {status}");
    assert!(
        sent.elapsed() < Duration::from_secs(20),
        "exceeded the drain timeout"
    );
    // Everything it held was finished before it exited.
    assert!(s.statuses(&ids).await?.iter().all(|st| st == "scraped"));
    s.assert_scraped_once(&ids).await?;
    Ok(())
}

/// The drain bound the process must meet: the drain timeout, the documented exit margin,
/// and one more second for a loaded test machine to schedule the exit.
fn exit_bound(drain_secs: u64) -> Duration {
    Duration::from_secs(drain_secs) + pipeline_core::shutdown::EXIT_MARGIN + Duration::from_secs(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_drain_timeout_hands_work_back() -> anyhow::Result<()> {
    let s = setup().await?;
    // Pages that never answer: the fetches cannot finish however long the drain waits.
    let paths: Vec<String> = (0..3).map(|i| format!("/hang/{i}")).collect();
    let ids = s.submit(&paths).await?;
    let mut child = s.spawn_worker_logged(1)?;
    s.wait_held(&paths, &ids).await?;
    let sent = Instant::now();
    signal(&child, "TERM")?;
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await??;
    let took = sent.elapsed();
    assert_eq!(
        status.code(),
        Some(i32::from(pipeline_core::shutdown::EXIT_HANDED_BACK)),
        "exit status {status}"
    );
    assert!(took < exit_bound(1), "took {took:?}");
    // What it handed back is logged once, by family and message id.
    let mut log = String::new();
    tokio::io::AsyncReadExt::read_to_string(child.stderr.as_mut().expect("piped stderr"), &mut log)
        .await?;
    assert_eq!(log.matches("work handed back at exit").count(), 1, "{log}");
    for id in &ids {
        assert!(log.contains(&id.to_string()), "{id} not in the log: {log}");
    }
    assert!(log.contains(r#"family="scrape""#), "{log}");
    assert!(s.statuses(&ids).await?.iter().all(|st| st == "queued"));
    // The held messages come back after their lease and are done once.
    s.server.set_hanging(false);
    s.finish_in_process(&ids).await?;
    s.assert_scraped_once(&ids).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() -> anyhow::Result<()> {
    let s = setup().await?;
    let paths: Vec<String> = (0..2).map(|i| format!("/hang/second-{i}")).collect();
    let ids = s.submit(&paths).await?;
    // A drain timeout far longer than the test: only the second signal can end it quickly.
    let mut child = s.spawn_worker(120)?;
    s.wait_held(&paths, &ids).await?;
    let sent = Instant::now();
    signal(&child, "TERM")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, "TERM")?;
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await??;
    let took = sent.elapsed();
    assert_eq!(
        status.code(),
        Some(i32::from(pipeline_core::shutdown::EXIT_HANDED_BACK)),
        "exit status {status}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    s.server.set_hanging(false);
    s.finish_in_process(&ids).await?;
    s.assert_scraped_once(&ids).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_message_fields_as_plain_top_level_values() -> anyhow::Result<()> {
    let s = setup().await?;
    let ids = s
        .submit(&["/ok/json".to_owned(), "/status/404".to_owned()])
        .await?;
    let mut child = s
        .worker_command(5)
        .env("RUST_LOG", "info")
        .env("PIPELINE__TELEMETRY__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.statuses(&ids).await? != ["scraped", "dead_lettered"] {
        anyhow::ensure!(Instant::now() < deadline, "pages not settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal(&child, "TERM")?;
    tokio::time::timeout(Duration::from_secs(15), child.wait()).await??;
    let mut log = String::new();
    tokio::io::AsyncReadExt::read_to_string(child.stderr.as_mut().expect("piped"), &mut log)
        .await?;
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| anyhow::anyhow!("{e}: {l}")))
        .collect::<anyhow::Result<_>>()?;
    assert!(!log.contains("Some("), "Debug text in the log: {log}");
    let job = sources::get(&s.services.db, ids[0])
        .await?
        .created_by_job_id
        .expect("a submitted source has its job")
        .to_string();
    let about = |id: &Uuid, message: &str| {
        lines
            .iter()
            .find(|l| l["source_id"] == id.to_string() && l["message"] == message)
            .cloned()
            .unwrap_or_else(|| panic!("no `{message}` line for {id} in {log}"))
    };
    let ok = about(&ids[0], "scraped");
    let failed = about(&ids[1], "delivery failed");
    for line in [&ok, &failed] {
        assert_eq!(line["family"], "scrape", "{line}");
        assert_eq!(line["job_id"], job.as_str(), "{line}");
        assert!(
            line["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
            "{line}"
        );
    }
    assert_eq!(failed["error_kind"], "permanent", "{failed}");
    assert_eq!(failed["outcome"], "dead_lettered", "{failed}");
    assert_eq!(failed["attempts"], 1, "{failed}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_named_in_the_log_without_its_password() -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let s = setup().await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = s
        .worker_command(1)
        .env("REDIS_URL", format!("redis://:hunter2@127.0.0.1:{port}/0"))
        .env("PIPELINE__REDIS__CONNECT_TIMEOUT_MS", "300")
        .env("RUST_LOG", "warn")
        .env("PIPELINE__TELEMETRY__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("piped")).lines();
    let want = format!("redis at 127.0.0.1:{port}/0");
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            assert!(!line.contains("hunter2"), "a password in the log: {line}");
            let v: serde_json::Value = serde_json::from_str(&line)?;
            if v["redis"] == want.as_str() {
                return anyhow::Ok(v);
            }
        }
        anyhow::bail!("the worker exited without naming {want}")
    })
    .await??;
    assert_eq!(found["level"], "ERROR", "{found}");
    signal(&child, "TERM")?;
    tokio::time::timeout(Duration::from_secs(15), child.wait()).await??;
    Ok(())
}
