//! The console's tools beyond looking at one job, over plain HTTP against a real API,
//! Postgres and Redis: finding a job or source by id, id end or URL; history beyond the last
//! hour from the event trail; new scrape and crawl jobs from forms (with the CSRF token);
//! a family's ready, in-flight and delayed messages, read without changing them; search.

use std::time::Duration;

use integration_tests::api::{ApiEnv, TEST_KEY};
use integration_tests::extraction::Env;
use pipeline_ops::Family;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION};

use crate::console_http::{client, session};

/// GETs `path` with the session `cookie`: status, `Location` (if any), page.
async fn get(
    base: &str,
    cookie: &str,
    path: &str,
) -> anyhow::Result<(StatusCode, Option<String>, String)> {
    let resp = client()
        .get(format!("{base}{path}"))
        .header(COOKIE, cookie)
        .send()
        .await?;
    let to = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((resp.status(), to, resp.text().await?))
}

/// POSTs a form body with the session `cookie`: status, `Location` (if any), page.
async fn post(
    base: &str,
    cookie: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(StatusCode, Option<String>, String)> {
    let resp = client()
        .post(format!("{base}{path}"))
        .header(COOKIE, cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await?;
    let to = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((resp.status(), to, resp.text().await?))
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn a_job_or_source_is_found_by_id_id_end_or_url() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (job, sources) = env
        .submit(&["https://example.com/a", "https://example.com/b?x=1"])
        .await?;
    let (cookie, _) = session(&env).await?;
    let tail = job.simple().to_string()[20..].to_owned();
    for (q, to) in [
        (job.to_string(), format!("/ui/jobs/{job}")),
        (
            sources[0].to_string(),
            format!("/ui/sources/{}", sources[0]),
        ),
        (format!("…{tail}"), format!("/ui/jobs/{job}")),
        (tail.to_uppercase(), format!("/ui/jobs/{job}")),
        (
            "https://example.com/b?x=1#part".to_owned(),
            format!("/ui/sources/{}", sources[1]),
        ),
        (
            "example.com/a".to_owned(),
            format!("/ui/sources/{}", sources[0]),
        ),
    ] {
        let (status, location, _) =
            get(&env.base, &cookie, &format!("/ui/find?q={}", enc(&q))).await?;
        assert_eq!(status, StatusCode::SEE_OTHER, "{q}");
        assert_eq!(location.as_deref(), Some(to.as_str()), "{q}");
    }
    let unknown = uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001).to_string();
    for (q, says) in [
        ("https://nowhere.example/", "No source has the URL"),
        ("0123456789ab", "No job id ends with"),
        (unknown.as_str(), "No job and no source has this id"),
        ("what", "Not an id"),
    ] {
        let (status, _, page) = get(&env.base, &cookie, &format!("/ui/find?q={}", enc(q))).await?;
        assert_eq!(status, StatusCode::OK, "{q}");
        assert!(page.contains(says), "{q}: {page}");
    }
    // Every page carries the find box.
    let (_, _, page) = get(&env.base, &cookie, "/ui/workers").await?;
    assert!(page.contains("action=\"/ui/find\""), "{page}");
    Ok(())
}

#[tokio::test]
async fn history_beyond_the_last_hour_comes_from_the_event_trail() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    // Events 3 hours, 20 hours and 3 days ago: what a day and a week show apart.
    for (ago, stage, kind, n) in [
        ("3 hours", "scrape", "succeeded", 5),
        ("3 hours", "scrape", "failed", 2),
        ("3 hours", "scrape", "dead_lettered", 1),
        ("20 hours", "extraction", "succeeded", 4),
        ("3 days", "scrape", "succeeded", 7),
        ("3 days", "scrape", "enqueued", 9),
    ] {
        sqlx::query(
            "INSERT INTO job_events (kind, stage, at)
             SELECT $1, $2, now() - $3::interval FROM generate_series(1, $4)",
        )
        .bind(kind)
        .bind(stage)
        .bind(ago)
        .bind(n)
        .execute(&env.db.pool)
        .await?;
    }
    let (cookie, _) = session(&env).await?;
    let (status, _, day) = get(&env.base, &cookie, "/ui/?range=24h").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(day.contains("<h2>Last 24 hours</h2>"), "{day}");
    assert!(
        day.contains("scrape per h, last 24 hours: processed 5, failed 3, dead-lettered 1"),
        "{day}"
    );
    assert!(
        day.contains("extraction per h, last 24 hours: processed 4, failed 0, dead-lettered 0"),
        "{day}"
    );
    let (_, _, week) = get(&env.base, &cookie, "/ui/?range=7d").await?;
    assert!(
        week.contains("scrape per 6 h, last 7 days: processed 12, failed 3, dead-lettered 1"),
        "{week}"
    );
    // The last hour is still the workers' per-minute counters (nothing counted in this test).
    let (_, _, hour) = get(&env.base, &cookie, "/ui/").await?;
    assert!(hour.contains("last hour: processed 0"), "{hour}");
    assert!(hour.contains("href=\"/ui/?range=7d\""), "{hour}");
    let (_, _, bad) = get(&env.base, &cookie, "/ui/?range=1y").await?;
    assert!(bad.contains("Unknown range"), "{bad}");
    Ok(())
}

