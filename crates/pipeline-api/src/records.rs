//! What the schema stage found: a project's consolidated records (filtered by entity, by page
//! and by `where` conditions on their grounded values, paged by cursor), one record with
//! every value and its verbatim quote, and the values one page gave (grounded or not, each
//! flagged).
//!
//! `where` conditions are `field op value` (`price>=10`, `name=Pro`; ops `=`, `!=`, `<`,
//! `<=`, `>`, `>=`), repeatable up to [`MAX_CONDITIONS`]: a record matches when, for each
//! condition, one of its grounded values of that field does. Numbers compare as numbers,
//! everything else as text (equality ignores case).

use axum::Json;
use axum::extract::{RawQuery, State};
use pipeline_store::facts::{self, Condition, FactRow, RecordFilter, RecordRow};
use pipeline_store::sources;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::{ArrayBuilder, ObjectBuilder, Required, Type};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiPath, ApiQuery, ErrorBody, clip};
use crate::schemas::project_of;

/// Most `where` conditions in one request.
pub const MAX_CONDITIONS: usize = 16;

/// Longest `where` condition, in characters (so its value is within the store's 1,000
/// bytes whatever the characters).
pub const MAX_CONDITION_CHARS: usize = 250;

/// Largest page of records or values.
pub const MAX_LIMIT: i64 = 1000;

/// Longest `entity` filter, in characters.
pub const MAX_ENTITY_CHARS: usize = 200;

/// Longest cursor, in characters.
pub const MAX_CURSOR_CHARS: usize = 8000;

/// Characters a condition's value may not consist of only (as `q` of search).
const BLANK_CLASS: &str =
    r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff";

/// The documented pattern of a `where` condition; [`parse_where`] accepts exactly the
/// strings it matches (a unit test holds them together).
pub fn where_pattern() -> String {
    let b = BLANK_CLASS;
    // After `<` or `>` the value cannot start with `=` (that is the `<=` / `>=` operator).
    let value = format!("[^\\x00]*[^\\x00{b}][^\\x00]*");
    let after_lt = format!("(?:[^\\x00={b}][^\\x00]*|[{b}][^\\x00]*[^\\x00{b}][^\\x00]*)");
    format!("^[a-z0-9_]{{1,64}}(?:(?:!=|<=|>=|=){value}|[<>]{after_lt})$")
}

fn blank(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c) || c == '\u{feff}'
}

/// Parses one `where` condition, refusing what the documented pattern refuses.
pub fn parse_where(s: &str) -> Result<Condition, String> {
    let shown = clip(s);
    if s.contains('\0') {
        return Err(format!("where `{shown}` contains a NUL character"));
    }
    if s.chars().count() > MAX_CONDITION_CHARS {
        return Err(format!(
            "where `{shown}` is over {MAX_CONDITION_CHARS} characters"
        ));
    }
    let field_len = s
        .bytes()
        .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
        .count();
    if !(1..=64).contains(&field_len) {
        return Err(format!(
            "where `{shown}` must start with a field name (1 to 64 lower-case letters, digits, _) \
             followed by =, !=, <, <=, > or >="
        ));
    }
    let rest = &s[field_len..];
    let op_len = if ["!=", "<=", ">="].iter().any(|op| rest.starts_with(op)) {
        2
    } else if rest.starts_with(['<', '>', '=']) {
        1
    } else {
        return Err(format!(
            "where `{shown}`: the field name must be followed by =, !=, <, <=, > or >="
        ));
    };
    if rest[op_len..].chars().all(blank) {
        return Err(format!("where `{shown}` has no value"));
    }
    Condition::parse(s)
}

/// Every `where` of a query string, parsed (at most [`MAX_CONDITIONS`]).
pub fn conditions(raw: Option<&str>) -> Result<Vec<Condition>, ApiError> {
    let wheres: Vec<String> = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == "where")
        .map(|(_, v)| v.into_owned())
        .collect();
    if wheres.len() > MAX_CONDITIONS {
        return Err(ApiError::unprocessable(format!(
            "at most {MAX_CONDITIONS} `where` conditions, got {}",
            wheres.len()
        )));
    }
    wheres
        .iter()
        .map(|w| parse_where(w).map_err(ApiError::unprocessable))
        .collect()
}

