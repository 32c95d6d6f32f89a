//! The client: settings, request, answer and the HTTP exchange.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_LENGTH, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::answer::{excerpt, parse_completion};
use crate::error::{parse_retry_after, parse_retry_after_ms, status_is_transient};
use crate::{ChatError, MESSAGE_OVERHEAD_TOKENS, estimate_tokens};

/// Default cap on a reply body: far above any JSON answer a model writes within a sane
/// `max_tokens`, far below what would hurt a worker holding several replies at once.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Default per-request timeout: a local model writing a long JSON answer takes tens of
/// seconds, and a request queued behind others on a busy server more.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How much of an error reply is read: enough for the server's message, bounded so a
/// proxy's error page cannot cost memory.
const ERROR_BODY_CAP: usize = 64 * 1024;

/// The millisecond form of `Retry-After` OpenAI-style APIs send alongside it.
const RETRY_AFTER_MS: &str = "retry-after-ms";

/// How much of the server's error body an error message quotes.
const ERROR_EXCERPT_CHARS: usize = 300;

/// How the server is asked for JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// `{"type":"json_schema", "json_schema": {"name", "strict": true, "schema"}}`: the
    /// server constrains decoding to the schema (OpenAI, vLLM, llama.cpp's server, recent
    /// Ollama, LiteLLM passing it on).
    #[default]
    JsonSchema,
    /// `{"type":"json_object"}` and the schema in the system prompt: the server guarantees
    /// JSON, the model is only asked to follow the schema (servers without `json_schema`).
    JsonObject,
    /// No `response_format` at all, the schema in the system prompt: for servers that
    /// reject the field; the answer may come wrapped in a code fence, which is stripped.
    None,
}

impl ResponseFormat {
    /// The setting's name: `json_schema`, `json_object` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JsonSchema => "json_schema",
            Self::JsonObject => "json_object",
            Self::None => "none",
        }
    }
}

impl fmt::Display for ResponseFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResponseFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "json_schema" => Ok(Self::JsonSchema),
            "json_object" => Ok(Self::JsonObject),
            "none" => Ok(Self::None),
            other => Err(format!(
                "response_format {other:?}: expected json_schema, json_object or none"
            )),
        }
    }
}

/// Settings of a [`ChatClient`].
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Base URL of the OpenAI-compatible API, e.g. `http://127.0.0.1:8000/v1`; the client
    /// posts to `{url}/chat/completions` (a URL already ending in `/chat/completions` is
    /// used as it is).
    pub url: String,
    /// Model name sent with each request (the server's name for it: vLLM's
    /// `--served-model-name`, an Ollama tag, an OpenAI model id).
    pub model: String,
    /// Sent as `Authorization: Bearer` when set; never logged.
    pub api_key: Option<SecretString>,
    /// Whole-request timeout (connect, wait, and reading the reply).
    pub timeout: Duration,
    /// How the server is asked for JSON.
    pub response_format: ResponseFormat,
    /// Sampling temperature; `None` leaves it to the server.
    pub temperature: Option<f32>,
    /// Most bytes of reply body read; a larger reply is [`ChatError::Malformed`].
    pub max_answer_bytes: usize,
}

impl ChatConfig {
    /// Settings for `model` at `url` with the defaults: no key, [`DEFAULT_TIMEOUT`],
    /// `json_schema`, the server's temperature, [`DEFAULT_MAX_ANSWER_BYTES`].
    pub fn new(url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            model: model.into(),
            api_key: None,
            timeout: DEFAULT_TIMEOUT,
            response_format: ResponseFormat::default(),
            temperature: None,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
        }
    }
}

/// A local vLLM's address (`http://127.0.0.1:8000/v1`) and the defaults of
/// [`ChatConfig::new`], with no model name: [`ChatClient::new`] refuses an empty one, so
/// `..ChatConfig::default()` only fills in the optional settings.
impl Default for ChatConfig {
    fn default() -> Self {
        Self::new("http://127.0.0.1:8000/v1", "")
    }
}

