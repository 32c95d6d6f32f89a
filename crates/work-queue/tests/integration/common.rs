//! Test support: a queue on the real Redis under a key prefix of its own, removed on drop.

use std::sync::Once;
use std::time::Duration;

use dlq_core::{Dlq, DlqOptions};
use work_queue::{FamilyKeys, QueueOptions, RedisPool, WorkQueue};

/// `TEST_REDIS_URL` (the variable every test of the workspace reads), or the local default.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

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

/// A pool on the test Redis.
pub fn pool() -> RedisPool {
    work_queue::build_pool(&redis_url(), 4, Duration::from_secs(10)).expect("a valid Redis URL")
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
    pub fn conn(&self) -> redis::aio::ConnectionManager {
        self.pool.get()
    }

    /// The DLQ of `family`, through dlq-core's own API.
    pub fn dlq(&self, family: &str) -> Dlq {
        Dlq::new(self.pool.clone(), self.keys(family), DlqOptions::default())
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        // Synchronous on purpose: it must run even when the test panicked, and async code
        // cannot run in Drop. A failure here only leaves test keys behind, so it is ignored.
        let Ok(client) = redis::Client::open(redis_url()) else {
            return;
        };
        let Ok(mut con) = client.get_connection() else {
            return;
        };
        let pattern = format!("{}*", self.prefix);
        let mut cursor: u64 = 0;
        // Bounded: a test never writes anywhere near this many keys.
        for _ in 0..100_000 {
            let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut con)
            else {
                return;
            };
            if !keys.is_empty() {
                let _: redis::RedisResult<u64> = redis::cmd("DEL").arg(&keys).query(&mut con);
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
}
