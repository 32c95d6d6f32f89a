//! Two `requeue-daemon` processes over one DLQ of 1,000 transient items: every item is
//! redriven exactly once (one `redriven` event per source, 1,000 messages on the scrape
//! queue, an empty DLQ, and the two daemons' counters add up to 1,000), and both stop
//! cleanly on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use dlq_core::ErrorKind;
use integration_tests::requeue::{World, eventually, free_port, urls};
use integration_tests::{binary, http_client, redis_url};
use pipeline_ops::Family;
use tokio::process::{Child, Command};

const ITEMS: usize = 1000;

/// A daemon over the test's database and prefix. Items become due one second after they
/// fail: a worker records `dead_lettered` in Postgres right after the DLQ push, and a
/// redrive (with its `queued` bookkeeping) must not overtake that write, as the base delay
/// (30 s by default) guarantees in service; with no delay, a fast daemon could record
/// `queued` before this test's `dead_lettered` lands on top of it.
fn spawn_daemon(w: &World, port: u16) -> anyhow::Result<Child> {
    let log = if std::env::var_os("TEST_LOG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    Ok(Command::new(binary("requeue-daemon"))
        .env("DATABASE_URL", &w.db.url)
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &w.redis.prefix)
        .env("PIPELINE__PROBES__HOST", "127.0.0.1")
        .env("PIPELINE__PROBES__REQUEUE_DAEMON_PORT", port.to_string())
        .env("PIPELINE__REQUEUE__REDRIVE_BASE_DELAY_SECS", "1")
        .env("PIPELINE__REQUEUE__RATE_PER_SEC", "0")
        .env("PIPELINE__REQUEUE__BATCH_SIZE", "20")
        .env("PIPELINE__REQUEUE__INTERVAL_MS", "20")
        .env("PIPELINE__SHUTDOWN__DRAIN_TIMEOUT_SECS", "10")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?)
}

/// The daemon's `pipeline_requeue_redriven_total` for the scrape family, 0 before its
/// first redrive.
async fn redriven_metric(port: u16) -> anyhow::Result<u64> {
    let text = http_client()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("pipeline_requeue_redriven_total{") && l.contains("family=\"scrape\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

#[tokio::test]
async fn two_daemons_redrive_each_item_exactly_once() -> anyhow::Result<()> {
    let w = World::new(|_| {}).await?;
    let (_, ids) = w.submit(urls("https://example.com", ITEMS)).await?;
    // Hold every message first, start both daemons, and only then fail the messages, so
    // the two compete for items arriving over time rather than one finding them all.
    let held = w.reserve_all().await?;
    assert_eq!(held.len(), ITEMS);
    let ports = [free_port(), free_port()];
    let mut daemons = vec![spawn_daemon(&w, ports[0])?, spawn_daemon(&w, ports[1])?];
    let client = http_client();
    for port in ports {
        eventually(Duration::from_secs(60), "daemon health", || {
            let client = client.clone();
            async move {
                let ok = client
                    .get(format!("http://127.0.0.1:{port}/health"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                Ok(ok.then_some(()))
            }
        })
        .await?;
    }
    w.dead_letter(&held, ErrorKind::Transient, "HTTP 500")
        .await?;

    let dlq = w.services.dlq(Family::Scrape);
    eventually(
        Duration::from_secs(60),
        "an empty DLQ and 1,000 redriven events",
        || async {
            let events: usize = w.event_counts("redriven").await?.len();
            Ok((dlq.stats().await?.total == 0 && events == ITEMS).then_some(()))
        },
    )
    .await?;
    // Let any straggling sweep finish before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let counts = w.event_counts("redriven").await?;
    assert_eq!(counts.len(), ITEMS);
    assert!(
        counts.iter().all(|(_, n)| *n == 1),
        "an item was redriven twice"
    );
    assert_eq!(
        w.services.queue(Family::Scrape).depth().await?.ready,
        ITEMS as u64
    );
    for id in ids.iter().step_by(97) {
        assert_eq!(w.status(*id).await?, "queued");
    }
    let per_daemon = [
        redriven_metric(ports[0]).await?,
        redriven_metric(ports[1]).await?,
    ];
    assert_eq!(
        per_daemon.iter().sum::<u64>(),
        ITEMS as u64,
        "{per_daemon:?}"
    );

    for d in &daemons {
        let pid = d.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()?;
        assert!(status.success());
    }
    for d in &mut daemons {
        let exit = tokio::time::timeout(Duration::from_secs(30), d.wait()).await??;
        assert!(exit.success(), "daemon exited with {exit}");
    }
    Ok(())
}
