//! Streaming export of a project's or a job's knowledge as JSON Lines or CSV: sources (with
//! their document metadata), chunks (optionally with their vectors), the entities of each
//! source, and the schema stage's consolidated records. The HTTP API
//! (`GET /api/v1/export/{kind}`) and `pipelinectl export` both drive an [`Exporter`], so the
//! two give the same bytes for the same request.
//!
//! Memory stays constant whatever the size: rows are read by keyset pagination in batches of
//! at most [`BATCH_ROWS`], each batch is encoded and handed to the caller before the next is
//! read, and nothing holds a database connection between batches. A caller that stops
//! asking (a slow HTTP client) stops the queries.
//!
//! Order and cursor: every kind has a stable order on a unique key (sources by id; chunks by
//! source id and chunk index; entities by source id and entity id; records by project,
//! entity and record key). Every row carries its [`Cursor`] (a `cursor` field in JSON Lines,
//! a last `cursor` column in CSV); passing the cursor of the last row received resumes with
//! the row after it, under the same filters.
//!
//! JSON Lines ends with a trailer line `{"end":true,"rows":N,"more":B,"cursor":C}`, so a
//! reader can tell a complete export from a cut one; CSV has a header row and no trailer.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::Result;
use crate::extractions::TEXT_CHUNK;
use crate::status::SourceStatus;

/// Most rows one query reads.
pub const BATCH_ROWS: i64 = 1000;

/// Longest cursor accepted, in characters (a record's cursor holds its entity and key as
/// hex: keys up to ~2,000 bytes), so a URL carrying one stays within the API's 8 KiB.
pub const MAX_CURSOR_CHARS: usize = 4096;

/// What is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Sources (pages) with their document metadata, status and times.
    Sources,
    /// Chunks of text, with their page and, on request, their vectors.
    Chunks,
    /// The entities found in each source.
    Entities,
    /// The schema stage's consolidated records.
    Records,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 4] = [Kind::Sources, Kind::Chunks, Kind::Entities, Kind::Records];

    /// The kind's name (the path segment and the CLI argument).
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Sources => "sources",
            Kind::Chunks => "chunks",
            Kind::Entities => "entities",
            Kind::Records => "records",
        }
    }

    /// The kind of this name.
    pub fn parse(s: &str) -> Option<Kind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The row's time that `since` and `until` compare with.
    pub const fn time_column(self) -> &'static str {
        match self {
            Kind::Sources | Kind::Chunks => "created_at",
            Kind::Entities => "first_seen",
            Kind::Records => "updated_at",
        }
    }

    const fn tag(self) -> &'static str {
        match self {
            Kind::Sources => "s1",
            Kind::Chunks => "c1",
            Kind::Entities => "e1",
            Kind::Records => "r1",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// One JSON object per line, and a trailer line.
    #[default]
    Jsonl,
    /// RFC 4180 CSV with a header row.
    Csv,
}

impl Format {
    /// The format's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }

    /// The format of this name.
    pub fn parse(s: &str) -> Option<Format> {
        [Format::Jsonl, Format::Csv]
            .into_iter()
            .find(|f| f.as_str() == s)
    }

    /// The `Content-Type` of the output.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// Which rows are exported. Every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this project's rows.
    pub project_id: Option<Uuid>,
    /// Only rows of the sources this job asked for (records: with a value from this job).
    pub job_id: Option<Uuid>,
    /// Only rows whose time ([`Kind::time_column`]) is at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Only rows whose time is before this.
    pub until: Option<DateTime<Utc>>,
    /// Only rows of sources in this status (records: with a value from such a source).
    pub status: Option<SourceStatus>,
}

/// One export: what, how, from where, how many.
#[derive(Debug, Clone)]
pub struct Request {
    /// The rows.
    pub kind: Kind,
    /// The encoding.
    pub format: Format,
    /// The filters.
    pub filter: Filter,
    /// Chunks only: add each chunk's embedding model, dimensions and vector.
    pub vectors: bool,
    /// Resume after this row.
    pub cursor: Option<Cursor>,
    /// Stop after this many rows.
    pub limit: Option<u64>,
}

