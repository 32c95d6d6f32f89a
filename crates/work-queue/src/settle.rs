//! Fenced operations of a lease holder: ack, renew, retry, dead-letter.
//!
//! Each is one script that first compares the caller's token with the message's current
//! token. A holder whose lease ran out gets `LeaseLost` and changes nothing, so it can
//! never delete or move a message that another worker holds now.

use std::time::Duration;

use uuid::Uuid;

use crate::dlq::{DlqItem, ErrorKind};
use crate::queue::MAX_BATCH;
use crate::reserve::duration_ms;
use crate::scripts::SCRIPTS;
use crate::{AckOutcome, DeadLetterOutcome, Delivery, Result, RetryOutcome, WorkQueue};

/// Longest error text stored with a message or a DLQ item: an error can quote a whole
/// response body, and one bad reply should not bloat Redis or the DLQ listing.
pub const MAX_ERROR_BYTES: usize = 4096;

/// `error` cut to at most [`MAX_ERROR_BYTES`], on a character boundary.
fn clip(error: &str) -> &str {
    if error.len() <= MAX_ERROR_BYTES {
        return error;
    }
    let mut end = MAX_ERROR_BYTES;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    &error[..end]
}

impl WorkQueue {
    /// Finishes a message: it leaves the queue for good.
    ///
    /// # Errors
    /// Redis or pool failures (the message is then still held, or comes back when its
    /// lease ends: at-least-once).
    pub async fn ack(&self, delivery: &Delivery) -> Result<AckOutcome> {
        let outcomes = self.ack_many(&[delivery]).await?;
        Ok(outcomes.first().copied().unwrap_or(AckOutcome::LeaseLost))
    }

    /// Finishes many messages in one script call per [`MAX_BATCH`] (the usual lever for
    /// throughput: one round trip for a whole batch). Outcomes come in input order.
    ///
    /// # Errors
    /// Redis or pool failures.
    pub async fn ack_many(&self, deliveries: &[&Delivery]) -> Result<Vec<AckOutcome>> {
        let mut outcomes = Vec::with_capacity(deliveries.len());
        if deliveries.is_empty() {
            return Ok(outcomes);
        }
        let mut con = self.conn();
        // One script call per shard and chunk (each touches one slot); outcomes go back to
        // the caller's order.
        outcomes.resize(deliveries.len(), AckOutcome::LeaseLost);
        let mut shards: Vec<u16> = deliveries.iter().map(|d| d.shard).collect();
        shards.sort_unstable();
        shards.dedup();
        for shard in shards {
            let s = self.shard(shard);
            let positions: Vec<usize> = (0..deliveries.len())
                .filter(|&i| deliveries[i].shard == shard)
                .collect();
            for chunk in positions.chunks(MAX_BATCH) {
                let mut inv = SCRIPTS.ack.key(&s.leases);
                inv.arg(&s.tag);
                for &i in chunk {
                    inv.arg(&deliveries[i].id).arg(deliveries[i].token);
                }
                let flags: Vec<u8> = inv.invoke_async(&mut con).await?;
                for (&i, &f) in chunk.iter().zip(&flags) {
                    if f == 1 {
                        outcomes[i] = AckOutcome::Acked;
                    }
                }
            }
        }
        let acked = outcomes.iter().filter(|o| **o == AckOutcome::Acked).count();
        let lost = outcomes.len() - acked;
        let family = self.family().to_owned();
        metrics::counter!("pipeline_queue_acked_total", "family" => family.clone())
            .increment(acked as u64);
        if lost > 0 {
            tracing::warn!(
                family,
                lost,
                "ack after the lease ran out; left to the current holder"
            );
            metrics::counter!("pipeline_queue_lease_lost_total", "family" => family)
                .increment(lost as u64);
        }
        Ok(outcomes)
    }

    /// Extends the lease by `visibility_timeout` from now (Redis clock). Long work calls
    /// this well before the lease ends, e.g. every third of the timeout.
    ///
    /// Returns `false` when the lease was already lost: the worker should stop the work
    /// and drop the delivery, as another worker may be processing the message.
    ///
    /// # Errors
    /// Redis or pool failures.
    pub async fn renew(&self, delivery: &Delivery) -> Result<bool> {
        let mut con = self.conn();
        let deadline: u64 = SCRIPTS
            .renew
            .key(&self.shard(delivery.shard).leases)
            .arg(&self.shard(delivery.shard).tag)
            .arg(&delivery.id)
            .arg(delivery.token)
            .arg(duration_ms(self.inner.opts.visibility_timeout))
            .invoke_async(&mut con)
            .await?;
        Ok(deadline != 0)
    }

    /// Reports a transient failure: the attempt count goes up and the message waits for
    /// its backoff ([`QueueOptions::backoff`](crate::QueueOptions::backoff)), or, if that
    /// was attempt `max_attempts`, goes to the DLQ with kind `transient`.
    ///
    /// # Errors
    /// Redis or pool failures (the message stays held and comes back when its lease ends).
    pub async fn retry_later(&self, delivery: &Delivery, error: &str) -> Result<RetryOutcome> {
        let attempts = delivery.attempts.saturating_add(1);
        let delay = self.inner.opts.backoff(attempts);
        self.retry_with_delay(delivery, error, delay).await
    }

