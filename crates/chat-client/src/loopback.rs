//! A loopback model server: a real HTTP server on 127.0.0.1 that stands in for an
//! OpenAI-compatible model server in tests and benchmarks (no model runs; no weights are
//! needed).
//!
//! It speaks the protocol the way a real server does: `POST /v1/chat/completions`
//! validates the request (model, messages, `response_format`, `max_tokens`,
//! `temperature`) and rejects a bad one with 400 and an OpenAI-style
//! `{"error": {"message", "type", "param", "code"}}` body; a good one is answered with a
//! `chat.completion` whose token counts come from the text ([`crate::estimate_tokens`]);
//! content longer than the request's `max_tokens` is cut with `finish_reason` `length`;
//! `GET /v1/models` lists the served model names. What each valid request is answered
//! with is decided by the test's [`Responder`], which sees the parsed request
//! ([`SeenRequest`]) and returns a [`Reply`]: JSON, raw content, a truncated answer, a
//! refusal, an error status (with `Retry-After`), a delay, or no answer at all.
//!
//! The server counts requests and the requests in flight, with a high-water mark, so a
//! test can check how much concurrency a caller really produced.
//!
//! ```no_run
//! # async fn demo() {
//! use chat_client::loopback::{ModelServer, Reply};
//! use serde_json::json;
//! let server = ModelServer::start_fn(|req| {
//!     if req.seq == 0 { Reply::rate_limited(1) } else { Reply::Json(json!({"facts": []})) }
//! })
//! .await;
//! let base_url = server.url(); // http://127.0.0.1:PORT/v1
//! # let _ = base_url;
//! server.shutdown().await;
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{MESSAGE_OVERHEAD_TOKENS, estimate_tokens};

/// Decides the reply to each valid chat request.
pub type Responder = Arc<dyn Fn(&SeenRequest) -> Reply + Send + Sync>;

/// Wraps a closure as a [`Responder`].
pub fn responder(f: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> Responder {
    Arc::new(f)
}

/// The longest a [`Reply::Hang`] or [`Reply::Delay`] holds a request when the server is
/// not shut down: long past any client timeout, and still an end.
const HOLD_CEILING: Duration = Duration::from_secs(600);

/// How long [`ModelServer::shutdown`] waits for requests in progress before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A chat request as the server parsed it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenRequest {
    /// Arrival order on this server, from 0 (counting rejected requests too).
    pub seq: u64,
    /// The `model` field.
    pub model: String,
    /// The system (and developer) messages' text, joined by newlines.
    pub system: String,
    /// The user messages' text, joined by newlines.
    pub user: String,
    /// `response_format.type` (`text`, `json_object`, `json_schema`), when sent.
    pub response_format: Option<String>,
    /// `response_format.json_schema.name`, in `json_schema` mode.
    pub schema_name: Option<String>,
    /// `response_format.json_schema.schema`, in `json_schema` mode.
    pub json_schema: Option<Value>,
    /// `response_format.json_schema.strict`, in `json_schema` mode.
    pub strict: Option<bool>,
    /// `max_tokens` (or `max_completion_tokens`), when sent.
    pub max_tokens: Option<u32>,
    /// `temperature`, when sent.
    pub temperature: Option<f64>,
    /// The `Authorization` header's value, when sent (tests check what a client sends).
    pub authorization: Option<String>,
    /// The whole request body.
    pub body: Value,
}

/// How the server answers one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A complete answer whose content is this JSON, serialized.
    Json(Value),
    /// A complete answer with this content as it is (not JSON, fenced JSON…).
    Content(String),
    /// An answer cut short: this content with `finish_reason` `length`.
    Truncated(String),
    /// A refusal: `content` null, `refusal` this text (as OpenAI's structured output does).
    Refusal(String),
    /// This status with `body` as an `application/json` body, and a `Retry-After` header
    /// with this value when set (delta-seconds or an HTTP date). A 200 here sends `body`
    /// as it is, for replies the other variants cannot make (no usage, no choices).
    Status {
        /// HTTP status code.
        status: u16,
        /// `Retry-After` header value.
        retry_after: Option<String>,
        /// Response body.
        body: String,
    },
    /// No answer until the server shuts down (or ten minutes pass): for client timeouts.
    Hang,
    /// The inner reply after this long, like a model taking time to generate.
    Delay(Duration, Box<Reply>),
}

