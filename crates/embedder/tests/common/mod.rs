//! A real OpenAI-compatible embeddings server on 127.0.0.1 for the tests, whose behaviour
//! each test switches: answer, fail, stall, or answer wrongly.

#![allow(dead_code)] // Each test binary uses part of this module.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

/// How the server answers the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Correct vectors, listed in reverse order with their `index`.
    Ok,
    /// 500 Internal Server Error.
    Fail500,
    /// 429 Too Many Requests.
    RateLimited,
    /// 400 Bad Request.
    BadRequest,
    /// Sleeps this long before answering correctly.
    Slow(Duration),
    /// One vector fewer than inputs.
    WrongCount,
    /// Vectors one dimension short.
    WrongDims,
}

pub const DIMS: usize = 4;
pub const KEY: &str = "sk-test-key";

#[derive(Default)]
pub struct Seen {
    /// Input count of every request received.
    pub batches: Vec<usize>,
    /// Whether each request carried the expected bearer key.
    pub authorized: Vec<bool>,
    pub models: Vec<String>,
}

#[derive(Clone)]
pub struct Server {
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    seen: Arc<Mutex<Seen>>,
    per_request: Duration,
}

impl Server {
    /// Starts a server answering correctly.
    pub async fn start() -> Self {
        Self::start_with_latency(Duration::ZERO).await
    }

    /// Starts a server that takes `per_request` to answer each request, like a model would.
    pub async fn start_with_latency(per_request: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = Self {
            addr: listener.local_addr().expect("addr"),
            mode: Arc::new(Mutex::new(Mode::Ok)),
            seen: Arc::new(Mutex::new(Seen::default())),
            per_request,
        };
        let app = Router::new()
            .route("/v1/embeddings", post(embeddings))
            .with_state(server.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("lock") = mode;
    }

    pub fn batches(&self) -> Vec<usize> {
        self.seen.lock().expect("lock").batches.clone()
    }

    pub fn authorized(&self) -> Vec<bool> {
        self.seen.lock().expect("lock").authorized.clone()
    }

    pub fn models(&self) -> Vec<String> {
        self.seen.lock().expect("lock").models.clone()
    }
}

/// The vector the server gives a text: its length, its first byte, a constant, and the
/// number of words; enough for tests to check that each caller got its own vector.
pub fn vector_for(text: &str) -> Vec<f32> {
    vec![
        text.len() as f32,
        f32::from(text.bytes().next().unwrap_or(0)),
        1.0,
        text.split_whitespace().count() as f32,
    ]
}

async fn embeddings(
    State(s): State<Server>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let inputs: Vec<String> = body["input"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    {
        let mut seen = s.seen.lock().expect("lock");
        seen.batches.push(inputs.len());
        seen.authorized.push(
            headers
                .get("authorization")
                .is_some_and(|v| v.as_bytes() == format!("Bearer {KEY}").as_bytes()),
        );
        seen.models
            .push(body["model"].as_str().unwrap_or("").to_string());
    }
    if !s.per_request.is_zero() {
        tokio::time::sleep(s.per_request).await;
    }
    let mode = *s.mode.lock().expect("lock");
    let error = |code: StatusCode| (code, Json(json!({"error": {"message": "test failure"}})));
    match mode {
        Mode::Fail500 => return error(StatusCode::INTERNAL_SERVER_ERROR),
        Mode::RateLimited => return error(StatusCode::TOO_MANY_REQUESTS),
        Mode::BadRequest => return error(StatusCode::BAD_REQUEST),
        Mode::Slow(d) => tokio::time::sleep(d).await,
        Mode::Ok | Mode::WrongCount | Mode::WrongDims => {}
    }
    let mut data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut v = vector_for(t);
            if mode == Mode::WrongDims {
                v.pop();
            }
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    if mode == Mode::WrongCount {
        data.pop();
    }
    // Real servers may answer out of order; `index` is what counts.
    data.reverse();
    (
        StatusCode::OK,
        Json(json!({"object": "list", "model": body["model"], "data": data})),
    )
}
