//! A family's messages as they sit in its work queue, read without changing anything: the
//! ready work per project (each project's lane: its ready messages, its counted messages in
//! flight, whether it is served, held by its start rate or at its cap), one lane's ready
//! messages (next to be served first), the messages in flight (earliest lease end first)
//! and the delayed ones waiting for a retry (earliest due first).
//!
//! Read-only by construction: the lanes' listing (`WorkQueue::lanes`, a read-only script),
//! `ZRANGE` of a shard's lane, `leases` and `delayed` keys, then `HMGET` of each message's
//! hash (`body`, `token`, `deliveries`, `attempts`, `redrives`, `enqueued_at`, `last_error`,
//! `prio`), one pipeline per shard (every key of a shard shares its hash tag, so this works
//! on a Redis Cluster). Nothing is reserved, renewed or moved. A page reads at most [`PAGE`]
//! messages of each shard. The queue records a lease's token (the delivery it belongs to)
//! and its end, not which worker holds it.

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
    /// `h`, `n` or `l`: its priority within its lane.
    prio: Option<String>,
}

type Fields = (
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

/// Reads one shard's page of `state` (for `Ready`, of lane `lane`) and the total there.
async fn read_shard(
    state: &AppState,
    family: Family,
    shard: u16,
    which: Where,
    lane: &str,
    offset: isize,
) -> Result<(u64, Vec<Message>), String> {
    let queue = state.services.queue(family);
    let keys = queue.keys().shard(shard);
    let mut con = state.services.redis.get();
    let (total, entries): (u64, Vec<(String, Option<i64>)>) = match which {
        Where::Ready => {
            // In serving order: lowest rank first.
            let (len, ids) = queue
                .lane_ready_page(shard, lane, offset as usize, PAGE as usize)
                .await
                .map_err(|e| e.to_string())?;
            (len, ids.into_iter().map(|id| (id, None)).collect())
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
                .await
                .map_err(|e| e.to_string())?;
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
            "prio",
        ]);
    }
    let fields: Vec<Fields> = pipe
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())?;
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
                prio: f.7,
            })
            .collect(),
    ))
}

/// The `lane` parameter of the lane of messages without a project (its key is empty).
const DEFAULT_LANE: &str = "default";

/// Lanes listed in the per-project table.
const MAX_LANES_SHOWN: usize = pipeline_ops::queues::MAX_LANES_SHOWN;

/// Longest lane key read from a link (the queue's bound; a project id is 36 characters).
const MAX_LANE_CHARS: usize = 128;

