//! The per-job render mode (`never`, `auto`, `always`; absent: the scrape worker's
//! `render.default`) from the user to the scrape message, over the real API, console, CLI,
//! Postgres and Redis: taken on submit and crawl (422 naming the modes for anything else),
//! stored in `jobs.render`, shown on the job, carried by the scrape message, inherited by
//! the pages a crawl discovers and by the next stage's message, kept by recrawls (now and
//! scheduled), DLQ retries and the reconciler.

use std::time::Duration;

use dlq_core::ErrorKind;
use integration_tests::api::{ApiEnv, json_of};
use integration_tests::requeue::World;
use integration_tests::site::Site;
use integration_tests::{binary, redis_url};
use pipeline_ops::messages::RenderMode;
use pipeline_ops::submit::{SubmitRequest, submit};
use pipeline_ops::{Family, Services};
use pipeline_runner::run_next;
use pipeline_store::SourceStatus;
use pipeline_store::sources::{self, Transition};
use requeue_daemon::Reconciler;
use reqwest::header::{COOKIE, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::Command;
use uuid::Uuid;

use crate::console_http::{client, session};

async fn send(env: &ApiEnv, method: Method, path: &str, body: Value) -> (u16, Value) {
    json_of(
        env.req(method, path)
            .json(&body)
            .send()
            .await
            .expect("request"),
    )
    .await
    .expect("answer")
}

/// The body of message `id` in `family`'s queue, or `None` when no shard holds it.
async fn message_body(services: &Services, family: Family, id: impl ToString) -> Option<Value> {
    let id = id.to_string();
    let queue = services.queue(family);
    let shards = queue.shards_in_use().await.expect("shards");
    let mut con = services.redis.get();
    for shard in 0..shards {
        let body: Option<String> = redis::cmd("HGET")
            .arg(queue.keys().shard(shard).msg(&id))
            .arg("body")
            .query_async(&mut con)
            .await
            .expect("HGET");
        if let Some(body) = body {
            return Some(serde_json::from_str(&body).expect("a JSON body"));
        }
    }
    None
}

/// `jobs.render` of `job`.
async fn render_row(db: &sqlx::PgPool, job: impl ToString) -> Option<String> {
    let job: Uuid = job.to_string().parse().expect("a job id");
    sqlx::query_scalar("SELECT render FROM jobs WHERE id = $1")
        .bind(job)
        .fetch_one(db)
        .await
        .expect("the job's row")
}

fn id_of(v: &Value) -> Uuid {
    v.as_str().expect("an id").parse().expect("a UUID")
}

/// Takes every ready scrape message off the queue (as a worker that handled them would), so
/// the next message of the same source is a new one.
async fn drain_scrape(services: &Services) -> anyhow::Result<()> {
    let queue = services.queue(Family::Scrape);
    loop {
        let batch = queue.reserve(100).await?;
        if batch.is_empty() {
            return Ok(());
        }
        for d in &batch {
            let _ = queue.ack(d).await?;
        }
    }
}

#[tokio::test]
async fn submit_takes_each_mode_stores_and_shows_it_and_the_message_carries_it()
-> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    for (n, mode) in ["never", "auto", "always"].into_iter().enumerate() {
        let (status, accepted) = send(
            &env,
            Method::POST,
            "/api/v1/scrape",
            json!({"urls": [format!("https://example.com/{n}")], "render": mode}),
        )
        .await;
        assert_eq!(status, 202, "{mode}: {accepted}");
        assert_eq!(accepted["render"], mode);
        let job = id_of(&accepted["job_id"]);
        assert_eq!(render_row(&env.db.pool, job).await.as_deref(), Some(mode));
        let (_, shown) = env.get(&format!("/api/v1/jobs/{job}")).await?;
        assert_eq!(shown["render"], mode, "{shown}");
        let (_, list) = env.get("/api/v1/jobs?limit=1000").await?;
        let listed = list["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|j| j["id"] == job.to_string())
            .expect("the job is listed");
        assert_eq!(listed["render"], mode);
        let body = message_body(
            &env.services,
            Family::Scrape,
            &accepted["sources"][0]["source_id"].as_str().unwrap(),
        )
        .await
        .expect("the scrape message");
        assert_eq!(body["render"], mode, "{body}");
        assert_eq!(body["job_id"], job.to_string());
    }

    // Absent or null: the worker's default. The column stays NULL, the job shows null and
    // the message leaves the field out.
    for (n, body) in [
        json!({"urls": ["https://example.com/absent"]}),
        json!({"urls": ["https://example.com/null"], "render": null}),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, accepted) = send(&env, Method::POST, "/api/v1/scrape", body).await;
        assert_eq!(status, 202, "{n}: {accepted}");
        assert_eq!(accepted["render"], Value::Null);
        let job = id_of(&accepted["job_id"]);
        assert_eq!(render_row(&env.db.pool, job).await, None);
        let (_, shown) = env.get(&format!("/api/v1/jobs/{job}")).await?;
        assert!(
            shown.as_object().unwrap().contains_key("render") && shown["render"].is_null(),
            "{shown}"
        );
        let body = message_body(
            &env.services,
            Family::Scrape,
            &accepted["sources"][0]["source_id"].as_str().unwrap(),
        )
        .await
        .expect("the scrape message");
        assert!(body.get("render").is_none(), "{body}");
    }

    // Anything else is refused, naming the modes, and records nothing.
    let jobs_before: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&env.db.pool)
        .await?;
    for bad in [
        json!("sometimes"),
        json!("Always"),
        json!(""),
        json!(1),
        json!(true),
        json!({"mode": "never"}),
    ] {
        let (status, body) = send(
            &env,
            Method::POST,
            "/api/v1/scrape",
            json!({"urls": ["https://example.com/bad"], "render": bad}),
        )
        .await;
        assert_eq!(status, 422, "{bad}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("never") && detail.contains("auto") && detail.contains("always"),
            "{bad}: {detail}"
        );
    }
    let jobs_after: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&env.db.pool)
        .await?;
    assert_eq!(jobs_after, jobs_before);

    // The OpenAPI document gives the modes as an enum on the bodies and the job.
    let (status, doc) = json_of(env.req_no_key(Method::GET, "/openapi.json").send().await?).await?;
    assert_eq!(status, 200);
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["RenderBody"]["enum"],
        json!(["never", "auto", "always"])
    );
    for (schema, field) in [
        ("ScrapeRequest", "render"),
        ("CrawlRequestBody", "render"),
        ("JobBody", "render"),
        ("ScrapeAccepted", "render"),
        ("CrawlAccepted", "render"),
    ] {
        let text = schemas[schema]["properties"][field].to_string();
        assert!(text.contains("RenderBody"), "{schema}.{field}: {text}");
    }
    Ok(())
}

