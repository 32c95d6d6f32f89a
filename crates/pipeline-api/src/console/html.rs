//! HTML building blocks: escaping, the page layout, and the small widgets (progress bars,
//! charts, pagers) the pages share. Plain functions over `String`s: the pages are small,
//! and every value from outside goes through [`esc`] on its way in.

use std::fmt::Write;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::session::Session;

/// `s` with the five HTML metacharacters escaped (text and quoted attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` percent-encoded for a query value.
pub fn url_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `s` cut to `max` characters (then `…`) for display. Quotes and backslashes stay as they
/// are: the text goes through [`esc`] next, and HTML needs nothing more. (The API's
/// `error::clip_to` escapes like a Rust string literal, which is right inside a JSON
/// message and wrong on a page: JSON shown through it came out escaped twice.) Control
/// characters other than newline and tab are shown as `\u{..}` escapes.
pub fn clip(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars().take(max) {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// A long text shown by its first line (at most `max` characters) with the whole of it, up
/// to [`MAX_DETAIL_CHARS`], one click away: an error's cause chain or a multi-line message
/// is not cut at its first line.
pub fn long_text(s: &str, max: usize) -> String {
    let first = s.lines().next().unwrap_or("");
    let whole_fits = s.chars().nth(max).is_none() && !s.contains('\n');
    if whole_fits {
        return esc(&clip(s, max));
    }
    format!(
        "<details class=\"long\"><summary>{}</summary><pre>{}</pre></details>",
        esc(&clip(first, max)),
        esc(&clip(s, MAX_DETAIL_CHARS))
    )
}

/// Most characters of one error or event detail a page shows.
pub const MAX_DETAIL_CHARS: usize = 20_000;

/// The part of a UUID a table shows: its last 12 hex digits, after an ellipsis. Ids are
/// UUIDv7, whose first 8 digits are the same for everything made in the same minute; the
/// last 12 are random (48 bits), so they tell rows apart. The full id is in the title.
pub fn short_id(id: uuid::Uuid) -> String {
    let hex = id.simple().to_string();
    format!(
        "<code class=\"id\" title=\"{id}\">…{}</code>",
        &hex[hex.len() - 12..]
    )
}

/// A number with thousands separators (`1,234,567`).
pub fn num(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A timestamp as `2026-12-01 17:23:02Z` inside a `<time>` element.
pub fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        t.to_rfc3339(),
        t.format("%Y-%m-%d %H:%M:%SZ")
    )
}

/// The sections of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// Queues and throughput.
    Overview,
    /// Live daemons.
    Workers,
    /// Dead-letter queues.
    Dlq,
    /// Jobs and sources.
    Jobs,
    /// Search over chunks.
    Search,
    /// New scrape and crawl jobs.
    Submit,
    /// Webhook endpoints and deliveries.
    Webhooks,
}

/// Options of one page.
pub struct Page<'a> {
    /// The `<title>` and `<h1>`.
    pub title: &'a str,
    /// The highlighted section.
    pub nav: Nav,
    /// Reload the main content every this many seconds (0: never).
    pub refresh_secs: u32,
}

