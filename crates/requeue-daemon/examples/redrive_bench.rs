//! Redrive throughput: pushes N transient items (due at once) into the scrape DLQ and times
//! the daemon's sweep loop until the DLQ is empty, without and with the Postgres
//! bookkeeping, and with one or two replicas sweeping at once. The rate limit is off.
//!
//! ```text
//! cargo run --release -p requeue-daemon --example redrive_bench -- --items 100000
//! ```
//!
//! Needs Postgres (`--database-url`, an admin URL: a scratch database is created and
//! dropped) and Redis (`--redis-url`; keys live under a fresh `bench:<uuid>:` prefix and
//! are deleted afterwards).

use std::time::{Duration, Instant};

use clap::Parser;
use dlq_core::{DlqItem, ErrorKind};
use futures::StreamExt;
use pipeline_core::{Settings, Sources};
use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_ops::messages::SourceMessage;
use requeue_daemon::{Redriver, RequeueConfig};
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    /// DLQ items per run.
    #[arg(long, default_value_t = 100_000)]
    items: usize,
    /// Items per redrive batch (one script call, one Postgres transaction).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Sources per job (each batch refreshes the progress of the jobs it touches).
    #[arg(long, default_value_t = 1000)]
    job_size: usize,
    /// Admin Postgres URL.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    database_url: String,
    /// Redis URL.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pipeline_core::install_crypto_provider();
    let db_name = format!("redrive_bench_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&args.database_url).await?;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            r#"CREATE DATABASE "{db_name}""#
        )))
        .await?;
    let db_url = match args.database_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db_name}"),
        None => anyhow::bail!("database URL without a database name"),
    };
    let prefix = format!("bench:{}:", Uuid::new_v4().simple());
    let result = bench(&args, &db_url, &prefix).await;
    delete_matching(&args.redis_url, &format!("{prefix}*")).await?;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            r#"DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)"#
        )))
        .await?;
    result
}

async fn bench(args: &Args, db_url: &str, prefix: &str) -> anyhow::Result<()> {
    let mut settings = Settings::load_from(&Sources::default())?;
    settings.database.url = db_url.to_owned().into();
    settings.redis.url = args.redis_url.clone().into();
    settings.redis.key_prefix = prefix.to_owned();
    settings.database.max_connections = 8;
    settings.redis.pool_size = 32;
    settings.requeue.redrive_base_delay_secs = 0;
    settings.requeue.rate_per_sec = 0;
    settings.requeue.batch_size = args.batch;
    let services = Services::build(settings)?;
    pipeline_store::migrate(&services.db).await?;
    let ids = seed_postgres(&services, args.items, args.job_size).await?;
    println!(
        "{} items, batch {}, jobs of {} sources, rate limit off",
        args.items, args.batch, args.job_size
    );
    println!("| bookkeeping | replicas | seconds | items/s |");
    println!("|---|---:|---:|---:|");
    for (bookkeeping, replicas) in [(false, 1), (false, 2), (true, 1), (true, 2)] {
        fill_dlq(&services, &ids).await?;
        let mut config = RequeueConfig::from_settings(&services.settings.requeue);
        config.bookkeeping = bookkeeping;
        let started = Instant::now();
        let sweeps = (0..replicas).map(|_| {
            let redriver = Redriver::new(services.clone(), config.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                loop {
                    let report = redriver.sweep().await?;
                    n += report.redriven;
                    if report.total() == 0 {
                        return anyhow::Ok(n);
                    }
                }
            })
        });
        let mut redriven = 0;
        for task in futures::future::join_all(sweeps).await {
            redriven += task??;
        }
        let secs = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            redriven == ids.len() as u64,
            "redrove {redriven} of {}",
            ids.len()
        );
        let left = services.dlq(Family::Scrape).stats().await?.total;
        anyhow::ensure!(left == 0, "{left} items left in the DLQ");
        println!(
            "| {} | {replicas} | {secs:.2} | {:.0} |",
            if bookkeeping {
                "Postgres, one transaction per batch"
            } else {
                "off"
            },
            redriven as f64 / secs
        );
    }
    Ok(())
}

/// Jobs and dead-lettered sources, inserted in bulk.
async fn seed_postgres(
    services: &Services,
    n: usize,
    job_size: usize,
) -> anyhow::Result<Vec<Uuid>> {
    let project = Uuid::new_v4();
    sqlx::query("INSERT INTO projects (id, name) VALUES ($1, 'bench')")
        .bind(project)
        .execute(&services.db)
        .await?;
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    for (j, chunk) in ids.chunks(job_size.max(1)).enumerate() {
        let job = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO jobs (id, project_id, type, status) VALUES ($1, $2, 'scrape', 'running')",
        )
        .bind(job)
        .bind(project)
        .execute(&services.db)
        .await?;
        let uris: Vec<String> = (0..chunk.len())
            .map(|i| format!("https://bench.example/{j}/{i}"))
            .collect();
        sqlx::query(
            "INSERT INTO sources (id, project_id, uri, status, created_by_job_id)
             SELECT u.id, $2, u.uri, 'dead_lettered', $3 FROM unnest($1::uuid[], $4::text[]) AS u(id, uri)",
        )
        .bind(chunk)
        .bind(project)
        .bind(job)
        .bind(&uris)
        .execute(&services.db)
        .await?;
        sqlx::query("INSERT INTO job_sources (job_id, source_id) SELECT $1, unnest($2::uuid[])")
            .bind(job)
            .bind(chunk)
            .execute(&services.db)
            .await?;
    }
    Ok(ids)
}

/// Empties the scrape queue and pushes one transient item per source, failed an hour ago
/// (so every item is due), with the sources back to `dead_lettered`.
async fn fill_dlq(services: &Services, ids: &[Uuid]) -> anyhow::Result<()> {
    let queue = services.queue(Family::Scrape);
    services
        .redis
        .delete_matching(&format!("{}*", queue.keys().tag()))
        .await?;
    sqlx::query("UPDATE sources SET status = 'dead_lettered'")
        .execute(&services.db)
        .await?;
    let dlq = services.dlq(Family::Scrape);
    let failed_at = chrono::Utc::now() - chrono::Duration::hours(1);
    let job_of: Vec<Option<Uuid>> = sqlx::query_scalar(
        "SELECT s.created_by_job_id FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, ord)
         JOIN sources s ON s.id = u.id ORDER BY u.ord",
    )
    .bind(ids)
    .fetch_all(&services.db)
    .await?;
    let pushes = ids.iter().zip(job_of).map(|(id, job)| {
        let dlq = dlq.clone();
        let msg = SourceMessage {
            source_id: *id,
            job_id: job,
            url: None,
            project_id: None,
            priority: Default::default(),
            render: None,
        };
        let mut item = DlqItem::new(
            msg.id(),
            Family::Scrape.as_str(),
            "HTTP 503",
            ErrorKind::Transient,
            msg.body(),
        );
        item.source_id = Some(*id);
        item.job_id = job;
        item.failed_at = failed_at;
        item.attempts = 4;
        async move { dlq.push(&item).await }
    });
    let mut stream = futures::stream::iter(pushes).buffer_unordered(32);
    while let Some(r) = stream.next().await {
        r?;
    }
    // Give the pools a moment; nothing else is timed here.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

/// Deletes the keys matching `pattern` (the pool's SCAN + chunked DEL).
async fn delete_matching(redis_url: &str, pattern: &str) -> anyhow::Result<()> {
    let pool = dlq_core::build_pool(redis_url, 1, Duration::from_secs(10))?;
    pool.delete_matching(pattern).await?;
    Ok(())
}
