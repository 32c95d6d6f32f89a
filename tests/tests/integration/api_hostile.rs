//! The admin API under hostile use, over real HTTP on 127.0.0.1 with real Postgres and
//! Redis: one test per way it used to break (slow and idle connections, unbounded answers,
//! input reaching SQL, overload as 500, an OpenAPI document that disagreed, and the smaller
//! leaks: echoed cursors, arrays for objects, routes visible without a key).

use std::time::{Duration, Instant};

use integration_tests::api::{ApiEnv, TEST_KEY, json_of};
use integration_tests::{TestDb, TestRedis, settings_for};
use pipeline_ops::Services;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `within` passes); returns what it sent
/// and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&buf).into_owned(), true),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return (String::from_utf8_lossy(&buf).into_owned(), false),
        }
    }
}

#[tokio::test]
async fn idle_and_half_sent_connections_cannot_starve_keyed_clients() -> anyhow::Result<()> {
    let env = ApiEnv::start(|s| {
        s.api.max_connections = 20;
        s.api.header_timeout_ms = 600;
        s.api.idle_timeout_ms = 1500;
        s.api.body_timeout_ms = 600;
    })
    .await?;
    let addr = env.base.trim_start_matches("http://").to_owned();

    // A promised body that never comes, with a key: 408 once the body timeout passes.
    let mut keyed_body = TcpStream::connect(&addr).await?;
    keyed_body
        .write_all(
            format!(
                "POST /api/v1/scrape HTTP/1.1\r\nhost: x\r\nx-api-key: {TEST_KEY}\r\n\
                 content-type: application/json\r\ncontent-length: 5000\r\n\r\n{{\"u"
            )
            .as_bytes(),
        )
        .await?;
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut keyed_body, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"detail\""), "{answer}");
    assert!(closed, "the connection is closed after a 408");
    assert!(started.elapsed() < Duration::from_secs(3));

    // The same without a key: 401 at once, the body never read.
    let mut keyless_body = TcpStream::connect(&addr).await?;
    keyless_body
        .write_all(
            b"POST /api/v1/scrape HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999\r\n\r\nab",
        )
        .await?;
    let (answer, _) = read_until_closed(&mut keyless_body, Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    // Half-sent headers: closed after the header timeout.
    let mut half = TcpStream::connect(&addr).await?;
    half.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await?;
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut half, Duration::from_secs(5)).await;
    assert!(closed, "a half-sent head is not held open");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Three times the cap of idle and half-sent connections, held open by the client.
    let mut hogs = Vec::new();
    for i in 0..60 {
        let mut s = TcpStream::connect(&addr).await?;
        if i % 2 == 0 {
            s.write_all(b"GET /api/v1/jobs HTTP/1.1\r\nhost: x\r\n")
                .await?;
        }
        hogs.push(s);
    }
    // Keyed clients and the probes are still answered, promptly, on fresh connections.
    for _ in 0..10 {
        let client = integration_tests::http_client();
        let started = Instant::now();
        let resp = client
            .get(format!("{}/api/v1/jobs?limit=1", env.base))
            .header("X-API-Key", TEST_KEY)
            .send()
            .await?;
        assert_eq!(resp.status().as_u16(), 200);
        let health = client.get(format!("{}/health", env.base)).send().await?;
        assert_eq!(health.status().as_u16(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    // The server holds no more than its cap: most of the hogs were closed.
    let mut closed = 0;
    for s in &mut hogs {
        if read_until_closed(s, Duration::from_millis(50)).await.1 {
            closed += 1;
        }
    }
    assert!(
        closed >= 40,
        "only {closed} of 60 excess connections closed"
    );

    // An idle keep-alive connection is not held: the wait for its next head is bounded (by
    // the header timeout, which hyper starts as it waits, before the idle timeout).
    let mut idle = TcpStream::connect(&addr).await?;
    idle.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await?;
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "idle keep-alive is not held forever");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn lists_are_summaries_and_refused_urls_are_paged() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let long_bad: Vec<String> = (0..250)
        .map(|i| format!("ftp://example.com/{i}/{}", "x".repeat(1900)))
        .collect();
    let mut urls = long_bad.clone();
    urls.push("https://example.com/ok".into());
    for _ in 0..3 {
        let (status, body) = json_of(
            env.req(Method::POST, "/api/v1/scrape")
                .json(&json!({"urls": urls}))
                .send()
                .await?,
        )
        .await?;
        assert_eq!(status, 202, "{body}");
    }
    let resp = env
        .req(Method::GET, "/api/v1/jobs?limit=1000")
        .send()
        .await?;
    let text = resp.text().await?;
    assert!(
        text.len() < 10_000,
        "three jobs of 250 refused URLs list in {} bytes",
        text.len()
    );
    let page: Value = serde_json::from_str(&text)?;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(items[0].get("payload").is_none(), "{}", items[0]);
    assert_eq!(items[0]["counts"]["invalid_urls"], 250);

    let job = items[0]["id"].as_str().unwrap();
    let (status, detail) = env.get(&format!("/api/v1/jobs/{job}")).await?;
    assert_eq!(status, 200);
    assert_eq!(detail["invalid_urls"].as_array().unwrap().len(), 100);
    assert_eq!(detail["invalid_urls_next_offset"], 100);
    assert_eq!(detail["sources"].as_array().unwrap().len(), 1);
    assert!(detail["sources_next_offset"].is_null());
    // Refused URLs are recorded cut, not whole.
    let first = detail["invalid_urls"][0]["url"].as_str().unwrap();
    assert!(first.chars().count() <= 301, "{}", first.len());

    let (status, last) = env
        .get(&format!(
            "/api/v1/jobs/{job}/invalid-urls?limit=100&offset=200"
        ))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(last["items"].as_array().unwrap().len(), 50);
    assert!(last["next_offset"].is_null());
    assert!(
        last["items"][0]["url"]
            .as_str()
            .unwrap()
            .starts_with("ftp://example.com/200/")
    );
    let (status, sources) = env
        .get(&format!("/api/v1/jobs/{job}/sources?limit=1"))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(sources["items"][0]["url"], "https://example.com/ok");
    let (status, _) = env
        .get(&format!("/api/v1/jobs/{job}/sources?limit=1001"))
        .await?;
    assert_eq!(status, 422);

    // A source's events are paged too.
    let source = sources["items"][0]["id"].as_str().unwrap();
    let (status, events) = env
        .get(&format!("/api/v1/sources/{source}/events?limit=1"))
        .await?;
    assert_eq!(status, 200, "{events}");
    assert_eq!(events["events"].as_array().unwrap().len(), 1);
    let after = events["next_after"]
        .as_i64()
        .expect("a full page has a next");
    let (_, rest) = env
        .get(&format!("/api/v1/sources/{source}/events?after={after}"))
        .await?;
    assert!(rest["next_after"].is_null());
    Ok(())
}

#[tokio::test]
async fn hostile_input_is_refused_before_sql_and_500s_carry_no_internals() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let post = |body: Value| env.req(Method::POST, "/api/v1/scrape").json(&body);
    for body in [
        json!({"urls": ["https://example.com/"], "project": "a\u{0}b"}),
        json!({"urls": ["https://example.com/"], "project": "p".repeat(10_000)}),
        json!({"urls": ["https://example.com/"], "source_group": "g\u{0}"}),
        json!({"urls": ["https://example.com/"], "source_group": "g".repeat(201)}),
    ] {
        let (status, answer) = json_of(post(body.clone()).send().await?).await?;
        assert_eq!(status, 422, "{body}: {answer}");
        assert!(answer["detail"].is_string());
    }
    let (status, answer) = env.get("/api/v1/jobs?type=a%00b").await?;
    assert_eq!(status, 422, "{answer}");

    // A URL that passes a length check as typed but not once normalized, a URL with a NUL,
    // and a good one: the good one goes ahead, the others are refused one by one.
    let expanding = format!("https://example.com/{}", "\"".repeat(2000));
    let (status, answer) = json_of(
        post(
            json!({"urls": [expanding, "https://example.com/a\u{0}b", "https://example.com/fine"]}),
        )
        .send()
        .await?,
    )
    .await?;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["sources"].as_array().unwrap().len(), 1);
    let invalid = answer["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 2);
    assert!(
        invalid[0]["reason"]
            .as_str()
            .unwrap()
            .contains("normalized")
    );
    assert!(invalid[1]["reason"].as_str().unwrap().contains("control"));
    assert!(invalid[1]["url"].as_str().unwrap().contains("\\u{0}"));
    let job = answer["job_id"].as_str().unwrap();
    let (status, detail) = env.get(&format!("/api/v1/jobs/{job}")).await?;
    assert_eq!(status, 200);
    assert_eq!(detail["invalid_urls"].as_array().unwrap().len(), 2);

    // A database failure: a 500 that names a request id and nothing of the cause.
    let source = answer["sources"][0]["source_id"]
        .as_str()
        .unwrap()
        .to_owned();
    sqlx::query("ALTER TABLE job_events RENAME TO job_events_gone")
        .execute(&env.db.pool)
        .await?;
    let resp = env
        .req(Method::GET, &format!("/api/v1/sources/{source}/events"))
        .send()
        .await?;
    let header_id = resp
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = json_of(resp).await?;
    assert_eq!(status, 500);
    assert_eq!(body["detail"], "internal error");
    assert!(!body.to_string().contains("job_events"), "{body}");
    assert_eq!(body["request_id"].as_str(), header_id.as_deref());
    Ok(())
}

