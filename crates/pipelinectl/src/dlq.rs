//! `pipelinectl dlq ...`: stats, list, retry, retry-all, discard, purge. Changes go through
//! `pipeline_ops::dlq_ops`, so the source's status and event trail record them (stage `cli`).

use crate::output::outln;
use std::collections::BTreeMap;
use std::num::NonZeroU32;

use clap::Subcommand;
use dlq_core::ListedItem;
use pipeline_ops::{Family, Services, dlq_ops};
use serde_json::json;

use crate::output::{CmdResult, Failure, clip, opt, print_json, print_table, time};

/// Who the event trail names for changes made here.
const ACTOR: pipeline_store::Actor = pipeline_store::Actor::Cli;

/// DLQ subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Counts per DLQ kind (parked shown apart).
    Stats,
    /// Lists a DLQ, newest first.
    List {
        /// `scrape`, `extraction` or `facts`.
        kind: Family,
        /// Items per page, 1..=1000.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// The cursor printed after the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Redrives one item into its work queue now.
    Retry {
        /// `scrape`, `extraction` or `facts`.
        kind: Family,
        /// The item id (the source id).
        id: String,
        /// Put the message back at this priority within its project (high, normal or low;
        /// default: the priority it had). The job's own priority is unchanged.
        #[arg(long, value_parser = crate::output::parse_priority)]
        priority: Option<pipeline_ops::messages::Priority>,
    },
    /// Redrives many items, oldest first (parked and permanent ones included).
    RetryAll {
        /// `scrape`, `extraction` or `facts`.
        kind: Family,
        /// At most this many items (default: all).
        #[arg(long)]
        limit: Option<u64>,
        /// At most this many redrives per second (default: unlimited).
        #[arg(long)]
        rate: Option<u32>,
    },
    /// Discards one item for good, recording it in its source's trail (status `discarded`).
    Discard {
        /// `scrape`, `extraction` or `facts`.
        kind: Family,
        /// The item id (the source id).
        id: String,
    },
    /// Discards items older than an age, recording each in its source's trail. Asks for
    /// confirmation (with the count) unless `--yes`; refuses without `--yes` when not on a
    /// terminal.
    Purge {
        /// `scrape`, `extraction` or `facts`.
        kind: Family,
        /// Age with its unit: `30d`, `12h`, `45m`, `90s`, `2w`.
        #[arg(long, value_parser = dlq_ops::parse_age)]
        older_than: chrono::Duration,
        /// Only count what would be purged.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// Runs one DLQ subcommand.
pub async fn run(services: &Services, cmd: DlqCommand, as_json: bool) -> CmdResult {
    match cmd {
        DlqCommand::Stats => stats(services, as_json).await,
        DlqCommand::List {
            kind,
            limit,
            cursor,
        } => list(services, kind, limit, cursor.as_deref(), as_json).await,
        DlqCommand::Retry { kind, id, priority } => {
            retry(services, kind, &id, priority, as_json).await
        }
        DlqCommand::RetryAll { kind, limit, rate } => {
            retry_all(services, kind, limit, rate, as_json).await
        }
        DlqCommand::Discard { kind, id } => discard(services, kind, &id, as_json).await,
        DlqCommand::Purge {
            kind,
            older_than,
            dry_run,
            yes,
        } => {
            purge(
                services,
                kind,
                older_than,
                Confirm { dry_run, yes },
                as_json,
            )
            .await
        }
    }
}

async fn stats(services: &Services, as_json: bool) -> CmdResult {
    let mut flat = BTreeMap::new();
    let mut rows = Vec::new();
    for family in Family::ALL {
        let kind = family.as_str();
        let s = services.dlq(family).stats().await?;
        flat.insert(kind.to_owned(), s.total);
        flat.insert(format!("{kind}_parked"), s.parked);
        flat.insert(format!("{kind}_transient"), s.transient);
        flat.insert(format!("{kind}_permanent"), s.permanent);
        flat.insert(format!("{kind}_dropped"), s.dropped);
        rows.push(vec![
            kind.to_owned(),
            s.total.to_string(),
            s.parked.to_string(),
            s.transient.to_string(),
            s.permanent.to_string(),
            s.dropped.to_string(),
        ]);
    }
    if as_json {
        return print_json(&flat);
    }
    print_table(
        &[
            "KIND",
            "TOTAL",
            "PARKED",
            "TRANSIENT",
            "PERMANENT",
            "DROPPED",
        ],
        &rows,
    );
    Ok(())
}

async fn list(
    services: &Services,
    kind: Family,
    limit: usize,
    cursor: Option<&str>,
    as_json: bool,
) -> CmdResult {
    let dlq = services.dlq(kind);
    dlq_core::check_limit(limit)?;
    let page = dlq.list(limit, cursor.filter(|c| !c.is_empty())).await?;
    if as_json {
        return print_json(&page);
    }
    if page.items.is_empty() {
        outln!("the {kind} DLQ is empty");
        return Ok(());
    }
    let ids: Vec<uuid::Uuid> = page
        .items
        .iter()
        .filter_map(|l| match l {
            ListedItem::Ok(i) => dlq_ops::source_of(i),
            ListedItem::Malformed(_) => None,
        })
        .collect();
    // The table still prints without Postgres; the URL column is then unknown.
    let urls = pipeline_store::sources::urls(&services.db, &ids)
        .await
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|listed| match listed {
            ListedItem::Ok(i) => vec![
                i.id.clone(),
                dlq_ops::source_of(i)
                    .and_then(|s| urls.get(&s))
                    .map_or_else(|| "-".to_owned(), |u| clip(u, 60)),
                opt(&i.job_id),
                i.error_kind.as_str().to_owned(),
                i.attempts.to_string(),
                i.retry_count.to_string(),
                if i.parked { "yes" } else { "no" }.to_owned(),
                time(&i.failed_at),
                i.error.clone(),
            ],
            ListedItem::Malformed(m) => vec![
                m.id.clone(),
                "-".into(),
                "-".into(),
                "MALFORMED".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                m.reason.clone(),
            ],
        })
        .collect();
    print_table(
        &[
            "ID",
            "URL",
            "JOB",
            "KIND",
            "ATTEMPTS",
            "RETRIES",
            "PARKED",
            "FAILED AT",
            "ERROR",
        ],
        &rows,
    );
    if let Some(next) = &page.next_cursor {
        outln!("\nmore: pipelinectl dlq list {kind} --limit {limit} --cursor {next}");
    }
    Ok(())
}

async fn retry(
    services: &Services,
    kind: Family,
    id: &str,
    priority: Option<pipeline_ops::messages::Priority>,
    as_json: bool,
) -> CmdResult {
    let Some(outcome) = dlq_ops::retry_as(services, kind, id, priority, ACTOR).await? else {
        return Err(Failure::not_found(format!(
            "no item `{id}` in the {kind} DLQ"
        )));
    };
    if as_json {
        let mut value = serde_json::to_value(&outcome.item).map_err(anyhow::Error::from)?;
        value["enqueued"] = json!(outcome.enqueued);
        return print_json(&value);
    }
    let how = if outcome.enqueued {
        "back in the queue"
    } else {
        "already queued, not queued twice"
    };
    let at = priority
        .map(|p| format!(" at priority {p}"))
        .unwrap_or_default();
    outln!(
        "redrove {id} into the {kind} queue{at} ({how}); source {}, job {}, redrive #{}",
        opt(&outcome.item.source_id),
        opt(&outcome.item.job_id),
        outcome.item.retry_count + 1
    );
    Ok(())
}

async fn retry_all(
    services: &Services,
    kind: Family,
    limit: Option<u64>,
    rate: Option<u32>,
    as_json: bool,
) -> CmdResult {
    if limit == Some(0) {
        return Err(Failure::usage(
            "--limit must be at least 1 (leave it out to redrive every item)",
        ));
    }
    let rate = match rate {
        None => None,
        Some(r) => Some(
            NonZeroU32::new(r)
                .ok_or_else(|| Failure::usage("--rate must be at least 1 per second"))?,
        ),
    };
    let bulk = dlq_ops::retry_all(services, kind, limit, rate, ACTOR).await?;
    let malformed: Vec<&str> = bulk.malformed.iter().map(|m| m.id.as_str()).collect();
    if as_json {
        return print_json(&json!({"redriven": bulk.redriven.len(), "malformed": malformed}));
    }
    outln!(
        "redrove {} item(s) into the {kind} queue",
        bulk.redriven.len()
    );
    for id in malformed {
        eprintln!(
            "skipped malformed entry {id} (delete it with the API or inspect it with `dlq list`)"
        );
    }
    Ok(())
}

/// Purges through `dlq_ops::purge` (each item's trail records the discard). Without `--yes`
/// it counts first and asks with that count; with `--yes` it purges in one walk.
async fn purge(
    services: &Services,
    kind: Family,
    older_than: chrono::Duration,
    confirm: Confirm,
    as_json: bool,
) -> CmdResult {
    let age = humanize(older_than);
    // The count walks the whole DLQ; it is needed only to report a dry run or to ask.
    if confirm.dry_run || !confirm.yes {
        let counted = dlq_ops::purge(services, kind, older_than, true, ACTOR).await?;
        if confirm.dry_run {
            if as_json {
                return print_json(&json!({"would_purge": counted.matched, "dry_run": true}));
            }
            outln!(
                "dry run: {} item(s) older than {age} in the {kind} DLQ would be purged",
                counted.matched
            );
            return Ok(());
        }
        if counted.matched == 0 && services.dlq(kind).stats().await?.total == 0 {
            if as_json {
                return print_json(&json!({"purged": 0}));
            }
            outln!("the {kind} DLQ is empty; nothing to purge");
            return Ok(());
        }
        confirm_on_terminal(&format!(
            "purge {} item(s) older than {age} from the {kind} DLQ, for good?",
            counted.matched
        ))?;
    }
    let done = dlq_ops::purge(services, kind, older_than, false, ACTOR).await?;
    if as_json {
        return print_json(&json!({"purged": done.purged}));
    }
    outln!(
        "purged {} item(s) older than {} from the {kind} DLQ",
        done.purged,
        clip(&age, 20)
    );
    Ok(())
}

/// What `purge` may do without asking.
#[derive(Debug, Clone, Copy)]
struct Confirm {
    dry_run: bool,
    yes: bool,
}

/// Asks `question` on the terminal; anything but `y`/`yes` cancels. Without a terminal
/// there is nobody to ask, so the command refuses rather than guess.
fn confirm_on_terminal(question: &str) -> CmdResult {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!(
            "{question} Not on a terminal, so not asking: add --yes to confirm (or --dry-run to count)"
        )));
    }
    eprint!("{question} [y/N] ");
    // A failed flush only risks an unprinted prompt; the answer is still read.
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(anyhow::Error::from)?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Failure::usage("cancelled; nothing was purged")),
    }
}

/// Discards one item (recorded as `discarded` in its source's trail).
async fn discard(services: &Services, kind: Family, id: &str, as_json: bool) -> CmdResult {
    let Some(listed) = dlq_ops::discard(services, kind, id, ACTOR).await? else {
        return Err(Failure::not_found(format!(
            "no item `{id}` in the {kind} DLQ"
        )));
    };
    if as_json {
        return print_json(&listed);
    }
    match &listed {
        ListedItem::Ok(item) => outln!(
            "discarded {id} from the {kind} DLQ; source {} is now `discarded`",
            opt(&item.source_id)
        ),
        ListedItem::Malformed(_) => outln!("discarded malformed entry {id} from the {kind} DLQ"),
    }
    Ok(())
}

fn humanize(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    match s {
        s if s % 86_400 == 0 && s > 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_print_in_their_largest_whole_unit() {
        assert_eq!(humanize(chrono::Duration::days(2)), "2d");
    }
}
