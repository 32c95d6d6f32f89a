//! Search latency at scale: builds N chunks with text and 384-dimension vectors in a
//! database of its own (bulk, with generate_series), loads the in-memory index as the API
//! does at start, then times queries in each mode and prints p50/p95. The database is
//! dropped at the end.
//!
//! ```text
//! cargo run --release -p pipeline-search --example search_bench -- --chunks 10000,100000
//! ```
//!
//! Options: `--chunks N,N` (default 10000,100000), `--queries N` (timed per mode, default
//! 200), `--database-url` (an admin URL; default `postgres://postgres@127.0.0.1:5432/postgres`).
//! Query vectors come from the `hashing` embedder (microseconds), so the figures are the
//! search itself; the model adds its own query-embedding time (see the embedder README).
//!
//! Chunk text is 60 words drawn from a vocabulary of [`VOCABULARY`] words with a Zipf-like
//! (log-uniform rank) distribution, as word frequencies are in natural text, and each query
//! is two or three words drawn from the same distribution. (A small vocabulary drawn
//! uniformly would put most words in every chunk, so every query would match a large share
//! of the corpus and full-text search would rank all of it: no corpus of pages does that.)

use std::time::{Duration, Instant};

use embedder::{Embedder, HashingConfig, HashingEmbedder};
use pipeline_search::{Mode, Searcher};
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

const WORDS: &str = "river market report prices rain workers city roads schools snow council \
    budget parks libraries hospitals engineers water bridge farmers grain mills region autumn \
    harvest summer storms power lines coast towns queue worker lease message redrive database \
    index search vector chunk page title author museum train station music theatre garden \
    forest mountain glacier ocean island desert volcano planet comet galaxy";

const SETUP: &str = "
INSERT INTO projects (id, name) VALUES ($1, 'bench');
INSERT INTO jobs (id, project_id, type, status) VALUES ($2, $1, 'scrape', 'completed');
INSERT INTO sources (id, project_id, uri, status, title, created_by_job_id)
SELECT md5('s' || s)::uuid, $1, 'https://bench.example/' || s, 'extracted', 'Page ' || s, $2
FROM generate_series(0, $3 / 10) s;
";

const CHUNKS: &str = "
INSERT INTO extractions (id, source_id, project_id, extraction_type, data, chunk_index,
                         embeddings_created, created_by_job_id)
SELECT md5('x' || i)::uuid, md5('s' || (i / 10))::uuid, $1, 'text_chunk',
       jsonb_build_object('text', array_to_string(ARRAY(
           SELECT (string_to_array($4, ' '))[LEAST($5, floor(exp(ln($5::float8)
                      * (abs(hashtext(i::text || ':' || g)) % 1000000) / 1000000.0))::int)]
           FROM generate_series(1, 60) g), ' ')),
       i % 10, true, $2
FROM generate_series(0, $3 - 1) i;
INSERT INTO extraction_embeddings (extraction_id, model, dims, embedding)
SELECT md5('x' || i)::uuid, 'hashing-v1-n2-d384', 384,
       ARRAY(SELECT (abs(hashtext(i::text || '/' || d)) % 2000 - 1000)::real / 1000
             FROM generate_series(1, 384) d)
FROM generate_series(0, $3 - 1) i;
";

/// Words in the generated corpus: the listed words, then made-up ones, by falling frequency.
const VOCABULARY: usize = 5_000;

fn vocabulary() -> Vec<String> {
    let mut words: Vec<String> = WORDS.split_whitespace().map(str::to_owned).collect();
    let mut k = 0;
    while words.len() < VOCABULARY {
        words.push(format!("term{k}"));
        k += 1;
    }
    words
}

/// A word's rank drawn like the corpus draws them (log-uniform), from a fixed sequence.
fn zipf_rank(i: usize, salt: u64, n: usize) -> usize {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    let u = (x % 1_000_000) as f64 / 1_000_000.0;
    ((n as f64).powf(u) as usize).clamp(1, n) - 1
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut sizes = vec![10_000i64, 100_000];
    let mut queries = 200usize;
    let mut admin_url = "postgres://postgres@127.0.0.1:5432/postgres".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{a} needs a value"))?;
        match a.as_str() {
            "--chunks" => sizes = v.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--queries" => queries = v.parse()?,
            "--database-url" => admin_url = v,
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    let vocabulary = vocabulary();
    let words: Vec<&str> = vocabulary.iter().map(String::as_str).collect();
    for n in sizes {
        let db_name = format!("search_bench_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                r#"CREATE DATABASE "{db_name}""#
            )))
            .await?;
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{db_name}"),
            None => anyhow::bail!("database URL without a database name"),
        };
        let result = run(&url, n, queries, &words).await;
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                r#"DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)"#
            )))
            .await?;
        result?;
    }
    Ok(())
}

async fn run(url: &str, n: i64, queries: usize, words: &[&str]) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await?;
    pipeline_store::migrate(&pool).await?;
    let (project, job) = (Uuid::now_v7(), Uuid::now_v7());
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    for stmt in SETUP.split(';').filter(|s| !s.trim().is_empty()) {
        sqlx::query(sqlx::AssertSqlSafe(stmt.to_owned()))
            .bind(project)
            .bind(job)
            .bind(n)
            .execute(&mut *tx)
            .await?;
    }
    for stmt in CHUNKS.split(';').filter(|s| !s.trim().is_empty()) {
        let q = sqlx::query(sqlx::AssertSqlSafe(stmt.to_owned()))
            .bind(project)
            .bind(job)
            .bind(n);
        let q = if stmt.contains("$4") {
            q.bind(words.join(" ")).bind(words.len() as i32)
        } else {
            q
        };
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    sqlx::query("ANALYZE").execute(&pool).await?;
    println!(
        "{n} chunks built in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let searcher = Searcher::new(Embedder::Hashing(HashingEmbedder::new(
        HashingConfig::default(),
    )));
    let started = Instant::now();
    let loaded = searcher.refresh(&pool).await?;
    println!(
        "  index loaded from Postgres: {loaded} vectors in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    for mode in [Mode::FullText, Mode::Vector, Mode::Hybrid] {
        let mut times = Vec::with_capacity(queries);
        let mut answered = 0;
        for i in 0..queries {
            let terms = 2 + i % 2;
            let q = (0..terms)
                .map(|t| words[zipf_rank(i, t as u64 + 1, words.len())])
                .collect::<Vec<_>>()
                .join(" ");
            let t = Instant::now();
            let hits = searcher.search(&pool, &q, Some(project), 10, mode).await?;
            times.push(t.elapsed());
            answered += usize::from(!hits.is_empty());
        }
        times.sort();
        println!(
            "  {mode:?}, k 10, {queries} queries ({answered} with hits): p50 {:.1} ms, p95 {:.1} ms",
            percentile(&times, 0.5),
            percentile(&times, 0.95)
        );
    }
    Ok(())
}
