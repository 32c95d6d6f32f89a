//! Webhook delivery throughput, and what a receiver that never answers costs the pipeline.
//!
//! ```text
//! cargo run --release -p integration-tests --example webhook_bench -- [DELIVERIES] [PAGES]
//! ```
//!
//! 1. **Deliveries/s**: DELIVERIES (default 5000) deliveries written to one endpoint (as the
//!    triggers write them), sent by the webhook worker's own loop (`webhook_worker::run`:
//!    relay, signed POSTs, bookkeeping) to a loopback receiver that answers 200 at once; the
//!    clock runs from the worker's start until every delivery is `delivered` in Postgres.
//!    At `webhooks.concurrency` 8, 32 and 128.
//! 2. **The pipeline beside a hanging receiver**: PAGES (default 400) scraped pages
//!    extracted by the extraction worker's own loop (`hashing` embedder), twice in the same
//!    run on fresh databases: without endpoints, then with an endpoint subscribed to
//!    `page.extracted` (one delivery per page) whose receiver never answers, the webhook
//!    worker running beside it with a 2 s timeout. Pages/s of both, and the deliveries
//!    written (none may be missing: every page has one).
//!
//! Fresh databases and Redis prefixes as the tests (`TEST_DATABASE_URL`, `TEST_REDIS_URL`),
//! removed at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use integration_tests::extraction::article_page;
use integration_tests::{TestDb, TestRedis, settings_for};
use pipeline_ops::messages::SourceMessage;
use pipeline_ops::webhooks::{self as ops, EndpointInput};
use pipeline_ops::{Family, Services};
use pipeline_store::jobs::{self, NewScrapeJob, ProjectRef};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let deliveries: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5000);
    let pages: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(400);
    pipeline_core::install_crypto_provider();

    let (fast, answered) = receiver(false).await;
    println!("deliveries to a loopback receiver answering 200 at once ({deliveries} each):");
    for concurrency in [8, 32, 128] {
        let secs = deliver(deliveries, concurrency, &format!("http://{fast}/hook")).await?;
        println!(
            "  webhooks.concurrency {concurrency:>3}: {secs:.2} s, {:.0} deliveries/s",
            deliveries as f64 / secs
        );
    }
    println!(
        "  (the receiver answered {} requests)",
        answered.load(Ordering::Relaxed)
    );

    let (hanging, _) = receiver(true).await;
    println!("extraction of {pages} pages (hashing embedder):");
    let (plain, _) = extract(pages, None).await?;
    println!(
        "  no endpoint:                      {:.1} pages/s",
        pages as f64 / plain
    );
    let (hooked, written) = extract(pages, Some(&format!("http://{hanging}/hook"))).await?;
    println!(
        "  page.extracted to a hanging receiver: {:.1} pages/s ({:.0}% of the above); \
         {written} deliveries written, one per page, none delivered (the receiver never answers)",
        pages as f64 / hooked,
        100.0 * plain / hooked
    );
    Ok(())
}

/// A loopback receiver answering 200 at once, or never (`hang`); counts requests.
async fn receiver(hang: bool) -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::Relaxed);
                if hang {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, count)
}

async fn services(
    db: &TestDb,
    redis: &TestRedis,
    tweak: impl FnOnce(&mut pipeline_core::Settings),
) -> anyhow::Result<Services> {
    let mut settings = settings_for(db, redis);
    settings.webhooks.allow_private_hosts = vec!["127.0.0.1".into()];
    tweak(&mut settings);
    Services::with_pools(settings, db.pool.clone(), redis.pool.clone())
}

async fn project(db: &TestDb) -> anyhow::Result<Uuid> {
    Ok(
        sqlx::query_scalar("INSERT INTO projects (id, name) VALUES ($1, 'bench') RETURNING id")
            .bind(Uuid::now_v7())
            .fetch_one(&db.pool)
            .await?,
    )
}

async fn endpoint(
    services: &Services,
    project: Uuid,
    url: &str,
    event: &str,
) -> anyhow::Result<Uuid> {
    Ok(ops::create(
        services,
        project,
        &EndpointInput {
            url: url.into(),
            events: vec![event.into()],
            ..EndpointInput::default()
        },
    )
    .await?
    .endpoint
    .id)
}

