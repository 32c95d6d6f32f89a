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
            async move {
                let last = if i % 10 == 0 {
                    SourceStatus::Parked
                } else {
                    SourceStatus::Extracted
                };
                for to in [SourceStatus::Scraped, last] {
                    let moved = sources::transition(
                        &pool,
                        &Transition {
                            source_id: *id,
                            job_id: Some(job),
                            to,
                            event: "succeeded",
                            stage: "test",
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
