//! The crawl routes over real HTTP: start (202, and 422 for each kind of bad body), progress,
//! cancel, recrawl (which keeps the crawl's model token cap), and a page's discovery path;
//! 404 for a job that is not a crawl.

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
                "model_token_cap": 5000.0,
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
    let cap_of = |id: &str| {
        let id: uuid::Uuid = id.parse().expect("a job id");
        sqlx::query_scalar::<_, Option<i64>>("SELECT model_token_cap FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&env.db.pool)
    };
    assert_eq!(cap_of(&job).await?, Some(5000), "the cap is the job's");
    assert_eq!(
        cap_of(off["job_id"].as_str().unwrap()).await?,
        None,
        "no cap unless asked"
    );

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

    // A recrawl of the ended crawl keeps its cap.
    let (status, again) = env.post(&format!("/api/v1/crawl/{job}/recrawl")).await?;
    assert_eq!(status, 202, "{again}");
    assert_ne!(again["job_id"], job.as_str());
    assert_eq!(cap_of(again["job_id"].as_str().unwrap()).await?, Some(5000));

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
        (
            json!({"url": "https://example.com/", "model_token_cap": 0}),
            "model_token_cap is 0; it must be greater than 0",
        ),
        (
            json!({"url": "https://example.com/", "model_token_cap": -3.0}),
            "model_token_cap is -3",
        ),
        (
            json!({"url": "https://example.com/", "model_token_cap": 2.5}),
            "not a whole number",
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

#[tokio::test]
async fn a_crawl_schedule_is_set_shown_and_removed() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (status, body) = json_of(
        env.req(Method::POST, "/api/v1/crawl")
            .json(&json!({"url": "https://docs.example.com/"}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 202, "{body}");
    let job = body["job_id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/crawl/{job}/schedule");
    let put = |b: serde_json::Value| {
        let req = env.req(Method::PUT, &path).json(&b);
        async move { json_of(req.send().await?).await }
    };

    let (status, body) = env.get(&path).await?;
    assert_eq!(status, 404, "no schedule yet: {body}");
    for (bad, why) in [
        (json!({"every_secs": 59}), "every_secs"),
        (json!({"every_secs": 31_536_001}), "every_secs"),
        (json!({"every_secs": 1.5}), "whole number"),
        (json!({"every_secs": "1d"}), "invalid type"),
        (json!({}), "every_secs"),
        (json!({"every_secs": 3600, "at": "noon"}), "unknown field"),
    ] {
        let (status, body) = put(bad.clone()).await?;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(body.to_string().contains(why), "{bad}: {body}");
    }
    let (status, body) = put(json!({"every_secs": 86_400.0})).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["every_secs"], 86_400);
    assert_eq!(body["last_job_id"], job.as_str());
    assert_eq!(body["runs"], 0);
    let (status, shown) = env.get(&path).await?;
    assert_eq!((status, &shown), (200, &body));

    let (status, body) = put(json!({"every_secs": 3600})).await?;
    assert_eq!((status, body["every_secs"].clone()), (200, json!(3600)));

    let (status, removed) = json_of(env.req(Method::DELETE, &path).send().await?).await?;
    assert_eq!((status, removed["every_secs"].clone()), (200, json!(3600)));
    let (status, _) = json_of(env.req(Method::DELETE, &path).send().await?).await?;
    assert_eq!(status, 404);
    let (status, _) = env.get(&path).await?;
    assert_eq!(status, 404);

    // No such crawl; not a UUID.
    let other = format!("/api/v1/crawl/{}/schedule", uuid::Uuid::now_v7());
    let (status, body) = json_of(
        env.req(Method::PUT, &other)
            .json(&json!({"every_secs": 3600}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 404, "{body}");
    let (status, _) = env.get("/api/v1/crawl/nope/schedule").await?;
    assert_eq!(status, 422);
    Ok(())
}
