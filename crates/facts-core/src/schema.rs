//! The extraction schema: what a project wants to know about each page. Written as YAML or
//! JSON (the crate README is the format reference), validated as a whole so a user sees
//! every mistake at once, and stored as canonical JSON ([`Schema::to_json`]).
//!
//! Parsing goes through a generic JSON value first and is checked by hand rather than by
//! serde's derive: derive stops at the first error and names it in serde's words, while a
//! user editing a schema needs every error, each with the path of the key it is about.

use std::fmt;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Largest schema text accepted, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 256 * 1024;
/// Most fields in one schema, the top-level record's and every entity list's together.
pub const MAX_FIELDS: usize = 200;
/// Most entity lists in one schema.
pub const MAX_ENTITY_LISTS: usize = 32;
/// Longest description (of the schema, an entity list or a field), in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;
/// Most `from` rules on one field.
pub const MAX_RULES_PER_FIELD: usize = 16;
/// Most values of one enum field.
pub const MAX_ENUM_VALUES: usize = 100;
/// Longest name (schema, entity list, field), in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest rule argument (a property, a selector, a pattern), in characters.
pub const MAX_RULE_CHARS: usize = 1_000;

/// Which backend fills the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// What the page declares: JSON-LD, microdata, RDFa, OpenGraph and meta tags, and the
    /// schema's selector and pattern rules. Deterministic, no model.
    #[default]
    Markup,
    /// A language model reads the page's text and answers with quotes.
    Llm,
}

impl Backend {
    /// The name used in schemas.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Markup => "markup",
            Self::Llm => "llm",
        }
    }
}

/// The type of a field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// A string, whitespace collapsed.
    Text,
    /// A whole number (`"1,299"` reads as 1299).
    Integer,
    /// A number (`"$1,299.00"` reads as 1299.0).
    Float,
    /// `true`/`yes`/`1`/`on` or `false`/`no`/`0`/`off` (and schema.org's `True`/`False`).
    Boolean,
    /// One of the field's declared `values`, matched case-insensitively.
    Enum,
    /// Many values of the field's `items` type.
    List,
    /// Written by the model (the `llm` backend only), never read from markup.
    Summary,
    /// A date (`YYYY-MM-DD`) or date-time (RFC 3339).
    Date,
    /// An absolute http(s) URL (relative ones resolve against the page's URL).
    Url,
}

impl FieldType {
    /// Every type, in the order error messages list them.
    pub const ALL: [FieldType; 9] = [
        Self::Text,
        Self::Integer,
        Self::Float,
        Self::Boolean,
        Self::Enum,
        Self::List,
        Self::Summary,
        Self::Date,
        Self::Url,
    ];

    /// The name used in schemas.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Integer => "integer",
            Self::Float => "float",
            Self::Boolean => "boolean",
            Self::Enum => "enum",
            Self::List => "list",
            Self::Summary => "summary",
            Self::Date => "date",
            Self::Url => "url",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether a list may hold values of this type (everything but lists and summaries;
    /// an enum list takes the field's `values`).
    pub fn is_list_item(self) -> bool {
        !matches!(self, Self::List | Self::Summary)
    }
}

/// Where the markup backend looks for a field's value. Rules are tried in order and the
/// first that yields a value fills the field (for a list field: all values of that rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "RuleRepr", try_from = "RuleRepr")]
pub enum Rule {
    /// A schema.org property of the record's item (JSON-LD, then microdata, then RDFa);
    /// dots walk into nested items (`address.addressLocality`).
    Schema(String),
    /// A `<meta>` tag by `name` or `property` (`og:title`, `article:published_time`,
    /// `twitter:title`, `description`, `author`, `keywords`...), case-insensitive.
    Meta(String),
    /// Elements matching a CSS selector: the attribute's value if one is named, else the
    /// element's text.
    Selector {
        /// The CSS selector.
        selector: String,
        /// The attribute to read instead of the text.
        attribute: Option<String>,
    },
    /// A regular expression over the page's visible text; its one capture group is the
    /// value.
    Pattern(String),
    /// The `lang` attribute of `<html>`.
    Lang,
    /// The text of `<title>`.
    Title,
}

/// How a rule is written: a map with one of the rule keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    meta: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lang: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title: Option<bool>,
}

