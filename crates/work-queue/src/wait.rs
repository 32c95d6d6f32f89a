//! Waiting for work: a blocking pop on each shard's wake-up marker, not a timer.
//!
//! Whatever makes work ready in a shard adds that shard's marker `P{family}:wake` (a sorted
//! set that holds at most the one member): enqueue, a DLQ redrive, a retry scheduled (it
//! may be due sooner than a waiter thinks), and the first lease taken while none was held
//! (a waiter must learn its deadline). A worker that finds nothing to reserve blocks in
//! `BZPOPMIN` on the marker of every shard in use at once (one pop per shard, each on a
//! connection of its own: the shards' keys live in different cluster slots, so one
//! multi-key pop cannot cover them) and reserves from a shard as soon as it takes that
//! shard's marker; a reserve that leaves work behind adds the marker again, so a burst
//! wakes one waiter after the other rather than all at once.
//!
//! No wake-up is lost between an empty reserve and the wait: the marker stays in Redis
//! until a waiter takes it, so a message enqueued in between makes the pop return at once.
//! Retries and lease deadlines come due by the clock alone, with nobody to add the marker;
//! an empty reserve therefore also answers when the shard's earliest of them is due, and
//! the wait ends then. That bound stays right while the waiter sleeps: a sooner retry adds
//! the marker, a new lease ends after every lease already held, and the first lease adds it.
//!
//! When work arrives in one shard, the pops still in flight on the other shards are ended
//! (their connections closed, and each such shard's marker put back if work is ready there)
//! before the work is returned: a pop left waiting while the worker is busy could take a
//! marker another, idle, worker is waiting for. With one shard there is never another pop
//! in flight, so this costs nothing; with several it costs a reconnect per shard at each
//! change from idle to busy, not per batch (a busy worker finds work without waiting).
//!
//! Cost at idle: one `BZPOPMIN` per shard per `block_timeout`, and one read of the count
//! of shards in use a minute (`P{family}:shards`, so a resharding is noticed). A pop that
//! times out with nothing due is not followed by a reserve, since nothing can have become
//! ready without adding the marker.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::scripts::SCRIPTS;
use crate::{Delivery, Result, WorkQueue};

/// A blocking pop in flight: it owns its connection and gives it back when it ends.
type Pop = Pin<Box<dyn Future<Output = (Held, Result<Woke>)> + Send>>;

/// A wait connection that is closed, not returned to the pool, if dropped while a pop may
/// still be blocked on it (the next user would wait behind the pop).
struct Held(Option<pipeline_redis::WaitConn>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            conn.discard();
        }
    }
}

/// One shard's side of a [`Waiter`].
#[derive(Default)]
struct Lane {
    /// The shard's wait connection while no pop is in flight.
    conn: Option<pipeline_redis::WaitConn>,
    /// The pop in flight, if any.
    pop: Option<Pop>,
    /// Reserve from this shard before the next wait: its marker was taken, its last reserve
    /// returned work, or nothing is known yet.
    must_reserve: bool,
    /// When the shard's earliest retry or lease deadline seen by its last empty reserve
    /// comes due.
    due_at: Option<Instant>,
}

impl Lane {
    fn new() -> Self {
        Self {
            must_reserve: true,
            ..Self::default()
        }
    }
}

/// One loop's wait for work, with Redis connections of its own for the blocking pops (one
/// per shard in use).
///
/// Keep it for as long as the loop runs: the connections are checked out of the pool once
/// (a checkout costs a health-check `PING`) and reused by every wait. Everything else (the
/// reserve itself) goes over the shared multiplexed connections.
pub struct Waiter {
    queue: WorkQueue,
    lanes: Vec<Lane>,
    /// The shard the next sweep starts with (turns, so no shard is always served last).
    next: usize,
    /// The last sweep found nothing.
    idle: bool,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("family", &self.queue.family())
            .field("shards", &self.lanes.len())
            .field(
                "popping",
                &self.lanes.iter().filter(|l| l.pop.is_some()).count(),
            )
            .finish_non_exhaustive()
    }
}