impl Request {
    /// Checks what the types cannot: vectors only for chunks, a cursor of the same kind,
    /// `since` before `until`, times Postgres can hold. The message names the parameter.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.vectors && self.kind != Kind::Chunks {
            return Err(format!(
                "vectors applies to chunks only, not to {}",
                self.kind
            ));
        }
        if let Some(c) = &self.cursor
            && c.kind() != self.kind
        {
            return Err(format!(
                "the cursor belongs to a {} export, not to {}",
                c.kind(),
                self.kind
            ));
        }
        for (name, t) in [("since", self.filter.since), ("until", self.filter.until)] {
            if let Some(t) = t
                && !(1..=9999).contains(&chrono::Datelike::year(&t))
            {
                return Err(format!("{name} must be within the years 1 to 9999"));
            }
        }
        if let (Some(s), Some(u)) = (self.filter.since, self.filter.until)
            && s >= u
        {
            return Err("since must be before until".into());
        }
        if self.limit == Some(0) {
            return Err("limit must be at least 1".into());
        }
        Ok(())
    }
}

/// A row's place in its kind's order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    Source(Uuid),
    Chunk(Uuid, i32),
    Entity(Uuid, Uuid),
    Record(Uuid, String, String),
}

/// Where an export resumes: after the row that carried it. Opaque to clients: a kind tag and
/// the row's key, joined by `-` (text keys as hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(Position);

impl Cursor {
    /// The kind of export the cursor belongs to.
    pub fn kind(&self) -> Kind {
        match self.0 {
            Position::Source(_) => Kind::Sources,
            Position::Chunk(..) => Kind::Chunks,
            Position::Entity(..) => Kind::Entities,
            Position::Record(..) => Kind::Records,
        }
    }

    /// The cursor as text.
    pub fn encode(&self) -> String {
        let tag = self.kind().tag();
        match &self.0 {
            Position::Source(id) => format!("{tag}-{}", id.simple()),
            Position::Chunk(id, i) => format!("{tag}-{}-{i}", id.simple()),
            Position::Entity(s, e) => format!("{tag}-{}-{}", s.simple(), e.simple()),
            Position::Record(p, e, k) => {
                format!("{tag}-{}-{}-{}", p.simple(), hex(e), hex(k))
            }
        }
    }

    /// Reads a cursor a previous export gave.
    pub fn parse(s: &str) -> std::result::Result<Cursor, String> {
        let bad = || {
            let shown: String = s.chars().take(80).collect();
            format!("invalid cursor `{shown}`: pass the `cursor` of a row a previous export gave")
        };
        if s.len() > MAX_CURSOR_CHARS {
            return Err(bad());
        }
        let parts: Vec<&str> = s.split('-').collect();
        let id = |p: &str| {
            if p.len() == 32 {
                Uuid::try_parse(p).ok()
            } else {
                None
            }
        };
        let position = match parts.as_slice() {
            ["s1", a] => Position::Source(id(a).ok_or_else(bad)?),
            ["c1", a, i] => Position::Chunk(
                id(a).ok_or_else(bad)?,
                i.parse().ok().filter(|i: &i32| *i >= 0).ok_or_else(bad)?,
            ),
            ["e1", a, b] => Position::Entity(id(a).ok_or_else(bad)?, id(b).ok_or_else(bad)?),
            ["r1", p, e, k] => Position::Record(
                id(p).ok_or_else(bad)?,
                unhex(e).ok_or_else(bad)?,
                unhex(k).ok_or_else(bad)?,
            ),
            _ => return Err(bad()),
        };
        Ok(Cursor(position))
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.encode())
    }
}

fn hex(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Text back from [`hex`]; `None` for odd lengths, non-hex digits, text that is not UTF-8
/// or holds NUL (which no stored key can).
fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect::<Option<_>>()?;
    String::from_utf8(bytes).ok().filter(|t| !t.contains('\0'))
}

// ---------------------------------------------------------------------------------------
// Rows

