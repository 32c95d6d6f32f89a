//! The console over plain HTTP against a real API, Postgres and Redis: every page needs a
//! session (without one it redirects to sign-in), a wrong key is refused saying only
//! "invalid", a POST without the CSRF token is refused, sign-out really ends the session;
//! the DLQ browser filters by error kind and job; the queue routes count and pause.

use dlq_core::ErrorKind;
use integration_tests::api::{ApiEnv, TEST_KEY};
use pipeline_ops::Family;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

pub(crate) fn client() -> reqwest::Client {
    pipeline_core::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a plain client builds")
}

/// The value of cookie `name` set by a response.
pub(crate) fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<(String, String)> {
    resp.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let text = v.to_str().ok()?.to_owned();
        let value = text
            .strip_prefix(&format!("{name}="))?
            .split(';')
            .next()?
            .to_owned();
        Some((value, text))
    })
}

/// The value of the hidden `csrf` field of a page.
pub(crate) fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + 64].to_owned()
}

/// Signs in with `key`; returns the response to the sign-in POST.
pub(crate) async fn sign_in(env: &ApiEnv, key: &str) -> anyhow::Result<reqwest::Response> {
    let c = client();
    let form = c.get(format!("{}/ui/login", env.base)).send().await?;
    assert_eq!(form.status(), StatusCode::OK);
    let (token, attrs) = set_cookie(&form, "pipeline_login").expect("a sign-in cookie");
    assert!(
        attrs.contains("HttpOnly") && attrs.contains("SameSite=Strict"),
        "{attrs}"
    );
    let html = form.text().await?;
    assert_eq!(csrf_of(&html), token);
    Ok(c.post(format!("{}/ui/login", env.base))
        .header(COOKIE, format!("pipeline_login={token}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}&key={key}&next=%2Fui%2Fjobs"))
        .send()
        .await?)
}

/// A signed-in session cookie and its CSRF token.
pub(crate) async fn session(env: &ApiEnv) -> anyhow::Result<(String, String)> {
    let resp = sign_in(env, TEST_KEY).await?;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/ui/jobs");
    let (id, attrs) = set_cookie(&resp, "pipeline_session").expect("a session cookie");
    assert!(
        attrs.contains("HttpOnly")
            && attrs.contains("SameSite=Strict")
            && !attrs.contains("Secure"),
        "{attrs}"
    );
    let page = client()
        .get(format!("{}/ui/", env.base))
        .header(COOKIE, format!("pipeline_session={id}"))
        .send()
        .await?;
    assert_eq!(page.status(), StatusCode::OK);
    let csrf = csrf_of(&page.text().await?);
    Ok((format!("pipeline_session={id}"), csrf))
}

