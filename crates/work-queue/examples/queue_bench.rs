//! Throughput of the work queue against the real Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`), or a Redis Cluster (`REDIS_CLUSTER_NODES`, comma-separated
//! node URLs, e.g. those `deploy/local/redis-cluster.sh start` prints).
//!
//! ```text
//! cargo run --release -p work-queue --example queue_bench -- --json
//! REDIS_CLUSTER_NODES=redis://127.0.0.1:7100,redis://127.0.0.1:7101 \
//!   cargo run --release -p work-queue --example queue_bench -- --only bulk
//! ```
//!
//! Each configuration runs `--repeat` times (default 3) on fresh data and reports the
//! median rate (plus min and max), because a shared machine's load moves single runs a lot.
//! Options: `--json` (one JSON object per line), `--messages N` (default 50,000),
//! `--big-backlog N` (default 1,000,000), `--batch N` (reserve/ack batch, default 100),
//! `--repeat N`, `--shards N` (the family's `queue.shards`, default 1), `--only GROUP` (`enqueue_one`, `bulk`, `process`, `unbatched` or `memory`:
//! the growth of `used_memory` on each master, read from every node URL given, while
//! `--big-backlog` messages are queued, reported per million messages).
//! Everything lives under a fresh `bench:<uuid>:` prefix that is deleted at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use work_queue::{FamilyKeys, QueueOptions, RedisPool, WorkQueue};

/// Messages per configuration of the unbatched runs, which are slow by design.
const UNBATCHED_MESSAGES: u64 = 20_000;

struct Args {
    json: bool,
    messages: u64,
    big_backlog: u64,
    batch: usize,
    repeat: usize,
    shards: u16,
    only: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        json: false,
        messages: 50_000,
        big_backlog: 1_000_000,
        batch: 100,
        repeat: 3,
        shards: 1,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().context("missing value");
        match arg.as_str() {
            "--json" => args.json = true,
            "--messages" => args.messages = value()?.parse()?,
            "--big-backlog" => args.big_backlog = value()?.parse()?,
            "--batch" => args.batch = value()?.parse()?,
            "--repeat" => args.repeat = value()?.parse::<usize>()?.max(1),
            "--only" => args.only = Some(value()?),
            "--shards" => args.shards = value()?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

/// One configuration's result line.
struct Line<'a> {
    op: &'a str,
    concurrency: usize,
    backlog: u64,
    messages: u64,
    batch: Option<usize>,
}

struct Bench {
    args: Args,
    /// Node URLs (one, or the cluster's), for the memory report.
    nodes: Vec<String>,
    pool: RedisPool,
    prefix: String,
    families: AtomicU64,
}

/// A no-op message shaped like the pipeline's.
fn body() -> serde_json::Value {
    json!({ "source_id": uuid::Uuid::new_v4(), "job_id": uuid::Uuid::new_v4() })
}

fn items(from: u64, n: u64) -> Vec<(String, serde_json::Value)> {
    (from..from + n)
        .map(|i| (format!("m{i}"), body()))
        .collect()
}

impl Bench {
    /// A queue on a family name not used before in this run.
    fn fresh_queue(&self) -> Result<WorkQueue> {
        let n = self.families.fetch_add(1, Ordering::Relaxed);
        let opts = QueueOptions {
            worker_id: "bench".to_owned(),
            shards: self.args.shards,
            ..QueueOptions::default()
        };
        Ok(WorkQueue::new(
            self.pool.clone(),
            FamilyKeys::new(&self.prefix, &format!("f{n}")),
            opts,
        )?)
    }

