//! Redis loses its data in the middle of a run of 500 sources, and nothing is lost: the
//! reconciler finds the sources that no queue, lease or DLQ holds any more and enqueues
//! them again; every source ends `extracted`, the job `completed`, and no row is duplicated.
//!
//! The data loss is simulated by deleting every key under this test's own prefix
//! (SCAN MATCH prefix* + DEL): a real FLUSHALL would wipe the keys of every other test
//! running in parallel on the shared Redis.

use std::time::Duration;

use integration_tests::pages::PageServer;
use integration_tests::requeue::{Pipeline, World, e2e_settings, eventually};
use pipeline_store::jobs;

const SOURCES: usize = 500;

#[tokio::test]
async fn losing_redis_mid_run_loses_no_source_and_duplicates_no_row() -> anyhow::Result<()> {
    let w = World::new(|s| {
        e2e_settings(s);
        s.requeue.reconcile_after_secs = 3;
        s.requeue.reconcile_interval_secs = 1;
        s.requeue.reconcile_batch = 200;
    })
    .await?;
    let pages = PageServer::start().await;
    let urls: Vec<String> = (0..SOURCES)
        .map(|i| pages.url(&format!("/ok/{i}")))
        .collect();
    let (job, _) = w.submit(urls).await?;
    let pipeline = Pipeline::start(&w)?;

    let count = |status: &'static str| {
        let pool = w.db.pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sources WHERE status = $1")
                .bind(status)
                .fetch_one(&pool)
                .await?;
            anyhow::Ok(n)
        }
    };
    // Lose Redis once some work is done and plenty is still queued or in flight.
    eventually(
        Duration::from_secs(120),
        "some sources extracted",
        || async { Ok((count("extracted").await? >= 50).then_some(())) },
    )
    .await?;
    let lost = w.lose_redis_data().await?;
    let extracted_then = count("extracted").await?;
    assert!(lost > 0);
    assert!(
        extracted_then < SOURCES as i64,
        "the run finished before the loss"
    );

    eventually(
        Duration::from_secs(180),
        "every source extracted",
        || async { Ok((count("extracted").await? == SOURCES as i64).then_some(())) },
    )
    .await?;
    pipeline.stop().await?;

    assert_eq!(jobs::get(&w.db.pool, job).await?.status, "completed");
    let sources: i64 = sqlx::query_scalar("SELECT count(*) FROM sources")
        .fetch_one(&w.db.pool)
        .await?;
    assert_eq!(sources, SOURCES as i64);
    let (rows, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT (source_id, extraction_type, chunk_index)) FROM extractions",
    )
    .fetch_one(&w.db.pool)
    .await?;
    assert!(rows >= SOURCES as i64);
    assert_eq!(rows, distinct, "duplicated extraction rows");
    let reconciled = w.event_counts("reconciled").await?;
    assert!(!reconciled.is_empty(), "nothing was reconciled");
    Ok(())
}
