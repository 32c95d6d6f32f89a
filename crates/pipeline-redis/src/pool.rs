//! The process's Redis connections: a few multiplexed, self-reconnecting connections that
//! every task shares, plus connections of their own for blocking waits. The same types
//! speak to one Redis or to a Redis Cluster, chosen when the pool is built.
//!
//! A multiplexed connection carries any number of concurrent commands (they are pipelined
//! on one socket), so a task never waits for a connection of its own, and nothing checks a
//! connection out or back in. A checkout pool (one connection per task at a time) would
//! health-check each checkout with a `PING`, which doubles the round trips of every short
//! command; here a broken connection is noticed by the command that hits it (an I/O error,
//! which callers treat as transient) and reconnected in the background, so the next
//! command finds a fresh one.
//!
//! On a cluster each shared connection is a `cluster_async` connection: it learns the slot
//! map from the seed nodes, sends each command to the master owning its key's slot,
//! follows `MOVED`/`ASK` redirections and refreshes the map after a failover. Every
//! multi-key script of the pipeline touches keys of one hash tag, so it runs on one master.
//!
//! The one exception is the work queue's wait for work: a blocking pop holds its socket
//! until it returns, and every command queued behind it on a shared socket would wait as
//! long. Each waiting loop therefore takes a connection of its own from
//! [`RedisPool::checkout`] and keeps it for as long as it loops: on one Redis a
//! `deadpool-redis` checkout (its health-check `PING` is paid once per loop, not once per
//! wait), on a cluster a cluster connection of its own, at most `size` at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The pool could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PoolBuildError(String);

/// A connection for a waiting loop could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckoutError {
    /// The single-node checkout pool failed (connect or health check).
    #[error(transparent)]
    Single(#[from] deadpool_redis::PoolError),
    /// A cluster connection could not be made.
    #[error(transparent)]
    Cluster(#[from] redis::RedisError),
}

/// A cheap-to-clone handle on `size` shared connections to one Redis or one Redis Cluster,
/// connected lazily.
#[derive(Clone)]
pub struct RedisPool {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: String,
    mode: Mode,
    slots: Box<[OnceLock<RedisConn>]>,
    next: AtomicUsize,
}

enum Mode {
    Single {
        client: Client,
        config: ConnectionManagerConfig,
        /// Connections for blocking waits, one per waiting loop, created on first checkout.
        waiters: deadpool_redis::Pool,
    },
    Cluster {
        client: ClusterClient,
        config: ClusterConfig,
        /// At most `size` waiting loops hold a cluster connection of their own at once.
        waiters: Arc<Semaphore>,
    },
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPool")
            .field("endpoint", &self.inner.endpoint)
            .field("connections", &self.inner.slots.len())
            .finish_non_exhaustive()
    }
}

/// One shared connection: to one Redis, or to a Redis Cluster. Both are multiplexed and
/// reconnect by themselves; cloning one is cheap and shares its socket(s).
#[derive(Clone)]
pub enum RedisConn {
    /// A connection manager to one Redis.
    Single(ConnectionManager),
    /// A cluster connection (routes by key slot, follows redirections).
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A waiting loop's connection of its own, for blocking commands. Dropping it hands it
/// back (one Redis) or closes it (cluster); after an abandoned blocking command call
/// [`WaitConn::discard`] instead, so nobody waits behind that command.
pub enum WaitConn {
    /// Checked out of the single-node pool.
    Single(deadpool_redis::Connection),
    /// A cluster connection of this loop's own; the permit bounds how many exist.
    Cluster {
        /// The connection.
        conn: ClusterConnection,
        /// Returned when the connection is dropped.
        _permit: OwnedSemaphorePermit,
    },
}

impl WaitConn {
    /// Closes the connection rather than returning it to a pool: a blocking command may
    /// still be pending on it, and closing the socket ends it on the server too.
    pub fn discard(self) {
        match self {
            Self::Single(c) => drop(deadpool_redis::Connection::take(c)),
            // Never pooled: dropping the last handle closes its sockets.
            Self::Cluster { .. } => {}
        }
    }
}

impl ConnectionLike for WaitConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster { conn, .. } => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster { conn, .. } => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster { conn, .. } => conn.get_db(),
        }
    }
}

