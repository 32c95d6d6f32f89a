//! The console in a real browser (headless chromium over WebDriver) against the real
//! daemons on loopback: `pipeline-api`, `scrape-worker` and `extraction-worker` as
//! processes, a fixture page server, Postgres and Redis. Signs in, watches a job's progress
//! bar reach 100%, retries a dead-lettered source from its page once the page server is
//! fixed and sees it end `extracted`, pauses the scrape family and sees no new fetch,
//! resumes it, signs out and is refused. Saves a screenshot of every page.

use std::time::Duration;

use fantoccini::Locator;
use integration_tests::browser::Browser;
use integration_tests::pages::PageServer;
use integration_tests::requeue::eventually;
use integration_tests::{TestDb, TestRedis, binary, http_client, redis_url};
use reqwest::StatusCode;
use serde_json::json;
use tokio::process::{Child, Command};

const KEY: &str = "console-test-key";

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn daemon(name: &str, db: &TestDb, redis: &TestRedis, api_port: u16) -> anyhow::Result<Child> {
    Ok(Command::new(binary(name))
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &redis.prefix)
        .env("PIPELINE__API__BIND", format!("127.0.0.1:{api_port}"))
        .env("PIPELINE_API_KEY", KEY)
        .env("PIPELINE__PROBES__HOST", "127.0.0.1")
        .env("PIPELINE__PROBES__SCRAPE_WORKER_PORT", "0")
        .env("PIPELINE__PROBES__EXTRACTION_WORKER_PORT", "0")
        .env("PIPELINE__SCRAPE__ALLOW_PRIVATE_HOSTS", "127.0.0.1")
        .env("PIPELINE__SCRAPE__PER_HOST_MIN_DELAY_MS", "0")
        .env("PIPELINE__SCRAPE__RESPECT_ROBOTS_TXT", "false")
        // One attempt: a failing page goes straight to the DLQ (no requeue daemon runs, so
        // it stays there until a person acts).
        .env("PIPELINE__QUEUE__MAX_ATTEMPTS", "1")
        .env("PIPELINE__QUEUE__BLOCK_TIMEOUT_MS", "200")
        .env("PIPELINE__SHUTDOWN__DRAIN_TIMEOUT_SECS", "5")
        .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
        .env("RUST_LOG", "warn")
        .env_remove("PIPELINE_CONFIG")
        .kill_on_drop(true)
        .spawn()?)
}

async fn text_of(b: &Browser, css: &str) -> anyhow::Result<String> {
    Ok(b.client.find(Locator::Css(css)).await?.text().await?)
}

