//! The reconciler restores work Redis lost: sources stuck in flight that no queue, lease or
//! DLQ holds are enqueued again into the right family, with a `reconciled` event, exactly
//! once, while sources something still holds are left alone.

// Row tuples from sqlx read clearer inline than behind type aliases.
#![allow(clippy::type_complexity)]

use std::time::Duration;

use dlq_core::ErrorKind;
use integration_tests::requeue::{World, urls};
use pipeline_ops::messages::{EXTRACTION, SCRAPE};
use pipeline_store::SourceStatus;
use pipeline_store::sources::{self, Transition};
use requeue_daemon::Reconciler;
use serde_json::json;

#[tokio::test]
async fn lost_sources_are_enqueued_again_into_their_family_once() -> anyhow::Result<()> {
    let w = World::new(|s| {
        s.requeue.reconcile_after_secs = 1;
        s.requeue.reconcile_batch = 1000;
    })
    .await?;
    let (job, ids) = w.submit(urls("https://example.com", 30)).await?;
    // Ten were fetched (waiting for extraction), two sit in the DLQ, the rest wait to be
    // scraped.
    for id in &ids[..10] {
        sources::transition(
            &w.db.pool,
            &Transition {
                source_id: *id,
                job_id: Some(job),
                to: SourceStatus::Scraped,
                event: "succeeded",
                stage: "scrape",
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
    let scrape = w.services.queue(SCRAPE).unwrap();
    for id in &ids[10..12] {
        let msg = pipeline_ops::messages::SourceMessage {
            source_id: *id,
            job_id: Some(job),
        };
        scrape.enqueue(&msg.id(), &msg.body()).await?;
    }
    w.dead_letter_all(ErrorKind::Transient, "HTTP 502").await?;
    for id in &ids[10..12] {
        sources::transition(
            &w.db.pool,
            &Transition {
                source_id: *id,
                job_id: Some(job),
                to: SourceStatus::Retrying,
                event: "failed",
                stage: "scrape",
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
    };
    scrape.enqueue(&held.id(), &held.body()).await?;

    tokio::time::sleep(Duration::from_millis(1300)).await;
    let reconciler = Reconciler::new(w.services.clone(), w.config());
    let report = reconciler.sweep().await?;
    assert_eq!(report.examined, 30, "{report:?}");
    assert_eq!(report.held, 3, "{report:?}");
    assert_eq!(report.reconciled.len(), 27);

    let extraction = w.services.queue(EXTRACTION).unwrap();
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
    assert_eq!(last.stage.as_deref(), Some("requeue"));
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
    let w = World::new(|s| {
        s.requeue.reconcile_after_secs = 1;
        s.requeue.reconcile_batch = 1000;
    })
    .await?;
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
    assert_eq!(w.services.queue(SCRAPE).unwrap().depth().await?.ready, 200);
    Ok(())
}
