//! The queue handle and its read-only operations.

use std::sync::Arc;

use crate::dlq::{FamilyKeys, RedisPool};
use crate::{QueueDepth, QueueOptions, Result};

/// Most messages one script call moves. It bounds the time Redis spends inside one script
/// (every other client waits meanwhile) and keeps `unpack` well under Lua's stack limit.
pub const MAX_BATCH: usize = 1000;

/// How many due retries and how many expired leases one reserve moves back to `ready`:
/// bounded so housekeeping never turns a reserve into a long scan after a mass failure
/// (the next calls carry on where this one stopped).
pub(crate) const HOUSEKEEPING_LIMIT: usize = 256;

/// A handle on one queue family: cheap to clone, shared by all tasks of a worker.
#[derive(Clone, Debug)]
pub struct WorkQueue {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) pool: RedisPool,
    pub(crate) keys: FamilyKeys,
    pub(crate) tag: String,
    pub(crate) ready: String,
    pub(crate) leases: String,
    pub(crate) delayed: String,
    pub(crate) token_seq: String,
    pub(crate) wake: String,
    pub(crate) opts: QueueOptions,
}

impl WorkQueue {
    /// A handle on the family `keys` names, using connections from `pool`.
    ///
    /// The pool's response timeout must exceed `opts.block_timeout`: the wait for work is a
    /// blocking pop of up to that long on a connection checked out of the pool.
    ///
    /// # Errors
    /// [`QueueError::InvalidArgument`](crate::QueueError::InvalidArgument) for options the
    /// queue cannot work with (zero attempts, a cap below the base, a tiny lease).
    pub fn new(pool: RedisPool, keys: FamilyKeys, opts: QueueOptions) -> Result<Self> {
        opts.validate()?;
        Ok(Self {
            inner: Arc::new(Inner {
                tag: keys.tag(),
                ready: keys.ready(),
                leases: keys.leases(),
                delayed: keys.delayed(),
                token_seq: keys.token_seq(),
                wake: keys.wake(),
                pool,
                keys,
                opts,
            }),
        })
    }

    /// Where the queue's Redis is (`redis at host:port/db`), for error messages.
    pub fn endpoint(&self) -> &str {
        self.inner.pool.endpoint()
    }

    /// The family's key names.
    pub fn keys(&self) -> &FamilyKeys {
        &self.inner.keys
    }

    /// The family name (`scrape`, `extraction`, ...).
    pub fn family(&self) -> &str {
        self.inner.keys.family()
    }

    pub(crate) fn conn(&self) -> pipeline_redis::RedisConn {
        self.inner.pool.get()
    }

    /// Counts of ready, leased and delayed messages, read in one MULTI so they are a
    /// consistent snapshot.
    ///
    /// # Errors
    /// Redis or pool failures.
    pub async fn depth(&self) -> Result<QueueDepth> {
        let mut con = self.conn();
        let (ready, leased, delayed): (u64, u64, u64) = redis::pipe()
            .atomic()
            .llen(&self.inner.ready)
            .zcard(&self.inner.leases)
            .zcard(&self.inner.delayed)
            .query_async(&mut con)
            .await?;
        Ok(QueueDepth {
            ready,
            leased,
            delayed,
        })
    }

    /// Whether a message with this id is in the queue in any state (ready, leased or
    /// delayed). The reconciler uses it to tell a stuck source from a queued one.
    ///
    /// # Errors
    /// Redis or pool failures.
    pub async fn contains(&self, id: &str) -> Result<bool> {
        let mut con = self.conn();
        let n: u64 = redis::cmd("EXISTS")
            .arg(self.inner.keys.msg(id))
            .query_async(&mut con)
            .await?;
        Ok(n == 1)
    }
}
