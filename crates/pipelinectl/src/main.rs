//! `pipelinectl`: the operator's command line.
//!
//! Reads the same layered configuration as the daemons (see `config/default.toml`), and talks
//! to Postgres and Redis directly, so it works while the API is down.
//!
//! Exit codes: 0 success; 1 failure (database, Redis, I/O); 2 invalid arguments or
//! configuration; 3 the thing asked for does not exist. A command that waits for work to
//! end (`crawl --wait`, `recrawl --wait`) adds 4 (it ended `completed_with_errors`), 5 (it
//! ended `failed` or was cancelled), 6 (`--wait` ran out; the work goes on) and 130 (Ctrl-C;
//! the work goes on). 141: the reader of the output went away (`| head`), as for any Unix
//! tool stopped by SIGPIPE.

mod crawl;
mod dlq;
mod export;
mod jobs;
mod limits;
mod output;
mod queues;
mod records;
mod reembed;
mod reextract;
mod schemas;
mod search;
mod sources;
mod trace;
mod webhooks;

use crate::output::outln;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pipeline_core::Settings;
use pipeline_ops::Services;

use crate::output::CmdResult;

/// Operate the scraping pipeline.
#[derive(Debug, Parser)]
#[command(
    name = "pipelinectl",
    version,
    about,
    after_help = "Database: DATABASE_URL (else database.url of the configuration; a note on stderr \
                  says when the compiled-in default is used).\n\n\
                  Exit codes: 0 success, 1 failure, 2 invalid arguments or configuration, \
                  3 not found; commands that wait (crawl --wait, recrawl --wait): 4 ended \
                  completed_with_errors, 5 ended failed or cancelled, 6 --wait ran out, \
                  130 interrupted (the work goes on); 141 output pipe closed."
)]
struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the database migrations (safe to run again: a no-op when current).
    Migrate,
    /// Submit URLs to scrape: prints the job id; refused URLs are reported one by one.
    Submit(jobs::SubmitArgs),
    /// Crawl from start URLs (one crawl job each) within a scope, depth and page cap.
    Crawl(crawl::CrawlArgs),
    /// A crawl's progress: discovered, queued, fetched, extracted, failed, skipped by reason.
    CrawlStatus {
        /// The crawl's job id.
        job: String,
    },
    /// Repeats an ended crawl; pages unchanged since their last extraction (304, or the same
    /// content hash) are not extracted again.
    Recrawl {
        /// The ended crawl's job id.
        job: String,
        /// Wait until the recrawl ends, printing its progress; at most this many seconds.
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
    },
    /// Repeats a crawl on a schedule kept in Postgres (the requeue daemon starts each run once
    /// it is due and the previous run has ended). Without an option, shows the schedule.
    CrawlSchedule {
        /// The crawl's job id.
        job: String,
        /// Set the interval: seconds, or a number with s, m, h or d (`90m`, `1d`); 60 s to
        /// 365 d. The first run is one interval from now.
        #[arg(long, value_name = "INTERVAL", conflicts_with = "off")]
        every: Option<String>,
        /// Remove the schedule (a run already started goes on).
        #[arg(long)]
        off: bool,
    },
    /// Cancels a crawl: no more links followed, its waiting pages discarded.
    CrawlCancel {
        /// The crawl's job id.
        job: String,
    },
    /// Jobs: list, show, sources.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Projects: list (the default: by name, with their job and source counts), create (with
    /// an extraction schema from a template or a file), schema (show, set, versions,
    /// remove).
    Projects(schemas::ProjectsArgs),
    /// The shipped schema templates with what they extract; with a NAME, its YAML to copy
    /// and edit.
    Templates {
        /// A template's name.
        name: Option<String>,
    },
    /// A project's records from its extraction schema: entity, key, fields, conflicts (filter
    /// with --entity, --where 'price>=10', --source); --entity E --key K shows one record's
    /// values with their quotes, origins and pages.
    Records(records::RecordsArgs),
    /// Sources: show one's metadata (authors, dates, language, site...) or its Markdown.
    #[command(subcommand)]
    Sources(sources::SourcesCommand),
    /// A source's timeline (by source id or URL): job, attempts, errors, DLQ moves.
    Trace {
        /// A source id or a URL.
        target: String,
    },
    /// The chunks that best answer a query: text, score, URL, title, section and job.
    Search(search::SearchArgs),
    /// Stream sources, chunks (--vectors for their vectors), entities or records as JSON
    /// Lines or CSV, filtered by project, job, time and status; resumable with --cursor.
    /// Needs Postgres only.
    Export(export::ExportArgs),
    /// Give every chunk a vector of the configured model, in the background (resumable).
    Reembed(reembed::ReembedArgs),
    /// Rebuild stored pages' Markdown and metadata from their stored bodies (no fetch), in
    /// the background: pages without them, or every page with --force (resumable).
    Reextract(reextract::ReextractArgs),
    /// Dead-letter queues: stats, list, retry, retry-all, discard, purge.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Per family: messages ready, in flight and delayed, the DLQ by kind, and pause state.
    Queues,
    /// Every live daemon (from the heartbeats they write every 5 s with a 15 s TTL).
    Workers,
    /// A project's share and limits per queue family: weight, messages in flight, start
    /// rate (show, set, clear).
    #[command(subcommand)]
    Limits(limits::LimitsCommand),
    /// Webhooks: a project's endpoints (add prints the signing secret once), their
    /// deliveries, one delivery's payload and trail, test deliveries and replays.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// Pauses a family: its workers stop reserving; work in flight finishes.
    Pause {
        /// `scrape`, `extraction` or `facts`.
        family: pipeline_ops::Family,
    },
    /// Resumes a paused family.
    Resume {
        /// `scrape`, `extraction` or `facts`.
        family: pipeline_ops::Family,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    // A command's own output is the point; routine info logs would drown it, so only
    // warnings show unless RUST_LOG asks for more.
    let mut telemetry = settings.telemetry.clone();
    telemetry.level = "warn".into();
    pipeline_core::telemetry::init(&telemetry);
    pipeline_core::install_crypto_provider();
    if settings.database_url_is_default() && !matches!(cli.command, Command::Templates { .. }) {
        eprintln!(
            "note: DATABASE_URL is not set; using {}",
            pipeline_core::pools::database_description(&settings)
        );
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            failure.exit_code()
        }
    }
}