#[tokio::test]
async fn overload_is_503_with_retry_after_and_large_submissions_all_finish() -> anyhow::Result<()> {
    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let mut settings = settings_for(&db, &redis);
    settings.database.max_connections = 3;
    // A small pool whose wait is short: the overload case below.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(Duration::from_millis(500))
        .connect(&db.url)
        .await?;
    let services = Services::with_pools(settings, pool.clone(), redis.pool.clone())?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let (addr, _task) = pipeline_api::serve(
        services,
        Some(TEST_KEY.to_owned().into()),
        "127.0.0.1:0".parse()?,
        cancel.clone(),
    )
    .await?;
    let base = format!("http://{addr}");
    let client = integration_tests::http_client();

    // Every connection held elsewhere: a request waits its bounded time, then 503.
    let held = vec![
        pool.acquire().await?,
        pool.acquire().await?,
        pool.acquire().await?,
    ];
    let resp = client
        .get(format!("{base}/api/v1/jobs"))
        .header("X-API-Key", TEST_KEY)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = resp.json().await?;
    assert!(!body.to_string().contains("pool"), "{body}");
    drop(held);

    // Six concurrent 3,000-URL submissions over three connections, half their URLs shared
    // (so they contend for the same rows): all accepted, none 500.
    let mut tasks = Vec::new();
    for n in 0..6 {
        let client = client.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let urls: Vec<String> = (0..3000)
                .map(|i| {
                    if i % 2 == 0 {
                        format!("https://shared.example/{i}")
                    } else {
                        format!("https://own{n}.example/{i}")
                    }
                })
                .collect();
            // A 503 with Retry-After is the server shedding load, which a client retries
            // (a few times, bounded); what must never happen is a 500 or a lost URL.
            let mut tries = 0;
            loop {
                tries += 1;
                let resp = client
                    .post(format!("{base}/api/v1/scrape"))
                    .header("X-API-Key", TEST_KEY)
                    .json(&json!({"urls": urls}))
                    .send()
                    .await?;
                let status = resp.status().as_u16();
                let body: Value = resp.json().await?;
                if status == 503 && tries < 5 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                break anyhow::Ok((status, body));
            }
        }));
    }
    for t in tasks {
        let (status, body) = t.await??;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["sources"].as_array().unwrap().len(), 3000);
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM sources")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(total, 1500 + 6 * 1500);
    cancel.cancel();
    Ok(())
}

