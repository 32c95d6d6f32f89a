//! Throughput of the schema stage (the facts worker, Postgres included), next to the
//! extraction stage's on the same pages, and of the `llm` backend against a loopback model
//! server with a fixed answer time.
//!
//! ```sh
//! cargo run --release -p facts-worker --example facts_bench -- \
//!     [--pages 2000] [--corpus DIR] [--levels 8,32,128] [--per-slot 4] [--delay-ms 200]
//! ```
//!
//! 1. **markup**: `--pages` sources of a project whose schema is the `article` template,
//!    `facts_pending`, their HTML cycled from `DIR/html/*.html` (or `DIR/*.html`; the
//!    article-extraction benchmark corpus) or, without `--corpus`, generated pages with
//!    JSON-LD and OpenGraph; one facts message each; `facts_worker::run` until every source
//!    is `extracted`.
//! 2. **extraction**: the same pages as `scraped` sources of a project without a schema,
//!    through `extraction_worker::run` with the `hashing` embedder (the stage before; the
//!    schema stage must not be slower).
//! 3. **llm**: for each concurrency of `--levels`, `--per-slot` × concurrency pages of one
//!    chunk each, a small `llm` schema (one text field), and a loopback model server
//!    (`chat_client::loopback::ModelServer`, standing in for a model server: it runs no
//!    model) answering every request after `--delay-ms` with a value quoting the page.
//!    Reports pages/s, the most requests the server saw at once, and the ideal
//!    (concurrency / answer time).
//!
//! Each measurement runs in a fresh database with its own Redis key prefix; both are
//! removed at the end. The clock runs from the worker's start until the last source is
//! `extracted` (or dead-lettered, which is reported).
//!
//! Environment: the settings' variables (`PIPELINE__DATABASE__MAX_CONNECTIONS`,
//! `PIPELINE__EXTRACTION__CONCURRENCY`, `PIPELINE__FACTS__CONCURRENCY` for the markup run,
//! ...), `BENCH_ADMIN_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and `REDIS_URL`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use chat_client::loopback::{ModelServer, Reply};
use pipeline_core::Settings;
use pipeline_core::settings::EmbeddingBackend;
use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_ops::messages::SourceMessage;
use pipeline_ops::schemas::{self, SchemaSource};
use pipeline_store::jobs::{self, NewScrapeJob, ProjectRef};
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The `llm` run's schema: one text field the model answers with a quote.
const LLM_SCHEMA: &str = "name: note
backend: llm
description: A short report page
fields:
  title: {type: text, description: The report's title as the page states it}
";

struct Args {
    pages: usize,
    corpus: Option<String>,
    levels: Vec<usize>,
    per_slot: usize,
    delay: Duration,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        pages: 2000,
        corpus: None,
        levels: vec![8, 32, 128],
        per_slot: 4,
        delay: Duration::from_millis(200),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--pages" => args.pages = value()?.parse()?,
            "--corpus" => args.corpus = Some(value()?),
            "--levels" => {
                args.levels = value()?
                    .split(',')
                    .map(|l| l.trim().parse())
                    .collect::<Result<_, _>>()?;
            }
            "--per-slot" => args.per_slot = value()?.parse()?,
            "--delay-ms" => args.delay = Duration::from_millis(value()?.parse()?),
            other => anyhow::bail!(
                "unknown argument {other} (expected --pages, --corpus, --levels, --per-slot, --delay-ms)"
            ),
        }
    }
    anyhow::ensure!(args.pages > 0 && args.per_slot > 0, "nothing to process");
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let bodies = match &args.corpus {
        Some(dir) => read_corpus(dir)?,
        None => (0..args.pages.min(500)).map(generated_page).collect(),
    };
    anyhow::ensure!(!bodies.is_empty(), "no pages to process");
    pipeline_core::install_crypto_provider();
    let base = Settings::load()?;
    let mut rows = Vec::new();

    let markup = with_fresh_env(
        &base,
        |s| s,
        |services| markup_run(services, &bodies, args.pages),
    )
    .await?;
    let kib = bodies.iter().map(String::len).sum::<usize>() as f64 / bodies.len() as f64 / 1024.0;
    let source = if args.corpus.is_some() {
        format!("{} corpus pages, {kib:.1} KiB average", bodies.len())
    } else {
        format!("generated pages, {kib:.1} KiB average")
    };
    rows.push(vec![
        "facts, markup (`article` template)".to_owned(),
        format!("{} ({source})", args.pages),
        base.facts.concurrency.to_string(),
        format!("{:.2}", markup.elapsed.as_secs_f64()),
        format!("{:.1}", markup.rate()),
        format!(
            "{:.2} values/page ({:.0}% grounded){}",
            markup.values as f64 / args.pages as f64,
            100.0 * markup.grounded as f64 / markup.values.max(1) as f64,
            markup.failed_note()
        ),
    ]);
    print_row(&rows[rows.len() - 1]);

    let extraction = with_fresh_env(
        &base,
        |mut s| {
            s.embedding.backend = EmbeddingBackend::Hashing;
            s
        },
        |services| extraction_run(services, &bodies, args.pages),
    )
    .await?;
    rows.push(vec![
        "extraction, `hashing` embedder (the stage before)".to_owned(),
        format!("{} (same pages)", args.pages),
        base.extraction.concurrency.to_string(),
        format!("{:.2}", extraction.elapsed.as_secs_f64()),
        format!("{:.1}", extraction.rate()),
        format!(
            "{:.1} chunks/page{}",
            extraction.values as f64 / args.pages as f64,
            extraction.failed_note()
        ),
    ]);
    print_row(&rows[rows.len() - 1]);

    for &level in &args.levels {
        let pages = level * args.per_slot;
        let server = ModelServer::start_fn({
            let delay = args.delay;
            move |_req| {
                Reply::delayed(
                    delay,
                    Reply::Json(json!({"note": {"title": {
                        "value": "Quarterly widget report",
                        "quote": "The title of this report is Quarterly widget report",
                        "confidence": 0.9
                    }}})),
                )
            }
        })
        .await;
        let url = server.url();
        let run = with_fresh_env(
            &base,
            |mut s| {
                s.facts.concurrency = level;
                s.facts.llm.url = url.clone();
                s.facts.llm.model = "loopback".into();
                s
            },
            |services| llm_run(services, pages),
        )
        .await?;
        let ideal = level as f64 / args.delay.as_secs_f64();
        rows.push(vec![
            format!(
                "facts, llm, loopback server answering in {} ms",
                args.delay.as_millis()
            ),
            format!("{pages} (1 chunk each)"),
            level.to_string(),
            format!("{:.2}", run.elapsed.as_secs_f64()),
            format!("{:.1}", run.rate()),
            format!(
                "ideal {ideal:.0} pages/s ({:.0}%); {} requests, at most {} in flight{}",
                100.0 * run.rate() / ideal,
                server.requests(),
                server.max_in_flight(),
                run.failed_note()
            ),
        ]);
        print_row(&rows[rows.len() - 1]);
        server.shutdown().await;
    }

    println!();
    println!(
        "database pool: {} connections; queue reserve batch {}",
        base.database.max_connections, base.queue.reserve_batch
    );
    println!("| run | pages | concurrency | seconds | pages/s | notes |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    for row in &rows {
        println!("| {} |", row.join(" | "));
    }
    Ok(())
}

