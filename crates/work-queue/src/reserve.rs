//! Taking work: reserve with a lease, and the bounded wait for work.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::queue::{HOUSEKEEPING_LIMIT, MAX_BATCH};
use crate::scripts::SCRIPTS;
use crate::{Delivery, QueueError, Result, WorkQueue};

/// First pause of [`WorkQueue::reserve_wait`] after finding the queue empty.
const FIRST_POLL_PAUSE: Duration = Duration::from_millis(5);
/// Longest pause between two polls: how late an idle worker may notice new work.
const MAX_POLL_PAUSE: Duration = Duration::from_millis(200);

/// The reserve script's reply: counts of dropped, promoted and reclaimed ids, then one
/// column per field of the deliveries (id, token, body, deliveries, attempts, redrives).
type ReserveReply = (
    u64,
    u64,
    u64,
    Vec<String>,
    Vec<u64>,
    Vec<Vec<u8>>,
    Vec<u32>,
    Vec<u32>,
    Vec<u32>,
);

impl WorkQueue {
    /// Reserves up to `max` messages (at most [`MAX_BATCH`]) without waiting: oldest first,
    /// each with a fresh lease token and a lease of `visibility_timeout` measured on the
    /// Redis clock, its delivery count raised by one.
    ///
    /// The same script first does bounded housekeeping: retries whose backoff has passed
    /// and leases that ran out (their holder died or stalled) go back to the front of the
    /// queue. The reserve of a live worker is therefore what recovers a dead worker's
    /// messages; no separate sweeper is needed.
    ///
    /// An id whose message hash is missing (deleted behind the queue's back) is dropped
    /// with a warning and counted in `work_queue_orphans_dropped_total`: there is no work
    /// left to deliver for it.
    ///
    /// # Errors
    /// Redis or pool failures. A failure after the script ran (a lost reply) leaves the
    /// batch leased to nobody; those messages come back when their lease ends.
    pub async fn reserve(&self, max: usize) -> Result<Vec<Delivery>> {
        let max = max.min(MAX_BATCH);
        if max == 0 {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let mut con = self.conn();
        let reply: ReserveReply = SCRIPTS
            .reserve
            .key(&inner.ready)
            .key(&inner.leases)
            .key(&inner.delayed)
            .key(&inner.token_seq)
            .arg(&inner.tag)
            .arg(max)
            .arg(duration_ms(inner.opts.visibility_timeout))
            .arg(HOUSEKEEPING_LIMIT)
            .invoke_async(&mut con)
            .await?;
        drop(con);
        let (dropped, promoted, reclaimed, ids, tokens, bodies, deliveries, attempts, redrives) =
            reply;
        let n = ids.len();
        if [
            tokens.len(),
            bodies.len(),
            deliveries.len(),
            attempts.len(),
            redrives.len(),
        ]
        .iter()
        .any(|&len| len != n)
        {
            return Err(QueueError::Protocol(
                "reserve: reply columns differ in length".into(),
            ));
        }
        let family = self.family();
        if dropped > 0 {
            tracing::warn!(
                family,
                dropped,
                "dropped queued ids whose message hash is missing"
            );
            metrics::counter!("work_queue_orphans_dropped_total", "family" => family.to_owned())
                .increment(dropped);
        }
        if reclaimed > 0 {
            tracing::info!(
                family,
                reclaimed,
                "leases ran out; messages are deliverable again"
            );
            metrics::counter!("work_queue_leases_expired_total", "family" => family.to_owned())
                .increment(reclaimed);
        }
        if promoted > 0 {
            tracing::debug!(family, promoted, "retries due; back in the ready list");
        }
        metrics::counter!("work_queue_reserved_total", "family" => family.to_owned())
            .increment(n as u64);
        let batch = ids
            .into_iter()
            .zip(tokens)
            .zip(bodies)
            .zip(deliveries.into_iter().zip(attempts).zip(redrives))
            .map(
                |(((id, token), body), ((deliveries, attempts), redrives))| Delivery {
                    id,
                    token,
                    body: Delivery::body_from_stored(body),
                    deliveries,
                    attempts,
                    redrives,
                },
            )
            .collect();
        Ok(batch)
    }

    /// Reserves up to `max` messages, waiting at most `block_timeout` for some to arrive.
    /// Returns an empty batch when the wait ends without work or `cancel` fires, so a
    /// worker loop notices shutdown within `block_timeout`.
    ///
    /// The wait is a client-side poll with a pause that doubles from 5 ms to 200 ms while
    /// the queue stays empty. A blocking pop cannot run inside the reserve script (Redis
    /// forbids blocking commands in Lua), and a separate notification list would still
    /// miss retries that become due by the clock alone; polling covers both with one
    /// cheap, non-blocking script, and costs an idle worker about five calls a second.
    ///
    /// # Errors
    /// Redis or pool failures.
    pub async fn reserve_wait(
        &self,
        max: usize,
        cancel: &CancellationToken,
    ) -> Result<Vec<Delivery>> {
        let deadline = Instant::now() + self.inner.opts.block_timeout;
        let mut pause = FIRST_POLL_PAUSE;
        loop {
            if cancel.is_cancelled() {
                return Ok(Vec::new());
            }
            let batch = self.reserve(max).await?;
            if !batch.is_empty() {
                return Ok(batch);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let nap = pause.min(deadline - now);
            tokio::select! {
                () = cancel.cancelled() => return Ok(Vec::new()),
                () = tokio::time::sleep(nap) => {}
            }
            pause = (pause * 2).min(MAX_POLL_PAUSE);
        }
    }
}

/// Milliseconds of `d` for a script argument, at least 1.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