/// One request: prompts and the schema the answer must follow.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The system prompt (instructions).
    pub system: String,
    /// The user prompt (the material).
    pub user: String,
    /// The schema's name in `json_schema` mode (OpenAI allows `[A-Za-z0-9_-]`, at most
    /// 64 characters).
    pub schema_name: String,
    /// The JSON Schema of the answer (an object).
    pub json_schema: Value,
    /// Most tokens of answer; `None` leaves it to the server.
    pub max_tokens: Option<u32>,
}

impl ChatRequest {
    /// Estimated prompt tokens of this request as the client sends it in `format`:
    /// both messages, their overhead, and the schema (which costs tokens in the prompt in
    /// `json_object` and `none` modes, and in the grammar's instructions in most
    /// `json_schema` servers too, so it is always counted).
    pub fn estimate_prompt_tokens(&self, format: ResponseFormat) -> u32 {
        let schema = self.json_schema.to_string();
        let mut total = estimate_tokens(&self.system)
            .saturating_add(estimate_tokens(&self.user))
            .saturating_add(estimate_tokens(&schema))
            .saturating_add(2 * MESSAGE_OVERHEAD_TOKENS);
        if format != ResponseFormat::JsonSchema {
            total = total.saturating_add(estimate_tokens(SCHEMA_PREAMBLE));
        }
        total
    }
}

/// Token counts of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt (messages, template, schema).
    pub prompt_tokens: u64,
    /// Tokens of the answer.
    pub completion_tokens: u64,
    /// Their sum, as the server reports it.
    pub total_tokens: u64,
}

/// A usable answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatAnswer {
    /// The answer's text as the server sent it (fences and all).
    pub content: String,
    /// The content parsed as JSON (after stripping a code fence or a leading reasoning
    /// block). Only known to be JSON: not checked against the schema.
    pub value: Value,
    /// Token counts: the server's, or an estimate when it reported none.
    pub usage: Usage,
    /// Whether `usage` is the client's estimate ([`estimate_tokens`]) because the reply
    /// had no usage.
    pub usage_estimated: bool,
    /// Why the model stopped (`stop` for a complete answer), as the server said.
    pub finish_reason: Option<String>,
    /// The model that answered, as the server names it (the configured name when the
    /// reply omits it).
    pub model: String,
}

/// What precedes the schema when it goes in the system prompt.
const SCHEMA_PREAMBLE: &str =
    "Answer with a single JSON value, and nothing else, that conforms to this JSON Schema:";

/// Client of one OpenAI-compatible chat-completions endpoint. Cheap to clone (shares one
/// connection pool); safe to call from many tasks at once.
#[derive(Clone)]
pub struct ChatClient {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    model: String,
    api_key: Option<SecretString>,
    response_format: ResponseFormat,
    temperature: Option<f32>,
    max_answer_bytes: usize,
}

