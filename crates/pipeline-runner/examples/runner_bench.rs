//! The worker runner the daemons use (`pipeline_runner::run`: semaphore, lease
//! keep-alive, span, metrics with the daemons' Prometheus recorder, panics caught) with a
//! no-op handler, side by side with BullMQ doing the same work on the same Redis
//! (`REDIS_URL`, default `redis://127.0.0.1:6379`).
//!
//! ```text
//! cargo run --release -p pipeline-runner --example runner_bench
//! ```
//!
//! For each concurrency (default 1, 8 and 32): throughput over `--messages` (50,000) no-op
//! messages queued before the runner starts; then pickup latency, enqueue to handler start,
//! at idle (`--idle` messages one at a time, a few ms apart, so the worker is waiting for
//! each) and under load (`--load` messages enqueued at `--rate` a second while it runs). Then
//! the Redis commands an idle runner sends in `--idle-secs` seconds, counted with `MONITOR`.
//!
//! The BullMQ side is `bench/bullmq/bench.js`: this program runs `npm ci` there, starts it
//! with the same figures and its own key prefix, and prints both in one table (`--no-bullmq`
//! skips it). Options: `--json` (one JSON object per line), `--reserve-batch N` (default `queue.reserve_batch`
//! as shipped), `--projects N` (spread the throughput messages over N lanes, as N projects
//! with work at once; default: the default lane only). Every key lives under a fresh prefix
//! that is deleted at the end.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use pipeline_runner::{
    self as worker, Failure, FailureLog, FailureRecord, Handler, RunnerOptions, WorkMessage,
};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use work_queue::{Delivery, FamilyKeys, Lane, Priority, QueueOptions, RedisPool, WorkQueue};

