//! Whole-keyspace helpers for tests, benchmarks and operator tools: finding and deleting
//! every key under a prefix, on one Redis or across a cluster's masters.
//!
//! Not for the hot path: on a cluster they use `KEYS` (sent to every master and the
//! answers combined, since a `SCAN` cursor belongs to one node), which walks each master's
//! whole keyspace.

use redis::RedisResult;

use crate::RedisPool;

/// Most keys one `DEL` names: a bounded command, never one huge reply or request.
const DELETE_CHUNK: usize = 500;

/// Most `SCAN` rounds on one Redis: bounds the walk even if keys are written meanwhile.
const MAX_SCAN_ROUNDS: usize = 1_000_000;

impl RedisPool {
    /// Every key matching the glob `pattern` (on a cluster: on every master).
    ///
    /// # Errors
    /// Redis failures.
    pub async fn keys_matching(&self, pattern: &str) -> RedisResult<Vec<String>> {
        let mut conn = self.get();
        if self.is_cluster() {
            return redis::cmd("KEYS").arg(pattern).query_async(&mut conn).await;
        }
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        for _ in 0..MAX_SCAN_ROUNDS {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        Ok(keys)
    }

    /// Deletes every key matching `pattern`; returns how many were deleted. On a cluster a
    /// `DEL` naming keys of several slots is split by slot by the client.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn delete_matching(&self, pattern: &str) -> RedisResult<u64> {
        let keys = self.keys_matching(pattern).await?;
        let mut conn = self.get();
        let mut deleted = 0;
        for chunk in keys.chunks(DELETE_CHUNK) {
            let n: u64 = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await?;
            deleted += n;
        }
        Ok(deleted)
    }
}
