//! The DLQ endpoints of the admin API over real HTTP, Postgres and Redis: stats, lists with
//! bounded limits and cursors, retry (really back in the work queue, recorded in Postgres),
//! retry-all, delete, and 404s for unknown ids and kinds.

use dlq_core::{DlqItem, ErrorKind};
use integration_tests::api::ApiEnv;
use pipeline_store::sources;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

async fn push_extraction_item(env: &ApiEnv) -> anyhow::Result<String> {
    let id = Uuid::now_v7().to_string();
    let item = DlqItem::new(
        id.clone(),
        "extraction",
        "embedding service down",
        ErrorKind::Transient,
        json!({"source_id": id}),
    );
    env.services
        .dlq(pipeline_ops::Family::Extraction)
        .push(&item)
        .await?;
    Ok(id)
}

#[tokio::test]
async fn stats_and_lists_show_the_items() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (job_id, source_id) = env
        .dead_lettered_source("https://example.com/a", ErrorKind::Permanent)
        .await?;
    let ext_id = push_extraction_item(&env).await?;

    let (status, stats) = env.get("/api/v1/dlq/stats").await?;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["scrape"], 1);
    assert_eq!(stats["extraction"], 1);
    assert_eq!(stats["scrape_parked"], 0);
    assert_eq!(stats["extraction_transient"], 1);
    assert_eq!(stats["scrape_permanent"], 1);

    let (status, page) = env.get("/api/v1/dlq/scrape").await?;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item["id"], source_id.to_string());
    assert_eq!(item["source_id"], source_id.to_string());
    assert_eq!(item["job_id"], job_id.to_string());
    assert_eq!(item["dlq_type"], "scrape");
    assert_eq!(item["error"], "HTTP 503 from origin");
    assert_eq!(item["error_kind"], "permanent");
    assert_eq!(item["retry_count"], 0);
    let failed_at = item["failed_at"].as_str().unwrap();
    assert!(
        failed_at.contains('T') && failed_at.ends_with('Z'),
        "failed_at is RFC 3339 UTC: {item}"
    );
    assert!(page["next_cursor"].is_null());

    let (status, page) = env.get("/api/v1/dlq/extraction?limit=5").await?;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["id"], ext_id);
    assert_eq!(page["items"][0]["error_kind"], "transient");
    Ok(())
}

#[tokio::test]
async fn list_limits_are_bounded_and_cursors_page() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(push_extraction_item(&env).await?);
    }
    for bad in ["0", "1001", "-1", "many"] {
        let (status, body) = env
            .get(&format!("/api/v1/dlq/extraction?limit={bad}"))
            .await?;
        assert_eq!(status, 422, "limit={bad}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(!detail.is_empty(), "limit={bad}: {body}");
        if bad == "0" || bad == "1001" {
            assert!(detail.contains("between 1 and 1000"), "{detail}");
        }
    }
    let (status, _) = env.get("/api/v1/dlq/extraction?limit=1000").await?;
    assert_eq!(status, 200);
    let (status, body) = env.get("/api/v1/dlq/extraction?cursor=bogus").await?;
    assert_eq!(status, 422, "{body}");

    // Newest first, two pages.
    let (_, first) = env.get("/api/v1/dlq/extraction?limit=2").await?;
    let got: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[2].as_str(), ids[1].as_str()]);
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let (_, second) = env
        .get(&format!("/api/v1/dlq/extraction?limit=2&cursor={cursor}"))
        .await?;
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"][0]["id"], ids[0]);
    assert!(second["next_cursor"].is_null());
    Ok(())
}

#[tokio::test]
async fn retry_redrives_into_the_queue_and_records_it() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (job_id, source_id) = env
        .dead_lettered_source("https://example.com/retry", ErrorKind::Permanent)
        .await?;
    let queue = env.services.queue(pipeline_ops::Family::Scrape);
    assert!(!queue.contains(&source_id.to_string()).await?);

    let (status, body) = env
        .post(&format!("/api/v1/dlq/scrape/{source_id}/retry"))
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], source_id.to_string());
    assert_eq!(body["job_id"], job_id.to_string());
    assert_eq!(body["enqueued"], true);

    // Really back in the work queue, out of the DLQ, and recorded in Postgres.
    assert!(queue.contains(&source_id.to_string()).await?);
    assert_eq!(queue.depth().await?.ready, 1);
    let (_, stats) = env.get("/api/v1/dlq/stats").await?;
    assert_eq!(stats["scrape"], 0);
    let source = sources::get(&env.services.db, source_id).await?;
    assert_eq!(source.status, "queued");
    let events = sources::events(&env.services.db, source_id).await?;
    let last = events.last().unwrap();
    assert_eq!(last.kind, "redriven");
    assert_eq!(last.actor.as_deref(), Some("api"));

    // The item is gone now: a second retry is 404.
    let (status, body) = env
        .post(&format!("/api/v1/dlq/scrape/{source_id}/retry"))
        .await?;
    assert_eq!(status, 404, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("no item"));
    Ok(())
}

