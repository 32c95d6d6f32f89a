//! A family's messages as they sit in its work queue, read without changing anything: the
//! ready list (next to be served first), the messages in flight (earliest lease end first)
//! and the delayed ones waiting for a retry (earliest due first).
//!
//! Read-only by construction: `LRANGE` / `ZRANGE` of a shard's `ready`, `leases` and
//! `delayed` keys, then `HMGET` of each message's hash (`body`, `token`, `deliveries`,
//! `attempts`, `redrives`, `enqueued_at`, `last_error`), one pipeline per shard (every key of
//! a shard shares its hash tag, so this works on a Redis Cluster). No script runs and
//! nothing is reserved, renewed or moved. A page reads at most [`PAGE`] messages of each
//! shard. The queue records a lease's token (the delivery it belongs to) and its end, not
//! which worker holds it.

use std::fmt::Write;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use pipeline_ops::Family;
use uuid::Uuid;

use super::html::{self, Nav, Page, esc, num};
use super::session::Session;
use super::{Form, family};
use crate::AppState;

/// Messages read per shard and page.
const PAGE: isize = 50;
/// Deepest offset a page link may ask for (a list can be long; an inspection page needs
/// no more).
const MAX_OFFSET: isize = 100_000;
/// Most characters of a body shown.
const MAX_BODY_CHARS: usize = 4_000;

/// Where in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Ready,
    InFlight,
    Delayed,
}

impl Where {
    const ALL: [Where; 3] = [Self::Ready, Self::InFlight, Self::Delayed];

    fn parse(word: Option<&str>) -> Option<Self> {
        match word {
            None | Some("") | Some("ready") => Some(Self::Ready),
            Some("in_flight") => Some(Self::InFlight),
            Some("delayed") => Some(Self::Delayed),
            Some(_) => None,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::InFlight => "in_flight",
            Self::Delayed => "delayed",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::InFlight => "In flight",
            Self::Delayed => "Delayed (waiting for a retry)",
        }
    }
}

/// One message as read.
struct Message {
    shard: u16,
    id: String,
    /// Lease end (in flight) or due time (delayed), in ms since the epoch.
    score: Option<i64>,
    body: Option<String>,
    token: Option<String>,
    deliveries: Option<i64>,
    attempts: Option<i64>,
    redrives: Option<i64>,
    enqueued_at: Option<i64>,
    last_error: Option<String>,
}

type Fields = (
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

/// Reads one shard's page of `state` and the total there.
async fn read_shard(
    state: &AppState,
    family: Family,
    shard: u16,
    which: Where,
    offset: isize,
) -> redis::RedisResult<(u64, Vec<Message>)> {
    let keys = state.services.queue(family).keys().shard(shard);
    let mut con = state.services.redis.get();
    let (total, entries): (u64, Vec<(String, Option<i64>)>) = match which {
        Where::Ready => {
            // Served from the right: the last element is next.
            let (len, ids): (u64, Vec<String>) = redis::pipe()
                .cmd("LLEN")
                .arg(keys.ready())
                .cmd("LRANGE")
                .arg(keys.ready())
                .arg(-offset - PAGE)
                .arg(-offset - 1)
                .query_async(&mut con)
                .await?;
            (len, ids.into_iter().rev().map(|id| (id, None)).collect())
        }
        Where::InFlight | Where::Delayed => {
            let key = if which == Where::InFlight {
                keys.leases()
            } else {
                keys.delayed()
            };
            let (n, scored): (u64, Vec<(String, f64)>) = redis::pipe()
                .cmd("ZCARD")
                .arg(&key)
                .cmd("ZRANGE")
                .arg(&key)
                .arg(offset)
                .arg(offset + PAGE - 1)
                .arg("WITHSCORES")
                .query_async(&mut con)
                .await?;
            (
                n,
                scored
                    .into_iter()
                    .map(|(id, s)| (id, Some(s as i64)))
                    .collect(),
            )
        }
    };
    if entries.is_empty() {
        return Ok((total, Vec::new()));
    }
    let mut pipe = redis::pipe();
    for (id, _) in &entries {
        pipe.cmd("HMGET").arg(keys.msg(id)).arg(&[
            "body",
            "token",
            "deliveries",
            "attempts",
            "redrives",
            "enqueued_at",
            "last_error",
        ]);
    }
    let fields: Vec<Fields> = pipe.query_async(&mut con).await?;
    Ok((
        total,
        entries
            .into_iter()
            .zip(fields)
            .map(|((id, score), f)| Message {
                shard,
                id,
                score,
                body: f.0,
                token: f.1,
                deliveries: f.2,
                attempts: f.3,
                redrives: f.4,
                enqueued_at: f.5,
                last_error: f.6,
            })
            .collect(),
    ))
}

fn at_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(html::time)
        .unwrap_or_else(|| "—".into())
}

/// The body as indented JSON when it is JSON, cut to [`MAX_BODY_CHARS`].
fn body_html(body: &str) -> String {
    let shown = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_owned());
    format!(
        "<details class=\"long\"><summary><code>{}</code></summary><pre>{}</pre></details>",
        esc(&html::clip(body, 80)),
        esc(&html::clip(&shown, MAX_BODY_CHARS))
    )
}