#[tokio::test]
async fn new_scrape_and_crawl_jobs_come_from_forms_with_the_csrf_token() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (cookie, csrf) = session(&env).await?;
    let (status, _, form) = get(&env.base, &cookie, "/ui/submit").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(form.contains("id=\"scrape-form\"") && form.contains("id=\"crawl-form\""));
    let jobs = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM jobs")
            .fetch_one(&env.db.pool)
            .await
    };
    let urls = enc("https://example.com/x\n\n  https://example.com/y  \nnot a url\n");
    // Without the token: refused, nothing created.
    let (status, _, _) = post(
        &env.base,
        &cookie,
        "/ui/submit",
        &format!("urls={urls}&project=forms"),
    )
    .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(jobs().await?, 0);
    // With it: the job, its two sources queued, the bad line refused with its reason.
    let (status, to, _) = post(
        &env.base,
        &cookie,
        "/ui/submit",
        &format!("csrf={csrf}&urls={urls}&project=forms&source_group=batch-7"),
    )
    .await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let to = to.expect("a redirect");
    let job: uuid::Uuid = to.trim_start_matches("/ui/jobs/").parse()?;
    let (_, body) = env.get(&format!("/api/v1/jobs/{job}")).await?;
    assert_eq!(body["counts"]["total"], 2, "{body}");
    assert_eq!(body["counts"]["invalid_urls"], 1, "{body}");
    let (_, queues) = env.get("/api/v1/queues").await?;
    assert_eq!(queues["families"][0]["ready"], 2, "{queues}");
    let (_, _, page) = get(&env.base, &cookie, &to).await?;
    assert!(page.contains("forms") && page.contains("batch-7"), "{page}");
    assert!(page.contains("not a url"), "{page}");
    // Nothing to submit: the form comes back, filled in, with the reason.
    let (status, _, page) = post(
        &env.base,
        &cookie,
        "/ui/submit",
        &format!("csrf={csrf}&urls=%0A%20%0A&project=kept-name"),
    )
    .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"submit-error\""), "{page}");
    assert!(page.contains("value=\"kept-name\""), "{page}");

    // A crawl, sitemaps unticked, with a depth and an exclusion.
    let crawl = format!(
        "csrf={csrf}&url={}&scope=host&max_depth=3&max_pages=&exclude={}&project=docs",
        enc("https://docs.example.org/guide/"),
        enc("*/tmp/*")
    );
    let (status, _, _) = post(&env.base, &cookie, "/ui/crawl", &crawl.replace(&csrf, "0")).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, to, _) = post(&env.base, &cookie, "/ui/crawl", &crawl).await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let to = to.expect("a redirect");
    let id = to.trim_start_matches("/ui/jobs/");
    let (status, progress) = env.get(&format!("/api/v1/crawl/{id}")).await?;
    assert_eq!(status, 200, "{progress}");
    let settings = &progress["settings"];
    assert_eq!(settings["max_depth"], 3, "{progress}");
    assert_eq!(settings["sitemaps"], false, "{progress}");
    assert_eq!(settings["exclude_patterns"][0], "*/tmp/*", "{progress}");
    let (_, _, page) = get(&env.base, &cookie, &to).await?;
    assert!(page.contains("id=\"crawl-progress\""), "{page}");
    // A bad number and a bad URL come back with the reason.
    for (body, says) in [
        (
            crawl.replace("max_depth=3", "max_depth=three"),
            "whole number",
        ),
        (
            crawl.replace(&enc("https://docs.example.org/guide/"), "ftp%3A%2F%2Fx"),
            "url",
        ),
    ] {
        let (status, _, page) = post(&env.base, &cookie, "/ui/crawl", &body).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let error = &page[page.find("id=\"submit-error\"").expect("the reason")..];
        assert!(error.to_lowercase().contains(says), "{says}: {error}");
    }
    Ok(())
}

