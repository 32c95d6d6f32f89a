//! New jobs from the console: a list of URLs to scrape, or a site to crawl. The same checks
//! as `POST /api/v1/scrape` and `POST /api/v1/crawl` (the forms call the same functions);
//! both forms carry the session's CSRF token. A refused form comes back filled in, with
//! the reason; an accepted one goes to its job's page, which lists any URL it refused.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use pipeline_ops::crawl::rules::ScopeKind;
use pipeline_ops::crawl::{self, CrawlRequest, DEFAULT_MAX_DEPTH, DEFAULT_MAX_PAGES};
use pipeline_ops::messages::{Priority, RenderMode};
use pipeline_ops::submit::{self, SubmitError, SubmitRequest};
use pipeline_store::jobs;

use super::Form;
use super::html::{self, Nav, Page, esc};
use super::session::Session;
use crate::AppState;

/// Projects offered as suggestions in the project fields.
const MAX_PROJECTS: i64 = 200;

/// The options of a priority select, the form's choice (default `normal`) selected.
fn priority_options(form: Option<&Form>) -> String {
    let chosen = match field(form, "priority") {
        "" => "normal",
        w => w,
    };
    let mut out = String::new();
    for p in Priority::ALL {
        let w = p.as_str();
        let sel = if chosen == w { " selected" } else { "" };
        let _ = write!(out, "<option value=\"{w}\"{sel}>{w}</option>");
    }
    out
}

/// The priority a form asks for (`normal` when absent), or why it cannot be one.
fn priority_of(form: &Form) -> Result<Priority, String> {
    match optional(form, "priority") {
        None => Ok(Priority::Normal),
        Some(w) => w
            .parse()
            .map_err(|_| format!("The priority is high, normal or low, not `{w}`.")),
    }
}

/// The options of a render select: the worker's default (an empty value, the default), then
/// each mode; the form's choice selected.
fn render_options(form: Option<&Form>) -> String {
    let chosen = field(form, "render");
    let sel = |w: &str| if chosen == w { " selected" } else { "" };
    let mut out = format!("<option value=\"\"{}>worker default</option>", sel(""));
    for m in RenderMode::ALL {
        let w = m.as_str();
        let _ = write!(out, "<option value=\"{w}\"{}>{w}</option>", sel(w));
    }
    out
}

/// The render mode a form asks for (`None`, the worker's default, when blank), or why it
/// cannot be one.
fn render_of(form: &Form) -> Result<Option<RenderMode>, String> {
    optional(form, "render")
        .map(|w| {
            w.parse().map_err(|_| {
                format!(
                    "The render mode is never, auto, always or the worker's default, not `{w}`."
                )
            })
        })
        .transpose()
}

/// What the forms show: empty, or what was sent, with the reason it was refused.
#[derive(Default)]
struct Shown<'a> {
    scrape: Option<&'a Form>,
    crawl: Option<&'a Form>,
    error: Option<String>,
}

fn field<'a>(form: Option<&'a Form>, name: &str) -> &'a str {
    form.and_then(|f| f.one(name)).unwrap_or("")
}