    fn report(&self, line: &Line<'_>, samples: Vec<f64>) {
        let mut rates = samples.clone();
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        let (min, max) = (rates[0], rates[rates.len() - 1]);
        let Line {
            op,
            concurrency,
            backlog,
            messages,
            batch,
        } = *line;
        if self.args.json {
            println!(
                "{}",
                json!({ "op": op, "shards": self.args.shards, "concurrency": concurrency, "backlog": backlog,
                        "messages": messages, "batch": batch, "per_sec": median.round(),
                        "min_per_sec": min.round(), "max_per_sec": max.round(),
                        "samples": samples.iter().map(|r| r.round()).collect::<Vec<_>>() })
            );
        } else {
            let batch = batch.map_or_else(|| "-".to_owned(), |b| b.to_string());
            println!(
                "{op:<18} shards={} c={concurrency:<3} batch={batch:<4} backlog={backlog:<8} \
                 n={messages:<6} {median:>9.0}/s (min {min:.0}, max {max:.0})",
                self.args.shards
            );
        }
    }

    /// Fills `q` with `n` messages, ids starting at `from`, in bulk (not measured).
    async fn fill(&self, q: &WorkQueue, from: u64, n: u64) -> Result<()> {
        let step = 50_000;
        let mut done = 0;
        while done < n {
            let take = step.min(n - done);
            q.enqueue_bulk(&items(from + done, take)).await?;
            done += take;
        }
        Ok(())
    }

