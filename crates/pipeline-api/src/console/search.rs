//! Search over the chunks of every page, as `GET /api/v1/search` answers it: full-text and
//! vector ranks fused (or either alone), optionally within one project. Each hit links to
//! its source's page and its job.

use std::fmt::Write;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use pipeline_search::{MAX_K, Mode, SearchError};
use pipeline_store::jobs;
use uuid::Uuid;

use super::Form;
use super::html::{self, Nav, Page, esc};
use super::session::Session;
use crate::AppState;

/// Longest query, in characters (the API's bound).
const MAX_QUERY_CHARS: usize = crate::search::MAX_QUERY_CHARS;
/// Results shown unless asked otherwise.
const DEFAULT_K: usize = 10;
/// Projects offered in the project filter.
const MAX_PROJECTS: i64 = 200;

const MODES: [(&str, &str, Mode); 3] = [
    ("hybrid", "hybrid (words and meaning)", Mode::Hybrid),
    ("full_text", "words only (full text)", Mode::FullText),
    ("vector", "meaning only (vectors)", Mode::Vector),
];

/// `GET /ui/search?q=&project=&k=&mode=`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let form = Form::parse(raw.as_deref().unwrap_or(""));
    let q = form.one("q").unwrap_or("").trim().to_owned();
    let mut errors: Vec<String> = Vec::new();
    let project = match form.some("project").map(Uuid::parse_str) {
        Some(Ok(p)) => Some(p),
        Some(Err(_)) => {
            errors.push("The project is not a project id; searching every project.".into());
            None
        }
        None => None,
    };
    let k = match form.some("k").map(str::parse::<usize>) {
        Some(Ok(k)) if (1..=MAX_K).contains(&k) => k,
        Some(_) => {
            errors.push(format!(
                "The number of results is 1 to {MAX_K}; showing {DEFAULT_K}."
            ));
            DEFAULT_K
        }
        None => DEFAULT_K,
    };
    let (mode_word, mode) = match form.some("mode") {
        None => ("hybrid", Mode::Hybrid),
        Some(m) => match MODES.iter().find(|(w, _, _)| *w == m) {
            Some((w, _, mode)) => (*w, *mode),
            None => {
                errors.push("Unknown ranking; using hybrid.".into());
                ("hybrid", Mode::Hybrid)
            }
        },
    };
    if q.contains('\0') {
        errors.push("The query cannot hold NUL characters.".into());
    }
    let too_long = q.chars().nth(MAX_QUERY_CHARS).is_some();
    if too_long {
        errors.push(format!(
            "The query is longer than {MAX_QUERY_CHARS} characters."
        ));
    }
    let db = &state.services.db;
    let projects = match jobs::projects_page(db, MAX_PROJECTS, 0).await {
        Ok(p) => p,
        Err(e) => return html::unavailable(&e),
    };
    let mut project_options = String::from("<option value=\"\">every project</option>");
    for p in &projects {
        let sel = if Some(p.id) == project {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            project_options,
            "<option value=\"{}\"{sel}>{}</option>",
            p.id,
            esc(&p.name)
        );
    }
    let mut mode_options = String::new();
    for (w, label, _) in MODES {
        let sel = if w == mode_word { " selected" } else { "" };
        let _ = write!(mode_options, "<option value=\"{w}\"{sel}>{label}</option>");
    }
    let mut body = format!(
        "<form method=\"get\" action=\"/ui/search\" class=\"filters\" role=\"search\">\
<label for=\"q\">Query</label><input id=\"q\" name=\"q\" value=\"{q}\" size=\"50\" maxlength=\"{MAX_QUERY_CHARS}\" required>\
<label for=\"project\">Project</label><select id=\"project\" name=\"project\">{project_options}</select>\
<label for=\"mode\">Ranking</label><select id=\"mode\" name=\"mode\">{mode_options}</select>\
<label for=\"k\">Results</label><input id=\"k\" name=\"k\" type=\"number\" min=\"1\" max=\"{MAX_K}\" value=\"{k}\">\
<button type=\"submit\">Search</button></form>",
        q = esc(&q),
    );
    for e in &errors {
        let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(e));
    }
    let mut status = StatusCode::OK;
    if !q.is_empty() && !too_long && !q.contains('\0') {
        match &state.search {
            Err(why) => {
                status = StatusCode::SERVICE_UNAVAILABLE;
                let _ = write!(
                    body,
                    "<p class=\"error\" role=\"alert\">Search is unavailable: {}</p>",
                    esc(why)
                );
            }
            Ok(searcher) => match searcher.search(db, &q, project, k, mode).await {
                Ok(hits) => {
                    let _ = write!(
                        body,
                        "<p class=\"hint\">{} results · model <code>{}</code></p><ol class=\"hits\">",
                        hits.len(),
                        esc(searcher.model())
                    );
                    for h in &hits {
                        let c = &h.chunk;
                        let ranks = match (h.text_rank, h.vector_rank) {
                            (Some(t), Some(v)) => format!("words #{t} · meaning #{v}"),
                            (Some(t), None) => format!("words #{t}"),
                            (None, Some(v)) => format!("meaning #{v}"),
                            (None, None) => String::new(),
                        };
                        let _ = write!(
                            body,
                            "<li data-source=\"{sid}\"><p class=\"meta\"><a href=\"/ui/sources/{sid}\">{title}</a> \
<span class=\"url\">{url}</span> · chunk #{idx} · score {score:.4} · {ranks}{job}</p><p>{text}</p></li>",
                            sid = c.source_id,
                            title = esc(c
                                .title
                                .as_deref()
                                .filter(|t| !t.is_empty())
                                .unwrap_or(&c.url)),
                            url = esc(&c.url),
                            idx = c.chunk_index,
                            score = h.score,
                            job = c
                                .job_id
                                .map(|j| format!(
                                    " · job <a href=\"/ui/jobs/{j}\">{}</a>",
                                    html::short_id(j)
                                ))
                                .unwrap_or_default(),
                            text = esc(&html::clip(&c.text, 800)),
                        );
                    }
                    body.push_str("</ol>");
                    if hits.is_empty() {
                        body.push_str("<p>No chunk matches.</p>");
                    }
                }
                Err(SearchError::Embed(e)) if e.is_transient() => {
                    tracing::warn!(error = %e, "console: query embedding failed");
                    status = StatusCode::SERVICE_UNAVAILABLE;
                    body.push_str(
                        "<p class=\"error\" role=\"alert\">The embedding backend is unavailable; \
retry in a moment, or rank by words only.</p>",
                    );
                }
                Err(e) => return html::unavailable(&e),
            },
        }
    }
    let mut r = html::layout(
        Page {
            title: "Search",
            nav: Nav::Search,
            refresh_secs: 0,
        },
        &session,
        &body,
    );
    *r.status_mut() = status;
    r
}
