//! Producing messages.

use std::borrow::Borrow;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::lane::check_lane_key;
use crate::queue::MAX_BATCH;
use crate::scripts::SCRIPTS;
use crate::{BulkOutcome, Lane, QueueError, Result, WorkQueue};

/// Script calls sent in one pipelined round trip by [`WorkQueue::enqueue_bulk`]: enough to
/// hide the round trip, few enough that one reply arrives well within a response timeout.
const CHUNKS_PER_ROUND_TRIP: usize = 10;

/// Tries of one round trip of a bulk enqueue before the error goes to the caller.
const BULK_TRIES: usize = 3;

/// One message of a bulk enqueue, ready for the script's arguments.
#[derive(Clone)]
struct Item<'a> {
    id: &'a str,
    lane: &'a str,
    priority: &'static str,
    body: String,
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(QueueError::InvalidArgument(
            "message id must not be empty".into(),
        ));
    }
    Ok(())
}

impl WorkQueue {
    /// Queues one message in the default lane unless a message with this id is already
    /// queued (in any state).
    ///
    /// Returns `true` if it was queued, `false` if it was there already (the call then
    /// changes nothing). Producers can therefore retry freely.
    ///
    /// # Errors
    /// An empty id, or Redis/pool failures.
    pub async fn enqueue(&self, id: &str, body: &serde_json::Value) -> Result<bool> {
        self.enqueue_in(&Lane::default(), id, body).await
    }

    /// [`enqueue`](Self::enqueue) into `lane` (its key and priority; see [`Lane`]).
    ///
    /// # Errors
    /// An empty id, a bad lane key, or Redis/pool failures.
    pub async fn enqueue_in(
        &self,
        lane: &Lane,
        id: &str,
        body: &serde_json::Value,
    ) -> Result<bool> {
        self.enqueue_raw_in(lane, id, &serde_json::to_string(body)?)
            .await
    }

    /// Like [`enqueue`](Self::enqueue) with an already-serialised body, stored as is.
    ///
    /// # Errors
    /// An empty id, or Redis/pool failures.
    pub async fn enqueue_raw(&self, id: &str, body: &str) -> Result<bool> {
        self.enqueue_raw_in(&Lane::default(), id, body).await
    }

    /// [`enqueue_raw`](Self::enqueue_raw) into `lane`.
    ///
    /// # Errors
    /// An empty id, a bad lane key, or Redis/pool failures.
    pub async fn enqueue_raw_in(&self, lane: &Lane, id: &str, body: &str) -> Result<bool> {
        check_id(id)?;
        check_lane_key(lane.key())?;
        // Keeps the count of shards in use raised to this handle's (read every 10 s).
        self.shards_in_use().await?;
        let s = self.shard(self.home_shard(id));
        let mut con = self.conn();
        let added: u64 = SCRIPTS
            .enqueue
            .key(&s.rota)
            .key(&s.wake)
            .arg(&s.tag)
            .arg(id)
            .arg(lane.key())
            .arg(lane.priority().code())
            .arg(body)
            .invoke_async(&mut con)
            .await?;
        metrics::counter!("pipeline_queue_enqueued_total", "family" => self.family().to_owned())
            .increment(added);
        Ok(added == 1)
    }

    /// Queues many messages in the default lane; see
    /// [`enqueue_bulk_in`](Self::enqueue_bulk_in).
    ///
    /// # Errors
    /// As [`enqueue_bulk_in`](Self::enqueue_bulk_in).
    pub async fn enqueue_bulk<S: AsRef<str>>(
        &self,
        items: &[(S, serde_json::Value)],
    ) -> Result<BulkOutcome> {
        let lane = Lane::default();
        let items: Vec<(&str, &Lane, &serde_json::Value)> = items
            .iter()
            .map(|(id, body)| (id.as_ref(), &lane, body))
            .collect();
        self.enqueue_bulk_in(&items).await
    }

    /// Queues many messages, each in its lane: chunks of at most [`MAX_BATCH`], each one
    /// atomic script call, several chunks pipelined per round trip.
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
    /// An empty id, a bad lane key, or Redis/pool failures that outlast the retries (some
    /// chunks may then be queued: call again to finish).
    pub async fn enqueue_bulk_in<S, L, V>(&self, items: &[(S, L, V)]) -> Result<BulkOutcome>
    where
        S: AsRef<str>,
        L: Borrow<Lane>,
        V: Borrow<serde_json::Value>,
    {
        // Each shard's messages go in that shard's own script calls (one slot each).
        let shards = usize::from(self.inner.opts.shards);
        let mut by_shard: Vec<Vec<Item<'_>>> = vec![Vec::new(); shards];
        for (id, lane, body) in items {
            let id = id.as_ref();
            let lane = lane.borrow();
            check_id(id)?;
            check_lane_key(lane.key())?;
            by_shard[usize::from(self.home_shard(id))].push(Item {
                id,
                lane: lane.key(),
                priority: lane.priority().code(),
                body: serde_json::to_string(body.borrow())?,
            });
        }
        self.shards_in_use().await?;
        let round_trip = MAX_BATCH * CHUNKS_PER_ROUND_TRIP;
        // The shards' round trips run side by side (on a cluster, different masters); each
        // shard's own round trips go one after the other.
        let per_shard = by_shard
            .iter()
            .enumerate()
            .map(|(shard, items)| async move {
                let shard = u16::try_from(shard).expect("below MAX_SHARDS");
                let mut outcome = BulkOutcome::default();
                for group in items.chunks(round_trip) {
                    let added = self.enqueue_round_trip(shard, group).await?;
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
    async fn enqueue_round_trip(&self, shard: u16, items: &[Item<'_>]) -> Result<u64> {
        let s = self.shard(shard);
        let mut pipe = redis::pipe();
        // SCRIPT LOAD first: a pipelined EVALSHA cannot fall back to EVAL by itself.
        pipe.load_script(&SCRIPTS.enqueue).ignore();
        let mut calls = 0;
        for chunk in items.chunks(MAX_BATCH) {
            let mut inv = SCRIPTS.enqueue.key(&s.rota);
            inv.key(&s.wake).arg(&s.tag);
            for item in chunk {
                inv.arg(item.id)
                    .arg(item.lane)
                    .arg(item.priority)
                    .arg(&item.body);
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
