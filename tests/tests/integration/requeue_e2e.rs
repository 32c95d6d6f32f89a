//! The requeue daemon end to end, with the real scrape and extraction workers and a real
//! HTTP server on 127.0.0.1: a page that fails twice is completed through two redrives; a
//! page that always fails is parked, and completes after a person retries it once fixed.

use std::time::Duration;

use integration_tests::pages::PageServer;
use integration_tests::requeue::{Pipeline, World, e2e_settings, eventually};
use pipeline_ops::Family;
use pipeline_ops::dlq_ops;
use pipeline_store::jobs;

#[tokio::test]
async fn a_page_failing_twice_is_extracted_through_two_redrives() -> anyhow::Result<()> {
    let w = World::new(|s| {
        e2e_settings(s);
        // Every failure goes straight to the DLQ, so each retry is the daemon's redrive.
        s.queue.max_attempts = 1;
    })
    .await?;
    let pages = PageServer::start().await;
    pages.set_failures("/flaky/twice", 2);
    let (job, ids) = w.submit(vec![pages.url("/flaky/twice")]).await?;
    let id = ids[0];
    let pipeline = Pipeline::start(&w)?;
    eventually(Duration::from_secs(60), "the source extracted", || async {
        Ok((w.status(id).await? == "extracted").then_some(()))
    })
    .await?;
    pipeline.stop().await?;

    assert_eq!(pages.hits("/flaky/twice"), 3);
    assert_eq!(w.services.dlq(Family::Scrape).stats().await?.total, 0);
    let kinds = w.event_kinds(id).await?;
    assert_eq!(
        kinds.iter().filter(|k| *k == "dead_lettered").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "redriven").count(),
        2,
        "{kinds:?}"
    );
    // Each redrive follows a failure.
    let first_dl = kinds.iter().position(|k| k == "dead_lettered").unwrap();
    let first_rd = kinds.iter().position(|k| k == "redriven").unwrap();
    assert!(first_dl < first_rd, "{kinds:?}");
    assert_eq!(jobs::get(&w.db.pool, job).await?.status, "completed");
    Ok(())
}

#[tokio::test]
async fn a_page_that_always_fails_is_parked_and_a_manual_retry_completes_it() -> anyhow::Result<()>
{
    let w = World::new(|s| {
        e2e_settings(s);
        s.queue.max_attempts = 1;
        s.requeue.max_redrives = 2;
    })
    .await?;
    let pages = PageServer::start().await;
    pages.set_failures("/flaky/broken", 1_000);
    let (job, ids) = w.submit(vec![pages.url("/flaky/broken")]).await?;
    let id = ids[0];
    let pipeline = Pipeline::start(&w)?;
    eventually(Duration::from_secs(60), "the source parked", || async {
        Ok((w.status(id).await? == "parked").then_some(()))
    })
    .await?;
    // One first attempt plus two redrives, then parked: no more requests, ever.
    assert_eq!(pages.hits("/flaky/broken"), 3);
    let dlq = w.services.dlq(Family::Scrape);
    let stats = dlq.stats().await?;
    assert_eq!((stats.total, stats.parked), (1, 1));
    let kinds = w.event_kinds(id).await?;
    assert_eq!(
        kinds.iter().filter(|k| *k == "redriven").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(kinds.last().map(String::as_str), Some("parked"));
    // The job's status follows the source's in the same sweep; under load a moment later.
    eventually(Duration::from_secs(10), "the job failed", || async {
        Ok((jobs::get(&w.db.pool, job).await?.status == "failed").then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pages.hits("/flaky/broken"), 3, "a parked item was redriven");

    // The page is fixed; a person retries the item.
    pages.set_failures("/flaky/broken", 0);
    assert!(
        dlq_ops::retry(
            &w.services,
            Family::Scrape,
            &id.to_string(),
            pipeline_store::Actor::Api
        )
        .await?
        .is_some()
    );
    eventually(Duration::from_secs(60), "the job completed", || async {
        Ok((jobs::get(&w.db.pool, job).await?.status == "completed").then_some(()))
    })
    .await?;
    pipeline.stop().await?;
    assert_eq!(w.status(id).await?, "extracted");
    assert_eq!(dlq.stats().await?.total, 0);
    Ok(())
}