/// The `where` query parameter, repeatable, for `#[utoipa::path(params(...))]`.
pub struct WhereParam;

impl IntoParams for WhereParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let item = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(2))
            .max_length(Some(MAX_CONDITION_CHARS))
            .pattern(Some(where_pattern()));
        let schema = ArrayBuilder::new()
            .items(item)
            .max_items(Some(MAX_CONDITIONS));
        vec![
            ParameterBuilder::new()
                .name("where")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .style(Some(ParameterStyle::Form))
                .explode(Some(true))
                .description(Some(
                    "A condition on the records' grounded values, `field op value` with op \
                     one of =, !=, <, <=, >, >= (`price>=10`, `name=Pro`); repeatable, at most \
                     16, all must hold. Numbers compare as numbers, other values as text \
                     (equality ignores case).",
                ))
                .schema(Some(schema))
                .build(),
        ]
    }
}

/// Query of the records list (besides `where`).
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordsQuery {
    /// Only records of this entity (the schema's name or an entity list's).
    #[param(max_length = 200, pattern = r"^[^\x00]*$")]
    pub entity: Option<String>,
    /// Only records a value of this page belongs to.
    pub source_id: Option<Uuid>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(max_length = 8000, pattern = "^(?:[0-9a-f]{2})+-(?:[0-9a-f]{2})+$")]
    pub cursor: Option<String>,
}

/// One consolidated record: its values over every page of the project.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecordBody {
    /// The entity (the schema's name or an entity list's).
    pub entity: String,
    /// Its key: the key fields' values, or `source:<id>` for a record without a key.
    pub record_key: String,
    /// Field to value; a list field or a conflicting field holds every value (an array).
    #[schema(value_type = Object)]
    pub fields: Value,
    /// The fields with more than one value where the schema expects one.
    pub conflicts: Vec<String>,
    /// Pages that gave values.
    pub sources: i64,
    /// The newest schema version among its values.
    pub schema_version: i32,
}

impl From<RecordRow> for RecordBody {
    fn from(r: RecordRow) -> Self {
        Self {
            entity: r.entity,
            record_key: r.record_key,
            fields: r.fields,
            conflicts: r.conflicts,
            sources: r.sources,
            schema_version: r.schema_version,
        }
    }
}

/// A page of records, by entity and key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecordsPage {
    /// The records.
    pub records: Vec<RecordBody>,
    /// Pass as `cursor` for the next page; `null` when this page was not full.
    pub next_cursor: Option<String>,
}

/// One stored value with the verbatim quote it came from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FactBody {
    /// Its record's entity.
    pub entity: String,
    /// Its record's key.
    pub record_key: String,
    /// The field.
    pub field: String,
    /// The value, coerced to the field's type.
    #[schema(value_type = Object)]
    pub value: Value,
    /// Whether it is one item of a list field.
    pub list_item: bool,
    /// The page's text it came from, verbatim.
    pub quote: String,
    /// How it was read (`json-ld`, `microdata`, `meta`, `selector`, `llm`, …).
    pub origin: String,
    /// The chunk the model read it in (`llm` backend).
    pub chunk_index: Option<i32>,
    /// The model's confidence, when it gave one.
    pub confidence: Option<f32>,
    /// Whether the quote was found in the page; ungrounded values are never in records.
    pub grounded: bool,
    /// The page.
    pub source_id: Uuid,
    /// The page's URL.
    pub url: String,
    /// The schema version that made it.
    pub schema_version: i32,
}

impl From<FactRow> for FactBody {
    fn from(f: FactRow) -> Self {
        Self {
            entity: f.entity,
            record_key: f.record_key,
            field: f.field,
            value: f.value,
            list_item: f.list_item,
            quote: f.quote,
            origin: f.origin,
            chunk_index: f.chunk_index,
            confidence: f.confidence,
            grounded: f.grounded,
            source_id: f.source_id,
            url: f.url,
            schema_version: f.schema_version,
        }
    }
}

