//! Work done per family and minute: processed (succeeded), failed (every failed attempt,
//! retried or dead-lettered) and dead-lettered, for the console's last-hour charts.
//!
//! The runner counts each settled delivery in process memory ([`record`]), and the
//! heartbeat task adds the counts to one Redis hash per family and minute
//! (`P{family}:activity:<unix minute>`, fields `processed`, `failed`, `dead_lettered`,
//! expiring after [`KEEP`]) every few seconds ([`flush`]). Why Redis and not the event
//! trail: the trail would answer the same question, but counting an hour of events is a
//! range scan that grows with the throughput, while an hour here is 60 small hashes per
//! family read in one round trip, whatever the load; and the flush costs one pipelined
//! round trip per heartbeat instead of one per message.

use std::collections::BTreeMap;
use std::sync::Mutex;

use dlq_core::{FamilyKeys, RedisPool};
use serde::Serialize;

/// How long a minute's counts are kept.
pub const KEEP_SECS: u64 = 2 * 60 * 60;

/// Counts of one family in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Minute {
    /// Deliveries that succeeded.
    pub processed: u64,
    /// Failed attempts (retried or dead-lettered).
    pub failed: u64,
    /// Deliveries moved to the DLQ.
    pub dead_lettered: u64,
}

type Pending = BTreeMap<(String, i64), Minute>;

static PENDING: Mutex<Pending> = Mutex::new(BTreeMap::new());
static IN_FLIGHT: Mutex<BTreeMap<String, i64>> = Mutex::new(BTreeMap::new());

/// The current unix minute.
pub fn minute_now() -> i64 {
    chrono::Utc::now().timestamp().div_euclid(60)
}

/// Counts one settled delivery of `family` with the runner's outcome word.
pub fn record(family: &str, outcome: &str) {
    let minute = minute_now();
    let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    let m = pending.entry((family.to_owned(), minute)).or_default();
    match outcome {
        "succeeded" => m.processed += 1,
        "retry_scheduled" => m.failed += 1,
        "dead_lettered" => {
            m.failed += 1;
            m.dead_lettered += 1;
        }
        // Lease lost or a settle that failed: the message comes back; nothing is counted.
        _ => {}
    }
}

/// Marks one delivery of `family` in progress until the guard is dropped.
pub fn in_flight(family: &str) -> InFlight {
    let mut map = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    *map.entry(family.to_owned()).or_default() += 1;
    InFlight(family.to_owned())
}

/// See [`in_flight`].
#[derive(Debug)]
pub struct InFlight(String);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.0) {
            *n -= 1;
        }
    }
}

/// Deliveries in progress in this process, over every family.
pub fn in_flight_now() -> u64 {
    let map = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    map.values().map(|n| (*n).max(0) as u64).sum()
}

/// The key of a family's counts for one minute.
pub fn key(keys: &FamilyKeys, minute: i64) -> String {
    format!("{}:activity:{minute}", keys.tag())
}

/// Adds the counts recorded since the last flush to Redis, in one pipelined round trip.
/// On failure they are put back, so a Redis outage delays the counts and loses none.
///
/// # Errors
/// Redis failures.
pub async fn flush(pool: &RedisPool, prefix: &str) -> redis::RedisResult<()> {
    let taken = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()));
    if taken.is_empty() {
        return Ok(());
    }
    // One pipeline per family, sent concurrently: a family's keys share its hash slot, but
    // two families' may live on two masters of a cluster, and a pipeline goes to one node.
    let mut pipes: BTreeMap<&str, redis::Pipeline> = BTreeMap::new();
    for ((family, minute), m) in &taken {
        let key = key(&FamilyKeys::new(prefix, family), *minute);
        let pipe = pipes.entry(family.as_str()).or_default();
        for (field, n) in [
            ("processed", m.processed),
            ("failed", m.failed),
            ("dead_lettered", m.dead_lettered),
        ] {
            if n > 0 {
                pipe.hincr(&key, field, n).ignore();
            }
        }
        pipe.expire(&key, KEEP_SECS as i64).ignore();
    }
    let sent = futures::future::try_join_all(pipes.values().map(|pipe| {
        let mut con = pool.get();
        async move { pipe.query_async::<()>(&mut con).await }
    }))
    .await;
    drop(pipes);
    // A failure puts everything back, so a family that did land is counted twice for that
    // minute: rare (a Redis error mid-flush) and an over-count of a dashboard figure, where
    // losing the counts would hide failures.
    if let Err(err) = sent {
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        for (k, m) in taken {
            let e = pending.entry(k).or_default();
            e.processed += m.processed;
            e.failed += m.failed;
            e.dead_lettered += m.dead_lettered;
        }
        return Err(err);
    }
    Ok(())
}

/// A family's counts for the `minutes` minutes up to and including the current one, oldest
/// first, in one round trip.
///
/// # Errors
/// Redis failures.
pub async fn last_minutes(
    pool: &RedisPool,
    keys: &FamilyKeys,
    minutes: i64,
) -> redis::RedisResult<Vec<(i64, Minute)>> {
    let now = minute_now();
    let range: Vec<i64> = (now - minutes + 1..=now).collect();
    let mut pipe = redis::pipe();
    for m in &range {
        pipe.cmd("HMGET")
            .arg(key(keys, *m))
            .arg(&["processed", "failed", "dead_lettered"]);
    }
    let mut con = pool.get();
    let rows: Vec<(Option<u64>, Option<u64>, Option<u64>)> = pipe.query_async(&mut con).await?;
    Ok(range
        .into_iter()
        .zip(rows)
        .map(|(m, (p, f, d))| {
            (
                m,
                Minute {
                    processed: p.unwrap_or(0),
                    failed: f.unwrap_or(0),
                    dead_lettered: d.unwrap_or(0),
                },
            )
        })
        .collect())
}

/// The runner of this process: its family and concurrency, for the heartbeat.
static RUNNER: Mutex<Option<(String, u64)>> = Mutex::new(None);
/// The families this process last saw paused (refreshed by the heartbeat task).
static PAUSED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records that this process runs a worker of `family` with `concurrency`.
pub fn runner_started(family: &str, concurrency: usize) {
    *RUNNER.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((family.to_owned(), concurrency as u64));
}

/// The worker this process runs, if any: family and concurrency.
pub fn runner() -> Option<(String, u64)> {
    RUNNER.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Sets the families seen paused.
pub fn set_paused(families: Vec<String>) {
    *PAUSED.lock().unwrap_or_else(|e| e.into_inner()) = families;
}

/// Whether `family` was paused at the last look (at most [`crate::heartbeat::PAUSE_EVERY`] ago).
pub fn is_paused(family: &str) -> bool {
    PAUSED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|f| f == family)
}
