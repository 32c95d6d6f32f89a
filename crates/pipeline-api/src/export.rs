//! `GET /api/v1/export/{sources,chunks,entities,records}`: a project's or a job's knowledge
//! streamed as JSON Lines (default) or CSV, in constant memory, resumable by cursor. The
//! rows, their order, the cursor and the trailer are [`pipeline_store::export`]'s (the CLI's
//! `pipelinectl export` writes the same bytes); docs/export.md is the user's guide.
//!
//! The first batch is read before the answer's head is sent, so a request that cannot start
//! (the database unreachable) gets a status. After that the status is sent: a failure ends
//! the body without its last chunk (the client sees a cut transfer), so a JSON Lines export
//! lacks its `{"end":true,...}` trailer and a client resumes from the last row's cursor.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use pipeline_store::SourceStatus;
use pipeline_store::export::{Cursor, Exporter, Filter, Format, Kind, MAX_CURSOR_CHARS, Request};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa::openapi::{ObjectBuilder, Type};
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiQuery, ErrorBody, current_request_id};

/// Largest `limit`.
pub const MAX_LIMIT: i64 = 1_000_000_000_000;

fn status_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .description(Some(
            "Only rows of sources in this status (records: with a value from such a source).",
        ))
        .schema_type(Type::String)
        .enum_values(Some(SourceStatus::ALL.iter().map(|s| s.as_str())))
}

fn format_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .description(Some(
            "`jsonl` (default: one JSON object per line, then a trailer line) or `csv` (a header row).",
        ))
        .schema_type(Type::String)
        .enum_values(Some([Format::Jsonl.as_str(), Format::Csv.as_str()]))
        .default(Some(Format::Jsonl.as_str().into()))
}

/// The filters, format and position of an export.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Only this project's rows.
    pub project_id: Option<Uuid>,
    /// Only rows of the sources this job asked for (records: with a value from such a page).
    pub job_id: Option<Uuid>,
    /// Only rows whose time is at or after this instant (RFC 3339). The time is the row's
    /// `created_at` (sources, chunks), `first_seen` (entities) or `updated_at` (records).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Only rows whose time is before this instant (RFC 3339); after `since`.
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
    /// Only rows of sources in this status (records: with a value from such a source).
    #[param(schema_with = status_schema)]
    pub status: Option<String>,
    /// `jsonl` (default: one JSON object per line and a trailer line) or `csv` (a header row).
    #[param(schema_with = format_schema)]
    pub format: Option<String>,
    /// Resume after the row that carried this cursor (same kind and filters).
    #[param(max_length = 4096, pattern = "^[0-9a-z-]+$")]
    pub cursor: Option<String>,
    /// Stop after this many rows (default: every row).
    #[param(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub limit: Option<i64>,
}

/// `vectors` of the chunks export.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VectorsQuery {
    /// Add each chunk's embedding (model, dimensions, vector; `null` when it has none).
    pub vectors: Option<bool>,
}

fn time(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::unprocessable(format!(
                        "{name} must be an RFC 3339 time such as 2026-12-01T00:00:00Z, got `{}`",
                        crate::error::clip(v)
                    ))
                })
        })
        .transpose()
}

/// The store's request for `kind` from the query, or 422 with the reason.
pub fn request(kind: Kind, q: &ExportQuery, vectors: bool) -> Result<Request, ApiError> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(SourceStatus::parse(s).ok_or_else(|| {
            ApiError::unprocessable(format!(
                "status must be one of {}, got `{}`",
                SourceStatus::ALL.map(|s| s.as_str()).join(", "),
                crate::error::clip(s)
            ))
        })?),
    };
    let format = match q.format.as_deref() {
        None => Format::Jsonl,
        Some(f) => Format::parse(f).ok_or_else(|| {
            ApiError::unprocessable(format!(
                "format must be jsonl or csv, got `{}`",
                crate::error::clip(f)
            ))
        })?,
    };
    let cursor = match q.cursor.as_deref() {
        None => None,
        Some(c) if c.len() > MAX_CURSOR_CHARS => {
            return Err(ApiError::unprocessable(format!(
                "cursor is over {MAX_CURSOR_CHARS} characters"
            )));
        }
        Some(c) => Some(Cursor::parse(c).map_err(ApiError::unprocessable)?),
    };
    let limit = match q.limit {
        None => None,
        Some(l) if (1..=MAX_LIMIT).contains(&l) => Some(l as u64),
        Some(l) => {
            return Err(ApiError::unprocessable(format!(
                "limit must be within 1..={MAX_LIMIT}, got {l}"
            )));
        }
    };
    let request = Request {
        kind,
        format,
        filter: Filter {
            project_id: q.project_id,
            job_id: q.job_id,
            since: time("since", q.since.as_deref())?,
            until: time("until", q.until.as_deref())?,
            status,
        },
        vectors,
        cursor,
        limit,
    };
    request.check().map_err(ApiError::unprocessable)?;
    Ok(request)
}