    /// Deletes the family's keys (SCAN + UNLINK).
    async fn clean(&self, q: &WorkQueue) -> Result<()> {
        for shard in 0..self.args.shards {
            delete_matching(&self.pool, &format!("{}*", q.keys().shard(shard).tag())).await?;
        }
        Ok(())
    }
}

/// `concurrency` producers enqueue `n` messages one call each; returns messages/s.
async fn enqueue_one(q: &WorkQueue, concurrency: usize, n: u64) -> Result<f64> {
    let per_task = n / concurrency as u64;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..concurrency as u64 {
        let q = q.clone();
        tasks.spawn(async move {
            for i in 0..per_task {
                q.enqueue(&format!("m{t}-{i}"), &body()).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok((per_task * concurrency as u64) as f64 / started.elapsed().as_secs_f64())
}

/// One `enqueue_bulk` call of `n` new messages; returns messages/s.
async fn enqueue_bulk(q: &WorkQueue, from: u64, n: u64) -> Result<f64> {
    let batch = items(from, n);
    let started = Instant::now();
    let outcome = q.enqueue_bulk(&batch).await?;
    let rate = outcome.enqueued as f64 / started.elapsed().as_secs_f64();
    if outcome.enqueued != n {
        bail!("bulk enqueue queued {} of {n} messages", outcome.enqueued);
    }
    Ok(rate)
}

/// `concurrency` consumers reserve and ack in batches of `batch` until `n` messages are
/// processed (or the queue is empty); returns messages/s.
async fn process(q: &WorkQueue, concurrency: usize, batch: usize, n: u64) -> Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (q, done) = (q.clone(), done.clone());
        tasks.spawn(async move {
            // Bounded by the target; an empty queue also ends the task.
            while done.load(Ordering::Relaxed) < n {
                let got = q.reserve(batch).await?;
                if got.is_empty() {
                    break;
                }
                let refs: Vec<_> = got.iter().collect();
                q.ack_many(&refs).await?;
                done.fetch_add(got.len() as u64, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

async fn delete_matching(pool: &RedisPool, pattern: &str) -> Result<()> {
    pool.delete_matching(pattern).await?;
    Ok(())
}

async fn run(b: &Bench) -> Result<()> {
    let (n, batch, repeat) = (b.args.messages, b.args.batch, b.args.repeat);
    let wanted = |group: &str| b.args.only.as_deref().is_none_or(|o| o == group);
    if wanted("enqueue_one") {
        for c in [1, 32] {
            let mut rates = Vec::new();
            for _ in 0..repeat {
                let q = b.fresh_queue()?;
                rates.push(enqueue_one(&q, c, n).await?);
                b.clean(&q).await?;
            }
            let line = Line {
                op: "enqueue_one",
                concurrency: c,
                backlog: 0,
                messages: n / c as u64 * c as u64,
                batch: None,
            };
            b.report(&line, rates);
        }
    }
    if wanted("bulk") {
        // A bulk enqueue, then batched processing at concurrency 8, on top of a small and
        // of a large backlog: the rates should not depend on it.
        for backlog in [1_000, b.args.big_backlog] {
            let q = b.fresh_queue()?;
            b.fill(&q, 0, backlog).await?;
            let (mut enq, mut proc) = (Vec::new(), Vec::new());
            for r in 0..repeat as u64 {
                enq.push(enqueue_bulk(&q, backlog + r * n, n).await?);
                proc.push(process(&q, 8, batch, n).await?);
            }
            let mut line = Line {
                op: "enqueue_bulk",
                concurrency: 1,
                backlog,
                messages: n,
                batch: Some(work_queue::MAX_BATCH),
            };
            b.report(&line, enq);
            line.op = "process";
            line.concurrency = 8;
            line.batch = Some(batch);
            b.report(&line, proc);
            b.clean(&q).await?;
        }
    }
    if wanted("memory") {
        memory(b).await?;
    }
    let runs: &[(&str, usize, u64, &[usize])] = &[
        ("process", batch, n, &[1, 8, 32]),
        ("process_unbatched", 1, UNBATCHED_MESSAGES.min(n), &[1, 32]),
    ];
    for &(op, batch, messages, concurrencies) in runs {
        if !wanted(if batch == 1 { "unbatched" } else { "process" }) {
            continue;
        }
        for &c in concurrencies {
            let mut rates = Vec::new();
            for _ in 0..repeat {
                let q = b.fresh_queue()?;
                b.fill(&q, 0, messages).await?;
                rates.push(process(&q, c, batch, messages).await?);
                b.clean(&q).await?;
            }
            let line = Line {
                op,
                concurrency: c,
                backlog: 0,
                messages,
                batch: Some(batch),
            };
            b.report(&line, rates);
        }
    }
    Ok(())
}

/// `used_memory` of every master among `nodes`, by node URL (replicas skipped).
async fn master_memory(nodes: &[String]) -> Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for url in nodes {
        let mut con = redis::Client::open(url.as_str())?
            .get_multiplexed_async_connection()
            .await?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut con).await?;
        if !matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
            continue;
        }
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut con)
            .await?;
        let used = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .context("INFO memory without used_memory")?
            .trim()
            .parse()?;
        out.push((url.clone(), used));
    }
    Ok(out)
}

/// Queues `--big-backlog` messages in one family and reports how much each master grew,
/// per million messages.
async fn memory(b: &Bench) -> Result<()> {
    let n = b.args.big_backlog.max(1);
    let before = master_memory(&b.nodes).await?;
    let q = b.fresh_queue()?;
    b.fill(&q, 0, n).await?;
    let after = master_memory(&b.nodes).await?;
    for ((node, was), (_, is)) in before.iter().zip(&after) {
        let per_million = (is - was) as f64 * 1_000_000.0 / n as f64;
        if b.args.json {
            println!(
                "{}",
                json!({"op": "memory", "node": node, "messages": n,
                       "bytes_per_million": per_million.round()})
            );
        } else {
            println!(
                "memory  {node}: {:.1} MiB per 1M queued messages ({n} queued)",
                per_million / (1024.0 * 1024.0)
            );
        }
    }
    b.clean(&q).await
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let cluster: Vec<String> = std::env::var("REDIS_CLUSTER_NODES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let (pool, nodes) = if cluster.is_empty() {
        (
            work_queue::build_pool(&url, 8, Duration::from_secs(60))?,
            vec![url],
        )
    } else {
        let pool = RedisPool::cluster(&cluster, 8, Duration::from_secs(60), Duration::from_secs(5))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        (pool, cluster)
    };
    let bench = Bench {
        nodes,
        args,
        pool: pool.clone(),
        prefix: format!("bench:{}:", uuid::Uuid::new_v4()),
        families: AtomicU64::new(0),
    };
    let result = run(&bench).await;
    // Clean up whatever a failed run left behind.
    delete_matching(&pool, &format!("{}*", bench.prefix)).await?;
    result
}