async fn run(cli: Cli, settings: Settings) -> CmdResult {
    if let Command::Migrate = cli.command {
        return migrate(&settings, cli.json).await;
    }
    if let Command::Export(args) = cli.command {
        // Postgres only: an export works while Redis is down.
        return export::run(&settings, args).await;
    }
    if let Command::Templates { name } = &cli.command {
        // The shipped templates need neither Postgres nor Redis.
        return schemas::templates(name.as_deref(), cli.json);
    }
    let services = Services::build(settings).context("connecting to Postgres and Redis")?;
    let endpoint = services.redis.endpoint().to_owned();
    let db = services.db.clone();
    let result = match cli.command {
        Command::Migrate => unreachable!("handled above"),
        Command::Submit(args) => jobs::submit(&services, args, cli.json).await,
        Command::Crawl(args) => crawl::start(&services, args, cli.json).await,
        Command::CrawlStatus { job } => crawl::status(&services, &job, cli.json).await,
        Command::CrawlCancel { job } => crawl::cancel(&services, &job, cli.json).await,
        Command::Recrawl { job, wait } => crawl::recrawl(&services, &job, wait, cli.json).await,
        Command::CrawlSchedule { job, every, off } => {
            crawl::schedule(&services, &job, every.as_deref(), off, cli.json).await
        }
        Command::Jobs(cmd) => jobs::run(&services, cmd, cli.json).await,
        Command::Projects(args) => schemas::projects(&services, args, cli.json).await,
        Command::Templates { .. } => unreachable!("handled above"),
        Command::Export(_) => unreachable!("handled above"),
        Command::Records(args) => records::run(&services, args, cli.json).await,
        Command::Trace { target } => trace::run(&services, &target, cli.json).await,
        Command::Reembed(args) => reembed::run(&services, args, cli.json).await,
        Command::Reextract(args) => reextract::run(&services, args, cli.json).await,
        Command::Sources(cmd) => sources::run(&services, cmd, cli.json).await,
        Command::Search(args) => search::run(&services, args, cli.json).await,
        Command::Dlq(cmd) => dlq::run(&services, cmd, cli.json).await,
        Command::Webhooks(cmd) => webhooks::run(&services, cmd, cli.json).await,
        Command::Queues => queues::show(&services, cli.json).await,
        Command::Workers => queues::workers(&services, cli.json).await,
        Command::Limits(cmd) => limits::run(&services, cmd, cli.json).await,
        Command::Pause { family } => queues::set_paused(&services, family, true, cli.json).await,
        Command::Resume { family } => queues::set_paused(&services, family, false, cli.json).await,
    };
    match result {
        Ok(()) => Ok(()),
        Err(mut failure) => {
            if failure.redis_unreachable {
                failure.message = format!("cannot reach {endpoint}: {}", failure.message);
            } else if failure.postgres_unreachable {
                failure.message = postgres_unreachable(&db, &failure.message).await;
            }
            Err(failure)
        }
    }
}

/// `cannot reach postgres at host:port/db as user: <why>`: the pool only says it timed
/// out, so one direct connection attempt asks the server (or the network) why.
async fn postgres_unreachable(db: &sqlx::PgPool, message: &str) -> String {
    let endpoint = pipeline_core::pools::pg_endpoint(db);
    match pipeline_core::pools::connect_failure(db, std::time::Duration::from_secs(3)).await {
        Some(why) => format!("cannot reach {endpoint}: {why} ({message})"),
        None => format!("cannot reach {endpoint} in time: {message}"),
    }
}

async fn migrate(settings: &Settings, as_json: bool) -> CmdResult {
    let pool = pipeline_core::pools::pg_pool(settings).map_err(anyhow::Error::from)?;
    let database = pipeline_core::pools::pg_endpoint(&pool);
    let report = match pipeline_store::migrate(&pool).await {
        Ok(report) => report,
        Err(e) => {
            let mut failure =
                output::Failure::from(anyhow::Error::new(e).context("applying migrations"));
            if failure.postgres_unreachable {
                failure.message = postgres_unreachable(&pool, &failure.message).await;
            } else {
                failure.message = format!("{database}: {}", failure.message);
            }
            return Err(failure);
        }
    };
    if as_json {
        output::print_json(&serde_json::json!({
            "database": database,
            "applied": report.applied,
            "known": report.known,
        }))?;
    } else if report.applied.is_empty() {
        outln!(
            "{database}: schema is current ({} migrations); nothing to do",
            report.known
        );
    } else {
        outln!(
            "{database}: applied {} migration(s): {:?}",
            report.applied.len(),
            report.applied
        );
    }
    Ok(())
}
