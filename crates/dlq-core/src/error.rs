//! The crate's error type.

/// What can go wrong in a DLQ operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DlqError {
    /// Redis answered with an error or the connection failed.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// The pool could not be built (bad URL, bad configuration).
    #[error("cannot build the redis pool: {0}")]
    PoolBuild(String),
    /// An item could not be encoded or decoded as JSON.
    #[error("serialization error: {0}")]
    Serialization(#[from] serde_json::Error),
    /// A list limit outside `1..=1000` (an HTTP API maps this to 422).
    #[error("limit must be between 1 and {max}, got {got}", max = crate::MAX_LIST_LIMIT)]
    InvalidLimit {
        /// The limit that was asked for.
        got: usize,
    },
    /// A cursor that this crate did not hand out.
    #[error("invalid cursor: {0:?}")]
    InvalidCursor(String),
    /// An argument that makes no sense (empty id, zero rate, negative age...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The stored entry for this id cannot be parsed; it was left in place (see
    /// [`crate::Dlq::discard`] to remove it).
    #[error("malformed DLQ entry {id:?}: {reason}")]
    Malformed {
        /// Item id.
        id: String,
        /// The stored item text, if any.
        raw: Option<String>,
        /// Why it could not be parsed.
        reason: String,
    },
    /// A script answered in a shape this crate does not expect (a version mismatch).
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
}

/// Result alias for DLQ operations.
pub type Result<T, E = DlqError> = std::result::Result<T, E>;