#[tokio::test]
async fn a_crawl_takes_a_mode_and_its_recrawls_now_and_scheduled_keep_it() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (status, crawl) = send(
        &env,
        Method::POST,
        "/api/v1/crawl",
        json!({"url": "https://docs.example.org/", "render": "always", "sitemaps": false}),
    )
    .await;
    assert_eq!(status, 202, "{crawl}");
    assert_eq!(crawl["render"], "always");
    let job = id_of(&crawl["job_id"]);
    assert_eq!(
        render_row(&env.db.pool, job).await.as_deref(),
        Some("always")
    );
    let (_, shown) = env.get(&format!("/api/v1/jobs/{job}")).await?;
    assert_eq!(shown["render"], "always", "{shown}");
    let start = message_body(
        &env.services,
        Family::Scrape,
        &crawl["source_id"].as_str().unwrap(),
    )
    .await
    .expect("the start page's message");
    assert_eq!(start["render"], "always", "{start}");

    // Without one: the worker's default, and the start page's message says nothing.
    let (status, plain) = send(
        &env,
        Method::POST,
        "/api/v1/crawl",
        json!({"url": "https://plain.example.org/", "sitemaps": false}),
    )
    .await;
    assert_eq!(status, 202, "{plain}");
    assert_eq!(plain["render"], Value::Null);
    assert_eq!(
        render_row(&env.db.pool, &plain["job_id"].as_str().unwrap()).await,
        None
    );
    let body = message_body(
        &env.services,
        Family::Scrape,
        &plain["source_id"].as_str().unwrap(),
    )
    .await
    .expect("the start page's message");
    assert!(body.get("render").is_none(), "{body}");

    for bad in [json!("sometimes"), json!(2)] {
        let (status, body) = send(
            &env,
            Method::POST,
            "/api/v1/crawl",
            json!({"url": "https://bad.example.org/", "render": bad}),
        )
        .await;
        assert_eq!(status, 422, "{bad}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("never, auto") || detail.contains("`never`"),
            "{detail}"
        );
    }

    // The crawl ends (cancelled); its start page's message was handled.
    drain_scrape(&env.services).await?;
    let (status, _) = env.post(&format!("/api/v1/crawl/{job}/cancel")).await?;
    assert_eq!(status, 200);

    // A recrawl now keeps the mode: on its answer, its row and its start page's message.
    let (status, again) = env.post(&format!("/api/v1/crawl/{job}/recrawl")).await?;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["render"], "always");
    let recrawl = id_of(&again["job_id"]);
    assert_ne!(recrawl, job);
    assert_eq!(
        render_row(&env.db.pool, recrawl).await.as_deref(),
        Some("always")
    );
    let body = message_body(
        &env.services,
        Family::Scrape,
        &again["source_id"].as_str().unwrap(),
    )
    .await
    .expect("the recrawl's start page's message");
    assert_eq!(body["job_id"], recrawl.to_string(), "{body}");
    assert_eq!(body["render"], "always", "{body}");
    drain_scrape(&env.services).await?;

    // A scheduled recrawl, once due, keeps it too.
    let (status, body) = send(
        &env,
        Method::PUT,
        &format!("/api/v1/crawl/{job}/schedule"),
        json!({"every_secs": 3600}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    sqlx::query(
        "UPDATE crawl_schedules SET next_run_at = now() - interval '1 minute'
          WHERE crawl_job_id = $1",
    )
    .bind(job)
    .execute(&env.db.pool)
    .await?;
    let runs = pipeline_ops::crawl::start_due_recrawls(&env.services, 10).await?;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!(run.render.as_deref(), Some("always"));
    assert_eq!(
        render_row(&env.db.pool, run.job_id).await.as_deref(),
        Some("always")
    );
    let body = message_body(&env.services, Family::Scrape, run.source_id)
        .await
        .expect("the scheduled run's start page's message");
    assert_eq!(body["job_id"], run.job_id.to_string(), "{body}");
    assert_eq!(body["render"], "always", "{body}");

    // A crawl that named no mode is recrawled without one.
    drain_scrape(&env.services).await?;
    let plain_job = plain["job_id"].as_str().unwrap();
    let (status, _) = env
        .post(&format!("/api/v1/crawl/{plain_job}/cancel"))
        .await?;
    assert_eq!(status, 200);
    let (status, again) = env
        .post(&format!("/api/v1/crawl/{plain_job}/recrawl"))
        .await?;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["render"], Value::Null);
    assert_eq!(
        render_row(&env.db.pool, &again["job_id"].as_str().unwrap()).await,
        None
    );
    let body = message_body(
        &env.services,
        Family::Scrape,
        &again["source_id"].as_str().unwrap(),
    )
    .await
    .expect("the recrawl's start page's message");
    assert!(body.get("render").is_none(), "{body}");
    Ok(())
}