impl fmt::Debug for ChatClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("model", &self.model)
            .field("response_format", &self.response_format)
            .field("temperature", &self.temperature)
            .field("max_answer_bytes", &self.max_answer_bytes)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl ChatClient {
    /// Builds the client.
    ///
    /// # Errors
    /// [`ChatError::Permanent`] (no status) for a URL that is not http(s), an empty model
    /// name, a zero timeout or body cap, or a temperature outside 0..=2.
    pub fn new(cfg: ChatConfig) -> Result<Self, ChatError> {
        if cfg.model.trim().is_empty() {
            return Err(ChatError::config("chat model name is empty"));
        }
        if cfg.timeout.is_zero() {
            return Err(ChatError::config("chat timeout must be above zero"));
        }
        if cfg.max_answer_bytes == 0 {
            return Err(ChatError::config("max_answer_bytes must be above zero"));
        }
        if let Some(t) = cfg.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ChatError::config(format!("temperature {t} outside 0..=2")));
        }
        let base = cfg.url.trim().trim_end_matches('/');
        let endpoint = if base.ends_with("/chat/completions") {
            base.to_string()
        } else {
            format!("{base}/chat/completions")
        };
        let endpoint = reqwest::Url::parse(&endpoint)
            .map_err(|e| ChatError::config(format!("chat URL {endpoint:?}: {e}")))?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(ChatError::config(format!(
                "chat URL {:?}: scheme must be http or https",
                endpoint.as_str()
            )));
        }
        ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| ChatError::config(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            endpoint,
            model: cfg.model,
            api_key: cfg.api_key,
            response_format: cfg.response_format,
            temperature: cfg.temperature,
            max_answer_bytes: cfg.max_answer_bytes,
        })
    }

    /// The configured model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The endpoint requests go to (`…/chat/completions`).
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// How the server is asked for JSON.
    pub fn response_format(&self) -> ResponseFormat {
        self.response_format
    }

    /// The request body this client sends for `req` (what [`Self::complete`] posts).
    pub fn request_body(&self, req: &ChatRequest) -> Value {
        let system = match self.response_format {
            ResponseFormat::JsonSchema => req.system.clone(),
            // Without schema-constrained decoding the model only learns the schema from
            // the prompt.
            ResponseFormat::JsonObject | ResponseFormat::None => format!(
                "{}\n\n{SCHEMA_PREAMBLE}\n{}",
                req.system.trim_end(),
                req.json_schema
            ),
        };
        let mut body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": req.user},
            ],
        });
        match self.response_format {
            ResponseFormat::JsonSchema => {
                body["response_format"] = json!({
                    "type": "json_schema",
                    "json_schema": {
                        "name": req.schema_name,
                        "strict": true,
                        "schema": req.json_schema,
                    },
                });
            }
            ResponseFormat::JsonObject => {
                body["response_format"] = json!({"type": "json_object"});
            }
            ResponseFormat::None => {}
        }
        if let Some(max) = req.max_tokens {
            // `max_tokens` rather than `max_completion_tokens`: every compatible server
            // reads it, while the newer name is OpenAI-only for now.
            body["max_tokens"] = json!(max);
        }
        if let Some(t) = self.temperature {
            body["temperature"] = json!(t);
        }
        body
    }

    /// Sends `req` and returns the answer parsed as JSON.
    ///
    /// # Errors
    /// [`ChatError::Transient`] when a retry later may succeed (429, 408, 5xx, timeout,
    /// connection), [`ChatError::Permanent`] when the server rejects the request, and
    /// [`ChatError::Malformed`] when it answers 200 with something unusable.
    pub async fn complete(&self, req: &ChatRequest) -> Result<ChatAnswer, ChatError> {
        let body = self.request_body(req);
        let started = Instant::now();
        let mut http = self.client.post(self.endpoint.clone()).json(&body);
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key.expose_secret());
        }
        let resp = http.send().await.map_err(transport_error)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(status_error(resp).await);
        }
        let bytes = read_capped(resp, self.max_answer_bytes).await?;
        let answer = parse_completion(
            &bytes,
            &self.model,
            req.estimate_prompt_tokens(self.response_format),
        );
        tracing::debug!(
            model = %self.model,
            schema = %req.schema_name,
            reply_bytes = bytes.len(),
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ok = answer.is_ok(),
            "chat completion"
        );
        answer
    }
}

/// The error for a non-success status, with the start of the server's message.
async fn status_error(resp: reqwest::Response) -> ChatError {
    let status = resp.status().as_u16();
    let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok());
    // OpenAI and Azure send the wait in milliseconds too, more precisely than Retry-After's
    // whole seconds; prefer it when present.
    let retry_after = header(RETRY_AFTER_MS)
        .and_then(parse_retry_after_ms)
        .or_else(|| header(RETRY_AFTER.as_str()).and_then(parse_retry_after));
    // A body that fails or overflows mid-read still leaves the status to classify by.
    let body = match read_capped(resp, ERROR_BODY_CAP).await {
        Ok(bytes) => error_message(&bytes),
        Err(_) => String::new(),
    };
    let message = if body.is_empty() {
        format!("server answered {status}")
    } else {
        format!("server answered {status}: {body}")
    };
    if status_is_transient(status) {
        ChatError::Transient {
            message,
            retry_after,
        }
    } else {
        ChatError::Permanent {
            status: Some(status),
            message,
        }
    }
}