/// `GET /ui/queues/{family}?state=ready|in_flight|delayed&offset=`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(word): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let family = match family(&word) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let form = Form::parse(raw.as_deref().unwrap_or(""));
    let Some(which) = Where::parse(form.some("state")) else {
        return html::error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "The queue's states are ready, in_flight and delayed.",
        );
    };
    let offset = form
        .one("offset")
        .and_then(|o| o.parse::<isize>().ok())
        .unwrap_or(0)
        .clamp(0, MAX_OFFSET);
    let shards = match state.services.queue(family).shards_in_use().await {
        Ok(n) => n,
        Err(e) => return html::unavailable(&e),
    };
    let mut total = 0;
    let mut messages = Vec::new();
    let mut more = false;
    for shard in 0..shards {
        match read_shard(&state, family, shard, which, offset).await {
            Ok((n, mut m)) => {
                total += n;
                more |= n as isize > offset + PAGE;
                messages.append(&mut m);
            }
            Err(e) => return html::unavailable(&e),
        }
    }
    // Across shards: earliest lease end or due time first; ready lists keep their order.
    if which != Where::Ready {
        messages.sort_by_key(|m| m.score.unwrap_or(i64::MAX));
    }
    let ids: Vec<Uuid> = messages
        .iter()
        .filter_map(|m| Uuid::parse_str(&m.id).ok())
        .collect();
    let uris = match pipeline_store::sources::urls(&state.services.db, &ids).await {
        Ok(u) => u,
        Err(e) => return html::unavailable(&e),
    };
    let name = family.as_str();
    let mut body = String::from("<nav class=\"tabs\" aria-label=\"Queue states\"><ul>");
    for s in Where::ALL {
        let cur = if s == which {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(
            body,
            "<li><a href=\"/ui/queues/{name}?state={w}\"{cur}>{l}</a></li>",
            w = s.word(),
            l = s.label()
        );
    }
    let _ = write!(
        body,
        "</ul></nav><p>{} {} {} in the {name} queue{}. Read as they are; nothing is \
reserved or moved by looking.</p>",
        num(total),
        if total == 1 { "message" } else { "messages" },
        match which {
            Where::Ready => "ready",
            Where::InFlight => "in flight",
            Where::Delayed => "waiting for a retry",
        },
        if shards > 1 {
            format!(" ({shards} shards; this page shows up to {PAGE} of each)")
        } else {
            String::new()
        }
    );
    let when = match which {
        Where::Ready => "Enqueued",
        Where::InFlight => "Lease ends",
        Where::Delayed => "Due",
    };
    let _ = write!(
        body,
        "<div class=\"table-wrap\"><table class=\"messages\"><caption>{label}, {order}</caption><thead><tr>\
<th scope=\"col\">Message</th><th scope=\"col\">Source URL</th><th scope=\"col\">{when}</th>\
<th scope=\"col\">Lease token</th><th scope=\"col\">Deliveries</th><th scope=\"col\">Attempts</th>\
<th scope=\"col\">Redrives</th><th scope=\"col\">Last error</th><th scope=\"col\">Payload</th></tr></thead><tbody>",
        label = which.label(),
        order = match which {
            Where::Ready => "next to be served first",
            Where::InFlight => "earliest lease end first",
            Where::Delayed => "earliest due first",
        },
    );
    if messages.is_empty() {
        body.push_str("<tr><td colspan=\"9\">No messages here.</td></tr>");
    }
    for m in &messages {
        let source = Uuid::parse_str(&m.id).ok();
        let url = source
            .and_then(|s| uris.get(&s))
            .map(|u| esc(u))
            .unwrap_or_else(|| "—".into());
        let id = match source {
            Some(s) => format!("<a href=\"/ui/sources/{s}\">{}</a>", html::short_id(s)),
            None => format!("<code>{}</code>", esc(&html::clip(&m.id, 60))),
        };
        let shard = if shards > 1 {
            format!(" <small>shard {}</small>", m.shard)
        } else {
            String::new()
        };
        let time = match which {
            Where::Ready => m.enqueued_at.map(at_ms),
            _ => m.score.map(at_ms),
        }
        .unwrap_or_else(|| "—".into());
        let n = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_else(|| "—".into());
        let _ = write!(
            body,
            "<tr data-message=\"{mid}\"><th scope=\"row\">{id}{shard}</th><td class=\"url\">{url}</td>\
<td>{time}</td><td class=\"n\">{token}</td><td class=\"n\">{deliveries}</td><td class=\"n\">{attempts}</td>\
<td class=\"n\">{redrives}</td><td class=\"err\">{err}</td><td>{payload}</td></tr>",
            mid = esc(&m.id),
            token = esc(m.token.as_deref().unwrap_or("—")),
            deliveries = n(m.deliveries),
            attempts = n(m.attempts),
            redrives = n(m.redrives),
            err = html::long_text(m.last_error.as_deref().unwrap_or(""), 160),
            payload = m
                .body
                .as_deref()
                .map(body_html)
                .unwrap_or_else(|| "<em>gone (settled since it was listed)</em>".into()),
        );
    }
    body.push_str("</tbody></table></div><nav class=\"pager\" aria-label=\"Pages\">");
    if offset > 0 {
        let _ = write!(
            body,
            "<a href=\"/ui/queues/{name}?state={w}&amp;offset={}\" rel=\"prev\">← Earlier</a> ",
            (offset - PAGE).max(0),
            w = which.word()
        );
    }
    if more {
        let _ = write!(
            body,
            "<a href=\"/ui/queues/{name}?state={w}&amp;offset={}\" rel=\"next\">Later →</a>",
            offset + PAGE,
            w = which.word()
        );
    }
    body.push_str("</nav>");
    html::layout(
        Page {
            title: &format!("Queue: {name}"),
            nav: Nav::Overview,
            refresh_secs: 0,
        },
        &session,
        &body,
    )
}