#[tokio::test]
async fn the_pages_a_crawl_discovers_and_the_next_stage_carry_the_crawls_mode() -> anyhow::Result<()>
{
    pipeline_core::install_crypto_provider();
    let env = ApiEnv::start(|s| {
        s.scrape.allow_private_hosts = vec!["127.0.0.1".into()];
        s.scrape.per_host_min_delay_ms = 0;
        s.scrape.per_host_max_concurrency = 16;
    })
    .await?;
    let site = Site::start(7, Duration::ZERO).await;
    let scrape = scrape_worker::handler_for(&env.services)?;
    let queue = env.services.queue(Family::Scrape);

    // Two crawls of the same site in two projects (so their pages are different sources):
    // one that renders never, one that leaves it to the worker.
    let mut crawls = Vec::new();
    for (project, render) in [("rendered", json!("never")), ("plain", Value::Null)] {
        let (status, crawl) = send(
            &env,
            Method::POST,
            "/api/v1/crawl",
            json!({"url": site.url("/p/0.html"), "project": project, "render": render,
                   "sitemaps": false, "max_depth": 1}),
        )
        .await;
        assert_eq!(status, 202, "{crawl}");
        crawls.push((id_of(&crawl["job_id"]), id_of(&crawl["source_id"]), render));
    }
    // Each start page is fetched and its links admitted.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        run_next(queue, &scrape, 1).await?;
        let mut fetched = 0;
        for (_, start, _) in &crawls {
            if sources::get(&env.db.pool, *start).await?.status != SourceStatus::Queued {
                fetched += 1;
            }
        }
        if fetched == crawls.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the start pages were not fetched"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for (job, start, render) in &crawls {
        let (status, page) = env
            .get(&format!("/api/v1/jobs/{job}/sources?limit=100"))
            .await?;
        assert_eq!(status, 200, "{page}");
        let discovered: Vec<Uuid> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|s| id_of(&s["id"]))
            .filter(|id| id != start)
            .collect();
        assert!(discovered.len() >= 2, "{job}: links were admitted: {page}");
        for id in &discovered {
            let body = message_body(&env.services, Family::Scrape, id)
                .await
                .unwrap_or_else(|| panic!("{id}: the discovered page's message"));
            assert_eq!(body["job_id"], job.to_string(), "{body}");
            assert_eq!(
                body.get("render").cloned().unwrap_or(Value::Null),
                *render,
                "{body}"
            );
        }
        // The start page went on to extraction with the same mode.
        let body = message_body(&env.services, Family::Extraction, start)
            .await
            .expect("the start page's extraction message");
        assert_eq!(
            body.get("render").cloned().unwrap_or(Value::Null),
            *render,
            "{body}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_dlq_retry_and_the_reconciler_keep_the_mode() -> anyhow::Result<()> {
    // DLQ retry: the message comes back with its body, at its own priority or another.
    let env = ApiEnv::start(|_| {}).await?;
    for (n, query) in ["", "?priority=high"].into_iter().enumerate() {
        let (status, accepted) = send(
            &env,
            Method::POST,
            "/api/v1/scrape",
            json!({"urls": [format!("https://example.com/dead/{n}")], "render": "auto"}),
        )
        .await;
        assert_eq!(status, 202, "{accepted}");
        let job = id_of(&accepted["job_id"]);
        let source = id_of(&accepted["sources"][0]["source_id"]);
        let queue = env.services.queue(Family::Scrape);
        let deliveries = queue.reserve(1).await?;
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].id, source.to_string());
        let moved = queue
            .dead_letter(&deliveries[0], "HTTP 503 from origin", ErrorKind::Transient)
            .await?;
        assert_eq!(moved, work_queue::DeadLetterOutcome::DeadLettered);
        sources::transition(
            &env.services.db,
            &env.services.progress,
            &Transition {
                source_id: source,
                job_id: Some(job),
                to: SourceStatus::DeadLettered,
                event: "dead_lettered",
                stage: "scrape",
                actor: pipeline_store::Actor::ScrapeWorker,
                attempt: Some(1),
                detail: json!({"error": "HTTP 503 from origin", "kind": "transient",
                    "attempts": 1, "dlq": "scrape"}),
                error: Some(("transient", "HTTP 503 from origin")),
            },
        )
        .await?;
        assert!(
            message_body(&env.services, Family::Scrape, source)
                .await
                .is_none()
        );
        let (status, body) = env
            .post(&format!("/api/v1/dlq/scrape/{source}/retry{query}"))
            .await?;
        assert_eq!(status, 200, "{query}: {body}");
        let body = message_body(&env.services, Family::Scrape, source)
            .await
            .expect("the retried message");
        assert_eq!(body["render"], "auto", "{query}: {body}");
        assert_eq!(body["job_id"], job.to_string());
        drain_scrape(&env.services).await?;
    }

    // The reconciler: a source whose message Redis lost is queued again with its job's mode.
    let w = World::new(|s| s.requeue.reconcile_after_secs = 1).await?;
    let mut sent = Vec::new();
    for render in [Some(RenderMode::Always), None] {
        let out = submit(
            &w.services,
            &SubmitRequest {
                urls: vec![format!(
                    "https://example.com/lost/{}",
                    render.map_or("default", RenderMode::as_str)
                )],
                project_id: None,
                project_name: Some("lost".into()),
                source_group: None,
                model_token_cap: None,
                priority: Default::default(),
                render,
            },
            pipeline_store::Actor::Cli,
        )
        .await?;
        sent.push((out.sources[0].source_id, render));
    }
    assert!(w.lose_redis_data().await? > 0);
    for (source, _) in &sent {
        assert!(
            message_body(&w.services, Family::Scrape, source)
                .await
                .is_none()
        );
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let report = Reconciler::new(w.services.clone(), w.config())
        .sweep()
        .await?;
    assert_eq!(report.reconciled.len(), 2, "{report:?}");
    for (source, render) in &sent {
        let body = message_body(&w.services, Family::Scrape, source)
            .await
            .expect("the reconciled message");
        assert_eq!(
            body.get("render").and_then(Value::as_str),
            render.map(RenderMode::as_str),
            "{body}"
        );
    }
    Ok(())
}