#[tokio::test]
async fn queued_messages_are_read_in_every_state_without_changing_them() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (_, ids) = env
        .submit(&[
            "https://example.com/1",
            "https://example.com/2",
            "https://example.com/3",
            "https://example.com/4",
        ])
        .await?;
    let queue = env.services.queue(Family::Scrape);
    let held = queue.reserve(2).await?;
    assert_eq!(held.len(), 2);
    let retried = queue
        .retry_later(&held[1], "HTTP 503 from origin\ncaused by: upstream reset")
        .await?;
    assert!(
        matches!(retried, work_queue::RetryOutcome::Scheduled { .. }),
        "{retried:?}"
    );
    let before = queue.depth().await?;
    let (cookie, _) = session(&env).await?;

    let (status, _, ready) = get(&env.base, &cookie, "/ui/queues/scrape?state=ready").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(ready.contains("2 messages ready"), "{ready}");
    let ready_ids: Vec<String> = ids
        .iter()
        .filter(|id| held.iter().all(|d| d.id != id.to_string()))
        .map(|id| id.to_string())
        .collect();
    for id in &ready_ids {
        assert!(ready.contains(&format!("data-message=\"{id}\"")), "{ready}");
    }
    assert!(ready.contains("https://example.com/"), "{ready}");
    assert!(
        ready.contains("&quot;source_id&quot;"),
        "the payload: {ready}"
    );

    let (_, _, in_flight) = get(&env.base, &cookie, "/ui/queues/scrape?state=in_flight").await?;
    assert!(in_flight.contains("1 message in flight"), "{in_flight}");
    let row = &in_flight[in_flight
        .find(&format!("data-message=\"{}\"", held[0].id))
        .expect("the held message")..];
    let row = &row[..row.find("</tr>").expect("its end")];
    assert!(
        row.contains(&format!(">{}<", held[0].token)),
        "the lease token: {row}"
    );
    assert!(row.contains("<time"), "the lease end: {row}");

    let (_, _, delayed) = get(&env.base, &cookie, "/ui/queues/scrape?state=delayed").await?;
    assert!(
        delayed.contains("1 message waiting for a retry"),
        "{delayed}"
    );
    assert!(
        delayed.contains(&format!("data-message=\"{}\"", held[1].id)),
        "{delayed}"
    );
    assert!(
        delayed.contains("HTTP 503 from origin\ncaused by: upstream reset"),
        "the whole last error: {delayed}"
    );
    let (status, _, _) = get(&env.base, &cookie, "/ui/queues/scrape?state=gone").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(&env.base, &cookie, "/ui/queues/nope?state=ready").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Looking changed nothing: the same depths, and the holder's lease still acks.
    assert_eq!(queue.depth().await?, before);
    assert_eq!(
        queue.ack(&held[0]).await?,
        work_queue::AckOutcome::Acked,
        "the lease was not disturbed"
    );
    // The overview links each count to its messages.
    let (_, _, overview) = get(&env.base, &cookie, "/ui/").await?;
    assert!(
        overview.contains("href=\"/ui/queues/scrape?state=delayed\""),
        "{overview}"
    );
    Ok(())
}