/// A source with its document metadata.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct SourceRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub url: String,
    pub source_group: Option<String>,
    pub status: String,
    pub title: Option<String>,
    pub content_type: Option<String>,
    pub http_status: Option<i32>,
    pub job_id: Option<Uuid>,
    pub crawl_depth: Option<i32>,
    pub discovered_from_source_id: Option<Uuid>,
    pub authors: Option<Vec<String>>,
    pub byline: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub modified_at: Option<DateTime<Utc>>,
    pub language: Option<String>,
    pub site_name: Option<String>,
    pub description: Option<String>,
    pub canonical_url: Option<String>,
    pub image_url: Option<String>,
    pub last_error: Option<String>,
    pub last_error_kind: Option<String>,
    pub fetched_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A chunk of a source's text.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct ChunkRow {
    pub id: Uuid,
    pub source_id: Uuid,
    pub project_id: Uuid,
    pub url: String,
    pub chunk_index: i32,
    /// For a PDF, the page (1-based).
    pub page: Option<i32>,
    pub heading_trail: Option<String>,
    pub text: String,
    pub job_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    pub model: Option<String>,
    #[serde(skip)]
    pub dims: Option<i32>,
    #[serde(skip)]
    pub vector: Option<Vec<f32>>,
}

/// A chunk's vector, as JSON Lines show it.
#[derive(Serialize)]
struct EmbeddingJson<'a> {
    model: &'a str,
    dims: i32,
    vector: &'a [f32],
}

/// One entity found in one source.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct EntityRow {
    pub source_id: Uuid,
    pub project_id: Uuid,
    pub url: String,
    pub entity_id: Uuid,
    pub kind: String,
    pub name: String,
    pub normalized: String,
    pub data: Option<Value>,
    /// Chunks of the source that mention it.
    pub chunks: i64,
    /// When it was first linked to the source.
    pub first_seen: DateTime<Utc>,
}

/// A consolidated record.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct RecordRow {
    pub project_id: Uuid,
    pub entity: String,
    pub record_key: String,
    pub fields: Value,
    pub conflicts: Vec<String>,
    pub sources: i64,
    pub schema_version: i32,
    /// When its newest value (among the filtered ones) was stored.
    pub updated_at: DateTime<Utc>,
}

/// The CSV columns of a kind, `cursor` last.
pub fn columns(kind: Kind, vectors: bool) -> &'static [&'static str] {
    match (kind, vectors) {
        (Kind::Sources, _) => &[
            "id",
            "project_id",
            "url",
            "source_group",
            "status",
            "title",
            "content_type",
            "http_status",
            "job_id",
            "crawl_depth",
            "discovered_from_source_id",
            "authors",
            "byline",
            "published_at",
            "modified_at",
            "language",
            "site_name",
            "description",
            "canonical_url",
            "image_url",
            "last_error",
            "last_error_kind",
            "fetched_at",
            "created_at",
            "updated_at",
            "cursor",
        ],
        (Kind::Chunks, false) => &[
            "id",
            "source_id",
            "project_id",
            "url",
            "chunk_index",
            "page",
            "heading_trail",
            "text",
            "job_id",
            "created_at",
            "cursor",
        ],
        (Kind::Chunks, true) => &[
            "id",
            "source_id",
            "project_id",
            "url",
            "chunk_index",
            "page",
            "heading_trail",
            "text",
            "job_id",
            "created_at",
            "embedding_model",
            "embedding_dims",
            "vector",
            "cursor",
        ],
        (Kind::Entities, _) => &[
            "source_id",
            "project_id",
            "url",
            "entity_id",
            "kind",
            "name",
            "normalized",
            "data",
            "chunks",
            "first_seen",
            "cursor",
        ],
        (Kind::Records, _) => &[
            "project_id",
            "entity",
            "record_key",
            "fields",
            "conflicts",
            "sources",
            "schema_version",
            "updated_at",
            "cursor",
        ],
    }
}

// ---------------------------------------------------------------------------------------
// Encoding

