//! Why a fetch failed, and whether retrying can help.

use std::time::Duration;

use pipeline_runner::Failure;

/// A failed fetch, classified: [`FetchError::is_transient`] tells the worker whether to retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Not an absolute http(s) URL with a host.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The host resolves to (or is) a private, loopback, link-local, multicast or otherwise
    /// non-public address that the configuration does not allow.
    #[error("blocked address: {0}")]
    BlockedAddress(String),
    /// robots.txt disallows the URL for our user agent.
    #[error("disallowed by robots.txt: {0}")]
    RobotsDisallowed(String),
    /// More redirects than allowed (loops end here too).
    #[error("too many redirects (more than {0})")]
    TooManyRedirects(usize),
    /// The server answered with an error status.
    #[error("HTTP {status}")]
    Status {
        /// The status code.
        status: u16,
        /// The server's Retry-After, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The media type is not in the allowed list.
    #[error("unsupported content type: {0}")]
    ContentType(String),
    /// The body is larger than the cap (declared or while streaming).
    #[error("body over the size cap of {0} bytes")]
    TooLarge(u64),
    /// Connecting, or the whole request, took too long.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The connection failed or broke (DNS failure, refused, reset).
    #[error("connection error: {0}")]
    Connect(String),
    /// The host's politeness limits did not free a slot in time.
    #[error("host busy: {0}")]
    HostBusy(String),
    /// The response was not a valid HTTP exchange we can use (e.g. a redirect without a
    /// usable Location).
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The HTTP client could not be built (a configuration problem).
    #[error("HTTP client: {0}")]
    Client(String),
}

impl FetchError {
    /// `true` when a later attempt may succeed: timeouts, connection errors, 5xx, 408, 429,
    /// a busy host.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::Connect(_) | Self::HostBusy(_) => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short stable word for metrics labels and event details.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidUrl(_) => "invalid_url",
            Self::BlockedAddress(_) => "blocked_address",
            Self::RobotsDisallowed(_) => "robots_disallowed",
            Self::TooManyRedirects(_) => "too_many_redirects",
            Self::Status { status, .. } if *status >= 500 => "http_5xx",
            Self::Status { status: 429, .. } => "http_429",
            Self::Status { .. } => "http_4xx",
            Self::ContentType(_) => "content_type",
            Self::TooLarge(_) => "too_large",
            Self::Timeout(_) => "timeout",
            Self::Connect(_) => "connect",
            Self::HostBusy(_) => "host_busy",
            Self::Malformed(_) => "malformed_response",
            Self::Client(_) => "client",
        }
    }

    /// The worker runner's view of this error.
    pub fn to_failure(&self) -> Failure {
        let message = self.to_string();
        if self.is_transient() {
            Failure::Transient {
                message,
                retry_after: self.retry_after(),
            }
        } else {
            Failure::Permanent { message }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        let status = |s| FetchError::Status {
            status: s,
            retry_after: None,
        };
        for s in [500, 502, 503, 429, 408] {
            assert!(status(s).is_transient(), "{s}");
        }
        for s in [400, 401, 403, 404, 410, 451] {
            assert!(!status(s).is_transient(), "{s}");
        }
        assert!(!FetchError::TooLarge(1).is_transient());
        assert!(!FetchError::BlockedAddress("x".into()).is_transient());
        assert!(FetchError::Timeout("x".into()).is_transient());
    }

    #[test]
    fn retry_after_reaches_the_failure() {
        let err = FetchError::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(
            err.to_failure(),
            Failure::Transient {
                message: "HTTP 429".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
    }
}
