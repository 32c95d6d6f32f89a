//! Pop and redrive by id: dlq-core against the original list-scan algorithm, on one Redis.
//!
//! ```text
//! cargo run --release -p dlq-core --example dlq_bench -- --sizes 1000,10000,100000 --json
//! ```
//!
//! For each size N both DLQs are filled with N identical items; each measured op removes one
//! random id from a full DLQ, and the item is put back (unmeasured) so N stays constant.
//! Every size stays filled for the whole run and the ops go round-robin over the sizes, so
//! load from elsewhere on the machine skews no size in particular. `--ops` (default 200) is
//! the dlq-core sample count per size and op; list-scan takes fewer at large sizes.
//! `list-scan` is the original service's algorithm: LRANGE the whole list, parse each entry
//! to find the id, LREM it (and, for redrive, LPUSH it onto the work queue).
//! With `--json` it prints one JSON object per line:
//! `{"size": N, "impl": "dlq-core" | "list-scan", "op": "pop" | "redrive", "median_us": X}`.
//! Reads `REDIS_URL` (default `redis://127.0.0.1:6379`); keys live under `bench:<uuid>:` and
//! are deleted at the end.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dlq_core::{Dlq, DlqItem, DlqOptions, ErrorKind, FamilyKeys, RedisPool, build_pool};
use futures::StreamExt;

struct Args {
    sizes: Vec<usize>,
    json: bool,
    ops: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        sizes: vec![1000, 10_000, 100_000],
        json: false,
        ops: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => args.json = true,
            "--sizes" => {
                let v = it.next().context("--sizes needs a value")?;
                args.sizes = v
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--sizes takes numbers like 1000,10000")?;
            }
            "--ops" => args.ops = it.next().context("--ops needs a value")?.parse()?,
            other => bail!("unknown argument {other:?} (use --sizes a,b,c [--ops n] [--json])"),
        }
    }
    if args.sizes.contains(&0) || args.ops == 0 {
        bail!("sizes and ops must be positive");
    }
    Ok(args)
}

/// Small deterministic generator for picking ids; quality is irrelevant here.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn bench_item(i: usize) -> DlqItem {
    let mut it = DlqItem::new(
        format!("src-{i:07}"),
        "scrape",
        "GET https://example.com/page: operation timed out after 30s",
        ErrorKind::Transient,
        serde_json::json!({"source_id": format!("src-{i:07}"), "job_id": "7f0c2c1e-5b1c-4f5e-9a43-2f1d6c0b9e11"}),
    );
    it.attempts = 5;
    it.worker_id = Some("scrape-worker-7d9f-1".into());
    it
}

/// The original service's stored JSON for an item.
fn legacy_json(item: &DlqItem) -> String {
    serde_json::to_string(item).expect("item serializes")
}

fn median_us(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    let mid = samples.len() / 2;
    let m = if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2
    };
    (m.as_nanos() as f64 / 1000.0 * 10.0).round() / 10.0
}

/// One size's DLQs: a dlq-core DLQ and an original-style list, each holding `n` items.
struct Bench {
    n: usize,
    pool: RedisPool,
    dlq: Dlq,
    keys: FamilyKeys,
    legacy: String,
}

