//! Job progress under concurrency: source transitions commit without locking the job, and
//! the job is refreshed afterwards, coalesced per job. However the transitions interleave,
//! the job ends with the right counts and status once they have all returned.

use futures::StreamExt;
use integration_tests::requeue::{World, urls};
use pipeline_store::SourceStatus;
use pipeline_store::sources::{self, Transition};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transitions_leave_exact_job_counts() -> anyhow::Result<()> {
    let w = World::new(|s| s.database.max_connections = 16).await?;
    let (job, ids) = w.submit(urls("https://example.com", 300)).await?;
    // Each source goes scraped then extracted (or parked for every tenth), 48 at a time.
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(ids.iter().enumerate())
        .map(|(i, id)| {
            let pool = w.db.pool.clone();
            let progress = w.services.progress.clone();
            async move {
                let last = if i % 10 == 0 {
                    SourceStatus::Parked
                } else {
                    SourceStatus::Extracted
                };
                for to in [SourceStatus::Scraped, last] {
                    let moved = sources::transition(
                        &pool,
                        &progress,
                        &Transition {
                            source_id: *id,
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
                    anyhow::ensure!(moved, "source {id} missing");
                }
                Ok(())
            }
        })
        .buffer_unordered(48)
        .collect()
        .await;
    for r in results {
        r?;
    }
    let (status, result): (String, serde_json::Value) =
        sqlx::query_as("SELECT status, result FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_one(&w.db.pool)
            .await?;
    assert_eq!(status, "completed_with_errors", "{result}");
    assert_eq!(result["total"], 300);
    assert_eq!(result["extracted"], 270);
    assert_eq!(result["parked"], 30);
    assert_eq!(result["terminal"], 300);
    assert_eq!(result["scraped"], 0);
    assert_eq!(result["queued"], 0);
    // Every transition wrote its event.
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM job_events WHERE job_id = $1 AND stage = 'test'")
            .bind(job)
            .fetch_one(&w.db.pool)
            .await?;
    assert_eq!(events, 600);
    Ok(())
}

/// Two pipelines in one process (two `Services`) keep their own progress refreshes: one
/// settling does not start or wait for the other's, and each one's refresh still lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_services_settles_only_its_own_refreshes() -> anyhow::Result<()> {
    let w = World::new(|_| {}).await?;
    let (job, ids) = w.submit(urls("https://example.com", 2)).await?;
    let other = pipeline_store::progress::Progress::new();
    assert_eq!(w.services.progress.pending(), 0);

    // A page stored as scraped: its job is refreshed in the background, on `other`. The
    // job's row is held locked meanwhile, so that refresh cannot finish.
    sqlx::query("UPDATE sources SET status = 'scraped' WHERE id = $1")
        .bind(ids[0])
        .execute(&w.db.pool)
        .await?;
    let mut lock = w.db.pool.begin().await?;
    sqlx::query("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE")
        .bind(job)
        .execute(&mut *lock)
        .await?;
    other.refresh_in_background(&w.db.pool, vec![job]);
    assert_eq!(other.pending(), 1);

    // The process's own handle has nothing pending: it settles at once. Were the state
    // shared, it would wait for the refresh the lock holds.
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        w.services.progress.settled(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("settling one handle waited for another's refresh"))?;
    assert_eq!(w.services.progress.pending(), 0);
    assert_eq!(other.pending(), 1);

    lock.commit().await?;
    other.settled().await;
    assert_eq!(other.pending(), 0);
    let result: serde_json::Value = sqlx::query_scalar("SELECT result FROM jobs WHERE id = $1")
        .bind(job)
        .fetch_one(&w.db.pool)
        .await?;
    assert_eq!(result["scraped"], 1, "{result}");
    Ok(())
}