/// The whole document: header, navigation with sign-out, and `body` as the main content.
pub fn layout(page: Page<'_>, session: &Session, body: &str) -> Response {
    let mut nav = String::new();
    for (item, href, label) in [
        (Nav::Overview, "/ui/", "Overview"),
        (Nav::Workers, "/ui/workers", "Workers"),
        (Nav::Dlq, super::DLQ_HOME, "Dead letters"),
        (Nav::Jobs, "/ui/jobs", "Jobs"),
        (Nav::Search, "/ui/search", "Search"),
        (Nav::Submit, "/ui/submit", "New job"),
        (Nav::Webhooks, "/ui/webhooks", "Webhooks"),
    ] {
        let current = if item == page.nav {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(nav, "<li><a href=\"{href}\"{current}>{label}</a></li>");
    }
    let refresh = if page.refresh_secs > 0 {
        format!(" data-refresh=\"{}\"", page.refresh_secs)
    } else {
        String::new()
    };
    let doc = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"csrf-token\" content=\"{csrf}\">\
<title>{title} · pipeline console</title>\
<link rel=\"stylesheet\" href=\"/ui/assets/console.css\">\
<script src=\"/ui/assets/console.js\" defer></script></head><body>\
<a class=\"skip\" href=\"#main\">Skip to content</a>\
<header><span class=\"brand\">pipeline</span><nav aria-label=\"Sections\"><ul>{nav}</ul></nav>\
<form method=\"get\" action=\"/ui/find\" class=\"find\" role=\"search\">\
<input name=\"q\" aria-label=\"Find a job or source by id, or a source by URL\" \
placeholder=\"Job id, source id or URL\" spellcheck=\"false\"></form>\
<form method=\"post\" action=\"/ui/logout\" class=\"signout\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<button type=\"submit\">Sign out</button></form></header>\
<main id=\"main\"{refresh}><h1>{title}</h1>{body}</main></body></html>",
        csrf = esc(&session.csrf),
        title = esc(page.title),
    );
    document(StatusCode::OK, doc)
}

/// An HTML answer with the console's security headers: a strict Content-Security-Policy
/// (scripts, styles and forms from this origin only; no framing), no caching, no sniffing.
pub fn document(status: StatusCode, doc: String) -> Response {
    let mut response = (status, Html(doc)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

fn bare(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} · pipeline console</title>\
<link rel=\"stylesheet\" href=\"/ui/assets/console.css\"></head><body>\
<main id=\"main\" class=\"narrow\"><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    )
}

/// The sign-in page.
pub fn login(token: &str, error: Option<&str>, next: &str) -> Response {
    let error = error
        .map(|e| {
            format!(
                "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "{error}<form method=\"post\" action=\"/ui/login\" class=\"login\">\
<input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
<input type=\"hidden\" name=\"next\" value=\"{next}\">\
<label for=\"key\">API key</label>\
<input id=\"key\" name=\"key\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
<button type=\"submit\">Sign in</button></form>\
<p class=\"hint\">The key the API accepts in <code>X-API-Key</code>. It is checked once; the \
browser then holds a session cookie.</p>",
        token = esc(token),
        next = esc(next),
    );
    document(StatusCode::OK, bare("Sign in", &body))
}

/// An error page outside the layout (no session needed).
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<p class=\"error\" role=\"alert\">{}</p><p><a href=\"/ui/\">Back to the console</a></p>",
        esc(message)
    );
    document(status, bare(title, &body))
}

/// 503 for a backend that did not answer (the cause is logged, not shown).
pub fn unavailable(err: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %err, "console: backend unavailable");
    let mut r = error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        "Redis or Postgres did not answer. Retry in a moment.",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// A progress bar with its text (`<progress>` is announced by screen readers).
pub fn progress(done: u64, total: u64, label: &str) -> String {
    let pct = (done * 100).checked_div(total).unwrap_or(0);
    format!(
        "<span class=\"progress\"><progress max=\"{max}\" value=\"{done}\" aria-label=\"{label}\">{pct}%</progress>\
<span class=\"pct\">{pct}%</span></span>",
        max = total.max(1),
        label = esc(label)
    )
}

/// How a job's sources ended so far: one bar in three parts, succeeded (green), failed (red)
/// and not done yet (grey), drawn as inline SVG (the page's CSP allows no inline styles),
/// with the share done as text and the three counts in its accessible name. A bar that only
/// filled up would look the same for a job that succeeded and one that failed.
pub fn outcome_bar(succeeded: u64, failed: u64, pending: u64, label: &str) -> String {
    let total = succeeded + failed + pending;
    let done = succeeded + failed;
    let pct = (done * 100).checked_div(total).unwrap_or(0);
    let width = |n: u64| (n as f64 * 100.0 / total.max(1) as f64 * 100.0).round() / 100.0;
    let (w_ok, w_failed) = (width(succeeded), width(failed));
    format!(
        "<span class=\"outcome\" data-outcome=\"{succeeded}/{failed}/{pending}\">\
<svg viewBox=\"0 0 100 10\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{label}\">\
<rect class=\"o-pending\" x=\"0\" y=\"0\" width=\"100\" height=\"10\"/>\
<rect class=\"o-ok\" x=\"0\" y=\"0\" width=\"{w_ok}\" height=\"10\"/>\
<rect class=\"o-failed\" x=\"{w_ok}\" y=\"0\" width=\"{w_failed}\" height=\"10\"/></svg>\
<span class=\"pct\">{pct}%</span></span>",
        label = esc(&format!(
            "{label}: {succeeded} succeeded, {failed} failed, {pending} not done yet"
        )),
    )
}

/// A small hidden CSRF field for a form.
pub fn csrf_field(session: &Session) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&session.csrf)
    )
}

