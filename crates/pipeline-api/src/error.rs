//! Every error the API answers is `{"detail": "..."}` with a meaningful status. Axum's own
//! rejections (malformed JSON, wrong content type, bad query or path) go through the
//! extractors below so they take the same shape.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person to read. Never internal text (SQL, Redis replies).
    pub detail: String,
    /// On a 500: the id the server logged the cause under (also in `X-Request-Id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

tokio::task_local! {
    /// The id of the request being answered, set by [`crate::layers::request_id`] for the
    /// whole handler so an error can name it in the log and in the answer.
    pub(crate) static REQUEST_ID: String;
}

/// The id of the request being answered, when called inside one.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// How long a client should wait before retrying an overloaded request, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Longest piece of client input repeated in an error message, in characters.
const ECHO_MAX_CHARS: usize = 64;

/// Longest parser message (which may quote the input) put in a `detail`, in characters.
const MESSAGE_MAX_CHARS: usize = 300;

/// `input` cut to a few dozen characters with control characters escaped, for quoting a
/// client's value back in an error without echoing a 20 KB parameter whole.
pub fn clip(input: &str) -> String {
    clip_to(input, ECHO_MAX_CHARS)
}

/// `input` cut to `max` characters (then `…`), control characters escaped.
pub fn clip_to(input: &str, max: usize) -> String {
    let mut out: String = input
        .chars()
        .take(max)
        .flat_map(char::escape_debug)
        .collect();
    if input.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// A parser's message (serde, axum's rejections), which can quote the client's input, cut
/// to a bounded length.
fn message(text: &str) -> String {
    clip_to(text, MESSAGE_MAX_CHARS)
}

/// An error answer: a status and a message.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `detail` text.
    pub detail: String,
    /// Set on 500s: the request id the cause was logged under.
    pub request_id: Option<String>,
    /// Sent as `Retry-After` (seconds) on overload answers.
    pub retry_after: Option<u64>,
    /// Ask the client to close the connection (a body that never came).
    pub close: bool,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            request_id: None,
            retry_after: None,
            close: false,
        }
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 422: the request is well-formed but its values are not acceptable.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// 503 with `Retry-After`: the server is overloaded or a backend is unreachable; the
    /// same request may succeed a moment later.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, detail);
        e.retry_after = Some(RETRY_AFTER_SECS);
        e
    }

    /// An internal error (500): the cause is logged with the request id and the client gets
    /// only the id, since a database or Redis message can carry schema names and values.
    pub fn internal(context: &str, err: &dyn std::fmt::Display) -> Self {
        let request_id = current_request_id();
        tracing::error!(request_id = request_id.as_deref().unwrap_or("-"), error = %err, "{context}");
        let mut e = Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        e.request_id = request_id;
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(ErrorBody {
                detail: self.detail,
                request_id: self.request_id,
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<dlq_core::DlqError> for ApiError {
    fn from(err: dlq_core::DlqError) -> Self {
        use dlq_core::DlqError as E;
        match &err {
            E::InvalidLimit { .. } | E::InvalidArgument(_) => Self::unprocessable(err.to_string()),
            // The cursor is the client's input: say it is wrong without echoing it whole.
            E::InvalidCursor(c) => Self::unprocessable(format!(
                "invalid cursor `{}`: pass the `next_cursor` of a previous page",
                clip(c)
            )),
            E::Malformed { id, .. } => Self::new(
                StatusCode::CONFLICT,
                format!(
                    "DLQ entry `{}` cannot be parsed; it stays in the DLQ until it is deleted",
                    clip(id)
                ),
            ),
            E::Redis(_) if dlq_core::is_unreachable(&err) => {
                tracing::warn!(error = %err, "Redis unavailable");
                Self::unavailable("the queue store is unavailable; retry later")
            }
            _ => Self::internal("DLQ operation failed", &err),
        }
    }
}

impl From<pipeline_ops::dlq_ops::DlqOpError> for ApiError {
    fn from(err: pipeline_ops::dlq_ops::DlqOpError) -> Self {
        use pipeline_ops::dlq_ops::DlqOpError as E;
        match err {
            E::Dlq(e) => e.into(),
            E::Store(e) => e.into(),
            other => Self::internal("DLQ bookkeeping failed", &other),
        }
    }
}

impl From<pipeline_store::StoreError> for ApiError {
    fn from(err: pipeline_store::StoreError) -> Self {
        use pipeline_store::StoreError as E;
        match err {
            E::NotFound(what) => Self::not_found(format!("{what} not found")),
            E::Database(sqlx::Error::PoolTimedOut) => {
                tracing::warn!("no database connection free within the acquire timeout");
                Self::unavailable("the server is busy; retry later")
            }
            E::Database(
                e @ (sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::Tls(_)),
            ) => {
                tracing::warn!(error = %e, "database unavailable");
                Self::unavailable("the database is unavailable; retry later")
            }
            other => Self::internal("database query failed", &other),
        }
    }
}

/// `axum::Json` for request bodies that must be one JSON object, whose rejections answer
/// `{"detail"}`: no `application/json` content type is 415, a body over the limit 413, and a
/// body that is not JSON, not an object (serde would read an array as the struct's fields in
/// order) or not the schema 422.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a body with `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| ApiError::new(r.status(), message(&r.body_text())))?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::unprocessable("the body must be a JSON object"));
        }
        serde_json::from_slice(&bytes).map(Self).map_err(|e| {
            ApiError::unprocessable(format!("invalid body: {}", message(&e.to_string())))
        })
    }
}