impl Reply {
    /// 429 with `Retry-After: secs` and an OpenAI-style rate-limit body.
    pub fn rate_limited(secs: u64) -> Self {
        Self::Status {
            status: 429,
            retry_after: Some(secs.to_string()),
            body: error_body(
                "Rate limit reached",
                "rate_limit_error",
                None,
                "rate_limit_exceeded",
            )
            .to_string(),
        }
    }

    /// 429 with `Retry-After` as an HTTP date.
    pub fn rate_limited_until(when: SystemTime) -> Self {
        Self::Status {
            status: 429,
            retry_after: Some(httpdate::fmt_http_date(when)),
            body: error_body(
                "Rate limit reached",
                "rate_limit_error",
                None,
                "rate_limit_exceeded",
            )
            .to_string(),
        }
    }

    /// `status` with an OpenAI-style error body carrying `message`, no `Retry-After`.
    pub fn error(status: u16, message: &str) -> Self {
        let kind = if status >= 500 {
            "server_error"
        } else {
            "invalid_request_error"
        };
        Self::Status {
            status,
            retry_after: None,
            body: error_body(message, kind, None, &status.to_string()).to_string(),
        }
    }

    /// `reply` after `delay`.
    pub fn delayed(delay: Duration, reply: Reply) -> Self {
        Self::Delay(delay, Box::new(reply))
    }
}

/// Settings of a [`ModelServer`] beyond its responder.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Model names `GET /v1/models` lists. Chat requests may name any model (as
    /// llama.cpp's server allows); replies echo the requested name.
    pub models: Vec<String>,
    /// When set, a request whose estimated prompt tokens plus `max_tokens` exceed it is
    /// rejected with 400 `context_length_exceeded`, as vLLM does.
    pub context_window: Option<u32>,
    /// When set, requests without `Authorization: Bearer <key>` get 401.
    pub api_key: Option<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            models: vec!["loopback".into()],
            context_window: None,
            api_key: None,
        }
    }
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// Decrements the in-flight count however the handler ends (answered, or dropped when the
/// client goes away).
struct InFlight(Arc<Stats>);

impl InFlight {
    fn enter(stats: &Arc<Stats>) -> Self {
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(Arc::clone(stats))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct AppState {
    responder: Responder,
    options: Arc<ServerOptions>,
    stats: Arc<Stats>,
    stopping: watch::Receiver<bool>,
}

/// A model server on 127.0.0.1 (a free port), stopped by [`ModelServer::shutdown`] or on
/// drop.
pub struct ModelServer {
    addr: SocketAddr,
    stats: Arc<Stats>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ModelServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelServer")
            .field("addr", &self.addr)
            .field("requests", &self.requests())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl ModelServer {
    /// Starts a server answering with `responder` and the default [`ServerOptions`].
    ///
    /// # Panics
    /// When no port on 127.0.0.1 can be bound (see [`Self::try_start`]).
    pub async fn start(responder: Responder) -> Self {
        Self::try_start(responder, ServerOptions::default())
            .await
            .expect("bind a loopback port for the model server")
    }

    /// [`Self::start`] with a closure.
    pub async fn start_fn(f: impl Fn(&SeenRequest) -> Reply + Send + Sync + 'static) -> Self {
        Self::start(Arc::new(f)).await
    }

    /// Starts a server with `options`.
    ///
    /// # Errors
    /// When no port on 127.0.0.1 can be bound.
    pub async fn try_start(responder: Responder, options: ServerOptions) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(Stats::default());
        let (stop, stopping) = watch::channel(false);
        let state = AppState {
            responder,
            options: Arc::new(options),
            stats: Arc::clone(&stats),
            stopping: stopping.clone(),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/models", get(models))
            .with_state(state);
        let mut signal = stopping;
        let task = tokio::spawn(async move {
            let stopped = async move {
                // A dropped sender is a stop too.
                let _ = signal.wait_for(|stop| *stop).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::warn!(error = %e, "loopback model server stopped with an error");
            }
        });
        Ok(Self {
            addr,
            stats,
            stop,
            task: Some(task),
        })
    }

    /// The API base URL, `http://127.0.0.1:PORT/v1` (what a client's `url` setting takes).
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Chat requests received so far (rejected ones included).
    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// Chat requests being handled now (a request whose client hung up is no longer
    /// counted, even when its reply was a [`Reply::Hang`]).
    pub fn in_flight(&self) -> usize {
        self.stats.in_flight.load(Ordering::SeqCst)
    }

    /// The most chat requests handled at once since the start.
    pub fn max_in_flight(&self) -> usize {
        self.stats.max_in_flight.load(Ordering::SeqCst)
    }

    /// Stops accepting, releases held requests ([`Reply::Hang`], [`Reply::Delay`]), lets
    /// requests in progress finish for up to five seconds, and then cuts the rest.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        // Held requests and the accept loop end on this signal; the loop then finishes
        // by itself. A watchdog cuts it after the grace period if a connection lingers.
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
                task.abort();
            });
        }
    }
}

