//! `pipelinectl queues`, `workers`, `pause` and `resume`: the same state the API's
//! `/api/v1/queues` and `/api/v1/workers` show, read from Redis directly.

use crate::output::outln;
use anyhow::Context;
use pipeline_ops::{Family, Services, heartbeat, pause, queues};
use serde_json::json;

use crate::output::{self, CmdResult};

/// Per family: ready, in flight, delayed, DLQ by kind, paused.
pub async fn show(services: &Services, as_json: bool) -> CmdResult {
    let snapshot = queues::snapshot(services)
        .await
        .map_err(anyhow::Error::msg)
        .context("reading the queues")?;
    let mut lanes = Vec::with_capacity(snapshot.len());
    for f in &snapshot {
        lanes.push(
            queues::lanes(services, f.family, queues::MAX_LANES_SHOWN)
                .await
                .map_err(anyhow::Error::msg)
                .context("reading the queues' lanes")?,
        );
    }
    if as_json {
        let families: Vec<serde_json::Value> = snapshot
            .iter()
            .zip(&lanes)
            .map(|(f, l)| {
                let mut v = json!(f);
                v["lanes"] = json!(l.lanes);
                v["lanes_truncated"] = json!(l.truncated);
                v
            })
            .collect();
        return output::print_json(&json!({ "families": families }));
    }
    let rows: Vec<Vec<String>> = snapshot
        .iter()
        .map(|f| {
            vec![
                f.family.as_str().to_owned(),
                f.ready.to_string(),
                f.in_flight.to_string(),
                f.delayed.to_string(),
                f.dlq_transient.to_string(),
                f.dlq_permanent.to_string(),
                f.dlq_parked.to_string(),
                match &f.paused {
                    Some(p) => format!("paused by {} at {}", p.by, output::time(&p.at)),
                    None => "running".to_owned(),
                },
            ]
        })
        .collect();
    output::print_table(
        &[
            "FAMILY",
            "READY",
            "IN_FLIGHT",
            "DELAYED",
            "DLQ_TRANSIENT",
            "DLQ_PERMANENT",
            "DLQ_PARKED",
            "STATE",
        ],
        &rows,
    );
    print_lanes(services, &snapshot, &lanes).await
}

/// Under the totals, each family's ready work per project, for the families where that says
/// more than the totals (several lanes, or one that is a project's).
async fn print_lanes(
    services: &Services,
    snapshot: &[queues::FamilyQueues],
    lanes: &[queues::FamilyLanes],
) -> CmdResult {
    let ids: Vec<uuid::Uuid> = lanes
        .iter()
        .flat_map(|l| l.lanes.iter().filter_map(|l| l.project_id))
        .collect();
    if !lanes.iter().any(queues::FamilyLanes::worth_showing) {
        return Ok(());
    }
    let names = pipeline_store::console::project_names(&services.db, &ids).await?;
    for (f, l) in snapshot.iter().zip(lanes) {
        if !l.worth_showing() {
            continue;
        }
        outln!("\n{} by project:", f.family);
        let rows: Vec<Vec<String>> = l
            .lanes
            .iter()
            .map(|lane| {
                let project = match lane.project_id {
                    None if lane.lane.is_empty() => "(no project)".to_owned(),
                    None => lane.lane.clone(),
                    Some(id) => names
                        .get(&id)
                        .map_or_else(|| id.to_string(), |n| format!("{n} ({id})")),
                };
                vec![
                    project,
                    lane.ready.to_string(),
                    lane.in_flight.to_string(),
                    json!(lane.state).as_str().unwrap_or("serving").to_owned(),
                ]
            })
            .collect();
        output::print_table(&["PROJECT", "READY", "IN_FLIGHT", "STATE"], &rows);
        if l.truncated {
            outln!(
                "(the {} projects with the most ready work are shown)",
                queues::MAX_LANES_SHOWN
            );
        }
    }
    Ok(())
}

/// Every live daemon, from its heartbeat.
pub async fn workers(services: &Services, as_json: bool) -> CmdResult {
    let beats = heartbeat::live(&services.redis, &services.settings.redis.key_prefix)
        .await
        .context("reading the heartbeats")?;
    if as_json {
        return output::print_json(&json!({ "workers": beats }));
    }
    let rows: Vec<Vec<String>> = beats
        .iter()
        .map(|b| {
            vec![
                b.kind.clone(),
                b.family.clone().unwrap_or_else(|| "-".into()),
                b.host.clone(),
                b.pid.to_string(),
                b.version.clone(),
                b.concurrency.to_string(),
                b.in_flight.to_string(),
                if b.paused { "paused" } else { "" }.to_owned(),
                output::time(&b.last_beat),
            ]
        })
        .collect();
    output::print_table(
        &[
            "KIND",
            "FAMILY",
            "HOST",
            "PID",
            "VERSION",
            "CONCURRENCY",
            "IN_FLIGHT",
            "PAUSED",
            "LAST_HEARTBEAT",
        ],
        &rows,
    );
    Ok(())
}

/// Pauses (`pause = true`) or resumes a family.
pub async fn set_paused(
    services: &Services,
    family: Family,
    paused: bool,
    as_json: bool,
) -> CmdResult {
    if paused {
        let flag = pause::pause(services, family, pipeline_store::Actor::Cli)
            .await
            .context("setting the pause flag")?;
        if as_json {
            return output::print_json(
                &json!({"family": family, "paused": true, "paused_by": flag}),
            );
        }
        outln!(
            "{family} paused (by {} at {}); its workers stop reserving within a second, work in flight finishes",
            flag.by,
            output::time(&flag.at)
        );
    } else {
        let was = pause::resume(services, family, pipeline_store::Actor::Cli)
            .await
            .context("clearing the pause flag")?;
        if as_json {
            return output::print_json(&json!({"family": family, "paused": false}));
        }
        if was {
            outln!("{family} resumed");
        } else {
            outln!("{family} was not paused");
        }
    }
    Ok(())
}