#[tokio::test]
async fn openapi_states_bounds_and_every_status() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let (_, doc) = json_of(env.req_no_key(Method::GET, "/openapi.json").send().await?).await?;
    let param = |path: &str, name: &str| -> Value {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} {name}"))["schema"]
            .clone()
    };
    let dlq_limit = param("/api/v1/dlq/{kind}", "limit");
    assert_eq!(dlq_limit["minimum"], 1, "{dlq_limit}");
    assert_eq!(dlq_limit["maximum"], 1000);
    let jobs_limit = param("/api/v1/jobs", "limit");
    assert_eq!(jobs_limit["minimum"], 1);
    assert_eq!(jobs_limit["maximum"], 1000);
    let urls = &doc["components"]["schemas"]["ScrapeRequest"]["properties"]["urls"];
    assert_eq!(urls["minItems"], 1, "{urls}");
    assert_eq!(urls["maxItems"], 10000);
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            for status in ["401", "414", "431", "500", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
            if op.get("requestBody").is_some() {
                for status in ["408", "413", "415"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} lacks {status}"
                    );
                }
            }
        }
    }

    // 414 and 431 answer `{"detail"}` like every other error.
    let (status, body) = env
        .get(&format!("/api/v1/dlq/scrape?cursor={}", "c".repeat(9000)))
        .await?;
    assert_eq!(status, 414);
    assert!(body["detail"].is_string());
    let mut req = env.req(Method::GET, "/api/v1/jobs");
    for i in 0..120 {
        req = req.header(format!("x-filler-{i}"), "1");
    }
    let (status, body) = json_of(req.send().await?).await?;
    assert_eq!(status, 431);
    assert!(body["detail"].is_string());
    Ok(())
}

