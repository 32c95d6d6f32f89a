//! Server time of the console's heaviest pages at scale: the overview, the scrape DLQ page
//! (first page, a deep page, and filtered by kind and by job) with 1,000,000 DLQ items, and
//! a job's page (first page, and filtered by status) for a job of 100,000 sources.
//!
//! ```text
//! cargo run --release -p pipeline-api --example console_bench
//! ```
//!
//! Uses its own database (`console_bench_<pid>`, created from `TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and its own Redis key prefix
//! (`console_bench:<pid>:` on `TEST_REDIS_URL`, default `redis://127.0.0.1:6379/0`), and
//! removes both at the end. The data is generated in bulk: DLQ items through dlq-core's own
//! push function, 5,000 per script call; sources with `generate_series`. Each page is asked
//! for 200 times over loopback with a signed-in session; the time is from sending the
//! request to the last byte of the answer.

use std::time::{Duration, Instant};

use anyhow::Context;
use dlq_core::{DlqItem, ErrorKind, FamilyKeys, LUA_PRELUDE, LUA_PUSH_FN};
use pipeline_core::Settings;
use pipeline_ops::Services;
use sqlx::Executor;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const DLQ_ITEMS: usize = 1_000_000;
const JOB_SOURCES: i64 = 100_000;
const BATCH: usize = 5_000;
const RUNS: usize = 200;
const KEY: &str = "bench-key";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pipeline_core::install_crypto_provider();
    let admin = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let redis_url =
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let pid = std::process::id();
    let db_name = format!("console_bench_{pid}");
    let prefix = format!("console_bench:{pid}:");
    let admin_pool = sqlx::PgPool::connect(&admin).await?;
    admin_pool
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
        .await?;
    let db_url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db_name}"),
        None => anyhow::bail!("TEST_DATABASE_URL has no database part"),
    };
    let result = run(&db_url, &redis_url, &prefix).await;
    // Clean up whatever happened.
    let redis = dlq_core::build_pool(&redis_url, 1, Duration::from_secs(30))?;
    let removed = unlink_prefix(&redis, &prefix).await;
    admin_pool
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"
        )))
        .await?;
    println!(
        "cleaned up: database {db_name} dropped, {} Redis keys removed",
        removed?
    );
    result
}

