//! The loopback model server on its own: it validates requests and answers like a real
//! OpenAI-compatible server, checked with a plain HTTP client.

use std::time::Duration;

use chat_client::loopback::{ModelServer, Reply, ServerOptions, responder};
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    // reqwest is built without a default TLS provider; plain HTTP needs none, but building
    // the client does.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn good() -> Value {
    json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
        ],
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "greeting", "strict": true,
                                            "schema": {"type": "object"}}},
        "max_tokens": 100,
    })
}

async fn post(server: &ModelServer, body: &Value) -> (u16, Value) {
    let resp = http()
        .post(format!("{}/chat/completions", server.url()))
        .json(body)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json body"))
}

#[tokio::test]
async fn answers_a_valid_request_in_openai_shape() {
    let server = ModelServer::start_fn(|req| {
        assert_eq!(req.system, "Be brief.");
        assert_eq!(req.user, "Hello");
        Reply::Json(json!({"greeting": "hi"}))
    })
    .await;
    let (status, body) = post(&server, &good()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "m");
    assert!(body["id"].is_string() && body["created"].is_u64());
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "{\"greeting\":\"hi\"}");
    assert_eq!(choice["finish_reason"], "stop");
    let usage = &body["usage"];
    let (p, c) = (
        usage["prompt_tokens"].as_u64().expect("prompt"),
        usage["completion_tokens"].as_u64().expect("completion"),
    );
    assert!(p > 0 && c > 0);
    assert_eq!(usage["total_tokens"].as_u64(), Some(p + c));
    server.shutdown().await;
}

#[tokio::test]
async fn rejects_invalid_requests_with_openai_errors() {
    let server = ModelServer::start(responder(|_| Reply::Json(json!({})))).await;
    let mut cases: Vec<(&str, Value)> = Vec::new();
    let mut v = good();
    v.as_object_mut().expect("object").remove("model");
    cases.push(("missing_model", v));
    let mut v = good();
    v["messages"] = json!([]);
    cases.push(("empty_array", v));
    let mut v = good();
    v.as_object_mut().expect("object").remove("messages");
    cases.push(("missing_required_parameter", v));
    let mut v = good();
    v["messages"][0]["role"] = json!("wizard");
    cases.push(("invalid_value", v));
    let mut v = good();
    v["response_format"] = json!({"type": "xml"});
    cases.push(("invalid_value", v));
    let mut v = good();
    v["response_format"]["json_schema"]["schema"] = json!("an object, honest");
    cases.push(("invalid_value", v));
    let mut v = good();
    v["response_format"]["json_schema"] = json!([1, 2]);
    cases.push(("invalid_value", v));
    let mut v = good();
    v["max_tokens"] = json!(0);
    cases.push(("invalid_value", v));
    let mut v = good();
    v["temperature"] = json!(9);
    cases.push(("invalid_value", v));
    let n = cases.len() as u64;
    for (code, body) in cases {
        let (status, reply) = post(&server, &body).await;
        assert_eq!(status, 400, "{code}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{reply}");
        assert_eq!(reply["error"]["type"], "invalid_request_error");
        assert!(reply["error"]["message"].is_string());
    }
    // Not JSON at all.
    let resp = http()
        .post(format!("{}/chat/completions", server.url()))
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(server.requests(), n + 1);
    server.shutdown().await;
}

#[tokio::test]
async fn lists_models_and_checks_the_key_and_context_window() {
    let options = ServerOptions {
        models: vec!["qwen".into(), "llama".into()],
        context_window: Some(200),
        api_key: Some("sk-right".into()),
    };
    let server = ModelServer::try_start(responder(|_| Reply::Json(json!({}))), options)
        .await
        .expect("start");
    let models: Value = http()
        .get(format!("{}/models", server.url()))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][1]["id"], "llama");

    let url = format!("{}/chat/completions", server.url());
    let resp = http().post(&url).json(&good()).send().await.expect("send");
    assert_eq!(resp.status().as_u16(), 401);
    let resp = http()
        .post(&url)
        .bearer_auth("sk-right")
        .json(&good())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let mut long = good();
    long["messages"][1]["content"] = json!("word ".repeat(200));
    let resp = http()
        .post(&url)
        .bearer_auth("sk-right")
        .json(&long)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    server.shutdown().await;
}

#[tokio::test]
async fn status_replies_carry_retry_after() {
    let server = ModelServer::start_fn(|_| Reply::rate_limited(3)).await;
    let resp = http()
        .post(format!("{}/chat/completions", server.url()))
        .json(&good())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("3")
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    server.shutdown().await;
}

#[tokio::test]
async fn dropping_the_server_stops_it() {
    let server = ModelServer::start_fn(|_| Reply::Json(json!({}))).await;
    let url = format!("{}/chat/completions", server.url());
    drop(server);
    // Bounded: the accept loop ends shortly after the stop signal.
    let mut refused = false;
    for _ in 0..100 {
        if http().post(&url).json(&good()).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "server still answering after drop");
}
