//! The event trail at scale: builds a trail in a database of its own (bulk, with
//! generate_series), then measures the p95 of every query of docs/traceability.md for one
//! job and one source (and of the whole-pipeline ones), of the API's trace and job routes'
//! queries, event insert throughput into the partitioned table vs a plain one, and the time
//! to drop a month of events. The database is dropped at the end.
//!
//! ```text
//! cargo run --release -p pipeline-store --example trail_bench -- --sources 2000000
//! ```
//!
//! Options: `--sources N` (default 2,000,000; ten events each), `--job-size N` (sources per
//! job, default 200), `--samples N` (timed runs per query, default 200), `--database-url`
//! (an admin URL; default `postgres://postgres@127.0.0.1:5432/postgres`).

use std::time::{Duration, Instant};

use pipeline_store::{jobs, sources};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

struct Args {
    sources: i64,
    job_size: i64,
    samples: usize,
    database_url: String,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        sources: 2_000_000,
        job_size: 200,
        samples: 200,
        database_url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it
            .next()
            .ok_or_else(|| anyhow::anyhow!("{k} needs a value"))?;
        match k.as_str() {
            "--sources" => a.sources = v.parse()?,
            "--job-size" => a.job_size = v.parse()?,
            "--samples" => a.samples = v.parse()?,
            "--database-url" => a.database_url = v,
            _ => anyhow::bail!("unknown option {k}"),
        }
    }
    Ok(a)
}

/// Ten events per source over the last 120 days: nine in ten sources succeed after a
/// retry in each stage (and are submitted again by a later job); one in ten fails into the
/// DLQ three times, is redriven twice and parked. About 6% of the rows are DLQ events.
const LOAD: &str = "
INSERT INTO job_events (job_id, source_id, kind, stage, attempt, detail, at)
SELECT s.created_by_job_id, s.id,
       CASE WHEN s.parked
            THEN (ARRAY['enqueued','started','dead_lettered','redriven','started','dead_lettered',
                        'redriven','started','dead_lettered','parked'])[k + 1]
            ELSE (ARRAY['enqueued','started','failed','started','succeeded','started','failed',
                        'started','succeeded','enqueued'])[k + 1] END,
       CASE WHEN s.parked
            THEN (ARRAY['submit','scrape','scrape','requeue','scrape','scrape','requeue',
                        'scrape','scrape','requeue'])[k + 1]
            ELSE (ARRAY['submit','scrape','scrape','scrape','scrape','extraction','extraction',
                        'extraction','extraction','submit'])[k + 1] END,
       1,
       CASE WHEN s.parked AND k IN (2, 5, 8, 9)
            THEN '{\"error\": \"HTTP 503\", \"kind\": \"transient\", \"dlq\": \"scrape\"}'::jsonb
            WHEN s.parked AND k IN (3, 6)
            THEN '{\"dlq\": \"scrape\", \"retry_count\": 1, \"error_kind\": \"transient\"}'::jsonb
            ELSE '{}'::jsonb END,
       s.base + k * interval '7 seconds' + (k / 5) * interval '1 minute'
  FROM (SELECT id, created_by_job_id, status = 'parked' AS parked,
               now() - interval '120 days'
                   + (abs(hashtext(id::text)) % (120 * 86400 - 7200)) * interval '1 second' AS base
          FROM sources WHERE id >= $1 AND id < $2) s,
       generate_series(0, 9) k";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let db_name = format!("trail_bench_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&a.database_url).await?;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            r#"CREATE DATABASE "{db_name}""#
        )))
        .await?;
    let url = match a.database_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db_name}"),
        None => anyhow::bail!("database URL without a database name"),
    };
    let result = run(&a, &url).await;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            r#"DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)"#
        )))
        .await?;
    result
}