/// The time span a chart covers: its buckets' length and how the page names it.
#[derive(Debug, Clone, Copy)]
pub struct Span<'a> {
    /// The span, as the accessible name says it ("last hour").
    pub name: &'a str,
    /// One bucket, as the peak says it ("min", "h").
    pub per: &'a str,
    /// Whether the bucket times need their date (spans over a day).
    pub dated: bool,
}

/// A line chart of per-bucket series (oldest first; `starts` in unix seconds), drawn as
/// inline SVG, with the numbers in a table for screen readers and for anyone who wants
/// them exact.
pub fn chart(
    caption: &str,
    span: Span<'_>,
    starts: &[i64],
    series: &[(&str, &str, Vec<u64>)],
) -> String {
    let (w, h, pad) = (600.0_f64, 120.0_f64, 4.0_f64);
    let max = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let n = starts.len().max(2) as f64;
    let mut lines = String::new();
    for (_, class, values) in series {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let x = pad + (w - 2.0 * pad) * i as f64 / (n - 1.0);
                let y = h - pad - (h - 2.0 * pad) * (*v as f64) / max;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            lines,
            "<polyline class=\"{class}\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    let totals: Vec<String> = series
        .iter()
        .map(|(name, class, v)| {
            format!(
                "<span class=\"key {class}\">{} {}</span>",
                esc(name),
                num(v.iter().sum())
            )
        })
        .collect();
    let summary: Vec<String> = series
        .iter()
        .map(|(name, _, v)| format!("{} {}", name, v.iter().sum::<u64>()))
        .collect();
    let fmt = if span.dated { "%m-%d %H:%M" } else { "%H:%M" };
    let mut rows = String::new();
    for (i, start) in starts.iter().enumerate() {
        let t = chrono::DateTime::from_timestamp(*start, 0).unwrap_or_default();
        let _ = write!(rows, "<tr><td>{}</td>", t.format(fmt));
        for s in series {
            let _ = write!(rows, "<td>{}</td>", s.2.get(i).copied().unwrap_or(0));
        }
        rows.push_str("</tr>");
    }
    let heads: String = series
        .iter()
        .map(|s| format!("<th scope=\"col\">{}</th>", esc(s.0)))
        .collect();
    format!(
        "<figure class=\"chart\"><figcaption>{cap} <span class=\"keys\">{keys}</span> \
<span class=\"scale\">peak {peak}/{per}</span></figcaption>\
<svg viewBox=\"0 0 {w} {h}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{label}\">\
<line class=\"axis\" x1=\"0\" y1=\"{base}\" x2=\"{w}\" y2=\"{base}\"/>{lines}</svg>\
<details><summary>The numbers</summary><div class=\"scroll\"><table><thead><tr><th scope=\"col\">From (UTC)</th>{heads}</tr></thead>\
<tbody>{rows}</tbody></table></div></details></figure>",
        cap = esc(caption),
        keys = totals.join(" "),
        peak = num(max as u64),
        per = esc(span.per),
        label = esc(&format!("{caption}, {}: {}", span.name, summary.join(", "))),
        base = h - pad,
    )
}