#[tokio::test]
async fn every_page_needs_a_session_and_a_wrong_key_is_only_invalid() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (job, source) = env
        .dead_lettered_source("https://example.com/a", ErrorKind::Permanent)
        .await?;
    let c = client();
    for path in [
        "/ui/".to_owned(),
        "/ui/workers".into(),
        "/ui/dlq/scrape".into(),
        "/ui/dlq/extraction?kind=parked".into(),
        "/ui/dlq/scrape/confirm?action=retry".into(),
        "/ui/jobs".into(),
        format!("/ui/jobs/{job}"),
        format!("/ui/sources/{source}"),
    ] {
        let resp = c.get(format!("{}{path}", env.base)).send().await?;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
        let to = resp.headers()[LOCATION].to_str()?.to_owned();
        assert!(to.starts_with("/ui/login?next=%2Fui%2F"), "{path} -> {to}");
        // A made-up session is no session.
        let resp = c
            .get(format!("{}{path}", env.base))
            .header(COOKIE, format!("pipeline_session={}", "ab".repeat(32)))
            .send()
            .await?;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
    }
    for path in [
        "/ui/logout".to_owned(),
        "/ui/queues/scrape/pause".into(),
        "/ui/dlq/scrape/act".into(),
        "/ui/dlq/scrape/all".into(),
        format!("/ui/sources/{source}/retry"),
    ] {
        let resp = c.post(format!("{}{path}", env.base)).send().await?;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "POST {path}");
    }
    // A wrong key: 401, the word "invalid", no session, nothing about why.
    let resp = sign_in(&env, "wrong-key").await?;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&resp, "pipeline_session").is_none());
    let html = resp.text().await?;
    assert!(html.contains("Invalid API key."), "{html}");
    for leak in ["length", "prefix", "expected", TEST_KEY] {
        assert!(!html.contains(leak), "the refusal mentions {leak:?}");
    }
    // The item is untouched by all of the above.
    assert_eq!(env.services.dlq(Family::Scrape).stats().await?.total, 1);
    Ok(())
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused_and_sign_out_ends_the_session()
-> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (_, source) = env
        .dead_lettered_source("https://example.com/b", ErrorKind::Permanent)
        .await?;
    let (cookie, csrf) = session(&env).await?;
    let c = client();
    let post = |path: String, body: String| {
        c.post(format!("{}{path}", env.base))
            .header(COOKIE, &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    for body in [String::new(), format!("csrf={}", "0".repeat(64))] {
        let resp = post(format!("/ui/sources/{source}/retry"), body.clone())
            .send()
            .await?;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{body:?}");
        let resp = post("/ui/queues/scrape/pause".into(), body.clone())
            .send()
            .await?;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{body:?}");
        let resp = post("/ui/logout".into(), body).send().await?;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(env.services.dlq(Family::Scrape).stats().await?.total, 1);
    let (_, queues) = env.get("/api/v1/queues").await?;
    assert_eq!(queues["families"][0]["paused"], false);

    // With the token the same retry works, and the pause too.
    let resp = post(
        format!("/ui/sources/{source}/retry"),
        format!("csrf={csrf}"),
    )
    .send()
    .await?;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(env.services.dlq(Family::Scrape).stats().await?.total, 0);
    let resp = post("/ui/queues/scrape/pause".into(), format!("csrf={csrf}"))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, queues) = env.get("/api/v1/queues").await?;
    assert_eq!(queues["families"][0]["paused"], true);
    assert_eq!(queues["families"][0]["paused_by"]["by"], "console");
    assert_eq!(queues["families"][0]["ready"], 1, "{queues}");

    // Sign out; the old cookie then gets the sign-in page, never a console page.
    let resp = post("/ui/logout".into(), format!("csrf={csrf}"))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, attrs) = set_cookie(&resp, "pipeline_session").expect("the cookie is cleared");
    assert!(attrs.contains("Max-Age=0"), "{attrs}");
    let resp = c
        .get(format!("{}/ui/", env.base))
        .header(COOKIE, &cookie)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let resp = post("/ui/queues/scrape/resume".into(), format!("csrf={csrf}"))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, queues) = env.get("/api/v1/queues").await?;
    assert_eq!(
        queues["families"][0]["paused"], true,
        "a signed-out session changed state"
    );
    // The JSON API still takes the key as before.
    let (status, body) = env.post("/api/v1/queues/scrape/resume").await?;
    assert_eq!((status, body["paused"].clone()), (200, false.into()));
    Ok(())
}

