//! What the console's pages show, over plain HTTP against a real API, Postgres and Redis:
//! an event's detail as JSON escaped once, a failure's whole error, the console's own pages
//! where a bare path would be a JSON 404.

use dlq_core::ErrorKind;
use integration_tests::api::ApiEnv;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION};

use crate::console_http::{client, session};

/// GETs `path` with the session `cookie`; the status and the page.
async fn page(env: &ApiEnv, cookie: &str, path: &str) -> anyhow::Result<(StatusCode, String)> {
    let resp = client()
        .get(format!("{}{path}", env.base))
        .header(COOKIE, cookie)
        .send()
        .await?;
    Ok((resp.status(), resp.text().await?))
}

#[tokio::test]
async fn an_event_detail_is_json_escaped_once_and_a_long_error_is_shown_whole() -> anyhow::Result<()>
{
    let env = ApiEnv::start(|_| {}).await?;
    let (_, source) = env
        .dead_lettered_source("https://example.com/say-\"hi\"", ErrorKind::Permanent)
        .await?;
    // A second failure whose error runs over several lines, as a cause chain does.
    let long_error = format!(
        "extraction failed: the page \"Price list\" could not be parsed\n\
         caused by: {}\ncaused by: the last line",
        "x".repeat(400)
    );
    let (_, ids) = env.submit(&["https://example.com/long-error"]).await?;
    let queue = env.services.queue(pipeline_ops::Family::Scrape);
    let d = queue.reserve(1).await?;
    let moved = queue
        .dead_letter(&d[0], &long_error, ErrorKind::Permanent)
        .await?;
    assert_eq!(moved, work_queue::DeadLetterOutcome::DeadLettered);
    pipeline_store::sources::transition(
        &env.services.db,
        &pipeline_store::sources::Transition {
            source_id: ids[0],
            job_id: None,
            to: pipeline_store::SourceStatus::DeadLettered,
            event: "dead_lettered",
            stage: "scrape",
            attempt: Some(1),
            detail: serde_json::json!({"error": long_error, "kind": "permanent"}),
            error: Some(("permanent", &long_error)),
        },
    )
    .await?;

    let (cookie, _) = session(&env).await?;
    let (status, html) = page(&env, &cookie, &format!("/ui/sources/{source}")).await?;
    assert_eq!(status, StatusCode::OK);
    // The enqueued event's detail, and the dead-lettered one's, as the JSON they are.
    assert!(
        html.contains("{&quot;created&quot;:true,&quot;uri&quot;:&quot;https://example.com/say-"),
        "{html}"
    );
    assert!(
        html.contains("&quot;error&quot;:&quot;HTTP 503 from origin&quot;"),
        "{html}"
    );
    assert!(!html.contains("\\&quot;"), "JSON escaped twice: {html}");

    // The long error: its first line on the row, its every line one click away.
    let (_, html) = page(&env, &cookie, &format!("/ui/sources/{}", ids[0])).await?;
    assert!(
        html.contains("could not be parsed\ncaused by: xxx"),
        "the error's lines, as lines: {html}"
    );
    assert!(html.contains("caused by: the last line"), "{html}");
    let (_, dlq) = page(&env, &cookie, "/ui/dlq/scrape").await?;
    assert!(
        dlq.contains("<summary>extraction failed: the page &quot;Price list&quot; could not be parsed</summary>"),
        "{dlq}"
    );
    assert!(dlq.contains("caused by: the last line"), "{dlq}");
    assert!(!dlq.contains("\\&quot;"), "{dlq}");
    Ok(())
}

#[tokio::test]
async fn bare_paths_lead_to_the_console() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let c = client();
    for (path, to) in [
        ("/", "/ui/"),
        ("/ui", "/ui/"),
        ("/ui/dlq", "/ui/dlq/scrape"),
        ("/ui/dlq/", "/ui/dlq/scrape"),
    ] {
        let resp = c.get(format!("{}{path}", env.base)).send().await?;
        assert!(resp.status().is_redirection(), "{path}: {}", resp.status());
        assert_eq!(resp.headers()[LOCATION], to, "{path}");
    }
    // A console path that names nothing is a console page, not the API's JSON.
    let (cookie, _) = session(&env).await?;
    let (status, html) = page(&env, &cookie, "/ui/no-such-page").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("<!doctype html>"), "{html}");
    assert!(html.contains("href=\"/ui/\""), "{html}");
    // The API's own unknown routes still answer JSON.
    let resp = c.get(format!("{}/no-such-route", env.base)).send().await?;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.text().await?.contains("\"detail\""));
    Ok(())
}
