//! Throughput of batched versus one-text-per-request embedding, against a local
//! OpenAI-compatible server (127.0.0.1) that takes 20 ms per request, as a small model
//! server would; and of the in-process hashing embedder.
//!
//! ```text
//! cargo run --release -p embedder --example embed_bench
//! ```
//!
//! Every loop is bounded by a count; the only traffic is to the server this program starts
//! on the loopback interface.

use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use embedder::{Batcher, BatcherConfig, Embedder, EmbedderConfig, HashingConfig, OpenAiConfig};
use serde_json::{Value, json};

const LATENCY: Duration = Duration::from_millis(20);
const DIMS: usize = 64;

async fn embeddings(Json(body): Json<Value>) -> Json<Value> {
    tokio::time::sleep(LATENCY).await;
    let n = body["input"].as_array().map_or(0, Vec::len);
    let data: Vec<Value> = (0..n)
        .map(|i| json!({"index": i, "embedding": vec![0.125f32; DIMS]}))
        .collect();
    Json(json!({"data": data}))
}

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("chunk {i}: {}", "some words of a paragraph ".repeat(40)))
        .collect()
}

fn openai(url: &str, batch_size: usize) -> anyhow::Result<Embedder> {
    Ok(Embedder::from_config(
        EmbedderConfig::Openai(OpenAiConfig {
            url: url.to_string(),
            model: "bench".into(),
            dims: DIMS,
            batch_size,
            timeout_ms: 10_000,
            send_dimensions: false,
        }),
        None,
    )?)
}

/// Texts per second of one caller embedding `n` texts through `e`.
async fn direct(e: &Embedder, n: usize) -> anyhow::Result<f64> {
    let input = texts(n);
    let t0 = Instant::now();
    let out = e.embed(&input).await?;
    anyhow::ensure!(out.len() == n, "short reply");
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

/// Texts per second of `callers` concurrent callers, each embedding one text `rounds`
/// times, through a batcher of `max_batch`.
async fn batched(
    e: Embedder,
    max_batch: usize,
    callers: usize,
    rounds: usize,
) -> anyhow::Result<f64> {
    let batcher = Batcher::spawn(
        e,
        BatcherConfig {
            max_batch,
            max_wait_ms: 5,
            queue_capacity: 1024,
            max_in_flight: 1,
        },
    );
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let b = batcher.clone();
        tasks.push(tokio::spawn(async move {
            for r in 0..rounds {
                b.embed(vec![format!("caller {c} round {r}")]).await?;
            }
            Ok::<_, embedder::EmbedError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((callers * rounds) as f64 / t0.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1", listener.local_addr()?);
    tokio::spawn(async move {
        let app = Router::new().route("/v1/embeddings", post(embeddings));
        let _ = axum::serve(listener, app).await;
    });

    println!(
        "server: 127.0.0.1, {} ms per request, {DIMS} dims",
        LATENCY.as_millis()
    );
    let one = direct(&openai(&url, 1)?, 100).await?;
    let b32 = direct(&openai(&url, 32)?, 640).await?;
    println!("one caller, one text per request : {one:8.1} texts/s");
    println!(
        "one caller, batch size 32        : {b32:8.1} texts/s  ({:.1}x)",
        b32 / one
    );

    let c1 = batched(openai(&url, 256)?, 1, 64, 2).await?;
    let c32 = batched(openai(&url, 256)?, 32, 64, 20).await?;
    println!("64 callers, batcher max_batch 1  : {c1:8.1} texts/s");
    println!(
        "64 callers, batcher max_batch 32 : {c32:8.1} texts/s  ({:.1}x)",
        c32 / c1
    );

    let hashing = Embedder::from_config(EmbedderConfig::Hashing(HashingConfig::default()), None)?;
    let h = direct(&hashing, 5_000).await?;
    println!("hashing (384 dims, ~1 KB texts)  : {h:8.0} texts/s, one thread");
    Ok(())
}
