//! `pipelinectl webhooks`: a project's webhook endpoints (add, list, show, update, remove),
//! a test delivery, an endpoint's deliveries, one delivery's payload and trail, and a
//! replay. Input goes through the same checks as the API ([`pipeline_ops::webhooks`]).
//!
//! A signing secret is printed once: by `add`, and by `update --rotate-secret`, which makes
//! a new one. No other command prints it.

use clap::{Args, Subcommand};
use pipeline_ops::Services;
use pipeline_ops::schemas;
use pipeline_ops::webhooks::{self as ops, EndpointChange, EndpointInput, Replay, WebhookError};
use pipeline_store::webhooks::{self as store, Delivery, DeliveryDetail, Endpoint};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::jobs::parse_id;
use crate::output::{CmdResult, Failure, clip, opt, outln, print_json, print_table, time};
use crate::schemas::write_failure;

/// Who the delivery trail names for changes made here.
const ACTOR: pipeline_store::Actor = pipeline_store::Actor::Cli;

/// The delivery statuses `deliveries --status` accepts.
const STATUSES: [&str; 5] = [
    "pending",
    "delivered",
    "dead_lettered",
    "parked",
    "cancelled",
];

/// `webhooks` subcommands.
#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Register an endpoint for a project's events; prints its signing secret once.
    Add(AddArgs),
    /// A project's endpoints with their deliveries by status.
    List {
        /// The project's name or id.
        #[arg(long)]
        project: String,
    },
    /// One endpoint (its secret is never shown again).
    Show {
        /// Endpoint id.
        id: String,
    },
    /// Change an endpoint: URL, events, description, enabled, or a new secret.
    Update(UpdateArgs),
    /// Remove an endpoint with its deliveries.
    Remove {
        /// Endpoint id.
        id: String,
    },
    /// Write a test delivery (event `ping`) to an endpoint; prints its id.
    Test {
        /// Endpoint id.
        id: String,
    },
    /// An endpoint's deliveries, newest first.
    Deliveries {
        /// Endpoint id.
        id: String,
        /// Only this status: pending, delivered, dead_lettered, parked or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// Deliveries shown, 1..=200.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Only deliveries older than this one (the last id of the previous page).
        #[arg(long, value_name = "DELIVERY_ID")]
        before: Option<String>,
    },
    /// One delivery: its status, the payload it sends and its trail (every attempt).
    Delivery {
        /// Delivery id.
        id: String,
    },
    /// Send a delivery again with the same id (from the DLQ when it is there).
    Replay {
        /// Delivery id.
        id: String,
    },
}

/// `webhooks add` arguments.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The project's name or id.
    #[arg(long)]
    project: String,
    /// Where deliveries are POSTed (http or https; a non-public address only when
    /// webhooks.allow_private_hosts lists it).
    #[arg(long)]
    url: String,
    /// Events, comma-separated: job.completed, job.completed_with_errors, job.failed,
    /// crawl.ended, page.extracted, item.dead_lettered, item.parked.
    #[arg(long, value_delimiter = ',', required = true)]
    events: Vec<String>,
    /// The signing secret (16 to 256 bytes); generated when left out.
    #[arg(long)]
    secret: Option<String>,
    /// A note for people.
    #[arg(long)]
    description: Option<String>,
}

/// `webhooks update` arguments.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Endpoint id.
    id: String,
    /// A new URL.
    #[arg(long)]
    url: Option<String>,
    /// A new set of events, comma-separated.
    #[arg(long, value_delimiter = ',')]
    events: Option<Vec<String>>,
    /// A new description.
    #[arg(long)]
    description: Option<String>,
    /// Start deliveries again.
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    /// Stop deliveries (queued ones are cancelled when their turn comes).
    #[arg(long)]
    disable: bool,
    /// Generate a new signing secret and print it once.
    #[arg(long, conflicts_with = "secret")]
    rotate_secret: bool,
    /// Set this signing secret (16 to 256 bytes).
    #[arg(long)]
    secret: Option<String>,
}

fn failure(err: WebhookError) -> Failure {
    match err {
        WebhookError::Invalid(e) => Failure::usage(e.to_string()),
        WebhookError::Store(e) => e.into(),
        WebhookError::Dlq(e) => e.into(),
        other => anyhow::Error::new(other).into(),
    }
}

