//! Work done per family and minute: processed (succeeded), failed (every failed attempt,
//! retried or dead-lettered) and dead-lettered, for the console's last-hour charts.
//!
//! The runner counts each settled delivery in the process's [`Activity`] handle (carried
//! by [`crate::Services`]), and the heartbeat task adds the counts to one Redis hash per
//! family and minute
//! (`P{family}:activity:<unix minute>`, fields `processed`, `failed`, `dead_lettered`,
//! expiring after [`KEEP`]) every few seconds ([`flush`]). Why Redis and not the event
//! trail: the trail would answer the same question, but counting an hour of events is a
//! range scan that grows with the throughput, while an hour here is 60 small hashes per
//! family read in one round trip, whatever the load; and the flush costs one pipelined
//! round trip per heartbeat instead of one per message.

use std::collections::BTreeMap;

use dlq_core::{FamilyKeys, RedisPool};
pub use pipeline_runner::{Activity, Minute, minute_now};

/// How long a minute's counts are kept.
pub const KEEP_SECS: u64 = 2 * 60 * 60;

/// The key of a family's counts for one minute.
pub fn key(keys: &FamilyKeys, minute: i64) -> String {
    format!("{}:activity:{minute}", keys.tag())
}

/// Adds the counts recorded since the last flush to Redis, in one pipelined round trip.
/// On failure they are put back, so a Redis outage delays the counts and loses none.
///
/// # Errors
/// Redis failures.
pub async fn flush(pool: &RedisPool, prefix: &str, activity: &Activity) -> redis::RedisResult<()> {
    let taken = activity.take_pending();
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
        activity.restore_pending(taken);
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
