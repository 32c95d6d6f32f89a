//! `pipelinectl projects ...` (list, create with a schema, show or change a project's
//! extraction schema) and `pipelinectl templates [NAME]`. Schemas are checked by the same
//! code as the API's: an invalid one is refused with every problem and its path, and
//! nothing is stored.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use pipeline_ops::Services;
use pipeline_ops::schemas::{self, SchemaSource, SchemaWriteError};
use pipeline_store::facts::{self, StoredSchema};
use serde_json::json;

use crate::output::{CmdResult, Failure, outln, print_json, print_table, time};

/// `projects` arguments: a subcommand, or none to list the projects.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ProjectsArgs {
    #[command(subcommand)]
    command: Option<ProjectsCommand>,
    /// Projects per page, 1..=1000 (listing).
    #[arg(long, default_value_t = 100)]
    limit: i64,
    /// Projects to skip (listing).
    #[arg(long, default_value_t = 0)]
    offset: i64,
}

/// `projects` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// Lists projects by name, with their job and source counts (the same as bare
    /// `pipelinectl projects`).
    List {
        /// Projects per page, 1..=1000.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Projects to skip.
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Creates a project, with an extraction schema from a template or a file: prints the
    /// project id and the schema version. An invalid schema creates nothing.
    Create {
        /// The project's name.
        name: String,
        /// Use a shipped template (`pipelinectl templates` lists them).
        #[arg(long, conflicts_with = "schema")]
        template: Option<String>,
        /// A schema file, YAML or JSON (`-` reads stdin).
        #[arg(long, value_name = "FILE")]
        schema: Option<PathBuf>,
    },
    /// A project's extraction schema. Without an option, shows the current one (version,
    /// backend, template, then its text); --set FILE or --template T makes a new version
    /// (an unchanged schema keeps its version); --versions lists every version; --remove
    /// stops the schema stage for the project's pages (versions and records stay); --rerun
    /// runs the stage again for pages whose records an older version made (--all: every
    /// extracted page).
    Schema(SchemaArgs),
}

/// `projects schema` arguments.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The project's name or id.
    project: String,
    /// Make this file's schema (YAML or JSON; `-` reads stdin) the project's schema.
    #[arg(long, value_name = "FILE", group = "action")]
    set: Option<PathBuf>,
    /// Make this shipped template the project's schema.
    #[arg(long, group = "action")]
    template: Option<String>,
    /// List every version of the project's schema, newest first.
    #[arg(long, group = "action")]
    versions: bool,
    /// Remove the project's schema: its pages skip the schema stage from now on.
    #[arg(long, group = "action")]
    remove: bool,
    /// Run the schema stage again for the project's extracted pages whose records were made
    /// by another schema version than the current one (after a schema change).
    #[arg(long, group = "action")]
    rerun: bool,
    /// With --rerun: every extracted page of the project, whatever version made its records.
    #[arg(long, requires = "rerun")]
    all: bool,
}

/// Runs a `projects` command.
pub async fn projects(services: &Services, args: ProjectsArgs, as_json: bool) -> CmdResult {
    match args.command {
        None => crate::jobs::projects(services, args.limit, args.offset, as_json).await,
        Some(ProjectsCommand::List { limit, offset }) => {
            crate::jobs::projects(services, limit, offset, as_json).await
        }
        Some(ProjectsCommand::Create {
            name,
            template,
            schema,
        }) => create(services, &name, template, schema, as_json).await,
        Some(ProjectsCommand::Schema(args)) => schema(services, args, as_json).await,
    }
}

/// A schema write's failure with its exit code: bad input 2, no such project 3.
pub fn write_failure(err: SchemaWriteError) -> Failure {
    match err {
        SchemaWriteError::UnknownProject(_) => Failure::not_found(err.to_string()),
        SchemaWriteError::Store(e) => e.into(),
        // Redis refused: not the user's input (exit 1, as any other runtime failure).
        SchemaWriteError::Enqueue(_) => Failure::new(1, err.to_string()),
        e => Failure::usage(e.to_string()),
    }
}