/// A record with every grounded value and its quote.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecordDetail {
    /// The consolidated record.
    pub record: RecordBody,
    /// Its grounded values over every page, by field (at most 1,000).
    pub values: Vec<FactBody>,
}

/// The values one page gave.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SourceFacts {
    /// The page.
    pub source_id: Uuid,
    /// Its values by record and field, grounded and ungrounded (`grounded` says which).
    pub facts: Vec<FactBody>,
    /// Whether there may be more than `limit`.
    pub truncated: bool,
}

/// Query of a page's values.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FactsQuery {
    /// Most values, 1..=1000 (default 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

fn check_limit(limit: Option<i64>, default: i64) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::unprocessable(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    Ok(limit)
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| {
            let pair = s.get(i..i + 2)?;
            if !pair
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return None;
            }
            u8::from_str_radix(pair, 16).ok()
        })
        .collect();
    // Any position is a position: text that is not UTF-8 (or holds NUL, which Postgres
    // cannot compare) is read as near as it can be, so every cursor the pattern allows works.
    Some(String::from_utf8_lossy(&bytes?).replace('\0', "\u{1}"))
}

/// The cursor after `(entity, record_key)`: both as hex, joined by `-`.
pub fn encode_cursor(entity: &str, record_key: &str) -> String {
    format!("{}-{}", hex(entity), hex(record_key))
}

/// The `(entity, record_key)` a cursor names.
pub fn decode_cursor(cursor: &str) -> Result<(String, String), ApiError> {
    let bad = || {
        ApiError::unprocessable(format!(
            "invalid cursor `{}`: pass the `next_cursor` of a previous page",
            clip(cursor)
        ))
    };
    if cursor.len() > MAX_CURSOR_CHARS {
        return Err(bad());
    }
    let (e, k) = cursor.split_once('-').ok_or_else(bad)?;
    Ok((unhex(e).ok_or_else(bad)?, unhex(k).ok_or_else(bad)?))
}