async fn run(a: &Args, url: &str) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await?;
    pipeline_store::migrate(&pool).await?;
    let njobs = (a.sources + a.job_size - 1) / a.job_size;
    println!(
        "trail: {} sources, {} jobs of {} sources, {} events",
        a.sources,
        njobs,
        a.job_size,
        a.sources * 10
    );

    let t = Instant::now();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO projects (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'bench');
         INSERT INTO jobs (id, project_id, type, status, result, created_at, completed_at)
         SELECT ('00000000-0000-0000-0001-' || lpad(to_hex(j), 12, '0'))::uuid,
                '00000000-0000-0000-0000-000000000001', 'scrape', 'completed_with_errors',
                jsonb_build_object('total', {size}, 'extracted', {size} * 9 / 10,
                                   'failed', {size} / 10, 'parked', {size} / 10,
                                   'terminal', {size}),
                now() - interval '120 days', now()
           FROM generate_series(0, {njobs} - 1) j;
         INSERT INTO sources (id, project_id, uri, status, created_by_job_id, last_error,
                              last_error_kind, created_at, updated_at)
         SELECT ('00000000-0000-0000-0002-' || lpad(to_hex(i), 12, '0'))::uuid,
                '00000000-0000-0000-0000-000000000001',
                'https://site' || (i % 1000) || '.example/page/' || i,
                CASE WHEN i % 10 = 0 THEN 'parked' ELSE 'extracted' END,
                ('00000000-0000-0000-0001-' || lpad(to_hex(i / {size}), 12, '0'))::uuid,
                CASE WHEN i % 10 = 0 THEN 'HTTP 503' END,
                CASE WHEN i % 10 = 0 THEN 'transient' END,
                now() - interval '120 days' + (i % 120) * interval '1 day',
                now() - interval '120 days' + (i % 120) * interval '1 day'
           FROM generate_series(0, {n} - 1) i;
         INSERT INTO job_sources (job_id, source_id) SELECT created_by_job_id, id FROM sources;",
        size = a.job_size,
        n = a.sources,
    )))
    .execute(&pool)
    .await?;
    println!("jobs and sources: {:.1} s", t.elapsed().as_secs_f64());

    // Partitions for the months the trail covers; indexes dropped during the bulk load and
    // built once afterwards (what a restore does; per-row index upkeep would triple it).
    sqlx::raw_sql(
        "SELECT pipeline_create_event_partition((now() - m * interval '1 month')::date)
           FROM generate_series(0, 5) m;
         DROP INDEX job_events_source_idx, job_events_job_idx, job_events_at_brin,
                    job_events_dlq_at_idx;",
    )
    .execute(&pool)
    .await?;
    let t = Instant::now();
    let chunk = 100_000i64;
    let mut lo = 0i64;
    while lo < a.sources {
        let hi = (lo + chunk).min(a.sources);
        sqlx::query(LOAD)
            .bind(source_uuid(lo))
            .bind(source_uuid(hi))
            .execute(&pool)
            .await?;
        lo = hi;
    }
    let loaded = t.elapsed();
    let t = Instant::now();
    sqlx::raw_sql(
        "SET maintenance_work_mem = '512MB';
         CREATE INDEX job_events_source_idx ON job_events (source_id, id);
         CREATE INDEX job_events_job_idx ON job_events (job_id, id);
         CREATE INDEX job_events_at_brin ON job_events USING brin (at);
         CREATE INDEX job_events_dlq_at_idx ON job_events (at)
             WHERE kind IN ('dead_lettered', 'redriven', 'parked', 'discarded');",
    )
    .execute(&pool)
    .await?;
    // VACUUM refuses a transaction block, which a multi-statement string is.
    sqlx::raw_sql("VACUUM ANALYZE").execute(&pool).await?;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM job_events")
        .fetch_one(&pool)
        .await?;
    println!(
        "events: {events} loaded in {:.1} s ({:.0} rows/s), indexed and analysed in {:.1} s",
        loaded.as_secs_f64(),
        events as f64 / loaded.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    let size: String = sqlx::query_scalar(
        "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid)))
           FROM pg_inherits WHERE inhparent = 'job_events'::regclass",
    )
    .fetch_one(&pool)
    .await?;
    println!("job_events on disk, indexes included: {size}");

    queries(a, &pool, njobs).await?;
    inserts(&pool).await?;
    drop_month(&pool).await?;
    Ok(())
}

fn source_uuid(i: i64) -> Uuid {
    Uuid::parse_str(&format!("00000000-0000-0000-0002-{i:012x}")).expect("a uuid")
}

fn job_uuid(j: i64) -> Uuid {
    Uuid::parse_str(&format!("00000000-0000-0000-0001-{j:012x}")).expect("a uuid")
}

/// A cheap deterministic spread over `0..n` (no rand dependency for one loop).
fn pick(k: usize, n: i64) -> i64 {
    ((k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) as i64 % n
}

fn p95(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(v[v.len() / 2]),
        ms(v[(v.len() * 95 / 100).min(v.len() - 1)]),
    )
}

