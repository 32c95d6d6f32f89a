//! Errors of embedding, classified for retries.

/// Why an embedding call failed.
///
/// `Clone`, because a [`crate::Batcher`] hands the one error of a batch to every caller
/// whose texts were in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The server answered with a non-success status.
    #[error("embedding server answered {status}: {body}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// The start of the reply body, for the operator.
        body: String,
    },
    /// No reply within the configured timeout.
    #[error("embedding request timed out")]
    Timeout,
    /// The server could not be reached (refused, reset, DNS).
    #[error("cannot reach embedding server: {0}")]
    Connect(String),
    /// The reply did not have one vector per input.
    #[error("embedding server returned {got} vectors for {expected} inputs")]
    Count {
        /// Inputs sent.
        expected: usize,
        /// Vectors received.
        got: usize,
    },
    /// A vector had the wrong number of dimensions.
    #[error("embedding server returned {got} dimensions, expected {expected}")]
    Dimensions {
        /// Configured dimensions.
        expected: usize,
        /// Dimensions of the vector received.
        got: usize,
    },
    /// The reply was not the expected JSON (or its indices were not 0..n).
    #[error("invalid reply from embedding server: {0}")]
    InvalidReply(String),
    /// The embedder is misconfigured (bad URL, zero dimensions).
    #[error("embedder configuration: {0}")]
    Config(String),
    /// The in-process model failed on this input (tokenizer or forward pass).
    #[error("embedding model: {0}")]
    Model(String),
    /// The batcher task is gone (the runtime is shutting down).
    #[error("embedding batcher has stopped")]
    BatcherClosed,
}

impl EmbedError {
    /// Whether retrying later may succeed: rate limiting (429), server errors (5xx),
    /// timeouts, unreachable servers and a stopped batcher. Other 4xx, malformed replies
    /// and configuration errors are permanent: the same request would fail the same way.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 429 || (500..600).contains(status),
            Self::Timeout | Self::Connect(_) | Self::BatcherClosed => true,
            Self::Count { .. }
            | Self::Dimensions { .. }
            | Self::InvalidReply(_)
            | Self::Model(_)
            | Self::Config(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let status = |s| EmbedError::Status {
            status: s,
            body: String::new(),
        };
        assert!(status(429).is_transient());
        assert!(status(500).is_transient());
        assert!(status(503).is_transient());
        assert!(!status(400).is_transient());
        assert!(!status(401).is_transient());
        assert!(!status(404).is_transient());
        assert!(EmbedError::Timeout.is_transient());
        assert!(EmbedError::Connect("refused".into()).is_transient());
        assert!(
            !EmbedError::Count {
                expected: 2,
                got: 1
            }
            .is_transient()
        );
        assert!(
            !EmbedError::Dimensions {
                expected: 2,
                got: 1
            }
            .is_transient()
        );
    }
}
