//! Output helpers: plain tables for people, JSON for scripts, and the command's failure with
//! its exit code.

use std::process::ExitCode;

/// Exit code of an invalid argument (also clap's code for usage errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit code when the thing asked for does not exist.
pub const EXIT_NOT_FOUND: u8 = 3;
/// Exit code of a waiting command whose work ended `completed_with_errors`.
pub const EXIT_ENDED_WITH_ERRORS: u8 = 4;
/// Exit code of a waiting command whose work ended `failed` (or was cancelled).
pub const EXIT_ENDED_FAILED: u8 = 5;
/// Exit code of a waiting command whose `--wait` ran out while the work goes on.
pub const EXIT_WAIT_RAN_OUT: u8 = 6;
/// Exit code after Ctrl-C (SIGINT) stopped a waiting command: 128 + 2, as a shell reports it.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit code when the reader of standard output went away (`pipelinectl jobs list | head`):
/// 128 + SIGPIPE, what a shell reports for a Unix tool that stopped on a closed pipe.
pub const EXIT_CLOSED_PIPE: u8 = 141;

/// Writes to standard output. A closed pipe (the reader exited, as `head` does) ends the
/// process at once and quietly with [`EXIT_CLOSED_PIPE`], as a Unix tool ends on SIGPIPE;
/// `println!` would panic instead. Any other write error ends it with exit code 1.
pub fn write_stdout(args: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            std::process::exit(i32::from(EXIT_CLOSED_PIPE))
        }
        Err(e) => {
            eprintln!("error: writing to standard output: {e}");
            std::process::exit(1)
        }
    }
}

/// `println!` for command output: see [`write_stdout`].
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*), true)
    };
}
pub(crate) use outln;

/// A command's failure: a message for stderr and an exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// The message, printed as `error: {message}`.
    pub message: String,
    /// Redis could not be reached: `main` names the endpoint it tried.
    pub redis_unreachable: bool,
    /// Postgres could not be reached: `main` names the server and asks it why.
    pub postgres_unreachable: bool,
}

impl Failure {
    /// A failure with exit code `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            redis_unreachable: false,
            postgres_unreachable: false,
        }
    }

    /// An invalid argument (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(EXIT_USAGE, message)
    }

    /// Nothing found (exit 3).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(EXIT_NOT_FOUND, message)
    }

    /// The exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

/// Whether `err` (or a cause) is Postgres saying a table or a column does not exist: the
/// database was never migrated, or by an older binary.
fn schema_missing(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(sqlx::Error::Database(db)) = e.downcast_ref::<sqlx::Error>() {
            // undefined_table, undefined_column, undefined_function
            return matches!(db.code().as_deref(), Some("42P01" | "42703" | "42883"));
        }
        next = e.source();
    }
    false
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        let mut message = chain_once(&err);
        if schema_missing(err.as_ref()) {
            message.push_str(
                " (the database lacks the pipeline's schema, or has an older one: run `pipelinectl migrate`)",
            );
        }
        Self {
            code: 1,
            message,
            redis_unreachable: dlq_core::is_unreachable(err.as_ref()),
            postgres_unreachable: pipeline_core::pools::is_pg_unreachable(err.as_ref()),
        }
    }
}

/// The error and its causes joined with `: `, skipping a cause whose text the message
/// already holds: wrappers that quote their source (`redis error: Connection refused`)
/// would otherwise print the same words two or three times over.
pub fn chain_once(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

impl From<pipeline_store::StoreError> for Failure {
    fn from(err: pipeline_store::StoreError) -> Self {
        match err {
            pipeline_store::StoreError::NotFound(what) => {
                Self::not_found(format!("{what} not found"))
            }
            other => anyhow::Error::new(other).into(),
        }
    }
}

impl From<dlq_core::DlqError> for Failure {
    fn from(err: dlq_core::DlqError) -> Self {
        use dlq_core::DlqError as E;
        match &err {
            E::InvalidLimit { .. } | E::InvalidCursor(_) | E::InvalidArgument(_) => {
                Self::usage(err.to_string())
            }
            _ => anyhow::Error::new(err).into(),
        }
    }
}

impl From<pipeline_ops::dlq_ops::DlqOpError> for Failure {
    fn from(err: pipeline_ops::dlq_ops::DlqOpError) -> Self {
        use pipeline_ops::dlq_ops::DlqOpError as E;
        match err {
            E::Dlq(e) => e.into(),
            other => anyhow::Error::new(other).into(),
        }
    }
}

/// Command result.
pub type CmdResult<T = ()> = Result<T, Failure>;

/// Prints a value as one line of JSON.
pub fn print_json(value: &impl serde::Serialize) -> CmdResult {
    let text = serde_json::to_string_pretty(value).map_err(anyhow::Error::from)?;
    outln!("{text}");
    Ok(())
}

/// Cells longer than this are cut (with an ellipsis) so a table stays readable.
const MAX_CELL: usize = 60;

/// Prints an aligned table with a header row.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    print_table_cut(headers, rows, MAX_CELL);
}

/// Prints an aligned table whose cells may be twice as long (descriptions, summaries).
pub fn print_table_wide(headers: &[&str], rows: &[Vec<String>]) {
    print_table_cut(headers, rows, MAX_CELL * 2);
}

fn print_table_cut(headers: &[&str], rows: &[Vec<String>], max_cell: usize) {
    let cut: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clip(c, max_cell)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &cut {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        outln!("{}", parts.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in &cut {
        line(row.iter().map(String::as_str).collect());
    }
}

/// One line of `text`, at most `max` characters.
pub fn clip(text: &str, max: usize) -> String {
    let one_line = text.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut s: String = one_line.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// An optional value as text (`-` when absent).
pub fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// Parses `--priority`: `high`, `normal` or `low`.
pub fn parse_priority(s: &str) -> Result<pipeline_ops::messages::Priority, String> {
    s.parse()
        .map_err(|_| format!("unknown priority `{s}`: high, normal or low"))
}

/// Parses `--render`: `never`, `auto` or `always`.
pub fn parse_render(s: &str) -> Result<pipeline_ops::messages::RenderMode, String> {
    s.parse()
        .map_err(|_| format!("unknown render mode `{s}`: never, auto or always"))
}

/// A timestamp as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}
