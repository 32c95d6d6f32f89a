//! Export throughput and memory: fills a scratch database with N chunks (generate_series in
//! SQL; 1,000 chunks per source), then streams them through the real
//! `GET /api/v1/export/chunks` route (the API served in this process on loopback, read by a
//! client that counts lines and drops them) as JSON Lines and CSV, first 10,000 rows (with
//! `limit`) and then all of them; then, on a second set of V chunks with 384-dimension
//! vectors, the same with `vectors=true`. For each run: rows/s, MB/s, and the peak RSS of
//! this process (server and client) during the run (VmHWM of /proc/self/status, reset
//! before each run through /proc/self/clear_refs).
//!
//! ```text
//! cargo run --release -p pipeline-api --example export_bench -- 1000000 200000
//! ```
//!
//! Arguments: chunks without vectors (default 1,000,000), chunks with vectors (default
//! 200,000). Needs Postgres (`BENCH_DATABASE_URL`, an admin URL, default
//! `postgres://postgres@127.0.0.1:5432/postgres`: a scratch database is created and dropped)
//! and Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`; the API's handles only, nothing
//! is written).

use std::time::{Duration, Instant};

use futures::StreamExt;
use pipeline_core::{Settings, Sources};
use pipeline_ops::Services;
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

const KEY: &str = "export-bench-key-0123456789";

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Resets VmHWM to the current RSS, so the next reading is the peak of what follows.
fn reset_peak() {
    // Best effort: without it the peaks only grow, which still bounds each run.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn run(
    client: &reqwest::Client,
    base: &str,
    label: &str,
    query: &str,
    expect: u64,
) -> anyhow::Result<()> {
    reset_peak();
    let started = Instant::now();
    let resp = client
        .get(format!("{base}/api/v1/export/chunks?{query}"))
        .header("X-API-Key", KEY)
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_success(), "{}", resp.status());
    let mut body = resp.bytes_stream();
    let (mut bytes, mut lines) = (0u64, 0u64);
    while let Some(piece) = body.next().await {
        let piece = piece?;
        bytes += piece.len() as u64;
        lines += piece.iter().filter(|&&b| b == b'\n').count() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    // JSON Lines: the rows and the trailer; CSV: the header and the rows (no text in the
    // bench's chunks holds a line break).
    let rows = lines - 1;
    anyhow::ensure!(rows == expect, "{label}: {rows} rows, expected {expect}");
    println!(
        "| {label:<34} | {rows:>9} | {secs:>7.1} | {:>9.0} | {:>6.1} | {:>8.1} |",
        rows as f64 / secs,
        bytes as f64 / secs / 1e6,
        peak_rss_mib()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let plain: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let with_vectors: u64 = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let admin_url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    pipeline_core::install_crypto_provider();

    let db_name = format!("export_bench_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await?;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            r#"CREATE DATABASE "{db_name}""#
        )))
        .await?;
    let db_url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db_name}"),
        None => anyhow::bail!("database URL without a database name"),
    };
    let outcome = bench(&db_url, &redis_url, plain, with_vectors).await;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            r#"DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)"#
        )))
        .await?;
    outcome
}

