//! `pipelinectl records PROJECT`: the consolidated records the schema stage made of a
//! project's pages (filtered by entity, field conditions and page), and with `--entity E
//! --key K` one record's every value with its quote, origin and page. Only grounded values
//! (whose quote is on the page) are facts; `sources show` lists a page's ungrounded ones.

use clap::Args;
use pipeline_ops::Services;
use pipeline_ops::schemas;
use pipeline_store::facts::{self, Condition, FactRow, RecordFilter, RecordRow};
use serde_json::{Value, json};

use crate::jobs::parse_id;
use crate::output::{CmdResult, Failure, clip, outln, print_json, print_table_wide};
use crate::schemas::write_failure;

/// `records` arguments.
#[derive(Debug, Args)]
pub struct RecordsArgs {
    /// The project's name or id.
    project: String,
    /// Only records of this entity (the schema's name, or one of its entity lists).
    #[arg(long)]
    entity: Option<String>,
    /// One record: its key (as the table prints it; needs --entity). Shows each value with
    /// its quote, origin and page.
    #[arg(long, requires = "entity")]
    key: Option<String>,
    /// A condition on a field, `field op value` with op one of = != < <= > >= (numbers
    /// compare as numbers, dates as ISO text, = ignores case); repeat for several (all must
    /// hold).
    #[arg(long = "where", value_name = "CONDITION")]
    conditions: Vec<String>,
    /// Only records a value of this page (source id) belongs to.
    #[arg(long, value_name = "SOURCE_ID")]
    source: Option<String>,
    /// Records (or, with --key, values) shown, 1..=1000.
    #[arg(long, default_value_t = 100)]
    limit: i64,
}

/// A stored value as text: a string as itself, anything else as JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `field=value; field=[a, b]`: a record's fields on one line.
fn fields_summary(fields: &Value) -> String {
    let Some(map) = fields.as_object() else {
        return value_text(fields);
    };
    map.iter()
        .map(|(k, v)| match v {
            Value::Array(items) => format!(
                "{k}=[{}]",
                items.iter().map(value_text).collect::<Vec<_>>().join(", ")
            ),
            v => format!("{k}={}", value_text(v)),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs `records`.
pub async fn run(services: &Services, args: RecordsArgs, as_json: bool) -> CmdResult {
    if !(1..=1000).contains(&args.limit) {
        return Err(Failure::usage(format!(
            "--limit must be between 1 and 1000, got {}",
            args.limit
        )));
    }
    let conditions = args
        .conditions
        .iter()
        .map(|c| Condition::parse(c).map_err(|e| Failure::usage(format!("--where {e}"))))
        .collect::<CmdResult<Vec<_>>>()?;
    let source_id = args
        .source
        .as_deref()
        .map(|s| parse_id("source", s))
        .transpose()?;
    let db = &services.db;
    let project = schemas::find_project(db, &args.project)
        .await
        .map_err(write_failure)?;
    if let (Some(entity), Some(key)) = (&args.entity, &args.key) {
        if !conditions.is_empty() || source_id.is_some() {
            return Err(Failure::usage(
                "--key shows one record; --where and --source filter lists (leave them out)",
            ));
        }
        let values = facts::record_facts(db, project.id, entity, key, args.limit).await?;
        return show_record(&project.name, entity, key, &values, as_json);
    }
    let rows = facts::records(
        db,
        &RecordFilter {
            project_id: project.id,
            entity: args.entity.clone(),
            source_id,
            conditions,
            after: None,
            limit: args.limit,
        },
    )
    .await?;
    if as_json {
        return print_json(&json!({
            "project_id": project.id,
            "items": rows,
            "more": rows.len() as i64 == args.limit,
        }));
    }
    if rows.is_empty() {
        if project.schema_version.is_none() {
            outln!(
                "no records: project {} has no schema (`pipelinectl projects schema {} \
                 --template T` adds one)",
                project.name,
                project.name
            );
        } else {
            outln!("no records");
        }
        return Ok(());
    }
    print_records(&rows);
    if rows.len() as i64 == args.limit {
        outln!(
            "\nfirst {} records; narrow with --entity/--where or raise --limit (up to 1000)",
            args.limit
        );
    }
    outln!("\none record's values and quotes: pipelinectl records PROJECT --entity E --key K");
    Ok(())
}

fn print_records(rows: &[RecordRow]) {
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.entity.clone(),
                r.record_key.clone(),
                fields_summary(&r.fields),
                if r.conflicts.is_empty() {
                    "-".into()
                } else {
                    r.conflicts.join(", ")
                },
                r.sources.to_string(),
            ]
        })
        .collect();
    print_table_wide(&["ENTITY", "KEY", "FIELDS", "CONFLICTS", "PAGES"], &table);
}

fn show_record(
    project: &str,
    entity: &str,
    key: &str,
    values: &[FactRow],
    as_json: bool,
) -> CmdResult {
    if values.is_empty() {
        return Err(Failure::not_found(format!(
            "project {project} has no record {entity} `{key}` (`pipelinectl records {project} \
             --entity {entity}` lists its keys)"
        )));
    }
    if as_json {
        return print_json(&json!({
            "entity": entity,
            "record_key": key,
            "values": values,
        }));
    }
    outln!("record  {entity} {key}");
    outln!();
    for v in values {
        print_value(v, "", true);
    }
    Ok(())
}

/// One value with its quote and origin (and its page when `with_page`), as `records --key`
/// and `sources show` print it.
pub fn print_value(v: &FactRow, indent: &str, with_page: bool) {
    outln!("{indent}{} = {}", v.field, clip(&value_text(&v.value), 200));
    outln!("{indent}    quote   \"{}\"", clip(&v.quote, 300));
    let mut origin = v.origin.clone();
    if let Some(c) = v.chunk_index {
        origin.push_str(&format!(", chunk {c}"));
    }
    if let Some(c) = v.confidence {
        origin.push_str(&format!(", confidence {c:.2}"));
    }
    origin.push_str(&format!(", schema version {}", v.schema_version));
    outln!("{indent}    origin  {origin}");
    if with_page {
        outln!("{indent}    page    {} ({})", v.url, v.source_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_as_one_line() {
        let fields = json!({"name": "Acme", "price": 10, "tags": ["a", "b"]});
        assert_eq!(fields_summary(&fields), "name=Acme; price=10; tags=[a, b]");
    }
}