/// Runs a `webhooks` subcommand.
pub async fn run(services: &Services, cmd: WebhooksCommand, as_json: bool) -> CmdResult {
    match cmd {
        WebhooksCommand::Add(args) => add(services, args, as_json).await,
        WebhooksCommand::List { project } => list(services, &project, as_json).await,
        WebhooksCommand::Show { id } => show(services, &id, as_json).await,
        WebhooksCommand::Update(args) => update(services, args, as_json).await,
        WebhooksCommand::Remove { id } => remove(services, &id, as_json).await,
        WebhooksCommand::Test { id } => test(services, &id, as_json).await,
        WebhooksCommand::Deliveries {
            id,
            status,
            limit,
            before,
        } => {
            deliveries(
                services,
                &id,
                status.as_deref(),
                limit,
                before.as_deref(),
                as_json,
            )
            .await
        }
        WebhooksCommand::Delivery { id } => delivery(services, &id, as_json).await,
        WebhooksCommand::Replay { id } => replay(services, &id, as_json).await,
    }
}

/// `pending 1, delivered 4` (statuses with none left out; `none` when there are none).
fn counts_text(counts: &[(String, i64)]) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn counts_json(counts: &[(String, i64)]) -> Value {
    let mut out = json!({});
    for s in STATUSES {
        out[s] = json!(0);
    }
    for (s, n) in counts {
        out[s.as_str()] = json!(n);
    }
    out
}

fn endpoint_json(e: &Endpoint, counts: &[(String, i64)]) -> CmdResult<Value> {
    let mut v = serde_json::to_value(e).map_err(anyhow::Error::from)?;
    v["deliveries"] = counts_json(counts);
    Ok(v)
}

fn print_endpoint(e: &Endpoint, counts: &[(String, i64)]) {
    outln!("webhook      {}", e.id);
    outln!("project      {}", e.project_id);
    outln!("url          {}", e.url);
    outln!("events       {}", e.events.join(", "));
    outln!(
        "enabled      {}",
        if e.enabled { "yes" } else { "no (disabled)" }
    );
    if !e.description.is_empty() {
        outln!("description  {}", clip(&e.description, 200));
    }
    outln!("created      {}", time(&e.created_at));
    outln!("updated      {}", time(&e.updated_at));
    outln!("deliveries   {}", counts_text(counts));
}

async fn endpoint(services: &Services, raw: &str) -> CmdResult<Endpoint> {
    let id = parse_id("webhook", raw)?;
    store::get_endpoint(&services.db, id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("webhook {id} not found")))
}

async fn add(services: &Services, args: AddArgs, as_json: bool) -> CmdResult {
    let project = schemas::find_project(&services.db, &args.project)
        .await
        .map_err(write_failure)?;
    let created = ops::create(
        services,
        project.id,
        &EndpointInput {
            url: args.url,
            events: args.events,
            secret: args.secret,
            description: args.description,
        },
    )
    .await
    .map_err(failure)?;
    if as_json {
        let mut v = endpoint_json(&created.endpoint, &[])?;
        v["secret"] = json!(created.secret);
        return print_json(&v);
    }
    print_endpoint(&created.endpoint, &[]);
    outln!("secret       {}", created.secret);
    outln!();
    outln!("The secret signs every delivery (header Pipeline-Signature); it is not shown again.");
    outln!(
        "Send a test delivery: pipelinectl webhooks test {}",
        created.endpoint.id
    );
    Ok(())
}

