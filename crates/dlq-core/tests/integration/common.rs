//! Test harness: a DLQ under a unique prefix, cleaned up on drop (even after a panic).

use std::sync::Once;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dlq_core::{Dlq, DlqItem, DlqOptions, ErrorKind, FamilyKeys, RedisPool};
use pipeline_redis::{RedisConn, RedisTarget};
use uuid::Uuid;

fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "debug".into()),
                )
                .with_test_writer()
                .init();
        }
    });
}

/// A DLQ of kind `scrape` under a fresh `test:<uuid>:` prefix.
pub struct TestDlq {
    pub dlq: Dlq,
    pub pool: RedisPool,
    pub keys: FamilyKeys,
    prefix: String,
}

impl TestDlq {
    pub fn new() -> Self {
        Self::with_options(DlqOptions::default())
    }

    pub fn with_options(opts: DlqOptions) -> Self {
        init_tracing();
        let prefix = format!("test:{}:", Uuid::new_v4());
        let keys = FamilyKeys::new(&prefix, "scrape");
        // The cluster of `TEST_REDIS_CLUSTER_NODES` when set, else `TEST_REDIS_URL`.
        let pool = RedisTarget::from_test_env()
            .pool(64, Duration::from_secs(30), Duration::from_secs(5))
            .expect("pool");
        Self {
            dlq: Dlq::new(pool.clone(), keys.clone(), opts),
            pool,
            keys,
            prefix,
        }
    }

    pub fn conn(&self) -> RedisConn {
        self.pool.get()
    }

    /// Runs one command and returns its reply.
    pub async fn cmd<T: redis::FromRedisValue>(&self, name: &str, args: &[&str]) -> T {
        let mut conn = self.conn();
        let mut cmd = redis::cmd(name);
        for a in args {
            cmd.arg(*a);
        }
        cmd.query_async(&mut conn).await.expect(name)
    }

    /// The work queue's ready messages of the default lane (where items without a lane are
    /// redriven), in serving order.
    pub async fn ready_ids(&self) -> Vec<String> {
        self.cmd("ZRANGE", &[&self.keys.lane(""), "0", "-1"]).await
    }

    /// Pushes `n` items concurrently (ids `prefix0..`), transient, failed at `failed_at`.
    pub async fn fill(&self, prefix: &str, n: usize, failed_at: DateTime<Utc>) {
        use futures::StreamExt;
        futures::stream::iter(0..n)
            .map(|i| {
                let mut it = item(&format!("{prefix}{i}"), ErrorKind::Transient);
                it.failed_at = failed_at;
                let dlq = self.dlq.clone();
                async move { dlq.push(&it).await.expect("push") }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
    }
}

impl Drop for TestDlq {
    fn drop(&mut self) {
        // It must run even after a panic; a failure only leaves test keys behind.
        let _ = RedisTarget::from_test_env().delete_matching_blocking(&format!("{}*", self.prefix));
    }
}

/// An item of kind `scrape` with a payload that names it.
pub fn item(id: &str, kind: ErrorKind) -> DlqItem {
    let mut it = DlqItem::new(
        id,
        "scrape",
        format!("failure of {id}"),
        kind,
        serde_json::json!({"source_id": id, "n": [], "big": 12345678901234567u64}),
    );
    it.source_id = Some(Uuid::new_v4());
    it.job_id = Some(Uuid::new_v4());
    it.attempts = 3;
    it.worker_id = Some("worker-1".into());
    it
}

pub fn ids(page: &dlq_core::Page) -> Vec<String> {
    page.items.iter().map(|i| i.id().to_owned()).collect()
}
