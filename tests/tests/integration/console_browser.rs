//! The console in a real browser (headless chromium over WebDriver) against the real
//! daemons on loopback: `pipeline-api`, `scrape-worker` and `extraction-worker` as
//! processes, a fixture page server, a generated site, Postgres and Redis. Signs in (from
//! `/`), submits a job from the New job form (one line refused), watches its bar reach 100%
//! with the failure shown in red, finds the job by the end of its id, retries a
//! dead-lettered source from its page once the page server is fixed and sees it end
//! `extracted` with its event details as plain JSON, searches the extracted text, starts a
//! crawl from the crawl form and follows its progress, pauses the scrape family and reads
//! the waiting message on its queue page, resumes it, looks at a day of history, signs out
//! and is refused. Saves a screenshot of every page.

use std::time::Duration;

use fantoccini::Locator;
use integration_tests::browser::Browser;
use integration_tests::pages::PageServer;
use integration_tests::requeue::eventually;
use integration_tests::site::Site;
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

async fn attr_of(b: &Browser, css: &str, name: &str) -> anyhow::Result<String> {
    Ok(b.client
        .find(Locator::Css(css))
        .await?
        .attr(name)
        .await?
        .unwrap_or_default())
}

async fn type_into(b: &Browser, css: &str, text: &str) -> anyhow::Result<()> {
    let field = b.client.find(Locator::Css(css)).await?;
    field.clear().await?;
    field.send_keys(text).await?;
    Ok(())
}

async fn click(b: &Browser, css: &str) -> anyhow::Result<()> {
    b.client.find(Locator::Css(css)).await?.click().await?;
    Ok(())
}