/// The server's own words from an error body: `error.message` of an OpenAI-style body
/// (`{"error": {"message"}}`; some servers send `{"error": "text"}` or `{"message"}`), or
/// the start of the body as text.
fn error_message(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        let m = v
            .pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))?;
        Some(match m {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    });
    let text = from_json.unwrap_or_else(|| excerpt(body));
    let text = text.trim();
    let mut out: String = text.chars().take(ERROR_EXCERPT_CHARS).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// Reads a body, stopping as soon as it grows past `cap` (the declared length is checked
/// first, so an honest server's oversized reply is not downloaded at all). Chunks arrive
/// decompressed, so the cap bounds memory even for a compressed reply.
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, ChatError> {
    let too_large = |prefix: &[u8], declared: Option<u64>| ChatError::Malformed {
        message: match declared {
            Some(len) => {
                format!("reply of {len} bytes exceeds the cap of {cap} bytes (max_answer_bytes)")
            }
            None => format!("reply exceeds the cap of {cap} bytes (max_answer_bytes)"),
        },
        answer: excerpt(prefix),
        usage: None,
    };
    let declared = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > cap as u64
    {
        return Err(too_large(&[], Some(len)));
    }
    let mut body = Vec::with_capacity(declared.map_or(8192, |l| l as usize).min(cap));
    // Bounded: every chunk is non-empty, so the body passes the cap or the stream ends,
    // and the client's timeout bounds a server that trickles.
    while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > cap {
            body.extend_from_slice(&chunk[..cap - body.len()]);
            return Err(too_large(&body, None));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn transport_error(e: reqwest::Error) -> ChatError {
    if e.is_timeout() {
        ChatError::transient(format!("no answer within the timeout: {}", error_chain(&e)))
    } else if e.is_builder() {
        ChatError::config(error_chain(&e))
    } else {
        // Refused, reset, DNS, a connection lost mid-reply: the server may be back soon.
        ChatError::transient(error_chain(&e))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChatRequest {
        ChatRequest {
            system: "Extract facts.".into(),
            user: "Paris is in France.".into(),
            schema_name: "facts".into(),
            json_schema: json!({"type": "object", "properties": {"facts": {"type": "array"}}}),
            max_tokens: Some(256),
        }
    }

    #[test]
    fn endpoint_from_base_or_full_url() {
        let c = ChatClient::new(ChatConfig::new("http://127.0.0.1:8000/v1/", "m")).expect("ok");
        assert_eq!(c.endpoint(), "http://127.0.0.1:8000/v1/chat/completions");
        let c = ChatClient::new(ChatConfig::new(
            "http://127.0.0.1:8000/v1/chat/completions",
            "m",
        ))
        .expect("ok");
        assert_eq!(c.endpoint(), "http://127.0.0.1:8000/v1/chat/completions");
    }

    #[test]
    fn default_needs_a_model() {
        let cfg = ChatConfig::default();
        assert_eq!(cfg.max_answer_bytes, DEFAULT_MAX_ANSWER_BYTES);
        assert!(ChatClient::new(cfg).is_err());
        let c = ChatClient::new(ChatConfig {
            model: "m".into(),
            ..ChatConfig::default()
        })
        .expect("ok");
        assert_eq!(c.endpoint(), "http://127.0.0.1:8000/v1/chat/completions");
    }

    #[test]
    fn bad_settings_are_permanent() {
        let bad = |cfg: ChatConfig| {
            let e = ChatClient::new(cfg).expect_err("rejected");
            assert!(
                matches!(e, ChatError::Permanent { status: None, .. }),
                "{e}"
            );
        };
        bad(ChatConfig::new("not a url", "m"));
        bad(ChatConfig::new("ftp://host/v1", "m"));
        bad(ChatConfig::new("http://127.0.0.1:1/v1", " "));
        let mut cfg = ChatConfig::new("http://127.0.0.1:1/v1", "m");
        cfg.timeout = Duration::ZERO;
        bad(cfg);
        let mut cfg = ChatConfig::new("http://127.0.0.1:1/v1", "m");
        cfg.max_answer_bytes = 0;
        bad(cfg);
        let mut cfg = ChatConfig::new("http://127.0.0.1:1/v1", "m");
        cfg.temperature = Some(3.0);
        bad(cfg);
    }

    #[test]
    fn body_per_response_format() {
        let mut cfg = ChatConfig::new("http://127.0.0.1:1/v1", "m");
        cfg.temperature = Some(0.0);
        let c = ChatClient::new(cfg.clone()).expect("ok");
        let b = c.request_body(&request());
        assert_eq!(b["model"], "m");
        assert_eq!(b["messages"][0]["content"], "Extract facts.");
        assert_eq!(b["messages"][1]["role"], "user");
        assert_eq!(b["response_format"]["type"], "json_schema");
        assert_eq!(b["response_format"]["json_schema"]["name"], "facts");
        assert_eq!(b["response_format"]["json_schema"]["strict"], true);
        assert_eq!(
            b["response_format"]["json_schema"]["schema"],
            request().json_schema
        );
        assert_eq!(b["max_tokens"], 256);
        assert_eq!(b["temperature"], 0.0);

        cfg.response_format = ResponseFormat::JsonObject;
        cfg.temperature = None;
        let b = ChatClient::new(cfg.clone())
            .expect("ok")
            .request_body(&request());
        assert_eq!(b["response_format"], json!({"type": "json_object"}));
        let system = b["messages"][0]["content"].as_str().expect("system");
        assert!(system.starts_with("Extract facts.") && system.contains("\"facts\""));
        assert!(b.get("temperature").is_none());

        cfg.response_format = ResponseFormat::None;
        let b = ChatClient::new(cfg).expect("ok").request_body(&request());
        assert!(b.get("response_format").is_none());
        assert!(
            b["messages"][0]["content"]
                .as_str()
                .expect("system")
                .contains(SCHEMA_PREAMBLE)
        );
    }

    #[test]
    fn response_format_names() {
        for f in [
            ResponseFormat::JsonSchema,
            ResponseFormat::JsonObject,
            ResponseFormat::None,
        ] {
            assert_eq!(f.as_str().parse::<ResponseFormat>(), Ok(f));
            assert_eq!(serde_json::to_value(f).expect("json"), json!(f.as_str()));
        }
        assert!("json".parse::<ResponseFormat>().is_err());
    }

    #[test]
    fn prompt_estimate_counts_messages_and_schema() {
        let r = request();
        let n = r.estimate_prompt_tokens(ResponseFormat::JsonSchema);
        assert!(n > estimate_tokens(&r.system) + estimate_tokens(&r.user));
        assert!(r.estimate_prompt_tokens(ResponseFormat::JsonObject) > n);
    }

    #[test]
    fn debug_hides_the_key() {
        let mut cfg = ChatConfig::new("http://127.0.0.1:1/v1", "m");
        cfg.api_key = Some(SecretString::from("sk-very-secret"));
        assert!(!format!("{cfg:?}").contains("sk-very-secret"));
        let c = ChatClient::new(cfg).expect("ok");
        let shown = format!("{c:?}");
        assert!(!shown.contains("sk-very-secret") && shown.contains("redacted"));
    }

    #[test]
    fn error_messages_from_bodies() {
        assert_eq!(
            error_message(br#"{"error":{"message":"bad schema","type":"invalid_request_error"}}"#),
            "bad schema"
        );
        assert_eq!(
            error_message(br#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(error_message(b"upstream down"), "upstream down");
        let long = "x".repeat(1000);
        assert_eq!(
            error_message(long.as_bytes()).chars().count(),
            ERROR_EXCERPT_CHARS + 1
        );
    }
}
