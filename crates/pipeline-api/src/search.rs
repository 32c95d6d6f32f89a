//! `GET /api/v1/search`: the chunks that best answer a query, with their page (URL, title,
//! publication time, language, site), where in the page they are (the heading trail) and
//! the job.
//!
//! Ranking is [`pipeline_search`]'s: full-text (Postgres) fused with vector similarity
//! (the in-memory index, loaded at start and refreshed from Postgres every [`REFRESH_EVERY`]
//! once searches begin) by reciprocal rank
//! fusion, or either alone (`mode`).
//!
//! With `where` conditions (and a `project_id`), only chunks of pages that gave a record
//! matching every condition are kept: the matching pages are read first (at most
//! [`MAX_WHERE_SOURCES`]), then each ranking reads its best
//! [`pipeline_search::FILTERED_DEPTH`] candidates and keeps those of these pages.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use chrono::{DateTime, FixedOffset};
use pipeline_search::{MAX_K, Mode, SearchError, Searcher};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiQuery, ErrorBody};

/// How often the vector index reads the vectors written since its last look.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// Most pages with a matching record a `where` search considers; pages past it are not
/// searched.
pub const MAX_WHERE_SOURCES: i64 = 10_000;

/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 1000;

/// The API's searcher, or why it could not be built (answered as 503 by the route).
pub type SearchState = Result<Searcher, Arc<str>>;

/// Whether `c` counts as blank in a query: Unicode white space (Rust's `is_whitespace`),
/// the separators U+001C..U+001F (Python's `str.isspace` counts them) and U+FEFF
/// (ECMAScript's `\s` does). The documented pattern lists exactly these characters
/// rather than saying `\s`, which JSON Schema validators read in different ways.
fn blank(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c) || c == '\u{feff}'
}

/// Query of `/search`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The text to look for (1..=1000 characters, not blank, no NUL).
    #[param(
        min_length = 1,
        max_length = 1000,
        pattern = r"^[^\x00]*[^\x00\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff][^\x00]*$"
    )]
    pub q: String,
    /// Only chunks of this project (default: every project).
    pub project_id: Option<Uuid>,
    /// Results, 1..=100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub k: Option<i64>,
    /// `hybrid` (default), `full_text` or `vector`.
    pub mode: Option<SearchMode>,
}

/// How chunks are ranked.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    /// Full-text and vector ranks fused by reciprocal rank fusion.
    Hybrid,
    /// Postgres full-text search only.
    FullText,
    /// Vector similarity only.
    Vector,
}

impl From<SearchMode> for Mode {
    fn from(m: SearchMode) -> Self {
        match m {
            SearchMode::Hybrid => Mode::Hybrid,
            SearchMode::FullText => Mode::FullText,
            SearchMode::Vector => Mode::Vector,
        }
    }
}

/// One chunk found.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchHitBody {
    /// The chunk (extraction) id.
    pub extraction_id: Uuid,
    /// Its page (source).
    pub source_id: Uuid,
    /// Its project.
    pub project_id: Uuid,
    /// Position of the chunk in its page.
    pub chunk_index: i32,
    /// The chunk's text.
    pub text: String,
    /// Ranking score, higher is better; comparable within one answer only (fused score,
    /// full-text rank or cosine, by mode).
    pub score: f32,
    /// The page's URL.
    pub url: String,
    /// The page's title.
    pub title: Option<String>,
    /// The job that created the page's source.
    pub job_id: Option<Uuid>,
    /// The headings the chunk falls under in its page, "Guide › Install › Linux" (`null`
    /// before the page's first heading).
    pub heading_trail: Option<String>,
    /// When the page was first published, RFC 3339 with the page's own UTC offset.
    pub published: Option<DateTime<FixedOffset>>,
    /// The page's language tag (declared, else detected).
    pub language: Option<String>,
    /// The page's site name.
    pub site_name: Option<String>,
    /// For a PDF, the page the chunk comes from (1-based), so a hit can cite it; `null`
    /// for a web page's chunks.
    pub page: Option<i32>,
    /// Rank in the full-text list (1 = best), if the chunk was in it.
    pub text_rank: Option<usize>,
    /// Rank in the vector list (1 = best), if the chunk was in it.
    pub vector_rank: Option<usize>,
}

/// The answer of `/search`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchResults {
    /// The embedding model of the vectors searched.
    pub model: String,
    /// The ranking used.
    pub mode: SearchMode,
    /// Best first.
    pub results: Vec<SearchHitBody>,
}