impl RedisPool {
    /// A pool of `size` (at least 1) connections to the one Redis at `url`. Nothing
    /// connects until the first command, so a process can start while Redis is still
    /// coming up. Each command fails after `response_timeout`; each connection attempt
    /// after `connect_timeout`.
    ///
    /// # Errors
    /// [`PoolBuildError`] when `url` is not a Redis URL.
    pub fn new(
        url: &str,
        size: usize,
        response_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, PoolBuildError> {
        let client = Client::open(url).map_err(|e| PoolBuildError(e.to_string()))?;
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
            .map_err(|e| PoolBuildError(e.to_string()))?;
        let waiters = deadpool_redis::Pool::builder(manager)
            .max_size(size.max(1))
            .runtime(deadpool_redis::Runtime::Tokio1)
            .create_timeout(Some(connect_timeout))
            .build()
            .map_err(|e| PoolBuildError(e.to_string()))?;
        Ok(Self::with_mode(
            endpoint,
            size,
            Mode::Single {
                client,
                config,
                waiters,
            },
        ))
    }

    /// A pool of `size` (at least 1) cluster connections to the Redis Cluster that
    /// `nodes` (one or more `redis://host:port` URLs of its nodes) belong to. Lazy like
    /// [`RedisPool::new`]: the slot map is fetched by the first command.
    ///
    /// # Errors
    /// [`PoolBuildError`] when `nodes` is empty, a node is not a Redis URL, or the nodes
    /// disagree on credentials or database (a cluster has database 0 only).
    pub fn cluster(
        nodes: &[String],
        size: usize,
        response_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, PoolBuildError> {
        if nodes.is_empty() {
            return Err(PoolBuildError(
                "a Redis Cluster needs at least one node URL".into(),
            ));
        }
        let client = ClusterClient::builder(nodes.iter().map(String::as_str))
            .connection_timeout(connect_timeout)
            .response_timeout(response_timeout)
            // A command that meets a failover retries a few times while the replica takes
            // over, then fails as transient and its caller backs off.
            .retries(4)
            .build()
            .map_err(|e| PoolBuildError(e.to_string()))?;
        let config = ClusterConfig::new()
            .set_connection_timeout(connect_timeout)
            .set_response_timeout(response_timeout);
        let endpoint = format!("redis cluster at {}", cluster_endpoint(nodes));
        Ok(Self::with_mode(
            endpoint,
            size,
            Mode::Cluster {
                client,
                config,
                waiters: Arc::new(Semaphore::new(size.max(1))),
            },
        ))
    }

    fn with_mode(endpoint: String, size: usize, mode: Mode) -> Self {
        Self {
            inner: Arc::new(Inner {
                endpoint,
                mode,
                slots: (0..size.max(1)).map(|_| OnceLock::new()).collect(),
                next: AtomicUsize::new(0),
            }),
        }
    }

    /// Whether this pool speaks the cluster protocol.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.mode, Mode::Cluster { .. })
    }

    /// Where the pool connects, for messages: `redis at host:port/db` or `redis cluster
    /// at host:port,...`, never a password. "Connection refused" alone does not tell an
    /// operator which server is down.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// A connection to send commands on (the pool's connections in turn). Must be called
    /// inside a Tokio runtime: the first call for each connection starts its driver task.
    pub fn get(&self) -> RedisConn {
        let inner = &self.inner;
        let i = inner.next.fetch_add(1, Ordering::Relaxed) % inner.slots.len();
        inner.slots[i]
            .get_or_init(|| match &inner.mode {
                Mode::Single { client, config, .. } => RedisConn::Single(
                    ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                        // Fails only for pub/sub settings, which this config does not use.
                        .expect("a plain lazy connection manager can always be built"),
                ),
                Mode::Cluster { client, config, .. } => RedisConn::Cluster(
                    client.get_pending_async_connection_with_config(config.clone()),
                ),
            })
            .clone()
    }

    /// A connection of the caller's own, for a blocking command (at most `size` are out at
    /// once; a further checkout waits for one to come back). Keep it across waits: each
    /// checkout costs a health-check `PING` (one Redis) or a new connection (cluster). A
    /// connection whose blocking command was abandoned mid-way must be dropped with
    /// [`WaitConn::discard`], or its next user would wait behind the abandoned command.
    ///
    /// # Errors
    /// The connection could not be made (or did not answer its health check).
    pub async fn checkout(&self) -> Result<WaitConn, CheckoutError> {
        match &self.inner.mode {
            Mode::Single { waiters, .. } => Ok(WaitConn::Single(waiters.get().await?)),
            Mode::Cluster {
                client,
                config,
                waiters,
            } => {
                let permit = Arc::clone(waiters)
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let conn = client
                    .get_async_connection_with_config(config.clone())
                    .await?;
                Ok(WaitConn::Cluster {
                    conn,
                    _permit: permit,
                })
            }
        }
    }
}

fn endpoint_of(info: &redis::ConnectionInfo) -> String {
    let scheme = match info.addr() {
        redis::ConnectionAddr::TcpTls { .. } => "rediss",
        _ => "redis",
    };
    format!("{scheme} at {}/{}", info.addr(), info.redis_settings().db())
}

/// `host:port,host:port` of the seed nodes, without credentials or scheme.
fn cluster_endpoint(nodes: &[String]) -> String {
    use redis::IntoConnectionInfo;
    nodes
        .iter()
        .map(|n| {
            n.as_str().into_connection_info().map_or_else(
                |_| "(invalid node URL)".to_owned(),
                |i| i.addr().to_string(),
            )
        })
        .collect::<Vec<_>>()
        .join(",")
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
        assert!(!pool.is_cluster());
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

    #[test]
    fn a_cluster_endpoint_lists_the_seed_nodes_without_passwords() {
        let nodes = [
            "redis://:s3cret@10.0.0.1:7000".to_owned(),
            "redis://:s3cret@10.0.0.2:7001".to_owned(),
        ];
        let pool =
            RedisPool::cluster(&nodes, 2, Duration::from_secs(1), Duration::from_secs(1)).unwrap();
        assert!(pool.is_cluster());
        assert_eq!(
            pool.endpoint(),
            "redis cluster at 10.0.0.1:7000,10.0.0.2:7001"
        );
        assert!(!pool.endpoint().contains("s3cret"));
    }

    #[test]
    fn a_cluster_needs_a_node_and_valid_urls() {
        let t = Duration::from_secs(1);
        assert!(RedisPool::cluster(&[], 1, t, t).is_err());
        assert!(RedisPool::cluster(&["not a url".to_owned()], 1, t, t).is_err());
    }
}