/// GETs or POSTs (a form) with the session `cookie`: status, `Location` (if any), page.
async fn console(
    env: &ApiEnv,
    cookie: &str,
    path: &str,
    form: Option<String>,
) -> anyhow::Result<(StatusCode, Option<String>, String)> {
    let url = format!("{}{path}", env.base);
    let req = match form {
        Some(body) => client()
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
        None => client().get(url),
    };
    let resp = req.header(COOKIE, cookie).send().await?;
    let to = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((resp.status(), to, resp.text().await?))
}

#[tokio::test]
async fn the_console_forms_offer_the_modes_and_the_job_page_shows_the_choice() -> anyhow::Result<()>
{
    let env = ApiEnv::start(|_| {}).await?;
    let (cookie, csrf) = session(&env).await?;
    let (status, _, page) = console(&env, &cookie, "/ui/submit", None).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"scrape-render\"") && page.contains("id=\"crawl-render\""));
    assert_eq!(
        page.matches("<option value=\"\" selected>worker default</option>")
            .count(),
        2,
        "both forms default to the worker's mode"
    );
    for mode in ["never", "auto", "always"] {
        assert_eq!(
            page.matches(&format!("<option value=\"{mode}\">{mode}</option>"))
                .count(),
            2
        );
    }

    // A scrape that renders always; the job page says so.
    let (status, to, _) = console(
        &env,
        &cookie,
        "/ui/submit",
        Some(format!(
            "csrf={csrf}&urls=https%3A%2F%2Fexample.com%2Fform&render=always"
        )),
    )
    .await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let to = to.expect("a redirect to the job");
    let job: Uuid = to.trim_start_matches("/ui/jobs/").parse()?;
    assert_eq!(
        render_row(&env.db.pool, job).await.as_deref(),
        Some("always")
    );
    let (_, _, page) = console(&env, &cookie, &to, None).await?;
    assert!(page.contains("<dd id=\"job-render\">always</dd>"), "{page}");

    // The worker's default: blank; the job page names it.
    let (status, to, _) = console(
        &env,
        &cookie,
        "/ui/submit",
        Some(format!(
            "csrf={csrf}&urls=https%3A%2F%2Fexample.com%2Fplain&render="
        )),
    )
    .await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let to = to.expect("a redirect to the job");
    let job: Uuid = to.trim_start_matches("/ui/jobs/").parse()?;
    assert_eq!(render_row(&env.db.pool, job).await, None);
    let (_, _, page) = console(&env, &cookie, &to, None).await?;
    assert!(
        page.contains("<dd id=\"job-render\">worker default</dd>"),
        "{page}"
    );

    // Another word comes back with the reason, the choice kept; nothing is recorded.
    let (status, _, page) = console(
        &env,
        &cookie,
        "/ui/submit",
        Some(format!(
            "csrf={csrf}&urls=https%3A%2F%2Fexample.com%2Fbad&render=sometimes"
        )),
    )
    .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let error = &page[page.find("id=\"submit-error\"").expect("the reason")..];
    assert!(error.contains("render mode"), "{error}");

    // A crawl that renders never.
    let (status, to, _) = console(
        &env,
        &cookie,
        "/ui/crawl",
        Some(format!(
            "csrf={csrf}&url=https%3A%2F%2Fdocs.example.org%2F&scope=host&render=never"
        )),
    )
    .await?;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let to = to.expect("a redirect to the crawl's job");
    let job: Uuid = to.trim_start_matches("/ui/jobs/").parse()?;
    assert_eq!(
        render_row(&env.db.pool, job).await.as_deref(),
        Some("never")
    );
    let (status, _, page) = console(
        &env,
        &cookie,
        "/ui/crawl",
        Some(format!(
            "csrf={csrf}&url=https%3A%2F%2Fdocs.example.org%2F&scope=host&render=maybe"
        )),
    )
    .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("<option value=\"\">worker default</option>"));
    Ok(())
}

