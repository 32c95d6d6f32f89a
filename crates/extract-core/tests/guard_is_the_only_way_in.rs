//! Every parse of fetched HTML goes through `extract_core::html` (the guard). clippy.toml
//! forbids the parsing functions it can name; `Document::from` is a trait method, which
//! it cannot, so this test looks for it in the workspace's sources.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !matches!(
                path.file_name().and_then(|n| n.to_str()),
                Some("target" | "vendor" | ".git")
            ) {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_code_parses_html_outside_the_guard() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in ["crates", "tests", "fuzz"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "the workspace's sources were not found");
    let guard = Path::new("extract-core/src/html/guard.rs");
    let this = Path::new("extract-core/tests/guard_is_the_only_way_in.rs");
    let mut offenders = Vec::new();
    for file in &files {
        if file.ends_with(guard) || file.ends_with(this) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if line.contains("Document::from(") || line.contains("Html::parse_") {
                offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "parse through extract_core::html::parse_guarded instead:\n{}",
        offenders.join("\n")
    );
}
