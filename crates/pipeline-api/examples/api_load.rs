//! The API under hostile load, measured: a real `pipeline-api` process on 127.0.0.1 over a
//! fresh database and Redis prefix, then
//!
//! 1. 20,000 idle or half-sent connections held open (two attacker processes of 10,000,
//!    each reopening what the server closes) while keyed clients make requests: keyed
//!    latency percentiles and errors, `/health` latency;
//! 2. 12 concurrent 10,000-URL submissions: each one's status and time;
//! 3. 100 submissions of 9,999 refused URLs each, then `GET /api/v1/jobs?limit=1000` twice
//!    at once: answer sizes;
//!
//! and the API process's peak RSS (`VmHWM`) over the whole run. Loopback only; every loop is
//! bounded in count and time, and the run stops by itself.
//!
//! ```sh
//! cargo build --release -p pipeline-api -p pipelinectl --bins
//! cargo run --release -p pipeline-api --example api_load
//! ```
//!
//! Environment: `TEST_DATABASE_URL` (admin URL, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), `TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379/0`), `HOLD_SECS` (phase 1 length, default 20).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "load-test-key-0123456789";
const ATTACKERS: usize = 2;
const PER_ATTACKER: usize = 10_000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Runtime::new()?;
    if args.get(1).map(String::as_str) == Some("--attacker") {
        let addr = args[2].clone();
        let secs: u64 = args[3].parse()?;
        return rt.block_on(attacker(addr, PER_ATTACKER, Duration::from_secs(secs)));
    }
    rt.block_on(run())
}

/// Holds `n` connections open for `hold`: even ones connect and send nothing, odd ones send
/// half a request head, every fourth a keyless POST promising a body it never sends. A
/// connection the server closes is opened again. Prints how many reconnects it made.
async fn attacker(addr: String, n: usize, hold: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + hold;
    let reopened = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let addr = addr.clone();
        let reopened = reopened.clone();
        tasks.push(tokio::spawn(async move {
            while tokio::time::Instant::now() < deadline {
                let Ok(Ok(mut s)) =
                    tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(&addr))
                        .await
                else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let _ = match i % 4 {
                    0 => Ok(()),
                    1 | 3 => s.write_all(b"GET /api/v1/jobs HTTP/1.1\r\nhost: x\r\nx-a: ").await,
                    _ => {
                        s.write_all(b"POST /api/v1/scrape HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999\r\n\r\nab")
                            .await
                    }
                };
                let mut buf = [0u8; 1024];
                // Hold until the server closes it or the phase ends.
                loop {
                    match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Ok(Ok(_)) => continue,
                        Err(_) => return,
                    }
                }
                reopened.fetch_add(1, Ordering::Relaxed);
            }
        }));
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    println!("{}", reopened.load(Ordering::Relaxed));
    Ok(())
}

