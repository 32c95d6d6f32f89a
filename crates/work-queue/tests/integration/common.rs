//! Test support: a queue on the real Redis under a key prefix of its own, removed on drop.

use std::sync::Once;
use std::time::Duration;

use dlq_core::{Dlq, DlqOptions};
use pipeline_redis::{RedisConn, RedisTarget};
use work_queue::{FamilyKeys, QueueOptions, RedisPool, WorkQueue};

/// Logs go to the test output only when `TEST_LOG` is set.
pub fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "debug".into()),
                )
                .with_test_writer()
                .try_init();
        }
    });
}

/// A pool on the test Redis: the cluster of `TEST_REDIS_CLUSTER_NODES` when that is set,
/// else `TEST_REDIS_URL` (the variables every test of the workspace reads).
pub fn pool() -> RedisPool {
    pool_of(4)
}

/// [`pool`] with `size` connections (a waiting loop holds one per shard).
pub fn pool_of(size: usize) -> RedisPool {
    RedisTarget::from_test_env()
        .pool(size, Duration::from_secs(10), Duration::from_secs(5))
        .expect("a valid Redis URL")
}

/// Options for fast tests: short backoff, generous lease.
pub fn fast_options() -> QueueOptions {
    QueueOptions {
        visibility_timeout: Duration::from_secs(30),
        block_timeout: Duration::from_millis(500),
        max_attempts: 3,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(40),
        worker_id: "test-worker".to_owned(),
        dlq_max_items: None,
        shards: 1,
    }
}

/// Owns a unique key prefix; deletes every key under it when dropped.
pub struct TestRedis {
    pub prefix: String,
    pub pool: RedisPool,
}

impl TestRedis {
    pub fn new() -> Self {
        init_logs();
        Self {
            prefix: format!("test:{}:", uuid::Uuid::new_v4()),
            pool: pool(),
        }
    }

    pub fn keys(&self, family: &str) -> FamilyKeys {
        FamilyKeys::new(&self.prefix, family)
    }

    pub fn queue(&self, family: &str, opts: QueueOptions) -> WorkQueue {
        WorkQueue::new(self.pool.clone(), self.keys(family), opts).expect("valid options")
    }

    /// A plain connection for looking at (or tampering with) the raw keys.
    pub fn conn(&self) -> RedisConn {
        self.pool.get()
    }

    /// The DLQ of `family`, through dlq-core's own API.
    pub fn dlq(&self, family: &str) -> Dlq {
        self.dlq_with(family, DlqOptions::default())
    }

    /// The DLQ of `family` with `opts`.
    pub fn dlq_with(&self, family: &str, opts: DlqOptions) -> Dlq {
        Dlq::new(self.pool.clone(), self.keys(family), opts)
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        // It must run even when the test panicked; a failure only leaves test keys behind.
        let _ = RedisTarget::from_test_env().delete_matching_blocking(&format!("{}*", self.prefix));
    }
}
