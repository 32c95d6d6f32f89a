//! Console sign-in against a hostile client, over real HTTP: key guessing is braked per
//! client address (through the sign-in form and `X-API-Key` alike), without locking the
//! real key out for anyone else; a refusal is logged with the client's address; a `next`
//! that is not a console path (CR/LF, NUL, another origin, `..`) is never followed and
//! never a 500.

use std::net::IpAddr;
use std::time::Duration;

use integration_tests::api::{ApiEnv, TEST_KEY};
use integration_tests::{binary, http_client, redis_url};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, RETRY_AFTER};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::console_http::{csrf_of, set_cookie};

/// A client whose connections come from `from` (any 127.x address reaches a server on
/// 127.0.0.1 over loopback), so one test can be several client addresses.
fn client_from(from: &str) -> anyhow::Result<reqwest::Client> {
    pipeline_core::install_crypto_provider();
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(from.parse::<IpAddr>()?)
        .build()?)
}

/// A sign-in form's token (its cookie and its field hold the same value).
async fn form_token(c: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let form = c.get(format!("{base}/ui/login")).send().await?;
    assert_eq!(form.status(), StatusCode::OK);
    let (token, _) = set_cookie(&form, "pipeline_login").expect("a sign-in cookie");
    assert_eq!(csrf_of(&form.text().await?), token);
    Ok(token)
}

/// Posts the sign-in form with `key` and the raw (already encoded) `next`.
async fn post_sign_in(
    c: &reqwest::Client,
    base: &str,
    token: &str,
    key: &str,
    next: &str,
) -> anyhow::Result<reqwest::Response> {
    Ok(c.post(format!("{base}/ui/login"))
        .header(COOKIE, format!("pipeline_login={token}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}&key={}&next={next}", url_escape(key)))
        .send()
        .await?)
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds")
}

#[tokio::test]
async fn guessing_keys_is_braked_per_address_and_the_real_key_works_elsewhere() -> anyhow::Result<()>
{
    let env = ApiEnv::start(|_| {}).await?;
    let guesser = client_from("127.0.0.1")?;
    let token = form_token(&guesser, &env.base).await?;
    // A burst of different wrong keys, all at once, as the probe sent them.
    let answers = futures::future::join_all((0..200).map(|i| {
        let (guesser, token, base) = (&guesser, &token, &env.base);
        async move {
            post_sign_in(guesser, base, token, &format!("guess-{i}"), "%2Fui%2F")
                .await
                .map(|r| r.status())
        }
    }))
    .await;
    let mut refused = 0;
    let mut throttled = 0;
    for a in answers {
        match a? {
            StatusCode::UNAUTHORIZED => refused += 1,
            StatusCode::TOO_MANY_REQUESTS => throttled += 1,
            other => panic!("a guess answered {other}"),
        }
    }
    // Ten different wrong keys are checked and the rest are not (a few more only if the
    // burst outlasted a block on a slow machine: each ends with one more check).
    assert!(
        (10..=13).contains(&refused) && refused + throttled == 200,
        "{refused} refused, {throttled} throttled"
    );
    // The right key from the guessing address: refused unchecked, with when to come back.
    let resp = post_sign_in(&guesser, &env.base, &token, TEST_KEY, "%2Fui%2F").await?;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(set_cookie(&resp, "pipeline_session").is_none());
    let wait = retry_after(&resp);
    assert!((1..=8).contains(&wait), "Retry-After {wait}");
    let page = resp.text().await?;
    assert!(
        page.contains("Too many wrong keys from your address"),
        "{page}"
    );
    // The API's door is the same door: keys from the guessing address are not checked.
    let resp = guesser
        .get(format!("{}/api/v1/dlq/stats", env.base))
        .header("X-API-Key", TEST_KEY)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&resp) >= 1);
    let body: serde_json::Value = resp.json().await?;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("too many wrong API keys"),
        "{body}"
    );

    // The operator, elsewhere, signs in at once and the API takes the key from there.
    let operator = client_from("127.0.0.2")?;
    let t2 = form_token(&operator, &env.base).await?;
    let resp = post_sign_in(&operator, &env.base, &t2, TEST_KEY, "%2Fui%2Fjobs").await?;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/ui/jobs");
    assert!(set_cookie(&resp, "pipeline_session").is_some());
    let resp = operator
        .get(format!("{}/api/v1/dlq/stats", env.base))
        .header("X-API-Key", TEST_KEY)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);

    // Once the block has run out, one more guess is checked: wrong, and the block doubles;
    // then the right key works from the guessing address too.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let resp = post_sign_in(&guesser, &env.base, &token, "guess-after", "%2Fui%2F").await?;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = post_sign_in(&guesser, &env.base, &token, TEST_KEY, "%2Fui%2F").await?;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let doubled = retry_after(&resp);
    assert!(
        doubled > wait,
        "the block doubles: {wait} s, then {doubled} s"
    );
    tokio::time::sleep(Duration::from_secs(doubled)).await;
    let resp = post_sign_in(&guesser, &env.base, &token, TEST_KEY, "%2Fui%2F").await?;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    Ok(())
}

