//! What a freshly started process shows on `/metrics` (docs/metrics.md): `pipeline_build_info`,
//! the `process_*` series read from `/proc`, every counter it exports already at zero, one
//! prefix for every series, a `# HELP` for each; the API's request counts and latencies by
//! route template and status; and the cluster-wide queue gauges from the requeue daemon
//! only, without a DLQ total beside its parts.
//! Needs the binaries built first (`cargo build --workspace --bins`).

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use integration_tests::requeue::{eventually, free_port};
use integration_tests::{TestDb, TestRedis, binary, http_client, redis_url, settings_for};
use pipeline_ops::{Family, Services};
use tokio::process::{Child, Command};

const KEY: &str = "metrics-test-key";

/// Starts `bin` over the test's database and Redis prefix, its probes (or the API) on `port`.
fn spawn(bin: &str, db: &TestDb, redis: &TestRedis, port: u16) -> anyhow::Result<Child> {
    let log = if std::env::var_os("TEST_LOG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    let mut cmd = Command::new(binary(bin));
    cmd.env("DATABASE_URL", &db.url)
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &redis.prefix)
        .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
        .env("PIPELINE__PROBES__HOST", "127.0.0.1")
        .env("PIPELINE__PROBES__SCRAPE_WORKER_PORT", port.to_string())
        .env("PIPELINE__PROBES__REQUEUE_DAEMON_PORT", port.to_string())
        .env("PIPELINE__API__BIND", format!("127.0.0.1:{port}"))
        .env("PIPELINE_API_KEY", KEY)
        .env("PIPELINE__SHUTDOWN__DRAIN_TIMEOUT_SECS", "10")
        .env("RUST_LOG", "warn")
        .env_remove("PIPELINE_CONFIG")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    Ok(cmd.spawn()?)
}

