//! Any OpenAI-compatible `/v1/embeddings` server: OpenAI, vLLM, TEI, Ollama, LiteLLM.
//!
//! A call is all-or-nothing: texts are sent in batches of at most `batch_size`, and any
//! failed batch fails the call, so a caller never stores half of a document's vectors.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::EmbedError;

/// Settings of an OpenAI-compatible backend. The API key is not here: it is a secret,
/// passed to [`OpenAiEmbedder::new`] separately (the daemon reads it from the environment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Base URL (`https://api.openai.com/v1`, `http://127.0.0.1:8000/v1`) or the full
    /// `.../embeddings` endpoint.
    pub url: String,
    /// Model name sent with each request and stored with each vector.
    pub model: String,
    /// Dimensions the model returns; a reply of another size is an error.
    pub dims: usize,
    /// Most texts per request.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Per-request timeout, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Send `dimensions` in the request (OpenAI `text-embedding-3-*` can shorten vectors;
    /// some other servers reject the field, so it is off unless asked for).
    #[serde(default)]
    pub send_dimensions: bool,
}

fn default_batch_size() -> usize {
    64
}

fn default_timeout_ms() -> u64 {
    30_000
}

/// Client of an OpenAI-compatible embeddings endpoint. Cheap to clone (shares one
/// connection pool).
#[derive(Clone)]
pub struct OpenAiEmbedder {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    model: String,
    dims: usize,
    batch_size: usize,
    send_dimensions: bool,
    api_key: Option<SecretString>,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("endpoint", &self.endpoint.as_str())
            .field("model", &self.model)
            .field("dims", &self.dims)
            .field("batch_size", &self.batch_size)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct Reply {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    embedding: Vec<f32>,
    #[serde(default)]
    index: Option<usize>,
}

impl OpenAiEmbedder {
    /// Builds the client.
    ///
    /// # Errors
    /// [`EmbedError::Config`] for a bad URL, zero dimensions or zero batch size.
    pub fn new(cfg: OpenAiConfig, api_key: Option<SecretString>) -> Result<Self, EmbedError> {
        if cfg.dims == 0 || cfg.batch_size == 0 {
            return Err(EmbedError::Config(
                "dims and batch_size must be at least 1".into(),
            ));
        }
        let base = cfg.url.trim_end_matches('/');
        let endpoint = if base.ends_with("/embeddings") {
            base.to_string()
        } else {
            format!("{base}/embeddings")
        };
        let endpoint = reqwest::Url::parse(&endpoint)
            .map_err(|e| EmbedError::Config(format!("embeddings URL {endpoint:?}: {e}")))?;
        ensure_crypto_provider();
        let timeout = Duration::from_millis(cfg.timeout_ms.max(1));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| EmbedError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            endpoint,
            model: cfg.model,
            dims: cfg.dims,
            batch_size: cfg.batch_size,
            send_dimensions: cfg.send_dimensions,
            api_key,
        })
    }

    /// The model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Configured vector length.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Most texts per request.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Embeds `texts`, one request per `batch_size` texts, in order.
    ///
    /// # Errors
    /// The first failing request's error; no partial result is returned.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            out.extend(self.request(batch).await?);
        }
        Ok(out)
    }

    async fn request(&self, batch: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let body = Request {
            model: &self.model,
            input: batch,
            dimensions: self.send_dimensions.then_some(self.dims),
        };
        let mut req = self.client.post(self.endpoint.clone()).json(&body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key.expose_secret());
        }
        let resp = req.send().await.map_err(transport_error)?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(EmbedError::Status {
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
            });
        }
        let bytes = resp.bytes().await.map_err(transport_error)?;
        let reply: Reply =
            serde_json::from_slice(&bytes).map_err(|e| EmbedError::InvalidReply(e.to_string()))?;
        self.validate(batch.len(), reply)
    }

    /// Puts the vectors in input order and checks count, indices and dimensions.
    fn validate(&self, expected: usize, reply: Reply) -> Result<Vec<Vec<f32>>, EmbedError> {
        if reply.data.len() != expected {
            return Err(EmbedError::Count {
                expected,
                got: reply.data.len(),
            });
        }
        let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
        for (pos, item) in reply.data.into_iter().enumerate() {
            // Servers that omit `index` answer in input order.
            let i = item.index.unwrap_or(pos);
            if item.embedding.len() != self.dims {
                return Err(EmbedError::Dimensions {
                    expected: self.dims,
                    got: item.embedding.len(),
                });
            }
            match slots.get_mut(i) {
                Some(slot @ None) => *slot = Some(item.embedding),
                _ => {
                    return Err(EmbedError::InvalidReply(format!(
                        "index {i} out of range or repeated"
                    )));
                }
            }
        }
        Ok(slots.into_iter().flatten().collect())
    }
}

fn transport_error(e: reqwest::Error) -> EmbedError {
    if e.is_timeout() {
        EmbedError::Timeout
    } else if e.is_connect() || e.is_request() || e.is_body() {
        EmbedError::Connect(error_chain(&e))
    } else if e.is_decode() {
        EmbedError::InvalidReply(error_chain(&e))
    } else {
        // Anything else at the transport level (a reset mid-reply) is worth a retry.
        EmbedError::Connect(error_chain(&e))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// reqwest is built without a default TLS crypto provider (the workspace picks ring), and
/// building a client without one panics. Install ring unless the process already chose.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a provider is then in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