impl From<Rule> for RuleRepr {
    fn from(r: Rule) -> Self {
        let mut out = RuleRepr::default();
        match r {
            Rule::Schema(p) => out.schema = Some(p),
            Rule::Meta(m) => out.meta = Some(m),
            Rule::Selector {
                selector,
                attribute,
            } => {
                out.selector = Some(selector);
                out.attribute = attribute;
            }
            Rule::Pattern(p) => out.pattern = Some(p),
            Rule::Lang => out.lang = Some(true),
            Rule::Title => out.title = Some(true),
        }
        out
    }
}

impl TryFrom<RuleRepr> for Rule {
    type Error = String;

    fn try_from(r: RuleRepr) -> Result<Self, String> {
        let v = serde_json::to_value(&r).map_err(|e| e.to_string())?;
        let mut errors = Errors(Vec::new());
        let rule = rule_from_value(&v, "rule", &mut errors);
        match (rule, errors.0.first()) {
            (Some(rule), None) => Ok(rule),
            (_, Some(e)) => Err(e.to_string()),
            (None, None) => Err("invalid rule".into()),
        }
    }
}

/// One field of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// The type of its values.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// A record of an entity list without this field is dropped; a top-level record
    /// without it is kept and the absence reported.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// What the field means (shown to the model, and to users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The allowed values of an `enum` field (or of a list of enums).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// The type of a `list` field's items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<FieldType>,
    /// Where the markup backend looks. Empty: the schema.org property named like the field
    /// in camelCase (`date_posted` reads `datePosted`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<Rule>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Field {
    /// The type of one value: the item type of a list, else the field's type.
    pub fn value_type(&self) -> FieldType {
        match self.ty {
            FieldType::List => self.items.unwrap_or(FieldType::Text),
            t => t,
        }
    }

    /// Whether the field holds many values.
    pub fn is_list(&self) -> bool {
        self.ty == FieldType::List
    }

    /// The rules the markup backend applies: the declared ones, or the default one.
    pub fn rules(&self, name: &str) -> Vec<Rule> {
        if self.from.is_empty() && self.ty != FieldType::Summary {
            vec![Rule::Schema(camel_case(name))]
        } else {
            self.from.clone()
        }
    }
}

/// `date_posted` → `datePosted`.
pub fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A list of records of one kind found on a page (a company's people, a product's offers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityList {
    /// What the list holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// schema.org types whose items are records of this list (markup backend).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Fields that identify a record across pages; empty: each record is its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
    /// The fields of each record.
    pub fields: IndexMap<String, Field>,
}

/// An extraction schema. See the crate README for the format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// The top-level record's entity name.
    pub name: String,
    /// What the schema is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which backend fills it.
    #[serde(default)]
    pub backend: Backend,
    /// schema.org types whose item fills the top-level record (markup backend).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Fields that identify the top-level record across pages; empty: one record per page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
    /// The top-level record's fields.
    pub fields: IndexMap<String, Field>,
    /// Entity lists, by name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub entities: IndexMap<String, EntityList>,
}

/// One problem in a schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaError {
    /// Where: `fields.price.type`, `entities.plans.key[0]`; empty for the whole text.
    pub path: String,
    /// What is wrong, as a sentence fragment.
    pub message: String,
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a schema, in the order of the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct SchemaErrors(pub Vec<SchemaError>);

