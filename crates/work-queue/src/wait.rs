//! Waiting for work: a blocking pop on the family's wake-up marker, not a timer.
//!
//! Whatever makes work ready adds the marker `P{family}:wake` (a sorted set that holds at
//! most the one member): enqueue, a DLQ redrive, a retry scheduled (it may be due sooner
//! than a waiter thinks), and the first lease taken while none was held (a waiter must learn
//! its deadline). A worker that finds nothing to reserve blocks in `BZPOPMIN` on the marker
//! and reserves as soon as it takes it; a reserve that leaves work behind adds the marker
//! again, so a burst wakes one waiter after the other rather than all at once.
//!
//! No wake-up is lost between an empty reserve and the wait: the marker stays in Redis
//! until a waiter takes it, so a message enqueued in between makes the pop return at once.
//! Retries and lease deadlines come due by the clock alone, with nobody to add the marker;
//! an empty reserve therefore also answers when the earliest of them is due, and the wait
//! ends then. That bound stays right while the waiter sleeps: a sooner retry adds the
//! marker, a new lease ends after every lease already held, and the first lease adds it.
//!
//! Cost at idle: one `BZPOPMIN` per `block_timeout`, nothing else. A pop that times out with
//! nothing due is not followed by a reserve, since nothing can have become ready without
//! adding the marker.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::scripts::SCRIPTS;
use crate::{Delivery, Result, WorkQueue};

/// One loop's wait for work, with a Redis connection of its own for the blocking pop.
///
/// Keep it for as long as the loop runs: the connection is checked out of the pool once
/// (a checkout costs a health-check `PING`) and reused by every wait. Everything else (the
/// reserve itself) goes over the shared multiplexed connections.
pub struct Waiter {
    queue: WorkQueue,
    conn: Option<pipeline_redis::WaitConn>,
    /// Reserve before the next wait: the marker was taken, the last call returned work, or
    /// nothing is known yet.
    must_reserve: bool,
    /// When the earliest retry or lease deadline seen by the last empty reserve comes due.
    due_at: Option<Instant>,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("family", &self.queue.family())
            .field("connected", &self.conn.is_some())
            .field("must_reserve", &self.must_reserve)
            .field("due_at", &self.due_at)
            .finish()
    }
}

/// How the blocking pop ended.
enum Woke {
    Marker,
    Timeout,
}

impl WorkQueue {
    /// A [`Waiter`] for one worker loop.
    pub fn waiter(&self) -> Waiter {
        Waiter {
            queue: self.clone(),
            conn: None,
            must_reserve: true,
            due_at: None,
        }
    }

    /// Reserves up to `max` messages, waiting at most `block_timeout` for some to arrive,
    /// with a [`Waiter`] of its own (a connection checkout per call): loops should hold a
    /// [`Waiter`] instead.
    ///
    /// # Errors
    /// Redis or pool failures.
    pub async fn reserve_wait(
        &self,
        max: usize,
        cancel: &CancellationToken,
    ) -> Result<Vec<Delivery>> {
        self.waiter().reserve_wait(max, cancel).await
    }
}

impl Waiter {
    /// Reserves up to `max` messages, waiting at most `block_timeout` for some to arrive.
    /// Returns an empty batch when the wait ends without work or `cancel` fires, so a
    /// worker loop notices shutdown at once and comes round at least every `block_timeout`.
    ///
    /// # Errors
    /// Redis or pool failures; the wait's connection is then dropped and the next call
    /// checks out a fresh one.
    pub async fn reserve_wait(
        &mut self,
        max: usize,
        cancel: &CancellationToken,
    ) -> Result<Vec<Delivery>> {
        let deadline = Instant::now() + self.queue.inner.opts.block_timeout;
        loop {
            if cancel.is_cancelled() {
                return Ok(Vec::new());
            }
            if self.must_reserve || self.due_at.is_some_and(|d| d <= Instant::now()) {
                let (batch, next_due) = self.queue.reserve_or_next_due(max).await?;
                if !batch.is_empty() {
                    self.must_reserve = true;
                    return Ok(batch);
                }
                self.must_reserve = false;
                self.due_at = next_due.map(|d| Instant::now() + d);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let until = self.due_at.map_or(deadline, |d| d.min(deadline));
            // Redis reads a zero timeout as "forever"; a due time already reached still
            // gets the shortest pop, which also takes a marker that is there.
            let wait = until
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            let woke = tokio::select! {
                () = cancel.cancelled() => None,
                woke = self.block(wait) => Some(woke),
            };
            match woke {
                Some(Ok(Woke::Marker)) => self.must_reserve = true,
                Some(Ok(Woke::Timeout)) => {}
                Some(Err(err)) => {
                    self.discard_conn();
                    return Err(err);
                }
                None => {
                    self.abandon().await;
                    return Ok(Vec::new());
                }
            }
        }
    }

    /// One `BZPOPMIN` of at most `wait` on the marker, on this waiter's connection.
    async fn block(&mut self, wait: Duration) -> Result<Woke> {
        if self.conn.is_none() {
            // A pool with every connection out (more waiting loops than its size) makes
            // this loop wait its turn; it then comes round as if the pop had timed out.
            match tokio::time::timeout(wait, self.queue.inner.pool.checkout()).await {
                Ok(conn) => self.conn = Some(conn?),
                Err(_) => return Ok(Woke::Timeout),
            }
        }
        let conn = self.conn.as_mut().expect("checked out above");
        let reply: redis::Value = redis::cmd("BZPOPMIN")
            .arg(&self.queue.inner.wake)
            .arg(format!("{:.3}", wait.as_secs_f64()))
            .query_async(conn)
            .await?;
        Ok(match reply {
            redis::Value::Nil => Woke::Timeout,
            _ => Woke::Marker,
        })
    }

    /// Drops the wait's connection instead of returning it to the pool: its pop may still
    /// be blocked in Redis, and the next user would wait behind it. Closing the socket ends
    /// the pop on the server too.
    fn discard_conn(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.discard();
        }
    }

    /// Leaves a pop cut short by `cancel`. The pop may have taken the marker just before:
    /// put it back if work is ready, so another worker is not left asleep beside it.
    async fn abandon(&mut self) {
        self.discard_conn();
        self.must_reserve = true;
        let inner = &self.queue.inner;
        let mut con = self.queue.conn();
        let rewake: redis::RedisResult<()> = SCRIPTS
            .rewake
            .key(&inner.ready)
            .key(&inner.wake)
            .invoke_async(&mut con)
            .await;
        // At worst a message waits for the next wake-up or another worker's block timeout.
        if let Err(err) = rewake {
            tracing::debug!(family = self.queue.family(), error = %err, "could not put the wake-up marker back");
        }
    }
}
