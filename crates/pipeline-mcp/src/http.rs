//! The streamable HTTP transport: `POST /mcp` (and the protocol's GET and DELETE there)
//! behind a key guard, and `GET /health`.
//!
//! The guard answers 401 to a request without `Authorization: Bearer <key>` before any MCP
//! handling, and hands the key to the tools ([`CallerKey`]), which send it to the pipeline
//! API as `X-API-Key`: the API decides whether the key is good, so this server holds no key
//! of its own and no list of keys to keep in step. A wrong key therefore passes the guard and
//! comes back from the first tool call as the API's 401, as a tool error.
//!
//! The server is stateless (no MCP sessions): every request stands alone, so replicas behind
//! a load balancer need no affinity, and answers are plain JSON rather than event streams.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::api::ApiClient;
use crate::server::{CallerKey, Keys, PipelineMcp};

/// The path of the MCP endpoint.
pub const MCP_PATH: &str = "/mcp";

/// Largest MCP request body, in bytes (a `submit` of 1,000 long URLs fits).
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Longest key accepted, in bytes; a longer header is refused before it is copied.
const MAX_KEY_BYTES: usize = 1024;

/// The HTTP routes: the guarded MCP endpoint and `/health`. `allowed_hosts` are the `Host`
/// values accepted at the MCP endpoint (DNS-rebinding protection; loopback names by
/// default); `cancel` ends open streams at shutdown.
pub fn router(api: ApiClient, allowed_hosts: Vec<String>, cancel: CancellationToken) -> Router {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_allowed_hosts(allowed_hosts)
        .with_max_request_body_bytes(MAX_REQUEST_BYTES)
        .with_cancellation_token(cancel);
    let service = StreamableHttpService::new(
        move || Ok(PipelineMcp::new(api.clone(), Keys::PerCaller)),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let mcp = Router::new()
        .nest_service(MCP_PATH, service)
        .layer(middleware::from_fn(require_key));
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .merge(mcp)
}

/// The key of an `Authorization: Bearer <key>` header, if well formed.
pub fn bearer_key(value: Option<&HeaderValue>) -> Option<&str> {
    let value = value?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer")
        && !key.is_empty()
        && key.len() <= MAX_KEY_BYTES
        && !key.contains(char::is_whitespace))
    .then_some(key)
}

async fn require_key(mut req: Request, next: Next) -> Response {
    let Some(key) = bearer_key(req.headers().get(header::AUTHORIZATION)) else {
        return unauthorized();
    };
    let key = CallerKey(SecretString::from(key.to_owned()));
    req.extensions_mut().insert(key);
    next.run(req).await
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(serde_json::json!({
            "detail": "an API key is required: Authorization: Bearer <key>"
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_keys() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(bearer_key(Some(&h("Bearer k1"))), Some("k1"));
        assert_eq!(bearer_key(Some(&h("bearer  k1 "))), Some("k1"));
        assert_eq!(bearer_key(Some(&h("Basic k1"))), None);
        assert_eq!(bearer_key(Some(&h("Bearer "))), None);
        assert_eq!(bearer_key(Some(&h("Bearer a b"))), None);
        assert_eq!(
            bearer_key(Some(&h(&format!("Bearer {}", "k".repeat(1025))))),
            None
        );
        assert_eq!(bearer_key(None), None);
    }
}