async fn page(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    shown: Shown<'_>,
) -> Response {
    let projects = match jobs::projects_page(&state.services.db, MAX_PROJECTS, 0).await {
        Ok(p) => p,
        Err(e) => return html::unavailable(&e),
    };
    let mut body = String::new();
    if let Some(e) = &shown.error {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\" id=\"submit-error\">{}</p>",
            esc(e)
        );
    }
    body.push_str("<datalist id=\"projects\">");
    for p in &projects {
        let _ = write!(body, "<option value=\"{}\">", esc(&p.name));
    }
    body.push_str("</datalist>");
    let s = shown.scrape;
    let _ = write!(
        body,
        "<section aria-labelledby=\"scrape-h\"><h2 id=\"scrape-h\">Scrape URLs</h2>\
<form method=\"post\" action=\"/ui/submit\" class=\"form\" id=\"scrape-form\">{csrf}\
<label for=\"urls\">URLs, one per line (at most {max})</label>\
<textarea id=\"urls\" name=\"urls\" rows=\"8\" cols=\"80\" required spellcheck=\"false\">{urls}</textarea>\
<label for=\"scrape-project\">Project (created if new; empty: the default project)</label>\
<input id=\"scrape-project\" name=\"project\" list=\"projects\" value=\"{project}\">\
<label for=\"scrape-group\">Source group (optional)</label>\
<input id=\"scrape-group\" name=\"source_group\" value=\"{group}\">\
<label for=\"scrape-priority\">Priority within the project</label>\
<select id=\"scrape-priority\" name=\"priority\">{priorities}</select>\
<label for=\"scrape-render\">Render pages in a browser (never, auto, always)</label>\
<select id=\"scrape-render\" name=\"render\">{renders}</select>\
<button type=\"submit\">Submit</button></form></section>",
        csrf = html::csrf_field(session),
        max = submit::MAX_URLS,
        urls = esc(field(s, "urls")),
        project = esc(field(s, "project")),
        group = esc(field(s, "source_group")),
        priorities = priority_options(s),
        renders = render_options(s),
    );
    let c = shown.crawl;
    let scope = field(c, "scope");
    let mut scopes = String::new();
    for (w, label) in [
        ("host", "the start URL's host"),
        ("domain", "its whole domain"),
        ("prefix", "URLs under the start URL's folder"),
    ] {
        let sel = if scope == w { " selected" } else { "" };
        let _ = write!(scopes, "<option value=\"{w}\"{sel}>{label}</option>");
    }
    // A box is checked when the form came back with it checked, or by default.
    let checked = |name: &str, default: bool| match c {
        Some(f) if f.one(name).is_some() => " checked",
        Some(_) => "",
        None if default => " checked",
        None => "",
    };
    let _ = write!(
        body,
        "<section aria-labelledby=\"crawl-h\"><h2 id=\"crawl-h\">Crawl a site</h2>\
<form method=\"post\" action=\"/ui/crawl\" class=\"form\" id=\"crawl-form\">{csrf}\
<label for=\"crawl-url\">Start URL</label>\
<input id=\"crawl-url\" name=\"url\" type=\"url\" size=\"60\" required value=\"{url}\">\
<label for=\"crawl-scope\">Follow links to</label><select id=\"crawl-scope\" name=\"scope\">{scopes}</select>\
<label for=\"crawl-depth\">Most links away from the start (default {depth})</label>\
<input id=\"crawl-depth\" name=\"max_depth\" type=\"number\" min=\"0\" max=\"{max_depth}\" value=\"{depth_v}\">\
<label for=\"crawl-pages\">Most pages (default {pages})</label>\
<input id=\"crawl-pages\" name=\"max_pages\" type=\"number\" min=\"1\" max=\"{max_pages}\" value=\"{pages_v}\">\
<label for=\"crawl-include\">Only URLs matching one of these (globs, one per line; optional)</label>\
<textarea id=\"crawl-include\" name=\"include\" rows=\"2\" cols=\"60\" spellcheck=\"false\">{include}</textarea>\
<label for=\"crawl-exclude\">Never URLs matching these (globs, one per line; optional)</label>\
<textarea id=\"crawl-exclude\" name=\"exclude\" rows=\"2\" cols=\"60\" spellcheck=\"false\">{exclude}</textarea>\
<span class=\"check\"><input id=\"crawl-sitemaps\" name=\"sitemaps\" type=\"checkbox\" value=\"on\"{sitemaps}>\
<label for=\"crawl-sitemaps\">Read the site's sitemaps</label></span>\
<span class=\"check\"><input id=\"crawl-nofollow\" name=\"follow_nofollow\" type=\"checkbox\" value=\"on\"{nofollow}>\
<label for=\"crawl-nofollow\">Follow links marked nofollow</label></span>\
<label for=\"crawl-project\">Project (created if new; empty: the default project)</label>\
<input id=\"crawl-project\" name=\"project\" list=\"projects\" value=\"{project}\">\
<label for=\"crawl-group\">Source group (optional)</label>\
<input id=\"crawl-group\" name=\"source_group\" value=\"{group}\">\
<label for=\"crawl-priority\">Priority within the project (recrawls keep it)</label>\
<select id=\"crawl-priority\" name=\"priority\">{priorities}</select>\
<label for=\"crawl-render\">Render pages in a browser (never, auto, always; recrawls keep it)</label>\
<select id=\"crawl-render\" name=\"render\">{renders}</select>\
<button type=\"submit\">Start the crawl</button></form></section>",
        csrf = html::csrf_field(session),
        url = esc(field(c, "url")),
        depth = DEFAULT_MAX_DEPTH,
        max_depth = crawl::MAX_MAX_DEPTH,
        depth_v = esc(field(c, "max_depth")),
        pages = DEFAULT_MAX_PAGES,
        max_pages = crawl::MAX_MAX_PAGES,
        pages_v = esc(field(c, "max_pages")),
        include = esc(field(c, "include")),
        exclude = esc(field(c, "exclude")),
        sitemaps = checked("sitemaps", crawl::DEFAULT_SITEMAPS),
        nofollow = checked("follow_nofollow", false),
        project = esc(field(c, "project")),
        group = esc(field(c, "source_group")),
        priorities = priority_options(c),
        renders = render_options(c),
    );
    let mut r = html::layout(
        Page {
            title: "New job",
            nav: Nav::Submit,
            refresh_secs: 0,
        },
        session,
        &body,
    );
    *r.status_mut() = status;
    r
}

