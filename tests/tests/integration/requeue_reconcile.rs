//! The reconciler restores work Redis lost: sources stuck in flight that no queue, lease or
//! DLQ holds are enqueued again into the right family, with a `reconciled` event, exactly
//! once, while sources something still holds are left alone.

use std::time::Duration;

use dlq_core::ErrorKind;
use integration_tests::requeue::{World, urls};
use pipeline_ops::Family;
use pipeline_store::SourceStatus;
use pipeline_store::sources::{self, Transition};
use requeue_daemon::Reconciler;
use serde_json::json;

/// A world whose reconciler treats a source as stuck after 1 s, `batch` sources a sweep.
async fn reconciling(batch: usize) -> anyhow::Result<World> {
    World::new(|s| {
        s.requeue.reconcile_after_secs = 1;
        s.requeue.reconcile_batch = batch;
    })
    .await
}

#[tokio::test]
async fn lost_sources_are_enqueued_again_into_their_family_once() -> anyhow::Result<()> {
    let w = reconciling(1000).await?;
    let (job, ids) = w.submit(urls("https://example.com", 30)).await?;
    // Ten were fetched (waiting for extraction), two sit in the DLQ, the rest wait to be
    // scraped.
    for id in &ids[..10] {
        sources::transition(
            &w.db.pool,
            &w.services.progress,
            &Transition {
                source_id: *id,
                job_id: Some(job),
                to: SourceStatus::Scraped,
                event: "succeeded",
                stage: "scrape",
                actor: pipeline_store::Actor::ScrapeWorker,
                attempt: None,
                detail: json!({}),
                error: None,
            },
        )
        .await?;
    }
    // Redis loses everything (simulated under this test's prefix only).
    assert!(w.lose_redis_data().await? > 0);
    // Two sources go to the DLQ again and one is queued again by its producer: those are
    // held and must not be reconciled. The held ones are marked retrying/queued so they are
    // candidates by status.
    let scrape = w.services.queue(Family::Scrape);
    for id in &ids[10..12] {
        let msg = pipeline_ops::messages::SourceMessage {
            source_id: *id,
            job_id: Some(job),
            url: None,
            project_id: None,
            priority: Default::default(),
            render: None,
        };
        scrape.enqueue(&msg.id(), &msg.body()).await?;
    }
    w.dead_letter_all(ErrorKind::Transient, "HTTP 502").await?;
    for id in &ids[10..12] {
        sources::transition(
            &w.db.pool,
            &w.services.progress,
            &Transition {
                source_id: *id,
                job_id: Some(job),
                to: SourceStatus::Retrying,
                event: "failed",
                stage: "scrape",
                actor: pipeline_store::Actor::ScrapeWorker,
                attempt: Some(1),
                detail: json!({}),
                error: None,
            },
        )
        .await?;
    }
    let held = pipeline_ops::messages::SourceMessage {
        source_id: ids[12],
        job_id: Some(job),
        url: None,
        project_id: None,
        priority: Default::default(),
        render: None,
    };
    scrape.enqueue(&held.id(), &held.body()).await?;

    tokio::time::sleep(Duration::from_millis(1300)).await;
    let reconciler = Reconciler::new(w.services.clone(), w.config());
    let report = reconciler.sweep().await?;
    assert_eq!(report.examined, 30, "{report:?}");
    assert_eq!(report.held, 3, "{report:?}");
    assert_eq!(report.reconciled.len(), 27);

    let extraction = w.services.queue(Family::Extraction);
    assert_eq!(extraction.depth().await?.ready, 10);
    assert_eq!(scrape.depth().await?.ready, 17 + 1);
    for id in &ids[..10] {
        assert!(extraction.contains(&id.to_string()).await?);
    }
    for id in &ids[13..] {
        assert!(scrape.contains(&id.to_string()).await?);
    }
    let events = sources::events(&w.db.pool, ids[0]).await?;
    let last = events.last().unwrap();
    assert_eq!(last.kind, "reconciled");
    assert_eq!(last.actor.as_deref(), Some("requeue-daemon"));
    let detail = last.detail.as_ref().unwrap();
    assert_eq!(detail["family"], "extraction");
    assert!(
        detail["reason"]
            .as_str()
            .unwrap()
            .starts_with("no queue, lease or DLQ held it for")
    );
    for id in &ids[10..13] {
        assert!(!w.event_kinds(*id).await?.contains(&"reconciled".to_owned()));
    }
    // Statuses are untouched (the workers move them on).
    assert_eq!(w.status(ids[0]).await?, "scraped");
    assert_eq!(w.status(ids[20]).await?, "queued");

    // A second sweep right away finds nothing to do: they were touched and are held now.
    let again = reconciler.sweep().await?;
    assert!(again.reconciled.is_empty(), "{again:?}");
    // Even after the threshold, queued sources are held by their messages.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let later = reconciler.sweep().await?;
    assert!(later.reconciled.is_empty(), "{later:?}");
    assert_eq!(later.held, 30);
    let counts = w.event_counts("reconciled").await?;
    assert_eq!(counts.len(), 27);
    assert!(counts.iter().all(|(_, n)| *n == 1));
    Ok(())
}

