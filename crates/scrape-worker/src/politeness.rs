//! Per-host politeness shared by every replica through Redis: a minimum delay between the
//! starts of two requests to one host, and a cap on requests in flight to it.
//!
//! Each host has two keys under the configured prefix, hash-tagged by host so the script
//! also runs on Redis Cluster: `ratelimit:{host}:last_request` (the time of the latest
//! request start, as the original service kept it) and `ratelimit:{host}:in_flight` (a
//! sorted set of slot tokens scored by lease expiry). One Lua script per acquire checks
//! both and takes a slot atomically, with Redis's own clock, so replicas with skewed clocks
//! agree. A slot is a lease: a worker that dies holding one frees it when the lease runs
//! out, so a crash cannot block a host for ever.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Script;

use crate::FetchError;

const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max = tonumber(ARGV[2])
local delay = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if max > 0 then
  local held = redis.call('ZCARD', KEYS[1])
  if held >= max then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    local wait = tonumber(first[2]) - now
    -- a slot usually frees long before its lease ends: poll, but not faster than 10 ms
    return {0, math.max(10, math.min(wait, 100))}
  end
end
if delay > 0 then
  local last = tonumber(redis.call('GET', KEYS[2]) or '0')
  if now < last + delay then
    return {0, last + delay - now}
  end
  redis.call('SET', KEYS[2], now, 'PX', math.max(delay * 4, 60000))
end
if max > 0 then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], lease * 2)
end
return {1, 0}
";

const RELEASE: &str = "return redis.call('ZREM', KEYS[1], ARGV[1])";

/// Politeness limits of one host set, backed by Redis.
#[derive(Clone)]
pub struct HostLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    redis: dlq_core::RedisPool,
    prefix: String,
    min_delay: Duration,
    max_concurrency: u32,
    lease: Duration,
    max_wait: Duration,
    acquire: Script,
    release: Script,
}

/// The limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Least time between two request starts to one host (0: none).
    pub min_delay: Duration,
    /// Most requests in flight to one host across all replicas (0: no cap).
    pub max_concurrency: u32,
    /// How long a slot is held at most if its holder never releases it (a crash).
    pub lease: Duration,
    /// Longest a fetch waits for a slot before failing as transient (`host busy`).
    pub max_wait: Duration,
}

impl Limits {
    /// Whether these limits restrict anything at all.
    pub fn is_active(&self) -> bool {
        !self.min_delay.is_zero() || self.max_concurrency > 0
    }
}

/// A slot on one host; dropping it frees the slot (in the background).
pub struct HostSlot {
    inner: Option<(Arc<Inner>, String, String)>,
}

impl Drop for HostSlot {
    fn drop(&mut self) {
        let Some((inner, key, token)) = self.inner.take() else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: the lease frees the slot
        };
        handle.spawn(async move {
            // A failed release only delays the host until the lease ends.
            let mut conn = inner.redis.get();
            let _: Result<i64, _> = inner
                .release
                .key(&key)
                .arg(&token)
                .invoke_async(&mut conn)
                .await;
        });
    }
}

impl HostLimiter {
    /// A limiter writing keys under `prefix`.
    pub fn new(redis: dlq_core::RedisPool, prefix: &str, limits: Limits) -> Self {
        Self {
            inner: Arc::new(Inner {
                redis,
                prefix: prefix.to_owned(),
                min_delay: limits.min_delay,
                max_concurrency: limits.max_concurrency,
                lease: limits.lease,
                max_wait: limits.max_wait,
                acquire: Script::new(ACQUIRE),
                release: Script::new(RELEASE),
            }),
        }
    }

    fn keys(&self, host: &str) -> (String, String) {
        let p = &self.inner.prefix;
        (
            format!("{p}ratelimit:{{{host}}}:in_flight"),
            format!("{p}ratelimit:{{{host}}}:last_request"),
        )
    }

    /// Waits (bounded by the configured maximum) until `host` may be requested, and takes
    /// a slot. A busy host is waited for, not failed, unless the wait runs out.
    pub async fn acquire(&self, host: &str) -> Result<HostSlot, FetchError> {
        let inner = &self.inner;
        let (slots, last) = self.keys(host);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let deadline = Instant::now() + inner.max_wait;
        loop {
            let mut conn = inner.redis.get();
            let (granted, wait_ms): (i64, i64) = inner
                .acquire
                .key(&slots)
                .key(&last)
                .arg(&token)
                .arg(inner.max_concurrency)
                .arg(inner.min_delay.as_millis() as u64)
                .arg(inner.lease.as_millis() as u64)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| FetchError::HostBusy(format!("politeness store failed: {e}")))?;
            drop(conn);
            if granted == 1 {
                let held = (inner.max_concurrency > 0).then(|| (inner.clone(), slots, token));
                return Ok(HostSlot { inner: held });
            }
            let wait = Duration::from_millis(wait_ms.max(1) as u64);
            if Instant::now() + wait > deadline {
                return Err(FetchError::HostBusy(format!(
                    "no politeness slot for {host} within {:?}",
                    inner.max_wait
                )));
            }
            metrics::counter!("pipeline_scrape_politeness_waits_total").increment(1);
            tokio::time::sleep(wait).await;
        }
    }
}
