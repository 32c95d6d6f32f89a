//! The schema stage under faults: the `facts-worker` binary, asking a model server that
//! rate-limits its first requests, is killed with SIGKILL mid-run and replaced; every page
//! still ends with one run and no duplicate values, and every 429 is in the trail as a
//! transient failure that was retried. In process: an answer that violates the schema twice
//! fails its page as permanent, with the answer kept. The model server is the loopback one
//! (`chat_client::loopback::ModelServer`), which stands in for an OpenAI-compatible server.
//! Needs the binaries built first (`cargo build --workspace --bins`).

use std::process::Stdio;
use std::time::{Duration, Instant};

use chat_client::loopback::{ModelServer, Reply, SeenRequest};
use chat_client::{ChatClient, ChatConfig};
use integration_tests::{TestDb, TestRedis, binary, redis_url, settings_for};
use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_ops::messages::SourceMessage;
use pipeline_ops::schemas::{self, SchemaSource};
use pipeline_runner::run_next;
use pipeline_store::jobs::{self, NewScrapeJob, ProjectRef};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use uuid::Uuid;

/// One text field, answered with a quote of the page.
const SCHEMA: &str = "name: note
backend: llm
description: A short report page
fields:
  title: {type: text, description: The report's title as the page states it}
";

/// The requests the model server refuses with 429 and `Retry-After: 1` before answering.
const RATE_LIMITED: u64 = 15;

struct Setup {
    services: Services,
    redis: TestRedis,
    db: TestDb,
    job_id: Uuid,
    ids: Vec<Uuid>,
}

/// A project with the `llm` schema and `pages` sources in `facts_pending`, each with one
/// chunk (`Report <i>. The title of this report is Widget report <i>. ...`) and its facts
/// message enqueued.
async fn setup(pages: usize) -> anyhow::Result<Setup> {
    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let mut settings = settings_for(&db, &redis);
    settings.queue.visibility_timeout_secs = 2;
    settings.queue.backoff_base_ms = 20;
    settings.queue.backoff_cap_ms = 100;
    let services = Services::with_pools(settings, db.pool.clone(), redis.pool.clone())?;
    let (project, _) =
        schemas::create_project(&db.pool, "facts-faults", Some(SchemaSource::Text(SCHEMA))).await?;
    let urls: Vec<String> = (0..pages)
        .map(|i| format!("https://reports.example/{i}"))
        .collect();
    let job = jobs::create_scrape_job(
        &db.pool,
        &NewScrapeJob {
            actor: pipeline_store::Actor::Cli,
            model_token_cap: None,
            project: ProjectRef::Id(project.id),
            source_group: None,
            urls: &urls,
            invalid: &[],
            priority: "normal",
            render: None,
        },
    )
    .await?;
    let ids: Vec<Uuid> = job.sources.iter().map(|s| s.source_id).collect();
    let texts: Vec<String> = (0..pages).map(page_text).collect();
    sqlx::query(
        "UPDATE sources s SET raw_content = '<html><body><p>' || u.text || '</p></body></html>',
                content_type = 'text/html', content = u.text, status = 'facts_pending',
                http_status = 200, fetched_at = now()
           FROM UNNEST($1::uuid[], $2::text[]) AS u(id, text) WHERE s.id = u.id",
    )
    .bind(&ids)
    .bind(&texts)
    .execute(&db.pool)
    .await?;
    sqlx::query(
        "INSERT INTO extractions (id, source_id, project_id, extraction_type, chunk_index, data)
         SELECT gen_random_uuid(), u.id, $3, 'text_chunk', 0, jsonb_build_object('text', u.text)
           FROM UNNEST($1::uuid[], $2::text[]) AS u(id, text)",
    )
    .bind(&ids)
    .bind(&texts)
    .bind(project.id)
    .execute(&db.pool)
    .await?;
    let messages: Vec<(String, Value)> = ids
        .iter()
        .map(|&source_id| {
            let m = SourceMessage {
                source_id,
                job_id: Some(job.job_id),
                url: None,
                project_id: None,
                priority: Default::default(),
                render: None,
            };
            (m.id(), m.body())
        })
        .collect();
    services
        .queue(Family::Facts)
        .enqueue_bulk(&messages)
        .await?;
    Ok(Setup {
        services,
        redis,
        db,
        job_id: job.job_id,
        ids,
    })
}

fn page_text(i: usize) -> String {
    format!(
        "Report {i}. The title of this report is Widget report {i}. Sales of widgets grew \
         in every region."
    )
}

/// The page number in a request's text (`Report <i>.`).
fn page_number(req: &SeenRequest) -> Option<usize> {
    let rest = &req.user[req.user.find("Report ")? + "Report ".len()..];
    rest[..rest.find('.')?].parse().ok()
}

/// A conforming answer for the page the request is about, quoting its text.
fn answer_for(req: &SeenRequest) -> Reply {
    match page_number(req) {
        Some(i) => Reply::Json(json!({"note": {"title": {
            "value": format!("Widget report {i}"),
            "quote": format!("The title of this report is Widget report {i}"),
            "confidence": 0.9
        }}})),
        None => Reply::error(400, "the request names no report"),
    }
}

impl Setup {
    fn spawn_worker(&self, model_url: &str) -> anyhow::Result<Child> {
        let logs = std::env::var_os("TEST_LOG").is_some();
        let out = || {
            if logs {
                Stdio::inherit()
            } else {
                Stdio::null()
            }
        };
        Command::new(binary("facts-worker"))
            .env("DATABASE_URL", &self.db.url)
            .env("REDIS_URL", redis_url())
            .env("PIPELINE__REDIS__KEY_PREFIX", &self.redis.prefix)
            .env("PIPELINE__FACTS__LLM__URL", model_url)
            .env("PIPELINE__FACTS__LLM__MODEL", "loopback")
            .env("PIPELINE__FACTS__LLM__TIMEOUT_MS", "10000")
            .env("PIPELINE__FACTS__CONCURRENCY", "8")
            .env("PIPELINE__QUEUE__VISIBILITY_TIMEOUT_SECS", "2")
            .env("PIPELINE__QUEUE__BLOCK_TIMEOUT_MS", "200")
            .env("PIPELINE__QUEUE__MAX_ATTEMPTS", "6")
            .env("PIPELINE__SHUTDOWN__DRAIN_TIMEOUT_SECS", "5")
            .env("PIPELINE__PROBES__HOST", "127.0.0.1")
            .env("PIPELINE__PROBES__FACTS_WORKER_PORT", "0")
            .env_remove("PIPELINE_LLM_API_KEY")
            .env("RUST_LOG", if logs { "info" } else { "error" })
            .stdout(out())
            .stderr(out())
            .kill_on_drop(true)
            .spawn()
            .map_err(Into::into)
    }

    async fn scalar(&self, sql: &'static str) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(sql).fetch_one(&self.db.pool).await?)
    }

    /// A count of `sql` whose `$1` is `id`.
    async fn scalar_for(&self, sql: &'static str, id: Uuid) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(sql)
            .bind(id)
            .fetch_one(&self.db.pool)
            .await?)
    }

    /// Transient `failed` events of the stage naming a 429.
    async fn rate_limit_failures(&self) -> anyhow::Result<i64> {
        self.scalar(
            "SELECT count(*) FROM job_events
              WHERE stage = 'facts' AND kind = 'failed' AND detail ->> 'kind' = 'transient'
                AND detail ->> 'error' LIKE '%429%'",
        )
        .await
    }

    async fn status(&self, id: Uuid) -> anyhow::Result<String> {
        Ok(
            sqlx::query_scalar("SELECT status FROM sources WHERE id = $1")
                .bind(id)
                .fetch_one(&self.db.pool)
                .await?,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_under_rate_limits_leaves_one_run_per_page_and_no_duplicates()
-> anyhow::Result<()> {
    const PAGES: usize = 40;
    let s = setup(PAGES).await?;
    let server = ModelServer::start_fn(|req| {
        if req.seq < RATE_LIMITED {
            Reply::rate_limited(1)
        } else {
            Reply::delayed(Duration::from_millis(300), answer_for(req))
        }
    })
    .await;
    let started = Instant::now();

    // The first worker: wait until every 429 is recorded and some pages are done, then
    // kill it while it holds others.
    let mut first = s.spawn_worker(&server.url())?;
    let deadline = Instant::now() + Duration::from_secs(45);
    let done_at_kill = loop {
        let done = s
            .scalar("SELECT count(*) FROM sources WHERE status = 'extracted'")
            .await?;
        if done >= 5 && s.rate_limit_failures().await? >= RATE_LIMITED as i64 {
            break done;
        }
        if let Some(status) = first.try_wait()? {
            anyhow::bail!("the first worker exited early: {status}");
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the first worker did not get going within 45 s ({done} pages done)"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    first.kill().await?; // SIGKILL, to this test's own child only
    let status = tokio::time::timeout(Duration::from_secs(10), first.wait()).await??;
    assert!(!status.success(), "the first worker was killed");
    assert!(
        (done_at_kill as usize) < PAGES,
        "every page was done before the kill; nothing was mid-run"
    );
    let held = s.services.queue(Family::Facts).depth().await?;
    assert!(
        held.total() > 0,
        "nothing left in the facts queue at the kill"
    );

    // The second worker finishes the run: expired leases come back after 2 s, retries
    // after the server's Retry-After.
    let mut second = s.spawn_worker(&server.url())?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (extracted, dead): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'extracted'),
                    count(*) FILTER (WHERE status = 'dead_lettered') FROM sources",
        )
        .fetch_one(&s.db.pool)
        .await?;
        if (extracted + dead) as usize == PAGES {
            break;
        }
        if let Some(status) = second.try_wait()? {
            anyhow::bail!("the second worker exited: {status}");
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {extracted} extracted and {dead} dead-lettered of {PAGES} within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the second worker settle its last acks, then stop it.
    let queue = s.services.queue(Family::Facts);
    let deadline = Instant::now() + Duration::from_secs(20);
    while queue.depth().await?.total() > 0 {
        anyhow::ensure!(Instant::now() < deadline, "the facts queue did not empty");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.kill().await?;
    let elapsed = started.elapsed();

    // Each page: extracted with its run and its value, or in the facts DLQ.
    let dlq = s.services.dlq(Family::Facts);
    for (i, id) in s.ids.iter().enumerate() {
        match s.status(*id).await?.as_str() {
            "extracted" => {
                let (outcome, records, grounded, requests): (String, i32, i32, i32) =
                    sqlx::query_as(
                        "SELECT outcome, records, grounded, requests FROM fact_runs
                          WHERE source_id = $1",
                    )
                    .bind(id)
                    .fetch_one(&s.db.pool)
                    .await?;
                assert_eq!(
                    (outcome.as_str(), records, grounded),
                    ("complete", 1, 1),
                    "{i}"
                );
                assert_eq!(requests, 1, "page {i}: the run that stored it asked once");
                let values: Vec<(String, Value, bool)> =
                    sqlx::query_as("SELECT field, value, grounded FROM facts WHERE source_id = $1")
                        .bind(id)
                        .fetch_all(&s.db.pool)
                        .await?;
                assert_eq!(
                    values,
                    vec![(
                        "title".to_owned(),
                        json!(format!("Widget report {i}")),
                        true
                    )],
                    "page {i}"
                );
                let succeeded = s
                    .scalar_for(
                        "SELECT count(*) FROM job_events WHERE source_id = $1
                           AND stage = 'facts' AND kind = 'succeeded'",
                        *id,
                    )
                    .await?;
                assert_eq!(succeeded, 1, "page {i} succeeded once");
            }
            "dead_lettered" => {
                assert!(
                    dlq.get(&id.to_string()).await?.is_some(),
                    "page {i} not in the DLQ"
                );
            }
            other => panic!("page {i} ended {other}"),
        }
    }
    let duplicates = s
        .scalar(
            "SELECT count(*) FROM (
                 SELECT source_id, entity, record_key, field, value, count(*) FROM facts
                  GROUP BY 1, 2, 3, 4, 5 HAVING count(*) > 1) d",
        )
        .await?;
    assert_eq!(duplicates, 0, "duplicate values");
    let runs = s.scalar("SELECT count(*) FROM fact_runs").await?;
    let extracted = s
        .scalar("SELECT count(*) FROM sources WHERE status = 'extracted'")
        .await?;
    assert_eq!(runs, extracted, "one run row per finished page");
    // With six attempts and at most one 429 per page, nothing should have given up.
    assert_eq!(extracted as usize, PAGES, "pages dead-lettered");
    assert_eq!(dlq.stats().await?.total, 0, "the facts DLQ is not empty");

    // Every 429 was answered to a page that then completed, and the trail says so: a
    // transient `failed` event naming the status, retried after the server's Retry-After.
    let failures: Vec<(Uuid, Value)> = sqlx::query_as(
        "SELECT source_id, detail FROM job_events
          WHERE stage = 'facts' AND kind = 'failed' ORDER BY id",
    )
    .fetch_all(&s.db.pool)
    .await?;
    assert_eq!(failures.len() as u64, RATE_LIMITED, "{failures:?}");
    for (source, detail) in &failures {
        assert_eq!(detail["kind"], "transient", "{detail}");
        let error = detail["error"].as_str().unwrap_or_default();
        assert!(error.contains("429"), "{detail}");
        assert!(
            detail["delay_ms"].as_u64().is_some_and(|d| d >= 1000),
            "the retry did not wait for Retry-After: {detail}"
        );
        assert_eq!(s.status(*source).await?, "extracted");
    }
    // Pages the killed worker held came back after their lease and were done by the
    // second: started twice without a failure in between.
    let held_at_kill = s
        .scalar(
            "SELECT count(*) FROM (
                 SELECT source_id FROM job_events WHERE stage = 'facts'
                  GROUP BY source_id
                 HAVING count(*) FILTER (WHERE kind = 'started') > 1
                    AND count(*) FILTER (WHERE kind = 'failed') = 0) h",
        )
        .await?;
    assert!(held_at_kill > 0, "no page was held by the killed worker");
    // The server answered the rate-limited requests, every page once more, and the pages
    // the killed worker had asked about but not stored again.
    assert!(server.requests() >= RATE_LIMITED + PAGES as u64);
    eprintln!(
        "{done_at_kill} pages done at the kill, {held_at_kill} held by it; {} requests; {elapsed:?}",
        server.requests()
    );
    assert!(
        server.max_in_flight() <= 8,
        "{} in flight",
        server.max_in_flight()
    );
    let spent = s
        .scalar_for("SELECT model_tokens_used FROM jobs WHERE id = $1", s.job_id)
        .await?;
    assert!(spent > 0, "the job's token count was not kept");
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    server.shutdown().await;
    Ok(())
}

/// A handler of the setup's services asking `server`.
fn handler(s: &Setup, server: &ModelServer) -> anyhow::Result<facts_worker::FactsHandler> {
    let chat = ChatClient::new(ChatConfig {
        timeout: Duration::from_secs(10),
        ..ChatConfig::new(server.url(), "loopback")
    })?;
    Ok(facts_worker::handler(&s.services, chat))
}

/// Runs the facts queue in process until `id` leaves `facts_pending`/`retrying`.
async fn settle(
    s: &Setup,
    handler: &facts_worker::FactsHandler,
    id: Uuid,
) -> anyhow::Result<String> {
    let queue = s.services.queue(Family::Facts);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = s.status(id).await?;
        if status != "facts_pending" && status != "retrying" {
            return Ok(status);
        }
        anyhow::ensure!(Instant::now() < deadline, "page still {status} after 30 s");
        if run_next(queue, handler, 4).await? == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_violating_the_schema_twice_fails_the_page_with_the_answer_kept()
-> anyhow::Result<()> {
    let s = setup(1).await?;
    let id = s.ids[0];
    // The title's value is a number where the schema says text.
    let server = ModelServer::start_fn(|_| {
        Reply::Json(json!({"note": {"title": {
            "value": 1234, "quote": "Widget report 0", "confidence": 0.5
        }}}))
    })
    .await;
    let handler = handler(&s, &server)?;
    assert_eq!(settle(&s, &handler, id).await?, "dead_lettered");
    assert_eq!(server.requests(), 2, "asked once more, then gave up");

    let rejected: Vec<Value> = sqlx::query_scalar(
        "SELECT detail FROM job_events
          WHERE source_id = $1 AND stage = 'facts' AND kind = 'rejected'",
    )
    .bind(id)
    .fetch_all(&s.db.pool)
    .await?;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let answer = rejected[0]["answer"].as_str().unwrap_or_default();
    assert!(
        answer.contains("1234"),
        "the answer is not kept: {}",
        rejected[0]
    );
    assert!(
        rejected[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("title")),
        "{}",
        rejected[0]
    );
    let dead: Vec<Value> = sqlx::query_scalar(
        "SELECT detail FROM job_events
          WHERE source_id = $1 AND stage = 'facts' AND kind = 'dead_lettered'",
    )
    .bind(id)
    .fetch_all(&s.db.pool)
    .await?;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["kind"], "permanent", "{}", dead[0]);
    assert_eq!(dead[0]["dlq"], "facts", "{}", dead[0]);

    let item = s
        .services
        .dlq(Family::Facts)
        .get(&id.to_string())
        .await?
        .expect("the page is in the facts DLQ");
    assert_eq!(item.error_kind, dlq_core::ErrorKind::Permanent);
    assert!(item.error.contains("did not conform"), "{}", item.error);
    let stored = s
        .scalar_for(
            "SELECT (SELECT count(*) FROM facts WHERE source_id = $1)
                  + (SELECT count(*) FROM fact_runs WHERE source_id = $1)",
            id,
        )
        .await?;
    assert_eq!(stored, 0, "a rejected page stores nothing");
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_answer_that_conforms_completes_the_page() -> anyhow::Result<()> {
    let s = setup(1).await?;
    let id = s.ids[0];
    let server = ModelServer::start(chat_client::loopback::responder(|req| match req.seq {
        0 => Reply::Content("Sure! The title is Widget report 0.".into()),
        _ => answer_for(req),
    }))
    .await;
    let handler = handler(&s, &server)?;
    assert_eq!(settle(&s, &handler, id).await?, "extracted");
    assert_eq!(server.requests(), 2);
    let (requests, grounded): (i32, i32) =
        sqlx::query_as("SELECT requests, grounded FROM fact_runs WHERE source_id = $1")
            .bind(id)
            .fetch_one(&s.db.pool)
            .await?;
    assert_eq!((requests, grounded), (2, 1));
    let rejected = s
        .scalar_for(
            "SELECT count(*) FROM job_events WHERE source_id = $1 AND kind = 'rejected'",
            id,
        )
        .await?;
    assert_eq!(rejected, 0, "one bad answer is not a rejection");
    server.shutdown().await;
    Ok(())
}
