//! Producing messages.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::queue::MAX_BATCH;
use crate::scripts::SCRIPTS;
use crate::{BulkOutcome, QueueError, Result, WorkQueue};

/// Script calls sent in one pipelined round trip by [`WorkQueue::enqueue_bulk`]: enough to
/// hide the round trip, few enough that one reply arrives well within a response timeout.
const CHUNKS_PER_ROUND_TRIP: usize = 10;

/// Tries of one round trip of a bulk enqueue before the error goes to the caller.
const BULK_TRIES: usize = 3;

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(QueueError::InvalidArgument(
            "message id must not be empty".into(),
        ));
    }
    Ok(())
}

impl WorkQueue {
    /// Queues one message unless a message with this id is already queued (in any state).
    ///
    /// Returns `true` if it was queued, `false` if it was there already (the call then
    /// changes nothing). Producers can therefore retry freely.
    ///
    /// # Errors
    /// An empty id, or Redis/pool failures.
    pub async fn enqueue(&self, id: &str, body: &serde_json::Value) -> Result<bool> {
        self.enqueue_raw(id, &serde_json::to_string(body)?).await
    }

    /// Like [`enqueue`](Self::enqueue) with an already-serialised body, stored as is.
    ///
    /// # Errors
    /// An empty id, or Redis/pool failures.
    pub async fn enqueue_raw(&self, id: &str, body: &str) -> Result<bool> {
        check_id(id)?;
        let mut con = self.conn();
        let added: u64 = SCRIPTS
            .enqueue
            .key(&self.inner.ready)
            .key(&self.inner.wake)
            .arg(&self.inner.tag)
            .arg(id)
            .arg(body)
            .invoke_async(&mut con)
            .await?;
        metrics::counter!("work_queue_enqueued_total", "family" => self.family().to_owned())
            .increment(added);
        Ok(added == 1)
    }

    /// Queues many messages: chunks of at most [`MAX_BATCH`], each one atomic script
    /// call, several chunks pipelined per round trip.
    ///
    /// The call is **idempotent per id** rather than atomic as a whole: an id that is
    /// already queued is skipped, so when a call fails part-way (a timeout, a dropped
    /// connection) calling it again with the same items completes the work without
    /// queuing anything twice. A round trip that fails with a transient error is retried
    /// here a few times for that reason; messages its failed try had written then count
    /// as `already_queued`.
    ///
    /// Chunking keeps every script small: no argument-count limit, and Redis is never
    /// blocked for long by one big batch.
    ///
    /// # Errors
    /// An empty id, or Redis/pool failures that outlast the retries (some chunks may
    /// then be queued: call again to finish).
    pub async fn enqueue_bulk<S: AsRef<str>>(
        &self,
        items: &[(S, serde_json::Value)],
    ) -> Result<BulkOutcome> {
        let mut bodies = Vec::with_capacity(items.len());
        for (id, body) in items {
            check_id(id.as_ref())?;
            bodies.push(serde_json::to_string(body)?);
        }
        let mut outcome = BulkOutcome::default();
        let round_trip = MAX_BATCH * CHUNKS_PER_ROUND_TRIP;
        for (n, group) in items.chunks(round_trip).enumerate() {
            let group_bodies = &bodies[n * round_trip..n * round_trip + group.len()];
            let added = self.enqueue_round_trip(group, group_bodies).await?;
            outcome.enqueued += added;
            outcome.already_queued += group.len() as u64 - added;
        }
        metrics::counter!("work_queue_enqueued_total", "family" => self.family().to_owned())
            .increment(outcome.enqueued);
        Ok(outcome)
    }

    /// One pipelined round trip of up to `CHUNKS_PER_ROUND_TRIP` script calls, retried on
    /// transient errors (safe because the script skips ids already queued).
    async fn enqueue_round_trip<S: AsRef<str>>(
        &self,
        items: &[(S, serde_json::Value)],
        bodies: &[String],
    ) -> Result<u64> {
        let mut pipe = redis::pipe();
        // SCRIPT LOAD first: a pipelined EVALSHA cannot fall back to EVAL by itself.
        pipe.load_script(&SCRIPTS.enqueue).ignore();
        let mut calls = 0;
        for (chunk, chunk_bodies) in items.chunks(MAX_BATCH).zip(bodies.chunks(MAX_BATCH)) {
            let mut inv = SCRIPTS.enqueue.key(&self.inner.ready);
            inv.key(&self.inner.wake).arg(&self.inner.tag);
            for ((id, _), body) in chunk.iter().zip(chunk_bodies) {
                inv.arg(id.as_ref()).arg(body);
            }
            pipe.invoke_script(&inv);
            calls += 1;
        }
        // Retried with backon's exponential schedule (with jitter): safe because the script
        // skips ids already queued, so a round trip that landed before a timeout is a no-op.
        let schedule = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_factor(4.0)
            .with_max_times(BULK_TRIES - 1)
            .with_jitter();
        let added: Vec<u64> = (|| async {
            let mut con = self.conn();
            let added: Vec<u64> = pipe.query_async(&mut con).await?;
            Ok::<_, QueueError>(added)
        })
        .retry(schedule)
        .when(QueueError::is_transient)
        .notify(|e, pause| {
            tracing::warn!(
                family = self.family(),
                error = e as &dyn std::error::Error,
                pause_ms = pause.as_millis() as u64,
                "bulk enqueue round trip failed; retrying (idempotent per id)"
            );
        })
        .await?;
        if added.len() != calls {
            return Err(QueueError::Protocol(format!(
                "bulk enqueue: {} replies for {calls} calls",
                added.len()
            )));
        }
        Ok(added.iter().sum())
    }
}
