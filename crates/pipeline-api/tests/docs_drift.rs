//! The documentation's checkable claims, held to the code: every crate's README, the
//! top-level README and the deploy README.
//!
//! - Settings: every `section.key` and `PIPELINE__SECTION__KEY` they name is a key of
//!   `config/default.toml`, and a default they state (`` `api.max_connections` (1024) ``,
//!   `(default 9103)`, a settings table with a "default" column) is the file's.
//! - Routes: every `/api/v1/...` path they name is in the API's OpenAPI document
//!   ([`pipeline_api::openapi`]), with the method they give it; and every operation of the
//!   document is listed in this crate's README.
//! - Names: every `crate_name::item` path names an item that crate defines (not one it only
//!   re-exports from another crate), and every `Type::member` of a workspace type exists.
//! - Files: every repository path, relative link and `#anchor` resolves, and every
//!   `cargo run -p CRATE --example NAME` names an example of that crate.
//! - Metrics: every metric name they quote is one the code records.
//!
//! A failure names the file and line of each claim that disagrees. Pure file reading: no
//! database, no Redis (`cargo nextest run -p pipeline-api --test docs_drift`). The dated
//! history in `BENCHMARKS.md` files is not checked: it describes the code as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

/// One document: its path relative to the root, and its text.
struct Doc {
    rel: String,
    text: String,
}

impl Doc {
    fn dir(&self) -> PathBuf {
        root()
            .join(&self.rel)
            .parent()
            .expect("a file has a parent")
            .to_path_buf()
    }
}

/// The documents checked: `README.md`, `deploy/README.md` and every `crates/*/README.md`.
fn docs() -> Vec<Doc> {
    let root = root();
    let mut rels = vec!["README.md".to_owned(), "deploy/README.md".to_owned()];
    let mut crates: Vec<_> = std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .map(|e| e.expect("a readable entry").path())
        .filter(|p| p.join("README.md").is_file())
        .collect();
    crates.sort();
    for c in crates {
        let name = c.file_name().unwrap().to_string_lossy().into_owned();
        rels.push(format!("crates/{name}/README.md"));
    }
    rels.into_iter()
        .map(|rel| {
            let text =
                std::fs::read_to_string(root.join(&rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
            Doc { rel, text }
        })
        .collect()
}

/// A line of a document, with the code fence it is in (`None` in prose, `Some("rust")`,
/// `Some("")` for a fence without a language).
struct Line<'a> {
    no: usize,
    text: &'a str,
    fence: Option<&'a str>,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for (i, text) in text.lines().enumerate() {
        let t = text.trim_start();
        if let Some(lang) = t.strip_prefix("```") {
            fence = match fence {
                None => Some(lang.trim()),
                Some(_) => None,
            };
            continue;
        }
        out.push(Line {
            no: i + 1,
            text,
            fence,
        });
    }
    out
}

/// The text inside backticks on a line (inline code spans).
fn code_spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

// ---------------------------------------------------------------------------------------
// Settings

/// `config/default.toml`: every key as `section.key` with its value as written (`None` for
/// an optional key shown only in a comment, `# key = value`), and every section name.
struct Config {
    keys: BTreeMap<String, Option<String>>,
    sections: BTreeSet<String>,
}

fn config() -> Config {
    let text =
        std::fs::read_to_string(root().join("config/default.toml")).expect("config/default.toml");
    let header = Regex::new(r"^\[([a-z0-9_.]+)\]\s*$").unwrap();
    let pair = Regex::new(r"^([a-z0-9_]+)\s*=\s*(.+?)\s*$").unwrap();
    let optional = Regex::new(r"^#\s*([a-z0-9_]+)\s*=\s*(.+?)\s*$").unwrap();
    let mut section = String::new();
    let mut keys = BTreeMap::new();
    let mut sections = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(c) = header.captures(line) {
            section = c[1].to_owned();
            sections.insert(section.clone());
        } else if let Some(c) = pair.captures(line) {
            keys.insert(format!("{section}.{}", &c[1]), Some(c[2].to_owned()));
        } else if let Some(c) = optional.captures(line) {
            keys.entry(format!("{section}.{}", &c[1])).or_insert(None);
        }
    }
    assert!(
        keys.len() > 50,
        "config/default.toml parsed to only {} keys",
        keys.len()
    );
    Config { keys, sections }
}