/// Seconds the webhook worker takes to deliver `n` deliveries at `concurrency`.
async fn deliver(n: usize, concurrency: usize, url: &str) -> anyhow::Result<f64> {
    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let services = services(&db, &redis, |s| s.webhooks.concurrency = concurrency).await?;
    let project = project(&db).await?;
    let hook = endpoint(&services, project, url, "job.completed").await?;
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, endpoint_id, project_id, event, payload)
         SELECT d.id, $1, $2, 'job.completed',
                jsonb_build_object('id', d.id, 'type', 'job.completed', 'created_at', now(),
                                   'project_id', $2::uuid,
                                   'data', jsonb_build_object('job_id', gen_random_uuid(),
                                                              'status', 'completed', 'n', d.i))
           FROM (SELECT gen_random_uuid() AS id, i FROM generate_series(1, $3) AS i) d",
    )
    .bind(hook)
    .bind(project)
    .bind(n as i64)
    .execute(&db.pool)
    .await?;
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let worker = {
        let services = services.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move { webhook_worker::run(&services, cancel).await })
    };
    wait_for(
        &db,
        "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'",
        n,
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    cancel.cancel();
    worker.await??;
    Ok(secs)
}

/// Seconds the extraction worker takes for `pages` pages, with an endpoint subscribed to
/// `page.extracted` at `hook_url` (and the webhook worker running) when given; and the
/// deliveries written for the pages.
async fn extract(pages: usize, hook_url: Option<&str>) -> anyhow::Result<(f64, i64)> {
    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let services = services(&db, &redis, |s| s.webhooks.timeout_ms = 2000).await?;
    let project = project(&db).await?;
    if let Some(url) = hook_url {
        endpoint(&services, project, url, "page.extracted").await?;
    }
    let urls: Vec<String> = (0..pages)
        .map(|i| format!("https://bench.example/page/{i}"))
        .collect();
    let job = jobs::create_scrape_job(
        &db.pool,
        &NewScrapeJob {
            actor: pipeline_store::Actor::Cli,
            model_token_cap: None,
            project: ProjectRef::Id(project),
            source_group: None,
            urls: &urls,
            invalid: &[],
            priority: "normal",
            render: None,
        },
    )
    .await?;
    let ids: Vec<Uuid> = job.sources.iter().map(|s| s.source_id).collect();
    sqlx::query(
        "UPDATE sources SET raw_content = $2, content_type = 'text/html', status = 'scraped',
                http_status = 200, fetched_at = now()
          WHERE id = ANY($1)",
    )
    .bind(&ids)
    .bind(article_page())
    .execute(&db.pool)
    .await?;
    let messages: Vec<(String, serde_json::Value)> = ids
        .iter()
        .map(|&source_id| {
            let m = SourceMessage {
                source_id,
                job_id: Some(job.job_id),
                url: None,
                project_id: None,
                priority: Default::default(),
                render: None,
            };
            (m.id(), m.body())
        })
        .collect();
    services
        .queue(Family::Extraction)
        .enqueue_bulk(&messages)
        .await?;
    let cancel = CancellationToken::new();
    let webhooks = hook_url.map(|_| {
        let services = services.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move { webhook_worker::run(&services, cancel).await })
    });
    let batcher = extraction_worker::batcher_from_settings(&services.settings)?;
    let started = Instant::now();
    let worker = {
        let services = services.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move { extraction_worker::run(&services, batcher, cancel).await })
    };
    wait_for(
        &db,
        "SELECT count(*) FROM sources WHERE status = 'extracted'",
        pages,
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    cancel.cancel();
    worker.await?;
    if let Some(w) = webhooks {
        w.await??;
    }
    let written: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_deliveries WHERE event = 'page.extracted'",
    )
    .fetch_one(&db.pool)
    .await?;
    if hook_url.is_some() {
        anyhow::ensure!(
            written as usize == pages,
            "{written} deliveries for {pages} pages"
        );
    }
    Ok((secs, written))
}

async fn wait_for(db: &TestDb, sql: &'static str, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done: i64 = sqlx::query_scalar(sql).fetch_one(&db.pool).await?;
        if done as usize >= n {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{done} of {n} after 10 minutes");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