async fn bench(db_url: &str, redis_url: &str, plain: u64, with_vectors: u64) -> anyhow::Result<()> {
    let mut settings = Settings::load_from(&Sources::default())?;
    settings.database.url = db_url.to_owned().into();
    settings.redis.url = redis_url.to_owned().into();
    settings.redis.key_prefix = format!("bench:{}:", Uuid::new_v4().simple());
    settings.embedding.backend = pipeline_core::settings::EmbeddingBackend::Hashing;
    let services = Services::build(settings)?;
    let db = services.db.clone();
    pipeline_store::migrate(&db).await?;

    // The API starts on the empty database, so the search index it loads at start holds
    // nothing: the peaks below are the export's, not the index's.
    let cancel = tokio_util::sync::CancellationToken::new();
    let (addr, task) = pipeline_api::serve(
        services,
        Some(KEY.to_owned().into()),
        "127.0.0.1:0".parse()?,
        cancel.clone(),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let base = format!("http://{addr}");

    // The export reads no full-text index; without it the fill takes seconds, not minutes.
    sqlx::query("DROP INDEX extractions_search_tsv_idx")
        .execute(&db)
        .await?;
    let filled = Instant::now();
    let (project_plain, project_vectors) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query("INSERT INTO projects (id, name) VALUES ($1, 'plain'), ($2, 'vectors')")
        .bind(project_plain)
        .bind(project_vectors)
        .execute(&db)
        .await?;
    for (project, n) in [(project_plain, plain), (project_vectors, with_vectors)] {
        let sources = n.div_ceil(1000) as i64;
        sqlx::query(
            "INSERT INTO sources (id, project_id, uri, status, title)
             SELECT gen_random_uuid(), $1, 'https://bench.example/' || $1 || '/' || i,
                    'extracted', 'Page ' || i
               FROM generate_series(1, $2) AS i",
        )
        .bind(project)
        .bind(sources)
        .execute(&db)
        .await?;
        sqlx::query(
            "INSERT INTO extractions (id, source_id, project_id, extraction_type, data,
                                      chunk_index, embeddings_created)
             SELECT gen_random_uuid(), s.id, $1, 'text_chunk',
                    jsonb_build_object('text', 'Chunk ' || c || ' of ' || s.uri ||
                        ': the quick brown fox jumps over the lazy dog, \"twice\", ' ||
                        'and then some more words to make a paragraph of ordinary length.',
                        'heading_path', jsonb_build_array('Guide', 'Section ' || c)),
                    c, $3
               FROM (SELECT id, uri, row_number() OVER (ORDER BY id) AS n
                       FROM sources WHERE project_id = $1) s
              CROSS JOIN generate_series(0, 999) AS c
              WHERE (s.n - 1) * 1000 + c < $2",
        )
        .bind(project)
        .bind(n as i64)
        .bind(project == project_vectors)
        .execute(&db)
        .await?;
    }
    // One random 384-dimension vector per chunk of the vectors project.
    sqlx::query(
        "INSERT INTO extraction_embeddings (extraction_id, model, dims, embedding)
         SELECT x.id, 'bench-384', 384,
                ARRAY(SELECT (random() * 2 - 1)::real FROM generate_series(1, 384)
                       WHERE x.id IS NOT NULL)
           FROM extractions x WHERE x.project_id = $1",
    )
    .bind(project_vectors)
    .execute(&db)
    .await?;
    sqlx::query("VACUUM ANALYZE").execute(&db).await?;
    println!(
        "filled {plain} chunks and {with_vectors} chunks with vectors in {:.0} s",
        filled.elapsed().as_secs_f64()
    );

    let client = reqwest::Client::new();
    println!();
    println!(
        "| run                                |      rows |       s |    rows/s |   MB/s | peak RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let p = format!("project_id={project_plain}");
    let v = format!("project_id={project_vectors}");
    let small = 10_000.min(plain);
    run(
        &client,
        &base,
        "jsonl, 10k",
        &format!("{p}&limit={small}"),
        small,
    )
    .await?;
    run(&client, &base, "jsonl, all", &p, plain).await?;
    run(
        &client,
        &base,
        "csv, 10k",
        &format!("{p}&format=csv&limit={small}"),
        small,
    )
    .await?;
    run(
        &client,
        &base,
        "csv, all",
        &format!("{p}&format=csv"),
        plain,
    )
    .await?;
    let small = 10_000.min(with_vectors);
    run(
        &client,
        &base,
        "jsonl + vectors, 10k",
        &format!("{v}&vectors=true&limit={small}"),
        small,
    )
    .await?;
    run(
        &client,
        &base,
        "jsonl + vectors, all",
        &format!("{v}&vectors=true"),
        with_vectors,
    )
    .await?;
    run(
        &client,
        &base,
        "csv + vectors, all",
        &format!("{v}&vectors=true&format=csv"),
        with_vectors,
    )
    .await?;

    cancel.cancel();
    let _ = task.await;
    Ok(())
}
