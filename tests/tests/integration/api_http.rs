//! The admin API over real HTTP: the key check, open probes and OpenAPI document (listing
//! every route of the design's table), `{"detail"}` errors for bad bodies, submissions, jobs
//! and source trails.

use integration_tests::api::{ApiEnv, json_of};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn missing_or_wrong_key_is_401_and_probes_are_open() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    for (method, path) in [
        (Method::GET, "/api/v1/dlq/stats"),
        (Method::GET, "/api/v1/dlq/scrape"),
        (Method::GET, "/api/v1/jobs"),
        (Method::POST, "/api/v1/scrape"),
        (Method::POST, "/api/v1/dlq/scrape/x/retry"),
    ] {
        let (status, body) = json_of(env.req_no_key(method.clone(), path).send().await?).await?;
        assert_eq!(status, 401, "no key: {method} {path}: {body}");
        assert!(body["detail"].as_str().unwrap().contains("missing API key"));
        let (status, body) = json_of(
            env.req_no_key(method.clone(), path)
                .header("X-API-Key", "test-key-0123456788")
                .send()
                .await?,
        )
        .await?;
        assert_eq!(status, 401, "wrong key: {method} {path}: {body}");
        assert_eq!(body["detail"], "invalid API key");
    }
    let (status, _) = json_of(
        env.req_no_key(Method::GET, "/api/v1/jobs")
            .header("X-API-Key", "")
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 401);

    for path in ["/health", "/metrics", "/openapi.json"] {
        let resp = env.req_no_key(Method::GET, path).send().await?;
        assert_eq!(resp.status().as_u16(), 200, "{path} is open");
    }
    let (status, ready) = json_of(env.req_no_key(Method::GET, "/ready").send().await?).await?;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["postgres"], "ok");
    assert_eq!(ready["redis"], "ok");
    Ok(())
}

#[tokio::test]
async fn no_key_means_loopback_only() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let err = pipeline_api::serve(
        env.services.clone(),
        None,
        "0.0.0.0:0".parse()?,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect_err("a keyless API must not bind a public address");
    assert!(
        err.to_string().contains("no API key is configured"),
        "{err}"
    );

    let cancel = tokio_util::sync::CancellationToken::new();
    let (addr, task) = pipeline_api::serve(
        env.services.clone(),
        None,
        "127.0.0.1:0".parse()?,
        cancel.clone(),
    )
    .await?;
    let (status, body) = json_of(
        env.client
            .get(format!("http://{addr}/api/v1/dlq/stats"))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 200, "keyless loopback is served: {body}");
    cancel.cancel();
    task.await?;
    Ok(())
}

#[tokio::test]
async fn openapi_lists_every_route() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (status, doc) = json_of(env.req_no_key(Method::GET, "/openapi.json").send().await?).await?;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    for (method, path) in [
        ("get", "/api/v1/dlq/stats"),
        ("get", "/api/v1/dlq/{kind}"),
        ("post", "/api/v1/dlq/{kind}/purge"),
        ("post", "/api/v1/dlq/{kind}/{item_id}/retry"),
        ("post", "/api/v1/dlq/{kind}/retry-all"),
        ("delete", "/api/v1/dlq/{kind}/{item_id}"),
        ("post", "/api/v1/scrape"),
        ("get", "/api/v1/jobs"),
        ("get", "/api/v1/jobs/{id}"),
        ("get", "/api/v1/sources/{id}/events"),
        ("put", "/api/v1/crawl/{id}/schedule"),
        ("get", "/api/v1/crawl/{id}/schedule"),
        ("delete", "/api/v1/crawl/{id}/schedule"),
        ("post", "/api/v1/projects"),
        ("get", "/api/v1/projects/{project}/schema"),
        ("put", "/api/v1/projects/{project}/schema"),
        ("get", "/api/v1/projects/{project}/records"),
        ("get", "/api/v1/sources/{id}/facts"),
        ("get", "/api/v1/schema-templates"),
    ] {
        let op = &paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from {:?}", paths.keys()))[method];
        assert!(op.is_object(), "{method} {path} is documented");
        assert!(op["responses"].is_object(), "{method} {path} has responses");
    }
    // A family is named by one typed path parameter, whose values are the families.
    let kind = paths["/api/v1/dlq/{kind}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "kind")
        .expect("kind parameter");
    assert_eq!(
        kind["schema"]["enum"],
        serde_json::json!(["scrape", "extraction", "facts", "webhooks"])
    );
    // The documented shapes of the list answers and the key scheme.
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["DlqPage"]["properties"]["next_cursor"].is_object());
    assert!(schemas["ErrorBody"]["properties"]["detail"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["name"],
        "X-API-Key"
    );
    // The document matches the library's view of it.
    let lib = serde_json::to_value(pipeline_api::openapi())?;
    assert_eq!(lib["paths"], doc["paths"]);
    Ok(())
}

