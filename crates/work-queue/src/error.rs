//! Errors of the work queue.

/// What can go wrong talking to the queue.
///
/// A fenced operation that finds its lease taken over is *not* an error: it returns
/// [`AckOutcome::LeaseLost`](crate::AckOutcome::LeaseLost) and friends, because losing a
/// lease is an expected outcome of at-least-once delivery, not a fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Redis answered with an error or the connection failed mid-command.
    #[error("Redis command failed")]
    Redis(#[from] redis::RedisError),
    /// No connection for a blocking wait could be checked out of the pool.
    #[error("could not check out a Redis connection for the wait")]
    Checkout(#[from] pipeline_redis::CheckoutError),
    /// A script answered with a shape this crate does not expect (version skew, or keys
    /// of the family written by something else).
    #[error("unexpected reply from Redis: {0}")]
    Protocol(String),
    /// The caller passed an argument the queue cannot accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The DLQ item could not be built or encoded.
    #[error("could not build the DLQ item")]
    Dlq(#[from] crate::dlq::DlqError),
    /// A value could not be turned into JSON.
    #[error("could not serialise to JSON")]
    Json(#[from] serde_json::Error),
}

impl QueueError {
    /// Whether trying the same call again later may succeed (connection trouble,
    /// timeouts, a Redis that is loading or failing over), as opposed to a bug or bad input.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Redis(e) => redis_is_transient(e),
            // Redis unreachable, or the connection failed its health check.
            Self::Checkout(_) => true,
            Self::Protocol(_) | Self::InvalidArgument(_) | Self::Dlq(_) | Self::Json(_) => false,
        }
    }
}

fn redis_is_transient(e: &redis::RedisError) -> bool {
    // The client library already sorts server replies into "retry" and "do not retry";
    // BUSY (another script is running long) is only an extension code to it, but waiting
    // is exactly what helps there.
    !matches!(e.retry_method(), redis::RetryMethod::NoRetry) || e.code() == Some("BUSY")
}

/// Shorthand for results of this crate.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;
