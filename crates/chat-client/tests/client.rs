//! The client against the loopback model server, over real HTTP on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chat_client::loopback::{ModelServer, Reply, SeenRequest};
use chat_client::{ChatClient, ChatConfig, ChatError, ChatRequest, ResponseFormat};
use secrecy::SecretString;
use serde_json::{Value, json};

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
        "required": ["facts"],
        "additionalProperties": false,
    })
}

fn request() -> ChatRequest {
    ChatRequest {
        system: "List the facts stated in the text.".into(),
        user: "Paris is the capital of France. It has 2.1 million inhabitants.".into(),
        schema_name: "facts".into(),
        json_schema: schema(),
        max_tokens: Some(512),
    }
}

fn client(server: &ModelServer) -> ChatClient {
    client_with(server, |_| {})
}

fn client_with(server: &ModelServer, tweak: impl FnOnce(&mut ChatConfig)) -> ChatClient {
    let mut cfg = ChatConfig::new(server.url(), "test-model");
    cfg.timeout = Duration::from_secs(10);
    tweak(&mut cfg);
    ChatClient::new(cfg).expect("client")
}

/// A server that records every request it sees and answers with `reply`.
async fn recording(reply: Reply) -> (ModelServer, Arc<Mutex<Vec<SeenRequest>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let server = ModelServer::start_fn(move |req| {
        log.lock().expect("lock").push(req.clone());
        reply.clone()
    })
    .await;
    (server, seen)
}

fn facts() -> Value {
    json!({"facts": ["Paris is the capital of France", "Paris has 2.1 million inhabitants"]})
}

