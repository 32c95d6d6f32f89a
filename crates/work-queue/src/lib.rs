//! An at-least-once work queue on Redis, shared by the pipeline's workers.
//!
//! A *family* (`scrape`, `extraction`, ...) is one queue plus its dead-letter queue; the
//! key names come from `dlq-core`'s `FamilyKeys`, and every key of a family carries the
//! same Redis Cluster hash tag, so each operation below is one Lua script on one slot.
//!
//! Life of a message:
//!
//! ```text
//! enqueue ──► ready ──reserve──► leased ──ack──► gone
//!               ▲                 │  │
//!               │ lease ran out   │  └─dead_letter / last retry──► DLQ ──redrive──► ready
//!               ├─────────────────┘
//!               │ backoff passed
//!            delayed ◄──retry_later──┘
//! ```
//!
//! * **Leases.** [`WorkQueue::reserve`] gives each message a fresh token and a deadline
//!   on the Redis clock. Long work calls [`WorkQueue::renew`]. When a holder dies, the
//!   next reserve of any worker moves the expired lease back to `ready`.
//! * **Fencing.** Ack, renew, retry and dead-letter compare the holder's token with the
//!   message's; a holder whose lease ran out gets `LeaseLost` and changes nothing.
//! * **Retries.** [`WorkQueue::retry_later`] counts the failed attempt and delays the
//!   message by an exponential backoff with jitter, until `max_attempts`, then
//!   dead-letters it as transient. [`WorkQueue::dead_letter`] skips the retries.
//! * **Malformed messages** reach the worker with their raw body
//!   ([`Delivery::body`]) so the worker can dead-letter them as permanent.
//!
//! This crate reads no environment variables; its settings are [`QueueOptions`].

mod delivery;
mod enqueue;
mod error;
mod options;
mod queue;
mod reserve;
mod scripts;
mod settle;

pub(crate) use dlq_core as dlq;

pub use delivery::{
    AckOutcome, BulkOutcome, DeadLetterOutcome, Delivery, QueueDepth, RetryOutcome,
};
pub use dlq::{DlqItem, ErrorKind, FamilyKeys};
pub use error::{QueueError, Result};
pub use options::QueueOptions;
pub use queue::{MAX_BATCH, WorkQueue};