fn print_row(row: &[String]) {
    eprintln!("{}", row.join("  ·  "));
}

/// What one measured run did.
struct Measured {
    pages: usize,
    elapsed: Duration,
    /// Values (facts rows), or chunks for the extraction run.
    values: i64,
    grounded: i64,
    failed: i64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.pages as f64 / self.elapsed.as_secs_f64()
    }

    fn failed_note(&self) -> String {
        if self.failed > 0 {
            format!("; {} pages dead-lettered", self.failed)
        } else {
            String::new()
        }
    }
}

/// Runs `f` over services on a fresh database and Redis prefix, then removes both.
async fn with_fresh_env<F, Fut>(
    base: &Settings,
    tweak: impl FnOnce(Settings) -> Settings,
    f: F,
) -> anyhow::Result<Measured>
where
    F: FnOnce(Services) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Measured>>,
{
    let admin = std::env::var("BENCH_ADMIN_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("facts_bench_{}", Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin).await?;
    conn.execute(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .await?;
    let (root, _) = admin
        .rsplit_once('/')
        .context("admin URL without a database")?;
    let mut settings = tweak(base.clone());
    settings.database.url = format!("{root}/{name}").into();
    let prefix = format!("bench:{}:", Uuid::new_v4().simple());
    settings.redis.key_prefix = prefix.clone();
    let result = async {
        let services = Services::build(settings)?;
        pipeline_store::migrate(&services.db).await?;
        let redis = services.redis.clone();
        let db = services.db.clone();
        let out = f(services).await;
        db.close().await;
        redis.delete_matching(&format!("{prefix}*")).await?;
        out
    }
    .await;
    conn.execute(sqlx::AssertSqlSafe(format!(
        r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
    )))
    .await?;
    result
}

/// Creates a job of `pages` sources in `project`; returns the job and the source ids.
async fn sources_of(
    db: &PgPool,
    project: ProjectRef<'_>,
    pages: usize,
) -> anyhow::Result<(Uuid, Vec<Uuid>)> {
    let urls: Vec<String> = (0..pages)
        .map(|i| format!("https://bench.example/page/{i}"))
        .collect();
    let job = jobs::create_scrape_job(
        db,
        &NewScrapeJob {
            actor: pipeline_store::Actor::Cli,
            model_token_cap: None,
            project,
            source_group: None,
            urls: &urls,
            invalid: &[],
            priority: "normal",
            render: None,
        },
    )
    .await?;
    Ok((
        job.job_id,
        job.sources.iter().map(|s| s.source_id).collect(),
    ))
}

async fn enqueue(
    services: &Services,
    family: Family,
    job_id: Uuid,
    ids: &[Uuid],
) -> anyhow::Result<()> {
    let messages: Vec<(String, serde_json::Value)> = ids
        .iter()
        .map(|&source_id| {
            let m = SourceMessage {
                source_id,
                job_id: Some(job_id),
                url: None,
                project_id: None,
                priority: Default::default(),
                render: None,
            };
            (m.id(), m.body())
        })
        .collect();
    for batch in messages.chunks(1000) {
        services.queue(family).enqueue_bulk(batch).await?;
    }
    Ok(())
}

/// Waits (at most 30 minutes) until every source is `extracted` or `dead_lettered`;
/// returns the time since `started` and the dead-lettered count.
async fn wait_done(db: &PgPool, pages: usize, started: Instant) -> anyhow::Result<(Duration, i64)> {
    loop {
        let (done, failed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status IN ('extracted', 'dead_lettered')),
                    count(*) FILTER (WHERE status = 'dead_lettered')
               FROM sources",
        )
        .fetch_one(db)
        .await?;
        if done as usize >= pages {
            return Ok((started.elapsed(), failed));
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "gave up after 30 minutes ({done}/{pages} done)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn markup_run(
    services: Services,
    bodies: &[String],
    pages: usize,
) -> anyhow::Result<Measured> {
    let (project, _) = schemas::create_project(
        &services.db,
        "bench-markup",
        Some(SchemaSource::Template("article")),
    )
    .await?;
    let (job_id, ids) = sources_of(&services.db, ProjectRef::Id(project.id), pages).await?;
    let contents: Vec<&str> = (0..pages)
        .map(|i| bodies[i % bodies.len()].as_str())
        .collect();
    sqlx::query(
        "UPDATE sources s SET raw_content = u.body, content_type = 'text/html',
                content = 'The page''s main text, as the extraction stored it.',
                status = 'facts_pending', http_status = 200, fetched_at = now()
           FROM UNNEST($1::uuid[], $2::text[]) AS u(id, body) WHERE s.id = u.id",
    )
    .bind(&ids)
    .bind(&contents)
    .execute(&services.db)
    .await?;
    enqueue(&services, Family::Facts, job_id, &ids).await?;

    let chat = facts_worker::chat_client_from_settings(&services.settings)?;
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let worker = {
        let services = services.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move { facts_worker::run(&services, chat, cancel).await })
    };
    let (elapsed, failed) = wait_done(&services.db, pages, started).await?;
    cancel.cancel();
    worker.await?;
    let (values, grounded): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE grounded) FROM facts")
            .fetch_one(&services.db)
            .await?;
    Ok(Measured {
        pages,
        elapsed,
        values,
        grounded,
        failed,
    })
}

async fn extraction_run(
    services: Services,
    bodies: &[String],
    pages: usize,
) -> anyhow::Result<Measured> {
    let (job_id, ids) =
        sources_of(&services.db, ProjectRef::Name("bench-extraction"), pages).await?;
    let contents: Vec<&str> = (0..pages)
        .map(|i| bodies[i % bodies.len()].as_str())
        .collect();
    sqlx::query(
        "UPDATE sources s SET raw_content = u.body, content_type = 'text/html', status = 'scraped',
                http_status = 200, fetched_at = now()
           FROM UNNEST($1::uuid[], $2::text[]) AS u(id, body) WHERE s.id = u.id",
    )
    .bind(&ids)
    .bind(&contents)
    .execute(&services.db)
    .await?;
    enqueue(&services, Family::Extraction, job_id, &ids).await?;

    let batcher = extraction_worker::batcher_from_settings(&services.settings)?;
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let worker = {
        let services = services.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move { extraction_worker::run(&services, batcher, cancel).await })
    };
    let (elapsed, failed) = wait_done(&services.db, pages, started).await?;
    cancel.cancel();
    worker.await?;
    let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM extractions")
        .fetch_one(&services.db)
        .await?;
    Ok(Measured {
        pages,
        elapsed,
        values: chunks,
        grounded: 0,
        failed,
    })
}

