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
        // Keeps the count of shards in use raised to this handle's (read every 10 s).
        self.shards_in_use().await?;
        let s = self.shard(self.home_shard(id));
        let mut con = self.conn();
        let added: u64 = SCRIPTS
            .enqueue
            .key(&s.ready)
            .key(&s.wake)
            .arg(&s.tag)
            .arg(id)
            .arg(body)
            .invoke_async(&mut con)
            .await?;
        metrics::counter!("pipeline_queue_enqueued_total", "family" => self.family().to_owned())
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
        // Each shard's messages go in that shard's own script calls (one slot each).
        let shards = usize::from(self.inner.opts.shards);
        let mut by_shard: Vec<(Vec<&str>, Vec<String>)> = vec![(Vec::new(), Vec::new()); shards];
        for (id, body) in items {
            let id = id.as_ref();
            check_id(id)?;
            let (ids, bodies) = &mut by_shard[usize::from(self.home_shard(id))];
            ids.push(id);
            bodies.push(serde_json::to_string(body)?);
        }
        self.shards_in_use().await?;
        let round_trip = MAX_BATCH * CHUNKS_PER_ROUND_TRIP;
        // The shards' round trips run side by side (on a cluster, different masters); each
        // shard's own round trips go one after the other.
        let per_shard = by_shard
            .iter()
            .enumerate()
            .map(|(shard, (ids, bodies))| async move {
                let shard = u16::try_from(shard).expect("below MAX_SHARDS");
                let mut outcome = BulkOutcome::default();
                for (group, group_bodies) in ids.chunks(round_trip).zip(bodies.chunks(round_trip)) {
                    let added = self.enqueue_round_trip(shard, group, group_bodies).await?;
                    outcome.enqueued += added;
                    outcome.already_queued += group.len() as u64 - added;
                }
                Ok::<_, QueueError>(outcome)
            });
        let mut outcome = BulkOutcome::default();
        for part in futures::future::join_all(per_shard).await {
            let part = part?;
            outcome.enqueued += part.enqueued;
            outcome.already_queued += part.already_queued;
        }
        metrics::counter!("pipeline_queue_enqueued_total", "family" => self.family().to_owned())
            .increment(outcome.enqueued);
        Ok(outcome)
    }

    /// One pipelined round trip of up to `CHUNKS_PER_ROUND_TRIP` script calls, retried on
    /// transient errors (safe because the script skips ids already queued).
    async fn enqueue_round_trip(&self, shard: u16, ids: &[&str], bodies: &[String]) -> Result<u64> {
        let s = self.shard(shard);
        let mut pipe = redis::pipe();
        // SCRIPT LOAD first: a pipelined EVALSHA cannot fall back to EVAL by itself.
        pipe.load_script(&SCRIPTS.enqueue).ignore();
        let mut calls = 0;
        for (chunk, chunk_bodies) in ids.chunks(MAX_BATCH).zip(bodies.chunks(MAX_BATCH)) {
            let mut inv = SCRIPTS.enqueue.key(&s.ready);
            inv.key(&s.wake).arg(&s.tag);
            for (id, body) in chunk.iter().zip(chunk_bodies) {
                inv.arg(*id).arg(body);
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