fn peak_rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run() -> anyhow::Result<()> {
    pipeline_core::install_crypto_provider();
    let admin = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let redis_url =
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let hold: u64 = std::env::var("HOLD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let exe = std::env::current_exe()?;
    let bin_dir = exe
        .parent()
        .and_then(|p| p.parent())
        .context("target dir")?;
    let api_bin = bin_dir.join("pipeline-api");
    anyhow::ensure!(
        api_bin.is_file(),
        "{} missing: cargo build --release -p pipeline-api --bins",
        api_bin.display()
    );

    let db = format!("pipeline_load_{}", uuid::Uuid::new_v4().simple());
    let prefix = format!("load:{}:", uuid::Uuid::new_v4().simple());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await?;
    sqlx::Executor::execute(
        &mut conn,
        sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{db}""#)),
    )
    .await?;
    let (head, _) = admin.rsplit_once('/').context("admin URL")?;
    let db_url = format!("{head}/{db}");
    let pool = sqlx::PgPool::connect(&db_url).await?;
    pipeline_store::migrate(&pool).await?;
    pool.close().await;

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let addr = format!("127.0.0.1:{port}");
    let base = format!("http://{addr}");
    let mut api = tokio::process::Command::new(&api_bin)
        .env("DATABASE_URL", &db_url)
        .env("REDIS_URL", &redis_url)
        .env("PIPELINE__REDIS__KEY_PREFIX", &prefix)
        .env("PIPELINE_API_KEY", KEY)
        .env("PIPELINE__API__BIND", &addr)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = api.id().context("api pid")?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    for _ in 0..100 {
        if client.get(format!("{base}/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let result = phases(&client, &base, &addr, pid, hold).await;
    let (rss, hwm) = peak_rss_mib(pid).unwrap_or_default();
    println!("API RSS at the end: {rss:.0} MiB; peak RSS over the whole run (VmHWM): {hwm:.0} MiB");
    // The API is ours: stop it by its pid (kill_on_drop), then clean up.
    let _ = api.kill().await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await?;
    sqlx::Executor::execute(
        &mut conn,
        sqlx::AssertSqlSafe(format!(r#"DROP DATABASE IF EXISTS "{db}" WITH (FORCE)"#)),
    )
    .await?;
    dlq_core::build_pool(&redis_url, 1, std::time::Duration::from_secs(10))?
        .delete_matching(&format!("{prefix}*"))
        .await?;
    result
}

async fn phases(
    client: &reqwest::Client,
    base: &str,
    addr: &str,
    pid: u32,
    hold: u64,
) -> anyhow::Result<()> {
    // Phase 1: attackers hold connections while keyed clients and /health are timed.
    println!(
        "phase 1: {} idle or half-sent connections for {hold} s, keyed clients meanwhile",
        ATTACKERS * PER_ATTACKER
    );
    let exe = std::env::current_exe()?;
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        attackers.push(
            tokio::process::Command::new(&exe)
                .args(["--attacker", addr, &hold.to_string()])
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?,
        );
    }
    // Let the attackers open their connections first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut keyed = Vec::new();
    let mut health = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let phase_end = Instant::now() + Duration::from_secs(hold.saturating_sub(5).max(3));
    let mut max_rss = 0.0f64;
    while Instant::now() < phase_end && keyed.len() < 5_000 {
        // A fresh client each round: a new connection has to get through.
        let fresh = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let t = Instant::now();
        match fresh
            .get(format!("{base}/api/v1/jobs?limit=10"))
            .header("X-API-Key", KEY)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => keyed.push(t.elapsed()),
            Ok(r) => errors.push(format!("status {}", r.status())),
            Err(e) => errors.push(format!("{e}")),
        }
        let t = Instant::now();
        match fresh.get(format!("{base}/health")).send().await {
            Ok(r) if r.status().is_success() => health.push(t.elapsed()),
            Ok(r) => errors.push(format!("/health status {}", r.status())),
            Err(e) => errors.push(format!("/health {e}")),
        }
        if let Some((rss, _)) = peak_rss_mib(pid) {
            max_rss = max_rss.max(rss);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut reopened = 0u64;
    for a in attackers {
        let out = a.wait_with_output().await?;
        reopened += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or(0);
    }
    keyed.sort();
    health.sort();
    println!(
        "  keyed GET /api/v1/jobs: {} ok, {} errors; p50 {:?}, p99 {:?}, max {:?}",
        keyed.len(),
        errors.len(),
        percentile(&keyed, 0.5),
        percentile(&keyed, 0.99),
        keyed.last().copied().unwrap_or_default()
    );
    println!(
        "  GET /health: {} ok; p50 {:?}, p99 {:?}",
        health.len(),
        percentile(&health, 0.5),
        percentile(&health, 0.99)
    );
    if !errors.is_empty() {
        println!("  first errors: {:?}", &errors[..errors.len().min(5)]);
    }
    println!("  attacker connections closed by the server and reopened: {reopened}");
    println!("  API RSS peak sampled during phase 1: {max_rss:.0} MiB");

    // Phase 2: 12 concurrent 10,000-URL submissions.
    println!("phase 2: 12 concurrent submissions of 10,000 URLs");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..12 {
        let client = client.clone();
        let base = base.to_owned();
        tasks.push(tokio::spawn(async move {
            let urls: Vec<String> = (0..10_000)
                .map(|i| format!("https://site{n}.example/page/{i}"))
                .collect();
            let t = Instant::now();
            let resp = client
                .post(format!("{base}/api/v1/scrape"))
                .header("X-API-Key", KEY)
                .json(&json!({"urls": urls}))
                .send()
                .await;
            let status = resp.map(|r| r.status().as_u16()).unwrap_or(0);
            (n, status, t.elapsed())
        }));
    }
    let jobs_during = {
        let t = Instant::now();
        let r = client
            .get(format!("{base}/api/v1/jobs?limit=100"))
            .header("X-API-Key", KEY)
            .send()
            .await?;
        (r.status().as_u16(), t.elapsed())
    };
    for t in tasks {
        let (n, status, took) = t.await?;
        println!("  submission {n:2}: {status} in {took:.2?}");
    }
    println!(
        "  all 12 in {:.2?}; a GET /api/v1/jobs meanwhile: {} in {:.2?}",
        started.elapsed(),
        jobs_during.0,
        jobs_during.1
    );

    // Phase 3: many refused URLs, then the list the issue saw at 539 MB.
    println!(
        "phase 3: 100 submissions of 9,999 refused URLs, then two GET /jobs?limit=1000 at once"
    );
    let bad: Vec<String> = (0..9_999)
        .map(|i| format!("ftp://refused.example/{i}/{}", "x".repeat(180)))
        .collect();
    let bad = Arc::new(bad);
    let mut statuses = std::collections::BTreeMap::new();
    for chunk in 0..10 {
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let client = client.clone();
            let base = base.to_owned();
            let bad = bad.clone();
            tasks.push(tokio::spawn(async move {
                client
                    .post(format!("{base}/api/v1/scrape"))
                    .header("X-API-Key", KEY)
                    .json(&json!({"urls": *bad}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }));
        }
        for t in tasks {
            *statuses.entry(t.await?).or_insert(0) += 1;
        }
        let _ = chunk;
    }
    println!("  statuses: {statuses:?}");
    let mut lists = Vec::new();
    for _ in 0..2 {
        let client = client.clone();
        let base = base.to_owned();
        lists.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = client
                .get(format!("{base}/api/v1/jobs?limit=1000"))
                .header("X-API-Key", KEY)
                .send()
                .await?;
            let status = r.status().as_u16();
            let bytes = r.bytes().await?.len();
            anyhow::Ok((status, bytes, t.elapsed()))
        }));
    }
    for l in lists {
        let (status, bytes, took) = l.await??;
        println!("  GET /api/v1/jobs?limit=1000: {status}, {bytes} bytes, {took:.2?}");
    }
    Ok(())
}
