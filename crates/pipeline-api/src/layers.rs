//! The middleware every request passes through, outermost first:
//!
//! 0. [`http_metrics`]: counts and times every answer by method, route template and status.
//! 1. [`request_id`]: an id per request, in the `X-Request-Id` answer header and in the log
//!    line of any 500; a panicking handler becomes a 500 that names it.
//! 2. [`head_limits`]: a URI over 8 KiB is 414, more than 100 headers or 16 KiB of them 431,
//!    with a `{"detail"}` body (hyper's own, bare answers only start well beyond these).
//! 3. [`crate::auth::require_key`]: under `/api`, a valid key before routing, so a keyless
//!    client learns nothing about routes and methods, and no body is read for it.
//! 4. [`read_body`]: a keyed request's body is read whole here, bounded in size (413) and
//!    time (408), so a promised body that never comes holds nothing for long.
//! 5. [`deadline`]: a handler that outlives `api.request_timeout_ms` is answered 503.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;

use crate::error::{ApiError, REQUEST_ID};

/// The answer header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest request target (path and query) answered normally, in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most request headers answered normally.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of request headers (names and values) answered normally.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Counts the answer in `pipeline_http_requests_total` and times it in
/// `pipeline_http_request_duration_seconds` (until the answer's head; a streamed body is not
/// waited for), labelled by method, route and status.
///
/// The route is the matched template (`/api/v1/jobs/{id}`), never the raw path, and a
/// request that matched no route is `unmatched`; methods outside the standard ones are
/// `other`. So the label values stay a short, fixed list whatever clients send.
pub async fn http_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("pipeline_http_requests_total",
        "method" => method, "route" => route.clone(), "status" => status.clone())
    .increment(1);
    metrics::histogram!("pipeline_http_request_duration_seconds",
        "method" => method, "route" => route, "status" => status)
    .record(started.elapsed().as_secs_f64());
    response
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Gives the request an id, runs it with that id in scope, and turns a panic into a 500.
pub async fn request_id(req: Request, next: Next) -> Response {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let run = AssertUnwindSafe(next.run(req)).catch_unwind();
    let mut response = match REQUEST_ID.scope(id.clone(), run).await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".into());
            REQUEST_ID.sync_scope(id.clone(), || {
                ApiError::internal("handler panicked", &what).into_response()
            })
        }
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// 414 and 431 with `{"detail"}` for request heads over the API's limits.
pub async fn head_limits(req: Request, next: Next) -> Response {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("the request target is {uri_len} bytes; at most {MAX_URI_BYTES}"),
        )
        .into_response();
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "{} headers of {bytes} bytes; at most {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes",
                headers.len()
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// Limits of [`read_body`] and [`deadline`].
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body.
    pub max_bytes: usize,
    /// Time for the body to arrive whole.
    pub timeout: Duration,
    /// Time for the handler.
    pub request_timeout: Duration,
}

/// Reads the body whole within the limits, so no handler waits on a slow client, then hands
/// the request on with the bytes in memory. Requests without a body pass untouched.
pub async fn read_body(State(limits): State<BodyLimits>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if declared.unwrap_or(0) == 0 && !chunked {
        return next.run(req).await;
    }
    if declared.is_some_and(|n| n > limits.max_bytes as u64) {
        return too_large(limits.max_bytes);
    }
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, limits.max_bytes);
    let bytes = match tokio::time::timeout(limits.timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(err)) => {
            // `to_bytes` fails on the size limit or a broken connection; only the first can
            // still be answered.
            tracing::debug!(error = %err, "request body refused");
            return too_large(limits.max_bytes);
        }
        Err(_) => {
            let mut e = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} ms",
                    limits.timeout.as_millis()
                ),
            );
            e.close = true;
            return e.into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn too_large(max: usize) -> Response {
    let mut e = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is over {max} bytes"),
    );
    // The rest of the body is not read; the connection cannot be reused.
    e.close = true;
    e.into_response()
}

/// Answers 503 with `Retry-After` when the handler outlives the request timeout (its work is
/// dropped at an await point; a submission's written batches stay, as after a crash).
pub async fn deadline(State(limits): State<BodyLimits>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limits.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                timeout_ms = limits.request_timeout.as_millis() as u64,
                "request timed out"
            );
            ApiError::unavailable("the request took too long; retry later").into_response()
        }
    }
}