/// A project's consolidated records, by entity and key, filtered by entity, page and
/// `where` conditions on their grounded values.
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/records", tag = "schemas",
    params(("project" = String, Path, description = "Project id or name"), RecordsQuery, WhereParam),
    responses(
        (status = 200, description = "A page of records", body = RecordsPage),
        (status = 404, description = "No such project", body = ErrorBody),
        (status = 422, description = "A bad `where` (the parser's message), more than 16, `limit` outside 1..=1000, a bad cursor, an `entity` over 200 characters or with NUL, or a `source_id` that is not a UUID", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    ApiPath(project): ApiPath<String>,
    ApiQuery(q): ApiQuery<RecordsQuery>,
    RawQuery(raw): RawQuery,
) -> Result<Json<RecordsPage>, ApiError> {
    let conditions = conditions(raw.as_deref())?;
    let limit = check_limit(q.limit, crate::model::DEFAULT_LIMIT as i64)?;
    if let Some(e) = &q.entity
        && (e.contains('\0') || e.chars().count() > MAX_ENTITY_CHARS)
    {
        return Err(ApiError::unprocessable(format!(
            "entity must be at most {MAX_ENTITY_CHARS} characters without NUL"
        )));
    }
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let p = project_of(&state, &project).await?;
    let rows = facts::records(
        &state.services.db,
        &RecordFilter {
            project_id: p.id,
            entity: q.entity,
            source_id: q.source_id,
            conditions,
            after,
            limit,
        },
    )
    .await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| encode_cursor(&r.entity, &r.record_key)))
        .flatten();
    Ok(Json(RecordsPage {
        records: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// One record with every grounded value and its verbatim quote and page.
#[utoipa::path(
    get, path = "/api/v1/projects/{project}/records/{entity}/{record_key}", tag = "schemas",
    params(
        ("project" = String, Path, description = "Project id or name"),
        ("entity" = String, Path, description = "The record's entity"),
        ("record_key" = String, Path, description = "The record's key"),
    ),
    responses(
        (status = 200, description = "The record and its values", body = RecordDetail),
        (status = 404, description = "No such project, or no grounded value of that record", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn show(
    State(state): State<AppState>,
    ApiPath((project, entity, record_key)): ApiPath<(String, String, String)>,
) -> Result<Json<RecordDetail>, ApiError> {
    let p = project_of(&state, &project).await?;
    let not_found = || {
        ApiError::not_found(format!(
            "no record `{}` `{}` in project `{}`",
            clip(&entity),
            clip(&record_key),
            clip(&p.name)
        ))
    };
    if entity.contains('\0') || record_key.contains('\0') {
        return Err(not_found());
    }
    let db = &state.services.db;
    let record = facts::record(db, p.id, &entity, &record_key)
        .await?
        .ok_or_else(not_found)?;
    let values = facts::record_facts(db, p.id, &entity, &record_key, MAX_LIMIT).await?;
    if values.is_empty() {
        return Err(not_found());
    }
    Ok(Json(RecordDetail {
        record: record.into(),
        values: values.into_iter().map(Into::into).collect(),
    }))
}

/// The values one page gave, grounded and ungrounded (`grounded` says which), by record and
/// field.
#[utoipa::path(
    get, path = "/api/v1/sources/{id}/facts", tag = "schemas",
    params(("id" = Uuid, Path, description = "Source id"), FactsQuery),
    responses(
        (status = 200, description = "The page's values", body = SourceFacts),
        (status = 404, description = "No such source", body = ErrorBody),
        (status = 422, description = "The id is not a UUID, or `limit` outside 1..=1000", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn source_facts(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<FactsQuery>,
) -> Result<Json<SourceFacts>, ApiError> {
    let limit = check_limit(q.limit, MAX_LIMIT)?;
    let db = &state.services.db;
    sources::get(db, id).await?;
    let rows = facts::source_facts(db, id, limit).await?;
    Ok(Json(SourceFacts {
        source_id: id,
        truncated: rows.len() as i64 == limit,
        facts: rows.into_iter().map(Into::into).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pattern published for `where` accepts exactly what the server accepts, so a
    /// generated "valid" condition is never refused and a refused one is never "valid".
    #[test]
    fn the_documented_where_pattern_says_what_the_server_accepts() {
        let re = regex::Regex::new(&where_pattern()).expect("compiles");
        let values = [
            "",
            " ",
            "x",
            " x",
            "=",
            "==",
            "= ",
            "<",
            "=x",
            "\u{1c}",
            "\u{feff}",
            "\u{a0}a",
            "a\0",
            "10",
            "2024-01-01",
            "é",
        ];
        let ops = [
            "", "=", "!", "!=", "<", "<=", ">", ">=", "==", "<<", "=<", "!<",
        ];
        let fields = [
            "",
            "price",
            "a",
            "A",
            "p rice",
            &"f".repeat(64),
            &"f".repeat(65),
        ];
        for f in fields {
            for op in ops {
                for v in values {
                    let s = format!("{f}{op}{v}");
                    assert_eq!(
                        re.is_match(&s),
                        parse_where(&s).is_ok(),
                        "{s:?}: {:?}",
                        parse_where(&s)
                    );
                }
            }
        }
        let long = format!("a={}", "x".repeat(MAX_CONDITION_CHARS));
        assert!(parse_where(&long).is_err());
        let doc = serde_json::to_value(crate::openapi()).expect("document");
        for path in ["/api/v1/projects/{project}/records", "/api/v1/search"] {
            let param = doc["paths"][path]["get"]["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .find(|p| p["name"] == "where")
                .expect("where")
                .clone();
            assert_eq!(
                param["schema"]["items"]["pattern"],
                where_pattern(),
                "{path}"
            );
            assert_eq!(param["schema"]["maxItems"], MAX_CONDITIONS, "{path}");
        }
    }

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let c = encode_cursor("product", "source:ab-cd é");
        assert_eq!(
            decode_cursor(&c).expect("decodes"),
            ("product".to_owned(), "source:ab-cd é".to_owned())
        );
        for bad in ["", "zz", "ab", "ab-", "-ab", "a-bb", "AB-cd", "ab-cd-ef"] {
            assert!(decode_cursor(bad).is_err(), "{bad:?}");
        }
    }
}