/// The text of `/metrics` once `/health` answers.
async fn first_scrape(port: u16) -> anyhow::Result<String> {
    let client = http_client();
    eventually(Duration::from_secs(60), "/health", || {
        let client = client.clone();
        async move {
            let up = client
                .get(format!("http://127.0.0.1:{port}/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            Ok(up.then_some(()))
        }
    })
    .await?;
    scrape(port).await
}

async fn scrape(port: u16) -> anyhow::Result<String> {
    Ok(http_client()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// The value of the sample written exactly `series` (name and labels as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// What every process shows from its first scrape: build info naming it, the `process_*`
/// series with plausible values, one prefix, and help for every series.
fn assert_common(text: &str, process: &str) {
    let info = format!(
        r#"pipeline_build_info{{version="{}",process="{process}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(text, &info), Some(1.0), "{info} missing:\n{text}");
    assert!(
        text.contains("# TYPE process_cpu_seconds_total counter"),
        "{text}"
    );
    assert!(value(text, "process_cpu_seconds_total").is_some_and(|s| s >= 0.0));
    assert!(
        value(text, "process_resident_memory_bytes").is_some_and(|b| b > 1e6),
        "{text}"
    );
    assert!(
        value(text, "process_open_fds").is_some_and(|n| n >= 3.0),
        "{text}"
    );
    assert!(
        value(text, "process_max_fds").is_some_and(|n| n >= 64.0),
        "{text}"
    );
    assert!(
        value(text, "process_threads").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let started = value(text, "process_start_time_seconds").expect("a start time");
    assert!(
        started > now - 120.0 && started <= now + 1.0,
        "started at {started}, now {now}"
    );
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        assert!(
            name.starts_with("pipeline_") || name.starts_with("process_"),
            "{name} has neither prefix"
        );
    }
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).expect("a metric name");
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no # HELP"
        );
    }
}

async fn stop(mut child: Child) -> anyhow::Result<()> {
    let pid = child.id().expect("running").to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().await?;
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    assert_eq!(status.code(), Some(0), "clean exit after SIGTERM");
    Ok(())
}

#[tokio::test]
async fn a_fresh_api_shows_its_counters_at_zero_and_times_requests_by_route() -> anyhow::Result<()>
{
    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let port = free_port();
    let child = spawn("pipeline-api", &db, &redis, port)?;
    let text = first_scrape(port).await?;
    assert_common(&text, "pipeline-api");
    for series in [
        "pipeline_submitted_sources_total",
        "pipeline_api_connections_refused_total",
        "pipeline_api_connections_evicted_total",
        r#"pipeline_dlq_redriven_total{family="scrape",by="api"}"#,
        r#"pipeline_dlq_redriven_total{family="extraction",by="console"}"#,
        r#"pipeline_queue_enqueued_total{family="scrape"}"#,
    ] {
        assert_eq!(
            value(&text, series),
            Some(0.0),
            "{series} is not 0:\n{text}"
        );
    }
    // Queue and DLQ sizes are the requeue daemon's to publish.
    for name in [
        "pipeline_queue_depth",
        "pipeline_dlq_items",
        "pipeline_family_paused",
    ] {
        assert!(!text.contains(name), "the API exports {name}");
    }

    let client = http_client();
    let base = format!("http://127.0.0.1:{port}");
    let job = uuid::Uuid::new_v4();
    for (path, want) in [
        ("/api/v1/dlq/stats".to_owned(), 200),
        (format!("/api/v1/jobs/{job}"), 404),
        ("/no/such/route".to_owned(), 404),
    ] {
        let resp = client
            .get(format!("{base}{path}"))
            .header("X-API-Key", KEY)
            .send()
            .await?;
        assert_eq!(resp.status().as_u16(), want, "{path}");
    }
    let text = scrape(port).await?;
    for (series, n) in [
        (
            r#"pipeline_http_requests_total{method="GET",route="/api/v1/dlq/stats",status="200"}"#,
            1.0,
        ),
        (
            r#"pipeline_http_requests_total{method="GET",route="/api/v1/jobs/{id}",status="404"}"#,
            1.0,
        ),
        (
            r#"pipeline_http_requests_total{method="GET",route="unmatched",status="404"}"#,
            1.0,
        ),
        (
            r#"pipeline_http_request_duration_seconds_bucket{method="GET",route="/api/v1/dlq/stats",status="200",le="+Inf"}"#,
            1.0,
        ),
        (
            r#"pipeline_http_request_duration_seconds_count{method="GET",route="/api/v1/jobs/{id}",status="404"}"#,
            1.0,
        ),
    ] {
        assert_eq!(value(&text, series), Some(n), "{series}:\n{text}");
    }
    assert!(text.contains("# TYPE pipeline_http_request_duration_seconds histogram"));
    // The template, never the path: no id and no unknown path becomes a label value.
    assert!(
        !text.contains(&job.to_string()),
        "a raw path is a label:\n{text}"
    );
    assert!(
        !text.contains("/no/such/route"),
        "a raw path is a label:\n{text}"
    );
    stop(child).await
}

#[tokio::test]
async fn a_fresh_requeue_daemon_shows_its_counters_at_zero_and_the_queue_gauges()
-> anyhow::Result<()> {
    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let services = Services::with_pools(
        settings_for(&db, &redis),
        db.pool.clone(),
        redis.pool.clone(),
    )?;
    for i in 0..3 {
        let id = uuid::Uuid::new_v4().to_string();
        services
            .queue(Family::Scrape)
            .enqueue(&id, &serde_json::json!({ "n": i }))
            .await?;
    }
    pipeline_ops::pause::pause(&services, Family::Extraction, pipeline_store::Actor::Cli).await?;

    let port = free_port();
    let child = spawn("requeue-daemon", &db, &redis, port)?;
    let text = first_scrape(port).await?;
    assert_common(&text, "requeue-daemon");
    for family in ["scrape", "extraction"] {
        for name in [
            "pipeline_requeue_redriven_total",
            "pipeline_requeue_parked_total",
            "pipeline_requeue_bookkeeping_failures_total",
        ] {
            let series = format!(r#"{name}{{family="{family}"}}"#);
            assert_eq!(value(&text, &series), Some(0.0), "{series}:\n{text}");
        }
    }
    assert_eq!(value(&text, "pipeline_scheduled_recrawls_total"), Some(0.0));

    // The gauges come with the first refresh, once the daemon found the schema.
    let text = eventually(Duration::from_secs(30), "the queue gauges", || async {
        let text = scrape(port).await?;
        Ok(text.contains("pipeline_queue_depth{").then_some(text))
    })
    .await?;
    for (series, n) in [
        (
            r#"pipeline_queue_depth{family="scrape",state="ready"}"#,
            3.0,
        ),
        (
            r#"pipeline_queue_depth{family="extraction",state="ready"}"#,
            0.0,
        ),
        (
            r#"pipeline_dlq_items{family="scrape",state="transient"}"#,
            0.0,
        ),
        (
            r#"pipeline_dlq_items{family="extraction",state="parked"}"#,
            0.0,
        ),
        (r#"pipeline_family_paused{family="extraction"}"#, 1.0),
        (r#"pipeline_family_paused{family="scrape"}"#, 0.0),
    ] {
        assert_eq!(value(&text, series), Some(n), "{series}:\n{text}");
    }
    // The parts only: a total beside them would double every sum over the states.
    assert!(!text.contains(r#"state="total""#), "{text}");
    stop(child).await
}

#[tokio::test]
async fn a_fresh_scrape_worker_shows_its_counters_at_zero_and_no_queue_gauges() -> anyhow::Result<()>
{
    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let port = free_port();
    let child = spawn("scrape-worker", &db, &redis, port)?;
    let text = first_scrape(port).await?;
    assert_common(&text, "scrape-worker");
    for series in [
        r#"pipeline_scrape_fetches_total{outcome="ok"}"#,
        r#"pipeline_scrape_fetches_total{outcome="http_5xx"}"#,
        r#"pipeline_crawl_links_total{outcome="admitted"}"#,
        r#"pipeline_messages_total{family="scrape",outcome="succeeded"}"#,
        r#"pipeline_messages_total{family="scrape",outcome="dead_lettered"}"#,
        r#"pipeline_queue_reserved_total{family="scrape"}"#,
        r#"pipeline_queue_enqueued_total{family="extraction"}"#,
        "pipeline_scrape_politeness_waits_total",
    ] {
        assert_eq!(value(&text, series), Some(0.0), "{series}:\n{text}");
    }
    // Its own family's deliveries only, and no copy of the cluster-wide gauges.
    assert!(!text.contains(r#"pipeline_messages_total{family="extraction""#));
    assert!(!text.contains("pipeline_queue_depth"), "{text}");
    stop(child).await
}