#[tokio::test]
async fn unknown_ids_and_kinds_are_404() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let missing = Uuid::new_v4();
    for (method, path) in [
        (Method::POST, format!("/api/v1/dlq/scrape/{missing}/retry")),
        (
            Method::POST,
            format!("/api/v1/dlq/extraction/{missing}/retry"),
        ),
        (Method::DELETE, format!("/api/v1/dlq/scrape/{missing}")),
        (Method::POST, format!("/api/v1/dlq/nosuch/{missing}/retry")),
        (Method::DELETE, format!("/api/v1/dlq/nosuch/{missing}")),
        (Method::POST, "/api/v1/dlq/nosuch/retry-all".to_owned()),
        (Method::GET, "/api/v1/dlq/nosuch".to_owned()),
        (Method::GET, format!("/api/v1/jobs/{missing}")),
        (Method::GET, format!("/api/v1/sources/{missing}/events")),
        (Method::GET, "/api/v1/nothing-here".to_owned()),
    ] {
        let (status, body) =
            integration_tests::api::json_of(env.req(method.clone(), &path).send().await?).await?;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert!(body["detail"].is_string(), "{method} {path}: {body}");
    }
    Ok(())
}

#[tokio::test]
async fn retry_all_honours_its_limit_and_delete_discards() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let mut sources_ids = Vec::new();
    for n in 0..3 {
        let (_, s) = env
            .dead_lettered_source(
                &format!("https://example.com/bulk/{n}"),
                ErrorKind::Transient,
            )
            .await?;
        sources_ids.push(s);
    }
    let (status, body) = env.post("/api/v1/dlq/scrape/retry-all?limit=0").await?;
    assert_eq!(status, 422, "{body}");

    let (status, body) = env.post("/api/v1/dlq/scrape/retry-all?limit=2").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redriven"], 2);
    let queue = env.services.queue(pipeline_ops::Family::Scrape);
    assert_eq!(queue.depth().await?.ready, 2);
    // Oldest first: the first two went back.
    for s in &sources_ids[..2] {
        assert!(queue.contains(&s.to_string()).await?);
        assert_eq!(sources::get(&env.services.db, *s).await?.status, "queued");
    }

    // Delete the last one: returned, gone, recorded.
    let last = sources_ids[2];
    let (status, body) = integration_tests::api::json_of(
        env.req(Method::DELETE, &format!("/api/v1/dlq/scrape/{last}"))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], last.to_string());
    let source = sources::get(&env.services.db, last).await?;
    assert_eq!(source.status, "discarded");
    let (_, stats) = env.get("/api/v1/dlq/stats").await?;
    assert_eq!(stats["scrape"], 0);
    assert!(!queue.contains(&last.to_string()).await?);

    let (status, body) = env.post("/api/v1/dlq/scrape/retry-all").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redriven"], 0);
    Ok(())
}

#[tokio::test]
async fn purge_counts_on_a_dry_run_then_discards_with_a_trail() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let mut ids = Vec::new();
    for n in 0..2 {
        let (_, s) = env
            .dead_lettered_source(
                &format!("https://example.com/old/{n}"),
                ErrorKind::Permanent,
            )
            .await?;
        ids.push(s);
    }
    // The age is required and needs its unit, as on the command line.
    for bad in [
        "/api/v1/dlq/scrape/purge",
        "/api/v1/dlq/scrape/purge?older_than=5",
        "/api/v1/dlq/scrape/purge?older_than=5y",
        "/api/v1/dlq/scrape/purge?older_than=99999999999d",
    ] {
        let (status, body) = env.post(bad).await?;
        assert_eq!(status, 422, "{bad}: {body}");
    }
    let (status, _) = env.post("/api/v1/dlq/nope/purge?older_than=1d").await?;
    assert_eq!(status, 404);

    // Nothing is a day old; a dry run of everything counts both and removes nothing.
    let (status, body) = env.post("/api/v1/dlq/scrape/purge?older_than=1d").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["matched"].as_u64(), body["purged"].as_u64()),
        (Some(0), Some(0))
    );
    let (status, body) = env
        .post("/api/v1/dlq/scrape/purge?older_than=0s&dry_run=true")
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["matched"], 2);
    assert_eq!(body["purged"], 0);
    assert_eq!(body["dry_run"], true);
    let (_, stats) = env.get("/api/v1/dlq/stats").await?;
    assert_eq!(stats["scrape"], 2, "a dry run removes nothing");

    let (status, body) = env.post("/api/v1/dlq/scrape/purge?older_than=0s").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["purged"], 2);
    let (_, stats) = env.get("/api/v1/dlq/stats").await?;
    assert_eq!(stats["scrape"], 0);
    for id in ids {
        assert_eq!(
            sources::get(&env.services.db, id).await?.status,
            "discarded"
        );
        let events = sources::events(&env.services.db, id).await?;
        let last = events.last().expect("events");
        assert_eq!(last.kind, "discarded");
        assert_eq!(last.actor.as_deref(), Some("api"));
    }
    Ok(())
}
