//! The daemon's error type.

/// A sweep's failure. Every variant is worth retrying on the next sweep: the daemon logs it
/// with its cause chain and backs off.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequeueError {
    /// The DLQ refused (Redis down, script error).
    #[error(transparent)]
    Dlq(#[from] dlq_core::DlqError),
    /// The work queue refused.
    #[error(transparent)]
    Queue(#[from] work_queue::QueueError),
    /// Postgres failed.
    #[error(transparent)]
    Store(#[from] pipeline_store::StoreError),
    /// A Redis command of the daemon's own (clock, rate limiter) failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}