/// How long past a pop's timeout the waiter waits for Redis to answer it before its own
/// timer ends the wait. Redis answers a timed-out pop a few milliseconds late (about 7 ms
/// on the development machine: `redis-cli monitor` showed idle pops 2.0075 s apart). A waiter whose timer ended the wait at the deadline left that pop in flight,
/// and its next wait could only start a pop once the old one answered, with the time left
/// of the new deadline: each idle round's pop was that many ms shorter than the last, and
/// when the time left fell below the lateness a round sent two pops (1.1 to 1.2 pops per
/// `block_timeout` in the runner benchmark's idle window).
const POP_GRACE: Duration = Duration::from_millis(250);

/// How a blocking pop ended.
enum Woke {
    Marker,
    Timeout,
}

impl WorkQueue {
    /// A [`Waiter`] for one worker loop.
    pub fn waiter(&self) -> Waiter {
        Waiter {
            queue: self.clone(),
            lanes: Vec::new(),
            next: 0,
            idle: false,
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
        let mut waiter = self.waiter();
        let batch = waiter.reserve_wait(max, cancel).await;
        waiter.abandon().await;
        batch
    }
}

impl Waiter {
    /// Reserves up to `max` messages, waiting at most `block_timeout` for some to arrive.
    /// Returns an empty batch when the wait ends without work or `cancel` fires, so a
    /// worker loop notices shutdown at once and comes round at least every `block_timeout`.
    ///
    /// # Errors
    /// Redis or pool failures; the failed pop's connection is then dropped and the next
    /// call checks out a fresh one.
    pub async fn reserve_wait(
        &mut self,
        max: usize,
        cancel: &CancellationToken,
    ) -> Result<Vec<Delivery>> {
        let deadline = Instant::now() + self.queue.inner.opts.block_timeout;
        loop {
            if cancel.is_cancelled() {
                self.abandon().await;
                return Ok(Vec::new());
            }
            // An idle loop (its last sweep found nothing) reads the count less often.
            let max_age = if self.idle {
                crate::queue::SHARDS_REFRESH_IDLE
            } else {
                crate::queue::SHARDS_REFRESH
            };
            let n = usize::from(self.queue.shards_in_use_within(max_age).await?);
            if self.lanes.len() < n {
                self.lanes.resize_with(n, Lane::new);
            }
            // Shards retired meanwhile are empty: their pops (if any) just end.
            self.lanes.truncate(n);
            let batch = self.sweep(n, max).await?;
            self.idle = batch.is_empty();
            if !batch.is_empty() {
                // A pop left in flight while the worker works could take a marker that an
                // idle worker is waiting for, and hold it until this worker comes back.
                self.release_pops().await;
                return Ok(batch);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let due = self.lanes[..n].iter().filter_map(|l| l.due_at).min();
            let until = due.map_or(deadline, |d| d.min(deadline));
            self.start_pops(n, until.saturating_duration_since(now))
                .await;
            // A wait that ends at the deadline is ended by the pop's own timeout, which
            // Redis answers a little after it (see `POP_GRACE`); the local timer only
            // covers a pop that never answers. A due time is kept by the local timer.
            let timer = if until == deadline {
                until + POP_GRACE
            } else {
                until
            };
            let lanes = &mut self.lanes[..n];
            let woke = tokio::select! {
                biased;
                () = cancel.cancelled() => None,
                (i, held, woke) = first_pop(lanes) => Some(Some((i, held, woke))),
                () = tokio::time::sleep_until(timer) => Some(None),
            };
            match woke {
                None => {
                    self.abandon().await;
                    return Ok(Vec::new());
                }
                // A due time or the deadline: the loop reserves or returns.
                Some(None) => {}
                Some(Some((i, mut held, woke))) => {
                    let lane = &mut self.lanes[i];
                    match woke {
                        Ok(Woke::Marker) => {
                            lane.must_reserve = true;
                            lane.conn = held.0.take();
                        }
                        Ok(Woke::Timeout) => lane.conn = held.0.take(),
                        // `held` drops here: the connection is closed.
                        Err(err) => return Err(err),
                    }
                }
            }
        }
    }

    /// Reserves from the shards that may have work (marker taken, last reserve found work,
    /// or a retry or lease due), one after the other from a turning start, until `max`.
    async fn sweep(&mut self, n: usize, max: usize) -> Result<Vec<Delivery>> {
        let mut batch = Vec::new();
        let start = self.next % n;
        self.next = self.next.wrapping_add(1);
        for k in 0..n {
            if batch.len() >= max {
                break;
            }
            let i = (start + k) % n;
            let lane = &mut self.lanes[i];
            if !(lane.must_reserve || lane.due_at.is_some_and(|d| d <= Instant::now())) {
                continue;
            }
            let shard = u16::try_from(i).expect("below MAX_SHARDS");
            let (got, next_due) = self.queue.reserve_shard(shard, max - batch.len()).await?;
            if got.is_empty() {
                lane.must_reserve = false;
                lane.due_at = next_due.map(|d| Instant::now() + d);
            } else {
                lane.must_reserve = true;
                batch.extend(got);
            }
        }
        Ok(batch)
    }

    /// Puts a pop of at most `wait` in flight on every shard that has none. A shard whose
    /// connection cannot be checked out within `wait` (a pool with every connection out)
    /// gets no pop this round: the loop then comes round by its timer.
    async fn start_pops(&mut self, n: usize, wait: Duration) {
        // Redis reads a zero timeout as "forever"; a due time already reached still gets
        // the shortest pop, which also takes a marker that is there.
        let wait = wait.max(Duration::from_millis(1));
        for i in 0..n {
            if self.lanes[i].pop.is_some() {
                continue;
            }
            if self.lanes[i].conn.is_none() {
                match tokio::time::timeout(wait, self.queue.inner.pool.checkout()).await {
                    Ok(Ok(conn)) => self.lanes[i].conn = Some(conn),
                    Ok(Err(err)) => {
                        tracing::debug!(family = self.queue.family(), shard = i, error = %err,
                            "no wait connection; the loop comes round by its timer");
                        continue;
                    }
                    Err(_) => continue,
                }
            }
            let conn = self.lanes[i].conn.take().expect("checked out above");
            let key = self
                .queue
                .shard(u16::try_from(i).expect("below MAX_SHARDS"))
                .wake
                .clone();
            let timeout = format!("{:.3}", wait.as_secs_f64());
            self.lanes[i].pop = Some(Box::pin(async move {
                let mut held = Held(Some(conn));
                let reply: redis::RedisResult<redis::Value> = redis::cmd("BZPOPMIN")
                    .arg(key)
                    .arg(timeout)
                    .query_async(held.0.as_mut().expect("set above"))
                    .await;
                let woke = match reply {
                    Ok(redis::Value::Nil) => Ok(Woke::Timeout),
                    Ok(_) => Ok(Woke::Marker),
                    Err(err) => Err(err.into()),
                };
                (held, woke)
            }));
        }
    }

    /// Ends every pop in flight (closing its connection) and, since a pop may have taken
    /// its shard's marker just before, puts each such shard's marker back if work is ready
    /// there, so another worker is not left asleep beside it. Called when a wait is cut
    /// short by `cancel`, and by a loop that stops waiting for good.
    pub async fn abandon(&mut self) {
        for lane in &mut self.lanes {
            lane.must_reserve = true;
        }
        self.release_pops().await;
    }

    /// [`abandon`](Self::abandon) for the pops in flight only: their shards are reserved
    /// from at the next call, the others keep what is known about them.
    async fn release_pops(&mut self) {
        for i in 0..self.lanes.len() {
            let lane = &mut self.lanes[i];
            if lane.pop.take().is_none() {
                continue;
            }
            lane.must_reserve = true;
            let s = self
                .queue
                .shard(u16::try_from(i).expect("below MAX_SHARDS"));
            let mut con = self.queue.conn();
            let rewake: redis::RedisResult<()> = SCRIPTS
                .rewake
                .key(&s.rota)
                .key(&s.wake)
                .key(&s.legacy)
                .invoke_async(&mut con)
                .await;
            // At worst a message waits for the next wake-up or another worker's block timeout.
            if let Err(err) = rewake {
                tracing::debug!(family = self.queue.family(), shard = i, error = %err,
                    "could not put the wake-up marker back");
            }
        }
    }
}

/// The first pop among `lanes` to end: its lane's index, its connection and how it ended.
/// Pending forever when no pop is in flight (the caller's timer ends the wait then).
fn first_pop(lanes: &mut [Lane]) -> impl Future<Output = (usize, Held, Result<Woke>)> + '_ {
    poll_fn(move |cx| {
        for (i, lane) in lanes.iter_mut().enumerate() {
            if let Some(pop) = lane.pop.as_mut()
                && let Poll::Ready((held, woke)) = pop.as_mut().poll(cx)
            {
                lane.pop = None;
                return Poll::Ready((i, held, woke));
            }
        }
        Poll::Pending
    })
}
