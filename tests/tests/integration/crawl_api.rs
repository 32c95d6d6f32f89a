//! The crawl routes over real HTTP: start (202, and 422 for each kind of bad body), progress,
//! cancel, and a page's discovery path; 404 for a job that is not a crawl.

use integration_tests::api::{ApiEnv, json_of};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn start_show_cancel_and_path() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (status, body) = json_of(
        env.req(Method::POST, "/api/v1/crawl")
            .json(&json!({
                "url": "https://Docs.Example.com/guide/intro.html#top",
                "scope": "prefix",
                "exclude": ["*/changelog/*"],
                "max_depth": 3,
                "max_pages": 20,
                "tracking_params": ["ref"],
            }))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 202, "{body}");
    let job = body["job_id"].as_str().unwrap().to_owned();
    let start = body["source_id"].as_str().unwrap().to_owned();
    assert_eq!(
        body["settings"]["start_url"],
        "https://docs.example.com/guide/intro.html"
    );
    assert_eq!(
        body["settings"]["scope_prefix"],
        "https://docs.example.com/guide/"
    );
    assert_eq!(body["settings"]["tracking_params"], json!(["ref"]));
    assert_eq!(
        body["settings"]["sitemaps"], true,
        "sitemaps are read by default"
    );
    let (status, off) = json_of(
        env.req(Method::POST, "/api/v1/crawl")
            .json(&json!({"url": "https://docs.example.com/", "sitemaps": false}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 202, "{off}");
    assert_eq!(off["settings"]["sitemaps"], false);

    let (status, p) = env.get(&format!("/api/v1/crawl/{job}")).await?;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["pages"], 1);
    assert_eq!(p["queued"], 1);
    assert_eq!(p["ended"], false);
    assert_eq!(p["settings"]["max_pages"], 20);

    let (status, path) = env.get(&format!("/api/v1/sources/{start}/path")).await?;
    assert_eq!(status, 200, "{path}");
    assert_eq!(path["job_id"], job.as_str());
    assert_eq!(path["steps"][0]["via"], "start");
    assert_eq!(path["steps"][0]["depth"], 0);

    let (status, c) = env.post(&format!("/api/v1/crawl/{job}/cancel")).await?;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["discarded"], 1);
    let (_, p) = env.get(&format!("/api/v1/crawl/{job}")).await?;
    assert!(p["cancelled_at"].is_string(), "{p}");
    assert_eq!(p["ended"], true, "{p}");
    assert_eq!(p["status"], "failed", "{p}");
    let (status, c) = env.post(&format!("/api/v1/crawl/{job}/cancel")).await?;
    assert_eq!((status, c["discarded"].clone()), (200, json!(0)));

    // A scrape job is not a crawl.
    let (scrape_job, _) = env.submit(&["https://example.com/a"]).await?;
    let (status, body) = env.get(&format!("/api/v1/crawl/{scrape_job}")).await?;
    assert_eq!(status, 404, "{body}");
    let (status, _) = env
        .post(&format!("/api/v1/crawl/{scrape_job}/cancel"))
        .await?;
    assert_eq!(status, 404);
    let (status, body) = env.get("/api/v1/crawl/not-a-uuid").await?;
    assert_eq!(status, 422, "{body}");
    Ok(())
}

#[tokio::test]
async fn bad_crawl_bodies_are_422_with_a_reason() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let long = format!("https://example.com/{}", "a".repeat(600));
    for (body, says) in [
        (json!({}), "url"),
        (json!({"url": "ftp://example.com/"}), "url"),
        (json!({"url": "https://user:pw@example.com/"}), "url"),
        (json!({"url": long}), "url"),
        (
            json!({"url": "https://example.com/", "max_pages": 0}),
            "max_pages",
        ),
        (
            json!({"url": "https://example.com/", "max_depth": 101}),
            "max_depth",
        ),
        (
            json!({"url": "https://example.com/", "max_depth": -1}),
            "is not a whole number from 0",
        ),
        (
            json!({"url": "https://example.com/", "scope": "planet"}),
            "planet",
        ),
        (
            json!({"url": "https://example.com/", "sitemaps": "yes"}),
            "expected a boolean",
        ),
        (
            json!({"url": "https://example.com/", "sitemap": true}),
            "unknown field `sitemap`",
        ),
        (
            json!({"url": "https://example.com/", "tracking_params": [""]}),
            "tracking_params",
        ),
        (
            json!({"url": "https://example.com/", "exclude": ["x".repeat(501)]}),
            "exclude",
        ),
    ] {
        let (status, answer) = json_of(
            env.req(Method::POST, "/api/v1/crawl")
                .json(&body)
                .send()
                .await?,
        )
        .await?;
        assert_eq!(status, 422, "{body}: {answer}");
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{body}: {detail}");
    }
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&env.db.pool)
        .await?;
    assert_eq!(jobs, 0, "no bad request left a job behind");
    Ok(())
}
