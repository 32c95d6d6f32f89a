//! The OpenAI-compatible backend against a real HTTP server on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use common::{DIMS, KEY, Mode, Server, vector_for};
use embedder::{EmbedError, Embedder, EmbedderConfig, OpenAiConfig};
use secrecy::SecretString;

fn config(server: &Server, batch_size: usize, timeout_ms: u64) -> OpenAiConfig {
    OpenAiConfig {
        url: server.url(),
        model: "test-model".into(),
        dims: DIMS,
        batch_size,
        timeout_ms,
        send_dimensions: false,
    }
}

fn embedder(server: &Server, batch_size: usize, timeout_ms: u64) -> Embedder {
    Embedder::from_config(
        EmbedderConfig::Openai(config(server, batch_size, timeout_ms)),
        Some(SecretString::from(KEY)),
    )
    .expect("embedder")
}

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("text number {i} {}", "x".repeat(i)))
        .collect()
}

#[tokio::test]
async fn vectors_come_back_in_input_order_in_batches_with_the_key() {
    let server = Server::start().await;
    let e = embedder(&server, 3, 5_000);
    let input = texts(7);
    let got = e.embed(&input).await.expect("embed");
    let want: Vec<Vec<f32>> = input.iter().map(|t| vector_for(t)).collect();
    assert_eq!(got, want);
    assert_eq!(server.batches(), vec![3, 3, 1]);
    assert!(server.authorized().iter().all(|a| *a));
    assert!(server.models().iter().all(|m| m == "test-model"));
    assert_eq!(e.model(), "test-model");
    assert_eq!(e.dims(), DIMS);
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_transient_other_4xx_permanent() {
    let server = Server::start().await;
    let e = embedder(&server, 8, 5_000);
    server.set_mode(Mode::Fail500);
    let err = e.embed(&texts(2)).await.expect_err("500 must fail");
    assert!(
        matches!(err, EmbedError::Status { status: 500, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());

    server.set_mode(Mode::RateLimited);
    let err = e.embed(&texts(2)).await.expect_err("429 must fail");
    assert!(
        matches!(err, EmbedError::Status { status: 429, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());

    server.set_mode(Mode::BadRequest);
    let err = e.embed(&texts(2)).await.expect_err("400 must fail");
    assert!(
        matches!(err, EmbedError::Status { status: 400, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_failing_batch_fails_the_whole_call() {
    let server = Server::start().await;
    let e = embedder(&server, 2, 5_000);
    // The first batch succeeds, then the server starts failing: no partial result.
    let call = {
        let e = e.clone();
        tokio::spawn(async move { e.embed(&texts(6)).await })
    };
    server.set_mode(Mode::Fail500);
    let result = call.await.expect("join");
    assert!(result.is_err(), "partial results must not be returned");
}

#[tokio::test]
async fn a_stalled_server_times_out_as_transient() {
    let server = Server::start().await;
    server.set_mode(Mode::Slow(Duration::from_secs(3)));
    let e = embedder(&server, 8, 200);
    let t0 = Instant::now();
    let err = e.embed(&texts(1)).await.expect_err("must time out");
    assert_eq!(err, EmbedError::Timeout);
    assert!(err.is_transient());
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "timeout not honoured"
    );
}

#[tokio::test]
async fn wrong_count_or_dimensions_is_an_error() {
    let server = Server::start().await;
    let e = embedder(&server, 8, 5_000);
    server.set_mode(Mode::WrongCount);
    let err = e.embed(&texts(3)).await.expect_err("wrong count must fail");
    assert_eq!(
        err,
        EmbedError::Count {
            expected: 3,
            got: 2
        }
    );
    assert!(!err.is_transient());

    server.set_mode(Mode::WrongDims);
    let err = e.embed(&texts(3)).await.expect_err("wrong dims must fail");
    assert_eq!(
        err,
        EmbedError::Dimensions {
            expected: DIMS,
            got: DIMS - 1
        }
    );
}

#[tokio::test]
async fn an_unreachable_server_is_transient() {
    // Bind then drop a listener: the port is closed, so the connection is refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let e = Embedder::from_config(
        EmbedderConfig::Openai(OpenAiConfig {
            url: format!("http://127.0.0.1:{port}/v1/embeddings"),
            model: "m".into(),
            dims: DIMS,
            batch_size: 4,
            timeout_ms: 2_000,
            send_dimensions: false,
        }),
        None,
    )
    .expect("embedder");
    let err = e.embed(&texts(1)).await.expect_err("must fail");
    assert!(matches!(err, EmbedError::Connect(_)), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn the_key_never_shows_in_debug_output() {
    let server = Server::start().await;
    let e = embedder(&server, 1, 1_000);
    let shown = format!("{e:?}");
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("redacted"));
}