/// Reads a schema file (`-`: stdin).
fn read_schema(path: &Path) -> CmdResult<String> {
    let (bytes, name) = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| Failure::usage(format!("cannot read the schema from stdin: {e}")))?;
        (buf, "stdin".to_owned())
    } else {
        let name = path.display().to_string();
        let buf = std::fs::read(path)
            .map_err(|e| Failure::usage(format!("cannot read schema file {name}: {e}")))?;
        (buf, name)
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        Failure::usage(format!(
            "{name} is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(Failure::usage(format!("{name} is empty")));
    }
    Ok(text)
}

/// The schema's summary as JSON (without its text).
fn schema_json(s: &StoredSchema, with_text: bool) -> serde_json::Value {
    let mut v = json!({
        "version": s.version,
        "name": s.name,
        "backend": s.backend,
        "template": s.template,
        "created_at": s.created_at,
    });
    if with_text {
        v["schema"] = s.schema.clone();
        v["source_text"] = json!(s.source_text);
    }
    v
}

async fn create(
    services: &Services,
    name: &str,
    template: Option<String>,
    schema_file: Option<PathBuf>,
    as_json: bool,
) -> CmdResult {
    let text = schema_file.as_deref().map(read_schema).transpose()?;
    let source = match (&template, &text) {
        (Some(t), _) => Some(SchemaSource::Template(t)),
        (None, Some(text)) => Some(SchemaSource::Text(text)),
        (None, None) => None,
    };
    let (project, stored) = schemas::create_project(&services.db, name, source)
        .await
        .map_err(write_failure)?;
    if as_json {
        return print_json(&json!({
            "project": project,
            "schema": stored.as_ref().map(|s| schema_json(s, false)),
        }));
    }
    outln!("project {}", project.id);
    outln!("name    {}", project.name);
    match &stored {
        Some(s) => outln!(
            "schema  {} version {} ({} backend{})",
            s.name,
            s.version,
            s.backend,
            s.template
                .as_deref()
                .map(|t| format!(", template {t}"))
                .unwrap_or_default()
        ),
        None => outln!(
            "schema  none (`pipelinectl projects schema {} --template T` or --set FILE adds one)",
            project.name
        ),
    }
    Ok(())
}

async fn schema(services: &Services, args: SchemaArgs, as_json: bool) -> CmdResult {
    let db = &services.db;
    let project = schemas::find_project(db, &args.project)
        .await
        .map_err(write_failure)?;
    if args.rerun {
        let Some(version) = project.schema_version else {
            return Err(Failure::usage(format!(
                "project {} has no schema; nothing to run again",
                project.name
            )));
        };
        let out = schemas::rerun(services, project.id, args.all, pipeline_store::Actor::Cli)
            .await
            .map_err(write_failure)?;
        if as_json {
            return print_json(&json!({
                "project_id": project.id,
                "schema_version": version,
                "queued": out.queued,
                "already_queued": out.already_queued,
            }));
        }
        outln!(
            "queued {} page(s) of project {} for the schema stage (version {version}); \
             `pipelinectl jobs show` follows them",
            out.queued,
            project.name
        );
        return Ok(());
    }
    if args.remove {
        let had = project.schema_version;
        facts::clear_schema(db, project.id).await?;
        if as_json {
            return print_json(&json!({
                "project_id": project.id,
                "removed_version": had,
            }));
        }
        match had {
            Some(v) => outln!(
                "removed schema version {v} from project {}: its pages skip the schema stage \
                 from now on (versions and records are kept)",
                project.name
            ),
            None => outln!("project {} has no schema; nothing to remove", project.name),
        }
        return Ok(());
    }
    if args.versions {
        let history = facts::schema_history(db, project.id).await?;
        if as_json {
            let items: Vec<_> = history.iter().map(|s| schema_json(s, false)).collect();
            return print_json(&json!({
                "project_id": project.id,
                "current_version": project.schema_version,
                "items": items,
            }));
        }
        if history.is_empty() {
            outln!("project {} never had a schema", project.name);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = history
            .iter()
            .map(|s| {
                vec![
                    s.version.to_string(),
                    s.name.clone(),
                    s.backend.clone(),
                    s.template.clone().unwrap_or_else(|| "-".into()),
                    time(&s.created_at),
                    if Some(s.version) == project.schema_version {
                        "yes".into()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect();
        print_table(
            &[
                "VERSION", "NAME", "BACKEND", "TEMPLATE", "CREATED", "CURRENT",
            ],
            &rows,
        );
        return Ok(());
    }
    let text = args.set.as_deref().map(read_schema).transpose()?;
    let source = match (&args.template, &text) {
        (Some(t), _) => Some(SchemaSource::Template(t)),
        (None, Some(text)) => Some(SchemaSource::Text(text)),
        (None, None) => None,
    };
    if let Some(source) = source {
        let (stored, new) = schemas::set_schema(db, project.id, source)
            .await
            .map_err(write_failure)?;
        if as_json {
            let mut v = schema_json(&stored, false);
            v["project_id"] = json!(project.id);
            v["new"] = json!(new);
            return print_json(&v);
        }
        if new {
            outln!(
                "project {}: schema {} version {} ({} backend), a new version",
                project.name,
                stored.name,
                stored.version,
                stored.backend
            );
        } else {
            outln!(
                "project {}: schema {} version {} unchanged (the same as the current one)",
                project.name,
                stored.name,
                stored.version
            );
        }
        return Ok(());
    }
    let Some(current) = facts::current_schema(db, project.id).await? else {
        if as_json {
            return print_json(&json!({"project_id": project.id, "schema": null}));
        }
        return Err(Failure::not_found(format!(
            "project {} has no schema (`pipelinectl projects schema {} --template T` or \
             --set FILE adds one)",
            project.name, project.name
        )));
    };
    if as_json {
        let mut v = schema_json(&current, true);
        v["project_id"] = json!(project.id);
        return print_json(&v);
    }
    outln!("project   {} ({})", project.name, project.id);
    outln!("schema    {}", current.name);
    outln!("version   {}", current.version);
    outln!("backend   {}", current.backend);
    outln!(
        "template  {}",
        current.template.as_deref().unwrap_or("- (written by hand)")
    );
    outln!("created   {}", time(&current.created_at));
    outln!();
    outln!("{}", current.source_text.trim_end());
    Ok(())
}

/// `pipelinectl templates [NAME]`: the shipped templates, or one's YAML.
pub fn templates(name: Option<&str>, as_json: bool) -> CmdResult {
    let Some(name) = name else {
        let all = facts_core::templates();
        if as_json {
            let items: Vec<_> = all
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description}))
                .collect();
            return print_json(&json!({ "items": items }));
        }
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|t| vec![t.name.to_owned(), t.description.to_owned()])
            .collect();
        crate::output::print_table_wide(&["NAME", "DESCRIPTION"], &rows);
        outln!("\n`pipelinectl templates NAME > schema.yaml` prints one to copy and edit.");
        return Ok(());
    };
    let t = facts_core::template(name).ok_or_else(|| {
        Failure::not_found(format!(
            "unknown template `{name}` (expected one of: {})",
            schemas::template_names()
        ))
    })?;
    if as_json {
        return print_json(&json!({
            "name": t.name,
            "description": t.description,
            "text": t.text,
        }));
    }
    crate::output::write_stdout(format_args!("{}", t.text), !t.text.ends_with('\n'));
    Ok(())
}