async fn llm_run(services: Services, pages: usize) -> anyhow::Result<Measured> {
    let (project, _) = schemas::create_project(
        &services.db,
        "bench-llm",
        Some(SchemaSource::Text(LLM_SCHEMA)),
    )
    .await?;
    let (job_id, ids) = sources_of(&services.db, ProjectRef::Id(project.id), pages).await?;
    let texts: Vec<String> = (0..pages)
        .map(|i| {
            format!(
                "Report {i}. The title of this report is Quarterly widget report. \
                 Sales of widgets grew in every region, and the team shipped on time."
            )
        })
        .collect();
    sqlx::query(
        "UPDATE sources s SET raw_content = '<html><body>' || u.text || '</body></html>',
                content_type = 'text/html', content = u.text, status = 'facts_pending',
                http_status = 200, fetched_at = now()
           FROM UNNEST($1::uuid[], $2::text[]) AS u(id, text) WHERE s.id = u.id",
    )
    .bind(&ids)
    .bind(&texts)
    .execute(&services.db)
    .await?;
    sqlx::query(
        "INSERT INTO extractions (id, source_id, project_id, extraction_type, chunk_index, data)
         SELECT gen_random_uuid(), u.id, $3, 'text_chunk', 0, jsonb_build_object('text', u.text)
           FROM UNNEST($1::uuid[], $2::text[]) AS u(id, text)",
    )
    .bind(&ids)
    .bind(&texts)
    .bind(project.id)
    .execute(&services.db)
    .await?;
    enqueue(&services, Family::Facts, job_id, &ids).await?;

    let chat = facts_worker::chat_client_from_settings(&services.settings)?;
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let worker = {
        let services = services.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move { facts_worker::run(&services, chat, cancel).await })
    };
    let (elapsed, failed) = wait_done(&services.db, pages, started).await?;
    cancel.cancel();
    worker.await?;
    let (values, grounded): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE grounded) FROM facts")
            .fetch_one(&services.db)
            .await?;
    anyhow::ensure!(
        grounded == values,
        "{} of {values} model values were not grounded",
        values - grounded
    );
    Ok(Measured {
        pages,
        elapsed,
        values,
        grounded,
        failed,
    })
}

