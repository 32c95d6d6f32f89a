//! Console sign-in: the API key, checked once, becomes a session.
//!
//! A session is a random 256-bit id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure`
//! when the request came over TLS, as a TLS-terminating proxy says with
//! `X-Forwarded-Proto: https`), and a Redis key `P{console}:session:<id>` that expires after
//! [`SESSION_TTL`]. Keeping sessions in Redis rather than in a signed cookie is what makes
//! sign-out final (the key is deleted; the old cookie is worth nothing) and lets several API
//! replicas share them.
//!
//! Every state-changing request carries the session's CSRF token (a form field `csrf`, or
//! the `X-CSRF-Token` header), compared in constant time; `SameSite=Strict` is the second
//! line. The sign-in form itself is protected by a double-submit token (a cookie and a
//! field that must match), so another site cannot sign a browser in under its own key.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use std::net::SocketAddr;

use axum::extract::ConnectInfo;

use crate::AppState;
use crate::auth::{Verdict, constant_time_eq, log_refusal, retry_after_secs};
use crate::server::ConnMark;

use super::html;

/// How long a session lives after sign-in.
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 60 * 60);
/// The session cookie.
pub const SESSION_COOKIE: &str = "pipeline_session";
/// The sign-in form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "pipeline_login";
/// The header JavaScript sends the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A signed-in browser.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// The cookie value (not serialised into Redis).
    #[serde(skip)]
    pub id: String,
    /// The token every state-changing request must carry.
    pub csrf: String,
    /// When it signed in.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The fingerprint of the key it signed in with ([`crate::auth::fingerprint`]): a
    /// session whose key is no longer configured is no session. Sessions stored before this
    /// field existed have none and must sign in again.
    #[serde(default)]
    pub key: String,
}

/// 32 random bytes from the thread's CSPRNG, as hex.
pub fn token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn key(state: &AppState, id: &str) -> String {
    format!(
        "{}{{console}}:session:{id}",
        state.services.settings.redis.key_prefix
    )
}

/// The value of cookie `name`, if the request has it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the browser reached the server over TLS (directly or through a proxy).
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value with the console's attributes (`max_age` 0 deletes it).
pub fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = if over_tls(headers) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("cookie names and hex values are valid header text")
}

/// Looks the request's session up; `None` without a cookie or for an unknown or expired one.
pub async fn find(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, Response> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let mut con = state.services.redis.get();
    let raw: Option<String> = redis::cmd("GET")
        .arg(key(state, id))
        .query_async(&mut con)
        .await
        .map_err(|e| html::unavailable(&e))?;
    Ok(raw
        .and_then(|r| serde_json::from_str::<Session>(&r).ok())
        .filter(|s| state.keys.still_signs_in(&s.key))
        .map(|mut s| {
            s.id = id.to_owned();
            s
        }))
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    /// A page without a session redirects to sign-in, remembering where it was going.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match find(state, &parts.headers).await? {
            Some(session) => {
                // A signed-in browser's connection is worth keeping under the connection cap.
                if let Some(mark) = parts.extensions.get::<ConnMark>() {
                    mark.mark_keyed();
                }
                Ok(session)
            }
            None => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|pq| pq.as_str())
                    .filter(|p| parts.method == axum::http::Method::GET && p.starts_with("/ui/"))
                    .unwrap_or("/ui/");
                let to = format!("/ui/login?next={}", html::url_escape(next));
                Err(Redirect::to(&to).into_response())
            }
        }
    }
}

impl Session {
    /// Whether `presented` is this session's CSRF token.
    pub fn csrf_ok(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| constant_time_eq(self.csrf.as_bytes(), p.as_bytes()))
    }

    /// 403 unless the form field `csrf` or the `X-CSRF-Token` header carries the token.
    pub fn check(&self, headers: &HeaderMap, form: &super::Form) -> Result<(), Response> {
        let header = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if self.csrf_ok(form.one("csrf")) || self.csrf_ok(header) {
            Ok(())
        } else {
            Err(html::error_page(
                StatusCode::FORBIDDEN,
                "Refused",
                "This form has expired or did not come from this console (missing or wrong \
                 CSRF token). Reload the page and try again.",
            ))
        }
    }
}

/// `GET /ui/login`: the sign-in form, with a fresh double-submit token.
pub async fn login_form(
    headers: HeaderMap,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let next = super::Form::parse(q.as_deref().unwrap_or(""))
        .one("next")
        .map(str::to_owned);
    login_page(&headers, StatusCode::OK, None, next.as_deref())
}

fn login_page(
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
    next: Option<&str>,
) -> Response {
    let t = token();
    let mut response = (status, html::login(&t, error, &safe_next(next))).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(headers, LOGIN_COOKIE, &t, 600),
    );
    response
}

/// Longest `next` kept, in bytes (a console link is far shorter).
const MAX_NEXT_BYTES: usize = 2048;