/// `GET /ui/submit`: the two forms.
pub async fn form(State(state): State<AppState>, session: Session) -> Response {
    page(&state, &session, StatusCode::OK, Shown::default()).await
}

/// The non-blank lines of a text area, trimmed.
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// An optional text field: `None` when blank.
fn optional(form: &Form, name: &str) -> Option<String> {
    form.one(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// What to say for a refused submission, and the status; `Err` for a backend failure.
fn refusal(e: SubmitError) -> Result<(StatusCode, String), Response> {
    match e {
        SubmitError::Invalid(msg) => Ok((StatusCode::UNPROCESSABLE_ENTITY, msg)),
        SubmitError::UnknownProject(id) => {
            Ok((StatusCode::NOT_FOUND, format!("There is no project {id}.")))
        }
        // The job is recorded; the reconciler queues its sources later. Its page says so.
        SubmitError::Enqueue { job_id, .. } => {
            Err(Redirect::to(&format!("/ui/jobs/{job_id}?done=recorded")).into_response())
        }
        other => Err(html::unavailable(&other)),
    }
}

/// `POST /ui/submit`: scrapes the URLs of the text area.
pub async fn scrape(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = session.check(&headers, &form) {
        return r;
    }
    let urls = lines(form.one("urls").unwrap_or(""));
    let (priority, render) = match priority_of(&form).and_then(|p| Ok((p, render_of(&form)?))) {
        Ok(chosen) => chosen,
        Err(msg) => {
            let shown = Shown {
                scrape: Some(&form),
                error: Some(msg),
                ..Shown::default()
            };
            return page(&state, &session, StatusCode::UNPROCESSABLE_ENTITY, shown).await;
        }
    };
    let req = SubmitRequest {
        urls,
        project_id: None,
        project_name: optional(&form, "project"),
        source_group: optional(&form, "source_group"),
        model_token_cap: None,
        priority,
        render,
    };
    match submit::submit(&state.services, &req, pipeline_store::Actor::Console).await {
        Ok(out) => {
            tracing::info!(job_id = %out.job_id, sources = out.sources.len(),
                refused = out.invalid.len(), "console: scrape job submitted");
            Redirect::to(&format!("/ui/jobs/{}", out.job_id)).into_response()
        }
        Err(e) => match refusal(e) {
            Ok((status, msg)) => {
                let shown = Shown {
                    scrape: Some(&form),
                    error: Some(msg),
                    ..Shown::default()
                };
                page(&state, &session, status, shown).await
            }
            Err(r) => r,
        },
    }
}

/// The crawl form as the request `POST /api/v1/crawl` takes, or why not.
fn crawl_request(form: &Form) -> Result<CrawlRequest, String> {
    let number = |name: &str, what: &str| -> Result<Option<u32>, String> {
        optional(form, name)
            .map(|v| {
                v.parse::<u32>()
                    .map_err(|_| format!("{what} must be a whole number, not `{v}`."))
            })
            .transpose()
    };
    let scope = match optional(form, "scope") {
        Some(s) => Some(ScopeKind::parse(&s).ok_or("The scope is host, domain or prefix.")?),
        None => None,
    };
    Ok(CrawlRequest {
        url: form.one("url").unwrap_or("").trim().to_owned(),
        scope,
        include: lines(form.one("include").unwrap_or("")),
        exclude: lines(form.one("exclude").unwrap_or("")),
        max_depth: number("max_depth", "The depth")?,
        max_pages: number("max_pages", "The page limit")?,
        follow_nofollow: form.one("follow_nofollow").is_some(),
        sitemaps: Some(form.one("sitemaps").is_some()),
        project: optional(form, "project"),
        source_group: optional(form, "source_group"),
        priority: Some(priority_of(form)?),
        render: render_of(form)?,
        ..CrawlRequest::default()
    })
}

/// `POST /ui/crawl`: starts a crawl.
pub async fn start_crawl(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form = Form::parse(&body);
    if let Err(r) = session.check(&headers, &form) {
        return r;
    }
    let outcome = match crawl_request(&form) {
        Ok(req) => crawl::start(&state.services, &req, pipeline_store::Actor::Console)
            .await
            .map_err(refusal),
        Err(msg) => Err(Ok((StatusCode::UNPROCESSABLE_ENTITY, msg))),
    };
    match outcome {
        Ok(started) => {
            tracing::info!(job_id = %started.job_id, url = %started.settings.start_url,
                "console: crawl started");
            Redirect::to(&format!("/ui/jobs/{}", started.job_id)).into_response()
        }
        Err(Ok((status, msg))) => {
            let shown = Shown {
                crawl: Some(&form),
                error: Some(msg),
                ..Shown::default()
            };
            page(&state, &session, status, shown).await
        }
        Err(Err(r)) => r,
    }
}
