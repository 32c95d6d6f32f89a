//! The process's Redis connections: a few multiplexed, self-reconnecting connections that
//! every task shares, plus a small checkout pool for blocking waits.
//!
//! A multiplexed connection carries any number of concurrent commands (they are pipelined
//! on one socket), so a task never waits for a connection of its own, and nothing checks a
//! connection out or back in. A checkout pool (one connection per task at a time) would
//! health-check each checkout with a `PING`, which doubles the round trips of every short
//! command; here a broken connection is noticed by the command that hits it (an I/O error,
//! which callers treat as transient) and reconnected in the background, so the next
//! command finds a fresh one.
//!
//! The one exception is the work queue's wait for work: a blocking pop holds its socket
//! until it returns, and every command queued behind it on a shared socket would wait as
//! long. Each waiting loop therefore checks a connection of its own out of
//! [`RedisPool::checkout`] (a `deadpool-redis` pool) and keeps it for as long as it loops,
//! so the checkout's health-check `PING` is paid once per loop, not once per wait.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client};

use crate::error::{DlqError, Result};

/// A cheap-to-clone handle on `size` shared connections to one Redis, connected lazily.
#[derive(Clone)]
pub struct RedisPool {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    endpoint: String,
    /// Connections for blocking waits, one per waiting loop, created on first checkout.
    waiters: deadpool_redis::Pool,
    config: ConnectionManagerConfig,
    slots: Box<[OnceLock<ConnectionManager>]>,
    next: AtomicUsize,
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPool")
            .field("connections", &self.inner.slots.len())
            .finish_non_exhaustive()
    }
}

impl RedisPool {
    /// A pool of `size` (at least 1) connections to `url`. Nothing connects until the first
    /// command, so a process can start while Redis is still coming up. Each command fails
    /// after `response_timeout`; each connection attempt after `connect_timeout`.
    ///
    /// # Errors
    /// [`DlqError::PoolBuild`] when `url` is not a Redis URL.
    pub fn new(
        url: &str,
        size: usize,
        response_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self> {
        let client = Client::open(url).map_err(|e| DlqError::PoolBuild(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(response_timeout))
            .set_connection_timeout(Some(connect_timeout))
            // A reconnect tries a few times, briefly: a command that waits for it should
            // fail soon when Redis is down, and let its caller back off.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let endpoint = endpoint_of(client.get_connection_info());
        // The blocking waits get the same response timeout as every command: the settings
        // require it to exceed the longest wait (`queue.block_timeout_ms`), so a wait that
        // outlives it means a dead connection, not a quiet queue.
        let wait_config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(response_timeout))
            .set_connection_timeout(Some(connect_timeout));
        let manager = deadpool_redis::Manager::new_with_config(url, wait_config)
            .map_err(|e| DlqError::PoolBuild(e.to_string()))?;
        let waiters = deadpool_redis::Pool::builder(manager)
            .max_size(size.max(1))
            .runtime(deadpool_redis::Runtime::Tokio1)
            .create_timeout(Some(connect_timeout))
            .build()
            .map_err(|e| DlqError::PoolBuild(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint,
                client,
                waiters,
                config,
                slots: (0..size.max(1)).map(|_| OnceLock::new()).collect(),
                next: AtomicUsize::new(0),
            }),
        })
    }

    /// Where the pool connects, for messages: `redis at host:port/db`, never the password.
    /// "Connection refused" alone does not tell an operator which server is down.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// A connection to send commands on (the pool's connections in turn). Must be called
    /// inside a Tokio runtime: the first call for each connection starts its driver task.
    pub fn get(&self) -> ConnectionManager {
        let inner = &self.inner;
        let i = inner.next.fetch_add(1, Ordering::Relaxed) % inner.slots.len();
        inner.slots[i]
            .get_or_init(|| {
                ConnectionManager::new_lazy_with_config(inner.client.clone(), inner.config.clone())
                    // Fails only for pub/sub settings, which this config does not use.
                    .expect("a plain lazy connection manager can always be built")
            })
            .clone()
    }
}

fn endpoint_of(info: &redis::ConnectionInfo) -> String {
    let scheme = match info.addr() {
        redis::ConnectionAddr::TcpTls { .. } => "rediss",
        _ => "redis",
    };
    format!("{scheme} at {}/{}", info.addr(), info.redis_settings().db())
}

/// Whether `err`, or any error it wraps, is Redis being unreachable (refused, timed out,
/// dropped, or another I/O failure) rather than Redis answering with an error: the case
/// where a message should name the endpoint.
pub fn is_unreachable(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<redis::RedisError>()
            && (r.is_io_error()
                || r.is_connection_refusal()
                || r.is_timeout()
                || r.is_connection_dropped())
        {
            return true;
        }
        next = e.source();
    }
    false
}

impl RedisPool {
    /// A connection of the caller's own, for a blocking command (at most `size` are out at
    /// once; a further checkout waits for one to come back). Keep it across waits: each
    /// checkout of an idle connection costs a health-check `PING`. A connection whose
    /// blocking command was abandoned mid-way must be dropped with
    /// [`deadpool_redis::Connection::take`], not returned, or its next user would wait
    /// behind the abandoned command.
    ///
    /// # Errors
    /// The connection could not be made (or did not answer its health check).
    pub async fn checkout(
        &self,
    ) -> std::result::Result<deadpool_redis::Connection, deadpool_redis::PoolError> {
        self.inner.waiters.get().await
    }
}

/// A pool of `size` connections to `url` whose response timeout is `response_timeout`
/// (connection attempts time out after 5 s). `redis` 1.x defaults to 500 ms, too short for
/// a bulk script over thousands of items, hence the explicit value.
///
/// # Errors
/// [`DlqError::PoolBuild`] when `url` is not a Redis URL.
pub fn build_pool(url: &str, size: usize, response_timeout: Duration) -> Result<RedisPool> {
    RedisPool::new(url, size, response_timeout, Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_names_host_port_and_database_but_not_the_password() {
        let pool = RedisPool::new(
            "redis://user:s3cret@cache.internal:6390/4",
            1,
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(pool.endpoint(), "redis at cache.internal:6390/4");
        let tls = RedisPool::new(
            "rediss://h:6380",
            1,
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        // TLS needs a compiled-in TLS feature; without one the URL is refused, which is fine.
        if let Ok(tls) = tls {
            assert_eq!(tls.endpoint(), "rediss at h:6380/0");
        }
    }
}
