//! Every error the API answers is `{"detail": "..."}` with a meaningful status. Axum's own
//! rejections (malformed JSON, wrong content type, bad query or path) go through the
//! extractors below so they take the same shape.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    pub detail: String,
}

/// An error answer: a status and a message.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `detail` text.
    pub detail: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
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

    /// 500, logged with its cause; the client sees the message without internals beyond it.
    pub fn internal(context: &str, err: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{context}: {err}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(ErrorBody {
                detail: self.detail,
            }),
        )
            .into_response()
    }
}

impl From<dlq_core::DlqError> for ApiError {
    fn from(err: dlq_core::DlqError) -> Self {
        use dlq_core::DlqError as E;
        match &err {
            E::InvalidLimit { .. } | E::InvalidCursor(_) | E::InvalidArgument(_) => {
                Self::unprocessable(err.to_string())
            }
            E::Malformed { .. } => Self::new(
                StatusCode::CONFLICT,
                format!("{err}; it stays in the DLQ until it is deleted"),
            ),
            _ => Self::internal("DLQ operation failed", &err),
        }
    }
}

impl From<pipeline_ops::dlq_ops::DlqOpError> for ApiError {
    fn from(err: pipeline_ops::dlq_ops::DlqOpError) -> Self {
        use pipeline_ops::dlq_ops::DlqOpError as E;
        match err {
            E::Dlq(e) => e.into(),
            other => Self::internal("DLQ bookkeeping failed", &other),
        }
    }
}

impl From<pipeline_store::StoreError> for ApiError {
    fn from(err: pipeline_store::StoreError) -> Self {
        match err {
            pipeline_store::StoreError::NotFound(what) => {
                Self::not_found(format!("{what} not found"))
            }
            other => Self::internal("database query failed", &other),
        }
    }
}

/// Keeps axum's status for a rejection, except that a body that parses as JSON but does not
/// fit the schema (wrong field type, missing field) is 422, as for every other invalid value.
fn from_json_rejection(rejection: JsonRejection) -> ApiError {
    let status = match &rejection {
        JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        other => other.status(),
    };
    ApiError::new(status, rejection.body_text())
}

/// `axum::Json` whose rejections answer `{"detail"}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(v)| Self(v))
            .map_err(from_json_rejection)
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
            .map_err(|r: QueryRejection| ApiError::unprocessable(r.body_text()))
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
                    ApiError::unprocessable(e.body_text())
                }
                other => ApiError::new(other.status(), other.body_text()),
            })
    }
}