struct Args {
    json: bool,
    messages: u64,
    concurrency: Vec<usize>,
    idle: u64,
    load: u64,
    rate: u64,
    idle_secs: u64,
    reserve_batch: usize,
    bullmq: bool,
    /// Lanes the throughput messages are spread over (0: the default lane only).
    projects: u64,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        json: false,
        messages: 50_000,
        concurrency: vec![1, 8, 32],
        idle: 200,
        load: 4_000,
        rate: 2_000,
        idle_secs: 10,
        // As shipped (config/default.toml), unless --reserve-batch says otherwise.
        reserve_batch: pipeline_core::Settings::load_from(&pipeline_core::Sources {
            env: Default::default(),
        })?
        .queue
        .reserve_batch,
        bullmq: true,
        projects: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().context("missing value");
        match arg.as_str() {
            "--json" => args.json = true,
            "--no-bullmq" => args.bullmq = false,
            "--projects" => args.projects = value()?.parse()?,
            "--messages" => args.messages = value()?.parse()?,
            "--concurrency" => {
                args.concurrency = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--idle" => args.idle = value()?.parse()?,
            "--load" => args.load = value()?.parse()?,
            "--rate" => args.rate = value()?.parse::<u64>()?.max(1),
            "--idle-secs" => args.idle_secs = value()?.parse()?,
            "--reserve-batch" => args.reserve_batch = value()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

/// The bench's message: the runner decodes it like any other. `t_us` is when it was sent.
#[derive(Deserialize)]
struct Msg {
    source_id: Uuid,
    #[serde(default)]
    t_us: Option<u64>,
}

impl WorkMessage for Msg {
    fn source_id(&self) -> Uuid {
        self.source_id
    }

    fn job_id(&self) -> Option<Uuid> {
        None
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A no-op handler fails nothing, so nothing is ever recorded.
struct Forget;

impl FailureLog for Forget {
    fn record<'a>(
        &'a self,
        _: FailureRecord<'a>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async {})
    }
}

/// Counts handler starts and records each stamped message's pickup latency.
struct NoOp {
    ledger: Forget,
    started: AtomicU64,
    target: AtomicU64,
    reached: Notify,
    latencies_ms: Mutex<Vec<f64>>,
}

impl Handler for NoOp {
    type Message = Msg;

    fn failure_log(&self) -> &dyn FailureLog {
        &self.ledger
    }

    async fn handle(&self, _delivery: &Delivery, msg: Msg) -> Result<(), Failure> {
        if let Some(t) = msg.t_us {
            let ms = now_us().saturating_sub(t) as f64 / 1000.0;
            self.latencies_ms.lock().expect("not poisoned").push(ms);
        }
        let n = self.started.fetch_add(1, Ordering::AcqRel) + 1;
        if n == self.target.load(Ordering::Acquire) {
            self.reached.notify_one();
        }
        Ok(())
    }
}

impl NoOp {
    /// Resets the counters; `reached` fires when `target` handler calls have started.
    fn expect(&self, target: u64) {
        self.started.store(0, Ordering::Release);
        self.target.store(target, Ordering::Release);
        self.latencies_ms.lock().expect("not poisoned").clear();
    }

    async fn wait(&self, what: &str) -> Result<()> {
        tokio::time::timeout(Duration::from_secs(120), self.reached.notified())
            .await
            .with_context(|| format!("{what}: the runner did not get through in 120 s"))
    }

    fn percentiles(&self) -> (f64, f64) {
        let mut v = self.latencies_ms.lock().expect("not poisoned").clone();
        v.sort_by(f64::total_cmp);
        (percentile(&v, 50.0), percentile(&v, 99.0))
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn stamped() -> serde_json::Value {
    json!({ "source_id": Uuid::new_v4(), "t_us": now_us() })
}

#[derive(Debug, Default, Clone, Deserialize)]
struct Row {
    concurrency: usize,
    rate: f64,
    idle_p50_ms: Option<f64>,
    idle_p99_ms: Option<f64>,
    load_p50_ms: Option<f64>,
    load_p99_ms: Option<f64>,
}

async fn run_ours(args: &Args, pool: &RedisPool, prefix: &str, c: usize) -> Result<Row> {
    let keys = FamilyKeys::new(prefix, &format!("c{c}"));
    let queue = WorkQueue::new(pool.clone(), keys, QueueOptions::default())?;
    let handler = Arc::new(NoOp {
        // Never connected: a no-op handler fails nothing, so the runner records nothing.
        ledger: Forget,
        started: AtomicU64::new(0),
        target: AtomicU64::new(u64::MAX),
        reached: Notify::new(),
        latencies_ms: Mutex::new(Vec::new()),
    });
    // With `--projects N`, message i goes to lane `p<i mod N>`: every lane has work all along.
    let lanes: Vec<Lane> = (0..args.projects.max(1))
        .map(|p| {
            if args.projects == 0 {
                Lane::default()
            } else {
                Lane::new(format!("p{p}"), Priority::Normal)
            }
        })
        .collect();
    for chunk in (0..args.messages).collect::<Vec<_>>().chunks(10_000) {
        let items: Vec<(String, &Lane, serde_json::Value)> = chunk
            .iter()
            .map(|&i| {
                let id = Uuid::new_v4();
                let lane = &lanes[(i % lanes.len() as u64) as usize];
                (id.to_string(), lane, json!({ "source_id": id }))
            })
            .collect();
        queue.enqueue_bulk_in(&items).await?;
    }
    handler.expect(args.messages);
    let cancel = CancellationToken::new();
    let opts = RunnerOptions {
        concurrency: c,
        reserve_batch: args.reserve_batch,
        drain_timeout: Duration::from_secs(10),
    };
    let started = Instant::now();
    let runner = tokio::spawn(worker::run(
        queue.clone(),
        handler.clone(),
        opts,
        pipeline_runner::Activity::default(),
        cancel.clone(),
    ));
    handler.wait("throughput").await?;
    let rate = args.messages as f64 / started.elapsed().as_secs_f64();

    let mut row = Row {
        concurrency: c,
        rate,
        ..Row::default()
    };
    if args.idle > 0 {
        handler.expect(u64::MAX);
        for i in 0..args.idle {
            tokio::time::sleep(Duration::from_millis(2 + i % 5)).await;
            handler.expect_more(i + 1);
            queue
                .enqueue(&Uuid::new_v4().to_string(), &stamped())
                .await?;
            handler.wait("idle pickup").await?;
        }
        let (p50, p99) = handler.percentiles();
        (row.idle_p50_ms, row.idle_p99_ms) = (Some(p50), Some(p99));
    }
    if args.load > 0 {
        handler.expect(args.load);
        let t0 = Instant::now();
        for i in 0..args.load {
            let due = t0 + Duration::from_micros(i * 1_000_000 / args.rate);
            tokio::time::sleep_until(due.into()).await;
            queue
                .enqueue(&Uuid::new_v4().to_string(), &stamped())
                .await?;
        }
        handler.wait("load").await?;
        let (p50, p99) = handler.percentiles();
        (row.load_p50_ms, row.load_p99_ms) = (Some(p50), Some(p99));
    }
    if args.idle_secs > 0 && c == args.concurrency[0] {
        report_idle_cost(args, pool, &queue).await?;
    }
    cancel.cancel();
    let drained = runner.await?;
    if !drained {
        bail!("the runner did not drain");
    }
    Ok(row)
}

impl NoOp {
    /// Keeps the counters and latencies, waiting for `target` starts in all.
    fn expect_more(&self, target: u64) {
        self.target.store(target, Ordering::Release);
    }
}

/// Counts the commands on this family's keys while the runner idles, with `MONITOR`.
async fn report_idle_cost(args: &Args, pool: &RedisPool, queue: &WorkQueue) -> Result<()> {
    // Let the runner finish the last message and settle into its wait: the window counts
    // what an idle runner costs for as long as it stays idle. (The runner once read the
    // queue's depth on its first tick after work stopped; the 5.5 s kept the windows of
    // older runs comparable, and keeps today's comparable with them.)
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let client = redis::Client::open(redis_url())?;
    let mut monitor = client
        .get_async_monitor()
        .await?
        .into_on_message::<String>();
    let tag = queue.keys().tag();
    let window = Duration::from_secs(args.idle_secs);
    let mut seen: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(line)) = tokio::time::timeout_at(deadline, monitor.next()).await {
        if line.contains(&tag) {
            let name = line.split('"').nth(1).unwrap_or("?").to_ascii_uppercase();
            seen.push(name);
        }
    }
    let block = QueueOptions::default().block_timeout;
    let periods = window.as_secs_f64() / block.as_secs_f64();
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for name in seen {
        *counts.entry(name).or_default() += 1;
    }
    let per_block: Vec<String> = counts
        .iter()
        .map(|(name, n)| format!("{name} {:.2}", *n as f64 / periods))
        .collect();
    let _ = pool;
    if args.json {
        println!(
            "{}",
            json!({"idle_window_secs": window.as_secs(), "block_timeout_ms": block.as_millis() as u64, "commands": counts})
        );
    } else {
        // BZPOPMIN is the wait; any other command would be a cost of idling.
        println!(
            "idle runner, commands on its keys per block_timeout ({} ms), over {} s: {}",
            block.as_millis(),
            window.as_secs(),
            per_block.join(", ")
        );
    }
    Ok(())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Runs `npm ci` and the BullMQ script; one row per concurrency.
async fn run_bullmq(args: &Args, prefix: &str) -> Result<Vec<Row>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/bullmq");
    let npm = tokio::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .status()
        .await
        .context("npm ci in bench/bullmq (is Node.js installed?)")?;
    if !npm.success() {
        bail!("npm ci in bench/bullmq failed: {npm}");
    }
    let concurrency: Vec<String> = args.concurrency.iter().map(ToString::to_string).collect();
    let out = tokio::process::Command::new("node")
        .arg("bench.js")
        .args(["--redis", &redis_url(), "--prefix", prefix])
        .args(["--messages", &args.messages.to_string()])
        .args(["--concurrency", &concurrency.join(",")])
        .args(["--idle", &args.idle.to_string()])
        .args(["--load", &args.load.to_string()])
        .args(["--rate", &args.rate.to_string()])
        .current_dir(&dir)
        .kill_on_drop(true)
        .output()
        .await
        .context("node bench.js")?;
    if !out.status.success() {
        bail!(
            "the BullMQ bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout)?
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("BullMQ line {l}")))
        .collect()
}

/// Deletes every key under `prefix`.
async fn cleanup(pool: &RedisPool, prefix: &str) -> Result<()> {
    pool.delete_matching(&format!("{prefix}*")).await?;
    Ok(())
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

fn print_table(args: &Args, ours: &[Row], theirs: &[Row]) {
    if args.json {
        for r in ours {
            println!(
                "{}",
                json!({"system": "runner", "concurrency": r.concurrency, "messages": args.messages,
                    "rate": r.rate, "idle_p50_ms": r.idle_p50_ms, "idle_p99_ms": r.idle_p99_ms,
                    "load_p50_ms": r.load_p50_ms, "load_p99_ms": r.load_p99_ms})
            );
        }
        for r in theirs {
            println!(
                "{}",
                json!({"system": "bullmq", "concurrency": r.concurrency, "messages": args.messages,
                    "rate": r.rate, "idle_p50_ms": r.idle_p50_ms, "idle_p99_ms": r.idle_p99_ms,
                    "load_p50_ms": r.load_p50_ms, "load_p99_ms": r.load_p99_ms})
            );
        }
        return;
    }
    println!(
        "{} no-op messages; pickup = enqueue to handler start, ms (idle: {} one at a time; load: {} at {}/s)",
        args.messages, args.idle, args.load, args.rate
    );
    println!(
        "| concurrency | runner msgs/s | BullMQ msgs/s | ratio | runner idle p50/p99 | BullMQ idle p50/p99 | runner load p50/p99 | BullMQ load p50/p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in ours {
        let b = theirs.iter().find(|b| b.concurrency == r.concurrency);
        let (b_rate, ratio) = b.map_or(("-".into(), "-".into()), |b| {
            (format!("{:.0}", b.rate), format!("{:.2}x", r.rate / b.rate))
        });
        let b = b.cloned().unwrap_or_default();
        println!(
            "| {} | {:.0} | {b_rate} | {ratio} | {} / {} | {} / {} | {} / {} | {} / {} |",
            r.concurrency,
            r.rate,
            fmt_ms(r.idle_p50_ms),
            fmt_ms(r.idle_p99_ms),
            fmt_ms(b.idle_p50_ms),
            fmt_ms(b.idle_p99_ms),
            fmt_ms(r.load_p50_ms),
            fmt_ms(r.load_p99_ms),
            fmt_ms(b.load_p50_ms),
            fmt_ms(b.load_p99_ms),
        );
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    // The daemons' recorder, so every metric the runner records costs what it costs there.
    let _metrics = pipeline_core::metrics::handle();
    let url = redis_url();
    let pool = work_queue::build_pool(&url, 4, Duration::from_secs(10))?;
    let run = Uuid::new_v4();
    let prefix = format!("bench:{run}:");
    let bull_prefix = format!("bench-bullmq:{run}");
    let result = async {
        let mut ours = Vec::new();
        for &c in &args.concurrency {
            ours.push(run_ours(&args, &pool, &prefix, c).await?);
        }
        let theirs = if args.bullmq {
            run_bullmq(&args, &bull_prefix).await?
        } else {
            Vec::new()
        };
        anyhow::Ok((ours, theirs))
    }
    .await;
    cleanup(&pool, &prefix).await?;
    cleanup(&pool, &bull_prefix).await?;
    let (ours, theirs) = result?;
    print_table(&args, &ours, &theirs);
    Ok(())
}