/// The chunks that best answer `q`.
#[utoipa::path(
    get, path = "/api/v1/search", tag = "search", params(SearchQuery, crate::records::WhereParam),
    responses(
        (status = 200, description = "Best chunks first", body = SearchResults),
        (status = 422, description = "`q` blank, over 1000 characters or holding NUL, `k` outside 1..=100, an unknown mode, a `project_id` that is not a UUID, or `where` without `project_id`, more than 16 or one the parser refuses", body = ErrorBody),
        (status = 503, description = "The embedding model is not available", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn search(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SearchQuery>,
    RawQuery(raw): RawQuery,
) -> Result<Json<SearchResults>, ApiError> {
    let conditions = crate::records::conditions(raw.as_deref())?;
    if !conditions.is_empty() && q.project_id.is_none() {
        return Err(ApiError::unprocessable(
            "`where` needs `project_id`: records belong to a project",
        ));
    }
    let k = q.k.unwrap_or(10);
    if !(1..=MAX_K as i64).contains(&k) {
        return Err(ApiError::unprocessable(format!(
            "k must be within 1..={MAX_K}, got {k}"
        )));
    }
    if q.q.chars().all(blank) {
        return Err(ApiError::unprocessable("q must not be blank"));
    }
    let text = q.q.trim();
    // Postgres text cannot hold NUL; say so rather than fail in the database.
    if q.q.contains('\0') {
        return Err(ApiError::unprocessable("q must not contain NUL characters"));
    }
    if q.q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::unprocessable(format!(
            "q is longer than {MAX_QUERY_CHARS} characters"
        )));
    }
    let searcher = state
        .search
        .as_ref()
        .map_err(|why| ApiError::unavailable(format!("search is unavailable: {why}")))?;
    let mode = q.mode.unwrap_or(SearchMode::Hybrid);
    let sources: Option<HashSet<Uuid>> = match q.project_id {
        Some(project) if !conditions.is_empty() => Some(
            pipeline_store::facts::matching_sources(
                &state.services.db,
                project,
                &conditions,
                MAX_WHERE_SOURCES,
            )
            .await?
            .into_iter()
            .collect(),
        ),
        _ => None,
    };
    let hits = match &sources {
        Some(s) if s.is_empty() => Ok(Vec::new()),
        _ => {
            searcher
                .search_in(
                    &state.services.db,
                    text,
                    q.project_id,
                    sources.as_ref(),
                    k as usize,
                    mode.into(),
                )
                .await
        }
    }
    .map_err(|e| match e {
        SearchError::Store(e) => ApiError::from(e),
        SearchError::Embed(e) if e.is_transient() => {
            tracing::warn!(error = %e, "query embedding failed");
            ApiError::unavailable("the embedding backend is unavailable; retry later")
        }
        other => ApiError::internal("search failed", &other),
    })?;
    Ok(Json(SearchResults {
        model: searcher.model().to_owned(),
        mode,
        results: hits
            .into_iter()
            .map(|h| SearchHitBody {
                // Read before the fields below move out of the chunk.
                published: h.chunk.published(),
                extraction_id: h.chunk.extraction_id,
                source_id: h.chunk.source_id,
                project_id: h.chunk.project_id,
                chunk_index: h.chunk.chunk_index,
                text: h.chunk.text,
                score: h.score,
                url: h.chunk.url,
                title: h.chunk.title,
                job_id: h.chunk.job_id,
                heading_trail: h.chunk.heading_trail,
                language: h.chunk.language,
                site_name: h.chunk.site_name,
                page: h.chunk.page,
                text_rank: h.text_rank,
                vector_rank: h.vector_rank,
            })
            .collect(),
    }))
}

/// The searcher the settings of `services` describe, its index loaded in the background
/// (when called inside a tokio runtime) and refreshed from the first search on, for as long
/// as the searcher lives.
///
/// # Errors
/// The embedder cannot be built (missing model files: the message names the install
/// command; an unreadable API key file).
pub fn build(services: &pipeline_ops::Services) -> Result<Searcher, SearchError> {
    let settings = &services.settings;
    let key = settings.embedding_api_key(&pipeline_core::Sources::from_process())?;
    let mut searcher = Searcher::new(pipeline_search::embedder_from_settings(settings, key)?);
    if tokio::runtime::Handle::try_current().is_ok() {
        searcher.spawn_refresher(
            services.db.clone(),
            REFRESH_EVERY,
            services.components.clone(),
        );
    }
    Ok(searcher)
}

#[cfg(test)]
mod tests {
    use super::blank;

    /// The pattern published for `q` must accept exactly the one-character queries the
    /// server accepts: an API tester that generates from it (or a client that validates
    /// with it) must not send a "valid" query that is refused as blank.
    #[test]
    fn the_documented_pattern_of_q_says_what_the_server_calls_blank() {
        let doc = serde_json::to_value(crate::openapi()).expect("document");
        let q = doc["paths"]["/api/v1/search"]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == "q")
            .expect("q");
        let pattern = q["schema"]["pattern"].as_str().expect("pattern");
        let re = regex::Regex::new(pattern).expect("the pattern compiles");
        let chars = (0..0x3100u32)
            .chain(0xfe00..0xff00)
            .filter_map(char::from_u32);
        for c in chars {
            let accepted = c != '\0' && !blank(c);
            assert_eq!(
                re.is_match(&c.to_string()),
                accepted,
                "U+{:04X}",
                u32::from(c)
            );
        }
        assert!(re.is_match(" bread\u{1d}"));
        assert!(!re.is_match("\u{1d}\u{feff} \t"));
    }
}