#[tokio::test]
async fn bad_bodies_answer_detail() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (
            env.req(Method::POST, "/api/v1/scrape")
                .header("content-type", "application/json")
                .body("{not json"),
            422,
        ),
        (
            env.req(Method::POST, "/api/v1/scrape")
                .json(&json!({"urls": "https://example.com"})),
            422,
        ),
        (
            env.req(Method::POST, "/api/v1/scrape")
                .json(&json!({"urls": ["https://example.com"], "project_id": "nope"})),
            422,
        ),
        (
            env.req(Method::POST, "/api/v1/scrape")
                .json(&json!({"urls": []})),
            422,
        ),
        (env.req(Method::POST, "/api/v1/scrape").body("urls=x"), 415),
        (env.req(Method::PUT, "/api/v1/jobs"), 405),
        (env.req(Method::GET, "/api/v1/jobs/not-a-uuid"), 422),
    ];
    for (req, want) in cases {
        let (status, body) = json_of(req.send().await?).await?;
        assert_eq!(status, want, "{body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{status}: {body}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn submit_jobs_and_trails() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (status, body) = json_of(
        env.req(Method::POST, "/api/v1/scrape")
            .json(&json!({
                "urls": ["https://example.com/one", "ftp://example.com/x", "https://example.com/two", "not a url"],
                "source_group": "docs",
            }))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 202, "{body}");
    let job_id = body["job_id"].as_str().unwrap().to_owned();
    assert_eq!(body["sources"].as_array().unwrap().len(), 2);
    let invalid = body["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 2, "{body}");
    assert_eq!(invalid[0]["url"], "ftp://example.com/x");
    assert!(invalid[0]["reason"].as_str().unwrap().contains("scheme"));
    assert_eq!(invalid[1]["url"], "not a url");
    assert_eq!(
        env.services
            .queue(pipeline_ops::Family::Scrape)
            .depth()
            .await?
            .ready,
        2
    );

    let (status, job) = env.get(&format!("/api/v1/jobs/{job_id}")).await?;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["id"], job_id);
    assert_eq!(job["type"], "scrape");
    assert_eq!(job["status"], "queued");
    assert_eq!(job["counts"]["total"], 2);
    assert_eq!(job["counts"]["queued"], 2);
    assert_eq!(job["counts"]["invalid_urls"], 2);
    let srcs = job["sources"].as_array().unwrap();
    assert_eq!(srcs.len(), 2);
    assert!(
        srcs.iter()
            .all(|s| s["status"] == "queued" && s["source_group"] == "docs")
    );

    let source_id = srcs[0]["id"].as_str().unwrap();
    let (status, trail) = env
        .get(&format!("/api/v1/sources/{source_id}/events"))
        .await?;
    assert_eq!(status, 200, "{trail}");
    assert_eq!(trail["source"]["id"], source_id);
    assert_eq!(trail["source"]["created_by_job_id"], job_id);
    assert_eq!(trail["events"][0]["kind"], "enqueued");
    assert_eq!(trail["events"][0]["job_id"], job_id);

    // A second job; lists are newest first, filter and page.
    let (status, _) = json_of(
        env.req(Method::POST, "/api/v1/scrape")
            .json(&json!({"urls": ["https://example.com/three"], "project": "other"}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 202);
    let (status, page) = env
        .get("/api/v1/jobs?type=scrape&status=queued&limit=1")
        .await?;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_ne!(page["items"][0]["id"], job_id, "newest first");
    assert_eq!(page["next_offset"], 1);
    let (_, page2) = env.get("/api/v1/jobs?limit=1&offset=1").await?;
    assert_eq!(page2["items"][0]["id"], job_id);
    let (_, none) = env.get("/api/v1/jobs?status=completed").await?;
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    for bad in [
        "limit=0",
        "limit=1001",
        "offset=-1",
        "status=bogus",
        "limit=x",
    ] {
        let (status, body) = env.get(&format!("/api/v1/jobs?{bad}")).await?;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(body["detail"].is_string());
    }
    Ok(())
}

#[tokio::test]
async fn projects_are_listed_by_name_with_what_they_hold_and_paged() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    // `submit` uses the default project.
    env.submit(&["https://example.com/p1", "https://example.com/p2"])
        .await?;
    let (status, page) = env.get("/api/v1/projects").await?;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["jobs"], 1);
    assert_eq!(items[0]["sources"], 2);
    assert!(page["next_offset"].is_null());
    let (status, page) = env.get("/api/v1/projects?limit=1").await?;
    assert_eq!(status, 200);
    assert_eq!(page["next_offset"], 1);
    let (status, body) = env.get("/api/v1/projects?limit=0").await?;
    assert_eq!(status, 422, "{body}");
    let status = env
        .req_no_key(Method::GET, "/api/v1/projects")
        .send()
        .await?
        .status();
    assert_eq!(status, 401);
    Ok(())
}