/// Keys the documents name on purpose although they do not exist: (file, key, why).
const NOT_SETTINGS: &[(&str, &str, &str)] = &[(
    "README.md",
    "database.nope",
    "the example of a misspelt key stopping start-up",
)];

/// Extensions that make `queue.rs` a file name rather than a setting.
const FILE_EXTENSIONS: &[&str] = &[
    "rs", "md", "toml", "json", "yml", "yaml", "sh", "py", "js", "css", "html", "txt", "sql",
    "lua", "gz", "xml", "png", "lock", "service", "target", "timer",
];

/// A stated value as a number in the key's own unit, or a boolean, when it can be read.
#[derive(Debug, PartialEq)]
enum Value {
    Number(f64),
    Bool(bool),
}

fn unit_factor(key: &str, unit: &str) -> Option<f64> {
    let factor = if key.ends_with("_ms") {
        match unit {
            "" | "ms" => 1.0,
            "s" => 1_000.0,
            "min" => 60_000.0,
            _ => return None,
        }
    } else if key.ends_with("_secs") {
        match unit {
            "" | "s" => 1.0,
            "ms" => 0.001,
            "min" => 60.0,
            "h" => 3_600.0,
            "d" => 86_400.0,
            _ => return None,
        }
    } else if key.ends_with("_bytes") {
        match unit {
            "" | "bytes" => 1.0,
            "KiB" => 1024.0,
            "MiB" => 1024.0 * 1024.0,
            "GiB" => 1024.0 * 1024.0 * 1024.0,
            _ => return None,
        }
    } else {
        match unit {
            "" => 1.0,
            _ => return None,
        }
    };
    Some(factor)
}

/// A number (digits with `,` or `_` separators) and an optional unit, as stated for `key`.
fn stated(key: &str, number: &str, unit: &str) -> Option<Value> {
    let n: f64 = number.replace([',', '_'], "").parse().ok()?;
    Some(Value::Number(n * unit_factor(key, unit)?))
}

fn configured(raw: &str) -> Option<Value> {
    match raw {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        _ => raw.replace('_', "").parse().ok().map(Value::Number),
    }
}

/// A mention of a setting: its dotted name and where it ends on the line.
struct Mention {
    key: String,
    end: usize,
    env: bool,
}

fn mentions(line: &Line<'_>, cfg: &Config) -> Vec<Mention> {
    static ENV: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"PIPELINE__[A-Z0-9_]*[A-Z0-9]").unwrap());
    static DOTTED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+").unwrap());
    let text = line.text;
    let mut out = Vec::new();
    for m in ENV.find_iter(text) {
        if m.as_str() == "PIPELINE__SECTION__KEY" {
            continue;
        }
        let key = m.as_str()["PIPELINE__".len()..]
            .split("__")
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(".");
        out.push(Mention {
            key,
            end: m.end(),
            env: true,
        });
    }
    // `queue.enqueue(...)` in Rust is a method call, not a setting.
    if line.fence == Some("rust") {
        return out;
    }
    for m in DOTTED.find_iter(text) {
        let first = m.as_str().split('.').next().unwrap();
        if !cfg.sections.contains(first) {
            continue;
        }
        let before = text[..m.start()].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || "_./-:@{$".contains(c)) {
            continue; // part of a path, a URL, a longer name or a key pattern
        }
        let after = text[m.end()..].chars().next();
        if after.is_some_and(|c| c.is_ascii_alphanumeric() || "(/-".contains(c)) {
            continue; // a call, a path or a longer token
        }
        let last = m.as_str().rsplit('.').next().unwrap();
        if FILE_EXTENSIONS.contains(&last) {
            continue;
        }
        out.push(Mention {
            key: m.as_str().to_owned(),
            end: m.end(),
            env: false,
        });
    }
    out
}

