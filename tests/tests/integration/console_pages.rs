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
        &env.services.progress,
        &pipeline_store::sources::Transition {
            source_id: ids[0],
            job_id: None,
            to: pipeline_store::SourceStatus::DeadLettered,
            event: "dead_lettered",
            stage: "scrape",
            actor: pipeline_store::Actor::ScrapeWorker,
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
        html.contains("{&quot;created&quot;:true,&quot;url&quot;:&quot;https://example.com/say-"),
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

#[tokio::test]
async fn jobs_are_told_apart_by_type_project_and_id_end_and_a_job_shows_its_failures()
-> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    // First (it takes the queue's only message): a job whose one page failed for good.
    let (failed_job, _) = env
        .dead_lettered_source("https://example.com/gone", ErrorKind::Permanent)
        .await?;
    // Jobs made in the same minute: UUIDv7 ids that share their first 8 hex digits.
    let scrape = pipeline_ops::submit::submit(
        &env.services,
        &pipeline_ops::submit::SubmitRequest {
            urls: vec![
                "https://example.com/a".into(),
                "https://example.com/b".into(),
                "not a url".into(),
                "ftp://example.com/file".into(),
            ],
            project_id: None,
            project_name: Some("acme-shop".into()),
            source_group: Some("spring".into()),
            model_token_cap: None,
            priority: Default::default(),
            render: None,
        },
        pipeline_store::Actor::Cli,
    )
    .await?;
    let crawl = pipeline_ops::crawl::start(
        &env.services,
        &pipeline_ops::crawl::CrawlRequest {
            url: "https://docs.example.org/guide/".into(),
            max_depth: Some(2),
            max_pages: Some(40),
            exclude: vec!["*/private/*".into()],
            ..Default::default()
        },
        pipeline_store::Actor::Cli,
    )
    .await?;
    let ids = [scrape.job_id, crawl.job_id, failed_job];
    let tail = |id: uuid::Uuid| id.simple().to_string()[20..].to_owned();

    let (cookie, _) = session(&env).await?;
    let (status, list) = page(&env, &cookie, "/ui/jobs").await?;
    assert_eq!(status, StatusCode::OK);
    for id in ids {
        let row = row_of(&list, &format!("data-job=\"{id}\""));
        assert!(row.contains(&format!("…{}", tail(id))), "{id}: {row}");
        assert!(row.contains(&format!("title=\"{id}\"")), "{row}");
    }
    let scrape_row = row_of(&list, &format!("data-job=\"{}\"", scrape.job_id));
    assert!(
        scrape_row.contains(">scrape<") && scrape_row.contains("acme-shop"),
        "{scrape_row}"
    );
    let crawl_row = row_of(&list, &format!("data-job=\"{}\"", crawl.job_id));
    assert!(crawl_row.contains(">crawl<"), "{crawl_row}");
    // The failed job's bar shows a failure, not a full green bar.
    let failed_row = row_of(&list, &format!("data-job=\"{failed_job}\""));
    assert!(
        failed_row.contains("data-outcome=\"0/1/0\""),
        "{failed_row}"
    );
    assert!(failed_row.contains("0 succeeded, 1 failed"), "{failed_row}");
    // Filters by type.
    let (_, crawls) = page(&env, &cookie, "/ui/jobs?type=crawl").await?;
    assert!(crawls.contains(&format!("data-job=\"{}\"", crawl.job_id)));
    assert!(!crawls.contains(&format!("data-job=\"{}\"", scrape.job_id)));

    // A job's page: its full id, its project, its refused URLs with their reasons.
    let (_, job) = page(&env, &cookie, &format!("/ui/jobs/{}", scrape.job_id)).await?;
    assert!(
        job.contains(&format!("<code id=\"job-id\">{}</code>", scrape.job_id)),
        "{job}"
    );
    assert!(
        job.contains(&format!("<h1>Job …{}</h1>", tail(scrape.job_id))),
        "{job}"
    );
    assert!(job.contains("acme-shop") && job.contains("spring"), "{job}");
    assert!(job.contains("data-outcome=\"0/0/2\""), "{job}");
    let refused = &job[job.find("id=\"refused\"").expect("a refused section")..];
    assert!(refused.contains("not a url"), "{refused}");
    assert!(refused.contains("ftp://example.com/file"), "{refused}");
    for reason in &scrape.invalid {
        assert!(
            refused.contains(&html_escape(&reason.reason)),
            "{}: {refused}",
            reason.reason
        );
    }
    // A crawl's page: its progress and its settings.
    let (_, job) = page(&env, &cookie, &format!("/ui/jobs/{}", crawl.job_id)).await?;
    assert!(job.contains("id=\"crawl-progress\""), "{job}");
    assert!(job.contains("data-crawl=\"pages\">1<"), "{job}");
    assert!(job.contains("data-skip=\"robots\">0<"), "{job}");
    assert!(job.contains("https://docs.example.org/guide/"), "{job}");
    assert!(job.contains("<code>*/private/*</code>"), "{job}");
    // The failed job's page.
    let (_, job) = page(&env, &cookie, &format!("/ui/jobs/{failed_job}")).await?;
    assert!(job.contains("data-outcome=\"0/1/0\""), "{job}");
    assert!(
        job.contains("<span class=\"failed\">1 failed</span>"),
        "{job}"
    );
    Ok(())
}

/// The `<tr>` of `page` that holds `marker`.
fn row_of<'a>(page: &'a str, marker: &str) -> &'a str {
    let at = page
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} missing: {page}"));
    let start = page[..at].rfind("<tr").expect("a row");
    let end = at + page[at..].find("</tr>").expect("the row's end");
    &page[start..end]
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
