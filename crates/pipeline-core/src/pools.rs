//! One Postgres pool and one Redis pool per process, built once and shared by every task.
//!
//! The original service built a Redis pool per request; here `main` builds both at start-up
//! and hands clones (cheap `Arc`s) to every component.

use std::time::Duration;

use pipeline_redis::RedisPool;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::settings::Settings;

/// Why a pool could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// `database.url` does not parse.
    #[error("invalid database.url: {0}")]
    DatabaseUrl(#[source] sqlx::Error),
    /// Postgres could not be reached.
    #[error("cannot connect to Postgres: {0}")]
    Database(#[source] sqlx::Error),
    /// `redis.url` does not parse, or the pool cannot be created.
    #[error("invalid redis configuration: {0}")]
    Redis(String),
    /// A secret file could not be read.
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
}

/// Connection options for `database.url`, with the password file applied.
pub fn pg_options(settings: &Settings) -> Result<PgConnectOptions, PoolError> {
    let mut options: PgConnectOptions = settings
        .database
        .url
        .expose_secret()
        .parse()
        .map_err(PoolError::DatabaseUrl)?;
    if let Some(password) = settings.database_password()? {
        options = options.password(password.expose_secret());
    }
    // Statement logging at INFO would flood the logs with every query.
    Ok(options.log_statements(tracing::log::LevelFilter::Debug))
}

/// A pooled Postgres connection idle longer than this is pinged before it is handed out.
pub const PG_PING_AFTER_IDLE: Duration = Duration::from_secs(30);

/// The process's Postgres pool. Connects lazily so a daemon can start (and report not ready
/// on `/ready`) while the database is still coming up.
///
/// sqlx pings every connection it hands out by default: one more round trip before every
/// statement, which at a few milliseconds under load was a tenth of a scraped page's time.
/// Here only a connection idle for [`PG_PING_AFTER_IDLE`] is pinged (a server restart or
/// a firewall's idle cut shows there); a busy connection that breaks fails its statement,
/// the caller treats that as transient, and sqlx drops the connection when it comes back
/// (it still checks every connection on release).
pub fn pg_pool(settings: &Settings) -> Result<PgPool, PoolError> {
    Ok(PgPoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PG_PING_AFTER_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .max_connections(settings.database.max_connections)
        .acquire_timeout(Duration::from_secs(settings.database.acquire_timeout_secs))
        .connect_lazy_with(pg_options(settings)?))
}

/// Where `pool` connects, for error messages: `host:port/database as user`, never the
/// password. "pool timed out" alone does not tell an operator which server is down.
pub fn pg_endpoint(pool: &PgPool) -> String {
    pg_endpoint_of(&pool.connect_options())
}

/// The database `settings` name, for people: `postgres at host:port/database as user`, and
/// `(the compiled-in default: set DATABASE_URL)` when nothing chose it. An unusable
/// `database.url` is described as such (settings that loaded have a usable one).
pub fn database_description(settings: &Settings) -> String {
    let endpoint =
        pg_options(settings).map_or_else(|e| format!("postgres ({e})"), |o| pg_endpoint_of(&o));
    if settings.database_url_is_default() {
        format!("{endpoint} (the compiled-in default: set DATABASE_URL to choose)")
    } else {
        endpoint
    }
}

/// Why a connection to the database of `pool` fails, from one direct attempt within
/// `timeout`: the pool itself reports only "pool timed out" when every attempt failed,
/// which hides "connection refused", "password authentication failed" or "database does
/// not exist". `None` when the attempt succeeds (the server is back).
pub async fn connect_failure(pool: &PgPool, timeout: Duration) -> Option<String> {
    let options = pool.connect_options();
    match tokio::time::timeout(timeout, options.connect()).await {
        Ok(Ok(conn)) => {
            // Closing is a courtesy; the server drops the connection either way.
            let _ = sqlx::Connection::close(conn).await;
            None
        }
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {} s", timeout.as_secs())),
    }
}

/// Whether `err` (or a cause of it) says Postgres could not be reached: an I/O or TLS
/// failure, or a pool that timed out or closed. Not a bad statement or a constraint.
pub fn is_pg_unreachable(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed,
        ) = e.downcast_ref::<sqlx::Error>()
        {
            return true;
        }
        next = e.source();
    }
    false
}

fn pg_endpoint_of(o: &PgConnectOptions) -> String {
    format!(
        "postgres at {}:{}/{} as {}",
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or("(default database)"),
        o.get_username()
    )
}

/// The process's Redis connections, with a response timeout longer than any wait: to the
/// Redis Cluster of `redis.cluster_nodes` when that is set, else to the Redis at `redis.url`.
pub fn redis_pool(settings: &Settings) -> Result<RedisPool, PoolError> {
    let nodes = settings.redis_cluster_nodes();
    if !nodes.is_empty() {
        return RedisPool::cluster(
            &nodes,
            settings.redis.pool_size,
            Duration::from_millis(settings.redis.response_timeout_ms),
            Duration::from_millis(settings.redis.connect_timeout_ms),
        )
        .map_err(|e| PoolError::Redis(e.to_string()));
    }
    redis_pool_for(
        settings.redis_url(),
        settings.redis.pool_size,
        Duration::from_millis(settings.redis.response_timeout_ms),
        Duration::from_millis(settings.redis.connect_timeout_ms),
    )
}

/// `size` shared Redis connections to `url` (see [`RedisPool`]); `response_timeout` must
/// exceed the longest script (redis 1.x defaults to 500 ms, too short for a bulk script).
pub fn redis_pool_for(
    url: &str,
    size: usize,
    response_timeout: Duration,
    connect_timeout: Duration,
) -> Result<RedisPool, PoolError> {
    RedisPool::new(url, size, response_timeout, connect_timeout)
        .map_err(|e| PoolError::Redis(e.to_string()))
}
