//! The integration-test harness: every test gets its own freshly migrated Postgres database
//! and its own Redis key prefix, and both are removed when the test ends, so tests run in
//! parallel and leave nothing behind.
//!
//! Environment variables read here: `TEST_DATABASE_URL` (an admin connection URL; default
//! `postgres://postgres@127.0.0.1:5432/postgres`), `TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379/0`), `TEST_REDIS_CLUSTER_NODES` (comma-separated node URLs of a
//! Redis Cluster: when set, every Redis the tests touch is that cluster; see
//! `deploy/local/redis-cluster.sh`), `TEST_LOG` (show logs).

pub mod api;
pub mod browser;
pub mod cluster;
pub mod docs;
pub mod extraction;
pub mod hostile;
pub mod pages;
pub mod requeue;
pub mod site;
pub mod stall;

use std::time::Duration;

use pipeline_redis::RedisTarget;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

/// The admin URL tests create their databases through.
pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The Redis URL tests use.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// `base` with its database name replaced by `db`.
pub fn with_database(base: &str, db: &str) -> String {
    let mut url = url_parts(base);
    url.1 = db.to_owned();
    format!("{}/{}{}", url.0, url.1, url.2)
}

fn url_parts(url: &str) -> (String, String, String) {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = head.find("://").map(|i| i + 3).unwrap_or(0);
    match head[scheme_end..].find('/') {
        Some(slash) => {
            let split = scheme_end + slash;
            (
                head[..split].to_owned(),
                head[split + 1..].to_owned(),
                query,
            )
        }
        None => (head.to_owned(), String::new(), query),
    }
}

/// A fresh database, dropped (with its connections) when the value is dropped.
pub struct TestDb {
    /// The database's name.
    pub name: String,
    /// Its connection URL.
    pub url: String,
    /// A pool on it.
    pub pool: PgPool,
}

impl TestDb {
    /// Creates an empty database (no migrations).
    pub async fn empty() -> anyhow::Result<Self> {
        pipeline_core::telemetry::init_for_tests();
        let name = format!("pipeline_test_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_database_url()).await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .await?;
        admin.close().await?;
        let url = with_database(&admin_database_url(), &name);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await?;
        Ok(Self { name, url, pool })
    }

    /// Creates a database with the whole schema applied.
    pub async fn migrated() -> anyhow::Result<Self> {
        let db = Self::empty().await?;
        pipeline_store::migrate(&db.pool).await?;
        Ok(db)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await, so the cleanup gets its own runtime on its own thread. It must not
        // touch the test's pool (its connections live on the test's runtime, which is blocked
        // here); DROP ... WITH (FORCE) ends those connections instead. A failure here only leaves a stray test database behind; it is
        // reported, not fatal.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let mut admin = PgConnection::connect(&admin_database_url()).await?;
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                    )))
                    .await?;
                anyhow::Ok(())
            })
        })
        .join();
        if let Ok(Err(err)) = done {
            eprintln!("warning: could not drop test database {}: {err}", self.name);
        }
    }
}

/// A Redis key prefix of its own, whose keys are deleted when the value is dropped.
pub struct TestRedis {
    /// Prefix every key of the test starts with (ends with `:`).
    pub prefix: String,
    /// A pool on the test Redis.
    pub pool: dlq_core::RedisPool,
    /// Where that Redis is (one server, or a cluster).
    pub target: RedisTarget,
}

impl TestRedis {
    /// A new prefix and pool on the tests' Redis (see [`RedisTarget::from_test_env`]).
    pub fn new() -> anyhow::Result<Self> {
        Self::on(RedisTarget::from_test_env())
    }

    /// A new prefix and pool on `target` (a test that starts a Redis of its own).
    pub fn on(target: RedisTarget) -> anyhow::Result<Self> {
        let prefix = format!("test:{}:", Uuid::new_v4().simple());
        let pool = target.pool(16, Duration::from_secs(10), Duration::from_secs(5))?;
        Ok(Self {
            prefix,
            pool,
            target,
        })
    }

    /// Keys currently under the prefix (on a cluster: on every master).
    pub async fn keys(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .pool
            .keys_matching(&format!("{}*", self.prefix))
            .await?)
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        // Same reasoning as TestDb: a thread with its own runtime; failures only leave keys.
        let _ = self
            .target
            .delete_matching_blocking(&format!("{}*", self.prefix));
    }
}

/// The seed nodes of the test Redis Cluster, for the tests that need a cluster. They are
/// `#[ignore]`d (nextest lists them as skipped) and the test command runs them in its
/// cluster pass; run by hand without `TEST_REDIS_CLUSTER_NODES`, they fail saying so
/// instead of passing without a cluster.
pub fn require_cluster() -> Vec<String> {
    pipeline_redis::test_cluster_nodes().expect(
        "this test needs a Redis Cluster: start one with `deploy/local/redis-cluster.sh start` \
         and set TEST_REDIS_CLUSTER_NODES to the node URLs it prints",
    )
}

/// An HTTP client for talking to the servers under test (installs the TLS provider first).
pub fn http_client() -> reqwest::Client {
    pipeline_core::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client with the ring provider installed")
}

/// Path of a workspace binary built next to the test executables (`target/<profile>/<name>`).
/// The README's test command builds every binary before running the tests.
pub fn binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test-exe> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "binary {} not found; build it first with `cargo build --workspace --bins`",
        path.display()
    );
    path
}

/// Settings for a test: the defaults, pointed at the test's database and Redis prefix.
pub fn settings_for(db: &TestDb, redis: &TestRedis) -> pipeline_core::Settings {
    let mut settings = pipeline_core::Settings::load_from(&pipeline_core::Sources::default())
        .expect("the default settings load");
    settings.database.url = db.url.clone().into();
    match &redis.target {
        RedisTarget::Single(url) => settings.redis.url = url.clone().into(),
        RedisTarget::Cluster(nodes) => {
            settings.redis.cluster_nodes = nodes.iter().cloned().map(Into::into).collect();
        }
    }
    settings.redis.key_prefix = redis.prefix.clone();
    // The test command's cluster pass runs the in-process API and requeue suites with every
    // family over several shards.
    if let Ok(shards) = std::env::var("TEST_QUEUE_SHARDS") {
        settings.queue.shards = shards
            .parse()
            .expect("TEST_QUEUE_SHARDS is a shard count (1..=64)");
    }
    // Fast and deterministic; the model has its own tests (embedder, search).
    settings.embedding.backend = pipeline_core::settings::EmbeddingBackend::Hashing;
    // Tests not about rendering start no browser, whatever their fixture pages look like;
    // the rendering tests (render_pages, render_process) choose their modes themselves.
    settings.render.default = pipeline_core::render::RenderMode::Never;
    settings
}