/// A lane's key as a query parameter value (percent-encoded but for letters, digits and
/// `-`, which is all a project id holds).
fn lane_param(key: &str) -> String {
    if key.is_empty() {
        return DEFAULT_LANE.to_owned();
    }
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The per-project table of ready work: one row per lane, the listed one marked.
fn lanes_table(
    body: &mut String,
    family: &str,
    lanes: &pipeline_ops::queues::FamilyLanes,
    listed: Option<&str>,
    lane_name: &dyn Fn(&str) -> String,
) {
    let _ = write!(
        body,
        "<div class=\"table-wrap\"><table class=\"lanes\" id=\"lanes\"><caption>Ready work by \
project, most ready first (each project gets its turn; within a project, high priority \
first)</caption><thead><tr><th scope=\"col\">Project</th><th scope=\"col\">Ready</th>\
<th scope=\"col\">In flight (counted against its cap)</th><th scope=\"col\">State</th>\
</tr></thead><tbody>"
    );
    if lanes.lanes.is_empty() {
        body.push_str("<tr><td colspan=\"4\">No project has ready work.</td></tr>");
    }
    for l in &lanes.lanes {
        let cur = if listed == Some(l.lane.as_str()) {
            " aria-current=\"true\""
        } else {
            ""
        };
        let state = match l.state {
            pipeline_ops::queues::LaneState::Held => "held (start rate)",
            pipeline_ops::queues::LaneState::Capped => "capped (messages in flight)",
            _ => "serving",
        };
        let _ = write!(
            body,
            "<tr data-lane=\"{key}\"><th scope=\"row\"><a href=\"/ui/queues/{family}?state=ready&amp;lane={param}\"{cur}>{name}</a></th>\
<td class=\"n\">{ready}</td><td class=\"n\">{in_flight}</td><td>{state}</td></tr>",
            key = esc(&l.lane),
            param = lane_param(&l.lane),
            name = lane_name(&l.lane),
            ready = num(l.ready),
            in_flight = num(l.in_flight),
        );
    }
    body.push_str("</tbody></table></div>");
    if lanes.truncated {
        let _ = write!(
            body,
            "<p>The {MAX_LANES_SHOWN} projects with the most ready work are listed.</p>"
        );
    }
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
    // The ready work per project, and the lane whose messages are listed: the one asked for
    // (`lane=default` is the lane of messages without a project), else the one with the most
    // ready work.
    let lanes = if which == Where::Ready {
        match pipeline_ops::queues::lanes(&state.services, family, MAX_LANES_SHOWN).await {
            Ok(l) => Some(l),
            Err(e) => return html::unavailable(&e),
        }
    } else {
        None
    };
    let lane: Option<String> = match form.some("lane") {
        Some(DEFAULT_LANE) => Some(String::new()),
        Some(l) => Some(html::clip(l, MAX_LANE_CHARS)),
        None => lanes
            .as_ref()
            .and_then(|l| l.lanes.first())
            .map(|l| l.lane.clone()),
    };
    let mut total = 0;
    let mut messages = Vec::new();
    let mut more = false;
    for shard in 0..shards {
        if which == Where::Ready && lane.is_none() {
            break;
        }
        let key = lane.as_deref().unwrap_or("");
        match read_shard(&state, family, shard, which, key, offset).await {
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
    let mut project_ids: Vec<Uuid> = lanes
        .iter()
        .flat_map(|l| l.lanes.iter().filter_map(|l| l.project_id))
        .collect();
    if let Some(p) = lane.as_deref().and_then(|l| Uuid::parse_str(l).ok()) {
        project_ids.push(p);
    }
    let projects =
        match pipeline_store::console::project_names(&state.services.db, &project_ids).await {
            Ok(p) => p,
            Err(e) => return html::unavailable(&e),
        };
    let lane_name = |key: &str| -> String {
        if key.is_empty() {
            return "no project".to_owned();
        }
        match Uuid::parse_str(key).ok().and_then(|p| projects.get(&p)) {
            Some(n) => esc(n),
            None => esc(&html::clip(key, 60)),
        }
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
    body.push_str("</ul></nav>");
    if let Some(lanes) = &lanes {
        lanes_table(&mut body, name, lanes, lane.as_deref(), &lane_name);
    }
    let _ = write!(
        body,
        "<p>{} {} {}{} in the {name} queue{}. Read as they are; nothing is \
reserved or moved by looking.</p>",
        num(total),
        if total == 1 { "message" } else { "messages" },
        match which {
            Where::Ready => "ready",
            Where::InFlight => "in flight",
            Where::Delayed => "waiting for a retry",
        },
        match (which, lane.as_deref()) {
            (Where::Ready, Some(l)) => format!(" for {}", lane_name(l)),
            _ => String::new(),
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
<th scope=\"col\">Priority</th><th scope=\"col\">Lease token</th><th scope=\"col\">Deliveries</th>\
<th scope=\"col\">Attempts</th><th scope=\"col\">Redrives</th><th scope=\"col\">Last error</th>\
<th scope=\"col\">Payload</th></tr></thead><tbody>",
        label = which.label(),
        order = match which {
            Where::Ready => "next to be served first",
            Where::InFlight => "earliest lease end first",
            Where::Delayed => "earliest due first",
        },
    );
    if messages.is_empty() {
        body.push_str("<tr><td colspan=\"10\">No messages here.</td></tr>");
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
<td>{time}</td><td class=\"priority\">{prio}</td><td class=\"n\">{token}</td><td class=\"n\">{deliveries}</td><td class=\"n\">{attempts}</td>\
<td class=\"n\">{redrives}</td><td class=\"err\">{err}</td><td>{payload}</td></tr>",
            mid = esc(&m.id),
            prio = match m.prio.as_deref() {
                Some("h") => "high",
                Some("l") => "low",
                Some(_) => "normal",
                None => "—",
            },
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
    let lane_q = match (which, lane.as_deref()) {
        (Where::Ready, Some(l)) => format!("&amp;lane={}", lane_param(l)),
        _ => String::new(),
    };
    if offset > 0 {
        let _ = write!(
            body,
            "<a href=\"/ui/queues/{name}?state={w}{lane_q}&amp;offset={}\" rel=\"prev\">← Earlier</a> ",
            (offset - PAGE).max(0),
            w = which.word()
        );
    }
    if more {
        let _ = write!(
            body,
            "<a href=\"/ui/queues/{name}?state={w}{lane_q}&amp;offset={}\" rel=\"next\">Later →</a>",
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