#[tokio::test]
async fn conforming_answer_with_usage() {
    let (server, _) = recording(Reply::Json(facts())).await;
    let answer = client(&server).complete(&request()).await.expect("answer");
    assert_eq!(answer.value, facts());
    assert_eq!(answer.content, facts().to_string());
    assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
    assert_eq!(answer.model, "test-model");
    assert!(!answer.usage_estimated);
    assert!(answer.usage.prompt_tokens > 0);
    assert!(answer.usage.completion_tokens > 0);
    assert_eq!(
        answer.usage.total_tokens,
        answer.usage.prompt_tokens + answer.usage.completion_tokens
    );
    assert_eq!(server.requests(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn request_carries_the_json_schema_and_no_key_when_unset() {
    let (server, seen) = recording(Reply::Json(facts())).await;
    client(&server).complete(&request()).await.expect("answer");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.seq, 0);
    assert_eq!(r.model, "test-model");
    assert_eq!(r.system, request().system);
    assert_eq!(r.user, request().user);
    assert_eq!(r.response_format.as_deref(), Some("json_schema"));
    assert_eq!(r.schema_name.as_deref(), Some("facts"));
    assert_eq!(r.json_schema.as_ref(), Some(&schema()));
    assert_eq!(r.strict, Some(true));
    assert_eq!(r.max_tokens, Some(512));
    assert_eq!(r.temperature, None);
    assert_eq!(r.authorization, None);
    server.shutdown().await;
}

#[tokio::test]
async fn bearer_key_when_set() {
    let (server, seen) = recording(Reply::Json(facts())).await;
    let c = client_with(&server, |cfg| {
        cfg.api_key = Some(SecretString::from("sk-loopback-key"));
        cfg.temperature = Some(0.0);
    });
    c.complete(&request()).await.expect("answer");
    let r = seen.lock().expect("lock")[0].clone();
    assert_eq!(r.authorization.as_deref(), Some("Bearer sk-loopback-key"));
    assert_eq!(r.temperature, Some(0.0));
    server.shutdown().await;
}

#[tokio::test]
async fn json_object_and_none_modes_put_the_schema_in_the_prompt() {
    let (server, seen) = recording(Reply::Json(facts())).await;
    let object = client_with(&server, |cfg| {
        cfg.response_format = ResponseFormat::JsonObject
    });
    object.complete(&request()).await.expect("answer");
    let none = client_with(&server, |cfg| cfg.response_format = ResponseFormat::None);
    // Without a response_format a server is free to fence its JSON.
    let seen_log = Arc::clone(&seen);
    let answer = none.complete(&request()).await.expect("answer");
    assert_eq!(answer.value, facts());
    let seen = seen_log.lock().expect("lock").clone();
    assert_eq!(seen[0].response_format.as_deref(), Some("json_object"));
    assert_eq!(seen[0].json_schema, None);
    assert!(seen[0].system.contains("\"additionalProperties\":false"));
    assert_eq!(seen[1].response_format, None);
    assert!(seen[1].system.contains("JSON Schema"));
    assert_eq!(seen[1].seq, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn rate_limited_with_retry_after_seconds() {
    let server = ModelServer::start_fn(|_| Reply::rate_limited(7)).await;
    let err = client(&server).complete(&request()).await.expect_err("429");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.to_string().contains("429"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn rate_limited_with_retry_after_date() {
    let until = SystemTime::now() + Duration::from_secs(120);
    let server = ModelServer::start_fn(move |_| Reply::rate_limited_until(until)).await;
    let err = client(&server).complete(&request()).await.expect_err("429");
    assert!(err.is_transient(), "{err}");
    let wait = err.retry_after().expect("retry_after");
    // The date has one-second resolution and the clock moves on: generous bounds.
    assert!(
        wait > Duration::from_secs(60) && wait <= Duration::from_secs(120),
        "{wait:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn server_errors_are_transient() {
    let server = ModelServer::start_fn(|req| match req.seq {
        0 => Reply::error(500, "engine crashed"),
        1 => Reply::Status {
            status: 503,
            retry_after: Some("2".into()),
            body: String::new(),
        },
        2 => Reply::error(502, "bad gateway"),
        _ => Reply::error(408, "request timeout"),
    })
    .await;
    let c = client(&server);
    let e500 = c.complete(&request()).await.expect_err("500");
    assert!(e500.is_transient(), "{e500}");
    assert_eq!(e500.retry_after(), None);
    assert!(e500.to_string().contains("engine crashed"), "{e500}");
    let e503 = c.complete(&request()).await.expect_err("503");
    assert!(e503.is_transient(), "{e503}");
    assert_eq!(e503.retry_after(), Some(Duration::from_secs(2)));
    assert!(
        c.complete(&request())
            .await
            .expect_err("502")
            .is_transient()
    );
    assert!(
        c.complete(&request())
            .await
            .expect_err("408")
            .is_transient()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn client_errors_are_permanent() {
    let server = ModelServer::start_fn(|req| match req.seq {
        0 => Reply::error(400, "schema not supported"),
        1 => Reply::error(401, "invalid api key"),
        2 => Reply::error(404, "model does not exist"),
        _ => Reply::error(422, "unprocessable"),
    })
    .await;
    let c = client(&server);
    for expected in [400u16, 401, 404, 422] {
        match c.complete(&request()).await {
            Err(ChatError::Permanent { status, message }) => {
                assert_eq!(status, Some(expected));
                assert!(!message.is_empty());
            }
            other => panic!("{expected}: expected Permanent, got {other:?}"),
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn server_side_validation_is_permanent() {
    // The loopback server rejects an invalid schema name itself, like a real server.
    let server = ModelServer::start_fn(|_| Reply::Json(json!({}))).await;
    let mut req = request();
    req.schema_name = "has spaces".into();
    match client(&server).complete(&req).await {
        Err(ChatError::Permanent { status, message }) => {
            assert_eq!(status, Some(400));
            assert!(message.contains("json_schema.name"), "{message}");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_hang_is_given_up_as_transient() {
    let server = ModelServer::start_fn(|_| Reply::Hang).await;
    let c = client_with(&server, |cfg| cfg.timeout = Duration::from_millis(300));
    let started = Instant::now();
    let err = c.complete(&request()).await.expect_err("timeout");
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("timeout"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The server notices the client hanging up and stops counting the request in flight
    // (bounded wait: it happens within milliseconds).
    for _ in 0..500 {
        if server.in_flight() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.in_flight(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn unreachable_server_is_transient() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let c = ChatClient::new(ChatConfig::new(format!("http://127.0.0.1:{port}/v1"), "m"))
        .expect("client");
    let err = c.complete(&request()).await.expect_err("refused");
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn truncated_answer_is_malformed_and_kept() {
    let cut = r#"{"facts": ["Paris is the capital of"#;
    let server = ModelServer::start_fn(move |_| Reply::Truncated(cut.into())).await;
    match client(&server).complete(&request()).await {
        Err(ChatError::Malformed {
            message,
            answer,
            usage,
        }) => {
            assert!(message.contains("length"), "{message}");
            assert_eq!(answer, cut);
            assert!(usage.expect("usage").completion_tokens > 0);
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn answer_past_max_tokens_is_cut_by_the_server() {
    let server = ModelServer::start_fn(|_| Reply::Json(json!({"facts": ["x".repeat(400)]}))).await;
    let mut req = request();
    req.max_tokens = Some(10);
    match client(&server).complete(&req).await {
        Err(ChatError::Malformed {
            message, answer, ..
        }) => {
            assert!(message.contains("length"), "{message}");
            assert_eq!(answer.len(), 40);
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn non_json_content_is_malformed() {
    let server =
        ModelServer::start_fn(|_| Reply::Content("Sure! Paris is the capital of France.".into()))
            .await;
    match client(&server).complete(&request()).await {
        Err(ChatError::Malformed {
            message, answer, ..
        }) => {
            assert!(message.contains("not JSON"), "{message}");
            assert_eq!(answer, "Sure! Paris is the capital of France.");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn fenced_json_is_unwrapped() {
    let fenced = format!("```json\n{}\n```", facts());
    let server = ModelServer::start_fn(move |_| Reply::Content(fenced.clone())).await;
    let answer = client(&server).complete(&request()).await.expect("answer");
    assert_eq!(answer.value, facts());
    assert!(answer.content.starts_with("```json"));
    server.shutdown().await;
}

#[tokio::test]
async fn refusal_is_malformed() {
    let server = ModelServer::start_fn(|_| Reply::Refusal("I can't help with that.".into())).await;
    match client(&server).complete(&request()).await {
        Err(ChatError::Malformed {
            message, answer, ..
        }) => {
            assert!(message.contains("refused"), "{message}");
            assert_eq!(answer, "I can't help with that.");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn missing_usage_is_estimated() {
    let body = json!({
        "id": "x", "object": "chat.completion", "created": 0, "model": "served-name",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "{\"facts\": []}"},
                     "finish_reason": "stop"}],
    })
    .to_string();
    let server = ModelServer::start_fn(move |_| Reply::Status {
        status: 200,
        retry_after: None,
        body: body.clone(),
    })
    .await;
    let answer = client(&server).complete(&request()).await.expect("answer");
    assert!(answer.usage_estimated);
    assert!(answer.usage.prompt_tokens > 0 && answer.usage.completion_tokens > 0);
    assert_eq!(answer.model, "served-name");
    server.shutdown().await;
}

#[tokio::test]
async fn no_choices_is_malformed() {
    let server = ModelServer::start_fn(|_| Reply::Status {
        status: 200,
        retry_after: None,
        body: json!({"id": "x", "object": "chat.completion", "choices": []}).to_string(),
    })
    .await;
    let err = client(&server)
        .complete(&request())
        .await
        .expect_err("no choices");
    assert!(matches!(err, ChatError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("no choices"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn body_over_the_cap_is_malformed() {
    let big = json!({"facts": ["y".repeat(64 * 1024)]});
    let server = ModelServer::start_fn(move |_| Reply::Json(big.clone())).await;
    let c = client_with(&server, |cfg| cfg.max_answer_bytes = 16 * 1024);
    // No max_tokens, so the server does not cut the answer itself.
    let mut req = request();
    req.max_tokens = None;
    match c.complete(&req).await {
        Err(ChatError::Malformed { message, .. }) => {
            assert!(
                message.contains("exceeds the cap of 16384 bytes"),
                "{message}"
            );
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    // The same reply within the default cap is fine.
    client(&server).complete(&req).await.expect("answer");
    server.shutdown().await;
}

#[tokio::test]
async fn concurrency_high_water_mark_reaches_32() {
    let server =
        ModelServer::start_fn(|_| Reply::delayed(Duration::from_millis(200), Reply::Json(facts())))
            .await;
    let c = client(&server);
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.complete(&request()).await })
        })
        .collect();
    for call in calls {
        call.await.expect("join").expect("answer");
    }
    assert_eq!(server.requests(), 32);
    assert_eq!(server.max_in_flight(), 32);
    assert_eq!(server.in_flight(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_releases_a_hang_and_stops_the_server() {
    let server = ModelServer::start_fn(|_| Reply::Hang).await;
    let c = client_with(&server, |cfg| cfg.timeout = Duration::from_secs(30));
    let url = server.url();
    let call = tokio::spawn(async move { c.complete(&request()).await });
    // Bounded wait for the request to arrive before shutting down.
    for _ in 0..500 {
        if server.in_flight() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.in_flight(), 1);
    let started = Instant::now();
    server.shutdown().await;
    let err = call.await.expect("join").expect_err("released with 503");
    assert!(err.is_transient(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let after = ChatClient::new(ChatConfig::new(url, "m")).expect("client");
    assert!(
        after
            .complete(&request())
            .await
            .expect_err("stopped")
            .is_transient()
    );
}

#[tokio::test]
async fn chunked_body_over_the_cap_is_cut_while_streaming() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A server that declares no length and streams chunks: the cap must stop the read
    // rather than the end of the body.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; 64 * 1024];
        let _ = sock.read(&mut buf).await;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        if sock.write_all(head.as_bytes()).await.is_err() {
            return 0;
        }
        let chunk = format!("{:x}\r\n{}\r\n", 1024, "z".repeat(1024));
        let mut sent = 0;
        // Bounded: at most 64 MiB (more than loopback socket buffers absorb), and the
        // loop ends as soon as the client hangs up.
        for _ in 0..65_536 {
            if sock.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let mut cfg = ChatConfig::new(format!("http://{addr}/v1"), "m");
    cfg.max_answer_bytes = 8 * 1024;
    cfg.timeout = Duration::from_secs(10);
    let c = ChatClient::new(cfg).expect("client");
    match c.complete(&request()).await {
        Err(ChatError::Malformed {
            message, answer, ..
        }) => {
            assert!(
                message.contains("exceeds the cap of 8192 bytes"),
                "{message}"
            );
            assert!(answer.starts_with("zzz"));
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    drop(c);
    let sent = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server ends")
        .expect("join");
    assert!(
        sent < 65_536,
        "the client read the whole body ({sent} chunks)"
    );
}
