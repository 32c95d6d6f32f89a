//! Heartbeats: every daemon writes what it is and what it is doing to Redis every
//! [`EVERY`], under a key that expires after [`TTL`], so a daemon that died (kill -9, lost
//! node) drops off the list by itself once its key runs out.
//!
//! Keys share the `{workers}` hash tag (one slot): `P{workers}:beat:<id>` holds one
//! daemon's [`Beat`] as JSON with the TTL; the set `P{workers}:ids` names the ids, so a
//! listing reads them in one round trip instead of scanning the keyspace, and forgets
//! ids whose key expired.

use std::time::Duration;

use chrono::{DateTime, Utc};
use dlq_core::RedisPool;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::activity;

/// How often a daemon writes its heartbeat (and flushes its activity counts).
pub const EVERY: Duration = Duration::from_secs(5);
/// How long a heartbeat lives: three beats, so one slow write does not drop a live daemon.
pub const TTL: Duration = Duration::from_secs(15);

/// One daemon's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    /// Unique per process: `host:pid:start`.
    pub id: String,
    /// The binary (`scrape-worker`, `pipeline-api`, ...).
    pub kind: String,
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The binary's version.
    pub version: String,
    /// The family it works on, for workers.
    pub family: Option<String>,
    /// Deliveries it may process at once (0 for daemons that take no deliveries).
    pub concurrency: u64,
    /// Deliveries in progress now.
    pub in_flight: u64,
    /// Whether its family is paused (workers).
    pub paused: bool,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it wrote this heartbeat.
    pub last_beat: DateTime<Utc>,
}

fn ids_key(prefix: &str) -> String {
    format!("{prefix}{{workers}}:ids")
}

fn beat_key(prefix: &str, id: &str) -> String {
    format!("{prefix}{{workers}}:beat:{id}")
}

/// The machine's host name (`unknown` when the kernel does not say).
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Writes one heartbeat (the beat with its TTL, and its id in the set) in one round trip.
///
/// # Errors
/// Redis failures.
pub async fn write(pool: &RedisPool, prefix: &str, beat: &Beat) -> redis::RedisResult<()> {
    let json = serde_json::to_string(beat).expect("a Beat always serialises");
    let mut con = pool.get();
    redis::pipe()
        .set_ex(beat_key(prefix, &beat.id), json, TTL.as_secs())
        .ignore()
        .sadd(ids_key(prefix), &beat.id)
        .ignore()
        .query_async::<()>(&mut con)
        .await
}

/// Removes a heartbeat at once (clean shutdown), so the daemon does not linger for a TTL.
///
/// # Errors
/// Redis failures.
pub async fn remove(pool: &RedisPool, prefix: &str, id: &str) -> redis::RedisResult<()> {
    let mut con = pool.get();
    redis::pipe()
        .del(beat_key(prefix, id))
        .ignore()
        .srem(ids_key(prefix), id)
        .ignore()
        .query_async::<()>(&mut con)
        .await
}

/// Every live daemon, by kind, host and pid. Ids whose heartbeat expired are forgotten.
///
/// # Errors
/// Redis failures.
pub async fn live(pool: &RedisPool, prefix: &str) -> redis::RedisResult<Vec<Beat>> {
    let mut con = pool.get();
    let ids: Vec<String> = redis::cmd("SMEMBERS")
        .arg(ids_key(prefix))
        .query_async(&mut con)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = ids.iter().map(|id| beat_key(prefix, id)).collect();
    let raw: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut con).await?;
    let mut beats = Vec::new();
    let mut dead = Vec::new();
    for (id, r) in ids.into_iter().zip(raw) {
        match r.and_then(|r| serde_json::from_str::<Beat>(&r).ok()) {
            Some(b) => beats.push(b),
            None => dead.push(id),
        }
    }
    if !dead.is_empty() {
        let _: u64 = redis::cmd("SREM")
            .arg(ids_key(prefix))
            .arg(&dead)
            .query_async(&mut con)
            .await?;
    }
    beats.sort_by(|a, b| (&a.kind, &a.host, a.pid).cmp(&(&b.kind, &b.host, b.pid)));
    Ok(beats)
}

/// How often a daemon reads the pause flags: the longest a pause takes to reach a worker
/// (plus a reserve already waiting, at most `queue.block_timeout_ms`).
pub const PAUSE_EVERY: Duration = Duration::from_secs(1);

/// Reads the pause flags of every family every [`PAUSE_EVERY`] (for the runner, which then
/// checks a local flag instead of asking Redis before each reserve), and writes this
/// process's heartbeat and flushes its activity counts every [`EVERY`], until `cancel`
/// fires; then removes the heartbeat. Failures are logged and retried: a heartbeat is
/// advisory and must never stop the daemon, and a pause flag that cannot be read leaves
/// the last one seen in force.
pub async fn run(services: crate::Services, kind: &'static str, cancel: CancellationToken) {
    let prefix = services.settings.redis.key_prefix.clone();
    let started_at = Utc::now();
    let pid = std::process::id();
    let host = host_name();
    let id = format!("{host}:{pid}:{}", started_at.timestamp_millis());
    let beat_every = (EVERY.as_millis() / PAUSE_EVERY.as_millis()).max(1) as u64;
    let mut tick: u64 = 0;
    loop {
        match paused_families(&services).await {
            Ok(paused) => services.activity.set_paused(paused),
            Err(err) => tracing::debug!(error = %err, "pause flags not read"),
        }
        if tick.is_multiple_of(beat_every) {
            let runner = services.activity.runner();
            let family = runner.as_ref().map(|r| r.0.clone());
            let beat = Beat {
                id: id.clone(),
                kind: kind.to_owned(),
                host: host.clone(),
                pid,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                paused: family
                    .as_deref()
                    .is_some_and(|f| services.activity.is_paused(f)),
                family,
                concurrency: runner.map_or(0, |r| r.1),
                in_flight: services.activity.in_flight_now(),
                started_at,
                last_beat: Utc::now(),
            };
            if let Err(err) = write(&services.redis, &prefix, &beat).await {
                tracing::debug!(error = %err, "heartbeat not written");
            }
            if let Err(err) = activity::flush(&services.redis, &prefix, &services.activity).await {
                tracing::debug!(error = %err, "activity counts not flushed; kept for the next beat");
            }
        }
        tick += 1;
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(PAUSE_EVERY) => {}
        }
    }
    // Best effort at exit: a failure leaves the beat to expire.
    let _ = activity::flush(&services.redis, &prefix, &services.activity).await;
    let _ = remove(&services.redis, &prefix, &id).await;
}

/// The families whose pause flag is set, in one round trip.
async fn paused_families(services: &crate::Services) -> redis::RedisResult<Vec<String>> {
    // Concurrent GETs, not one MGET or one pipeline: the keys live in different families'
    // hash slots, which a cluster may serve from different masters. On one Redis the
    // multiplexed connection still sends them in one write.
    let flags: Vec<Option<String>> =
        futures::future::try_join_all(crate::Family::ALL.iter().map(|f| {
            let key = crate::pause::key(services.queue(*f).keys());
            let mut con = services.redis.get();
            async move { redis::cmd("GET").arg(key).query_async(&mut con).await }
        }))
        .await?;
    Ok(crate::Family::ALL
        .iter()
        .zip(flags)
        .filter(|(_, v)| v.is_some())
        .map(|(f, _)| f.as_str().to_owned())
        .collect())
}
