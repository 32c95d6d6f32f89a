//! Finding a job or a source from what an operator has in hand: a whole id (a job's or a
//! source's), the end of a job id as the console shows it (`…2c9f05f0e966`), or a page's
//! URL. One match goes straight to its page; several are listed.
//!
//! Every lookup is indexed except the id-suffix one, which scans the jobs table's ids (jobs
//! are few next to sources) and stops at [`MAX_MATCHES`]. A URL is matched exactly, as the
//! submission normalized it (the `sources.uri` hash index), in every project.

use std::fmt::Write;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use pipeline_store::{StoreError, console, jobs, sources};
use uuid::Uuid;

use super::Form;
use super::html::{self, Nav, Page, esc};
use super::jobs::status_badge;
use super::session::Session;
use crate::AppState;

/// Most matches listed.
const MAX_MATCHES: i64 = 20;
/// Fewest hex digits of an id's end worth looking for (fewer would match half the table).
const MIN_SUFFIX: usize = 6;

/// What the query is, parsed once.
enum Wanted {
    /// Nothing asked yet.
    Nothing,
    /// A whole UUID.
    Id(Uuid),
    /// The last hex digits of a job id.
    Suffix(String),
    /// A page's URL, normalized as a submission would.
    Url(String),
    /// None of the above, with why.
    Unclear(&'static str),
}

fn parse(q: &str) -> Wanted {
    let q = q.trim();
    if q.is_empty() {
        return Wanted::Nothing;
    }
    if let Ok(id) = Uuid::parse_str(q) {
        return Wanted::Id(id);
    }
    let hex: String = q
        .trim_start_matches('…')
        .trim_start_matches("...")
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() >= MIN_SUFFIX && hex.len() < 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Wanted::Suffix(hex);
    }
    let as_url = if q.contains("://") {
        q.to_owned()
    } else {
        format!("https://{q}")
    };
    match pipeline_ops::submit::validate_url(&as_url) {
        Ok(u) if q.contains("://") || q.contains('.') => Wanted::Url(u.into_string()),
        _ => Wanted::Unclear("Not an id, the end of a job id (at least 6 hex digits) or a URL."),
    }
}

/// `GET /ui/find?q=`.
pub async fn find(
    State(state): State<AppState>,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let form = Form::parse(raw.as_deref().unwrap_or(""));
    let q = form.one("q").unwrap_or("").to_owned();
    let db = &state.services.db;
    let mut body = format!(
        "<form method=\"get\" action=\"/ui/find\" class=\"filters\" role=\"search\">\
<label for=\"find-q\">Job id, source id, end of a job id, or URL</label>\
<input id=\"find-q\" name=\"q\" value=\"{}\" size=\"60\" spellcheck=\"false\" required>\
<button type=\"submit\">Find</button></form>",
        esc(&q)
    );
    match parse(&q) {
        Wanted::Nothing => {}
        Wanted::Unclear(why) => {
            let _ = write!(body, "<p class=\"error\" role=\"alert\">{why}</p>");
        }
        Wanted::Id(id) => {
            match jobs::get_summary(db, id).await {
                Ok(_) => return Redirect::to(&format!("/ui/jobs/{id}")).into_response(),
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return html::unavailable(&e),
            }
            match sources::get(db, id).await {
                Ok(_) => return Redirect::to(&format!("/ui/sources/{id}")).into_response(),
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return html::unavailable(&e),
            }
            body.push_str(
                "<p class=\"error\" role=\"alert\">No job and no source has this id.</p>",
            );
        }
        Wanted::Suffix(hex) => {
            let ids = match console::jobs_with_id_suffix(db, &hex, MAX_MATCHES).await {
                Ok(ids) => ids,
                Err(e) => return html::unavailable(&e),
            };
            if let [one] = ids.as_slice() {
                return Redirect::to(&format!("/ui/jobs/{one}")).into_response();
            }
            if ids.is_empty() {
                let _ = write!(
                    body,
                    "<p class=\"error\" role=\"alert\">No job id ends with <code>{}</code>.</p>",
                    esc(&hex)
                );
            } else {
                let _ = write!(
                    body,
                    "<h2>Jobs whose id ends with <code>{}</code></h2><ul class=\"found\">",
                    esc(&hex)
                );
                for id in ids {
                    let _ = write!(
                        body,
                        "<li><a href=\"/ui/jobs/{id}\"><code>{id}</code></a></li>"
                    );
                }
                body.push_str("</ul>");
            }
        }
        Wanted::Url(url) => {
            let found = match sources::find_by_url(db, &url).await {
                Ok(f) => f,
                Err(e) => return html::unavailable(&e),
            };
            if let [one] = found.as_slice() {
                return Redirect::to(&format!("/ui/sources/{}", one.id)).into_response();
            }
            if found.is_empty() {
                let _ = write!(
                    body,
                    "<p class=\"error\" role=\"alert\">No source has the URL <code>{}</code> \
(matched exactly, as submissions store it).</p>",
                    esc(&url)
                );
            } else {
                let _ = write!(
                    body,
                    "<div class=\"table-wrap\"><table><caption>Sources with this URL, one per project</caption>\
<thead><tr><th scope=\"col\">Source</th><th scope=\"col\">Status</th><th scope=\"col\">Job</th>\
<th scope=\"col\">Updated</th></tr></thead><tbody>"
                );
                for s in found.iter().take(MAX_MATCHES as usize) {
                    let _ = write!(
                        body,
                        "<tr data-source=\"{id}\"><td class=\"url\"><a href=\"/ui/sources/{id}\">{url}</a></td>\
<td>{status}</td><td>{job}</td><td>{updated}</td></tr>",
                        id = s.id,
                        url = esc(&s.url),
                        status = status_badge(s.status.as_str()),
                        job = s
                            .created_by_job_id
                            .map(|j| format!("<a href=\"/ui/jobs/{j}\">{}</a>", html::short_id(j)))
                            .unwrap_or_else(|| "—".into()),
                        updated = html::time(s.updated_at),
                    );
                }
                body.push_str("</tbody></table></div>");
            }
        }
    }
    html::layout(
        Page {
            title: "Find",
            nav: Nav::Jobs,
            refresh_secs: 0,
        },
        &session,
        &body,
    )
}

#[cfg(test)]
mod tests {
    use super::{Wanted, parse};

    #[test]
    fn a_query_is_an_id_an_id_end_or_a_url() {
        let id = "01a232cc-d3bd-77e9-b6fc-2c9f05f0e966";
        assert!(matches!(parse(id), Wanted::Id(u) if u.to_string() == id));
        assert!(matches!(parse("…2C9F05F0E966"), Wanted::Suffix(s) if s == "2c9f05f0e966"));
        assert!(matches!(parse("b6fc-2c9f05f0e966"), Wanted::Suffix(s) if s == "b6fc2c9f05f0e966"));
        assert!(
            matches!(parse("https://example.com/a#top"), Wanted::Url(u) if u == "https://example.com/a")
        );
        assert!(matches!(parse("example.com/a"), Wanted::Url(u) if u == "https://example.com/a"));
        assert!(matches!(parse("  "), Wanted::Nothing));
        assert!(matches!(parse("abc"), Wanted::Unclear(_)));
        assert!(matches!(parse("hello world"), Wanted::Unclear(_)));
    }
}