    /// Like [`retry_later`](Self::retry_later), but waits at least `not_before` (a
    /// server's `Retry-After`). The wait is the longer of that and the backoff, and is
    /// clamped to `backoff_cap`, so a hostile or broken server cannot park a message for
    /// days.
    ///
    /// # Errors
    /// Redis or pool failures.
    pub async fn retry_after(
        &self,
        delivery: &Delivery,
        error: &str,
        not_before: Duration,
    ) -> Result<RetryOutcome> {
        let opts = &self.inner.opts;
        let attempts = delivery.attempts.saturating_add(1);
        let delay = opts.backoff(attempts).max(not_before).min(opts.backoff_cap);
        self.retry_with_delay(delivery, error, delay).await
    }

    async fn retry_with_delay(
        &self,
        delivery: &Delivery,
        error: &str,
        delay: Duration,
    ) -> Result<RetryOutcome> {
        let attempts = delivery.attempts.saturating_add(1);
        if attempts >= self.inner.opts.max_attempts {
            return Ok(
                match self
                    .push_dead(delivery, error, ErrorKind::Transient)
                    .await?
                {
                    DeadLetterOutcome::DeadLettered => RetryOutcome::DeadLettered { attempts },
                    DeadLetterOutcome::LeaseLost => RetryOutcome::LeaseLost,
                },
            );
        }
        let s = self.shard(delivery.shard);
        let mut con = self.conn();
        let stored: u32 = SCRIPTS
            .retry
            .key(&s.leases)
            .key(&s.delayed)
            .key(&s.wake)
            .arg(&s.tag)
            .arg(&delivery.id)
            .arg(delivery.token)
            .arg(duration_ms(delay))
            .arg(clip(error))
            .invoke_async(&mut con)
            .await?;
        if stored == 0 {
            self.note_lease_lost(delivery, "retry");
            return Ok(RetryOutcome::LeaseLost);
        }
        metrics::counter!("pipeline_queue_retried_total", "family" => self.family().to_owned())
            .increment(1);
        Ok(RetryOutcome::Scheduled {
            attempts: stored,
            delay,
        })
    }

    /// Moves the message to its family's DLQ at once: for a permanent failure (bad input,
    /// a 4xx, a malformed message), or whenever the worker decides retrying cannot help.
    /// One script checks the lease, removes the message and pushes the DLQ item, so a
    /// crash cannot leave it in both places or in neither.
    ///
    /// The item records the error, its kind, the attempt count (this failure included),
    /// `retry_count` = redrives so far, the worker id, the body as `payload`, and
    /// `source_id`/`job_id` when the body is a JSON object with those fields.
    ///
    /// # Errors
    /// Redis or pool failures.
    pub async fn dead_letter(
        &self,
        delivery: &Delivery,
        error: &str,
        kind: ErrorKind,
    ) -> Result<DeadLetterOutcome> {
        self.push_dead(delivery, error, kind).await
    }

    async fn push_dead(
        &self,
        delivery: &Delivery,
        error: &str,
        kind: ErrorKind,
    ) -> Result<DeadLetterOutcome> {
        let encoded = self.dlq_item(delivery, error, kind).encode()?;
        let s = self.shard(delivery.shard);
        // The item goes to the DLQ of the message's own shard (one slot for the script); a
        // retention bound applies per shard, so it is split over the configured shards.
        let max_items = self
            .inner
            .opts
            .dlq_max_items
            .map(|m| m.div_ceil(u64::from(self.inner.opts.shards)));
        let mut inv = SCRIPTS.dead_letter.key(&s.leases);
        inv.key(s.keys.dlq_script_keys().as_slice())
            .arg(&s.tag)
            .arg(delivery.token)
            .arg(encoded.push_argv(max_items).as_slice());
        let mut con = self.conn();
        let (moved, trimmed): (u32, Vec<String>) = inv.invoke_async(&mut con).await?;
        drop(con);
        if moved == 0 {
            self.note_lease_lost(delivery, "dead-letter");
            return Ok(DeadLetterOutcome::LeaseLost);
        }
        let family = self.family().to_owned();
        if !trimmed.is_empty() {
            // Only happens with an explicit `dlq_max_items`; dlq-core counts them too.
            tracing::warn!(
                family,
                dropped = trimmed.len(),
                ids = ?trimmed,
                "DLQ retention bound reached: oldest items dropped"
            );
        }
        metrics::counter!("pipeline_queue_dead_lettered_total", "family" => family).increment(1);
        Ok(DeadLetterOutcome::DeadLettered)
    }

    fn dlq_item(&self, delivery: &Delivery, error: &str, kind: ErrorKind) -> DlqItem {
        // A body that is not JSON is kept as a JSON string, so the item still carries
        // exactly what the producer sent.
        let payload = delivery
            .json()
            .unwrap_or_else(|_| serde_json::Value::String(delivery.body.clone()));
        let uuid_field = |name: &str| {
            payload
                .get(name)
                .and_then(serde_json::Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
        };
        let (source_id, job_id) = (uuid_field("source_id"), uuid_field("job_id"));
        let mut item = DlqItem::new(&delivery.id, self.family(), clip(error), kind, payload);
        item.source_id = source_id;
        item.job_id = job_id;
        item.retry_count = delivery.redrives;
        item.attempts = delivery.attempts.saturating_add(1);
        item.worker_id = Some(self.inner.opts.worker_id.clone());
        item
    }

    fn note_lease_lost(&self, delivery: &Delivery, op: &str) {
        tracing::warn!(
            family = self.family(),
            id = %delivery.id,
            op,
            "lease ran out before the {op}; left to the current holder"
        );
        metrics::counter!("pipeline_queue_lease_lost_total", "family" => self.family().to_owned())
            .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_clipped_on_a_char_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(MAX_ERROR_BYTES); // two bytes each
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_ERROR_BYTES && clipped.len() >= MAX_ERROR_BYTES - 1);
        assert!(clipped.chars().all(|c| c == 'é'));
    }
}