#[tokio::test]
async fn the_search_page_finds_the_chunk_that_says_it() -> anyhow::Result<()> {
    let env = Env::new(|_| {}).await?;
    let handler = env.handler()?;
    let page = |title: &str, text: &str| {
        format!(
            "<!doctype html><html><head><title>{title}</title></head><body><article>\
             <h1>{title}</h1><p>{text}</p></article></body></html>"
        )
    };
    let (bread, job) = env
        .scraped_source(
            "https://food.example/sourdough",
            &page(
                "Baking sourdough bread",
                "Sourdough bread rises with a starter of wild yeast and lactic bacteria, \
                 which gives the loaf its sour taste and open crumb.",
            ),
            "text/html",
        )
        .await?;
    env.enqueue(bread, job).await?;
    let (flood, job2) = env
        .scraped_source(
            "https://news.example/flood",
            &page(
                "River floods the town",
                "The river burst its banks after three days of heavy rain and flooded \
                 the lower town.",
            ),
            "text/html",
        )
        .await?;
    env.enqueue(flood, job2).await?;
    env.drain(&handler, Duration::from_secs(60)).await?;

    let cancel = tokio_util::sync::CancellationToken::new();
    let (addr, _task) = pipeline_api::serve(
        env.services.clone(),
        Some(TEST_KEY.to_owned().into()),
        "127.0.0.1:0".parse()?,
        cancel.clone(),
    )
    .await?;
    let base = format!("http://{addr}");
    let api = ApiEnvLite { base: base.clone() };
    let (cookie, _) = api.session().await?;
    // The index loads in the background: wait until the page finds the bread.
    let mut found = String::new();
    for _ in 0..100 {
        let (status, _, page) = get(&base, &cookie, "/ui/search?q=sourdough+starter+yeast").await?;
        assert_eq!(status, StatusCode::OK);
        if page.contains(&format!("data-source=\"{bread}\"")) {
            found = page;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!found.is_empty(), "the bread page was never found");
    let first = found.find("data-source=\"").expect("a hit");
    assert!(
        found[first..].starts_with(&format!("data-source=\"{bread}\"")),
        "{found}"
    );
    assert!(found.contains("Baking sourdough bread"), "{found}");
    assert!(
        found.contains(&format!("/ui/jobs/{job}")),
        "its job: {found}"
    );
    let (_, _, words) = get(&base, &cookie, "/ui/search?q=river+flooded&mode=full_text").await?;
    assert!(
        words.contains(&format!("data-source=\"{flood}\"")),
        "{words}"
    );
    assert!(
        !words.contains(&format!("data-source=\"{bread}\"")),
        "{words}"
    );
    let (_, _, bad) = get(&base, &cookie, "/ui/search?q=bread&k=1000").await?;
    assert!(bad.contains("The number of results is 1 to 100"), "{bad}");
    cancel.cancel();
    Ok(())
}

/// Signing in to an API this test started itself.
struct ApiEnvLite {
    base: String,
}

impl ApiEnvLite {
    async fn session(&self) -> anyhow::Result<(String, String)> {
        let c = client();
        let form = c.get(format!("{}/ui/login", self.base)).send().await?;
        let (token, _) =
            crate::console_http::set_cookie(&form, "pipeline_login").expect("a sign-in cookie");
        let resp = c
            .post(format!("{}/ui/login", self.base))
            .header(COOKIE, format!("pipeline_login={token}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={token}&key={TEST_KEY}&next=%2Fui%2F"))
            .send()
            .await?;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let (id, _) =
            crate::console_http::set_cookie(&resp, "pipeline_session").expect("a session cookie");
        let cookie = format!("pipeline_session={id}");
        let (_, _, page) = get(&self.base, &cookie, "/ui/").await?;
        Ok((cookie, crate::console_http::csrf_of(&page)))
    }
}
