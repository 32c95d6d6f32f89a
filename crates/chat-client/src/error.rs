//! Errors of a chat completion, classified for retries.

use std::time::Duration;

use crate::Usage;

/// Why a chat completion failed, in the three classes a caller acts on differently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// Retrying later may succeed: rate limiting (429), server errors (5xx), 408, a
    /// timeout, an unreachable server or a connection lost mid-reply.
    #[error("chat server unavailable: {message}")]
    Transient {
        /// What happened, for the operator.
        message: String,
        /// How long the server asked to wait (`retry-after-ms`, else `Retry-After` in
        /// seconds or as an HTTP date; capped at a day), when it said.
        retry_after: Option<Duration>,
    },
    /// The same request would fail the same way: the server rejected it (400, 401, 403,
    /// 404, 422 and other 4xx) or the client is misconfigured.
    #[error("chat request rejected{}: {message}", status.map(|s| format!(" ({s})")).unwrap_or_default())]
    Permanent {
        /// HTTP status, when the server answered; `None` for a configuration error.
        status: Option<u16>,
        /// What happened, with the start of the server's error body.
        message: String,
    },
    /// The server answered 200 but the answer is unusable: not JSON, cut short at the
    /// token limit (`finish_reason` `length`), no choices, a refusal, or a reply larger
    /// than the configured cap. A retry may or may not help (sampling differs per call;
    /// a truncated answer needs a larger `max_tokens` or a smaller input).
    #[error("unusable answer from chat server: {message}")]
    Malformed {
        /// What is wrong with the answer.
        message: String,
        /// The answer's content as received (for an oversized or unparsable reply, the
        /// start of the body), for the operator and for debugging prompts.
        answer: String,
        /// Tokens the server reports for the call, when it reported them: a malformed
        /// answer still costs them.
        usage: Option<Usage>,
    },
}

impl ChatError {
    /// Whether retrying later may succeed (only [`ChatError::Transient`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// How long the server asked to wait before retrying, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after, .. } => *retry_after,
            Self::Permanent { .. } | Self::Malformed { .. } => None,
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::Permanent {
            status: None,
            message: message.into(),
        }
    }

    pub(crate) fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// Whether an HTTP error status is worth a retry: 408 and 429 (the server or a proxy is
/// busy) and every 5xx. Everything else is the request's fault.
pub(crate) fn status_is_transient(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

/// `Retry-After` as delta-seconds or an HTTP date, capped at a day (a longer wait is a
/// misconfigured server, not advice worth holding a job for).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    const DAY: Duration = Duration::from_secs(86_400);
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else if let Ok(secs) = value.parse::<f64>() {
        // Not what RFC 9110 allows, but some proxies send fractions; take them rather
        // than drop the hint.
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        Duration::try_from_secs_f64(secs).unwrap_or(DAY)
    } else {
        let when = httpdate::parse_http_date(value).ok()?;
        // A date in the past means "now".
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
    };
    Some(wait.min(DAY))
}

/// `retry-after-ms`: milliseconds, possibly fractional, capped at a day like `Retry-After`.
pub(crate) fn parse_retry_after_ms(value: &str) -> Option<Duration> {
    let ms = value.trim().parse::<f64>().ok()?;
    if !ms.is_finite() || ms < 0.0 {
        return None;
    }
    let wait = Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX);
    Some(wait.min(Duration::from_secs(86_400)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn classification() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(status_is_transient(s), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 413, 422] {
            assert!(!status_is_transient(s), "{s}");
        }
        let t = ChatError::Transient {
            message: "x".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(t.is_transient());
        assert_eq!(t.retry_after(), Some(Duration::from_secs(3)));
        let p = ChatError::config("bad url");
        assert!(!p.is_transient());
        assert_eq!(p.retry_after(), None);
        assert_eq!(p.to_string(), "chat request rejected: bad url");
        let p = ChatError::Permanent {
            status: Some(401),
            message: "no key".into(),
        };
        assert_eq!(p.to_string(), "chat request rejected (401): no key");
    }

    #[test]
    fn retry_after_ms() {
        assert_eq!(
            parse_retry_after_ms("1500"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after_ms("20.5"),
            Some(Duration::from_micros(20_500))
        );
        assert_eq!(parse_retry_after_ms("x"), None);
        assert_eq!(parse_retry_after_ms("-3"), None);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            parse_retry_after("99999999"),
            Some(Duration::from_secs(86_400))
        );
        let later = SystemTime::now() + Duration::from_secs(120);
        let got = parse_retry_after(&httpdate::fmt_http_date(later)).expect("date");
        assert!(got > Duration::from_secs(100) && got <= Duration::from_secs(120));
        let past = SystemTime::now() - Duration::from_secs(120);
        assert_eq!(
            parse_retry_after(&httpdate::fmt_http_date(past)),
            Some(Duration::ZERO)
        );
    }
}
