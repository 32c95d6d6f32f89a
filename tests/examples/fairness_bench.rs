//! Fair share, priorities and limits, measured with the daemons' worker runner fetching
//! pages from a loopback server that answers each after `--page-ms` (50 ms).
//!
//! ```text
//! cargo run --release -p integration-tests --example fairness_bench -- [--a-pages 50000]
//!     [--page-ms 50] [--concurrency 16] [--skip-fifo]
//! ```
//!
//! 1. **B alone**: project B's 10 pages on an idle system; the time from their enqueue to
//!    the last one done.
//! 2. **B behind A**: project A's `--a-pages` pages queued and being worked on (2 s of it),
//!    then B's 10: B's time to completion, with each project in its lane (fair share), and
//!    with every message in one lane (first in, first out: how the queue served before
//!    lanes; `--skip-fifo` leaves this run out, it lasts `a-pages × page-ms / concurrency`).
//! 3. **Priority**: 20,000 `normal` pages of project P queued and being worked on, then a
//!    `high` job of 10 pages of the same project: its time to completion.
//! 4. **Limits**: project C capped at 4 messages in flight, three worker replicas (each its
//!    own pool and runner, `--concurrency` slots) sharing 400 pages of C and 2,000 of D;
//!    C's pages in flight sampled every 10 ms (the highest count seen), and C's pages per
//!    second against 4 / page time.
//!
//! One worker replica unless said otherwise. Redis from `TEST_REDIS_URL`; every key lives
//! under a fresh prefix deleted at the end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::routing::get;
use integration_tests::TestRedis;
use pipeline_ops::messages::SourceMessage;
use pipeline_runner::{self as runner, Failure, FailureLog, FailureRecord, Handler, RunnerOptions};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use work_queue::{Delivery, Lane, LaneLimits, Priority, QueueOptions, WorkQueue};

struct Args {
    a_pages: u64,
    page_ms: u64,
    concurrency: usize,
    fifo: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        a_pages: 50_000,
        page_ms: 50,
        concurrency: 16,
        fifo: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().context("missing value");
        match arg.as_str() {
            "--a-pages" => args.a_pages = value()?.parse()?,
            "--page-ms" => args.page_ms = value()?.parse()?,
            "--concurrency" => args.concurrency = value()?.parse()?,
            "--skip-fifo" => args.fifo = false,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

/// The pipeline's own message; `project_id` tells whose page it is (see [`project_id`]).
type Msg = SourceMessage;

/// A fixed id per project name, so the handler can count pages per project.
fn project_id(name: &str) -> Uuid {
    let i = PROJECTS.iter().position(|p| *p == name).unwrap_or(0) as u128;
    Uuid::from_u128(0xfa1e_0000_0000_0000_0000_0000_0000_0000 + i)
}

struct Forget;

impl FailureLog for Forget {
    fn record<'a>(
        &'a self,
        _: FailureRecord<'a>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async {})
    }
}

/// Fetches the page; counts pages in flight and done per project.
struct Fetch {
    ledger: Forget,
    http: reqwest::Client,
    url: String,
    in_flight: HashMap<&'static str, AtomicI64>,
    done: HashMap<&'static str, AtomicU64>,
    changed: Notify,
}

const PROJECTS: [&str; 5] = ["A", "B", "P", "C", "D"];

impl Fetch {
    fn new(url: String) -> Self {
        Self {
            ledger: Forget,
            http: reqwest::Client::new(),
            url,
            in_flight: PROJECTS.iter().map(|p| (*p, AtomicI64::new(0))).collect(),
            done: PROJECTS.iter().map(|p| (*p, AtomicU64::new(0))).collect(),
            changed: Notify::new(),
        }
    }

    fn done(&self, project: &str) -> u64 {
        self.done[project].load(Ordering::Acquire)
    }

    /// Waits until `project` has `n` pages done; returns when that happened.
    async fn wait_done(&self, project: &str, n: u64, within: Duration) -> Result<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            if self.done(project) >= n {
                return Ok(Instant::now());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(
                !left.is_zero(),
                "{project}: {n} pages not done within {within:?}"
            );
            let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), notified).await;
        }
    }
}

impl Handler for Fetch {
    type Message = Msg;

    fn failure_log(&self) -> &dyn FailureLog {
        &self.ledger
    }