impl fmt::Display for SchemaErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl SchemaErrors {
    /// Whether any error is at `path` and its message contains `needle` (for tests and
    /// for callers that map errors to form fields).
    pub fn has(&self, path: &str, needle: &str) -> bool {
        self.0
            .iter()
            .any(|e| e.path == path && e.message.contains(needle))
    }
}

struct Errors(Vec<SchemaError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        // One line per error: multi-line messages (a regex error's caret diagram) are
        // joined.
        let message: String = message.into();
        let message = message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        self.0.push(SchemaError {
            path: path.into(),
            message,
        });
    }
}

impl Schema {
    /// Parses and validates a schema written as YAML or JSON (JSON when the text starts
    /// with `{` after whitespace).
    ///
    /// # Errors
    /// Every problem found, each with the path of the key it is about.
    pub fn parse(text: &str) -> Result<Schema, SchemaErrors> {
        let mut errors = Errors(Vec::new());
        if text.len() > MAX_SCHEMA_BYTES {
            errors.push(
                "",
                format!(
                    "the schema is {} bytes, over the limit of {MAX_SCHEMA_BYTES}",
                    text.len()
                ),
            );
            return Err(SchemaErrors(errors.0));
        }
        let value: Value = if text.trim_start().starts_with('{') {
            match serde_json::from_str(text) {
                Ok(v) => v,
                Err(e) => {
                    errors.push("", format!("invalid JSON: {e}"));
                    return Err(SchemaErrors(errors.0));
                }
            }
        } else {
            match yaml_serde::from_str(text) {
                Ok(v) => v,
                Err(e) => {
                    errors.push("", format!("invalid YAML: {e}"));
                    return Err(SchemaErrors(errors.0));
                }
            }
        };
        let mut schema = schema_from_value(&value, &mut errors);
        if let Some(s) = schema.as_mut() {
            restore_order(s, text);
        }
        match schema {
            Some(s) if errors.0.is_empty() => Ok(s),
            _ => Err(SchemaErrors(errors.0)),
        }
    }

    /// The schema as canonical JSON, for storage; [`Schema::parse`] reads it back.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The fields of an entity: the schema's own name gives the top-level fields.
    pub fn fields_of(&self, entity: &str) -> Option<&IndexMap<String, Field>> {
        if entity == self.name {
            Some(&self.fields)
        } else {
            self.entities.get(entity).map(|e| &e.fields)
        }
    }

    /// The key fields of an entity.
    pub fn key_of(&self, entity: &str) -> &[String] {
        if entity == self.name {
            &self.key
        } else {
            self.entities.get(entity).map_or(&[], |e| &e.key)
        }
    }
}

/// Where the text puts each field and entity list. The generic JSON value the schema is
/// checked on keeps its maps sorted, so the order users wrote (which the answer schema and
/// the instructions follow) is read again here, leniently: a text too broken for this is
/// rejected anyway.
#[derive(Deserialize)]
struct Order {
    #[serde(default)]
    fields: Option<IndexMap<String, serde::de::IgnoredAny>>,
    #[serde(default)]
    entities: Option<IndexMap<String, OrderList>>,
}

#[derive(Deserialize)]
struct OrderList {
    #[serde(default)]
    fields: Option<IndexMap<String, serde::de::IgnoredAny>>,
}

fn restore_order(schema: &mut Schema, text: &str) {
    let order: Option<Order> = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).ok()
    } else {
        yaml_serde::from_str(text).ok()
    };
    let Some(order) = order else { return };
    let by = |wanted: &IndexMap<String, serde::de::IgnoredAny>, k: &String| {
        wanted.get_index_of(k).unwrap_or(usize::MAX)
    };
    if let Some(f) = &order.fields {
        schema.fields.sort_by_cached_key(|k, _| by(f, k));
    }
    if let Some(e) = &order.entities {
        schema
            .entities
            .sort_by_cached_key(|k, _| e.get_index_of(k).unwrap_or(usize::MAX));
        for (name, list) in schema.entities.iter_mut() {
            if let Some(f) = e.get(name).and_then(|l| l.fields.as_ref()) {
                list.fields.sort_by_cached_key(|k, _| by(f, k));
            }
        }
    }
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.chars().count() <= MAX_NAME_CHARS
}

