//! The Redis clock and the cluster-wide redrive rate limit.
//!
//! dlq-core stamps `failed_at`, `parked_at` and lease deadlines with Redis `TIME`, so the
//! daemon asks Redis for "now" too: a replica with a skewed clock can then neither redrive
//! early nor starve items.

use dlq_core::RedisPool;

use crate::error::RequeueError;

/// Milliseconds since the epoch on the Redis server's clock.
pub async fn redis_now_ms(pool: &RedisPool) -> Result<i64, RequeueError> {
    let mut conn = pool.get();
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await?;
    Ok(secs * 1000 + micros / 1000)
}

/// A fixed-window limit shared by every replica: one counter per second of the Redis clock.
/// A sweep claims up to its batch from the current second's counter and hands back what it
/// did not use, so N replicas together stay at or below the configured rate.
#[derive(Debug, Clone)]
pub struct RateLimit {
    key_prefix: String,
    per_sec: u32,
}

impl RateLimit {
    /// A limit of `per_sec` decisions per second, counted under `key_prefix`.
    pub fn new(key_prefix: &str, per_sec: u32) -> Self {
        Self {
            key_prefix: format!("{key_prefix}requeue:rate:"),
            per_sec,
        }
    }

    fn key(&self, now_ms: i64) -> String {
        format!("{}{}", self.key_prefix, now_ms.div_euclid(1000))
    }

    /// Claims up to `want` tokens of the second containing `now_ms`; returns how many were
    /// granted (0 when the second's budget is spent).
    pub async fn claim(
        &self,
        pool: &RedisPool,
        now_ms: i64,
        want: u32,
    ) -> Result<u32, RequeueError> {
        let key = self.key(now_ms);
        let mut conn = pool.get();
        // The counter expires after its second has passed; INCRBY and EXPIRE go together so a
        // crash cannot leave a counter without a TTL.
        let (total, _): (i64, i64) = redis::pipe()
            .atomic()
            .cmd("INCRBY")
            .arg(&key)
            .arg(want)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(5)
            .query_async(&mut conn)
            .await?;
        let before = total - i64::from(want);
        let granted = (i64::from(self.per_sec) - before).clamp(0, i64::from(want)) as u32;
        let unused = want - granted;
        if unused > 0 {
            // Give back what this claim overdrew, so the other replicas' share is not eaten.
            let _: i64 = redis::cmd("DECRBY")
                .arg(&key)
                .arg(unused)
                .query_async(&mut conn)
                .await?;
        }
        Ok(granted)
    }

    /// Returns `n` tokens claimed for `now_ms`'s second but not used.
    pub async fn give_back(
        &self,
        pool: &RedisPool,
        now_ms: i64,
        n: u32,
    ) -> Result<(), RequeueError> {
        if n == 0 {
            return Ok(());
        }
        let key = self.key(now_ms);
        let mut conn = pool.get();
        // EXPIRE again: the counter may have expired meanwhile, and DECRBY would recreate it
        // without a TTL.
        let _: (i64, i64) = redis::pipe()
            .atomic()
            .cmd("DECRBY")
            .arg(&key)
            .arg(n)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(5)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}