/// `axum::extract::Query` whose rejections answer 422 `{"detail"}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|r: QueryRejection| ApiError::unprocessable(message(&r.body_text())))
    }
}

/// `axum::extract::Path` whose rejections answer `{"detail"}` (a malformed id is 422).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|r: PathRejection| match r {
                PathRejection::FailedToDeserializePathParams(e) => {
                    ApiError::unprocessable(message(&e.body_text()))
                }
                other => ApiError::new(other.status(), message(&other.body_text())),
            })
    }
}

/// The queue family a path names (`/api/v1/dlq/{kind}…`, `/api/v1/queues/{family}/…`),
/// parsed before the handler runs: an unknown word is a 404 that lists the families, so no
/// handler takes the word as text and parses it again.
pub struct FamilyPath(pub pipeline_ops::Family);

/// A DLQ item's path, `/api/v1/dlq/{kind}/{item_id}…`: its family parsed as
/// [`FamilyPath`] does, and the item id.
pub struct DlqItemPath(pub pipeline_ops::Family, pub String);

/// The path's parameters by name (percent-decoded), with axum's rejections in this API's
/// error shape.
async fn path_params<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<std::collections::HashMap<String, String>, ApiError> {
    ApiPath::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map(|p| p.0)
}

fn family_of(
    params: &std::collections::HashMap<String, String>,
) -> Result<pipeline_ops::Family, ApiError> {
    let word = params
        .get("kind")
        .or_else(|| params.get("family"))
        .ok_or_else(|| ApiError::internal("route", &"a family route without {kind} or {family}"))?;
    word.parse::<pipeline_ops::Family>().map_err(|_| {
        ApiError::not_found(format!(
            "unknown family `{}` (expected one of: {})",
            clip(word),
            pipeline_ops::Family::names()
        ))
    })
}

impl<S: Send + Sync> FromRequestParts<S> for FamilyPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        family_of(&path_params(parts, state).await?).map(Self)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for DlqItemPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let mut params = path_params(parts, state).await?;
        let family = family_of(&params)?;
        let item = params
            .remove("item_id")
            .ok_or_else(|| ApiError::internal("route", &"a DLQ item route without {item_id}"))?;
        Ok(Self(family, item))
    }
}
