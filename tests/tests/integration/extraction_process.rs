//! The `extraction-worker` binary: it consumes the queue, serves its probes and metrics,
//! stops on SIGTERM with exit 0, and refuses a bad configuration with exit 2.
//! Needs the binaries built first (`cargo build --workspace --bins`).

use std::process::Stdio;
use std::time::{Duration, Instant};

use integration_tests::extraction::{Env, article_page};
use integration_tests::{binary, http_client, redis_url};

async fn free_port() -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?.port())
}

#[tokio::test]
async fn the_binary_extracts_serves_probes_and_stops_on_sigterm() -> anyhow::Result<()> {
    let env = Env::new(|_| {}).await?;
    let (source_id, job_id) = env
        .scraped_source("https://blog.example/process", &article_page(), "text/html")
        .await?;
    env.enqueue(source_id, job_id).await?;
    let port = free_port().await?;
    let mut child = tokio::process::Command::new(binary("extraction-worker"))
        .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
        .env("DATABASE_URL", &env.db.url)
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &env.redis.prefix)
        .env("PIPELINE__PROBES__HOST", "127.0.0.1")
        .env("PIPELINE__PROBES__EXTRACTION_WORKER_PORT", port.to_string())
        .env("PIPELINE__QUEUE__BLOCK_TIMEOUT_MS", "200")
        .env("PIPELINE__SHUTDOWN__DRAIN_TIMEOUT_SECS", "10")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;

    let deadline = Instant::now() + Duration::from_secs(60);
    while env.status(source_id).await? != "extracted" {
        anyhow::ensure!(Instant::now() < deadline, "not extracted within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let http = http_client();
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(
        http.get(format!("{base}/health")).send().await?.status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/ready")).send().await?.status(),
        200
    );
    // The source reads `extracted` once the handler stored it; the runner records the
    // delivery's duration after the ack that follows, so wait (bounded) for that too.
    let metrics = loop {
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        if metrics.contains("pipeline_message_duration_seconds_bucket{") {
            break metrics;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no delivery duration recorded within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for name in [
        "pipeline_extractions_per_source",
        "pipeline_embedding_batch_size",
        "pipeline_embedding_seconds",
        "pipeline_entities_status_total",
        "pipeline_in_flight",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    // Durations are histograms (they add up across replicas), and every series says what
    // it is.
    assert!(
        metrics.contains("# TYPE pipeline_message_duration_seconds histogram"),
        "{metrics}"
    );
    assert!(metrics.contains("pipeline_message_duration_seconds_bucket{"));
    // The queue's depth is the requeue daemon's to publish (once for the cluster), not a
    // worker's.
    assert!(!metrics.contains("pipeline_queue_depth"), "{metrics}");
    for line in metrics.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).expect("a metric name");
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{name} has no # HELP"
        );
    }

    let pid = child.id().expect("running").to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await?;
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    assert_eq!(status.code(), Some(0), "clean exit after SIGTERM");
    Ok(())
}

#[tokio::test]
async fn a_bad_configuration_exits_2_naming_the_key() -> anyhow::Result<()> {
    let out = tokio::process::Command::new(binary("extraction-worker"))
        .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
        .env("PIPELINE__EXTRACTION__CHUNK_SIZE", "10")
        .output()
        .await?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("extraction.chunk_size"), "{stderr}");
    Ok(())
}