fn check_name(name: &str, path: &str, what: &str, errors: &mut Errors) {
    if !valid_name(name) {
        errors.push(
            path,
            format!(
                "{what} {name:?} must match [a-z][a-z0-9_]* (at most {MAX_NAME_CHARS} characters)"
            ),
        );
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn as_map<'v>(v: &'v Value, path: &str, errors: &mut Errors) -> Option<&'v Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        other => {
            errors.push(path, format!("expected a map, found {}", kind_of(other)));
            None
        }
    }
}

fn unknown_keys(map: &Map<String, Value>, allowed: &[&str], path: &str, errors: &mut Errors) {
    for k in map.keys() {
        if !allowed.contains(&k.as_str()) {
            errors.push(
                join(path, k),
                format!(
                    "unknown key {k:?} (expected one of: {})",
                    allowed.join(", ")
                ),
            );
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn string_at(
    map: &Map<String, Value>,
    key: &str,
    path: &str,
    errors: &mut Errors,
) -> Option<String> {
    match map.get(key)? {
        Value::String(s) => Some(s.clone()),
        other => {
            errors.push(
                join(path, key),
                format!("expected a string, found {}", kind_of(other)),
            );
            None
        }
    }
}

fn description_at(map: &Map<String, Value>, path: &str, errors: &mut Errors) -> Option<String> {
    let d = string_at(map, "description", path, errors)?;
    let n = d.chars().count();
    if n > MAX_DESCRIPTION_CHARS {
        errors.push(
            join(path, "description"),
            format!("{n} characters, over the limit of {MAX_DESCRIPTION_CHARS}"),
        );
    }
    Some(d)
}

fn strings_at(map: &Map<String, Value>, key: &str, path: &str, errors: &mut Errors) -> Vec<String> {
    match map.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v {
                Value::String(s) => Some(s.clone()),
                other => {
                    errors.push(
                        format!("{}[{i}]", join(path, key)),
                        format!("expected a string, found {}", kind_of(other)),
                    );
                    None
                }
            })
            .collect(),
        Some(other) => {
            errors.push(
                join(path, key),
                format!("expected a list of strings, found {}", kind_of(other)),
            );
            Vec::new()
        }
    }
}

fn schema_from_value(v: &Value, errors: &mut Errors) -> Option<Schema> {
    let map = as_map(v, "", errors)?;
    unknown_keys(
        map,
        &[
            "name",
            "description",
            "backend",
            "types",
            "key",
            "fields",
            "entities",
        ],
        "",
        errors,
    );
    let name = match string_at(map, "name", "", errors) {
        Some(n) => {
            check_name(&n, "name", "the schema name", errors);
            n
        }
        None => {
            if !map.contains_key("name") {
                errors.push("name", "missing: every schema needs a name");
            }
            String::new()
        }
    };
    let description = description_at(map, "", errors);
    let backend = match map.get("backend") {
        None | Some(Value::Null) => Backend::Markup,
        Some(Value::String(s)) if s == "markup" => Backend::Markup,
        Some(Value::String(s)) if s == "llm" => Backend::Llm,
        Some(other) => {
            errors.push(
                "backend",
                format!(
                    "unknown backend {} (expected one of: markup, llm)",
                    short(other)
                ),
            );
            Backend::Markup
        }
    };
    let types = strings_at(map, "types", "", errors);
    let key = strings_at(map, "key", "", errors);
    let mut total_fields = 0usize;
    let fields = match map.get("fields") {
        Some(f) => fields_from_value(f, "fields", backend, &mut total_fields, errors),
        None => {
            errors.push("fields", "missing: a schema needs at least one field");
            IndexMap::new()
        }
    };
    check_key(&key, &fields, "key", &name, errors);
    let mut entities = IndexMap::new();
    if let Some(e) = map.get("entities").filter(|e| !e.is_null())
        && let Some(emap) = as_map(e, "entities", errors)
    {
        if emap.len() > MAX_ENTITY_LISTS {
            errors.push(
                "entities",
                format!(
                    "{} entity lists, over the limit of {MAX_ENTITY_LISTS}",
                    emap.len()
                ),
            );
        }
        for (ename, ev) in emap {
            let path = format!("entities.{ename}");
            check_name(ename, &path, "the entity list name", errors);
            if *ename == name {
                errors.push(
                    &path,
                    format!("an entity list cannot have the schema's own name {name:?}"),
                );
            }
            if let Some(list) =
                entity_from_value(ev, &path, ename, backend, &mut total_fields, errors)
            {
                entities.insert(ename.clone(), list);
            }
        }
    }
    if total_fields > MAX_FIELDS {
        errors.push(
            "fields",
            format!("{total_fields} fields in all, over the limit of {MAX_FIELDS}"),
        );
    }
    Some(Schema {
        name,
        description,
        backend,
        types,
        key,
        fields,
        entities,
    })
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

fn check_key(
    key: &[String],
    fields: &IndexMap<String, Field>,
    path: &str,
    entity: &str,
    errors: &mut Errors,
) {
    for (i, k) in key.iter().enumerate() {
        match fields.get(k) {
            None => errors.push(
                format!("{path}[{i}]"),
                format!("{k:?} is not a field of {entity}"),
            ),
            Some(f) if matches!(f.ty, FieldType::List | FieldType::Summary) => errors.push(
                format!("{path}[{i}]"),
                format!(
                    "{k:?} is a {} field and cannot be part of a key",
                    f.ty.as_str()
                ),
            ),
            Some(_) => {}
        }
    }
}

fn entity_from_value(
    v: &Value,
    path: &str,
    name: &str,
    backend: Backend,
    total: &mut usize,
    errors: &mut Errors,
) -> Option<EntityList> {
    let map = as_map(v, path, errors)?;
    unknown_keys(
        map,
        &["description", "types", "key", "fields"],
        path,
        errors,
    );
    let description = description_at(map, path, errors);
    let types = strings_at(map, "types", path, errors);
    let key = strings_at(map, "key", path, errors);
    let fpath = join(path, "fields");
    let fields = match map.get("fields") {
        Some(f) => fields_from_value(f, &fpath, backend, total, errors),
        None => {
            errors.push(&fpath, "missing: an entity list needs at least one field");
            IndexMap::new()
        }
    };
    check_key(&key, &fields, &join(path, "key"), name, errors);
    // Records of a list are items of the page's markup: only their own properties can be
    // read (a meta tag or a selector belongs to the whole page, not to one item).
    for (fname, field) in &fields {
        for (i, rule) in field.from.iter().enumerate() {
            if !matches!(rule, Rule::Schema(_)) {
                errors.push(
                    format!("{fpath}.{fname}.from[{i}]"),
                    "fields of an entity list can only have schema rules",
                );
            }
        }
    }
    Some(EntityList {
        description,
        types,
        key,
        fields,
    })
}

fn fields_from_value(
    v: &Value,
    path: &str,
    backend: Backend,
    total: &mut usize,
    errors: &mut Errors,
) -> IndexMap<String, Field> {
    let mut out = IndexMap::new();
    let Some(map) = as_map(v, path, errors) else {
        return out;
    };
    if map.is_empty() {
        errors.push(path, "at least one field is needed");
    }
    for (name, fv) in map {
        *total += 1;
        let fpath = format!("{path}.{name}");
        check_name(name, &fpath, "the field name", errors);
        if let Some(f) = field_from_value(fv, &fpath, backend, errors) {
            out.insert(name.clone(), f);
        }
    }
    out
}

fn type_named(v: Option<&Value>, path: &str, errors: &mut Errors) -> Option<FieldType> {
    let expected = FieldType::ALL.map(FieldType::as_str).join(", ");
    match v {
        None => {
            errors.push(path, format!("missing (expected one of: {expected})"));
            None
        }
        Some(Value::String(s)) => match FieldType::from_name(s) {
            Some(t) => Some(t),
            None => {
                errors.push(
                    path,
                    format!("unknown type {s:?} (expected one of: {expected})"),
                );
                None
            }
        },
        Some(other) => {
            errors.push(
                path,
                format!("expected a type name, found {}", kind_of(other)),
            );
            None
        }
    }
}

fn field_from_value(v: &Value, path: &str, backend: Backend, errors: &mut Errors) -> Option<Field> {
    // `price: float` is shorthand for `price: {type: float}`.
    let owned;
    let map = match v {
        Value::String(_) => {
            let mut m = Map::new();
            m.insert("type".into(), v.clone());
            owned = m;
            &owned
        }
        other => as_map(other, path, errors)?,
    };
    unknown_keys(
        map,
        &["type", "required", "description", "values", "items", "from"],
        path,
        errors,
    );
    let ty = type_named(map.get("type"), &join(path, "type"), errors);
    let required = match map.get("required") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            errors.push(
                join(path, "required"),
                format!("expected true or false, found {}", kind_of(other)),
            );
            false
        }
    };
    let description = description_at(map, path, errors);
    let items = match map.get("items") {
        None | Some(Value::Null) => None,
        some => {
            let t = type_named(some, &join(path, "items"), errors);
            if let Some(t) = t
                && !t.is_list_item()
            {
                errors.push(
                    join(path, "items"),
                    format!("a list cannot hold {} values", t.as_str()),
                );
            }
            t
        }
    };
    let values = strings_at(map, "values", path, errors);
    let from = match map.get("from") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(rules)) => {
            if rules.len() > MAX_RULES_PER_FIELD {
                errors.push(
                    join(path, "from"),
                    format!(
                        "{} rules, over the limit of {MAX_RULES_PER_FIELD}",
                        rules.len()
                    ),
                );
            }
            rules
                .iter()
                .enumerate()
                .filter_map(|(i, r)| rule_from_value(r, &format!("{path}.from[{i}]"), errors))
                .collect()
        }
        Some(other) => {
            errors.push(
                join(path, "from"),
                format!("expected a list of rules, found {}", kind_of(other)),
            );
            Vec::new()
        }
    };
    let ty = ty?;
    let enum_like =
        ty == FieldType::Enum || (ty == FieldType::List && items == Some(FieldType::Enum));
    if enum_like {
        if values.is_empty() {
            errors.push(join(path, "values"), "an enum needs at least one value");
        } else if values.len() > MAX_ENUM_VALUES {
            errors.push(
                join(path, "values"),
                format!(
                    "{} values, over the limit of {MAX_ENUM_VALUES}",
                    values.len()
                ),
            );
        }
        for (i, v) in values.iter().enumerate() {
            if v.trim().is_empty() {
                errors.push(
                    format!("{path}.values[{i}]"),
                    "an enum value cannot be empty",
                );
            }
        }
    } else if map.contains_key("values") {
        errors.push(
            join(path, "values"),
            format!(
                "only enum fields have values (this is a {} field)",
                ty.as_str()
            ),
        );
    }
    if ty == FieldType::List && items.is_none() && !map.contains_key("items") {
        errors.push(
            join(path, "items"),
            "missing: a list needs the type of its items",
        );
    }
    if ty != FieldType::List && map.contains_key("items") {
        errors.push(
            join(path, "items"),
            format!(
                "only list fields have items (this is a {} field)",
                ty.as_str()
            ),
        );
    }
    if ty == FieldType::Summary {
        if map.contains_key("from") {
            errors.push(
                join(path, "from"),
                "a summary field is written by the model and cannot have from rules",
            );
        }
        if backend == Backend::Markup {
            errors.push(
                join(path, "type"),
                "summary fields need the llm backend (backend: llm)",
            );
        }
    }
    Some(Field {
        ty,
        required,
        description,
        values,
        items,
        from,
    })
}