async fn models(State(state): State<AppState>) -> Json<Value> {
    let created = unix_now();
    let data: Vec<Value> = state
        .options
        .models
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "loopback"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seq = state.stats.requests.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight::enter(&state.stats);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(key) = &state.options.api_key
        && authorization.as_deref() != Some(format!("Bearer {key}").as_str())
    {
        return openai_error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided",
            "invalid_request_error",
            None,
            "invalid_api_key",
        );
    }
    let seen = match parse_request(seq, authorization, &body) {
        Ok(seen) => seen,
        Err(rejection) => return rejection.into_response(),
    };
    let prompt_tokens = prompt_tokens(&seen.body);
    if let Some(window) = state.options.context_window {
        let wanted = u64::from(prompt_tokens) + u64::from(seen.max_tokens.unwrap_or(0));
        if wanted > u64::from(window) {
            return openai_error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "This model's maximum context length is {window} tokens. However, you \
                     requested {wanted} tokens ({prompt_tokens} in the messages, {} in the \
                     completion).",
                    seen.max_tokens.unwrap_or(0)
                ),
                "invalid_request_error",
                Some("messages"),
                "context_length_exceeded",
            );
        }
    }
    let mut reply = (state.responder)(&seen);
    let mut stopping = state.stopping.clone();
    // Bounded: each step removes one layer of a finite nesting of delays.
    while let Reply::Delay(delay, inner) = reply {
        if hold(&mut stopping, delay).await {
            return shutting_down();
        }
        reply = *inner;
    }
    match reply {
        Reply::Hang => {
            hold(&mut stopping, HOLD_CEILING).await;
            shutting_down()
        }
        Reply::Status {
            status,
            retry_after,
            body,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = (status, body).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                resp.headers_mut().insert(header::RETRY_AFTER, value);
            }
            resp
        }
        Reply::Json(value) => {
            completion(&seen, prompt_tokens, Some(value.to_string()), None, false)
        }
        Reply::Content(text) => completion(&seen, prompt_tokens, Some(text), None, false),
        Reply::Truncated(text) => completion(&seen, prompt_tokens, Some(text), None, true),
        Reply::Refusal(text) => completion(&seen, prompt_tokens, None, Some(text), false),
        Reply::Delay(..) => unreachable!("delays are unwrapped above"),
    }
}

/// Waits `delay` or until the server stops; true when it stopped.
async fn hold(stopping: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        _ = stopping.wait_for(|stop| *stop) => true,
    }
}

fn shutting_down() -> Response {
    openai_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "server shutting down",
        "server_error",
        None,
        "shutting_down",
    )
}