#[tokio::test]
async fn small_leaks_are_closed() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    // A bad cursor is not echoed whole.
    let cursor = "z".repeat(5000);
    let resp = env
        .req(Method::GET, &format!("/api/v1/dlq/scrape?cursor={cursor}"))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 422);
    let text = resp.text().await?;
    assert!(text.len() < 400, "{} bytes", text.len());

    // An array is not an object.
    let (status, body) = json_of(
        env.req(Method::POST, "/api/v1/scrape")
            .header("content-type", "application/json")
            .body(r#"[["https://example.com/"], null, "p", null]"#)
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 422, "{body}");

    // A key with a non-ASCII byte is invalid, not missing.
    let (status, body) = json_of(
        env.req_no_key(Method::GET, "/api/v1/jobs")
            .header(
                "X-API-Key",
                reqwest::header::HeaderValue::from_bytes(b"k\xffey")?,
            )
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 401);
    assert_eq!(body["detail"], "invalid API key");

    // Without a key nothing under /api/v1 is told apart: unknown routes and wrong methods
    // are 401 too. With the key they are 404 and 405.
    for (method, path) in [
        (Method::GET, "/api/v1/no-such-route"),
        (Method::DELETE, "/api/v1/jobs"),
        (Method::PUT, "/api/v1/scrape"),
        (Method::GET, "/api"),
    ] {
        let (status, _) = json_of(env.req_no_key(method.clone(), path).send().await?).await?;
        assert_eq!(status, 401, "{method} {path}");
    }
    let (status, _) = env.get("/api/v1/no-such-route").await?;
    assert_eq!(status, 404);
    let (status, _) = json_of(env.req(Method::DELETE, "/api/v1/jobs").send().await?).await?;
    assert_eq!(status, 405);
    Ok(())
}

#[tokio::test]
async fn a_newcomer_is_refused_with_503_only_when_every_connection_is_busy() -> anyhow::Result<()> {
    let env = ApiEnv::start(|s| {
        s.api.max_connections = 2;
        s.api.body_timeout_ms = 3000;
    })
    .await?;
    let addr = env.base.trim_start_matches("http://").to_owned();
    // Two keyed requests in progress (their bodies are still coming): nothing to shed.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&addr).await?;
        s.write_all(
            format!(
                "POST /api/v1/scrape HTTP/1.1\r\nhost: x\r\nx-api-key: {TEST_KEY}\r\n\
                 content-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await?;
        busy.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut newcomer = TcpStream::connect(&addr).await?;
    let (answer, closed) = read_until_closed(&mut newcomer, Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(closed);
    // Once they are answered (408), room again.
    for s in &mut busy {
        let (answer, _) = read_until_closed(s, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    let (status, _) = env.get("/api/v1/jobs").await?;
    assert_eq!(status, 200);
    Ok(())
}

/// A DLQ page is bounded in bytes, not only in items: an item with a huge payload (or a huge
/// worker id) is listed with its fields cut and marked, and a retry still redrives the
/// whole stored message. Before, 20 items of 440 KB payloads made an 8.7 MB page.
#[tokio::test]
async fn dlq_pages_are_bounded_in_bytes() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let dlq = env.services.dlq(pipeline_ops::Family::Scrape);
    let huge = "x".repeat(440_000);
    let mut ids = Vec::new();
    for i in 0..20 {
        let id = format!("huge-{i}");
        let mut item = dlq_core::DlqItem::new(
            id.clone(),
            "scrape",
            "boom",
            dlq_core::ErrorKind::Permanent,
            json!({"source_id": id, "blob": huge}),
        );
        item.worker_id = Some("w".repeat(100_000));
        dlq.push(&item).await?;
        ids.push(id);
    }
    let resp = env
        .req(Method::GET, "/api/v1/dlq/scrape?limit=20")
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await?;
    assert!(
        text.len() < 200_000,
        "20 items with 440 KB payloads list in {} bytes",
        text.len()
    );
    let page: Value = serde_json::from_str(&text)?;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    for item in items {
        assert_eq!(item["payload_truncated"], true, "{item}");
        assert!(item["payload"].as_str().unwrap().ends_with('…'));
        assert!(item["worker_id"].as_str().unwrap().chars().count() <= 201);
    }
    // The retry redrives the whole stored message, not the cut one.
    let (status, body) = env
        .post(&format!("/api/v1/dlq/scrape/{}/retry", ids[0]))
        .await?;
    assert_eq!(status, 200, "{body}");
    let queue = env.services.queue(pipeline_ops::Family::Scrape);
    let held = queue.reserve(1).await?;
    assert_eq!(held.len(), 1);
    let body: Value = serde_json::from_str(&held[0].body)?;
    assert_eq!(body["blob"].as_str().map(str::len), Some(440_000));
    // A small payload is shown whole.
    let small = dlq_core::DlqItem::new(
        "small".to_owned(),
        "scrape",
        "boom",
        dlq_core::ErrorKind::Permanent,
        json!({"source_id": "small"}),
    );
    dlq.push(&small).await?;
    let (_, page) = env.get("/api/v1/dlq/scrape?limit=1").await?;
    assert_eq!(page["items"][0]["payload"], json!({"source_id": "small"}));
    assert_eq!(page["items"][0]["payload_truncated"], false);
    Ok(())
}