/// Where to go after sign-in: `next` when it is a path of this console, else the console's
/// home. `next` comes from the client, so it is parsed, not trusted: only printable ASCII
/// (what a request target holds; CR, LF or NUL would make the `Location` header invalid),
/// resolved against this origin as a browser would (so `/ui/../api` or `/ui/%2e%2e/` is not
/// under `/ui/`), and it must land on this origin under `/ui/` (no open redirect).
pub fn safe_next(next: Option<&str>) -> String {
    const HOME: &str = "/ui/";
    let Some(n) = next else {
        return HOME.to_owned();
    };
    if n.len() > MAX_NEXT_BYTES
        || !n.bytes().all(|b| b.is_ascii_graphic())
        || !n.starts_with("/ui/")
        || n.contains('\\')
    {
        return HOME.to_owned();
    }
    let Ok(origin) = url::Url::parse("http://console.invalid/") else {
        return HOME.to_owned();
    };
    match origin.join(n) {
        Ok(to) if to.origin() == origin.origin() && to.path().starts_with("/ui/") => {
            let mut out = to.path().to_owned();
            if let Some(q) = to.query() {
                out.push('?');
                out.push_str(q);
            }
            out
        }
        _ => HOME.to_owned(),
    }
}

/// The client's address, as the server accepted its connection (`None` for a router
/// mounted without connection info).
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// `POST /ui/login`: a valid key and a matching sign-in token start a session. Key checks
/// go through the API's brake on guessing ([`crate::auth::throttle`]): an address that
/// sent too many different wrong keys gets 429 and a page saying when to try again, even
/// with the right key; every refusal is logged with the client's address.
pub async fn login(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form = super::Form::parse(&body);
    let next = form.one("next");
    let presented = form.one("csrf").unwrap_or("");
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !constant_time_eq(expected.as_bytes(), presented.as_bytes()) {
        return login_page(
            &headers,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired. Try again."),
            next,
        );
    }
    let presented_key = form.one("key").unwrap_or("");
    // With no key configured the API serves loopback clients only (`serve` refuses other
    // binds), and so does the console: any key signs in.
    let key_fingerprint = match state.keys.sign_in_from(peer.map(|p| p.ip()), presented_key) {
        Ok(f) => f,
        Err(Verdict::Throttled { retry_after }) => {
            let secs = retry_after_secs(retry_after);
            let mut r = login_page(
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                Some(&format!(
                    "Too many wrong keys from your address. Try again in {secs} s."
                )),
                next,
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return r;
        }
        Err(refused) => {
            log_refusal("console sign-in", peer, &headers, refused);
            return login_page(
                &headers,
                StatusCode::UNAUTHORIZED,
                Some("Invalid API key."),
                next,
            );
        }
    };
    let session = Session {
        id: token(),
        csrf: token(),
        created_at: chrono::Utc::now(),
        key: key_fingerprint,
    };
    let json = serde_json::to_string(&session).expect("a session always serialises");
    let mut con = state.services.redis.get();
    let stored: redis::RedisResult<()> = redis::cmd("SET")
        .arg(key(&state, &session.id))
        .arg(json)
        .arg("EX")
        .arg(SESSION_TTL.as_secs())
        .query_async(&mut con)
        .await;
    if let Err(e) = stored {
        return html::unavailable(&e);
    }
    tracing::info!("console sign-in");
    let mut response = Redirect::to(&safe_next(next)).into_response();
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, &session.id, SESSION_TTL.as_secs()),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(&headers, LOGIN_COOKIE, "", 0),
    );
    response
}

/// `POST /ui/logout`: ends the session (its Redis key is deleted) and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Err(r) = session.check(&headers, &super::Form::parse(&body)) {
        return r;
    }
    let mut con = state.services.redis.get();
    let deleted: redis::RedisResult<u64> = redis::cmd("DEL")
        .arg(key(&state, &session.id))
        .query_async(&mut con)
        .await;
    if let Err(e) = deleted {
        return html::unavailable(&e);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, "", 0),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_console_paths_of_this_origin_are_places_to_go() {
        for (next, to) in [
            (None, "/ui/"),
            (Some("/ui/jobs?status=failed"), "/ui/jobs?status=failed"),
            (Some("/ui/dlq/../jobs"), "/ui/jobs"),
            (Some("/ui/\r\nSet-Cookie: a=b"), "/ui/"),
            (Some("/ui/\0"), "/ui/"),
            (Some("/ui/é"), "/ui/"),
            (Some("/ui/../api/v1/jobs"), "/ui/"),
            (Some("/ui/%2e%2e/openapi.json"), "/ui/"),
            (Some("/ui/%2E%2E/openapi.json"), "/ui/"),
            (Some("//evil.example/ui/"), "/ui/"),
            (Some("https://evil.example/ui/"), "/ui/"),
            (Some("/ui/\\evil"), "/ui/"),
            (Some("/api/v1/jobs"), "/ui/"),
            (Some("/ui"), "/ui/"),
        ] {
            assert_eq!(safe_next(next), to, "{next:?}");
        }
        assert_eq!(
            safe_next(Some(&format!("/ui/{}", "a".repeat(3000)))),
            "/ui/"
        );
    }
}
