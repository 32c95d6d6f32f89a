//! The queue handle, its shards, and its read-only operations.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::dlq::{FamilyKeys, RedisPool};
use crate::{QueueDepth, QueueOptions, Result};

/// Most messages one script call moves. It bounds the time Redis spends inside one script
/// (every other client waits meanwhile) and keeps `unpack` well under Lua's stack limit.
pub const MAX_BATCH: usize = 1000;

/// How many due retries and how many expired leases one reserve moves back to `ready`:
/// bounded so housekeeping never turns a reserve into a long scan after a mass failure
/// (the next calls carry on where this one stopped).
pub(crate) const HOUSEKEEPING_LIMIT: usize = 256;

/// How often a handle re-reads (and raises) the count of shards in use: a handle learns
/// within this long that another process raised it, and retired shards are looked at
/// this often.
pub(crate) const SHARDS_REFRESH: Duration = Duration::from_secs(10);

/// [`SHARDS_REFRESH`] for a waiter that found nothing to do: an idle worker's cost stays one
/// pop per shard per `block_timeout`, plus this one read a minute.
pub(crate) const SHARDS_REFRESH_IDLE: Duration = Duration::from_secs(60);

/// A handle on one queue family: cheap to clone, shared by all tasks of a worker.
#[derive(Clone, Debug)]
pub struct WorkQueue {
    pub(crate) inner: Arc<Inner>,
}

/// The key names of one shard, formatted once.
#[derive(Debug)]
pub(crate) struct Shard {
    pub(crate) keys: FamilyKeys,
    pub(crate) tag: String,
    /// The list of versions before lanes (drained into the default lane by reserve).
    pub(crate) legacy: String,
    pub(crate) rota: String,
    pub(crate) lanes: String,
    pub(crate) leases: String,
    pub(crate) delayed: String,
    pub(crate) token_seq: String,
    pub(crate) wake: String,
}