async fn list(services: &Services, project: &str, as_json: bool) -> CmdResult {
    let project = schemas::find_project(&services.db, project)
        .await
        .map_err(write_failure)?;
    let endpoints = store::list_endpoints(&services.db, project.id).await?;
    let ids: Vec<Uuid> = endpoints.iter().map(|e| e.id).collect();
    let all = store::delivery_counts_many(&services.db, &ids).await?;
    let counts_of = |id: Uuid| -> Vec<(String, i64)> {
        all.iter()
            .filter(|(e, _, _)| *e == id)
            .map(|(_, s, n)| (s.clone(), *n))
            .collect()
    };
    if as_json {
        let items = endpoints
            .iter()
            .map(|e| endpoint_json(e, &counts_of(e.id)))
            .collect::<CmdResult<Vec<_>>>()?;
        return print_json(&json!({"project_id": project.id, "webhooks": items}));
    }
    if endpoints.is_empty() {
        outln!(
            "no webhooks in project {} (`pipelinectl webhooks add --project {} --url U --events E` adds one)",
            project.name,
            project.name
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = endpoints
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                if e.enabled { "yes" } else { "no" }.into(),
                e.url.clone(),
                e.events.join(","),
                counts_text(&counts_of(e.id)),
            ]
        })
        .collect();
    print_table(&["ID", "ENABLED", "URL", "EVENTS", "DELIVERIES"], &rows);
    Ok(())
}

async fn show(services: &Services, id: &str, as_json: bool) -> CmdResult {
    let e = endpoint(services, id).await?;
    let counts = store::delivery_counts(&services.db, e.id).await?;
    if as_json {
        return print_json(&endpoint_json(&e, &counts)?);
    }
    print_endpoint(&e, &counts);
    Ok(())
}

async fn update(services: &Services, args: UpdateArgs, as_json: bool) -> CmdResult {
    let id = parse_id("webhook", &args.id)?;
    let enabled = match (args.enable, args.disable) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let rotated = args.rotate_secret.then(ops::generate_secret);
    let change = EndpointChange {
        url: args.url,
        events: args.events,
        secret: rotated.clone().or(args.secret),
        description: args.description,
        enabled,
    };
    let nothing = change.url.is_none()
        && change.events.is_none()
        && change.secret.is_none()
        && change.description.is_none()
        && change.enabled.is_none();
    if nothing {
        return Err(Failure::usage(
            "nothing to change: give --url, --events, --description, --enable, --disable, \
             --secret or --rotate-secret",
        ));
    }
    let e = ops::update(services, id, &change)
        .await
        .map_err(failure)?
        .ok_or_else(|| Failure::not_found(format!("webhook {id} not found")))?;
    let counts = store::delivery_counts(&services.db, e.id).await?;
    if as_json {
        let mut v = endpoint_json(&e, &counts)?;
        if let Some(secret) = &rotated {
            v["secret"] = json!(secret);
        }
        return print_json(&v);
    }
    print_endpoint(&e, &counts);
    if let Some(secret) = rotated {
        outln!("secret       {secret}");
        outln!();
        outln!(
            "The new secret signs deliveries from now on; it is not shown again. Give it to the receiver."
        );
    }
    Ok(())
}

async fn remove(services: &Services, id: &str, as_json: bool) -> CmdResult {
    let id = parse_id("webhook", id)?;
    if !store::delete_endpoint(&services.db, id).await? {
        return Err(Failure::not_found(format!("webhook {id} not found")));
    }
    if as_json {
        return print_json(&json!({"removed": id}));
    }
    outln!("removed webhook {id} and its deliveries");
    Ok(())
}

async fn test(services: &Services, id: &str, as_json: bool) -> CmdResult {
    let id = parse_id("webhook", id)?;
    let delivery = store::ping(&services.db, id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("webhook {id} not found")))?;
    if as_json {
        return print_json(&json!({"delivery_id": delivery}));
    }
    outln!("{delivery}");
    outln!("a ping delivery is on its way; follow it: pipelinectl webhooks delivery {delivery}");
    Ok(())
}

fn delivery_row(d: &Delivery) -> Vec<String> {
    vec![
        d.id.to_string(),
        d.event.clone(),
        d.status.clone(),
        d.attempts.to_string(),
        opt(&d.last_status),
        time(&d.created_at),
        d.last_error.clone().unwrap_or_else(|| "-".into()),
    ]
}

