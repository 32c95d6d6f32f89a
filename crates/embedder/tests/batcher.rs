//! The cross-caller batcher, in front of a real HTTP server on 127.0.0.1.

mod common;

use std::time::Duration;

use common::{DIMS, Mode, Server, vector_for};
use embedder::{Batcher, BatcherConfig, EmbedError, Embedder, EmbedderConfig, OpenAiConfig};

fn embedder(server: &Server) -> Embedder {
    Embedder::from_config(
        EmbedderConfig::Openai(OpenAiConfig {
            url: server.url(),
            model: "test-model".into(),
            dims: DIMS,
            batch_size: 256,
            timeout_ms: 5_000,
            send_dimensions: false,
        }),
        None,
    )
    .expect("embedder")
}

fn cfg(max_batch: usize, max_wait_ms: u64) -> BatcherConfig {
    BatcherConfig {
        max_batch,
        max_wait_ms,
        queue_capacity: 256,
        max_in_flight: 1,
    }
}

#[tokio::test]
async fn concurrent_callers_share_batches_and_get_their_own_vectors() {
    let server = Server::start_with_latency(Duration::from_millis(20)).await;
    let batcher = Batcher::spawn(embedder(&server), cfg(16, 50));
    let mut calls = Vec::new();
    for caller in 0..40 {
        let b = batcher.clone();
        calls.push(tokio::spawn(async move {
            let texts: Vec<String> = (0..2)
                .map(|j| format!("caller {caller} text {j}"))
                .collect();
            let got = b.embed(texts.clone()).await;
            (texts, got)
        }));
    }
    for call in calls {
        let (texts, got) = call.await.expect("join");
        let want: Vec<Vec<f32>> = texts.iter().map(|t| vector_for(t)).collect();
        assert_eq!(got.expect("embed"), want);
    }
    let batches = server.batches();
    assert_eq!(batches.iter().sum::<usize>(), 80);
    assert!(batches.iter().all(|b| *b <= 16), "{batches:?}");
    // 80 texts from 40 callers in batches of up to 16: far fewer requests than callers.
    assert!(batches.len() <= 10, "{batches:?}");
}

#[tokio::test]
async fn texts_repeated_across_callers_are_sent_once() {
    let server = Server::start_with_latency(Duration::from_millis(20)).await;
    let batcher = Batcher::spawn(embedder(&server), cfg(64, 200));
    let mut calls = Vec::new();
    for caller in 0..8 {
        let b = batcher.clone();
        calls.push(tokio::spawn(async move {
            // A footer every caller shares, and a text of its own.
            let texts = vec![
                "Copyright Example News. All rights reserved.".to_string(),
                format!("story {caller}"),
                "Copyright Example News. All rights reserved.".to_string(),
            ];
            let got = b.embed(texts.clone()).await;
            (texts, got)
        }));
    }
    for call in calls {
        let (texts, got) = call.await.expect("join");
        let want: Vec<Vec<f32>> = texts.iter().map(|t| vector_for(t)).collect();
        assert_eq!(got.expect("embed"), want);
    }
    // 24 inputs, 9 distinct texts, one batch.
    assert_eq!(server.batches(), vec![9]);
}

#[tokio::test]
async fn a_lone_caller_is_answered_after_the_time_window() {
    let server = Server::start().await;
    let batcher = Batcher::spawn(embedder(&server), cfg(32, 30));
    let t0 = std::time::Instant::now();
    let got = batcher.embed(vec!["alone".into()]).await.expect("embed");
    assert_eq!(got, vec![vector_for("alone")]);
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!(server.batches(), vec![1]);
}

#[tokio::test]
async fn a_failed_batch_fails_every_caller_in_it() {
    let server = Server::start().await;
    server.set_mode(Mode::Fail500);
    let batcher = Batcher::spawn(embedder(&server), cfg(8, 100));
    let a = tokio::spawn({
        let b = batcher.clone();
        async move { b.embed(vec!["a".into(), "b".into()]).await }
    });
    let c = tokio::spawn({
        let b = batcher.clone();
        async move { b.embed(vec!["c".into()]).await }
    });
    for r in [a.await.expect("join"), c.await.expect("join")] {
        let err = r.expect_err("batch failed");
        assert!(
            matches!(err, EmbedError::Status { status: 500, .. }),
            "{err:?}"
        );
        assert!(err.is_transient());
    }
    assert_eq!(server.batches(), vec![3], "both callers were in one batch");

    // The batcher keeps working once the server recovers.
    server.set_mode(Mode::Ok);
    let got = batcher.embed(vec!["again".into()]).await.expect("embed");
    assert_eq!(got, vec![vector_for("again")]);
}

#[tokio::test]
async fn oversized_requests_go_alone_and_empty_ones_skip_the_server() {
    let server = Server::start().await;
    let batcher = Batcher::spawn(embedder(&server), cfg(4, 20));
    assert_eq!(
        batcher.embed(Vec::new()).await.expect("empty"),
        Vec::<Vec<f32>>::new()
    );
    let texts: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let got = batcher.embed(texts.clone()).await.expect("embed");
    assert_eq!(got.len(), 10);
    assert_eq!(got[9], vector_for("t9"));
    assert_eq!(server.batches(), vec![10]);
}

#[tokio::test]
async fn hashing_backend_works_behind_the_batcher() {
    let e =
        Embedder::from_config(EmbedderConfig::Hashing(Default::default()), None).expect("hashing");
    let direct = e.embed(&["same text".to_string()]).await.expect("direct");
    let batcher = Batcher::spawn(e, BatcherConfig::default());
    assert_eq!(batcher.model(), "hashing-v1-n2-d384");
    let batched = batcher
        .embed(vec!["same text".into()])
        .await
        .expect("batched");
    assert_eq!(batched, direct);
}
