//! One Postgres pool and one Redis pool per process, built once and shared by every task.
//!
//! The original service built a Redis pool per request; here `main` builds both at start-up
//! and hands clones (cheap `Arc`s) to every component.

use std::time::Duration;

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

/// The process's Postgres pool. Connects lazily so a daemon can start (and report not ready
/// on `/ready`) while the database is still coming up.
pub fn pg_pool(settings: &Settings) -> Result<PgPool, PoolError> {
    Ok(PgPoolOptions::new()
        .max_connections(settings.database.max_connections)
        .acquire_timeout(Duration::from_secs(settings.database.acquire_timeout_secs))
        .connect_lazy_with(pg_options(settings)?))
}

/// The process's Redis pool, with a response timeout longer than any blocking wait.
pub fn redis_pool(settings: &Settings) -> Result<deadpool_redis::Pool, PoolError> {
    redis_pool_for(
        settings.redis_url(),
        settings.redis.pool_size,
        Duration::from_millis(settings.redis.response_timeout_ms),
        Duration::from_millis(settings.redis.connect_timeout_ms),
    )
}

/// A Redis pool for `url`; `response_timeout` must exceed every blocking command's timeout
/// (redis 1.x defaults to 500 ms, which would fail any longer blocking pop).
pub fn redis_pool_for(
    url: &str,
    size: usize,
    response_timeout: Duration,
    connect_timeout: Duration,
) -> Result<deadpool_redis::Pool, PoolError> {
    let connection = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(response_timeout))
        .set_connection_timeout(Some(connect_timeout));
    let manager = deadpool_redis::Manager::new_with_config(url, connection)
        .map_err(|e| PoolError::Redis(e.to_string()))?;
    deadpool_redis::Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_redis::Runtime::Tokio1)
        .build()
        .map_err(|e| PoolError::Redis(e.to_string()))
}