/// One CSV line being written: fields quoted when they hold a comma, a quote, CR or LF
/// (quotes doubled), an empty string as `""` and a null as nothing, lines ended by `\n`.
struct CsvLine<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> CsvLine<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out, first: true }
    }

    fn sep(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    fn text(&mut self, s: &str) {
        self.sep();
        if s.is_empty() || s.contains([',', '"', '\r', '\n']) {
            self.out.push(b'"');
            for part in s.split('"').enumerate() {
                if part.0 > 0 {
                    self.out.extend_from_slice(b"\"\"");
                }
                self.out.extend_from_slice(part.1.as_bytes());
            }
            self.out.push(b'"');
        } else {
            self.out.extend_from_slice(s.as_bytes());
        }
    }

    fn opt_text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.text(s),
            None => self.sep(),
        }
    }

    fn num(&mut self, n: Option<i64>) {
        self.sep();
        if let Some(n) = n {
            let _ = write!(Bytes(self.out), "{n}");
        }
    }

    fn id(&mut self, id: Option<Uuid>) {
        self.sep();
        if let Some(id) = id {
            let _ = write!(Bytes(self.out), "{}", id.hyphenated());
        }
    }

    fn time(&mut self, t: Option<DateTime<Utc>>) {
        self.sep();
        if let Some(t) = t {
            self.out
                .extend_from_slice(t.to_rfc3339_opts(SecondsFormat::AutoSi, true).as_bytes());
        }
    }

    /// A value as its JSON text (a list, an object), in one field.
    fn json<T: Serialize + ?Sized>(&mut self, v: Option<&T>) {
        match v {
            Some(v) => self.text(&serde_json::to_string(v).unwrap_or_default()),
            None => self.sep(),
        }
    }

    fn end(self) {
        self.out.push(b'\n');
    }
}

