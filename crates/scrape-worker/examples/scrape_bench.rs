//! Scrape throughput: the whole worker (reserve, robots.txt, politeness script, fetch,
//! store, enqueue extraction, ack) against a local server whose pages answer after 50 ms,
//! at concurrency 1, 8, 32 and 64. The ideal is concurrency / 0.05 s pages per second.
//!
//! Pools are the shipped defaults (`database.max_connections` 10, `redis.pool_size` 4): on a
//! small machine more Postgres connections only add backends competing for the same cores
//! (20 connections measured slower than 10 here).
//!
//! All pages live on one host (127.0.0.1), so the per-host politeness limits are raised
//! for the bench: no minimum delay, a cap of 1000 in flight (the Redis script still runs
//! for every request). Loopback only; every run is bounded by its page count.
//!
//! ```text
//! cargo run --release -p scrape-worker --example scrape_bench
//! ```
//!
//! Environment: `BENCH_DATABASE_URL` (admin URL, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), `REDIS_URL` (default
//! `redis://127.0.0.1:6379/0`), `BENCH_PAGES_PER_SLOT` (pages per unit of concurrency, 100:
//! a run of 5 s, so the worker's cold start, about 0.1 s of connecting and the first
//! robots.txt, weighs 2% rather than the 5% it weighs in a 2 s run),
//! `BENCH_CONCURRENCY` (the levels, default `1,8,32,64`).

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use pipeline_core::{Settings, Sources};
use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_ops::submit::{SubmitRequest, submit};
use sqlx::{Connection, Executor, PgConnection};
use tokio_util::sync::CancellationToken;

const DELAY: Duration = Duration::from_millis(50);
const JOB_SIZE: usize = 20;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pipeline_core::install_crypto_provider();
    let admin = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let per_slot: usize = std::env::var("BENCH_PAGES_PER_SLOT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);

    let app = Router::new()
        .route(
            "/page/{id}",
            get(
                |axum::extract::Path(id): axum::extract::Path<u64>| async move {
                    tokio::time::sleep(DELAY).await;
                    axum::response::Html(format!(
                        "<html><head><title>Page {id}</title></head><body><p>{}</p></body></html>",
                        "Some text of a page. ".repeat(50)
                    ))
                },
            ),
        )
        .route(
            "/robots.txt",
            get(|| async { "User-agent: *\nDisallow: /private/\n" }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let levels: Vec<usize> = std::env::var("BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,8,32,64".into())
        .split(',')
        .map(|c| c.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("BENCH_CONCURRENCY must list numbers: {e}"))?;
    println!("concurrency  pages  seconds  pages/s  ideal  of ideal");
    for concurrency in levels {
        let pages = concurrency * per_slot;
        let db_name = format!("scrape_bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin).await?;
        conn.execute(sqlx::AssertSqlSafe(format!(
            r#"CREATE DATABASE "{db_name}""#
        )))
        .await?;
        let db_url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{db_name}"),
            None => anyhow::bail!("admin URL has no database part"),
        };
        let prefix = format!("bench:{}:", uuid::Uuid::new_v4().simple());
        let result = run_one(&db_url, &redis_url, &prefix, addr, concurrency, pages).await;
        cleanup(&redis_url, &prefix).await?;
        conn.execute(sqlx::AssertSqlSafe(format!(
            r#"DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)"#
        )))
        .await?;
        let secs = result?;
        let rate = pages as f64 / secs;
        let ideal = concurrency as f64 / DELAY.as_secs_f64();
        println!(
            "{concurrency:>11}  {pages:>5}  {secs:>7.2}  {rate:>7.0}  {ideal:>5.0}  {:>7.0}%",
            100.0 * rate / ideal
        );
    }
    Ok(())
}

async fn run_one(
    db_url: &str,
    redis_url: &str,
    prefix: &str,
    addr: std::net::SocketAddr,
    concurrency: usize,
    pages: usize,
) -> anyhow::Result<f64> {
    let mut settings = Settings::load_from(&Sources::default())?;
    settings.database.url = db_url.to_owned().into();
    settings.redis.url = redis_url.to_owned().into();
    settings.redis.key_prefix = prefix.to_owned();
    settings.scrape.concurrency = concurrency;
    settings.scrape.allow_private_hosts = vec!["127.0.0.1".into()];
    settings.scrape.per_host_min_delay_ms = 0;
    settings.scrape.per_host_max_concurrency = 1000;
    settings.queue.reserve_batch = 16;
    settings.queue.block_timeout_ms = 200;
    let services = Services::build(settings)?;
    pipeline_store::migrate(&services.db).await?;

    let urls: Vec<String> = (0..pages)
        .map(|i| format!("http://{addr}/page/{i}"))
        .collect();
    // Small jobs, as real submissions are: one huge job would make every status change
    // wait on that job's row lock, which measures the job table rather than the scraper.
    for chunk in urls.chunks(JOB_SIZE) {
        submit(
            &services,
            &SubmitRequest {
                urls: chunk.to_vec(),
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
    }

    // Planner statistics, as a database in service has them (a freshly created one has
    // none, and its first plans would be scans).
    sqlx::query("ANALYZE").execute(&services.db).await?;

    let extraction = services.queue(Family::Extraction);
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let worker = tokio::spawn(scrape_worker::run(services.clone(), cancel.clone()));
    let deadline = started + Duration::from_secs(300);
    // A page is done when its extraction message is enqueued, after its row is stored.
    // Polling the queue's length (O(1) in Redis) keeps the measurement off Postgres.
    loop {
        if extraction.depth().await?.ready as usize >= pages {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "run did not finish in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    cancel.cancel();
    worker.await??;
    let scraped: i64 = sqlx::query_scalar("SELECT count(*) FROM sources WHERE status = 'scraped'")
        .fetch_one(&services.db)
        .await?;
    anyhow::ensure!(
        scraped as usize == pages,
        "{scraped} of {pages} sources are scraped"
    );
    services.db.close().await;
    Ok(secs)
}

async fn cleanup(redis_url: &str, prefix: &str) -> anyhow::Result<()> {
    let pool = dlq_core::build_pool(redis_url, 1, std::time::Duration::from_secs(10))?;
    pool.delete_matching(&format!("{prefix}*")).await?;
    Ok(())
}