#[tokio::test]
async fn the_same_wrong_key_again_and_again_is_not_guessing() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let c = client_from("127.0.0.3")?;
    let token = form_token(&c, &env.base).await?;
    // A client stuck with an old key, or a tester sending one invalid value: plain 401s.
    for _ in 0..30 {
        let resp = c
            .get(format!("{}/api/v1/jobs", env.base))
            .header("X-API-Key", "an-old-key")
            .send()
            .await?;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let resp = post_sign_in(&c, &env.base, &token, "an-old-key", "%2Fui%2F").await?;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    // A missing key is no guess either.
    for _ in 0..30 {
        let resp = c.get(format!("{}/api/v1/jobs", env.base)).send().await?;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let resp = post_sign_in(&c, &env.base, &token, TEST_KEY, "%2Fui%2F").await?;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    // The document says what a throttled key check answers.
    let doc: serde_json::Value = http_client()
        .get(format!("{}/openapi.json", env.base))
        .send()
        .await?
        .json()
        .await?;
    let throttled = &doc["paths"]["/api/v1/jobs"]["get"]["responses"]["429"];
    assert!(
        throttled["headers"]["Retry-After"].is_object(),
        "{throttled}"
    );
    Ok(())
}

#[tokio::test]
async fn a_next_that_is_not_a_console_path_is_never_followed_nor_a_500() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let c = client_from("127.0.0.1")?;
    let token = form_token(&c, &env.base).await?;
    for (next, to) in [
        ("%2Fui%2Fjobs%3Fstatus%3Dfailed", "/ui/jobs?status=failed"),
        ("%2Fui%2F%0D%0ASet-Cookie%3A%20x%3Dy", "/ui/"),
        ("%2Fui%2F%0A", "/ui/"),
        ("%2Fui%2Fjobs%00", "/ui/"),
        ("%2Fui%2F%20x", "/ui/"),
        ("https%3A%2F%2Fevil.example%2Fui%2F", "/ui/"),
        ("%2F%2Fevil.example%2Fui%2F", "/ui/"),
        ("%2Fui%2F..%2Fapi%2Fv1%2Fjobs", "/ui/"),
        ("%2Fui%2F..%2Fopenapi.json", "/ui/"),
        ("%2Fui%2F%252e%252e%2Fopenapi.json", "/ui/"),
        ("%2Fui%2F%5C%5Cevil.example", "/ui/"),
        ("%2Fui%2Fdlq%2F..%2Fjobs", "/ui/jobs"),
    ] {
        // The form carries it through unharmed...
        let resp = c
            .get(format!("{}/ui/login?next={next}", env.base))
            .send()
            .await?;
        assert_eq!(resp.status(), StatusCode::OK, "GET next={next}");
        let page = resp.text().await?;
        assert!(
            page.contains(&format!(
                "name=\"next\" value=\"{}\"",
                to.replace('&', "&amp;")
            )),
            "next={next}: {page}"
        );
        // ...and the sign-in goes there, or home.
        let resp = post_sign_in(&c, &env.base, &token, TEST_KEY, next).await?;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "POST next={next}");
        assert_eq!(resp.headers()[LOCATION], to, "next={next}");
    }
    Ok(())
}

#[tokio::test]
async fn a_refused_sign_in_is_logged_with_the_client_address() -> anyhow::Result<()> {
    let env = ApiEnv::start(|_| {}).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut api = tokio::process::Command::new(binary("pipeline-api"))
        .env("DATABASE_URL", &env.db.url)
        .env("REDIS_URL", redis_url())
        .env("PIPELINE__REDIS__KEY_PREFIX", &env.redis.prefix)
        .env("PIPELINE__API__BIND", format!("127.0.0.1:{port}"))
        .env("PIPELINE__EMBEDDING__BACKEND", "hashing")
        .env("PIPELINE__TELEMETRY__FORMAT", "json")
        .env("PIPELINE_API_KEY", TEST_KEY)
        .env("RUST_LOG", "info")
        .env_remove("PIPELINE_CONFIG")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(api.stderr.take().expect("piped")).lines();
    let base = format!("http://127.0.0.1:{port}");
    let c = client_from("127.0.0.4")?;
    integration_tests::api::wait_for(Duration::from_secs(60), || async {
        Ok(c.get(format!("{base}/health"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success()))
    })
    .await?;
    let token = form_token(&c, &base).await?;
    let resp = post_sign_in(&c, &base, &token, "not-the-key", "%2Fui%2F").await?;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = c
        .get(format!("{base}/api/v1/jobs"))
        .header("X-API-Key", "not-the-key-either")
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        let mut console = false;
        let mut api_door = false;
        while let Some(line) = lines.next_line().await? {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let msg = v["message"].as_str().unwrap_or("").to_owned();
            if msg.contains("refused: wrong API key") {
                assert_eq!(v["client"], "127.0.0.4", "{line}");
                assert!(
                    !line.contains("not-the-key"),
                    "a wrong key in the log: {line}"
                );
                console |= msg.starts_with("console sign-in");
                api_door |= msg.starts_with("API request");
                seen.push(line);
            }
            if console && api_door {
                return Ok::<_, anyhow::Error>(());
            }
        }
        anyhow::bail!("the log ended")
    })
    .await;
    assert!(
        matches!(found, Ok(Ok(()))),
        "no refusal with the client address in the log: {found:?} {seen:?}"
    );
    api.start_kill()?;
    Ok(())
}
