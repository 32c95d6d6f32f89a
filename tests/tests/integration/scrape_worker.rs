//! The scrape worker against real Postgres, Redis and an HTTP server on 127.0.0.1: each kind
//! of page ends in the right source status, DLQ entry and event trail.

use std::time::{Duration, Instant};

use integration_tests::pages::PageServer;
use integration_tests::{TestDb, TestRedis, settings_for};
use pipeline_core::Settings;
use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_ops::submit::{SubmitRequest, submit};
use pipeline_runner::run_next;
use pipeline_store::sources;
use scrape_worker::ScrapeHandler;
use uuid::Uuid;

/// (index, status, DLQ kind, event kinds, error contains)
type Expected<'a> = (usize, &'a str, Option<&'a str>, &'a [&'a str], &'a str);

struct Env {
    server: PageServer,
    services: Services,
    handler: ScrapeHandler,
    // Dropped last: the database and keys outlive the handles above.
    _redis: TestRedis,
    _db: TestDb,
}

async fn env(tweak: impl FnOnce(&mut Settings)) -> anyhow::Result<Env> {
    pipeline_core::install_crypto_provider();
    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let mut settings = settings_for(&db, &redis);
    settings.scrape.allow_private_hosts = vec!["127.0.0.1".into()];
    settings.scrape.per_host_min_delay_ms = 0;
    settings.scrape.request_timeout_ms = 1500;
    settings.scrape.max_body_bytes = 100_000;
    settings.scrape.max_redirects = 3;
    settings.queue.max_attempts = 2;
    settings.queue.backoff_base_ms = 50;
    // Retry-After is clamped to the cap; 2 s lets the 429 test see a 1 s wait.
    settings.queue.backoff_cap_ms = 2000;
    settings.queue.visibility_timeout_secs = 10;
    tweak(&mut settings);
    let services = Services::with_pools(settings, db.pool.clone(), redis.pool.clone())?;
    let handler = scrape_worker::handler_for(&services)?;
    Ok(Env {
        server: PageServer::start().await,
        services,
        handler,
        _redis: redis,
        _db: db,
    })
}