/// `pipelinectl` on the test's database and Redis prefix.
async fn ctl(env: &ApiEnv, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let out = Command::new(binary("pipelinectl"))
        .args(args)
        .env("DATABASE_URL", &env.db.url)
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &env.redis.prefix)
        .env_remove("PIPELINE_CONFIG")
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output()
        .await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn pipelinectl_takes_render_on_submit_and_crawl_and_shows_it() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (code, out, err) = ctl(
        &env,
        &[
            "--json",
            "submit",
            "--render",
            "always",
            "https://example.com/cli",
        ],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    let submitted: Value = serde_json::from_str(&out)?;
    let job = id_of(&submitted["job_id"]);
    assert_eq!(
        render_row(&env.db.pool, job).await.as_deref(),
        Some("always")
    );
    let body = message_body(
        &env.services,
        Family::Scrape,
        &submitted["sources"][0]["source_id"].as_str().unwrap(),
    )
    .await
    .expect("the scrape message");
    assert_eq!(body["render"], "always", "{body}");

    let (code, out, err) = ctl(&env, &["jobs", "show", &job.to_string()]).await?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("render") && l.ends_with("always")),
        "{out}"
    );
    let (code, out, _) = ctl(&env, &["--json", "jobs", "show", &job.to_string()]).await?;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out)?["job"]["render"],
        "always"
    );
    let (_, out, _) = ctl(&env, &["--json", "jobs", "list"]).await?;
    assert_eq!(
        serde_json::from_str::<Value>(&out)?["items"][0]["render"],
        "always"
    );

    // Without the flag: the worker's default.
    let (code, out, err) =
        ctl(&env, &["--json", "submit", "https://example.com/cli-plain"]).await?;
    assert_eq!(code, 0, "{err}");
    let plain = id_of(&serde_json::from_str::<Value>(&out)?["job_id"]);
    assert_eq!(render_row(&env.db.pool, plain).await, None);
    let (_, out, _) = ctl(&env, &["jobs", "show", &plain.to_string()]).await?;
    assert!(
        out.lines()
            .any(|l| l.starts_with("render") && l.ends_with("worker default")),
        "{out}"
    );

    // A crawl that renders never; its start page's message carries it.
    let (code, out, err) = ctl(
        &env,
        &[
            "--json",
            "crawl",
            "--render",
            "never",
            "https://docs.example.org/",
        ],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    let started: Value = serde_json::from_str(&out)?;
    assert_eq!(started[0]["render"], "never", "{started}");
    let crawl = id_of(&started[0]["job_id"]);
    assert_eq!(
        render_row(&env.db.pool, crawl).await.as_deref(),
        Some("never")
    );
    let body = message_body(
        &env.services,
        Family::Scrape,
        &started[0]["source_id"].as_str().unwrap(),
    )
    .await
    .expect("the start page's message");
    assert_eq!(body["render"], "never", "{body}");

    // Another word is a usage error naming the modes; nothing is recorded.
    let jobs_before: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&env.db.pool)
        .await?;
    for cmd in ["submit", "crawl"] {
        let (code, _, err) = ctl(
            &env,
            &[cmd, "--render", "sometimes", "https://example.com/x"],
        )
        .await?;
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(err.contains("never, auto or always"), "{cmd}: {err}");
    }
    let jobs_after: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&env.db.pool)
        .await?;
    assert_eq!(jobs_after, jobs_before);
    Ok(())
}