#[tokio::test]
async fn the_dlq_browser_filters_by_kind_and_job_and_acts_on_a_selection() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (job_a, perm) = env
        .dead_lettered_source("https://example.com/perm", ErrorKind::Permanent)
        .await?;
    let (job_b, trans) = env
        .dead_lettered_source("https://example.com/trans", ErrorKind::Transient)
        .await?;
    let (_, other) = env
        .dead_lettered_source("https://example.com/other", ErrorKind::Permanent)
        .await?;
    let (cookie, csrf) = session(&env).await?;
    let c = client();
    let get = |path: String| {
        let c = c.clone();
        let url = format!("{}{path}", env.base);
        let cookie = cookie.clone();
        async move {
            let resp = c.get(url).header(COOKIE, cookie).send().await?;
            anyhow::ensure!(resp.status() == StatusCode::OK, "{}", resp.status());
            Ok::<_, anyhow::Error>(resp.text().await?)
        }
    };
    let all = get("/ui/dlq/scrape".into()).await?;
    for (id, url) in [
        (perm, "https://example.com/perm"),
        (trans, "https://example.com/trans"),
        (other, "https://example.com/other"),
    ] {
        assert!(all.contains(&format!("data-id=\"{id}\"")), "{id} missing");
        assert!(all.contains(url), "{url} missing");
    }
    assert!(all.contains("HTTP 503 from origin"));
    // Newest first.
    assert!(all.find(&other.to_string()) < all.find(&perm.to_string()));
    let transient = get("/ui/dlq/scrape?kind=transient".into()).await?;
    assert!(transient.contains(&format!("data-id=\"{trans}\"")));
    assert!(!transient.contains(&format!("data-id=\"{perm}\"")));
    let by_job = get(format!("/ui/dlq/scrape?job={job_a}")).await?;
    assert!(by_job.contains(&format!("data-id=\"{perm}\"")));
    assert!(!by_job.contains(&format!("data-id=\"{other}\"")));
    let none = get(format!("/ui/dlq/scrape?kind=transient&job={job_a}")).await?;
    assert!(!none.contains("data-id=\""), "kind and job filters combine");
    let bad = get("/ui/dlq/scrape?job=not-a-uuid".into()).await?;
    assert!(
        bad.contains("not a job id"),
        "a bad filter is said, not ignored silently"
    );
    let job_page = get(format!("/ui/jobs/{job_a}?status=finished")).await?;
    assert!(
        job_page.contains("Unknown source status"),
        "an unknown status filter is said on the job page too"
    );
    assert!(job_page.contains(&format!("data-source=\"{perm}\"")));
    let filtered = get(format!("/ui/jobs/{job_a}?status=dead_lettered")).await?;
    assert!(!filtered.contains("Unknown source status"));
    // The confirmation says how many.
    let confirm = get("/ui/dlq/scrape/confirm?action=discard&kind=permanent".to_owned()).await?;
    assert!(confirm.contains("data-count=\"2\""), "{confirm}");
    let confirm = get(format!("/ui/dlq/scrape/confirm?action=retry&job={job_b}")).await?;
    assert!(confirm.contains("data-count=\"1\""), "{confirm}");

    // Retry a selection of two; the third stays.
    let resp = c
        .post(format!("{}/ui/dlq/scrape/act?kind=", env.base))
        .header(COOKIE, &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&action=retry&id={perm}&id={trans}"))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(
        resp.headers()[LOCATION]
            .to_str()?
            .contains("done=retried&n=2")
    );
    let stats = env.services.dlq(Family::Scrape).stats().await?;
    assert_eq!(stats.total, 1);
    let (_, queues) = env.get("/api/v1/queues").await?;
    assert_eq!(queues["families"][0]["ready"], 2, "{queues}");
    // Discard all matching (the rest).
    let resp = c
        .post(format!("{}/ui/dlq/scrape/all?kind=permanent", env.base))
        .header(COOKIE, &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&action=discard"))
        .send()
        .await?;
    assert!(
        resp.headers()[LOCATION]
            .to_str()?
            .contains("done=discarded&n=1")
    );
    assert_eq!(env.services.dlq(Family::Scrape).stats().await?.total, 0);
    let status: String = sqlx::query_scalar("SELECT status FROM sources WHERE id = $1")
        .bind(other)
        .fetch_one(&env.db.pool)
        .await?;
    assert_eq!(status, "discarded");
    Ok(())
}

#[tokio::test]
async fn queue_routes_count_every_family_and_list_live_workers() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    env.dead_lettered_source("https://example.com/p", ErrorKind::Permanent)
        .await?;
    env.submit(&["https://example.com/q1", "https://example.com/q2"])
        .await?;
    let (status, body) = env.get("/api/v1/queues").await?;
    assert_eq!(status, 200);
    let scrape = &body["families"][0];
    assert_eq!(scrape["family"], "scrape");
    assert_eq!(
        (
            scrape["ready"].clone(),
            scrape["in_flight"].clone(),
            scrape["delayed"].clone()
        ),
        (2.into(), 0.into(), 0.into())
    );
    assert_eq!(scrape["dlq"]["permanent"], 1);
    assert_eq!(body["families"][1]["family"], "extraction");
    let (status, _) = env.post("/api/v1/queues/nope/pause").await?;
    assert_eq!(status, 404);
    let (status, _) = env
        .req_no_key(reqwest::Method::GET, "/api/v1/queues")
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))?;
    assert_eq!(status, 401);

    // A heartbeat shows up, and drops off when removed (as when its TTL runs out).
    let (_, w) = env.get("/api/v1/workers").await?;
    assert_eq!(w["workers"].as_array().map(Vec::len), Some(0));
    let prefix = env.services.settings.redis.key_prefix.clone();
    let beat = pipeline_ops::heartbeat::Beat {
        id: "h:1:0".into(),
        kind: "scrape-worker".into(),
        host: "h".into(),
        pid: 1,
        version: "0.1.0".into(),
        family: Some("scrape".into()),
        concurrency: 8,
        in_flight: 3,
        paused: false,
        started_at: chrono::Utc::now(),
        last_beat: chrono::Utc::now(),
    };
    pipeline_ops::heartbeat::write(&env.services.redis, &prefix, &beat).await?;
    let (_, w) = env.get("/api/v1/workers").await?;
    assert_eq!(w["workers"][0]["kind"], "scrape-worker");
    assert_eq!(w["workers"][0]["in_flight"], 3);
    let mut con = env.services.redis.get();
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}{{workers}}:beat:h:1:0"))
        .query_async(&mut con)
        .await?;
    let (_, w) = env.get("/api/v1/workers").await?;
    assert_eq!(w["workers"].as_array().map(Vec::len), Some(0));
    Ok(())
}
