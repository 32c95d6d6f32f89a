//! An at-least-once work queue on Redis, shared by the pipeline's workers.
//!
//! A *family* (`scrape`, `extraction`, ...) is one queue plus its dead-letter queue; the
//! key names come from `dlq-core`'s [`FamilyKeys`], and every key of a family carries the
//! same Redis Cluster hash tag, so each operation below is one Lua script on one slot.
//!
//! Life of a message:
//!
//! ```text
//!             enqueue                    ack
//!                │                ┌──────────────► gone
//!                ▼     reserve    │
//!   ┌────────► ready ──────────► leased ── dead_letter, or last retry ──► DLQ
//!   │            ▲                │                                      │
//!   │            └── lease ran ───┘ retry_later                          │
//!   │                out            ▼                                    │
//!   │                           delayed ── backoff passed ──► ready      │
//!   └──────────────────────────── redrive (dlq-core) ────────────────────┘
//! ```
//!
//! * **Leases.** [`WorkQueue::reserve`] gives each message a fresh token and a deadline
//!   on the Redis clock. Long work calls [`WorkQueue::renew`], or holds the
//!   [`LeaseKeeper`] of [`WorkQueue::keep_alive`], which renews in the background. When
//!   a holder dies, the next reserve of any worker moves the expired lease back to `ready`.
//! * **Fencing.** Ack, renew, retry and dead-letter compare the holder's token with the
//!   message's; a holder whose lease ran out gets `LeaseLost` and changes nothing.
//! * **Retries.** [`WorkQueue::retry_later`] counts the failed attempt and delays the
//!   message by an exponential backoff with jitter, until `max_attempts`, then
//!   dead-letters it as transient. [`WorkQueue::dead_letter`] skips the retries.
//! * **Malformed messages** reach the worker with their raw body
//!   ([`Delivery::body`]) so the worker can dead-letter them as permanent.
//!
//! ```no_run
//! # async fn demo(pool: work_queue::RedisPool) -> Result<(), work_queue::QueueError> {
//! use tokio_util::sync::CancellationToken;
//! use work_queue::{ErrorKind, FamilyKeys, QueueOptions, WorkQueue};
//!
//! let queue = WorkQueue::new(pool, FamilyKeys::new("pipeline:", "scrape"), QueueOptions::default())?;
//! queue.enqueue("source-1", &serde_json::json!({"source_id": "..."})).await?;
//!
//! let shutdown = CancellationToken::new();
//! for delivery in queue.reserve_wait(10, &shutdown).await? {
//!     let Ok(message) = delivery.json() else {
//!         let _ = queue.dead_letter(&delivery, "malformed message", ErrorKind::Permanent).await?;
//!         continue;
//!     };
//!     // ... do the work with `message` ...
//!     # let _ = message;
//!     let _ = queue.ack(&delivery).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! This crate reads no environment variables; its settings are [`QueueOptions`].

mod delivery;
mod enqueue;
mod error;
mod keep_alive;
mod lane;
mod options;
mod queue;
mod reserve;
mod scripts;
mod settle;
mod wait;

pub(crate) use dlq_core as dlq;

pub use delivery::{
    AckOutcome, BulkOutcome, DeadLetterOutcome, Delivery, QueueDepth, RetryOutcome,
};
pub use dlq::{DlqItem, ErrorKind, FamilyKeys, RedisPool, build_pool};
pub use error::{QueueError, Result};
pub use keep_alive::{Held, LeaseKeeper};
pub use lane::{
    DEFAULT_PRIORITY_LEAD, Lane, LaneDepth, LaneLimits, LaneState, MAX_LANE_KEY, MAX_LANES_LISTED,
    Priority,
};
pub use options::QueueOptions;
pub use pipeline_redis::{MAX_SHARDS, shard_of};
pub use queue::{MAX_BATCH, WorkQueue};
pub use settle::MAX_ERROR_BYTES;
pub use wait::Waiter;