#[tokio::test]
async fn two_reconcilers_enqueue_each_lost_source_once() -> anyhow::Result<()> {
    let w = reconciling(1000).await?;
    let (_, ids) = w.submit(urls("https://example.com", 200)).await?;
    w.lose_redis_data().await?;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let a = Reconciler::new(w.services.clone(), w.config());
    let b = Reconciler::new(w.services.clone(), w.config());
    let (ra, rb) = tokio::join!(a.sweep(), b.sweep());
    let (ra, rb) = (ra?, rb?);
    assert_eq!(ra.reconciled.len() + rb.reconciled.len(), 200);
    let counts = w.event_counts("reconciled").await?;
    assert_eq!(counts.len(), ids.len());
    assert!(counts.iter().all(|(_, n)| *n == 1), "{counts:?}");
    assert_eq!(w.services.queue(Family::Scrape).depth().await?.ready, 200);
    Ok(())
}

#[tokio::test]
async fn dead_lettered_sources_whose_dlq_entry_was_lost_are_enqueued_again() -> anyhow::Result<()> {
    let w = reconciling(1000).await?;
    let (_, ids) = w.submit(urls("https://example.com", 6)).await?;
    // Four fail for good or for now; the other two stay queued.
    let held = w.reserve_all().await?;
    w.dead_letter(&held[..2], ErrorKind::Transient, "HTTP 503")
        .await?;
    w.dead_letter(&held[2..4], ErrorKind::Permanent, "HTTP 404")
        .await?;
    let transient: Vec<_> = held[..2].iter().map(|d| d.id.clone()).collect();
    let permanent: Vec<_> = held[2..4].iter().map(|d| d.id.clone()).collect();
    // Redis loses the DLQ and the queue.
    w.lose_redis_data().await?;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let report = Reconciler::new(w.services.clone(), w.config())
        .sweep()
        .await?;
    let reconciled: Vec<String> = report
        .reconciled
        .iter()
        .map(|(_, id)| id.to_string())
        .collect();
    // The transient ones still had a redrive coming: they are enqueued again. The permanent
    // ones wait for a person and are terminal for their job: left alone.
    for id in &transient {
        assert!(reconciled.contains(id), "{id} not reconciled: {report:?}");
    }
    for id in &permanent {
        assert!(!reconciled.contains(id), "{id} reconciled: {report:?}");
    }
    assert_eq!(reconciled.len(), 4, "{report:?}");
    // The two still queued and the two transient ones; nothing else.
    let scrape = w.services.queue(Family::Scrape);
    assert_eq!(scrape.depth().await?.ready, 4);
    for id in &ids {
        let id = id.to_string();
        assert_eq!(
            scrape.contains(&id).await?,
            !permanent.contains(&id),
            "{id}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn sources_held_for_long_do_not_hide_lost_ones() -> anyhow::Result<()> {
    // A batch of 5: the first sweep sees only the 5 oldest, all held by the DLQ. Without a
    // cursor every sweep would see the same 5; with it the next sweeps reach the lost ones.
    let w = reconciling(5).await?;
    let (_, held_ids) = w.submit(urls("https://example.com/held", 5)).await?;
    w.dead_letter_all(ErrorKind::Transient, "HTTP 503").await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_, lost_ids) = w.submit(urls("https://example.com/lost", 3)).await?;
    // Only the queued messages are lost; the DLQ still holds the first five.
    let scrape = w.services.queue(Family::Scrape);
    let lost_msgs = w.reserve_all().await?;
    assert_eq!(lost_msgs.len(), 3);
    for d in &lost_msgs {
        assert_eq!(scrape.ack(d).await?, work_queue::AckOutcome::Acked);
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let reconciler = Reconciler::new(w.services.clone(), w.config());
    let first = reconciler.sweep().await?;
    assert_eq!(first.examined, 5, "{first:?}");
    assert_eq!(first.held, 5, "{first:?}");
    assert!(first.reconciled.is_empty(), "{first:?}");
    let second = reconciler.sweep().await?;
    let found: Vec<_> = second.reconciled.iter().map(|(_, id)| *id).collect();
    assert_eq!(found.len(), 3, "{second:?}");
    for id in &lost_ids {
        assert!(found.contains(id), "{id} not found: {second:?}");
    }
    for id in &held_ids {
        assert!(!found.contains(id));
    }
    Ok(())
}

#[tokio::test]
async fn jobs_whose_refresh_was_lost_are_refreshed() -> anyhow::Result<()> {
    let w = reconciling(100).await?;
    let (job, ids) = w.submit(urls("https://example.com", 2)).await?;
    // Both sources finish, but the process dies before refreshing the job: simulated by
    // writing the statuses directly.
    sqlx::query("UPDATE sources SET status = 'extracted' WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&w.db.pool)
        .await?;
    let status: String = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
        .bind(job)
        .fetch_one(&w.db.pool)
        .await?;
    assert_eq!(status, "queued");
    w.lose_redis_data().await?;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let report = Reconciler::new(w.services.clone(), w.config())
        .sweep()
        .await?;
    assert_eq!(report.jobs_refreshed, 1, "{report:?}");
    let (status, extracted): (String, i64) =
        sqlx::query_as("SELECT status, (result ->> 'extracted')::bigint FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_one(&w.db.pool)
            .await?;
    assert_eq!(status, "completed");
    assert_eq!(extracted, 2);
    Ok(())
}

/// With a family spread over three shards, a source whose message or DLQ item sits in a
/// shard other than the first is held, not lost: the reconciler asks every shard in use.
#[tokio::test]
async fn sources_held_in_any_shard_are_not_reconciled() -> anyhow::Result<()> {
    let w = World::new(|s| {
        s.requeue.reconcile_after_secs = 1;
        s.requeue.reconcile_batch = 1000;
        s.queue.shards = 3;
    })
    .await?;
    let (_, queued) = w.submit(urls("https://example.com/queued", 12)).await?;
    let off_first = queued
        .iter()
        .filter(|id| work_queue::shard_of(&id.to_string(), 3) != 0)
        .count();
    assert!(off_first > 0, "some messages live past the first shard");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let reconciler = Reconciler::new(w.services.clone(), w.config());
    let report = reconciler.sweep().await?;
    assert_eq!(report.examined, 12, "{report:?}");
    assert_eq!(report.held, 12, "{report:?}");
    assert!(report.reconciled.is_empty(), "{report:?}");
    // In the DLQ (each item in its message's shard): still held.
    w.dead_letter_all(ErrorKind::Transient, "HTTP 503").await?;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let report = reconciler.sweep().await?;
    assert_eq!(report.held, 12, "{report:?}");
    assert!(report.reconciled.is_empty(), "{report:?}");
    Ok(())
}