impl Shard {
    fn new(keys: FamilyKeys) -> Self {
        Self {
            tag: keys.tag(),
            legacy: keys.ready(),
            rota: keys.rota(),
            lanes: keys.lanes(),
            leases: keys.leases(),
            delayed: keys.delayed(),
            token_seq: keys.token_seq(),
            wake: keys.wake(),
            keys,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) pool: RedisPool,
    /// Shard 0's keys (the family's unsharded names).
    pub(crate) keys: FamilyKeys,
    /// Every shard the family can have ([`crate::MAX_SHARDS`]), formatted once.
    pub(crate) shards: Vec<Shard>,
    pub(crate) opts: QueueOptions,
    /// Shards in use (reserved from): at least `opts.shards`, more while shards of a higher
    /// count are still being drained.
    pub(crate) in_use: AtomicU16,
    /// When the count in use was last refreshed from Redis (`None`: never).
    pub(crate) refreshed: Mutex<Option<Instant>>,
    /// Where the next sweep over the shards starts, so no shard is always served last.
    pub(crate) rotor: AtomicUsize,
}

impl WorkQueue {
    /// A handle on the family `keys` names, using connections from `pool`.
    ///
    /// The pool's response timeout must exceed `opts.block_timeout`: the wait for work is a
    /// blocking pop of up to that long on a connection checked out of the pool (one per
    /// shard in use, per waiting loop).
    ///
    /// # Errors
    /// [`QueueError::InvalidArgument`](crate::QueueError::InvalidArgument) for options the
    /// queue cannot work with (zero attempts, a cap below the base, a tiny lease, a shard
    /// count outside `1..=64`).
    pub fn new(pool: RedisPool, keys: FamilyKeys, opts: QueueOptions) -> Result<Self> {
        opts.validate()?;
        let keys = keys.shard(0);
        Ok(Self {
            inner: Arc::new(Inner {
                shards: (0..crate::MAX_SHARDS)
                    .map(|i| Shard::new(keys.shard(i)))
                    .collect(),
                in_use: AtomicU16::new(opts.shards),
                refreshed: Mutex::new(None),
                rotor: AtomicUsize::new(0),
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

    /// The family's key names (shard 0's; [`FamilyKeys::shard`] gives the others').
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

    pub(crate) fn shard(&self, index: u16) -> &Shard {
        &self.inner.shards[usize::from(index)]
    }

    /// The shard a message with this id is enqueued to: [`crate::shard_of`] over the
    /// configured `shards`.
    pub fn home_shard(&self, id: &str) -> u16 {
        crate::shard_of(id, self.inner.opts.shards)
    }

    /// How many shards are in use (workers reserve from shards `0..n`): the configured
    /// count, or more while the shards of an earlier, higher count still hold messages.
    ///
    /// Read from Redis (`P{family}:shards`) at most every 10 s; each read also raises the
    /// recorded count to this handle's configured one, and when the recorded count is
    /// higher, looks whether the shards above the configured count are empty: then it
    /// lowers the count, and those shards are retired. See the crate's README, "Shards".
    ///
    /// # Errors
    /// Redis or pool failures.
    pub async fn shards_in_use(&self) -> Result<u16> {
        self.shards_in_use_within(SHARDS_REFRESH).await
    }

    /// [`shards_in_use`](Self::shards_in_use), read from Redis if the last read is older
    /// than `max_age`.
    pub(crate) async fn shards_in_use_within(&self, max_age: Duration) -> Result<u16> {
        let fresh = self
            .inner
            .refreshed
            .lock()
            .expect("not poisoned")
            .is_some_and(|at| at.elapsed() < max_age);
        if fresh {
            return Ok(self.inner.in_use.load(Ordering::Relaxed));
        }
        self.refresh_shards().await
    }

    /// [`shards_in_use`](Self::shards_in_use) read from Redis now, whenever it was last read
    /// (raising the recorded count, and retiring empty shards above the configured count).
    ///
    /// # Errors
    /// Redis or pool failures.
    pub async fn refresh_shards(&self) -> Result<u16> {
        let inner = &self.inner;
        let now = Instant::now();
        let configured = inner.opts.shards;
        let mut con = self.conn();
        let mut n = pipeline_redis::raise_shards_in_use(&mut con, &inner.keys, configured).await?;
        if n > configured && self.shards_empty(configured, n).await? {
            if pipeline_redis::lower_shards_in_use(&mut con, &inner.keys, n, configured).await? {
                tracing::info!(
                    family = self.family(),
                    from = n,
                    to = configured,
                    "shards above the configured count are empty: retired"
                );
                n = configured;
            } else {
                n = pipeline_redis::shards_in_use(&mut con, &inner.keys)
                    .await?
                    .max(configured);
            }
        }
        inner.in_use.store(n, Ordering::Relaxed);
        *inner.refreshed.lock().expect("not poisoned") = Some(now);
        Ok(n)
    }

    /// Whether shards `from..to` hold nothing: no message in any state, no DLQ item.
    async fn shards_empty(&self, from: u16, to: u16) -> Result<bool> {
        let mut con = self.conn();
        for i in from..to {
            let s = self.shard(i);
            let counts: (Option<u64>, u64, u64, u64, u64) = redis::pipe()
                .atomic()
                .hget(&s.lanes, "n")
                .llen(&s.legacy)
                .zcard(&s.leases)
                .zcard(&s.delayed)
                .zcard(s.keys.dlq_order())
                .query_async(&mut con)
                .await?;
            if counts != (None, 0, 0, 0, 0) && counts != (Some(0), 0, 0, 0, 0) {
                tracing::debug!(
                    family = self.family(),
                    shard = i,
                    ?counts,
                    "retiring shard still holds messages"
                );
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Counts of ready, leased and delayed messages over every shard in use, each shard
    /// read in one MULTI (a consistent snapshot per shard).
    ///
    /// # Errors
    /// Redis or pool failures.
    pub async fn depth(&self) -> Result<QueueDepth> {
        let n = self.shards_in_use().await?;
        let mut con = self.conn();
        let mut depth = QueueDepth::default();
        for i in 0..n {
            let s = self.shard(i);
            let (ready, legacy, leased, delayed): (Option<u64>, u64, u64, u64) = redis::pipe()
                .atomic()
                .hget(&s.lanes, "n")
                .llen(&s.legacy)
                .zcard(&s.leases)
                .zcard(&s.delayed)
                .query_async(&mut con)
                .await?;
            depth.ready += ready.unwrap_or(0) + legacy;
            depth.leased += leased;
            depth.delayed += delayed;
        }
        Ok(depth)
    }

    /// Whether a message with this id is in the queue in any state (ready, leased or
    /// delayed), in any shard in use. The reconciler uses it to tell a stuck source from a
    /// queued one.
    ///
    /// # Errors
    /// Redis or pool failures.
    pub async fn contains(&self, id: &str) -> Result<bool> {
        let n = self.shards_in_use().await?;
        let home = self.home_shard(id);
        let mut con = self.conn();
        for i in std::iter::once(home).chain((0..n).filter(|&i| i != home)) {
            let found: u64 = redis::cmd("EXISTS")
                .arg(self.shard(i).keys.msg(id))
                .query_async(&mut con)
                .await?;
            if found == 1 {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