async fn run(db_url: &str, redis_url: &str, prefix: &str) -> anyhow::Result<()> {
    let mut settings = Settings::load()?;
    settings.database.url = db_url.to_owned().into();
    settings.redis.url = redis_url.to_owned().into();
    settings.redis.key_prefix = prefix.to_owned();
    settings.redis.response_timeout_ms = 60_000;
    let services = Services::build(settings)?;
    pipeline_store::migrate(&services.db).await?;

    let started = Instant::now();
    let job = seed_job(&services.db).await?;
    println!(
        "seeded a job of {JOB_SOURCES} sources in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let dlq_job = seed_dlq(&services, prefix).await?;
    println!(
        "seeded {DLQ_ITEMS} scrape DLQ items in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let stats = services.dlq(pipeline_ops::Family::Scrape).stats().await?;
    anyhow::ensure!(stats.total == DLQ_ITEMS as u64, "{stats:?}");

    let cancel = CancellationToken::new();
    let (addr, _task) = pipeline_api::serve(
        services.clone(),
        Some(KEY.to_owned().into()),
        "127.0.0.1:0".parse()?,
        cancel.clone(),
    )
    .await?;
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let cookie = sign_in(&client, &base).await?;
    // A cursor half-way down the DLQ, for a deep page.
    let deep = {
        let dlq = services.dlq(pipeline_ops::Family::Scrape);
        let mut cursor = None;
        for _ in 0..(DLQ_ITEMS / 2 / 1000) {
            cursor = dlq.list(1000, cursor.as_deref()).await?.next_cursor;
        }
        cursor.context("no deep cursor")?
    };
    let pages = [
        ("overview", "/ui/".to_owned()),
        ("DLQ, first page", "/ui/dlq/scrape".to_owned()),
        (
            "DLQ, page 10,001 (cursor)",
            format!("/ui/dlq/scrape?cursor={deep}"),
        ),
        (
            "DLQ, kind=permanent",
            "/ui/dlq/scrape?kind=permanent".to_owned(),
        ),
        (
            "DLQ, one job's items",
            format!("/ui/dlq/scrape?job={dlq_job}"),
        ),
        ("job page (100,000 sources)", format!("/ui/jobs/{job}")),
        (
            "job page, status=dead_lettered",
            format!("/ui/jobs/{job}?status=dead_lettered"),
        ),
    ];
    println!("\n{RUNS} requests each, over loopback, signed in; milliseconds:");
    println!("{:<32} {:>8} {:>8} {:>8}", "page", "p50", "p95", "max");
    for (name, path) in pages {
        let mut times = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t = Instant::now();
            let resp = client
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .send()
                .await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            times.push(t.elapsed());
            anyhow::ensure!(status.is_success(), "{path}: {status}");
            anyhow::ensure!(body.len() > 1000, "{path}: a short answer");
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{name:<32} {:>8.1} {:>8.1} {:>8.1}",
            ms(times[RUNS / 2]),
            ms(times[RUNS * 95 / 100]),
            ms(times[RUNS - 1])
        );
    }
    cancel.cancel();
    Ok(())
}

/// A job of [`JOB_SOURCES`] sources: 99% extracted, 1% dead-lettered, its counts refreshed.
async fn seed_job(db: &sqlx::PgPool) -> anyhow::Result<Uuid> {
    let job = Uuid::now_v7();
    let project = Uuid::now_v7();
    db.execute("SET synchronous_commit = off").await?;
    sqlx::query("INSERT INTO projects (id, name) VALUES ($1, 'bench')")
        .bind(project)
        .execute(db)
        .await?;
    sqlx::query(
        "INSERT INTO jobs (id, project_id, type, status, payload) VALUES ($1, $2, 'scrape', 'running', '{}')",
    )
    .bind(job)
    .bind(project)
    .execute(db)
    .await?;
    sqlx::query(
        "INSERT INTO sources (id, project_id, uri, status, created_by_job_id, last_error, last_error_kind)
         SELECT gen_random_uuid(), $2, 'https://bench.example/page/' || g,
                CASE WHEN g % 100 = 0 THEN 'dead_lettered' ELSE 'extracted' END, $1,
                CASE WHEN g % 100 = 0 THEN 'HTTP 404' END,
                CASE WHEN g % 100 = 0 THEN 'permanent' END
           FROM generate_series(1, $3) g",
    )
    .bind(job)
    .bind(project)
    .bind(JOB_SOURCES)
    .execute(db)
    .await?;
    sqlx::query(
        "INSERT INTO job_sources (job_id, source_id) SELECT $1, id FROM sources WHERE created_by_job_id = $1",
    )
    .bind(job)
    .execute(db)
    .await?;
    sqlx::query("SELECT pipeline_refresh_job_progress($1)")
        .bind(job)
        .execute(db)
        .await?;
    db.execute("ANALYZE").await?;
    Ok(job)
}

/// [`DLQ_ITEMS`] items in the scrape DLQ, pushed by dlq-core's own Lua function, 5,000 per
/// call; every 1,000th belongs to one job (returned), a third are transient.
async fn seed_dlq(services: &Services, prefix: &str) -> anyhow::Result<Uuid> {
    let keys = FamilyKeys::new(prefix, "scrape");
    let script = redis::Script::new(&format!(
        "{LUA_PRELUDE}\n{LUA_PUSH_FN}\nlocal n = (#ARGV - 1) / 7\nfor i = 0, n - 1 do\n  local b = 1 + i * 7\n  \
         dlq_push(ARGV[1], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], ARGV[b + 7])\n\
         end\nreturn n"
    ));
    let one_job = Uuid::now_v7();
    let other_job = Uuid::now_v7();
    let mut con = services.redis.get();
    for start in (0..DLQ_ITEMS).step_by(BATCH) {
        let mut inv = script.prepare_invoke();
        for k in keys.dlq_script_keys() {
            inv.key(k);
        }
        inv.arg(keys.tag());
        for i in start..start + BATCH {
            let id = Uuid::now_v7();
            let kind = if i % 3 == 0 {
                ErrorKind::Transient
            } else {
                ErrorKind::Permanent
            };
            let mut item = DlqItem::new(
                id.to_string(),
                "scrape",
                "HTTP 503 from origin",
                kind,
                serde_json::json!({"source_id": id}),
            );
            item.source_id = Some(id);
            item.job_id = Some(if i % 1000 == 0 { one_job } else { other_job });
            item.attempts = 1;
            for a in item.encode()?.push_argv(None) {
                inv.arg(a);
            }
        }
        let pushed: usize = inv.invoke_async(&mut con).await?;
        anyhow::ensure!(pushed == BATCH, "pushed {pushed}");
    }
    Ok(one_job)
}

async fn sign_in(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let form = client.get(format!("{base}/ui/login")).send().await?;
    let token = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|v| {
            v.to_str()
                .ok()?
                .strip_prefix("pipeline_login=")?
                .split(';')
                .next()
                .map(str::to_owned)
        })
        .context("no sign-in cookie")?;
    let resp = client
        .post(format!("{base}/ui/login"))
        .header("cookie", format!("pipeline_login={token}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}&key={KEY}"))
        .send()
        .await?;
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|v| {
            v.to_str()
                .ok()?
                .strip_prefix("pipeline_session=")?
                .split(';')
                .next()
                .map(|s| format!("pipeline_session={s}"))
        })
        .context("sign-in refused")
}

/// Removes every key under `prefix` (the pool's SCAN + chunked DEL).
async fn unlink_prefix(pool: &dlq_core::RedisPool, prefix: &str) -> anyhow::Result<u64> {
    Ok(pool.delete_matching(&format!("{prefix}*")).await?)
}