async fn queries(a: &Args, pool: &PgPool, njobs: i64) -> anyhow::Result<()> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/traceability.md"
    ))?;
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in doc.lines() {
        match (&mut cur, line.trim_end()) {
            (None, "```sql") => cur = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                cur = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            _ => {}
        }
    }
    println!("\nquery (docs/traceability.md)       samples   p50 ms   p95 ms");
    for sql in &blocks {
        let name = sql
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("-- name: ");
        let global = !sql.contains(":'");
        let n = if global { 10.min(a.samples) } else { a.samples };
        let mut times = Vec::with_capacity(n);
        for k in 0..n {
            let i = pick(k, a.sources);
            let q = sql
                .trim()
                .trim_end_matches(';')
                .replace(":'source_id'", &format!("'{}'", source_uuid(i)))
                .replace(":'job_id'", &format!("'{}'", job_uuid(pick(k + 7, njobs))))
                .replace(
                    ":'url'",
                    &format!("'https://site{}.example/page/{i}'", i % 1000),
                );
            let t = Instant::now();
            sqlx::raw_sql(sqlx::AssertSqlSafe(q)).execute(pool).await?;
            times.push(t.elapsed());
        }
        let (p50, p95) = p95(times);
        println!("{name:<36} {n:>7} {p50:>8.2} {p95:>8.2}");
    }

    // The API's routes run these store calls: GET /api/v1/sources/{id}/events (the source
    // and its first page of 100 events) and GET /api/v1/jobs/{id} (the summary and the first
    // pages of 100 sources and of refused URLs).
    let mut trace = Vec::new();
    let mut job = Vec::new();
    for k in 0..a.samples {
        let t = Instant::now();
        let id = source_uuid(pick(k, a.sources));
        sources::get(pool, id).await?;
        sources::events_page(pool, id, 0, 100).await?;
        trace.push(t.elapsed());
        let t = Instant::now();
        let id = job_uuid(pick(k + 7, njobs));
        jobs::get_summary(pool, id).await?;
        jobs::sources_page(pool, id, 100, 0).await?;
        jobs::invalid_urls_page(pool, id, 100, 0).await?;
        job.push(t.elapsed());
    }
    let (p50, p95v) = p95(trace);
    println!(
        "{:<36} {:>7} {p50:>8.2} {p95v:>8.2}",
        "API trace (source + events)", a.samples
    );
    let (p50, p95v) = p95(job);
    println!(
        "{:<36} {:>7} {p50:>8.2} {p95v:>8.2}",
        "API job (summary + first pages)", a.samples
    );
    Ok(())
}

/// Insert throughput, partitioned vs a plain table with the same columns, keys and indexes:
/// batches of 1000 rows (the requeue daemon's shape) and single-row transactions (a worker's).
async fn inserts(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE job_events_plain (
             id bigserial PRIMARY KEY,
             job_id uuid REFERENCES jobs (id) ON DELETE SET NULL,
             source_id uuid REFERENCES sources (id) ON DELETE CASCADE,
             kind text NOT NULL, stage text, attempt integer, detail jsonb,
             at timestamptz NOT NULL DEFAULT now());
         CREATE INDEX ON job_events_plain (source_id, id);
         CREATE INDEX ON job_events_plain (job_id, id);
         CREATE INDEX ON job_events_plain USING brin (at);
         CREATE INDEX ON job_events_plain (at)
             WHERE kind IN ('dead_lettered', 'redriven', 'parked', 'discarded');",
    )
    .execute(pool)
    .await?;
    println!("\ninsert throughput          partitioned      plain   (rows/s)");
    for (label, batch, rounds) in [
        ("batches of 1000", 1000i64, 100i64),
        ("1 row per commit", 1, 3000),
    ] {
        let mut rates = Vec::new();
        for table in ["job_events", "job_events_plain"] {
            let sql = format!(
                "INSERT INTO {table} (job_id, source_id, kind, stage, attempt, detail)
                 SELECT ('00000000-0000-0000-0001-' || lpad(to_hex(($1 + g) / 200), 12, '0'))::uuid,
                        ('00000000-0000-0000-0002-' || lpad(to_hex($1 + g), 12, '0'))::uuid,
                        'started', 'scrape', 1, '{{}}'::jsonb
                   FROM generate_series(0, $2 - 1) g"
            );
            let t = Instant::now();
            for r in 0..rounds {
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(r * batch)
                    .bind(batch)
                    .execute(pool)
                    .await?;
            }
            rates.push((batch * rounds) as f64 / t.elapsed().as_secs_f64());
        }
        println!("{label:<24} {:>11.0} {:>10.0}", rates[0], rates[1]);
    }
    Ok(())
}

async fn drop_month(pool: &PgPool) -> anyhow::Result<()> {
    let (name, rows): (String, i64) = sqlx::query_as(
        "SELECT c.relname::text, c.reltuples::bigint
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'job_events'::regclass AND c.relname ~ '^job_events_y'
            AND c.reltuples > 0
          ORDER BY c.relname LIMIT 1 OFFSET 1",
    )
    .fetch_one(pool)
    .await?;
    let t = Instant::now();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {name}")))
        .execute(pool)
        .await?;
    println!(
        "\ndrop a month: DROP TABLE {name} (~{rows} events) took {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
