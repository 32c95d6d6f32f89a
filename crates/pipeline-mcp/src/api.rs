//! The pipeline's HTTP API as the MCP server sees it: a small `reqwest` client that sends the
//! caller's key as `X-API-Key`, reads answers up to a size cap, and turns an error answer
//! into its `{"detail"}` message.
//!
//! Every tool goes through here, so the API validates every input with the same code it uses
//! for its other clients, and its key rules apply unchanged.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

/// Largest API answer read, in bytes. A source's Markdown is cut by the API at 8 MiB, and
/// its JSON escaping can grow it; anything longer is refused rather than buffered.
pub const MAX_ANSWER_BYTES: usize = 24 * 1024 * 1024;

/// Time for one API request, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an API call gave no answer to use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The API answered with an error status; `detail` is its `{"detail"}` message (or the
    /// start of the body when it was not JSON).
    #[error("the pipeline API answered {status}: {detail}")]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// The API's message.
        detail: String,
    },
    /// No answer (connection refused, timeout, a broken body).
    #[error("the pipeline API at {base} could not be reached: {cause}")]
    Transport {
        /// The API's base URL.
        base: String,
        /// What went wrong, with its causes ("connection refused" is a cause of reqwest's
        /// error, not part of its message).
        cause: String,
    },
    /// The answer was longer than [`MAX_ANSWER_BYTES`].
    #[error("the pipeline API's answer was longer than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    /// The answer was not JSON.
    #[error("the pipeline API's answer was not JSON: {0}")]
    NotJson(serde_json::Error),
}

impl ApiError {
    /// Whether the request itself was at fault (4xx): the message tells the caller what to
    /// change.
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::Status { status, .. } if status.is_client_error())
    }
}

/// A client of the pipeline API at one base URL.
#[derive(Clone, Debug)]
pub struct ApiClient {
    base: Url,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client of the API at `base` (`http://127.0.0.1:8742`; a path prefix is kept).
    pub fn new(base: Url) -> anyhow::Result<Self> {
        // reqwest is built without a TLS provider of its own; the workspace uses ring. A
        // provider installed earlier (ring too, in this workspace) is fine, hence the
        // ignored result.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("pipeline-mcp/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { base, http })
    }

    /// The API's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The URL of `segments` (each percent-encoded as one path segment) under `/api/v1`.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            // A base URL that cannot be a base was refused when the settings were parsed.
            let mut path = url
                .path_segments_mut()
                .expect("an http(s) base URL has path segments");
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        url
    }

    /// GET `/api/v1/<segments>?<query>`.
    pub async fn get(
        &self,
        key: Option<&SecretString>,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value, ApiError> {
        self.call(Method::GET, key, segments, query, None).await
    }

    /// POST `/api/v1/<segments>?<query>` with an optional JSON body.
    pub async fn post(
        &self,
        key: Option<&SecretString>,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        self.call(Method::POST, key, segments, query, body).await
    }

    async fn call(
        &self,
        method: Method,
        key: Option<&SecretString>,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let mut url = self.url(segments);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut req = self.http.request(method, url);
        if let Some(key) = key {
            req = req.header("X-API-Key", key.expose_secret());
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let transport = |err: reqwest::Error| ApiError::Transport {
            base: self.base.to_string(),
            cause: cause_chain(&err),
        };
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(ApiError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(ApiError::Status {
                status,
                detail: detail_of(&bytes),
            });
        }
        serde_json::from_slice(&bytes).map_err(ApiError::NotJson)
    }
}

/// An error and its causes, `: `-separated.
fn cause_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The `detail` of an error body, or its first 500 characters when it is not the API's
/// `{"detail"}` JSON.
fn detail_of(body: &[u8]) -> String {
    if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body)
        && let Some(Value::String(detail)) = obj.get("detail")
    {
        return detail.clone();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(no message)".to_owned();
    }
    text.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_a_prefix_and_encode_segments() {
        let api = ApiClient::new("http://127.0.0.1:8742".parse().unwrap()).unwrap();
        assert_eq!(
            api.url(&["jobs", "x"]).as_str(),
            "http://127.0.0.1:8742/api/v1/jobs/x"
        );
        let api = ApiClient::new("https://example.org/pipeline/".parse().unwrap()).unwrap();
        assert_eq!(
            api.url(&["dlq", "scrape", "a/b?c"]).as_str(),
            "https://example.org/pipeline/api/v1/dlq/scrape/a%2Fb%3Fc"
        );
    }

    #[test]
    fn detail_is_read_from_the_error_body() {
        assert_eq!(detail_of(br#"{"detail":"no such job"}"#), "no such job");
        assert_eq!(detail_of(b"Bad Gateway"), "Bad Gateway");
        assert_eq!(detail_of(b""), "(no message)");
        assert_eq!(detail_of(&[b'x'; 2000]).len(), 500);
    }
}
