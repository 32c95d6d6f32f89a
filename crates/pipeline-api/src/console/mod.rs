//! The operator console: server-rendered HTML under `/ui`, served by the API process on
//! the API's port, with its stylesheet and script compiled into the binary. Nothing is
//! fetched from elsewhere at run time and nothing is built outside `cargo build`.
//!
//! Pages: overview (queues, DLQs, pause state and last-hour charts per family), workers
//! (live daemons from their heartbeats), the DLQ browser (filters, paging, retry and
//! discard of one item, a selection or everything matching), jobs (progress), a job (its
//! counts, project schema and sources by status) and a source (its event trail, extraction
//! and the records the schema stage read on it), and webhooks (a project's endpoints, their
//! deliveries and each delivery's trail, with test, replay and a form to add one).
//!
//! Sign-in turns the API key into a session ([`session`]); every page needs one and every
//! change needs the session's CSRF token. The JSON API is untouched: it keeps `X-API-Key`.

// Helpers here return the finished error page as their `Err` (axum's own style for
// rejections); it is built at most once per request, so boxing it would buy nothing.
#![allow(clippy::result_large_err)]

mod crawl;
mod dlq;
mod find;
pub mod html;
mod jobs;
mod overview;
mod queue;
mod search;
pub mod session;
mod sources;
mod submit;
mod webhooks;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::AppState;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// A parsed `application/x-www-form-urlencoded` body or query (repeated names kept).
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Parses `text`.
    pub fn parse(text: &str) -> Self {
        Self(
            url::form_urlencoded::parse(text.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`.
    pub fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first non-empty value of `name`.
    pub fn some(&self, name: &str) -> Option<&str> {
        self.one(name).filter(|v| !v.is_empty())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The `/ui` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        // The bare paths an operator types lead to the console's pages, not to a JSON 404.
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/dlq", get(|| async { Redirect::to(DLQ_HOME) }))
        .route("/ui/dlq/", get(|| async { Redirect::to(DLQ_HOME) }))
        .route("/ui/", get(overview::overview))
        .route("/ui/login", get(session::login_form).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/workers", get(overview::workers))
        .route("/ui/queues/{family}", get(queue::page))
        .route("/ui/queues/{family}/{action}", post(overview::pause_resume))
        .route("/ui/dlq/{family}", get(dlq::page))
        .route("/ui/dlq/{family}/act", post(dlq::act))
        .route("/ui/dlq/{family}/confirm", get(dlq::confirm))
        .route("/ui/dlq/{family}/all", post(dlq::act_all))
        .route("/ui/jobs", get(jobs::list))
        .route("/ui/jobs/{id}", get(jobs::job))
        .route("/ui/find", get(find::find))
        .route("/ui/search", get(search::page))
        .route("/ui/submit", get(submit::form).post(submit::scrape))
        .route("/ui/crawl", post(submit::start_crawl))
        .route("/ui/sources/{id}", get(sources::source))
        .route("/ui/sources/{id}/retry", post(sources::retry_source))
        .route("/ui/webhooks", get(webhooks::list).post(webhooks::add))
        .route("/ui/webhooks/{id}", get(webhooks::endpoint))
        .route("/ui/webhooks/{id}/test", post(webhooks::test))
        .route("/ui/webhooks/{id}/enabled", post(webhooks::set_enabled))
        .route("/ui/webhook-deliveries/{id}", get(webhooks::delivery))
        .route("/ui/webhook-deliveries/{id}/replay", post(webhooks::replay))
        .route(
            "/ui/assets/console.css",
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/ui/assets/console.js",
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
        .route("/ui/{*rest}", get(not_found))
}

/// The first family's DLQ page, where the navigation's "Dead letters" goes.
const DLQ_HOME: &str = "/ui/dlq/scrape";

/// Any other console path: a console page saying so, with the way back (the API's unknown
/// routes keep their JSON answer).
async fn not_found() -> Response {
    html::error_page(
        axum::http::StatusCode::NOT_FOUND,
        "Not found",
        "There is no console page here.",
    )
}

/// The family a console path names, or a 404 page.
fn family(word: &str) -> Result<pipeline_ops::Family, Response> {
    word.parse().map_err(|_| {
        html::error_page(
            axum::http::StatusCode::NOT_FOUND,
            "Not found",
            &format!(
                "There is no family `{}`; the families are {}.",
                html::clip(word, 100),
                pipeline_ops::Family::names()
            ),
        )
    })
}