impl Bench {
    async fn fill(&self) -> anyhow::Result<()> {
        let n = self.n;
        let mut conn = self.pool.get();
        let pushes = futures::stream::iter(0..n)
            .map(|i| {
                let dlq = self.dlq.clone();
                async move { dlq.push(&bench_item(i)).await }
            })
            .buffer_unordered(64)
            .collect::<Vec<_>>()
            .await;
        for p in pushes {
            p?;
        }
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let mut pipe = redis::pipe();
            for i in chunk {
                pipe.cmd("RPUSH")
                    .arg(&self.legacy)
                    .arg(legacy_json(&bench_item(*i)))
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        let total = self.dlq.stats().await?.total;
        let llen: usize = redis::cmd("LLEN")
            .arg(&self.legacy)
            .query_async(&mut conn)
            .await?;
        if total != n as u64 || llen != n {
            bail!("fill: dlq-core holds {total}, list holds {llen}, wanted {n}");
        }
        Ok(())
    }

    /// dlq-core: one pop or redrive of a random id, then the item is put back.
    async fn core_op(&self, rng: &mut XorShift, redrive: bool) -> anyhow::Result<Duration> {
        let item = bench_item(rng.below(self.n));
        let started = Instant::now();
        let found = if redrive {
            self.dlq.redrive(&item.id).await?.map(|o| o.item)
        } else {
            self.dlq.pop(&item.id).await?
        };
        let took = started.elapsed();
        if found.as_ref().map(|i| &i.id) != Some(&item.id) {
            bail!("dlq-core lost {}", item.id);
        }
        if redrive {
            let mut conn = self.pool.get();
            redis::cmd("DEL")
                .arg(self.keys.msg(&item.id))
                .arg(self.keys.lane(""))
                .arg(self.keys.rota())
                .arg(self.keys.lanes())
                .query_async::<()>(&mut conn)
                .await?;
        }
        self.dlq.push(&item).await?;
        Ok(took)
    }

    /// The original algorithm: read the whole list, find the id, LREM it by value.
    async fn scan_op(&self, rng: &mut XorShift, redrive: bool) -> anyhow::Result<Duration> {
        let id = bench_item(rng.below(self.n)).id;
        let mut conn = self.pool.get();
        let started = Instant::now();
        let all: Vec<String> = redis::cmd("LRANGE")
            .arg(&self.legacy)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        let raw = all
            .into_iter()
            .find(|raw| {
                serde_json::from_str::<serde_json::Value>(raw)
                    .is_ok_and(|v| v.get("id").and_then(|i| i.as_str()) == Some(id.as_str()))
            })
            .context("list-scan: id not found")?;
        let removed: usize = redis::cmd("LREM")
            .arg(&self.legacy)
            .arg(1)
            .arg(&raw)
            .query_async(&mut conn)
            .await?;
        if redrive && removed == 1 {
            redis::cmd("LPUSH")
                .arg(self.keys.ready())
                .arg(&id)
                .query_async::<()>(&mut conn)
                .await?;
        }
        let took = started.elapsed();
        let mut pipe = redis::pipe();
        pipe.cmd("RPUSH").arg(&self.legacy).arg(&raw).ignore();
        pipe.cmd("DEL").arg(self.keys.ready()).ignore();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(took)
    }
}

async fn cleanup(pool: &RedisPool, prefix: &str) -> anyhow::Result<()> {
    pool.delete_matching(&format!("{prefix}*")).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let pool = build_pool(&url, 16, Duration::from_secs(60))?;
    let prefix = format!("bench:{}:", uuid::Uuid::new_v4());
    let result = run(&pool, &prefix, &args).await;
    cleanup(&pool, &prefix).await?;
    result
}

/// Every size is filled first and the measurements go round-robin over the sizes in small
/// rounds, so a burst of load from elsewhere on the machine hits all sizes alike instead of
/// skewing one of them.
async fn run(pool: &RedisPool, prefix: &str, args: &Args) -> anyhow::Result<()> {
    const ROUNDS: usize = 10;
    let mut benches = Vec::new();
    for &n in &args.sizes {
        let keys = FamilyKeys::new(&format!("{prefix}n{n}:"), "scrape");
        let bench = Bench {
            n,
            pool: pool.clone(),
            dlq: Dlq::new(pool.clone(), keys.clone(), DlqOptions::default()),
            legacy: format!("{prefix}n{n}:legacy:dlq:scrape"),
            keys,
        };
        eprintln!("filling {n} items (dlq-core and list)...");
        bench.fill().await?;
        benches.push(bench);
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        | 1;
    let mut rng = XorShift(seed);
    // results[size index][op index] = (dlq-core samples, list-scan samples)
    let mut results = vec![[(Vec::new(), Vec::new()), (Vec::new(), Vec::new())]; benches.len()];
    for (oi, redrive) in [false, true].into_iter().enumerate() {
        for b in &benches {
            for _ in 0..20 {
                b.core_op(&mut rng, redrive).await?; // warm-up: script load, pool
            }
        }
        for round in 0..ROUNDS {
            for (bi, b) in benches.iter().enumerate() {
                let (core, scan) = &mut results[bi][oi];
                for _ in 0..args.ops.div_ceil(ROUNDS) {
                    core.push(b.core_op(&mut rng, redrive).await?);
                }
                // list-scan reads the whole list per op: fewer ops at large sizes.
                let scan_ops = (2_000_000 / b.n).clamp(15, args.ops);
                let per_round = scan_ops / ROUNDS + usize::from(round < scan_ops % ROUNDS);
                for _ in 0..per_round {
                    scan.push(b.scan_op(&mut rng, redrive).await?);
                }
            }
        }
    }

    if !args.json {
        println!(
            "{:>8}  {:<10} {:<8} {:>12}",
            "size", "impl", "op", "median_us"
        );
    }
    let mut core_pop = Vec::new();
    let mut speedups = Vec::new();
    for (b, per_op) in benches.iter().zip(results) {
        for (op, (core, scan)) in ["pop", "redrive"].into_iter().zip(per_op) {
            let (c, s) = (median_us(core), median_us(scan));
            if op == "pop" {
                core_pop.push((b.n, c));
            }
            speedups.push((b.n, op, s / c));
            for (imp, m) in [("dlq-core", c), ("list-scan", s)] {
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({"size": b.n, "impl": imp, "op": op, "median_us": m})
                    );
                } else {
                    println!("{:>8}  {imp:<10} {op:<8} {m:>12.1}", b.n);
                }
            }
        }
    }
    if let (Some(first), Some(last)) = (core_pop.first(), core_pop.last()) {
        eprintln!(
            "dlq-core pop median: {:.1} us at {} vs {:.1} us at {} ({:.2}x)",
            last.1,
            last.0,
            first.1,
            first.0,
            last.1 / first.1
        );
    }
    for (n, op, x) in speedups {
        eprintln!("size {n} {op}: dlq-core is {x:.0}x faster than list-scan");
    }
    Ok(())
}
