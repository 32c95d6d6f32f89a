//! Which Redis a process (or a test) talks to: one server, or a cluster by its seed nodes.
//!
//! Environment variables read by [`RedisTarget::from_test_env`] (tests and benchmarks only):
//! `TEST_REDIS_CLUSTER_NODES` (comma-separated node URLs; when set, the cluster is used) and
//! `TEST_REDIS_URL` (default `redis://127.0.0.1:6379/0`).

use std::time::Duration;

use crate::{PoolBuildError, RedisPool};

/// One Redis or one Redis Cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// The Redis at this URL.
    Single(String),
    /// The Redis Cluster these node URLs belong to (some of its nodes suffice).
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// The target tests use: the cluster of `TEST_REDIS_CLUSTER_NODES` when that is set
    /// (and not blank), else `TEST_REDIS_URL`, else the local default.
    pub fn from_test_env() -> Self {
        match test_cluster_nodes() {
            Some(nodes) => Self::Cluster(nodes),
            None => Self::Single(
                std::env::var("TEST_REDIS_URL")
                    .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned()),
            ),
        }
    }

    /// A pool on this target (see [`RedisPool::new`] and [`RedisPool::cluster`]).
    ///
    /// # Errors
    /// An invalid URL.
    pub fn pool(
        &self,
        size: usize,
        response_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<RedisPool, PoolBuildError> {
        match self {
            Self::Single(url) => RedisPool::new(url, size, response_timeout, connect_timeout),
            Self::Cluster(nodes) => {
                RedisPool::cluster(nodes, size, response_timeout, connect_timeout)
            }
        }
    }

    /// Deletes every key matching `pattern`, from synchronous code (a `Drop`): on a thread
    /// of its own with its own runtime, since the caller's runtime may be blocked in that
    /// very `Drop`. Returns how many keys were deleted.
    ///
    /// # Errors
    /// Redis failures, as text (the caller usually only reports them).
    pub fn delete_matching_blocking(&self, pattern: &str) -> Result<u64, String> {
        let target = self.clone();
        let pattern = pattern.to_owned();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let pool = target
                    .pool(1, Duration::from_secs(30), Duration::from_secs(5))
                    .map_err(|e| e.to_string())?;
                pool.delete_matching(&pattern)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join()
        .map_err(|_| "the cleanup thread panicked".to_owned())?
    }
}

/// `TEST_REDIS_CLUSTER_NODES` split at commas, or `None` when unset or blank.
pub fn test_cluster_nodes() -> Option<Vec<String>> {
    let raw = std::env::var("TEST_REDIS_CLUSTER_NODES").ok()?;
    let nodes: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    (!nodes.is_empty()).then_some(nodes)
}
