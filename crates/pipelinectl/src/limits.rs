//! `pipelinectl limits`: a project's share and limits per queue family (show, set, clear),
//! through the same checks as the API (`pipeline_ops::limits`): stored in Postgres, applied
//! to the project's lane in Redis at once.

use clap::{Args, Subcommand};
use pipeline_ops::limits::{self, FamilyLimits, LimitsError, LimitsInput};
use pipeline_ops::{Family, Services};
use serde_json::json;

use crate::output::{self, CmdResult, Failure, outln};

/// `pipelinectl limits ...`.
#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// A project's weight, cap of messages in flight and start rate in every family.
    Show {
        /// Project id or name.
        project: String,
    },
    /// Sets a project's limits in one family, replacing what was set: an option left out
    /// takes its default (weight 1, no cap, no rate, burst 1).
    Set(SetArgs),
    /// Clears a project's limits in one family (back to weight 1, no cap, no rate).
    Clear {
        /// Project id or name.
        project: String,
        /// The queue family: scrape, extraction, facts or webhooks.
        #[arg(long)]
        family: Family,
    },
}

/// `pipelinectl limits set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// Project id or name.
    pub project: String,
    /// The queue family: scrape, extraction, facts or webhooks.
    #[arg(long)]
    pub family: Family,
    /// The project's share against other projects with ready work, 1 to 1000.
    #[arg(long, value_name = "N")]
    pub weight: Option<u32>,
    /// At most this many of the project's messages in flight, across every worker.
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<u32>,
    /// At most this many starts per second on average (above 0, at most 1000).
    #[arg(long, value_name = "X", conflicts_with = "per_minute")]
    pub per_second: Option<f64>,
    /// At most this many starts per minute on average (above 0, at most 60000).
    #[arg(long, value_name = "X")]
    pub per_minute: Option<f64>,
    /// Starts allowed at once by the rate, 1 to 10000 (default 1).
    #[arg(long, value_name = "N")]
    pub burst: Option<u32>,
}

/// Runs a `limits` subcommand.
pub async fn run(services: &Services, cmd: LimitsCommand, as_json: bool) -> CmdResult {
    match cmd {
        LimitsCommand::Show { project } => show(services, &project, as_json).await,
        LimitsCommand::Set(args) => set(services, args, as_json).await,
        LimitsCommand::Clear { project, family } => {
            clear(services, &project, family, as_json).await
        }
    }
}

async fn project(
    services: &Services,
    reference: &str,
) -> CmdResult<pipeline_store::facts::ProjectInfo> {
    pipeline_store::facts::find_project(&services.db, reference)
        .await
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| Failure::not_found(format!("no project `{reference}`")))
}

fn failure(err: LimitsError) -> Failure {
    match err {
        LimitsError::Invalid(e) => Failure::usage(e.to_string()),
        LimitsError::Store(pipeline_store::StoreError::NotFound(what)) => {
            Failure::not_found(format!("{what} not found"))
        }
        LimitsError::Store(e) => anyhow::Error::from(e).into(),
        e @ LimitsError::Queue(_) => anyhow::Error::from(e).into(),
        other => anyhow::Error::from(other).into(),
    }
}

fn rate(per_second: Option<f64>) -> String {
    match per_second {
        None => "-".into(),
        // Rates under one a second read better per minute.
        Some(r) if r < 1.0 => format!("{}/min", trim(r * 60.0)),
        Some(r) => format!("{}/s", trim(r)),
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn row(f: &FamilyLimits) -> Vec<String> {
    vec![
        f.family.as_str().to_owned(),
        f.limits.weight.to_string(),
        f.limits
            .max_in_flight
            .map_or_else(|| "-".into(), |m| m.to_string()),
        rate(f.limits.per_second),
        f.limits.burst.to_string(),
        f.updated_at
            .as_ref()
            .map_or_else(|| "default".into(), output::time),
    ]
}

const HEADERS: [&str; 6] = [
    "FAMILY",
    "WEIGHT",
    "MAX_IN_FLIGHT",
    "RATE",
    "BURST",
    "UPDATED",
];

fn family_json(f: &FamilyLimits) -> serde_json::Value {
    json!({
        "family": f.family,
        "weight": f.limits.weight,
        "max_in_flight": f.limits.max_in_flight,
        "per_second": f.limits.per_second,
        "burst": f.limits.burst,
        "stored": f.stored,
        "updated_at": f.updated_at,
    })
}

async fn show(services: &Services, reference: &str, as_json: bool) -> CmdResult {
    let p = project(services, reference).await?;
    let families = limits::show(services, p.id)
        .await
        .map_err(anyhow::Error::from)?;
    if as_json {
        let families: Vec<_> = families.iter().map(family_json).collect();
        return output::print_json(&json!({
            "project_id": p.id,
            "project": p.name,
            "families": families,
        }));
    }
    outln!("project {} ({})", p.name, p.id);
    let rows: Vec<Vec<String>> = families.iter().map(row).collect();
    output::print_table(&HEADERS, &rows);
    Ok(())
}

async fn set(services: &Services, args: SetArgs, as_json: bool) -> CmdResult {
    let p = project(services, &args.project).await?;
    let input = LimitsInput {
        weight: args.weight,
        max_in_flight: args.max_in_flight,
        per_second: args.per_second,
        per_minute: args.per_minute,
        burst: args.burst,
    };
    let set = limits::set(services, p.id, args.family, &input)
        .await
        .map_err(failure)?;
    if as_json {
        return output::print_json(&family_json(&set));
    }
    outln!(
        "limits of project {} in {} set (applied to its lane on every shard)",
        p.name,
        args.family
    );
    output::print_table(&HEADERS, &[row(&set)]);
    Ok(())
}

async fn clear(services: &Services, reference: &str, family: Family, as_json: bool) -> CmdResult {
    let p = project(services, reference).await?;
    let removed = limits::clear(services, p.id, family)
        .await
        .map_err(failure)?;
    if as_json {
        return output::print_json(&json!({
            "project_id": p.id,
            "family": family,
            "removed": removed,
        }));
    }
    if removed {
        outln!(
            "limits of project {} in {family} cleared (weight 1, no cap, no rate)",
            p.name
        );
    } else {
        outln!(
            "project {} had no limits in {family} (its lane was reset to the defaults)",
            p.name
        );
    }
    Ok(())
}
