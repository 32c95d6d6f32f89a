//! Running a document's commands as written: its sections' fenced blocks, and the
//! substitutions a test makes in them (names, addresses and ports only).

use sqlx::{Connection, Executor, PgConnection};

/// The fenced blocks of section `heading` (a whole heading line, such as
/// `## Run it on your own Postgres and Redis`) of the file at `path`, as
/// `(language, body)`, with the list indentation removed. The section ends at the next
/// heading of its level or above.
///
/// # Panics
/// When the file cannot be read, has no such section, or leaves a block unclosed: the
/// document changed under the test.
pub fn section_blocks(path: &str, heading: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("{path} has no section `{heading}`"));
    let level = heading.chars().take_while(|c| *c == '#').count();
    let rest = &text[start + heading.len()..];
    let ends_section = |line: &str| {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        (1..=level).contains(&hashes) && line[hashes..].starts_with(' ')
    };
    let mut out = Vec::new();
    let mut block: Option<(String, usize, String)> = None;
    for line in rest.lines() {
        if block.is_none() && ends_section(line) {
            break;
        }
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut block {
            None => {
                if let Some(lang) = trimmed.strip_prefix("```") {
                    block = Some((lang.trim().to_owned(), indent, String::new()));
                }
            }
            Some((lang, _, body)) if trimmed == "```" => {
                out.push((std::mem::take(lang), std::mem::take(body)));
                block = None;
            }
            Some((_, indent, body)) => {
                body.push_str(line.get(*indent..).unwrap_or("").trim_end());
                body.push('\n');
            }
        }
    }
    assert!(
        block.is_none(),
        "an unclosed block in `{heading}` of {path}"
    );
    out
}

/// `text` with `from` replaced by `to`; `from` must occur (else the doc changed under us).
///
/// # Panics
/// When `from` does not occur in `text`.
pub fn subst(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "`{from}` not found in:\n{text}");
    text.replace(from, to)
}

/// Runs one statement as the test Postgres superuser (see [`crate::admin_database_url`]).
///
/// # Errors
/// The connection or the statement failed.
pub async fn admin_execute(sql: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(&crate::admin_database_url()).await?;
    admin.execute(sqlx::AssertSqlSafe(sql.to_owned())).await?;
    admin.close().await?;
    Ok(())
}

/// SIGTERM to a script's process group (the daemons it started, all this test's own
/// children), then waits for them to exit; SIGKILL after 15 s.
///
/// # Errors
/// `kill` could not be run, or the group outlived SIGTERM by 15 s (it is then killed).
pub async fn stop_group(pgid: u32) -> anyhow::Result<()> {
    let kill = |sig: &str| {
        std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg("--")
            .arg(format!("-{pgid}"))
            .stderr(std::process::Stdio::null())
            .status()
    };
    kill("TERM")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while kill("0")?.success() {
        if std::time::Instant::now() > deadline {
            kill("KILL")?;
            anyhow::bail!("the daemons did not exit within 15 s of SIGTERM");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(())
}