    async fn handle(&self, _delivery: &Delivery, msg: Msg) -> Result<(), Failure> {
        let p = PROJECTS
            .iter()
            .find(|p| Some(project_id(p)) == msg.project_id)
            .copied()
            .unwrap_or("A");
        self.in_flight[p].fetch_add(1, Ordering::AcqRel);
        let got = self
            .http
            .get(format!("{}/{}", self.url, msg.source_id))
            .send()
            .await;
        self.in_flight[p].fetch_sub(1, Ordering::AcqRel);
        got.and_then(reqwest::Response::error_for_status)
            .map_err(|e| Failure::transient(e.to_string()))?;
        self.done[p].fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
        Ok(())
    }
}

/// The loopback page server: every page answers after `page_ms`.
async fn page_server(page_ms: u64) -> Result<String> {
    let app = Router::new().route(
        "/p/{id}",
        get(move || async move {
            tokio::time::sleep(Duration::from_millis(page_ms)).await;
            "<html><body>page</body></html>"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/p"))
}

/// One scenario's queue and worker replicas.
struct Rig {
    queue: WorkQueue,
    fetch: Arc<Fetch>,
    cancel: CancellationToken,
    runners: Vec<tokio::task::JoinHandle<()>>,
}

impl Rig {
    async fn new(redis: &TestRedis, family: &str, url: &str) -> Result<Self> {
        let queue = WorkQueue::new(
            redis.pool.clone(),
            work_queue::FamilyKeys::new(&redis.prefix, family),
            QueueOptions::default(),
        )?;
        Ok(Self {
            queue,
            fetch: Arc::new(Fetch::new(url.to_owned())),
            cancel: CancellationToken::new(),
            runners: Vec::new(),
        })
    }

    /// Starts `replicas` runners, each with a pool and queue handle of its own.
    fn start(&mut self, redis: &TestRedis, replicas: usize, concurrency: usize) -> Result<()> {
        for _ in 0..replicas {
            let pool = redis
                .target
                .pool(16, Duration::from_secs(10), Duration::from_secs(5))?;
            let queue = WorkQueue::new(pool, self.queue.keys().clone(), QueueOptions::default())?;
            let opts = RunnerOptions {
                concurrency,
                reserve_batch: 64,
                drain_timeout: Duration::from_secs(5),
            };
            let fetch = self.fetch.clone();
            let cancel = self.cancel.clone();
            self.runners.push(tokio::spawn(async move {
                runner::run(
                    queue,
                    fetch,
                    opts,
                    pipeline_runner::Activity::default(),
                    cancel,
                )
                .await;
            }));
        }
        Ok(())
    }

    async fn enqueue(&self, project: &str, lane: &Lane, n: u64) -> Result<()> {
        let all: Vec<u64> = (0..n).collect();
        for chunk in all.chunks(10_000) {
            let items: Vec<(String, &Lane, serde_json::Value)> = chunk
                .iter()
                .map(|_| {
                    let m = SourceMessage {
                        source_id: Uuid::new_v4(),
                        job_id: None,
                        url: None,
                        project_id: Some(project_id(project)),
                        priority: lane.priority(),
                        render: None,
                    };
                    (m.id(), lane, m.body())
                })
                .collect();
            self.queue.enqueue_bulk_in(&items).await?;
        }
        Ok(())
    }

    async fn stop(self) {
        self.cancel.cancel();
        for r in self.runners {
            let _ = r.await;
        }
    }
}

fn lane(key: &str, priority: Priority) -> Lane {
    Lane::new(key, priority)
}

/// Project B's 10 pages; with `behind` pages of A queued first (in A's lane, or in B's
/// own when `one_lane`). Returns B's time to completion.
async fn b_behind_a(
    redis: &TestRedis,
    url: &str,
    args: &Args,
    family: &str,
    behind: u64,
    one_lane: bool,
) -> Result<Duration> {
    let mut rig = Rig::new(redis, family, url).await?;
    let b_lane = if one_lane {
        Lane::default()
    } else {
        lane("B", Priority::Normal)
    };
    let a_lane = if one_lane {
        Lane::default()
    } else {
        lane("A", Priority::Normal)
    };
    rig.enqueue("A", &a_lane, behind).await?;
    rig.start(redis, 1, args.concurrency)?;
    if behind > 0 {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let t0 = Instant::now();
    rig.enqueue("B", &b_lane, 10).await?;
    let within = Duration::from_millis(behind * args.page_ms / args.concurrency as u64)
        + Duration::from_secs(120);
    let done = rig.fetch.wait_done("B", 10, within).await?;
    let a_done = rig.fetch.done("A");
    rig.stop().await;
    let took = done - t0;
    println!(
        "    B's 10 pages: {:>9.1} ms  (A had {a_done} of {behind} done by then)",
        took.as_secs_f64() * 1000.0
    );
    Ok(took)
}

async fn priority(redis: &TestRedis, url: &str, args: &Args) -> Result<Duration> {
    let mut rig = Rig::new(redis, "prio", url).await?;
    rig.enqueue("P", &lane("P", Priority::Normal), 20_000)
        .await?;
    rig.start(redis, 1, args.concurrency)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The high job's pages are counted as project B's, so their completions are told apart.
    let t0 = Instant::now();
    rig.enqueue("B", &lane("P", Priority::High), 10).await?;
    let done = rig
        .fetch
        .wait_done("B", 10, Duration::from_secs(120))
        .await?;
    let normal_done = rig.fetch.done("P");
    rig.stop().await;
    let took = done - t0;
    println!(
        "    the high job's 10 pages: {:>9.1} ms  ({normal_done} of 20000 normal pages done by then)",
        took.as_secs_f64() * 1000.0
    );
    Ok(took)
}

async fn limits(redis: &TestRedis, url: &str, args: &Args) -> Result<()> {
    let mut rig = Rig::new(redis, "limits", url).await?;
    rig.queue
        .set_lane_limits(
            "C",
            &LaneLimits {
                max_in_flight: Some(4),
                ..LaneLimits::default()
            },
        )
        .await?;
    let c_pages = 400;
    rig.enqueue("C", &lane("C", Priority::Normal), c_pages)
        .await?;
    rig.enqueue("D", &lane("D", Priority::Normal), 2_000)
        .await?;
    let highest = Arc::new(Mutex::new((0i64, 0u64)));
    let sampling = CancellationToken::new();
    let sampler = {
        let fetch = rig.fetch.clone();
        let highest = highest.clone();
        let stop = sampling.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !stop.is_cancelled() {
                tick.tick().await;
                let now = fetch.in_flight["C"].load(Ordering::Acquire);
                let mut h = highest.lock().expect("not poisoned");
                h.0 = h.0.max(now);
                h.1 += 1;
            }
        })
    };
    let t0 = Instant::now();
    rig.start(redis, 3, args.concurrency)?;
    let done = rig
        .fetch
        .wait_done("C", c_pages, Duration::from_secs(300))
        .await?;
    sampling.cancel();
    let _ = sampler.await;
    let d_done = rig.fetch.done("D");
    rig.stop().await;
    let secs = (done - t0).as_secs_f64();
    let rate = c_pages as f64 / secs;
    let ideal = 4.0 * 1000.0 / args.page_ms as f64;
    let (max_seen, samples) = *highest.lock().expect("not poisoned");
    println!(
        "    C capped at 4, 3 replicas × {} slots: most in flight seen {max_seen} ({samples} samples, every 10 ms)",
        args.concurrency
    );
    println!(
        "    C: {c_pages} pages in {secs:.2} s = {rate:.1} pages/s; 4 / page time = {ideal:.1} ({:+.1}%); D meanwhile: {d_done} pages",
        (rate / ideal - 1.0) * 100.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    pipeline_core::install_crypto_provider();
    let url = page_server(args.page_ms).await?;
    let redis = TestRedis::new()?;
    let result = async {
        println!(
            "pages answer after {} ms; one replica with {} slots unless said otherwise",
            args.page_ms, args.concurrency
        );
        println!("1. B alone:");
        let alone = b_behind_a(&redis, &url, &args, "alone", 0, false).await?;
        println!("2. B submitted behind A's {} pages:", args.a_pages);
        println!("  fair share (a lane per project):");
        let fair = b_behind_a(&redis, &url, &args, "fair", args.a_pages, false).await?;
        println!(
            "    = {:.2} × B alone",
            fair.as_secs_f64() / alone.as_secs_f64()
        );
        if args.fifo {
            println!("  one lane (first in, first out, as before lanes):");
            let fifo = b_behind_a(&redis, &url, &args, "fifo", args.a_pages, true).await?;
            println!(
                "    = {:.1} × B alone",
                fifo.as_secs_f64() / alone.as_secs_f64()
            );
        }
        println!("3. A high job of 10 pages behind 20,000 normal pages of its own project:");
        let high = priority(&redis, &url, &args).await?;
        println!(
            "    = {:.2} × B alone",
            high.as_secs_f64() / alone.as_secs_f64()
        );
        println!("4. Limits:");
        limits(&redis, &url, &args).await?;
        anyhow::Ok(())
    }
    .await;
    // Dropping the TestRedis deletes every key under its prefix.
    drop(redis);
    result
}
