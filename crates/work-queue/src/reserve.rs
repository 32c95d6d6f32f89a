//! Taking work: reserve with a lease (the wait for work is in `wait.rs`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::queue::{HOUSEKEEPING_LIMIT, MAX_BATCH};
use crate::scripts::SCRIPTS;
use crate::{Delivery, QueueError, Result, WorkQueue};

/// The reserve script's reply: counts of dropped, promoted and reclaimed ids, then one
/// column per field of the deliveries (id, token, body, deliveries, attempts, redrives),
/// then the ms until the earliest retry or lease deadline when nothing was reserved (-1: none).
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
    i64,
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
    /// with a warning and counted in `pipeline_queue_orphans_dropped_total`: there is no work
    /// left to deliver for it.
    ///
    /// # Errors
    /// Redis or pool failures. A failure after the script ran (a lost reply) leaves the
    /// batch leased to nobody; those messages come back when their lease ends.
    ///
    /// With several shards in use, the shards are tried in turn, each sweep starting one
    /// shard further on, until `max` messages are reserved or every shard was tried.
    pub async fn reserve(&self, max: usize) -> Result<Vec<Delivery>> {
        let max = max.min(MAX_BATCH);
        let n = usize::from(self.shards_in_use().await?);
        let start = self.inner.rotor.fetch_add(1, Ordering::Relaxed);
        let mut batch = Vec::new();
        for k in 0..n {
            if batch.len() >= max {
                break;
            }
            let shard = u16::try_from((start + k) % n).expect("below MAX_SHARDS");
            batch.extend(self.reserve_shard(shard, max - batch.len()).await?.0);
        }
        Ok(batch)
    }

    /// [`reserve`](Self::reserve) from one shard, and when it finds nothing, how long until
    /// the shard's earliest retry becomes due or lease runs out (`None`: neither exists).
    pub(crate) async fn reserve_shard(
        &self,
        shard: u16,
        max: usize,
    ) -> Result<(Vec<Delivery>, Option<Duration>)> {
        let max = max.min(MAX_BATCH);
        if max == 0 {
            return Ok((Vec::new(), None));
        }
        let inner = &self.inner;
        let s = self.shard(shard);
        let mut con = self.conn();
        let reply: ReserveReply = SCRIPTS
            .reserve
            .key(&s.rota)
            .key(&s.leases)
            .key(&s.delayed)
            .key(&s.token_seq)
            .key(&s.wake)
            .arg(&s.tag)
            .arg(max)
            .arg(duration_ms(inner.opts.visibility_timeout))
            .arg(HOUSEKEEPING_LIMIT)
            .invoke_async(&mut con)
            .await?;
        drop(con);
        let (
            dropped,
            promoted,
            reclaimed,
            ids,
            tokens,
            bodies,
            deliveries,
            attempts,
            redrives,
            next_due,
        ) = reply;
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
            metrics::counter!("pipeline_queue_orphans_dropped_total", "family" => family.to_owned())
                .increment(dropped);
        }
        if reclaimed > 0 {
            tracing::info!(
                family,
                reclaimed,
                "leases ran out; messages are deliverable again"
            );
            metrics::counter!("pipeline_queue_leases_expired_total", "family" => family.to_owned())
                .increment(reclaimed);
        }
        if promoted > 0 {
            tracing::debug!(family, promoted, "retries due; back in the ready list");
        }
        metrics::counter!("pipeline_queue_reserved_total", "family" => family.to_owned())
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
                    shard,
                },
            )
            .collect();
        let next_due = u64::try_from(next_due).ok().map(Duration::from_millis);
        Ok((batch, next_due))
    }
}

/// Milliseconds of `d` for a script argument, at least 1.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