const RULE_KEYS: &[&str] = &["schema", "meta", "selector", "pattern", "lang", "title"];

fn rule_from_value(v: &Value, path: &str, errors: &mut Errors) -> Option<Rule> {
    let map = as_map(v, path, errors)?;
    let mut allowed: Vec<&str> = RULE_KEYS.to_vec();
    allowed.push("attribute");
    unknown_keys(map, &allowed, path, errors);
    let present: Vec<&str> = RULE_KEYS
        .iter()
        .copied()
        .filter(|k| map.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    if present.len() != 1 {
        errors.push(
            path,
            format!(
                "a rule has exactly one of: {} (found {})",
                RULE_KEYS.join(", "),
                if present.is_empty() {
                    "none".to_string()
                } else {
                    present.join(", ")
                }
            ),
        );
        return None;
    }
    let kind = present[0];
    if map.contains_key("attribute") && kind != "selector" {
        errors.push(
            join(path, "attribute"),
            "only selector rules take an attribute",
        );
    }
    let arg = |errors: &mut Errors| -> Option<String> {
        let s = string_at(map, kind, path, errors)?;
        if s.trim().is_empty() {
            errors.push(join(path, kind), "cannot be empty");
            return None;
        }
        if s.chars().count() > MAX_RULE_CHARS {
            errors.push(
                join(path, kind),
                format!("longer than {MAX_RULE_CHARS} characters"),
            );
            return None;
        }
        Some(s)
    };
    match kind {
        "schema" => {
            let p = arg(errors)?;
            if p.split('.')
                .any(|s| s.trim().is_empty() || s.contains(char::is_whitespace))
            {
                errors.push(
                    join(path, "schema"),
                    format!("{p:?} is not a property path (names separated by dots)"),
                );
                return None;
            }
            Some(Rule::Schema(p))
        }
        "meta" => arg(errors).map(|m| Rule::Meta(m.trim().to_string())),
        "selector" => {
            let s = arg(errors)?;
            if let Err(e) = dom_query::Matcher::new(&s) {
                errors.push(
                    join(path, "selector"),
                    format!("invalid CSS selector: {e:?}"),
                );
                return None;
            }
            let attribute = string_at(map, "attribute", path, errors);
            Some(Rule::Selector {
                selector: s,
                attribute,
            })
        }
        "pattern" => {
            let p = arg(errors)?;
            match regex::RegexBuilder::new(&p).size_limit(1 << 20).build() {
                Err(e) => {
                    errors.push(join(path, "pattern"), format!("invalid regex: {e}"));
                    None
                }
                Ok(re) if re.captures_len() != 2 => {
                    errors.push(
                        join(path, "pattern"),
                        format!(
                            "must have exactly one capture group (found {})",
                            re.captures_len() - 1
                        ),
                    );
                    None
                }
                Ok(_) => Some(Rule::Pattern(p)),
            }
        }
        "lang" | "title" => match map.get(kind) {
            Some(Value::Bool(true)) => Some(if kind == "lang" {
                Rule::Lang
            } else {
                Rule::Title
            }),
            _ => {
                errors.push(join(path, kind), "expected true");
                None
            }
        },
        _ => None,
    }
}

/// Compiles a pattern rule's regex with the limit [`Schema::parse`] checked it under.
pub(crate) fn compile_pattern(p: &str) -> Option<regex::Regex> {
    regex::RegexBuilder::new(p).size_limit(1 << 20).build().ok()
}

#[cfg(test)]
mod tests;
