// The BullMQ side of the runner benchmark: the same work as the Rust side, on the same Redis.
// Started by `cargo run --release -p pipeline-ops --example runner_bench`, which runs
// `npm ci` here first; it can also run alone:
//
//   node bench.js --redis redis://127.0.0.1:6379 --prefix bench-bullmq:x --messages 50000 \
//     --concurrency 1,8,32 --idle 200 --load 4000 --rate 2000
//
// For each concurrency it prints one JSON line: throughput over `--messages` no-op jobs added
// with `addBulk` before the worker starts, then pickup latency (add to processor start) at
// idle (one job at a time, a short pause between) and under load (`--load` jobs added at
// `--rate` a second while the worker runs). Jobs use `removeOnComplete`. Every key lives
// under `--prefix`, and the queue is obliterated at the end.

import { Queue, Worker } from "bullmq";
import { performance } from "node:perf_hooks";

function parseArgs(argv) {
  const args = {
    redis: "redis://127.0.0.1:6379",
    prefix: "bench-bullmq",
    messages: 50000,
    concurrency: [1, 8, 32],
    idle: 200,
    load: 4000,
    rate: 2000,
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [key, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`missing value for ${key}`);
    switch (key) {
      case "--redis": args.redis = value; break;
      case "--prefix": args.prefix = value; break;
      case "--messages": args.messages = Number(value); break;
      case "--concurrency": args.concurrency = value.split(",").map(Number); break;
      case "--idle": args.idle = Number(value); break;
      case "--load": args.load = Number(value); break;
      case "--rate": args.rate = Number(value); break;
      default: throw new Error(`unknown argument ${key}`);
    }
  }
  return args;
}

// Wall-clock milliseconds with sub-millisecond precision: add and start stamps compare
// across the producer and the processor.
const nowMs = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)];
}

function connectionOf(url) {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    db: Number((u.pathname || "/0").slice(1) || 0),
    maxRetriesPerRequest: null,
  };
}

async function runOne(args, connection, concurrency) {
  const name = `c${concurrency}`;
  const queue = new Queue(name, { connection, prefix: args.prefix });
  const opts = { removeOnComplete: true, removeOnFail: true };

  // Throughput: a full backlog first, then the worker.
  for (let i = 0; i < args.messages; i += 1000) {
    const n = Math.min(1000, args.messages - i);
    await queue.addBulk(Array.from({ length: n }, () => ({ name: "noop", data: {}, opts })));
  }
  let phase = "throughput";
  let done = 0;
  let target = args.messages;
  let finished;
  let allDone = new Promise((resolve) => { finished = resolve; });
  let latencies = [];
  const started = nowMs();
  const worker = new Worker(
    name,
    async (job) => {
      if (phase !== "throughput") latencies.push(nowMs() - job.data.t);
      done += 1;
      if (done === target) finished();
    },
    { connection, prefix: args.prefix, concurrency },
  );
  await allDone;
  const seconds = (nowMs() - started) / 1000;

  // Idle: one job at a time, the worker waiting for each.
  phase = "idle";
  for (let i = 0; i < args.idle; i++) {
    done = 0;
    target = 1;
    allDone = new Promise((resolve) => { finished = resolve; });
    await sleep(2 + (i % 5));
    await queue.add("noop", { t: nowMs() }, opts);
    await allDone;
  }
  const idle = latencies.sort((a, b) => a - b);

  // Under load: jobs added at a steady rate while the worker runs.
  phase = "load";
  latencies = [];
  done = 0;
  target = args.load;
  allDone = new Promise((resolve) => { finished = resolve; });
  const t0 = nowMs();
  const adds = [];
  for (let i = 0; i < args.load; i++) {
    const due = t0 + (i * 1000) / args.rate;
    const wait = due - nowMs();
    if (wait > 1) await sleep(wait);
    adds.push(queue.add("noop", { t: nowMs() }, opts));
  }
  await Promise.all(adds);
  await allDone;
  const load = latencies.sort((a, b) => a - b);

  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  return {
    system: "bullmq",
    concurrency,
    messages: args.messages,
    seconds,
    rate: args.messages / seconds,
    idle_p50_ms: percentile(idle, 50),
    idle_p99_ms: percentile(idle, 99),
    load_p50_ms: percentile(load, 50),
    load_p99_ms: percentile(load, 99),
  };
}

const args = parseArgs(process.argv.slice(2));
const connection = connectionOf(args.redis);
for (const c of args.concurrency) {
  console.log(JSON.stringify(await runOne(args, connection, c)));
}
process.exit(0);
