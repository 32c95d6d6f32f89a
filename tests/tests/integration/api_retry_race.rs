//! The original service's "retry" deleted the item and re-queued nothing, and two concurrent
//! retries both got it. Here: 20 concurrent retries of one item give exactly one 200 and
//! nineteen 404s, and the scrape worker then processes the item exactly once, ending with the
//! source `scraped` in Postgres and one request to the page.

use std::time::Duration;

use dlq_core::ErrorKind;
use integration_tests::api::{ApiEnv, json_of, wait_for};
use integration_tests::pages::PageServer;
use pipeline_runner::run_next;
use pipeline_store::sources;
use reqwest::Method;

#[tokio::test]
async fn concurrent_retries_redrive_once_and_the_item_is_processed_once() -> anyhow::Result<()> {
    let env = ApiEnv::start(|s| {
        s.scrape.allow_private_hosts = vec!["127.0.0.1".into()];
        s.scrape.per_host_min_delay_ms = 0;
        s.queue.visibility_timeout_secs = 30;
    })
    .await?;
    let pages = PageServer::start().await;
    let url = pages.url("/ok/race");
    let (job_id, source_id) = env.dead_lettered_source(&url, ErrorKind::Transient).await?;

    let path = format!("/api/v1/dlq/scrape/{source_id}/retry");
    let answers = futures::future::join_all((0..20).map(|_| {
        let req = env.req(Method::POST, &path);
        async move { json_of(req.send().await?).await }
    }))
    .await;
    let mut ok = Vec::new();
    let mut not_found = 0;
    for answer in answers {
        let (status, body) = answer?;
        match status {
            200 => ok.push(body),
            404 => {
                assert!(body["detail"].is_string(), "{body}");
                not_found += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok.len(), 1, "exactly one retry wins: {ok:?}");
    assert_eq!(not_found, 19);
    assert_eq!(ok[0]["id"], source_id.to_string());
    assert_eq!(ok[0]["enqueued"], true);

    let scrape = env.services.queue(pipeline_ops::Family::Scrape);
    let depth = scrape.depth().await?;
    assert_eq!((depth.ready, depth.leased, depth.delayed), (1, 0, 0));
    let trail = sources::events(&env.services.db, source_id).await?;
    assert_eq!(trail.iter().filter(|e| e.kind == "redriven").count(), 1);

    // The real scrape worker drains the queue.
    let handler = scrape_worker::handler_for(&env.services)?;
    let status = wait_for(Duration::from_secs(60), || async {
        run_next(scrape, &handler, 16).await?;
        let s = sources::get(&env.services.db, source_id).await?;
        Ok(
            matches!(s.status.as_str(), "scraped" | "dead_lettered" | "retrying")
                .then_some(s.status),
        )
    })
    .await?;
    assert_eq!(status, "scraped");
    // Nothing left to process, one fetch, one extraction message.
    assert_eq!(run_next(scrape, &handler, 16).await?, 0);
    let depth = scrape.depth().await?;
    assert_eq!((depth.ready, depth.leased, depth.delayed), (0, 0, 0));
    assert_eq!(pages.hits("/ok/race"), 1);
    let extraction = env.services.queue(pipeline_ops::Family::Extraction);
    assert!(extraction.contains(&source_id.to_string()).await?);
    assert_eq!(extraction.depth().await?.ready, 1);

    let source = sources::get(&env.services.db, source_id).await?;
    assert_eq!(source.created_by_job_id, Some(job_id));
    assert_eq!(source.http_status, Some(200));
    let (_, stats) = env.get("/api/v1/dlq/stats").await?;
    assert_eq!(stats["scrape"], 0);
    Ok(())
}