impl Env {
    async fn submit(&self, urls: &[String]) -> anyhow::Result<(Uuid, Vec<Uuid>)> {
        let out = submit(
            &self.services,
            &SubmitRequest {
                urls: urls.to_vec(),
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
        let ids = out.sources.iter().map(|s| s.source_id).collect();
        Ok((out.job_id, ids))
    }

    /// Runs the worker step by step until every source is `scraped` or `dead_lettered`.
    async fn drive(&self, ids: &[Uuid]) -> anyhow::Result<()> {
        let queue = self.services.queue(Family::Scrape);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n = run_next(queue, &self.handler, 16).await?;
            let mut settled = true;
            for id in ids {
                let s = sources::get(&self.services.db, *id).await?;
                settled &= matches!(s.status.as_str(), "scraped" | "dead_lettered");
            }
            if settled {
                return Ok(());
            }
            assert!(Instant::now() < deadline, "sources did not settle in time");
            if n == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    async fn kinds(&self, id: Uuid) -> anyhow::Result<Vec<String>> {
        Ok(sources::events(&self.services.db, id)
            .await?
            .into_iter()
            .map(|e| e.kind)
            .collect())
    }

    async fn dlq_kind(&self, id: Uuid) -> anyhow::Result<Option<String>> {
        let dlq = self.services.dlq(Family::Scrape);
        Ok(dlq
            .get(&id.to_string())
            .await?
            .map(|item| item.error_kind.as_str().to_owned()))
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn each_kind_of_page_ends_in_the_right_state() -> anyhow::Result<()> {
    let env = env(|_| {}).await?;
    let s = &env.server;
    s.set_failures("/flaky", 1);
    s.set_failures_with(
        "/ok/limited",
        1,
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        Some(1),
    );
    let cases = [
        s.url("/ok/1"),
        s.url("/status/404"),
        s.url("/flaky"),
        s.url("/slow/5000"),
        s.url("/loop/0"),
        s.url("/huge/1000000"),
        s.url("/huge-declared/1000000"),
        s.url("/binary"),
        s.url("/private/secret"),
        "http://10.255.255.1/x".to_owned(),
        format!("http://[::1]:{}/ok/v6", s.addr().port()),
        s.url("/redirect-to?url=http://10.0.0.1/"),
        s.url("/redirect/2"),
        s.url("/ok/limited"),
        s.url("/latin1"),
        s.url("/text"),
        s.url("/status/503"),
    ];
    let (job_id, ids) = env.submit(&cases).await?;
    assert_eq!(ids.len(), cases.len());
    env.drive(&ids).await?;
    let db = &env.services.db;
    let extraction = env.services.queue(Family::Extraction);

    // (index, status, DLQ kind, event kinds, error contains)
    let expect: [Expected; 17] = [
        (
            0,
            "scraped",
            None,
            &["enqueued", "started", "succeeded"],
            "",
        ),
        (
            1,
            "dead_lettered",
            Some("permanent"),
            &["enqueued", "started", "dead_lettered"],
            "HTTP 404",
        ),
        (
            2,
            "scraped",
            None,
            &["enqueued", "started", "failed", "started", "succeeded"],
            "",
        ),
        (
            3,
            "dead_lettered",
            Some("transient"),
            &["enqueued", "started", "failed", "started", "dead_lettered"],
            "timed out",
        ),
        (
            4,
            "dead_lettered",
            Some("permanent"),
            &["enqueued", "started", "dead_lettered"],
            "too many redirects",
        ),
        (
            5,
            "dead_lettered",
            Some("permanent"),
            &["enqueued", "started", "dead_lettered"],
            "size cap",
        ),
        (
            6,
            "dead_lettered",
            Some("permanent"),
            &["enqueued", "started", "dead_lettered"],
            "size cap",
        ),
        (
            7,
            "dead_lettered",
            Some("permanent"),
            &["enqueued", "started", "dead_lettered"],
            "content type",
        ),
        (
            8,
            "dead_lettered",
            Some("permanent"),
            &["enqueued", "started", "dead_lettered"],
            "robots.txt",
        ),
        (
            9,
            "dead_lettered",
            Some("permanent"),
            &["enqueued", "started", "dead_lettered"],
            "blocked address",
        ),
        (
            10,
            "dead_lettered",
            Some("permanent"),
            &["enqueued", "started", "dead_lettered"],
            "blocked address",
        ),
        (
            11,
            "dead_lettered",
            Some("permanent"),
            &["enqueued", "started", "dead_lettered"],
            "blocked address",
        ),
        (
            12,
            "scraped",
            None,
            &["enqueued", "started", "succeeded"],
            "",
        ),
        (
            13,
            "scraped",
            None,
            &["enqueued", "started", "failed", "started", "succeeded"],
            "",
        ),
        (
            14,
            "scraped",
            None,
            &["enqueued", "started", "succeeded"],
            "",
        ),
        (
            15,
            "scraped",
            None,
            &["enqueued", "started", "succeeded"],
            "",
        ),
        (
            16,
            "dead_lettered",
            Some("transient"),
            &["enqueued", "started", "failed", "started", "dead_lettered"],
            "HTTP 503",
        ),
    ];
    for (i, status, dlq, kinds, error) in expect {
        let id = ids[i];
        let row = sources::get(db, id).await?;
        let case = &cases[i];
        assert_eq!(row.status, status, "{case}");
        assert_eq!(env.kinds(id).await?, strs(kinds), "{case}");
        assert_eq!(env.dlq_kind(id).await?.as_deref(), dlq, "{case}");
        assert_eq!(
            extraction.contains(&id.to_string()).await?,
            status == "scraped",
            "{case}"
        );
        if status == "dead_lettered" {
            let err = row.last_error.unwrap_or_default();
            assert!(err.contains(error), "{case}: {err}");
            assert_eq!(row.last_error_kind.as_deref(), dlq, "{case}");
        } else {
            assert_eq!(row.http_status, Some(200), "{case}");
            assert!(row.fetched_at.is_some(), "{case}");
        }
    }

    // The stored page.
    let ok = sources::get(db, ids[0]).await?;
    assert_eq!(ok.title.as_deref(), Some("Page 1"));
    assert_eq!(ok.content_type.as_deref(), Some("text/html"));
    let raw: String = sqlx::query_scalar("SELECT raw_content FROM sources WHERE id = $1")
        .bind(ids[0])
        .fetch_one(db)
        .await?;
    assert!(raw.contains("<title>Page 1</title>"));
    let latin: String = sqlx::query_scalar("SELECT raw_content FROM sources WHERE id = $1")
        .bind(ids[14])
        .fetch_one(db)
        .await?;
    assert!(latin.contains("Café crème"), "{latin}");
    assert_eq!(
        sources::get(db, ids[14]).await?.title.as_deref(),
        Some("Café")
    );
    assert_eq!(
        sources::get(db, ids[15]).await?.content_type.as_deref(),
        Some("text/plain")
    );

    // Retry-After was honoured: the failed event asked for at least a second.
    let events = sources::events(db, ids[13]).await?;
    let failed = events
        .iter()
        .find(|e| e.kind == "failed")
        .expect("failed event");
    let delay = failed
        .detail
        .as_ref()
        .and_then(|d| d["delay_ms"].as_u64())
        .unwrap_or(0);
    assert!(delay >= 1000, "delay {delay} ms ignores Retry-After");
    let dead = events_detail(&env, ids[16], "dead_lettered").await?;
    assert_eq!(dead["attempts"], 2);
    assert_eq!(dead["dlq"], "scrape");
    assert_eq!(dead["kind"], "transient");

    // Permanent failures were not retried; robots.txt was asked once and obeyed; the blocked
    // redirect never reached its target.
    assert_eq!(s.hits("/status/404"), 1);
    assert_eq!(s.hits("/binary"), 1);
    assert_eq!(s.hits("/private/secret"), 0);
    assert_eq!(s.hits("/robots.txt"), 1);
    assert_eq!(
        s.hits("/loop/4"),
        0,
        "more hops than max_redirects were followed"
    );
    assert!(s.requests().iter().all(|h| {
        h.user_agent
            .as_deref()
            .is_some_and(|ua| ua.starts_with("pipeline-scraper"))
    }));

    // Job progress counts.
    let job = pipeline_store::jobs::get(db, job_id).await?;
    let result = job.result.expect("job result");
    assert_eq!(result["scraped"], 6, "{result}");
    assert_eq!(result["dead_lettered"], 11, "{result}");
    assert_eq!(
        job.status, "running",
        "scraped sources still wait for extraction"
    );
    Ok(())
}

async fn events_detail(env: &Env, id: Uuid, kind: &str) -> anyhow::Result<serde_json::Value> {
    Ok(sources::events(&env.services.db, id)
        .await?
        .into_iter()
        .find(|e| e.kind == kind)
        .and_then(|e| e.detail)
        .unwrap_or_default())
}

#[tokio::test]
async fn malformed_messages_are_dead_lettered_as_permanent() -> anyhow::Result<()> {
    let env = env(|_| {}).await?;
    let (_, ids) = env.submit(&[env.server.url("/ok/m")]).await?;
    let queue = env.services.queue(Family::Scrape);
    // Replace the good message with a malformed body under the same id.
    let held = queue.reserve(1).await?;
    assert_eq!(held.len(), 1);
    assert_eq!(queue.ack(&held[0]).await?, work_queue::AckOutcome::Acked);
    queue.enqueue_raw(&ids[0].to_string(), "{not json").await?;
    // And one whose id names no source at all.
    queue.enqueue_raw("garbage-1", "[1, 2]").await?;
    env.drive(&ids).await?;
    while run_next(queue, &env.handler, 16).await? > 0 {}

    let row = sources::get(&env.services.db, ids[0]).await?;
    assert_eq!(row.status, "dead_lettered");
    assert!(
        row.last_error
            .unwrap_or_default()
            .contains("malformed message")
    );
    assert_eq!(
        env.kinds(ids[0]).await?,
        strs(&["enqueued", "dead_lettered"])
    );
    assert_eq!(env.dlq_kind(ids[0]).await?.as_deref(), Some("permanent"));
    let dlq = env.services.dlq(Family::Scrape);
    let stray = dlq
        .get("garbage-1")
        .await?
        .expect("the stray message is in the DLQ");
    assert_eq!(stray.error_kind.as_str(), "permanent");
    assert_eq!(env.server.hits("/ok/m"), 0);
    Ok(())
}

#[tokio::test]
async fn per_host_concurrency_is_capped_through_redis() -> anyhow::Result<()> {
    let env = env(|s| {
        s.scrape.per_host_max_concurrency = 2;
        s.scrape.respect_robots_txt = false;
    })
    .await?;
    let urls: Vec<String> = (0..6)
        .map(|i| env.server.url(&format!("/slow/300/{i}")))
        .collect();
    let (_, ids) = env.submit(&urls).await?;
    let queue = env.services.queue(Family::Scrape);
    // All six at once: only the limiter keeps them apart.
    assert_eq!(run_next(queue, &env.handler, 6).await?, 6);
    env.drive(&ids).await?;
    for id in &ids {
        assert_eq!(sources::get(&env.services.db, *id).await?.status, "scraped");
    }
    let peak = env.server.peak_in_flight();
    assert!(peak <= 2, "peak of {peak} requests in flight to one host");
    assert_eq!(peak, 2, "the cap should still allow two at once");
    Ok(())
}

#[tokio::test]
async fn per_host_min_delay_spaces_requests() -> anyhow::Result<()> {
    let env = env(|s| {
        s.scrape.per_host_min_delay_ms = 300;
        s.scrape.respect_robots_txt = false;
    })
    .await?;
    let urls: Vec<String> = (0..4)
        .map(|i| env.server.url(&format!("/ok/d{i}")))
        .collect();
    let (_, ids) = env.submit(&urls).await?;
    let queue = env.services.queue(Family::Scrape);
    assert_eq!(run_next(queue, &env.handler, 4).await?, 4);
    env.drive(&ids).await?;
    let mut times: Vec<Instant> = env.server.requests().iter().map(|h| h.at).collect();
    times.sort();
    assert_eq!(times.len(), 4);
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        // Redis's clock and ours differ by scheduling noise only; allow a little.
        assert!(gap >= Duration::from_millis(270), "gap of {gap:?}");
    }
    Ok(())
}

#[tokio::test]
async fn robots_txt_can_be_ignored_and_a_missing_one_allows_all() -> anyhow::Result<()> {
    let env = env(|_| {}).await?;
    env.server.set_robots(None);
    let (_, ids) = env.submit(&[env.server.url("/private/open")]).await?;
    env.drive(&ids).await?;
    assert_eq!(
        sources::get(&env.services.db, ids[0]).await?.status,
        "scraped"
    );

    let ignoring = env_sharing(&env, |s| s.scrape.respect_robots_txt = false)?;
    let server = PageServer::start().await; // robots.txt disallows /private/
    let (_, ids) = env.submit(&[server.url("/private/ignored")]).await?;
    let queue = env.services.queue(Family::Scrape);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sources::get(&env.services.db, ids[0]).await?.status != "scraped" {
        run_next(queue, &ignoring, 4).await?;
        assert!(Instant::now() < deadline);
    }
    assert_eq!(server.hits("/robots.txt"), 0);
    Ok(())
}

/// A second handler over the same database and Redis with other settings.
fn env_sharing(env: &Env, tweak: impl FnOnce(&mut Settings)) -> anyhow::Result<ScrapeHandler> {
    let mut settings = (*env.services.settings).clone();
    tweak(&mut settings);
    let services = Services::with_pools(
        settings,
        env.services.db.clone(),
        env.services.redis.clone(),
    )?;
    Ok(scrape_worker::handler_for(&services)?)
}

/// Replaces the queued scrape message of `id` with `body`.
async fn requeue_with(env: &Env, id: Uuid, body: serde_json::Value) -> anyhow::Result<()> {
    let queue = env.services.queue(Family::Scrape);
    let held = queue.reserve(16).await?;
    for d in &held {
        assert_eq!(queue.ack(d).await?, work_queue::AckOutcome::Acked);
    }
    assert!(queue.enqueue(&id.to_string(), &body).await?);
    Ok(())
}

#[tokio::test]
async fn the_source_row_is_read_first_and_only_its_url_is_fetched() -> anyhow::Result<()> {
    let env = env(|_| {}).await?;

    // A message whose URL is not the row's: the row's URL is fetched, the message's never
    // (it used to be fetched early, then discarded).
    let (job, ids) = env.submit(&[env.server.url("/ok/row")]).await?;
    requeue_with(
        &env,
        ids[0],
        serde_json::json!({"source_id": ids[0], "job_id": job, "url": env.server.url("/ok/other")}),
    )
    .await?;
    env.drive(&ids).await?;
    let row = sources::get(&env.services.db, ids[0]).await?;
    assert_eq!(row.status, "scraped");
    assert_eq!(row.title.as_deref(), Some("Page row"));
    assert_eq!(env.server.hits("/ok/row"), 1);
    assert_eq!(env.server.hits("/ok/other"), 0);

    // A message for a source that does not exist, carrying a URL: nothing fetched, a
    // permanent failure in the DLQ at the first attempt. (The URL goes under `uri`, the
    // name messages used before it was `url`: still read.)
    let ghost = Uuid::now_v7();
    requeue_with(
        &env,
        ghost,
        serde_json::json!({"source_id": ghost, "job_id": job, "uri": env.server.url("/ok/ghost")}),
    )
    .await?;
    let queue = env.services.queue(Family::Scrape);
    assert_eq!(run_next(queue, &env.handler, 16).await?, 1);
    assert_eq!(env.server.hits("/ok/ghost"), 0);
    let item = env
        .services
        .dlq(Family::Scrape)
        .get(&ghost.to_string())
        .await?
        .expect("dead-lettered");
    assert_eq!(item.error_kind.as_str(), "permanent");
    assert!(item.error.contains("not found"), "{}", item.error);

    // A message without a URL (older senders, the reconciler): loaded, then fetched.
    let (job, ids) = env.submit(&[env.server.url("/ok/plain")]).await?;
    requeue_with(
        &env,
        ids[0],
        serde_json::json!({"source_id": ids[0], "job_id": job}),
    )
    .await?;
    env.drive(&ids).await?;
    assert_eq!(
        sources::get(&env.services.db, ids[0]).await?.status,
        "scraped"
    );
    assert_eq!(env.server.hits("/ok/plain"), 1);
    assert_eq!(
        env.kinds(ids[0]).await?,
        strs(&["enqueued", "started", "succeeded"])
    );

    // A redelivery of a source already scraped: nothing fetched or stored again, no second
    // `started`, the extraction message is there.
    requeue_with(
        &env,
        ids[0],
        serde_json::json!({"source_id": ids[0], "job_id": job, "url": env.server.url("/ok/plain")}),
    )
    .await?;
    let queue = env.services.queue(Family::Scrape);
    assert_eq!(run_next(queue, &env.handler, 16).await?, 1);
    assert_eq!(
        env.kinds(ids[0]).await?,
        strs(&["enqueued", "started", "succeeded"])
    );
    let extraction = env.services.queue(Family::Extraction);
    assert!(extraction.contains(&ids[0].to_string()).await?);
    assert_eq!(queue.depth().await?.ready, 0);
    assert_eq!(env.server.hits("/ok/plain"), 1);
    Ok(())
}
