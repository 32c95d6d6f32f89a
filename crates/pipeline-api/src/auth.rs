//! `X-API-Key` authentication.
//!
//! The key comes from `PIPELINE_API_KEY` or the file named by `api.key_file`. Several keys may
//! be given, separated by commas or newlines, so a key can be rotated without downtime (add
//! the new one, move clients, drop the old one). Keys are compared in constant time: the
//! comparison looks at every byte of every configured key whatever the input, so the answer
//! time says nothing about how much of a guess was right.
//!
//! Every check of a presented key, here and at the console's sign-in, goes through one
//! [`throttle::Throttle`] per API process: an address that sends too many different wrong
//! keys has its key checks refused (429 with `Retry-After`) for a while that grows with every
//! further wrong key. A key presented to either door counts for both, since a guess is as
//! good through one as through the other.

pub mod throttle;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};

use crate::error::ApiError;
use crate::server::ConnMark;
pub use throttle::Verdict;

/// The header that carries the key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The configured keys (none: the API serves loopback clients only, without a key), and
/// the brake on guessing them.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Arc<Vec<SecretString>>,
    throttle: Arc<throttle::Throttle>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("ApiKeys")
            .field("count", &self.keys.len())
            .finish()
    }
}

impl ApiKeys {
    /// Splits the configured secret into keys (commas and newlines separate them; blanks are
    /// ignored).
    pub fn new(secret: Option<SecretString>) -> Self {
        let keys = secret
            .map(|s| {
                s.expose_secret()
                    .split([',', '\n', '\r'])
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(|k| SecretString::from(k.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            keys: Arc::new(keys),
            throttle: Arc::default(),
        }
    }

    /// Whether any key is configured.
    pub fn is_configured(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Whether `candidate` is one of the keys, in time independent of where it differs.
    pub fn accepts(&self, candidate: &str) -> bool {
        self.accepts_bytes(candidate.as_bytes())
    }

    /// [`Self::accepts`] for a raw header value (which may hold any byte).
    pub fn accepts_bytes(&self, candidate: &[u8]) -> bool {
        let mut ok = false;
        // No early exit: every key is compared in full.
        for key in self.keys.iter() {
            ok |= constant_time_eq(key.expose_secret().as_bytes(), candidate);
        }
        ok
    }
}

impl ApiKeys {
    /// Checks a key presented by `client` under the brake on guessing ([`throttle`]): a
    /// blocked address gets [`Verdict::Throttled`] whatever it sends. Only for configured
    /// keys (with none, nothing is checked).
    pub fn check(&self, client: Option<IpAddr>, candidate: &[u8]) -> Verdict {
        self.throttle.check(
            throttle::Client::of(client),
            Instant::now(),
            candidate,
            |c| self.accepts_bytes(c),
        )
    }

    /// [`Self::sign_in`] under the brake: the session fingerprint, or why not.
    pub fn sign_in_from(&self, client: Option<IpAddr>, candidate: &str) -> Result<String, Verdict> {
        if !self.is_configured() {
            return Ok(OPEN.to_owned());
        }
        match self.check(client, candidate.as_bytes()) {
            Verdict::Accepted => Ok(fingerprint(candidate)),
            other => Err(other),
        }
    }

    /// The fingerprint of the key `candidate` if it is one of the keys ([`fingerprint`]),
    /// or of the open door when no key is configured (`"open"`); `None` if refused.
    pub fn sign_in(&self, candidate: &str) -> Option<String> {
        if !self.is_configured() {
            return Some(OPEN.to_owned());
        }
        self.accepts(candidate).then(|| fingerprint(candidate))
    }

    /// Whether a session signed in under `fingerprint` may still act: its key is still one
    /// of the keys (a key removed from the configuration ends the sessions it opened, at the
    /// API's next start), or no key is configured and it was opened that way.
    pub fn still_signs_in(&self, fingerprint_of_key: &str) -> bool {
        if !self.is_configured() {
            return fingerprint_of_key == OPEN;
        }
        let mut ok = false;
        for key in self.keys.iter() {
            ok |= constant_time_eq(
                fingerprint(key.expose_secret()).as_bytes(),
                fingerprint_of_key.as_bytes(),
            );
        }
        ok
    }
}

/// What a session opened without any configured key records instead of a fingerprint.
const OPEN: &str = "open";

/// A key's fingerprint: SHA-256 of the key, hex. Stored in a session instead of the key, so
/// reading Redis never yields a key.
pub fn fingerprint(key: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two byte strings in time that depends only on their lengths, never on their
/// content. A length mismatch still walks the candidate, so the time reveals the candidate's
/// length (which the client knows) and not where the bytes differ.
pub fn constant_time_eq(expected: &[u8], candidate: &[u8]) -> bool {
    let mut diff = (expected.len() ^ candidate.len()) as u64;
    for (i, c) in candidate.iter().enumerate() {
        let e = expected
            .get(i % expected.len().max(1))
            .copied()
            .unwrap_or(0);
        diff |= u64::from(e ^ c);
    }
    std::hint::black_box(diff) == 0
}

/// Whether `path` is under the keyed part of the API (`/api` and everything below it).
fn is_keyed_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// Middleware around the whole router, run before routing: under `/api`, a configured key
/// must be presented, whatever the route or method, so a client without a key gets 401 for
/// an unknown route or a wrong method too and cannot map the API; without a key configured,
/// only loopback clients are served. Other paths (probes, `/openapi.json`) pass.
pub async fn require_key(State(keys): State<ApiKeys>, req: Request, next: Next) -> Response {
    if !is_keyed_path(req.uri().path()) {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if keys.is_configured() {
        // Compared as bytes: a header with a non-ASCII byte is a key that is wrong, not a
        // key that is missing.
        let presented = req.headers().get(API_KEY_HEADER).map(|v| v.as_bytes());
        let Some(key) = presented else {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing API key: send it in the X-API-Key header",
            )
            .into_response();
        };
        return match keys.check(peer.map(|p| p.ip()), key) {
            Verdict::Accepted => {
                if let Some(mark) = req.extensions().get::<ConnMark>() {
                    mark.mark_keyed();
                }
                next.run(req).await
            }
            refused @ Verdict::Refused { .. } => {
                log_refusal("API request", peer, req.headers(), refused);
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid API key").into_response()
            }
            Verdict::Throttled { retry_after } => {
                let secs = retry_after_secs(retry_after);
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "too many wrong API keys from this address; keys from it are not \
                         checked for {secs} s"
                    ),
                );
                e.retry_after = Some(secs);
                e.into_response()
            }
        };
    }
    // No key: `serve` refuses non-loopback binds, and this check covers a router mounted
    // some other way.
    match peer {
        Some(addr) if !addr.ip().is_loopback() => ApiError::new(
            StatusCode::FORBIDDEN,
            "no API key is configured, so only loopback clients are served; \
             set PIPELINE_API_KEY (or api.key_file) to serve other hosts",
        )
        .into_response(),
        _ => next.run(req).await,
    }
}

/// Whole seconds to announce in `Retry-After` for `d` (rounded up, at least 1).
pub fn retry_after_secs(d: Duration) -> u64 {
    (d.as_millis().div_ceil(1000) as u64).max(1)
}

/// Logs a refused key with the client's address (and what a proxy says it forwarded for,
/// as told, since the header is the client's to write); a warning when it started a block.
pub fn log_refusal(
    what: &str,
    peer: Option<SocketAddr>,
    headers: &axum::http::HeaderMap,
    verdict: Verdict,
) {
    let client = peer
        .map(|p| p.ip().to_string())
        .unwrap_or_else(|| "-".into());
    let forwarded_for = headers
        .get("x-forwarded-for")
        .map(|v| crate::error::clip_to(&String::from_utf8_lossy(v.as_bytes()), 100));
    let Verdict::Refused {
        failures,
        blocked_for,
    } = verdict
    else {
        return;
    };
    match blocked_for {
        Some(block) => tracing::warn!(
            client,
            forwarded_for,
            failures,
            blocked_secs = retry_after_secs(block),
            "{what} refused: wrong API key; too many from this address, its key checks are \
             refused for a while"
        ),
        None => tracing::info!(
            client,
            forwarded_for,
            failures,
            "{what} refused: wrong API key"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_outlives_no_removed_key() {
        let before = ApiKeys::new(Some("alpha,beta".to_owned().into()));
        let alpha = before.sign_in("alpha").expect("alpha is a key");
        assert!(before.sign_in("gamma").is_none());
        assert!(!alpha.contains("alpha"), "a fingerprint, not the key");
        let after = ApiKeys::new(Some("beta".to_owned().into()));
        assert!(before.still_signs_in(&alpha));
        assert!(!after.still_signs_in(&alpha), "alpha was removed");
        assert!(after.still_signs_in(&after.sign_in("beta").unwrap()));
        let open = ApiKeys::new(None);
        assert!(open.still_signs_in(&open.sign_in("anything").unwrap()));
        assert!(
            !after.still_signs_in("open"),
            "a key configured since closes the door"
        );
        assert!(!open.still_signs_in(&alpha));
    }

    #[test]
    fn keys_compare_exactly() {
        let keys = ApiKeys::new(Some("alpha, beta\ngamma".to_owned().into()));
        assert!(keys.is_configured());
        for good in ["alpha", "beta", "gamma"] {
            assert!(keys.accepts(good), "{good}");
        }
        for bad in ["", "alph", "alphaa", "Alpha", "alpha,beta", "delta"] {
            assert!(!keys.accepts(bad), "{bad}");
        }
        assert!(!ApiKeys::new(None).is_configured());
        assert!(!ApiKeys::new(Some(" , ".to_owned().into())).is_configured());
        assert!(!ApiKeys::new(None).accepts(""));
    }

    #[test]
    fn constant_time_eq_handles_lengths() {
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(!constant_time_eq(b"a", b""));
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
    }
}