/// Builds the `chat.completion`, cutting content at `max_tokens` as a real server would.
fn completion(
    seen: &SeenRequest,
    prompt_tokens: u32,
    content: Option<String>,
    refusal: Option<String>,
    truncated: bool,
) -> Response {
    let mut finish_reason = if truncated { "length" } else { "stop" };
    let content = content.map(|text| match seen.max_tokens {
        Some(max) if estimate_tokens(&text) > max => {
            finish_reason = "length";
            cut_to_tokens(&text, max)
        }
        _ => text,
    });
    let completion_tokens = estimate_tokens(
        content
            .as_deref()
            .or(refusal.as_deref())
            .unwrap_or_default(),
    );
    let body = json!({
        "id": format!("chatcmpl-loopback-{}", seen.seq),
        "object": "chat.completion",
        "created": unix_now(),
        "model": seen.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": refusal},
            "logprobs": null,
            "finish_reason": finish_reason,
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": u64::from(prompt_tokens) + u64::from(completion_tokens),
        },
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// The longest prefix of `text` within `max` tokens by [`estimate_tokens`].
fn cut_to_tokens(text: &str, max: u32) -> String {
    let budget = u64::from(max) * 4;
    let mut used = 0u64;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        used += if c.is_ascii() { 1 } else { 3 };
        if used > budget {
            break;
        }
        end = i + c.len_utf8();
    }
    text[..end].to_string()
}

/// Prompt tokens as the server counts them: each message's text plus the template's
/// overhead, and the schema (which a server turns into instructions or a grammar).
fn prompt_tokens(body: &Value) -> u32 {
    let messages = body["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut total: u32 = 0;
    for m in messages {
        total = total
            .saturating_add(estimate_tokens(&message_text(&m["content"])))
            .saturating_add(MESSAGE_OVERHEAD_TOKENS);
    }
    if let Some(schema) = body.pointer("/response_format/json_schema/schema") {
        total = total.saturating_add(estimate_tokens(&schema.to_string()));
    }
    total
}

/// A message's text: a string, or the `text` of its content parts.
fn message_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A 400 in OpenAI's shape.
struct Rejection {
    message: String,
    param: Option<&'static str>,
    code: &'static str,
}

impl Rejection {
    fn new(message: impl Into<String>, param: Option<&'static str>, code: &'static str) -> Self {
        Self {
            message: message.into(),
            param,
            code,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        openai_error(
            StatusCode::BAD_REQUEST,
            &self.message,
            "invalid_request_error",
            self.param,
            self.code,
        )
    }
}

fn error_body(message: &str, kind: &str, param: Option<&str>, code: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

fn openai_error(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: &str,
) -> Response {
    (status, Json(error_body(message, kind, param, code))).into_response()
}

const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// Validates a request the way OpenAI-compatible servers do and extracts what a responder
/// needs.
fn parse_request(
    seq: u64,
    authorization: Option<String>,
    raw: &[u8],
) -> Result<SeenRequest, Rejection> {
    let body: Value = serde_json::from_slice(raw).map_err(|e| {
        Rejection::new(
            format!("request body is not valid JSON: {e}"),
            None,
            "invalid_json",
        )
    })?;
    if !body.is_object() {
        return Err(Rejection::new(
            "request body must be a JSON object",
            None,
            "invalid_json",
        ));
    }
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(Rejection::new(
                "you must provide a model parameter",
                Some("model"),
                "missing_model",
            ));
        }
        Some(_) => {
            return Err(Rejection::new(
                "model must be a string",
                Some("model"),
                "invalid_type",
            ));
        }
    };
    let messages = match body.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => {
            return Err(Rejection::new(
                "messages must contain at least one message",
                Some("messages"),
                "empty_array",
            ));
        }
        None | Some(Value::Null) => {
            return Err(Rejection::new(
                "missing required parameter: messages",
                Some("messages"),
                "missing_required_parameter",
            ));
        }
        Some(_) => {
            return Err(Rejection::new(
                "messages must be an array",
                Some("messages"),
                "invalid_type",
            ));
        }
    };
    let mut system = Vec::new();
    let mut user = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if !ROLES.contains(&role) {
            return Err(Rejection::new(
                format!(
                    "messages[{i}].role must be one of {ROLES:?}, got {:?}",
                    m.get("role")
                ),
                Some("messages"),
                "invalid_value",
            ));
        }
        let content = m.get("content").unwrap_or(&Value::Null);
        let ok = match content {
            Value::String(_) => true,
            Value::Array(parts) => parts.iter().all(|p| p["text"].is_string()),
            // An assistant message may carry tool calls and no content.
            Value::Null => role == "assistant",
            _ => false,
        };
        if !ok {
            return Err(Rejection::new(
                format!("messages[{i}].content must be a string or an array of text parts"),
                Some("messages"),
                "invalid_type",
            ));
        }
        match role {
            "system" | "developer" => system.push(message_text(content)),
            "user" => user.push(message_text(content)),
            _ => {}
        }
    }
    let (response_format, schema_name, json_schema, strict) =
        parse_response_format(body.get("response_format"))?;
    let max_tokens = match body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
    {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if n > 0 => Some(n),
            _ => {
                return Err(Rejection::new(
                    "max_tokens must be a positive integer",
                    Some("max_tokens"),
                    "invalid_value",
                ));
            }
        },
    };
    let temperature = match body.get("temperature") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(t) if (0.0..=2.0).contains(&t) => Some(t),
            _ => {
                return Err(Rejection::new(
                    "temperature must be a number between 0 and 2",
                    Some("temperature"),
                    "invalid_value",
                ));
            }
        },
    };
    Ok(SeenRequest {
        seq,
        model,
        system: system.join("\n"),
        user: user.join("\n"),
        response_format,
        schema_name,
        json_schema,
        strict,
        max_tokens,
        temperature,
        authorization,
        body,
    })
}