/// Waits until the page's `<h1>` reads `title` (a click returns before the navigation it
/// starts has finished).
async fn wait_for_title(b: &Browser, title: &str) -> anyhow::Result<()> {
    eventually(Duration::from_secs(20), title, || async {
        let h1 = text_of(b, "h1").await.unwrap_or_default();
        Ok((h1 == title).then_some(()))
    })
    .await
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

    // Sign in: the bare address leads to the console, which sends the browser to the
    // sign-in form first.
    b.client.goto(&format!("{base}/")).await?;
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

    // A job of three pages from the New job form; one answers 404 until the page server
    // is fixed, and one line is no URL at all.
    pages.set_failures_with("/flaky/gone", 1_000, StatusCode::NOT_FOUND, None);
    click(&b, "nav a[href='/ui/submit']").await?;
    wait_for_title(&b, "New job").await?;
    let lines = format!(
        "{}\n{}\n{}\nnot a url\n",
        pages.url("/ok/1"),
        pages.url("/ok/2"),
        pages.url("/flaky/gone")
    );
    type_into(&b, "#urls", &lines).await?;
    type_into(&b, "#scrape-project", "browser-test").await?;
    b.shot("new-job").await?;
    click(&b, "#scrape-form button").await?;
    eventually(Duration::from_secs(20), "the new job's page", || async {
        let id = text_of(&b, "#job-id").await.unwrap_or_default();
        Ok((id.len() == 36).then_some(id))
    })
    .await?;
    let job_id = text_of(&b, "#job-id").await?;
    assert!(
        text_of(&b, "#refused").await.is_ok(),
        "the refused line is listed"
    );
    let refused = text_of(&b, "table.refused").await?;
    assert!(refused.contains("not a url"), "{refused}");
    let broken = eventually(
        Duration::from_secs(20),
        "the broken source's row",
        || async {
            let rows = b.client.find_all(Locator::Css("tr[data-source]")).await?;
            for row in rows {
                if row.text().await?.contains("/flaky/gone") {
                    return Ok(row.attr("data-source").await?);
                }
            }
            Ok(None)
        },
    )
    .await?;

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
        attr_of(&b, "[data-progress]", "data-progress").await?,
        "3/3"
    );
    // Two succeeded, one failed: the bar says so.
    assert_eq!(attr_of(&b, "dd .outcome", "data-outcome").await?, "2/1/0");
    b.shot("job").await?;
    b.client.goto(&format!("{base}/ui/jobs")).await?;
    let row = text_of(&b, &format!("tr[data-job=\"{job_id}\"]")).await?;
    assert!(
        row.contains(&format!("…{}", &job_id[24..]))
            && row.contains("scrape")
            && row.contains("browser-test"),
        "{row}"
    );
    b.shot("jobs").await?;
    // The header's find box takes the end of an id as the tables show it.
    type_into(&b, "form.find input", &format!("…{}\n", &job_id[24..])).await?;
    eventually(Duration::from_secs(20), "the job found", || async {
        Ok((text_of(&b, "#job-id").await.unwrap_or_default() == job_id).then_some(()))
    })
    .await?;

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
    // Each event's detail is the JSON it is, not JSON escaped again.
    assert!(events.contains("{\"created\":true,"), "{events}");
    assert!(!events.contains("\\\""), "escaped twice: {events}");
    b.shot("source-extracted").await?;

    // Search finds the extracted text and links to its page.
    click(&b, "nav a[href='/ui/search']").await?;
    wait_for_title(&b, "Search").await?;
    type_into(&b, "#q", "ordinary paragraph fixture").await?;
    click(&b, "form[role=search].filters button").await?;
    eventually(Duration::from_secs(30), "search hits", || async {
        let hits = b.client.find_all(Locator::Css("ol.hits li")).await?;
        if hits.is_empty() {
            b.client.refresh().await?;
            return Ok(None);
        }
        Ok(Some(()))
    })
    .await?;
    let hits = text_of(&b, "ol.hits").await?;
    assert!(hits.contains("/ok/") || hits.contains("Page "), "{hits}");
    b.shot("search").await?;

    // A crawl from the crawl form, followed on its job's page.
    let site = Site::start(31, Duration::ZERO).await;
    b.client.goto(&format!("{base}/ui/submit")).await?;
    type_into(&b, "#crawl-url", &site.url("/p/0.html")).await?;
    type_into(&b, "#crawl-depth", "2").await?;
    type_into(&b, "#crawl-pages", "5").await?;
    type_into(&b, "#crawl-exclude", "*calendar*").await?;
    click(&b, "#crawl-sitemaps").await?;
    click(&b, "#crawl-form button").await?;
    eventually(Duration::from_secs(20), "the crawl's page", || async {
        Ok(text_of(&b, "#crawl-progress").await.ok())
    })
    .await?;
    assert_eq!(text_of(&b, "#job-type").await?, "crawl");
    eventually(Duration::from_secs(90), "the crawl done", || async {
        b.client.refresh().await?;
        let done = text_of(&b, "span.pct").await.unwrap_or_default();
        let fetched = text_of(&b, "[data-crawl=fetched]")
            .await
            .unwrap_or_default();
        Ok((done == "100%" && fetched == "5").then_some(()))
    })
    .await?;
    let limit = text_of(&b, "[data-skip=limit]").await?;
    assert_ne!(limit, "0", "the page limit refused some links");
    b.shot("crawl").await?;

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
    // The waiting message, read on the queue page without taking it.
    click(&b, "tr[data-family=scrape] a[data-count=ready]").await?;
    eventually(Duration::from_secs(20), "the queue page", || async {
        let rows = text_of(&b, "table.messages").await.unwrap_or_default();
        Ok(rows.contains("/ok/paused").then_some(()))
    })
    .await?;
    b.shot("queue").await?;
    b.client.goto(&format!("{base}/ui/")).await?;
    assert_eq!(
        text_of(&b, "tr[data-family=scrape] [data-count=ready]").await?,
        "1",
        "looking took nothing"
    );
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
    // A day of history, from the event trail.
    click(&b, "a[href='/ui/?range=24h']").await?;
    wait_for_title(&b, "Overview").await?;
    eventually(Duration::from_secs(20), "the day's charts", || async {
        let h2 = text_of(&b, "main h2").await.unwrap_or_default();
        Ok((h2 == "Last 24 hours").then_some(()))
    })
    .await?;
    let chart = attr_of(&b, "figure.chart svg", "aria-label").await?;
    assert!(
        chart.starts_with("scrape per h, last 24 hours: processed "),
        "{chart}"
    );
    assert!(
        !chart.contains("processed 0,"),
        "the day counted the work: {chart}"
    );
    b.shot("overview-24h").await?;
    b.client.goto(&format!("{base}/ui/")).await?;
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