/// The `.html` files of `DIR/html`, or of `DIR` itself when it has no `html` folder.
fn read_corpus(dir: &str) -> anyhow::Result<Vec<String>> {
    let html = Path::new(dir).join("html");
    let dir = if html.is_dir() {
        html
    } else {
        Path::new(dir).to_path_buf()
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "html"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p)?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect()
}

/// A news-like page: navigation and footer boilerplate, JSON-LD and OpenGraph
/// declarations, an article of five sections of varied paragraphs.
fn generated_page(seed: usize) -> String {
    const WORDS: &[&str] = &[
        "queue",
        "lease",
        "worker",
        "retry",
        "latency",
        "throughput",
        "storage",
        "network",
        "replica",
        "shard",
        "index",
        "vector",
        "cluster",
        "backoff",
        "deadline",
        "request",
        "answer",
        "budget",
        "capacity",
        "failure",
        "recovery",
        "snapshot",
        "journal",
        "cache",
        "the",
        "a",
        "of",
        "and",
        "to",
        "in",
        "for",
        "with",
        "when",
        "after",
        "before",
        "while",
    ];
    let mut state = (seed as u64 + 1).wrapping_mul(6364136223846793005);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let mut article = String::new();
    for section in 0..5 {
        article.push_str(&format!("<h2>Part {section} of story {seed}</h2>"));
        for _ in 0..3 {
            let n = 40 + next() % 60;
            let words: Vec<&str> = (0..n).map(|_| WORDS[next() % WORDS.len()]).collect();
            article.push_str(&format!("<p>{}.</p>", words.join(" ")));
        }
    }
    let day = 1 + seed % 28;
    format!(
        r#"<!DOCTYPE html><html lang="en"><head><title>Story {seed} | Bench News</title>
<meta property="og:title" content="Story {seed}">
<meta property="og:site_name" content="Bench News">
<meta property="og:type" content="article">
<meta property="article:published_time" content="2025-03-{day:02}T08:00:00Z">
<meta name="description" content="The story number {seed} of the bench.">
<script type="application/ld+json">{{"@context":"https://schema.org","@type":"NewsArticle",
"headline":"Story {seed}","datePublished":"2025-03-{day:02}T08:00:00Z",
"author":{{"@type":"Person","name":"Writer {w}"}},"publisher":{{"@type":"Organization","name":"Bench News"}},
"keywords":["systems","story {seed}"]}}</script>
</head><body><nav><a href="/">Home</a> <a href="/world">World</a> <a href="/tech">Tech</a></nav>
<article><h1>Story {seed}</h1><p class="byline">By Writer {w}</p>{article}
<p>Contact desk{w}@bench.example or call +1 (555) 010-{p:04}.</p></article>
<footer>Copyright Bench News. All rights reserved.</footer></body></html>"#,
        w = seed % 17,
        p = seed % 10_000,
    )
}
