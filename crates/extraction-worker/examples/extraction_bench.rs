//! Throughput of the whole extraction worker (extraction, chunking, entities, embeddings and
//! every Postgres write), in pages per second, at the configured concurrency.
//!
//! ```sh
//! cargo run --release -p extraction-worker --example extraction_bench -- [PAGES] [CORPUS_DIR]
//! ```
//!
//! PAGES (default 300) pages are generated, or read from the `.html` files of CORPUS_DIR
//! (cycled when there are fewer). They are stored as scraped sources of one job in a fresh
//! database, enqueued, and consumed by the worker's runner; the clock runs from the first
//! reservation until the last source is `extracted`. The database and the Redis keys are
//! removed at the end.
//!
//! Prints how many vectors came from the embedding cache (`PIPELINE__EMBEDDING__CACHE__MAX_ENTRIES=0`
//! turns it off): corpus pages cycled repeat exactly, so from the second cycle on every
//! chunk is a cache hit.
//!
//! Environment: the settings' variables (`PIPELINE__EXTRACTION__CONCURRENCY`,
//! `PIPELINE__EMBEDDING__BACKEND`, ...), `BENCH_ADMIN_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and `REDIS_URL`.

use std::time::{Duration, Instant};

use anyhow::Context;
use pipeline_core::Settings;
use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_ops::messages::SourceMessage;
use pipeline_store::jobs::{self, NewScrapeJob, ProjectRef};
use sqlx::{Connection, Executor, PgConnection};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let pages: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(300);
    let corpus = args.next();
    let bodies = match &corpus {
        Some(dir) => read_corpus(dir)?,
        None => (0..pages.min(500)).map(generated_page).collect(),
    };
    anyhow::ensure!(!bodies.is_empty(), "no pages to process");
    pipeline_core::install_crypto_provider();

    let admin = std::env::var("BENCH_ADMIN_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("extraction_bench_{}", Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin).await?;
    conn.execute(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .await?;
    let (base, _) = admin
        .rsplit_once('/')
        .context("admin URL without a database")?;
    let mut settings = Settings::load()?;
    settings.database.url = format!("{base}/{name}").into();
    settings.redis.key_prefix = format!("bench:{}:", Uuid::new_v4().simple());
    let result = bench(settings, &bodies, pages, corpus.is_some()).await;
    conn.execute(sqlx::AssertSqlSafe(format!(
        r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
    )))
    .await?;
    result
}

async fn bench(
    settings: Settings,
    bodies: &[String],
    pages: usize,
    from_corpus: bool,
) -> anyhow::Result<()> {
    let prefix = settings.redis.key_prefix.clone();
    let services = Services::build(settings)?;
    pipeline_store::migrate(&services.db).await?;
    let urls: Vec<String> = (0..pages)
        .map(|i| format!("https://bench.example/page/{i}"))
        .collect();
    let job = jobs::create_scrape_job(
        &services.db,
        &NewScrapeJob {
            actor: pipeline_store::Actor::Cli,
            model_token_cap: None,
            project: ProjectRef::Name("bench"),
            source_group: None,
            urls: &urls,
            invalid: &[],
            priority: "normal",
            render: None,
        },
    )
    .await?;
    let ids: Vec<Uuid> = job.sources.iter().map(|s| s.source_id).collect();
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
    let messages: Vec<(String, serde_json::Value)> = ids
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
    let queue = services.queue(Family::Extraction).clone();
    queue.enqueue_bulk(&messages).await?;
    let bytes: usize = contents.iter().map(|c| c.len()).sum();

    let batcher = extraction_worker::batcher_from_settings(&services.settings)?;
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let worker = {
        let services = services.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move { extraction_worker::run(&services, batcher, cancel).await })
    };
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sources WHERE status IN ('extracted', 'dead_lettered')",
        )
        .fetch_one(&services.db)
        .await?;
        if done as usize >= pages {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "gave up after 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    cancel.cancel();
    worker.await?;

    let (extracted, chunks, vectors, links): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM sources WHERE status = 'extracted'),
                (SELECT count(*) FROM extractions),
                (SELECT count(*) FROM extraction_embeddings),
                (SELECT count(*) FROM extraction_entities)",
    )
    .fetch_one(&services.db)
    .await?;
    let s = &services.settings;
    println!(
        "pages: {pages} ({}; {:.1} KiB average), concurrency {}, embedding {:?} (batch {}, window {} ms), chunks {}/{}",
        if from_corpus { "corpus" } else { "generated" },
        bytes as f64 / pages as f64 / 1024.0,
        s.extraction.concurrency,
        s.embedding.backend,
        s.embedding.batch_size,
        s.embedding.batch_window_ms,
        s.extraction.chunk_max_chars,
        s.extraction.chunk_overlap_chars,
    );
    let (embedded, cached): (i64, i64) = sqlx::query_as(
        "SELECT coalesce(sum((detail->>'embedded')::bigint), 0)::bigint,
                coalesce(sum((detail->>'embedded_from_cache')::bigint), 0)::bigint
           FROM job_events WHERE kind = 'succeeded'",
    )
    .fetch_one(&services.db)
    .await?;
    println!(
        "extracted {extracted}/{pages}; {chunks} extractions, {vectors} vectors, {links} entity links"
    );
    println!(
        "embedding cache (max_entries {}): {cached} of {embedded} vectors from the cache, {} computed",
        s.embedding.cache.max_entries,
        embedded - cached
    );
    println!(
        "{:.2} s, {:.1} pages/s, {:.1} chunks/s",
        elapsed.as_secs_f64(),
        pages as f64 / elapsed.as_secs_f64(),
        chunks as f64 / elapsed.as_secs_f64()
    );
    delete_keys(&services.redis, &prefix).await?;
    Ok(())
}

fn read_corpus(dir: &str) -> anyhow::Result<Vec<String>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
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

/// A news-like page: navigation and footer boilerplate, a JSON-LD block, an article of
/// five sections of varied paragraphs, and contact details.
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
    format!(
        r#"<!DOCTYPE html><html><head><title>Story {seed} | Bench News</title>
<script type="application/ld+json">{{"@type":"NewsArticle","headline":"Story {seed}",
"author":{{"@type":"Person","name":"Writer {w}"}},"publisher":{{"@type":"Organization","name":"Bench News"}}}}</script>
</head><body><nav><a href="/">Home</a> <a href="/world">World</a> <a href="/tech">Tech</a></nav>
<article><h1>Story {seed}</h1>{article}
<p>Contact desk{w}@bench.example or call +1 (555) 010-{p:04}.</p></article>
<aside><h3>Related</h3><ul><li><a href="/a">Another story</a></li><li><a href="/b">More</a></li></ul></aside>
<footer>Copyright Bench News. All rights reserved.</footer></body></html>"#,
        w = seed % 17,
        p = seed % 10_000,
    )
}

async fn delete_keys(pool: &dlq_core::RedisPool, prefix: &str) -> anyhow::Result<()> {
    pool.delete_matching(&format!("{prefix}*")).await?;
    Ok(())
}
