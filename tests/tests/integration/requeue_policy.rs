//! The requeue daemon's redrive policy against real Postgres and Redis: transient items are
//! redriven once their backoff has elapsed, permanent ones wait, items over the limit are
//! parked (and a person's retry still completes them), and the rate limit holds.

use std::time::Duration;

use dlq_core::ErrorKind;
use integration_tests::requeue::{World, urls};
use pipeline_ops::Family;
use pipeline_ops::dlq_ops;
use pipeline_store::SourceStatus;
use pipeline_store::jobs;
use pipeline_store::sources::{self, Transition};
use requeue_daemon::Redriver;
use serde_json::json;

#[tokio::test]
async fn transient_items_are_redriven_once_and_recorded() -> anyhow::Result<()> {
    let w = World::new(|_| {}).await?;
    let (job, ids) = w.submit(urls("https://example.com", 20)).await?;
    assert_eq!(
        w.dead_letter_all(ErrorKind::Transient, "HTTP 500").await?,
        20
    );

    let report = Redriver::new(w.services.clone(), w.config())
        .sweep()
        .await?;
    assert_eq!(report.redriven, 20, "{report:?}");

    let dlq = w.services.dlq(Family::Scrape);
    assert_eq!(dlq.stats().await?.total, 0);
    let queue = w.services.queue(Family::Scrape);
    assert_eq!(queue.depth().await?.ready, 20);
    for id in &ids {
        assert_eq!(w.status(*id).await?, "queued");
        let events = sources::events(&w.db.pool, *id).await?;
        let redriven: Vec<_> = events.iter().filter(|e| e.kind == "redriven").collect();
        assert_eq!(redriven.len(), 1);
        assert_eq!(redriven[0].actor.as_deref(), Some("requeue-daemon"));
        assert_eq!(redriven[0].job_id, Some(job));
        assert_eq!(redriven[0].detail.as_ref().unwrap()["retry_count"], 1);
        assert!(queue.contains(&id.to_string()).await?);
    }
    // A second sweep finds nothing.
    let again = Redriver::new(w.services.clone(), w.config())
        .sweep()
        .await?;
    assert_eq!(again.total(), 0);
    Ok(())
}

#[tokio::test]
async fn permanent_items_wait_for_a_person_and_backoff_defers() -> anyhow::Result<()> {
    let w = World::new(|s| s.requeue.redrive_base_delay_secs = 3600).await?;
    w.submit(urls("https://example.com", 3)).await?;
    w.dead_letter_all(ErrorKind::Permanent, "HTTP 404").await?;
    let (_, later) = w.submit(urls("https://example.org", 2)).await?;
    w.dead_letter_all(ErrorKind::Transient, "timeout").await?;

    let report = Redriver::new(w.services.clone(), w.config())
        .sweep()
        .await?;
    // The two transient items are not due for an hour: deferred, not redriven.
    assert_eq!(report.redriven, 0, "{report:?}");
    assert_eq!(report.parked, 0);
    let stats = w.services.dlq(Family::Scrape).stats().await?;
    assert_eq!((stats.total, stats.permanent, stats.transient), (5, 3, 2));
    for id in later {
        assert_eq!(w.status(id).await?, "dead_lettered");
    }
    Ok(())
}

/// Fails every message that is on the scrape queue again (a page that keeps failing).
async fn fail_again(w: &World) -> anyhow::Result<usize> {
    w.dead_letter_all(ErrorKind::Transient, "HTTP 500").await
}

#[tokio::test]
async fn an_item_over_the_limit_is_parked_and_a_manual_retry_completes_it() -> anyhow::Result<()> {
    let w = World::new(|s| s.requeue.max_redrives = 2).await?;
    let (job, ids) = w.submit(urls("https://example.com", 1)).await?;
    let id = ids[0];
    let redriver = Redriver::new(w.services.clone(), w.config());
    fail_again(&w).await?;
    for round in 1..=2 {
        let r = redriver.sweep().await?;
        assert_eq!((r.redriven, r.parked), (1, 0), "round {round}: {r:?}");
        assert_eq!(fail_again(&w).await?, 1);
    }
    let r = redriver.sweep().await?;
    assert_eq!((r.redriven, r.parked), (0, 1), "{r:?}");

    let dlq = w.services.dlq(Family::Scrape);
    let stats = dlq.stats().await?;
    assert_eq!((stats.total, stats.parked), (1, 1));
    assert!(dlq.get(&id.to_string()).await?.unwrap().parked);
    assert_eq!(w.status(id).await?, "parked");
    let kinds = w.event_kinds(id).await?;
    assert_eq!(kinds.iter().filter(|k| *k == "redriven").count(), 2);
    assert_eq!(kinds.last().map(String::as_str), Some("parked"));
    assert_eq!(jobs::get(&w.db.pool, job).await?.status, "failed");

    // Parked items are never redriven automatically.
    assert_eq!(redriver.sweep().await?.total(), 0);
    assert_eq!(dlq.stats().await?.parked, 1);

    // A person retries it after the page is fixed; the page then succeeds.
    let out = dlq_ops::retry(
        &w.services,
        Family::Scrape,
        &id.to_string(),
        pipeline_store::Actor::Api,
    )
    .await?;
    assert!(out.is_some());
    assert_eq!(w.status(id).await?, "queued");
    let queue = w.services.queue(Family::Scrape);
    let d = queue.reserve(1).await?.pop().expect("redriven message");
    assert_eq!(d.redrives, 3);
    for to in [SourceStatus::Scraped, SourceStatus::Extracted] {
        sources::transition(
            &w.db.pool,
            &w.services.progress,
            &Transition {
                source_id: id,
                job_id: Some(job),
                to,
                event: "succeeded",
                stage: "test",
                actor: pipeline_store::Actor::ScrapeWorker,
                attempt: None,
                detail: json!({}),
                error: None,
            },
        )
        .await?;
    }
    assert_eq!(queue.ack(&d).await?, work_queue::AckOutcome::Acked);
    assert_eq!(jobs::get(&w.db.pool, job).await?.status, "completed");
    assert_eq!(dlq.stats().await?.total, 0);
    Ok(())
}

#[tokio::test]
async fn the_rate_limit_bounds_redrives_per_second() -> anyhow::Result<()> {
    let w = World::new(|s| s.requeue.rate_per_sec = 5).await?;
    w.submit(urls("https://example.com", 12)).await?;
    w.dead_letter_all(ErrorKind::Transient, "HTTP 503").await?;
    let redriver = Redriver::new(w.services.clone(), w.config());
    // 12 items are due; a fresh limiter lets exactly 5 through this second, and says it
    // held the rest back (without a limit all 12 would go in one sweep).
    let first = redriver.sweep().await?;
    assert_eq!(first.redriven, 5, "{first:?}");
    assert!(first.rate_limited, "{first:?}");
    // Running the loop drains the rest at no more than the rate (a few seconds).
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn({
        let r = redriver.clone();
        let c = cancel.clone();
        async move { r.run(c).await }
    });
    let started = std::time::Instant::now();
    let dlq = w.services.dlq(Family::Scrape);
    while dlq.stats().await?.total > 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "not drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // 12 items at 5/s need at least one full second after the first window.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    cancel.cancel();
    task.await?;
    assert_eq!(w.services.queue(Family::Scrape).depth().await?.ready, 12);
    Ok(())
}
