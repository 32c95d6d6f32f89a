//! What the queue hands out and what its operations report.

use std::time::Duration;

use serde::de::DeserializeOwned;

/// A reserved message: the holder owns it until its lease runs out, and proves that with
/// `token` on every ack, renew, retry or dead-letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The producer's message id (the pipeline uses the source id).
    pub id: String,
    /// Lease token of this delivery; a later delivery of the same message gets another.
    pub token: u64,
    /// The message body as stored: normally JSON, but kept raw so that a malformed
    /// message still reaches the worker, which dead-letters it as permanent instead of
    /// the consumer failing on it over and over. Empty when the stored message had no body.
    pub body: String,
    /// Times this message was reserved, this delivery included (cumulative across lease
    /// expiries and retries, reset by a redrive from the DLQ).
    pub deliveries: u32,
    /// Failed attempts before this delivery, in this life of the message.
    pub attempts: u32,
    /// Times the message came back from the DLQ.
    pub redrives: u32,
    /// The shard the message was reserved from (ack, renew, retry and dead-letter go there).
    pub shard: u16,
}

impl Delivery {
    /// The [`body`](Self::body) for bytes as stored in the message hash: anything a
    /// producer wrote, so bytes that are not UTF-8 are replaced (U+FFFD) rather than
    /// refused, and the message still reaches the worker to be judged.
    pub fn body_from_stored(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// The body as a JSON value.
    ///
    /// # Errors
    /// When the body is not valid JSON: the message is malformed and should be
    /// dead-lettered as permanent.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.body)
    }

    /// The body parsed into the worker's message type.
    ///
    /// # Errors
    /// When the body does not parse as `T`: the message is malformed.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.body)
    }
}

/// Result of an ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum AckOutcome {
    /// The message is done and gone from the queue.
    Acked,
    /// The lease had run out and the message went back to the queue (another worker may
    /// hold it now); nothing was changed.
    LeaseLost,
}

/// Result of a transient failure reported with [`retry_later`](crate::WorkQueue::retry_later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum RetryOutcome {
    /// The message waits in the delayed set and becomes deliverable after `delay`.
    Scheduled {
        /// Failed attempts so far, this one included.
        attempts: u32,
        /// The backoff chosen for this retry.
        delay: Duration,
    },
    /// That was the last allowed attempt: the message went to the DLQ as transient.
    DeadLettered {
        /// Failed attempts, this one included.
        attempts: u32,
    },
    /// The lease had run out; nothing was changed.
    LeaseLost,
}

/// Result of [`dead_letter`](crate::WorkQueue::dead_letter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum DeadLetterOutcome {
    /// The message left the queue and its DLQ now holds it.
    DeadLettered,
    /// The lease had run out; nothing was changed.
    LeaseLost,
}

/// Result of [`enqueue_bulk`](crate::WorkQueue::enqueue_bulk).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkOutcome {
    /// Messages newly queued.
    pub enqueued: u64,
    /// Ids that were queued already (or repeated within the call) and were left alone.
    pub already_queued: u64,
}

/// How many messages are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Waiting to be reserved.
    pub ready: u64,
    /// Held by a worker (or held by one that died, until housekeeping reclaims it).
    pub leased: u64,
    /// Waiting for a retry's backoff to pass.
    pub delayed: u64,
}

impl QueueDepth {
    /// Messages in the queue in any state.
    pub fn total(&self) -> u64 {
        self.ready + self.leased + self.delayed
    }
}