/// Starts the export and answers with its stream.
async fn stream(state: AppState, request: Request) -> Result<Response, ApiError> {
    let kind = request.kind;
    let format = request.format;
    let mut exporter = Exporter::new(state.services.db.clone(), request);
    // The header (CSV) and the first batch of rows before the status is sent.
    let mut first = Vec::new();
    for _ in 0..2 {
        match exporter.next_chunk().await? {
            Some(piece) => first.extend_from_slice(&piece),
            None => break,
        }
        if format == Format::Jsonl || exporter.rows() > 0 {
            break;
        }
    }
    let request_id = current_request_id().unwrap_or_default();
    let rest = futures::stream::unfold(Some(exporter), move |exporter| {
        let request_id = request_id.clone();
        async move {
            let mut exporter = exporter?;
            match exporter.next_chunk().await {
                Ok(Some(piece)) => Some((Ok(Bytes::from(piece)), Some(exporter))),
                Ok(None) => None,
                Err(err) => {
                    tracing::error!(request_id, %kind, rows = exporter.rows(),
                        cursor = exporter.cursor().unwrap_or_default(), error = %err,
                        "export cut short");
                    Some((Err(std::io::Error::other("export failed")), None))
                }
            }
        }
    });
    let body = futures::stream::once(async move { Ok(Bytes::from(first)) }).chain(rest);
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let disposition = format!("attachment; filename=\"{kind}.{}\"", format.as_str());
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// Sources with their document metadata, status and times, by id.
#[utoipa::path(
    get, path = "/api/v1/export/sources", tag = "export", params(ExportQuery),
    responses(
        (status = 200, description = "The rows as a stream, one per line, each with its `cursor`; JSON Lines ends with `{\"end\":true,\"rows\":N,\"more\":B,\"cursor\":C}`. A stream cut by a failure lacks its last chunk (and the trailer).",
            content((String = "application/x-ndjson"), (String = "text/csv"))),
        (status = 422, description = "A parameter is invalid: an id that is not a UUID, an unknown status or format, a time that is not RFC 3339 or `since` not before `until`, a cursor no export gave or one of another kind, `limit` outside its range", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn sources(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ExportQuery>,
    ApiQuery(v): ApiQuery<VectorsQuery>,
) -> Result<Response, ApiError> {
    // `vectors` is not a parameter of this kind; asked for, it is refused rather than ignored.
    stream(
        state,
        request(Kind::Sources, &q, v.vectors.unwrap_or(false))?,
    )
    .await
}

/// Chunks of text with their page, by source and chunk index; vectors on request.
#[utoipa::path(
    get, path = "/api/v1/export/chunks", tag = "export", params(ExportQuery, VectorsQuery),
    responses(
        (status = 200, description = "The rows as a stream, one per line, each with its `cursor`; JSON Lines ends with `{\"end\":true,\"rows\":N,\"more\":B,\"cursor\":C}`. A stream cut by a failure lacks its last chunk (and the trailer).",
            content((String = "application/x-ndjson"), (String = "text/csv"))),
        (status = 422, description = "A parameter is invalid: an id that is not a UUID, an unknown status or format, `vectors` not a boolean, a time that is not RFC 3339 or `since` not before `until`, a cursor no export gave or one of another kind, `limit` outside its range", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn chunks(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ExportQuery>,
    ApiQuery(v): ApiQuery<VectorsQuery>,
) -> Result<Response, ApiError> {
    let vectors = v.vectors.unwrap_or(false);
    stream(state, request(Kind::Chunks, &q, vectors)?).await
}

/// The entities found in each source (one row per source and entity), by source and entity.
#[utoipa::path(
    get, path = "/api/v1/export/entities", tag = "export", params(ExportQuery),
    responses(
        (status = 200, description = "The rows as a stream, one per line, each with its `cursor`; JSON Lines ends with `{\"end\":true,\"rows\":N,\"more\":B,\"cursor\":C}`. A stream cut by a failure lacks its last chunk (and the trailer).",
            content((String = "application/x-ndjson"), (String = "text/csv"))),
        (status = 422, description = "A parameter is invalid: an id that is not a UUID, an unknown status or format, a time that is not RFC 3339 or `since` not before `until`, a cursor no export gave or one of another kind, `limit` outside its range", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn entities(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ExportQuery>,
    ApiQuery(v): ApiQuery<VectorsQuery>,
) -> Result<Response, ApiError> {
    // `vectors` is not a parameter of this kind; asked for, it is refused rather than ignored.
    stream(
        state,
        request(Kind::Entities, &q, v.vectors.unwrap_or(false))?,
    )
    .await
}

/// The schema stage's consolidated records, by project, entity and record key.
#[utoipa::path(
    get, path = "/api/v1/export/records", tag = "export", params(ExportQuery),
    responses(
        (status = 200, description = "The rows as a stream, one per line, each with its `cursor`; JSON Lines ends with `{\"end\":true,\"rows\":N,\"more\":B,\"cursor\":C}`. A stream cut by a failure lacks its last chunk (and the trailer).",
            content((String = "application/x-ndjson"), (String = "text/csv"))),
        (status = 422, description = "A parameter is invalid: an id that is not a UUID, an unknown status or format, a time that is not RFC 3339 or `since` not before `until`, a cursor no export gave or one of another kind, `limit` outside its range", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn records(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ExportQuery>,
    ApiQuery(v): ApiQuery<VectorsQuery>,
) -> Result<Response, ApiError> {
    // `vectors` is not a parameter of this kind; asked for, it is refused rather than ignored.
    stream(
        state,
        request(Kind::Records, &q, v.vectors.unwrap_or(false))?,
    )
    .await
}