/// The default a line states right after a mention of `key`: `` `k` (N unit`` or
/// `` `k` (..., default N unit)`` or `` `k`, default N``. A bare number in parentheses
/// after a key with a unit (`_ms`, `_secs`, `_bytes`) is not read as its default: it is
/// more likely a status code (`` `api.max_body_bytes` (413)``).
fn default_after(key: &str, rest: &str) -> Option<(String, String)> {
    static DIRECT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^`?\s*(?:\(\s*(?:default\s+)?|,?\s*default\s+)([0-9][0-9,_]*(?:\.[0-9]+)?)\s*(ms|s|min|h|d|KiB|MiB|GiB|bytes)?(?:[\s;,).]|$)",
        )
        .unwrap()
    });
    static INSIDE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^`?\s*\([^)`]*(?:`[^`]*`[^)`]*)*\bdefault\s+([0-9][0-9,_]*(?:\.[0-9]+)?)\s*(ms|s|min|h|d|KiB|MiB|GiB|bytes)?(?:[\s;,).]|$)",
        )
        .unwrap()
    });
    let c = DIRECT.captures(rest).or_else(|| INSIDE.captures(rest))?;
    let unitless_key = unit_factor(key, "s").is_none() && unit_factor(key, "KiB").is_none();
    let said_default = c[0].contains("default");
    if c.get(2).is_none() && !said_default && !unitless_key {
        return None;
    }
    Some((
        c[1].to_owned(),
        c.get(2).map_or("", |u| u.as_str()).to_owned(),
    ))
}

fn check_default(
    doc: &Doc,
    no: usize,
    key: &str,
    number: &str,
    unit: &str,
    cfg: &Config,
    errors: &mut Vec<String>,
) {
    let Some(Some(raw)) = cfg.keys.get(key) else {
        return;
    };
    let (Some(said), Some(is)) = (stated(key, number, unit), configured(raw)) else {
        return;
    };
    if said != is {
        errors.push(format!(
            "{}:{no}: says `{key}` defaults to {number}{}{unit}; config/default.toml has {raw}",
            doc.rel,
            if unit.is_empty() { "" } else { " " },
        ));
    }
}

/// Rows of a settings table (a header with a "key" and a "default" column) under a heading
/// that names the section (`## Settings (`[scrape]`)`).
fn check_settings_tables(doc: &Doc, cfg: &Config, errors: &mut Vec<String>) {
    static SECTION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\[([a-z0-9_.]+)\]").unwrap());
    let mut section: Option<String> = None;
    let mut columns: Option<(usize, usize)> = None;
    for line in lines(&doc.text) {
        let t = line.text.trim();
        if line.fence.is_some() {
            continue;
        }
        if t.starts_with('#') {
            section = SECTION
                .captures(t)
                .map(|c| c[1].to_owned())
                .filter(|s| cfg.sections.contains(s));
            columns = None;
            continue;
        }
        if !t.starts_with('|') {
            columns = None;
            continue;
        }
        let cells: Vec<&str> = t.trim_matches('|').split('|').map(str::trim).collect();
        match columns {
            None => {
                let key = cells.iter().position(|c| c.eq_ignore_ascii_case("key"));
                let default = cells.iter().position(|c| c.eq_ignore_ascii_case("default"));
                if let (Some(k), Some(d), Some(_)) = (key, default, &section) {
                    columns = Some((k, d));
                }
            }
            Some((k, d)) => {
                if cells.iter().all(|c| c.chars().all(|ch| "-: ".contains(ch))) {
                    continue; // the separator row
                }
                let (Some(name), Some(value)) = (cells.get(k), cells.get(d)) else {
                    continue;
                };
                let name = name.trim_matches('`');
                let key = if name.contains('.') {
                    name.to_owned()
                } else {
                    format!("{}.{name}", section.as_deref().unwrap())
                };
                if !cfg.keys.contains_key(&key) {
                    errors.push(format!(
                        "{}:{}: the settings table names `{key}`, which config/default.toml does not have",
                        doc.rel, line.no
                    ));
                    continue;
                }
                let value = value.trim_matches('`');
                if let Some(Some(raw)) = cfg.keys.get(&key)
                    && (value == "true" || value == "false")
                    && configured(raw).is_some()
                {
                    if configured(value) != configured(raw) {
                        errors.push(format!(
                            "{}:{}: says `{key}` defaults to {value}; config/default.toml has {raw}",
                            doc.rel, line.no
                        ));
                    }
                    continue;
                }
                static VALUE: LazyLock<Regex> = LazyLock::new(|| {
                    Regex::new(
                        r"^([0-9][0-9,_]*(?:\.[0-9]+)?)\s*(ms|s|min|h|d|KiB|MiB|GiB|bytes)?$",
                    )
                    .unwrap()
                });
                if let Some(c) = VALUE.captures(value) {
                    let unit = c.get(2).map_or("", |u| u.as_str());
                    check_default(doc, line.no, &key, &c[1], unit, cfg, errors);
                }
            }
        }
    }
}

#[test]
fn settings_named_in_the_docs_exist_with_the_stated_defaults() {
    let cfg = config();
    let mut errors = Vec::new();
    let mut seen = 0;
    for doc in docs() {
        for line in lines(&doc.text) {
            for m in mentions(&line, &cfg) {
                if NOT_SETTINGS
                    .iter()
                    .any(|(f, k, _)| *f == doc.rel && *k == m.key)
                {
                    continue;
                }
                seen += 1;
                let known = cfg.keys.contains_key(&m.key) || cfg.sections.contains(&m.key);
                if !known {
                    let shown = if m.env {
                        format!("PIPELINE__{}", m.key.replace('.', "__").to_uppercase())
                    } else {
                        format!("`{}`", m.key)
                    };
                    errors.push(format!(
                        "{}:{}: names the setting {shown}, which config/default.toml does not have",
                        doc.rel, line.no
                    ));
                    continue;
                }
                if m.env {
                    continue; // `PIPELINE__X__Y=5` is an example value, not a default
                }
                if let Some((number, unit)) = default_after(&m.key, &line.text[m.end..]) {
                    check_default(&doc, line.no, &m.key, &number, &unit, &cfg, &mut errors);
                }
            }
        }
        check_settings_tables(&doc, &cfg, &mut errors);
    }
    assert!(
        seen > 30,
        "only {seen} settings found in the docs: is the scan broken?"
    );
    assert!(
        errors.is_empty(),
        "docs disagree with config/default.toml:\n{}",
        errors.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Routes

/// The OpenAPI document's paths, each with its methods (lower case).
fn api_paths() -> BTreeMap<String, BTreeSet<String>> {
    let doc =
        serde_json::to_value(pipeline_api::openapi()).expect("the OpenAPI document serializes");
    let paths = doc["paths"].as_object().expect("the document has paths");
    paths
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .map(|o| {
                    o.keys()
                        .filter(|k| ["get", "put", "post", "delete", "patch"].contains(&k.as_str()))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            (path.clone(), methods)
        })
        .collect()
}

fn placeholder(segment: &str) -> bool {
    segment.starts_with('{')
        || segment.starts_with('$')
        || segment.starts_with('<')
        || segment.starts_with(':')
}

fn route_matches(doc_path: &str, api_path: &str) -> bool {
    let a: Vec<&str> = doc_path.split('/').collect();
    let b: Vec<&str> = api_path.split('/').collect();
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| x == y || placeholder(x) || placeholder(y))
}

#[test]
fn routes_named_in_the_docs_are_in_the_openapi_document() {
    static ROUTE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?:\b(GET|POST|PUT|DELETE|PATCH)\s+)?(/api/v1(?:/[^\s?`'|),#\]\\]*)?)")
            .unwrap()
    });
    static CURL_METHOD: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"-X\s*(POST|PUT|DELETE|PATCH)\b").unwrap());
    let api = api_paths();
    assert!(
        api.len() > 20,
        "the OpenAPI document has only {} paths",
        api.len()
    );
    let mut errors = Vec::new();
    let mut seen = 0;
    for doc in docs() {
        for line in lines(&doc.text) {
            for c in ROUTE.captures_iter(line.text) {
                let path = c[2].trim_end_matches(['.', '/']);
                if path == "/api/v1"
                    || path.contains("...")
                    || path.contains('…')
                    || path.contains('*')
                {
                    continue; // the prefix, or a family of routes
                }
                seen += 1;
                let method = match c.get(1) {
                    Some(m) => Some(m.as_str().to_lowercase()),
                    None if line.text.contains("curl ") => Some(
                        CURL_METHOD
                            .captures(line.text)
                            .map_or("get".to_owned(), |m| m[1].to_lowercase()),
                    ),
                    None => None,
                };
                let matching: Vec<_> = api.iter().filter(|(p, _)| route_matches(path, p)).collect();
                if matching.is_empty() {
                    errors.push(format!(
                        "{}:{}: names the route {path}, which the OpenAPI document does not have",
                        doc.rel, line.no
                    ));
                } else if let Some(method) = method
                    && !matching.iter().any(|(_, ms)| ms.contains(&method))
                {
                    let has: Vec<String> = matching
                        .iter()
                        .map(|(p, ms)| {
                            format!(
                                "{p} ({})",
                                ms.iter().cloned().collect::<Vec<_>>().join(", ")
                            )
                        })
                        .collect();
                    errors.push(format!(
                        "{}:{}: names {} {path}; the OpenAPI document has {}",
                        doc.rel,
                        line.no,
                        method.to_uppercase(),
                        has.join("; ")
                    ));
                }
            }
        }
    }
    assert!(
        seen > 10,
        "only {seen} routes found in the docs: is the scan broken?"
    );
    assert!(
        errors.is_empty(),
        "docs disagree with the OpenAPI document:\n{}",
        errors.join("\n")
    );
}

#[test]
fn every_operation_of_the_openapi_document_is_in_the_api_readme() {
    static OPERATION: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\b(GET|POST|PUT|DELETE|PATCH)\s+(/api/v1/[^\s?`'|),#\]\\]*)").unwrap()
    });
    let rel = "crates/pipeline-api/README.md";
    let text = std::fs::read_to_string(root().join(rel)).expect("the API's README");
    let listed: Vec<(String, String)> = OPERATION
        .captures_iter(&text)
        .map(|c| {
            (
                c[1].to_lowercase(),
                c[2].trim_end_matches(['.', '/']).to_owned(),
            )
        })
        .collect();
    let mut missing = Vec::new();
    for (path, methods) in api_paths() {
        for method in methods {
            if !listed
                .iter()
                .any(|(m, p)| *m == method && route_matches(p, &path))
            {
                missing.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{rel} does not list these operations of the OpenAPI document:\n{}",
        missing.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Names of Rust items

/// A workspace crate: its Rust name, its directory, and the text of its sources.
struct Crate {
    dir: PathBuf,
    source: String,
}

fn read_rs(dir: &Path, out: &mut String) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries
        .map(|e| e.expect("a readable entry").path())
        .collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            read_rs(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            out.push('\n');
        }
    }
}

/// Every workspace crate by its Rust name (`work_queue`), the test harness included.
fn workspace_crates() -> BTreeMap<String, Crate> {
    let root = root();
    let mut out = BTreeMap::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .map(|e| e.expect("a readable entry").path())
        .collect();
    dirs.push(root.join("tests"));
    for dir in dirs {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
        let Some(name) = manifest.lines().find_map(|l| {
            l.strip_prefix("name = \"")
                .and_then(|r| r.strip_suffix('"'))
        }) else {
            continue;
        };
        let mut source = String::new();
        read_rs(&dir.join("src"), &mut source);
        out.insert(name.replace('-', "_"), Crate { dir, source });
    }
    out
}

/// Whether `name` is defined in `source`: an item, a module, a field or an enum variant.
fn defines(source: &str, name: &str) -> bool {
    let n = regex::escape(name);
    let item = Regex::new(&format!(
        r"(?m)\b(?:fn|struct|enum|trait|type|const|static|mod|union)\s+{n}\b|macro_rules!\s*{n}\b|^\s*(?:pub(?:\([a-z]+\))?\s+)?{n}\s*(?:[,({{]|:[^:]|$)"
    ))
    .unwrap();
    item.is_match(source)
}

/// The crate `name` is re-exported from by a `pub use other::...name` in `source`.
fn reexported_from(source: &str, name: &str) -> Option<String> {
    let re = Regex::new(&format!(
        r"(?s)pub\s+use\s+([a-z_]+)::([^;]*?)\b{}\b[^;]*;",
        regex::escape(name)
    ))
    .unwrap();
    re.captures(source).map(|c| c[1].to_owned())
}

fn module_exists(krate: &Crate, name: &str) -> bool {
    let src = krate.dir.join("src");
    let mut found = false;
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.expect("a readable entry").path();
            if p.is_dir() {
                if p.file_name().is_some_and(|f| f == name) {
                    found = true;
                }
                stack.push(p);
            } else if p.file_stem().is_some_and(|f| f == name)
                && p.extension().is_some_and(|x| x == "rs")
            {
                found = true;
            }
        }
    }
    found
}

#[test]
fn rust_names_in_the_docs_exist_where_the_docs_say() {
    static PATH: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\b([A-Za-z_][A-Za-z0-9_]*)((?:::[A-Za-z_][A-Za-z0-9_]*)+)").unwrap()
    });
    let crates = workspace_crates();
    let mut errors = Vec::new();
    let mut seen = 0;
    for doc in docs() {
        for line in lines(&doc.text) {
            if line.fence.is_some() {
                continue;
            }
            for span in code_spans(line.text) {
                for c in PATH.captures_iter(span) {
                    let head = &c[1];
                    let tail: Vec<&str> = c[2].split("::").skip(1).collect();
                    if let Some(krate) = crates.get(head) {
                        // `crate_name::a::b`: each segment is defined in that crate.
                        seen += 1;
                        for (i, seg) in tail.iter().enumerate() {
                            let last = i + 1 == tail.len();
                            if defines(&krate.source, seg) || (!last && module_exists(krate, seg)) {
                                continue;
                            }
                            let what = format!("{head}{}", &c[2]);
                            match reexported_from(&krate.source, seg) {
                                Some(owner) if owner != "crate" && owner != "self" && owner != "super" => {
                                    errors.push(format!(
                                        "{}:{}: `{what}`: {head} only re-exports `{seg}`; it belongs to {owner}",
                                        doc.rel, line.no
                                    ))
                                }
                                Some(_) => {}
                                None => errors.push(format!(
                                    "{}:{}: `{what}`: {head} has no `{seg}`",
                                    doc.rel, line.no
                                )),
                            }
                            break;
                        }
                    } else if head.starts_with(|ch: char| ch.is_ascii_uppercase())
                        && tail.len() == 1
                    {
                        // `Type::member` of a type the workspace defines.
                        let owners: Vec<&Crate> = crates
                            .values()
                            .filter(|k| {
                                Regex::new(&format!(r"\b(?:struct|enum|trait)\s+{head}\b"))
                                    .unwrap()
                                    .is_match(&k.source)
                            })
                            .collect();
                        if owners.is_empty() {
                            continue; // a third-party type
                        }
                        seen += 1;
                        if !owners.iter().any(|k| defines(&k.source, tail[0])) {
                            errors.push(format!(
                                "{}:{}: `{head}::{}`: no such member in the workspace",
                                doc.rel, line.no, tail[0]
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        seen > 20,
        "only {seen} Rust names found in the docs: is the scan broken?"
    );
    assert!(
        errors.is_empty(),
        "docs name Rust items that are not there:\n{}",
        errors.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Files, links, examples

/// The GitHub anchor of a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    lines(text)
        .iter()
        .filter(|l| l.fence.is_none() && l.text.starts_with('#'))
        .map(|l| slug(l.text.trim_start_matches('#')))
        .collect()
}

/// Whether a token looks like a repository path worth checking: at least two components,
/// no placeholder, nothing generated (`target/`, `.local/`), no URL.
fn checkable_path(token: &str) -> bool {
    let inner = token.trim_end_matches('/');
    inner.contains('/')
        && !token.starts_with('/')
        && !token.starts_with("target/")
        && !token.starts_with(".local/")
        && !token.starts_with("~")
        && !token.contains("://")
        && !token.contains("...")
        && !token.chars().any(|c| "<>*${}[]()+=:@,;'\"".contains(c))
        && (token.ends_with('/')
            || inner.rsplit('/').next().is_some_and(|last| {
                // A file name: `name.ext`, the extension a word (not `pipeline-scraper/0.1`).
                last.rsplit_once('.').is_some_and(|(stem, ext)| {
                    !stem.is_empty() && ext.starts_with(|c: char| c.is_ascii_alphabetic())
                })
            }))
}

/// The directories a path on a line of `doc` may be relative to: the document's own, its
/// `src/`, the root, any directory up to two levels below the document's (`deploy/README.md`
/// names `base/pipeline.toml` of `deploy/k8s/`), and the directory of every crate the line
/// names.
fn bases(here: &Path) -> Vec<PathBuf> {
    let mut out = vec![here.to_path_buf(), here.join("src"), root()];
    let subdirs = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.is_dir() && !p.ends_with("target") && !p.ends_with("node_modules")
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    if here != root() {
        for d in subdirs(here) {
            out.extend(subdirs(&d));
            out.push(d);
        }
    }
    out
}

#[test]
fn paths_links_and_examples_in_the_docs_exist() {
    static LINK: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\]\(([^)\s]+)\)").unwrap());
    static EXAMPLE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"-p\s+([a-z][a-z0-9-]*)\b[^`|]*?--example\s+([a-z0-9_]+)").unwrap()
    });
    static CRATE_NAME: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"`([a-z][a-z0-9]*(?:-[a-z0-9]+)+)`").unwrap());
    let root = root();
    let crates = workspace_crates();
    let mut errors = Vec::new();
    let mut seen = 0;
    for doc in docs() {
        let here = doc.dir();
        let doc_bases = bases(&here);
        for line in lines(&doc.text) {
            // Crates named on the line: a path beside one may be relative to it.
            let mut bases = doc_bases.clone();
            for c in CRATE_NAME.captures_iter(line.text) {
                if let Some(k) = crates.get(&c[1].replace('-', "_")) {
                    bases.push(k.dir.clone());
                }
            }
            let mut tokens: Vec<&str> = Vec::new();
            match line.fence {
                Some("rust") => {}
                Some(_) => tokens.extend(line.text.split_whitespace()),
                None => {
                    for span in code_spans(line.text) {
                        tokens.extend(span.split_whitespace());
                    }
                }
            }
            for token in tokens {
                let token = token.trim_end_matches([',', '.', ';', ':']);
                if !checkable_path(token) {
                    continue;
                }
                seen += 1;
                if !bases.iter().any(|b| b.join(token).exists()) {
                    errors.push(format!(
                        "{}:{}: names the path {token}, which does not exist",
                        doc.rel, line.no
                    ));
                }
            }
            if line.fence.is_none() {
                for c in LINK.captures_iter(line.text) {
                    let target = &c[1];
                    if target.contains("://") || target.starts_with("mailto:") {
                        continue;
                    }
                    seen += 1;
                    let (file, anchor) = match target.split_once('#') {
                        Some((f, a)) => (f, Some(a)),
                        None => (target, None),
                    };
                    let path = if file.is_empty() {
                        root.join(&doc.rel)
                    } else {
                        here.join(file)
                    };
                    if !path.exists() {
                        errors.push(format!(
                            "{}:{}: links to {target}, which does not exist",
                            doc.rel, line.no
                        ));
                        continue;
                    }
                    if let Some(anchor) = anchor {
                        let text = std::fs::read_to_string(&path).unwrap_or_default();
                        if !anchors(&text).contains(anchor) {
                            errors.push(format!(
                                "{}:{}: links to {target}, which has no heading #{anchor}",
                                doc.rel, line.no
                            ));
                        }
                    }
                }
            }
            for c in EXAMPLE.captures_iter(line.text) {
                seen += 1;
                let (krate, example) = (&c[1], &c[2]);
                let Some(k) = crates.get(&krate.replace('-', "_")) else {
                    errors.push(format!(
                        "{}:{}: `-p {krate}`: no such crate",
                        doc.rel, line.no
                    ));
                    continue;
                };
                let dir = k.dir.join("examples");
                if !dir.join(format!("{example}.rs")).is_file()
                    && !dir.join(example).join("main.rs").is_file()
                {
                    errors.push(format!(
                        "{}:{}: `-p {krate} --example {example}`: {krate} has no such example",
                        doc.rel, line.no
                    ));
                }
            }
        }
    }
    assert!(
        seen > 50,
        "only {seen} paths, links and examples found in the docs: is the scan broken?"
    );
    assert!(
        errors.is_empty(),
        "docs name files that are not there:\n{}",
        errors.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Metrics

#[test]
fn metric_names_in_the_docs_are_recorded_by_the_code() {
    static METRIC: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^((?:pipeline|work_queue|requeue|scrape|crawl|dlq|embedding|extraction|process)_[a-z0-9_]*(?:_total|_seconds|_bytes|_size|_in_flight|_depth|_items|_running|_open|_info|_paused|_abandoned|_per_source|_fds|_threads))(?:\{[^}]*\})?$",
        )
        .unwrap()
    });
    let crates = workspace_crates();
    let all: String = crates.values().map(|k| k.source.as_str()).collect();
    let mut errors = Vec::new();
    let mut seen = 0;
    for doc in docs() {
        for line in lines(&doc.text) {
            if line.fence.is_some() {
                continue;
            }
            for span in code_spans(line.text) {
                let Some(c) = METRIC.captures(span.trim()) else {
                    continue;
                };
                let name = &c[1];
                let rust_name = Regex::new(&format!(r"\b{name}\s*:|\.{name}\b|fn\s+{name}\b"))
                    .unwrap()
                    .is_match(&all);
                if rust_name {
                    continue; // a field or a function (`dlq_max_items`), not a metric
                }
                seen += 1;
                if !all.contains(&format!("\"{name}\"")) {
                    errors.push(format!(
                        "{}:{}: names the metric `{name}`, which no crate records",
                        doc.rel, line.no
                    ));
                }
            }
        }
    }
    assert!(
        seen > 10,
        "only {seen} metric names found in the docs: is the scan broken?"
    );
    assert!(
        errors.is_empty(),
        "docs name metrics the code does not record:\n{}",
        errors.join("\n")
    );
}
