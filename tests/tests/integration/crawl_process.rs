//! A crawl survives `kill -9` of its scrape worker: the `scrape-worker` binary is killed
//! mid-crawl while it holds messages, a new one takes over after the lease expires, and the
//! crawl still ends with exactly the pages of an uninterrupted crawl, each a source once.

use std::process::Stdio;
use std::time::{Duration, Instant};

use integration_tests::site::Site;
use integration_tests::{TestDb, TestRedis, binary, redis_url, settings_for};
use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_ops::crawl::{self, CrawlRequest};
use pipeline_runner::run_next;
use pipeline_store::crawl_status;
use tokio::process::{Child, Command};

fn spawn_scrape_worker(db: &TestDb, redis: &TestRedis) -> anyhow::Result<Child> {
    let logs = std::env::var_os("TEST_LOG").is_some();
    let out = || {
        if logs {
            Stdio::inherit()
        } else {
            Stdio::null()
        }
    };
    Command::new(binary("scrape-worker"))
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &redis.prefix)
        .env("PIPELINE__SCRAPE__ALLOW_PRIVATE_HOSTS", "127.0.0.1")
        .env("PIPELINE__SCRAPE__PER_HOST_MIN_DELAY_MS", "0")
        .env("PIPELINE__SCRAPE__PER_HOST_MAX_CONCURRENCY", "8")
        .env("PIPELINE__QUEUE__VISIBILITY_TIMEOUT_SECS", "2")
        .env("PIPELINE__QUEUE__BLOCK_TIMEOUT_MS", "200")
        .env("PIPELINE__PROBES__HOST", "127.0.0.1")
        .env("PIPELINE__PROBES__SCRAPE_WORKER_PORT", "0")
        .env("RUST_LOG", if logs { "info" } else { "error" })
        .stdout(out())
        .stderr(out())
        .kill_on_drop(true)
        .spawn()
        .map_err(Into::into)
}

#[tokio::test]
async fn a_crawl_ends_with_the_same_pages_after_kill_9_of_its_worker() -> anyhow::Result<()> {
    pipeline_core::install_crypto_provider();
    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let settings = settings_for(&db, &redis);
    let services = Services::with_pools(settings, db.pool.clone(), redis.pool.clone())?;
    let batcher = extraction_worker::batcher_from_settings(&services.settings)?;
    let extract = extraction_worker::handler(&services, batcher);
    // 10 ms a page, so the kill lands while pages are being fetched.
    let site = Site::start(200, Duration::from_millis(10)).await;
    let job = crawl::start(
        &services,
        &CrawlRequest {
            url: site.url("/p/0.html"),
            max_query_variants: Some(5),
            max_path_depth: Some(6),
            ..CrawlRequest::default()
        },
        pipeline_store::Actor::Cli,
    )
    .await?
    .job_id;

    let mut worker = spawn_scrape_worker(&db, &redis)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = crawl_status::progress(&services.db, job).await?;
        if p.pages >= 60 {
            break;
        }
        assert!(Instant::now() < deadline, "the crawl did not start: {p:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.kill().await?; // SIGKILL, to this test's own child
    let mut worker = spawn_scrape_worker(&db, &redis)?;

    let deadline = Instant::now() + Duration::from_secs(120);
    let p = loop {
        let n = run_next(services.queue(Family::Extraction), &extract, 32).await?;
        pipeline_store::progress::refresh(&services.db, job).await?;
        let p = crawl_status::progress(&services.db, job).await?;
        if p.ended {
            break p;
        }
        assert!(Instant::now() < deadline, "the crawl did not end: {p:?}");
        if n == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    worker.kill().await?;

    let mut urls: Vec<String> = sqlx::query_scalar(
        "SELECT s.uri FROM crawl_pages p JOIN sources s ON s.id = p.source_id
          WHERE p.job_id = $1 AND p.via <> 'redirect' AND s.status = 'extracted'",
    )
    .bind(job)
    .fetch_all(&services.db)
    .await?;
    urls.sort();
    let mut want: Vec<String> = site
        .expected_full_crawl()
        .into_iter()
        .filter(|p| p != "/landing.html")
        .map(|p| site.url(&p))
        .collect();
    want.sort();
    assert_eq!(urls, want, "the pages of an uninterrupted crawl, each once");
    let dup: i64 = sqlx::query_scalar(
        "SELECT count(*) - count(DISTINCT uri) FROM sources WHERE created_by_job_id = $1",
    )
    .bind(job)
    .fetch_one(&services.db)
    .await?;
    assert_eq!(dup, 0);
    assert_eq!(p.skipped.robots, 1, "{p:?}");
    Ok(())
}