type ParsedFormat = (Option<String>, Option<String>, Option<Value>, Option<bool>);

fn parse_response_format(rf: Option<&Value>) -> Result<ParsedFormat, Rejection> {
    let invalid =
        |message: String| Rejection::new(message, Some("response_format"), "invalid_value");
    let rf = match rf {
        None | Some(Value::Null) => return Ok((None, None, None, None)),
        Some(Value::Object(rf)) => rf,
        Some(_) => return Err(invalid("response_format must be an object".into())),
    };
    let kind = rf.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "text" | "json_object" => Ok((Some(kind.to_string()), None, None, None)),
        "json_schema" => {
            let Some(Value::Object(js)) = rf.get("json_schema") else {
                return Err(invalid(
                    "response_format.json_schema must be an object when type is json_schema".into(),
                ));
            };
            let name = match js.get("name") {
                Some(Value::String(n))
                    if !n.is_empty()
                        && n.len() <= 64
                        && n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
                {
                    n.clone()
                }
                other => {
                    return Err(invalid(format!(
                        "response_format.json_schema.name must match ^[a-zA-Z0-9_-]{{1,64}}$, got {other:?}"
                    )));
                }
            };
            let schema = match js.get("schema") {
                Some(Value::Object(_)) => js.get("schema").cloned(),
                None => None,
                Some(other) => {
                    return Err(invalid(format!(
                        "response_format.json_schema.schema must be an object, got {other}"
                    )));
                }
            };
            let strict = match js.get("strict") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(other) => {
                    return Err(invalid(format!(
                        "response_format.json_schema.strict must be a boolean, got {other}"
                    )));
                }
            };
            Ok((Some(kind.to_string()), Some(name), schema, strict))
        }
        other => Err(invalid(format!(
            "response_format.type must be one of text, json_object, json_schema; got {other:?}"
        ))),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_respects_the_estimate_and_char_boundaries() {
        let text = "abcdefghij";
        let cut = cut_to_tokens(text, 2);
        assert_eq!(cut, "abcdefgh");
        assert!(estimate_tokens(&cut) <= 2);
        let cut = cut_to_tokens("日本語文字", 2);
        assert_eq!(cut, "日本");
    }
}