/// `fmt::Write` into a byte buffer.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Appends `{"cursor":"...",<the row's fields>}\n`.
fn json_line<T: Serialize + ?Sized>(out: &mut Vec<u8>, cursor: &str, row: &T) {
    let start = out.len();
    // Cannot fail: the rows hold strings, numbers, ids, times and JSON values (no map with
    // non-string keys), written into memory.
    let _ = serde_json::to_writer(&mut *out, row);
    // The row is an object with at least one field: put the cursor first.
    let fields = out.split_off(start + 1);
    out.truncate(start);
    out.extend_from_slice(b"{\"cursor\":\"");
    out.extend_from_slice(cursor.as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(&fields);
    out.push(b'\n');
}

trait Row: Serialize {
    fn position(&self) -> Position;
    fn csv(&self, line: &mut CsvLine<'_>, vectors: bool);
    /// Appends the row's JSON line, its cursor first.
    fn json(&self, out: &mut Vec<u8>, cursor: &str, _vectors: bool) {
        json_line(out, cursor, self)
    }
}

impl Row for SourceRow {
    fn position(&self) -> Position {
        Position::Source(self.id)
    }

    fn csv(&self, l: &mut CsvLine<'_>, _: bool) {
        l.id(Some(self.id));
        l.id(Some(self.project_id));
        l.text(&self.url);
        l.opt_text(self.source_group.as_deref());
        l.text(&self.status);
        l.opt_text(self.title.as_deref());
        l.opt_text(self.content_type.as_deref());
        l.num(self.http_status.map(i64::from));
        l.id(self.job_id);
        l.num(self.crawl_depth.map(i64::from));
        l.id(self.discovered_from_source_id);
        l.json(self.authors.as_ref());
        l.opt_text(self.byline.as_deref());
        l.time(self.published_at);
        l.time(self.modified_at);
        l.opt_text(self.language.as_deref());
        l.opt_text(self.site_name.as_deref());
        l.opt_text(self.description.as_deref());
        l.opt_text(self.canonical_url.as_deref());
        l.opt_text(self.image_url.as_deref());
        l.opt_text(self.last_error.as_deref());
        l.opt_text(self.last_error_kind.as_deref());
        l.time(self.fetched_at);
        l.time(Some(self.created_at));
        l.time(Some(self.updated_at));
    }
}

impl Row for ChunkRow {
    fn position(&self) -> Position {
        Position::Chunk(self.source_id, self.chunk_index)
    }

    fn csv(&self, l: &mut CsvLine<'_>, vectors: bool) {
        l.id(Some(self.id));
        l.id(Some(self.source_id));
        l.id(Some(self.project_id));
        l.text(&self.url);
        l.num(Some(i64::from(self.chunk_index)));
        l.num(self.page.map(i64::from));
        l.opt_text(self.heading_trail.as_deref());
        l.text(&self.text);
        l.id(self.job_id);
        l.time(Some(self.created_at));
        if vectors {
            l.opt_text(self.model.as_deref());
            l.num(self.dims.map(i64::from));
            l.json(self.vector.as_deref());
        }
    }

    fn json(&self, out: &mut Vec<u8>, cursor: &str, vectors: bool) {
        json_line(out, cursor, self);
        if vectors {
            // Replace the closing `}\n` by the embedding field.
            out.truncate(out.len() - 2);
            out.extend_from_slice(b",\"embedding\":");
            let embedding = match (&self.model, self.dims, &self.vector) {
                (Some(model), Some(dims), Some(vector)) => Some(EmbeddingJson {
                    model,
                    dims,
                    vector,
                }),
                _ => None,
            };
            // Cannot fail, as in `json_line`.
            let _ = serde_json::to_writer(&mut *out, &embedding);
            out.extend_from_slice(b"}\n");
        }
    }
}

impl Row for EntityRow {
    fn position(&self) -> Position {
        Position::Entity(self.source_id, self.entity_id)
    }

    fn csv(&self, l: &mut CsvLine<'_>, _: bool) {
        l.id(Some(self.source_id));
        l.id(Some(self.project_id));
        l.text(&self.url);
        l.id(Some(self.entity_id));
        l.text(&self.kind);
        l.text(&self.name);
        l.text(&self.normalized);
        l.json(self.data.as_ref());
        l.num(Some(self.chunks));
        l.time(Some(self.first_seen));
    }
}

impl Row for RecordRow {
    fn position(&self) -> Position {
        Position::Record(
            self.project_id,
            self.entity.clone(),
            self.record_key.clone(),
        )
    }

    fn csv(&self, l: &mut CsvLine<'_>, _: bool) {
        l.id(Some(self.project_id));
        l.text(&self.entity);
        l.text(&self.record_key);
        l.json(Some(&self.fields));
        l.json(Some(&self.conflicts));
        l.num(Some(self.sources));
        l.num(Some(i64::from(self.schema_version)));
        l.time(Some(self.updated_at));
    }
}

// ---------------------------------------------------------------------------------------
// Queries. Built from fixed fragments (only the filters asked for, so each plan can use its
// index: a job's sources through `job_sources`' key, chunks through their source's), with
// every value bound.

fn push_time(q: &mut QueryBuilder<Postgres>, col: &str, f: &Filter) {
    if let Some(t) = f.since {
        q.push(format_args!(" AND {col} >= ")).push_bind(t);
    }
    if let Some(t) = f.until {
        q.push(format_args!(" AND {col} < ")).push_bind(t);
    }
}

fn job_join(q: &mut QueryBuilder<Postgres>, source_col: &str, f: &Filter) {
    if let Some(job) = f.job_id {
        q.push(format_args!(
            " JOIN job_sources js ON js.source_id = {source_col} AND js.job_id = "
        ))
        .push_bind(job);
    }
}

async fn fetch_sources(
    pool: &PgPool,
    f: &Filter,
    after: Option<&Position>,
    n: i64,
) -> Result<Vec<SourceRow>> {
    let mut q = QueryBuilder::new(
        "SELECT s.id, s.project_id, s.uri AS url, s.source_group, s.status, s.title, \
                s.content_type, s.http_status, s.created_by_job_id AS job_id, s.crawl_depth, \
                s.discovered_from_source_id, s.authors, s.byline, s.published_at, \
                s.modified_at, s.language, s.site_name, s.description, s.canonical_url, \
                s.image_url, s.last_error, s.last_error_kind, s.fetched_at, s.created_at, \
                s.updated_at \
           FROM sources s",
    );
    job_join(&mut q, "s.id", f);
    q.push(" WHERE TRUE");
    if let Some(p) = f.project_id {
        q.push(" AND s.project_id = ").push_bind(p);
    }
    if let Some(s) = f.status {
        q.push(" AND s.status = ").push_bind(s.as_str());
    }
    push_time(&mut q, "s.created_at", f);
    if let Some(Position::Source(id)) = after {
        q.push(" AND s.id > ").push_bind(*id);
    }
    q.push(" ORDER BY s.id LIMIT ").push_bind(n);
    Ok(q.build_query_as().fetch_all(pool).await?)
}

async fn fetch_chunks(
    pool: &PgPool,
    f: &Filter,
    vectors: bool,
    after: Option<&Position>,
    n: i64,
) -> Result<Vec<ChunkRow>> {
    // The batch's chunks first (materialized, so the planner cannot fold the joins into
    // it), then their page and vector by key: a join planned over the whole table (a hash
    // of every vector, rebuilt for each batch) would make each batch cost the table's size.
    let mut q = QueryBuilder::new(
        "WITH page AS MATERIALIZED ( \
             SELECT x.id, x.source_id, x.project_id, x.chunk_index, x.data, x.heading_trail, \
                    x.created_by_job_id, x.created_at \
               FROM extractions x",
    );
    if f.status.is_some() {
        q.push(" JOIN sources s ON s.id = x.source_id");
    }
    job_join(&mut q, "x.source_id", f);
    // A literal, so the planner reads chunks in (source_id, chunk_index) order from the
    // (source_id, extraction_type, chunk_index) unique index.
    q.push(format_args!(" WHERE x.extraction_type = '{TEXT_CHUNK}'"));
    if let Some(p) = f.project_id {
        q.push(" AND x.project_id = ").push_bind(p);
    }
    if let Some(s) = f.status {
        q.push(" AND s.status = ").push_bind(s.as_str());
    }
    push_time(&mut q, "x.created_at", f);
    if let Some(Position::Chunk(source, index)) = after {
        q.push(" AND x.source_id >= ")
            .push_bind(*source)
            .push(" AND (x.source_id > ")
            .push_bind(*source)
            .push(" OR x.chunk_index > ")
            .push_bind(*index)
            .push(")");
    }
    q.push(" ORDER BY x.source_id, x.chunk_index LIMIT ")
        .push_bind(n);
    q.push(
        ") SELECT p.id, p.source_id, p.project_id, s.uri AS url, p.chunk_index, \
                  (p.data ->> 'page')::int AS page, p.heading_trail, \
                  coalesce(p.data ->> 'text', '') AS text, p.created_by_job_id AS job_id, \
                  p.created_at, ",
    );
    if vectors {
        q.push(
            "v.model, v.dims, v.embedding AS vector \
               FROM page p JOIN sources s ON s.id = p.source_id \
               LEFT JOIN extraction_embeddings v ON v.extraction_id = p.id",
        );
    } else {
        q.push(
            "NULL::text AS model, NULL::int AS dims, NULL::real[] AS vector \
               FROM page p JOIN sources s ON s.id = p.source_id",
        );
    }
    q.push(" ORDER BY p.source_id, p.chunk_index");
    Ok(q.build_query_as().fetch_all(pool).await?)
}

async fn fetch_entities(
    pool: &PgPool,
    f: &Filter,
    after: Option<&Position>,
    n: i64,
) -> Result<Vec<EntityRow>> {
    // As for chunks: the batch's keys first, then each entity by its key.
    let mut q = QueryBuilder::new(
        "WITH page AS MATERIALIZED ( \
             SELECT s.id AS source_id, s.project_id, s.uri AS url, m.entity_id, m.chunks, \
                    m.first_seen \
               FROM sources s",
    );
    job_join(&mut q, "s.id", f);
    q.push(
        " CROSS JOIN LATERAL ( \
             SELECT l.entity_id, count(*) AS chunks, min(l.created_at) AS first_seen \
               FROM extractions x JOIN extraction_entities l ON l.extraction_id = x.id \
              WHERE x.source_id = s.id \
              GROUP BY l.entity_id) m \
         WHERE TRUE",
    );
    if let Some(p) = f.project_id {
        q.push(" AND s.project_id = ").push_bind(p);
    }
    if let Some(s) = f.status {
        q.push(" AND s.status = ").push_bind(s.as_str());
    }
    push_time(&mut q, "m.first_seen", f);
    if let Some(Position::Entity(source, entity)) = after {
        q.push(" AND s.id >= ")
            .push_bind(*source)
            .push(" AND (s.id > ")
            .push_bind(*source)
            .push(" OR m.entity_id > ")
            .push_bind(*entity)
            .push(")");
    }
    q.push(" ORDER BY s.id, m.entity_id LIMIT ").push_bind(n);
    q.push(
        ") SELECT p.source_id, p.project_id, p.url, p.entity_id, e.kind, e.name, e.normalized, \
                  e.data, p.chunks, p.first_seen \
             FROM page p JOIN entities e ON e.id = p.entity_id \
            ORDER BY p.source_id, p.entity_id",
    );
    Ok(q.build_query_as().fetch_all(pool).await?)
}

async fn fetch_records(
    pool: &PgPool,
    f: &Filter,
    after: Option<&Position>,
    n: i64,
) -> Result<Vec<RecordRow>> {
    // The next keys first (read in order from the facts' (project, entity, record_key)
    // index), then each key's consolidated record from knowledge.records, whose grouping
    // the key's equality reaches.
    let mut q = QueryBuilder::new(
        "WITH keys AS MATERIALIZED ( \
             SELECT f.project_id, f.entity, f.record_key, max(f.created_at) AS updated_at \
               FROM facts f",
    );
    if f.status.is_some() {
        q.push(" JOIN sources s ON s.id = f.source_id");
    }
    q.push(" WHERE f.grounded");
    if let Some(p) = f.project_id {
        q.push(" AND f.project_id = ").push_bind(p);
    }
    if let Some(j) = f.job_id {
        q.push(" AND f.job_id = ").push_bind(j);
    }
    if let Some(s) = f.status {
        q.push(" AND s.status = ").push_bind(s.as_str());
    }
    if let Some(Position::Record(p, e, k)) = after {
        q.push(" AND (f.project_id, f.entity, f.record_key) > (")
            .push_bind(*p)
            .push(", ")
            .push_bind(e.clone())
            .push(", ")
            .push_bind(k.clone())
            .push(")");
    }
    q.push(" GROUP BY f.project_id, f.entity, f.record_key HAVING TRUE");
    push_time(&mut q, "max(f.created_at)", f);
    q.push(" ORDER BY f.project_id, f.entity, f.record_key LIMIT ")
        .push_bind(n);
    q.push(
        ") SELECT k.project_id, k.entity, k.record_key, r.fields, r.conflicts, r.sources, \
                  r.schema_version, k.updated_at \
             FROM keys k CROSS JOIN LATERAL ( \
                 SELECT r.fields, r.conflicts, r.sources, r.schema_version \
                   FROM knowledge.records r \
                  WHERE r.project_id = k.project_id AND r.entity = k.entity \
                    AND r.record_key = k.record_key) r \
            ORDER BY k.project_id, k.entity, k.record_key",
    );
    Ok(q.build_query_as().fetch_all(pool).await?)
}

// ---------------------------------------------------------------------------------------
// The exporter

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Start,
    Rows,
    Trailer,
    Done,
}

/// Reads and encodes one export a batch at a time; see the module docs.
#[derive(Debug)]
pub struct Exporter {
    pool: PgPool,
    request: Request,
    after: Option<Position>,
    rows: u64,
    /// The limit stopped the export before a row that exists.
    more: bool,
    /// The last batch was short: no row is left.
    exhausted: bool,
    stage: Stage,
    batch_rows: i64,
}

impl Exporter {
    /// An export of `request` (checked with [`Request::check`] first) from `pool`.
    pub fn new(pool: PgPool, request: Request) -> Self {
        let after = request.cursor.clone().map(|c| c.0);
        Self {
            pool,
            request,
            after,
            rows: 0,
            more: false,
            exhausted: false,
            stage: Stage::Start,
            batch_rows: BATCH_ROWS,
        }
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The cursor of the last row written (or the one the export started from).
    pub fn cursor(&self) -> Option<String> {
        self.after.clone().map(|p| Cursor(p).encode())
    }

    /// The next piece of output: the CSV header first, then one encoded batch of rows per
    /// call, then the JSON Lines trailer; `None` once everything is written. After an error
    /// the export is over (a resumed one starts from [`Exporter::cursor`]).
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            match self.stage {
                Stage::Start => {
                    self.stage = Stage::Rows;
                    if self.request.format == Format::Csv {
                        let mut out = Vec::new();
                        let mut line = CsvLine::new(&mut out);
                        for c in columns(self.request.kind, self.request.vectors) {
                            line.text(c);
                        }
                        line.end();
                        return Ok(Some(out));
                    }
                }
                Stage::Rows => match self.batch().await {
                    Ok(Some(out)) => return Ok(Some(out)),
                    Ok(None) => self.stage = Stage::Trailer,
                    Err(e) => {
                        self.stage = Stage::Done;
                        return Err(e);
                    }
                },
                Stage::Trailer => {
                    self.stage = Stage::Done;
                    if self.request.format == Format::Jsonl {
                        let trailer = serde_json::json!({
                            "end": true,
                            "rows": self.rows,
                            "more": self.more,
                            "cursor": self.cursor(),
                        });
                        let mut out = trailer.to_string().into_bytes();
                        out.push(b'\n');
                        return Ok(Some(out));
                    }
                }
                Stage::Done => return Ok(None),
            }
        }
    }

    /// One batch encoded, or `None` when no row is left (or the limit is reached).
    async fn batch(&mut self) -> Result<Option<Vec<u8>>> {
        let left = self.request.limit.map(|l| l.saturating_sub(self.rows));
        if self.exhausted || left == Some(0) {
            return Ok(None);
        }
        // One row past the limit tells whether more rows follow it.
        let n = match left {
            Some(left) if left <= self.batch_rows as u64 => left as i64 + 1,
            _ => self.batch_rows,
        };
        let f = &self.request.filter;
        let after = self.after.as_ref();
        let mut out = Vec::new();
        let got = match self.request.kind {
            Kind::Sources => {
                let rows = fetch_sources(&self.pool, f, after, n).await?;
                self.encode(&rows, left, &mut out)
            }
            Kind::Chunks => {
                let rows = fetch_chunks(&self.pool, f, self.request.vectors, after, n).await?;
                self.encode(&rows, left, &mut out)
            }
            Kind::Entities => {
                let rows = fetch_entities(&self.pool, f, after, n).await?;
                self.encode(&rows, left, &mut out)
            }
            Kind::Records => {
                let rows = fetch_records(&self.pool, f, after, n).await?;
                self.encode(&rows, left, &mut out)
            }
        };
        if got == 0 {
            return Ok(None);
        }
        // A short batch is the last: no query to learn that there is nothing after it.
        self.exhausted = got < n as usize;
        Ok(Some(out))
    }

    /// Encodes `rows` (at most `left` of them) into `out`; returns how many were read.
    fn encode<R: Row>(&mut self, rows: &[R], left: Option<u64>, out: &mut Vec<u8>) -> usize {
        let format = self.request.format;
        let vectors = self.request.vectors;
        for (i, row) in rows.iter().enumerate() {
            if left.is_some_and(|left| i as u64 >= left) {
                self.more = true;
                break;
            }
            let cursor = Cursor(row.position()).encode();
            match format {
                Format::Jsonl => row.json(out, &cursor, vectors),
                Format::Csv => {
                    let mut line = CsvLine::new(out);
                    row.csv(&mut line, vectors);
                    line.text(&cursor);
                    line.end();
                }
            }
            self.after = Some(row.position());
            self.rows += 1;
        }
        rows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back() {
        let id = Uuid::now_v7();
        for c in [
            Cursor(Position::Source(id)),
            Cursor(Position::Chunk(id, 7)),
            Cursor(Position::Entity(id, Uuid::nil())),
            Cursor(Position::Record(
                id,
                "product".into(),
                "sku:a-1 | x,y".into(),
            )),
            Cursor(Position::Record(id, String::new(), "é".into())),
        ] {
            assert_eq!(Cursor::parse(&c.encode()), Ok(c.clone()), "{}", c.encode());
        }
        for bad in [
            "",
            "s1",
            "s1-xyz",
            "x1-00",
            "c1-00000000000000000000000000000000--1",
            "r1-0-0-0",
        ] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let mut out = Vec::new();
        let mut l = CsvLine::new(&mut out);
        l.text("plain");
        l.text("a,b");
        l.text("say \"hi\"");
        l.text("two\nlines");
        l.text("");
        l.opt_text(None);
        l.end();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\"\",\n"
        );
    }
}