#[tokio::test]
async fn an_operator_signs_in_follows_a_job_retries_a_dead_letter_pauses_and_signs_out()
-> anyhow::Result<()> {
    let Some(b) = Browser::start(1280, 900).await? else {
        return Ok(());
    };
    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let pages = PageServer::start().await;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut daemons = vec![daemon("pipeline-api", &db, &redis, port)?];
    let http = http_client();
    eventually(Duration::from_secs(60), "the API ready", || async {
        Ok(http
            .get(format!("{base}/ready"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success()))
    })
    .await?;
    daemons.push(daemon("scrape-worker", &db, &redis, port)?);
    daemons.push(daemon("extraction-worker", &db, &redis, port)?);

    // Sign in: any console page sends the browser to the sign-in form first.
    b.client.goto(&format!("{base}/ui/")).await?;
    assert!(b.client.current_url().await?.path().ends_with("/ui/login"));
    b.shot("sign-in").await?;
    b.client
        .find(Locator::Id("key"))
        .await?
        .send_keys("not-the-key")
        .await?;
    b.client
        .find(Locator::Css("form.login button"))
        .await?
        .click()
        .await?;
    eventually(Duration::from_secs(10), "the refusal", || async {
        let e = text_of(&b, "#login-error").await.unwrap_or_default();
        Ok((e == "Invalid API key.").then_some(()))
    })
    .await?;
    b.client
        .find(Locator::Id("key"))
        .await?
        .send_keys(KEY)
        .await?;
    b.client
        .find(Locator::Css("form.login button"))
        .await?
        .click()
        .await?;
    eventually(Duration::from_secs(10), "the overview", || async {
        let h1 = text_of(&b, "h1").await.unwrap_or_default();
        Ok((h1 == "Overview").then_some(()))
    })
    .await?;
    assert_eq!(b.client.current_url().await?.path(), "/ui/");

    // A job of three pages; one answers 404 until the page server is fixed.
    pages.set_failures_with("/flaky/gone", 1_000, StatusCode::NOT_FOUND, None);
    let urls = [
        pages.url("/ok/1"),
        pages.url("/ok/2"),
        pages.url("/flaky/gone"),
    ];
    let resp = http
        .post(format!("{base}/api/v1/scrape"))
        .header("X-API-Key", KEY)
        .json(&json!({ "urls": urls }))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let job: serde_json::Value = resp.json().await?;
    let job_id = job["job_id"].as_str().expect("a job id").to_owned();
    let broken = job["sources"][2]["source_id"]
        .as_str()
        .expect("an id")
        .to_owned();

    // The job's page refreshes itself until its bar reads 100%.
    b.client.goto(&format!("{base}/ui/jobs/{job_id}")).await?;
    eventually(
        Duration::from_secs(60),
        "the progress bar at 100%",
        || async {
            let done = text_of(&b, "span.pct").await.unwrap_or_default();
            Ok((done == "100%").then_some(()))
        },
    )
    .await?;
    assert_eq!(
        b.client
            .find(Locator::Css("[data-progress]"))
            .await?
            .attr("data-progress")
            .await?
            .as_deref(),
        Some("3/3")
    );
    b.shot("job").await?;
    b.client.goto(&format!("{base}/ui/jobs")).await?;
    b.shot("jobs").await?;

    // The dead letter: listed with its URL and error, then retried from its own page.
    b.client.goto(&format!("{base}/ui/dlq/scrape")).await?;
    let row = text_of(&b, &format!("tr[data-id=\"{broken}\"]")).await?;
    assert!(row.contains("/flaky/gone") && row.contains("404"), "{row}");
    b.shot("dlq").await?;
    b.client
        .find(Locator::Css(&format!("tr[data-id=\"{broken}\"] td.url a")))
        .await?
        .click()
        .await?;
    assert_eq!(text_of(&b, "#source-status").await?, "dead_lettered");
    b.shot("source-dead-lettered").await?;
    pages.set_failures("/flaky/gone", 0);
    b.client
        .find(Locator::Css("form.retry button"))
        .await?
        .click()
        .await?;
    eventually(Duration::from_secs(60), "the source extracted", || async {
        b.client.refresh().await?;
        let status = text_of(&b, "#source-status").await.unwrap_or_default();
        Ok((status == "extracted").then_some(()))
    })
    .await?;
    let events = text_of(&b, "ol.timeline").await?;
    assert!(
        events.contains("redriven") && events.contains("succeeded"),
        "{events}"
    );
    b.shot("source-extracted").await?;

    // Live daemons: both workers and the API, from their heartbeats.
    b.client.goto(&format!("{base}/ui/workers")).await?;
    eventually(Duration::from_secs(20), "three live daemons", || async {
        b.client.refresh().await?;
        let rows = b.client.find_all(Locator::Css("tr[data-kind]")).await?;
        Ok((rows.len() == 3).then_some(()))
    })
    .await?;
    let table = text_of(&b, "table").await?;
    for kind in ["pipeline-api", "scrape-worker", "extraction-worker"] {
        assert!(table.contains(kind), "{kind} missing: {table}");
    }
    b.shot("workers").await?;

    // Pause scrape from the overview: no new fetch while paused, and the fetch happens
    // once resumed.
    b.client.goto(&format!("{base}/ui/")).await?;
    b.client
        .find(Locator::Css("tr[data-family=scrape] button.pause"))
        .await?
        .click()
        .await?;
    eventually(Duration::from_secs(10), "scrape shown paused", || async {
        let state = text_of(&b, "tr[data-family=scrape] .badge")
            .await
            .unwrap_or_default();
        Ok((state == "paused").then_some(()))
    })
    .await?;
    // The workers see the flag within a second; a reserve already waiting ends within the
    // 200 ms block timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let resp = http
        .post(format!("{base}/api/v1/scrape"))
        .header("X-API-Key", KEY)
        .json(&json!({ "urls": [pages.url("/ok/paused")] }))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pages.hits("/ok/paused"), 0, "a paused family fetched");
    b.client.refresh().await?;
    assert_eq!(
        text_of(&b, "tr[data-family=scrape] [data-count=ready]").await?,
        "1"
    );
    b.shot("overview-paused").await?;
    b.client
        .find(Locator::Css("tr[data-family=scrape] button.resume"))
        .await?
        .click()
        .await?;
    eventually(
        Duration::from_secs(30),
        "the fetch after resume",
        || async { Ok((pages.hits("/ok/paused") == 1).then_some(())) },
    )
    .await?;
    b.client.goto(&format!("{base}/ui/")).await?;
    b.shot("overview").await?;
    b.client.set_window_size(390, 844).await?;
    b.shot("overview-phone").await?;
    b.client.goto(&format!("{base}/ui/dlq/scrape")).await?;
    b.shot("dlq-phone").await?;
    b.client.set_window_size(1280, 900).await?;

    // Sign out, and be refused.
    b.client.goto(&format!("{base}/ui/")).await?;
    b.client
        .find(Locator::Css("form.signout button"))
        .await?
        .click()
        .await?;
    // The click returns before the navigation it starts has finished.
    eventually(Duration::from_secs(10), "the sign-in page", || async {
        let url = b.client.current_url().await?;
        Ok(url.path().ends_with("/ui/login").then_some(()))
    })
    .await?;
    b.client.goto(&format!("{base}/ui/jobs/{job_id}")).await?;
    assert!(b.client.current_url().await?.path().ends_with("/ui/login"));
    assert_eq!(text_of(&b, "h1").await?, "Sign in");
    b.close().await?;
    for d in &mut daemons {
        d.start_kill()?;
    }
    Ok(())
}