async fn deliveries(
    services: &Services,
    id: &str,
    status: Option<&str>,
    limit: i64,
    before: Option<&str>,
    as_json: bool,
) -> CmdResult {
    if !(1..=200).contains(&limit) {
        return Err(Failure::usage(format!(
            "--limit must be between 1 and 200, got {limit}"
        )));
    }
    if let Some(s) = status
        && !STATUSES.contains(&s)
    {
        return Err(Failure::usage(format!(
            "--status `{s}` is not one of: {}",
            STATUSES.join(", ")
        )));
    }
    let before = before.map(|b| parse_id("delivery", b)).transpose()?;
    let e = endpoint(services, id).await?;
    let rows = store::list_deliveries(&services.db, e.id, status, before, limit).await?;
    let more = rows.len() as i64 == limit;
    if as_json {
        return print_json(&json!({
            "webhook_id": e.id,
            "deliveries": rows,
            "next_before": if more { rows.last().map(|d| d.id) } else { None },
        }));
    }
    if rows.is_empty() {
        outln!("no deliveries");
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows.iter().map(delivery_row).collect();
    print_table(
        &[
            "ID",
            "EVENT",
            "STATUS",
            "ATTEMPTS",
            "HTTP",
            "CREATED",
            "LAST ERROR",
        ],
        &table,
    );
    if more && let Some(last) = rows.last() {
        outln!(
            "\nolder deliveries: pipelinectl webhooks deliveries {} --before {}",
            e.id,
            last.id
        );
    }
    Ok(())
}

fn delivery_json(d: &DeliveryDetail) -> CmdResult<Value> {
    let mut v = serde_json::to_value(&d.delivery).map_err(anyhow::Error::from)?;
    v["payload"] = d.payload.clone();
    v["trail"] = serde_json::to_value(&d.events).map_err(anyhow::Error::from)?;
    Ok(v)
}

async fn delivery(services: &Services, id: &str, as_json: bool) -> CmdResult {
    let id = parse_id("delivery", id)?;
    let d = store::get_delivery(&services.db, id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("webhook delivery {id} not found")))?;
    if as_json {
        return print_json(&delivery_json(&d)?);
    }
    let x = &d.delivery;
    outln!("delivery   {}", x.id);
    outln!("webhook    {}", x.endpoint_id);
    outln!("event      {}", x.event);
    outln!("status     {}", x.status);
    outln!("attempts   {}", x.attempts);
    outln!("created    {}", time(&x.created_at));
    if let Some(at) = &x.delivered_at {
        outln!("delivered  {}", time(at));
    }
    if let Some(err) = &x.last_error {
        outln!("last error {}", clip(err, 300));
    }
    outln!();
    outln!("payload");
    let pretty = serde_json::to_string_pretty(&d.payload).map_err(anyhow::Error::from)?;
    for line in pretty.lines() {
        outln!("  {line}");
    }
    outln!();
    if d.events.is_empty() {
        outln!("trail      (empty: not attempted yet)");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = d
        .events
        .iter()
        .map(|e| {
            vec![
                time(&e.at),
                e.kind.clone(),
                opt(&e.attempt),
                opt(&e.http_status),
                e.latency_ms
                    .map(|l| format!("{l} ms"))
                    .unwrap_or_else(|| "-".into()),
                e.actor.clone().unwrap_or_else(|| "-".into()),
                e.error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(
        &["AT", "KIND", "ATTEMPT", "HTTP", "LATENCY", "BY", "ERROR"],
        &rows,
    );
    Ok(())
}

async fn replay(services: &Services, id: &str, as_json: bool) -> CmdResult {
    let id = parse_id("delivery", id)?;
    let outcome = ops::replay(services, id, ACTOR).await.map_err(failure)?;
    let word = match outcome {
        Replay::Replayed => "replayed",
        Replay::Redriven => "redriven",
        Replay::NotFound => {
            return Err(Failure::not_found(format!(
                "webhook delivery {id} not found"
            )));
        }
        Replay::AlreadyPending => {
            return Err(Failure::usage(format!(
                "webhook delivery {id} is still pending: it is on its way already"
            )));
        }
    };
    if as_json {
        return print_json(&json!({"delivery_id": id, "outcome": word}));
    }
    match outcome {
        Replay::Redriven => outln!("redrove delivery {id} from the webhooks DLQ into its queue"),
        _ => outln!("delivery {id} will be sent again (same id: receivers dedupe on it)"),
    }
    Ok(())
}
