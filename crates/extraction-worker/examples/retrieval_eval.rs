//! Retrieval quality on a corpus of pages: every page goes through the extraction worker,
//! then each page's title (as extracted) is the query, and a query scores a hit when the
//! top chunk belongs to that page. Prints hit@1 and MRR@10 (reciprocal rank of the page's
//! first chunk among the top 10, else 0) for full-text only, `hashing` vectors, model
//! vectors, and hybrid (full-text fused with each kind of vector).
//!
//! ```sh
//! deploy/local/install-model.sh
//! cargo run --release -p extraction-worker --example retrieval_eval -- <corpus dir>
//! cargo run --release -p extraction-worker --example retrieval_eval -- <corpus dir> --no-model
//! ```
//!
//! `--no-model` skips pass 2 (the model's rows), which takes minutes on a small machine.
//!
//! A second set of queries asks for passages rather than titles: from each page's cleaned
//! text, up to five sentences of 8 to 40 words spread evenly over the page; a query scores
//! when the top chunk belongs to its page. Titles are in every chunk's embedding text, so
//! title queries cannot tell whether the model read a chunk to its end; these can (a
//! sentence past the model's window is in no vector).
//!
//! The corpus directory holds `html/*.html` (or `*.html` directly). Pass 1 extracts and
//! embeds with `hashing`; pass 2 sends every source through the worker again with the model
//! (`embedding.minilm.model_dir`), which re-embeds each chunk, as `pipelinectl reembed`
//! does. A fresh database is used and dropped. Environment: as `extraction_bench`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use pipeline_core::Settings;
use pipeline_core::settings::EmbeddingBackend;
use pipeline_ops::messages::SourceMessage;
use pipeline_ops::{Family, Services};
use pipeline_search::{Mode, Searcher};
use pipeline_store::jobs::{self, NewScrapeJob, ProjectRef};
use sqlx::{Connection, Executor, PgConnection};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let no_model = std::env::args().skip(1).any(|a| a == "--no-model");
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .context("usage: retrieval_eval <corpus dir> [--no-model]")?;
    let html = Path::new(&dir).join("html");
    let dir = if html.is_dir() { html } else { dir.into() };
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "html"))
        .collect();
    files.sort();
    let bodies: Vec<String> = files
        .iter()
        .map(|p| Ok(String::from_utf8_lossy(&std::fs::read(p)?).into_owned()))
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(!bodies.is_empty(), "no .html files in {}", dir.display());
    pipeline_core::install_crypto_provider();

    let admin = std::env::var("BENCH_ADMIN_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("retrieval_eval_{}", Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin).await?;
    conn.execute(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .await?;
    let (base, _) = admin
        .rsplit_once('/')
        .context("admin URL without a database")?;
    let mut settings = Settings::load()?;
    settings.database.url = format!("{base}/{name}").into();
    settings.redis.key_prefix = format!("eval:{}:", Uuid::new_v4().simple());
    let result = eval(settings, &bodies, no_model).await;
    conn.execute(sqlx::AssertSqlSafe(format!(
        r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
    )))
    .await?;
    result
}

/// Runs the worker with `backend` until every source has a vector of its model per chunk.
async fn pass(
    settings: &Settings,
    services: &Services,
    messages: &[(String, serde_json::Value)],
    backend: EmbeddingBackend,
) -> anyhow::Result<Searcher> {
    let mut s = settings.clone();
    s.embedding.backend = backend;
    let embedder = extraction_worker::embedder_from_settings(&s, None)?;
    let model = embedder.model().to_owned();
    let batcher = extraction_worker::spawn_batcher(&s, embedder.clone());
    services
        .queue(Family::Extraction)
        .enqueue_bulk(messages)
        .await?;
    let cancel = CancellationToken::new();
    let worker = {
        let (services, cancel) = (services.clone(), cancel.clone());
        tokio::spawn(async move { extraction_worker::run(&services, batcher, cancel).await })
    };
    let started = Instant::now();
    loop {
        let depth = services.queue(Family::Extraction).depth().await?.total();
        if depth == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "gave up after an hour"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel.cancel();
    worker.await?;
    let (missing, total) =
        pipeline_store::search::reembed_progress(&services.db, &model, None).await?;
    println!(
        "pass {model}: {total} chunks, {missing} without a vector of it, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let searcher = Searcher::new(embedder);
    searcher.refresh(&services.db).await?;
    Ok(searcher)
}

async fn score(
    services: &Services,
    searcher: &Searcher,
    pages: &[(Uuid, String)],
    mode: Mode,
    label: &str,
) -> anyhow::Result<()> {
    let (mut hits, mut rr) = (0usize, 0f64);
    for (source, title) in pages {
        let found = searcher.search(&services.db, title, None, 10, mode).await?;
        if let Some(rank) = found.iter().position(|h| h.chunk.source_id == *source) {
            rr += 1.0 / (rank + 1) as f64;
            if rank == 0 {
                hits += 1;
            }
        }
    }
    let n = pages.len() as f64;
    println!("| {label} | {:.3} | {:.3} |", hits as f64 / n, rr / n);
    Ok(())
}

/// [`eval_on`], then every Redis key of the run deleted (its queue keys and counters).
async fn eval(settings: Settings, bodies: &[String], no_model: bool) -> anyhow::Result<()> {
    let services = Services::build(settings.clone())?;
    let result = eval_on(&services, settings, bodies, no_model).await;
    let keys = format!("{}*", services.settings.redis.key_prefix);
    services.redis.delete_matching(&keys).await?;
    result
}

async fn eval_on(
    services: &Services,
    settings: Settings,
    bodies: &[String],
    no_model: bool,
) -> anyhow::Result<()> {
    pipeline_store::migrate(&services.db).await?;
    let urls: Vec<String> = (0..bodies.len())
        .map(|i| format!("https://eval.example/page/{i}"))
        .collect();
    let job = jobs::create_scrape_job(
        &services.db,
        &NewScrapeJob {
            actor: pipeline_store::Actor::Cli,
            model_token_cap: None,
            project: ProjectRef::Name("eval"),
            source_group: None,
            urls: &urls,
            invalid: &[],
            priority: "normal",
            render: None,
        },
    )
    .await?;
    let ids: Vec<Uuid> = job.sources.iter().map(|s| s.source_id).collect();
    sqlx::query(
        "UPDATE sources s SET raw_content = u.body, content_type = 'text/html', status = 'scraped',
                http_status = 200, fetched_at = now()
         FROM UNNEST($1::uuid[], $2::text[]) AS u(id, body) WHERE s.id = u.id",
    )
    .bind(&ids)
    .bind(bodies)
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

    let hashing = pass(&settings, services, &messages, EmbeddingBackend::Hashing).await?;
    let pages: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, title FROM sources
         WHERE status = 'extracted' AND coalesce(btrim(title), '') <> '' ORDER BY id",
    )
    .fetch_all(&services.db)
    .await?;
    println!(
        "{} pages, {} extracted with a title (the queries)\n",
        bodies.len(),
        pages.len()
    );
    let passages = passage_queries(services).await?;
    println!("{} passage queries\n", passages.len());
    println!("| ranking | hit@1 | MRR@10 |\n|---|---|---|");
    score(services, &hashing, &pages, Mode::FullText, "full-text only").await?;
    score(
        services,
        &hashing,
        &pages,
        Mode::Vector,
        "`hashing` vectors",
    )
    .await?;
    score(
        services,
        &hashing,
        &pages,
        Mode::Hybrid,
        "hybrid, `hashing` vectors",
    )
    .await?;
    score(
        services,
        &hashing,
        &passages,
        Mode::Vector,
        "passages: `hashing` vectors",
    )
    .await?;
    if no_model {
        return Ok(());
    }
    let model = pass(&settings, services, &messages, EmbeddingBackend::Minilm).await?;
    score(
        services,
        &model,
        &pages,
        Mode::Vector,
        "model vectors (all-MiniLM-L6-v2)",
    )
    .await?;
    score(
        services,
        &model,
        &pages,
        Mode::Hybrid,
        "hybrid, model vectors",
    )
    .await?;
    score(
        services,
        &model,
        &passages,
        Mode::Vector,
        "passages: model vectors (all-MiniLM-L6-v2)",
    )
    .await?;
    Ok(())
}

/// Up to five sentences of 8 to 40 words per page, spread evenly over its cleaned text,
/// each with its page.
async fn passage_queries(services: &Services) -> anyhow::Result<Vec<(Uuid, String)>> {
    let pages: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, content FROM sources WHERE status = 'extracted' AND content IS NOT NULL
         ORDER BY id",
    )
    .fetch_all(&services.db)
    .await?;
    let mut out = Vec::new();
    for (id, content) in pages {
        let sentences: Vec<&str> = content
            .split_inclusive(['.', '!', '?', '\n'])
            .map(str::trim)
            .filter(|s| (8..=40).contains(&s.split_whitespace().count()))
            .collect();
        let take = sentences.len().min(5);
        for k in 0..take {
            out.push((id, sentences[k * sentences.len() / take].to_owned()));
        }
    }
    Ok(out)
}
