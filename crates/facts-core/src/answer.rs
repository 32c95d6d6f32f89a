//! The model's side of the `llm` backend: the JSON Schema its answer must follow, the
//! instructions it is given, and the checking of its answer on our side.
//!
//! The answer has one key per record kind: the schema's name holds the top-level record
//! (an object), each entity list's name holds a list of records. A record has one key per
//! field, each `{"value", "quote", "confidence"}`, every one nullable:
//!
//! ```json
//! {"article": {"headline": {"value": "…", "quote": "…", "confidence": 0.9}, "…": {}},
//!  "people": [{"name": {"value": "…", "quote": "…", "confidence": null}}]}
//! ```
//!
//! The JSON Schema is the subset OpenAI's strict structured outputs accept (every object
//! closed with `additionalProperties: false` and listing all its properties in `required`;
//! optional values nullable), so a server that enforces it returns conforming answers. The
//! answer is checked here all the same ([`parse_answer`]): a server may not enforce it.

use serde_json::{Map, Value, json};

use crate::coerce::coerce;
use crate::ground::PageText;
use crate::record::{Dropped, FactValue, Filled, Origin, Record, record_key};
use crate::schema::{Field, FieldType, Schema};

/// The JSON type of one value of a field in the answer.
fn value_schema(field: &Field) -> Value {
    let item = |ty: FieldType| -> Value {
        match ty {
            FieldType::Integer => json!({"type": "integer"}),
            FieldType::Float => json!({"type": "number"}),
            FieldType::Boolean => json!({"type": "boolean"}),
            FieldType::Enum => json!({"type": "string", "enum": field.values}),
            _ => json!({"type": "string"}),
        }
    };
    if field.is_list() {
        json!({"type": ["array", "null"], "items": item(field.value_type())})
    } else {
        let mut v = item(field.ty);
        if let Some(t) = v.get("type").cloned() {
            v["type"] = json!([t, "null"]);
        }
        if let Some(Value::Array(values)) = v.get_mut("enum") {
            values.push(Value::Null);
        }
        v
    }
}

fn record_schema(fields: &indexmap::IndexMap<String, Field>) -> Value {
    let mut props = Map::new();
    for (name, field) in fields {
        let mut value = value_schema(field);
        if let Some(d) = &field.description {
            value["description"] = json!(d);
        }
        props.insert(
            name.clone(),
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["value", "quote", "confidence"],
                "properties": {
                    "value": value,
                    "quote": {"type": ["string", "null"]},
                    "confidence": {"type": ["number", "null"]},
                },
            }),
        );
    }
    let required: Vec<&String> = fields.keys().collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": props,
    })
}

/// The JSON Schema of the answer (see the module documentation for its shape).
pub fn answer_schema(schema: &Schema) -> Value {
    let mut props = Map::new();
    props.insert(schema.name.clone(), record_schema(&schema.fields));
    for (name, list) in &schema.entities {
        let mut s = json!({"type": "array", "items": record_schema(&list.fields)});
        if let Some(d) = &list.description {
            s["description"] = json!(d);
        }
        props.insert(name.clone(), s);
    }
    let mut required = vec![schema.name.clone()];
    required.extend(schema.entities.keys().cloned());
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": props,
    })
}

fn describe_fields(out: &mut String, fields: &indexmap::IndexMap<String, Field>) {
    for (name, f) in fields {
        let ty = match f.ty {
            FieldType::List => format!("list of {}", f.value_type().as_str()),
            t => t.as_str().to_string(),
        };
        out.push_str(&format!("- {name} ({ty}"));
        if f.required {
            out.push_str(", required");
        }
        out.push(')');
        if !f.values.is_empty() {
            out.push_str(&format!(", one of: {}", f.values.join(", ")));
        }
        if let Some(d) = &f.description {
            out.push_str(&format!(": {d}"));
        }
        out.push('\n');
    }
}

/// The system prompt for the model: what to fill, each field's meaning, and the rules on
/// quotes.
pub fn instructions(schema: &Schema) -> String {
    let mut s = String::from(
        "You extract structured facts from the text of one web page (or one part of it).\n\
         Answer with JSON that follows the given schema exactly.\n\n\
         Rules:\n\
         - Use only what the text says. Never guess or use outside knowledge.\n\
         - For every value, \"quote\" must be copied verbatim from the text: the exact \
         characters, same case and punctuation, a short passage that states the value.\n\
         - When the text does not state a field, set its \"value\", \"quote\" and \
         \"confidence\" to null.\n\
         - \"confidence\" is a number from 0 to 1: how sure you are that the value is right.\n\
         - Dates as YYYY-MM-DD (or a full ISO 8601 date-time when the text gives a time).\n\
         - For a list field, \"value\" is a list and \"quote\" one passage that states it.\n\
         - A summary field is written by you; its quote is the passage it summarises.\n\n",
    );
    s.push_str(&format!("Record \"{}\"", schema.name));
    if let Some(d) = &schema.description {
        s.push_str(&format!(" ({d})"));
    }
    s.push_str(": one object with these fields:\n");
    describe_fields(&mut s, &schema.fields);
    for (name, list) in &schema.entities {
        s.push_str(&format!("\nList \"{name}\""));
        if let Some(d) = &list.description {
            s.push_str(&format!(" ({d})"));
        }
        s.push_str(": every one the text mentions (an empty list if none), each with:\n");
        describe_fields(&mut s, &list.fields);
    }
    s
}

/// One way an answer does not follow the schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Violation {
    /// Where, as a JSON path (`article.price.value`, `people[2].name`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Every way an answer does not follow the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Violations(pub Vec<Violation>);

impl std::fmt::Display for Violations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}: {}", v.path, v.message)?;
        }
        Ok(())
    }
}

struct Check<'a> {
    violations: Vec<Violation>,
    dropped: Vec<Dropped>,
    page: &'a PageText,
    chunk_index: Option<i32>,
}

impl Check<'_> {
    fn violation(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.violations.push(Violation {
            path: path.into(),
            message: message.into(),
        });
    }

    fn record(
        &mut self,
        v: &Value,
        path: &str,
        prefix: &str,
        fields: &indexmap::IndexMap<String, Field>,
    ) -> Vec<FactValue> {
        let mut out = Vec::new();
        let Value::Object(map) = v else {
            self.violation(path, format!("expected an object, found {}", json_kind(v)));
            return out;
        };
        for k in map.keys() {
            if !fields.contains_key(k) {
                self.violation(format!("{path}.{k}"), "unknown field");
            }
        }
        for (name, field) in fields {
            let fpath = format!("{path}.{name}");
            match map.get(name) {
                None => self.violation(&fpath, "missing"),
                Some(fv) => self.field(
                    fv,
                    &fpath,
                    &format!("{prefix}{name}"),
                    name,
                    field,
                    &mut out,
                ),
            }
        }
        out
    }

    fn field(
        &mut self,
        v: &Value,
        path: &str,
        dropped_name: &str,
        name: &str,
        field: &Field,
        out: &mut Vec<FactValue>,
    ) {
        let Value::Object(m) = v else {
            self.violation(
                path,
                format!(
                    "expected an object with value, quote and confidence, found {}",
                    json_kind(v)
                ),
            );
            return;
        };
        for k in m.keys() {
            if !matches!(k.as_str(), "value" | "quote" | "confidence") {
                self.violation(format!("{path}.{k}"), "unknown key");
            }
        }
        let quote = match m.get("quote") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                self.violation(
                    format!("{path}.quote"),
                    format!("expected a string or null, found {}", json_kind(other)),
                );
                return;
            }
        };
        let confidence = match m.get("confidence") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|c| (0.0..=1.0).contains(c))
                .map(|c| c as f32),
            Some(other) => {
                self.violation(
                    format!("{path}.confidence"),
                    format!("expected a number or null, found {}", json_kind(other)),
                );
                return;
            }
        };
        let raw = match m.get("value") {
            None | Some(Value::Null) => return,
            Some(v) => v,
        };
        let items: Vec<&Value> = if field.is_list() {
            match raw {
                Value::Array(a) => a.iter().collect(),
                other => {
                    self.violation(
                        format!("{path}.value"),
                        format!("expected a list or null, found {}", json_kind(other)),
                    );
                    return;
                }
            }
        } else {
            vec![raw]
        };
        let grounded = self.page.contains(&quote);
        for (i, item) in items.into_iter().enumerate() {
            let vpath = if field.is_list() {
                format!("{path}.value[{i}]")
            } else {
                format!("{path}.value")
            };
            if item.is_null() {
                continue;
            }
            if let Some(msg) = type_mismatch(field, item) {
                self.violation(vpath, msg);
                continue;
            }
            match coerce(field, item, None) {
                Ok(value) => {
                    if out.iter().any(|v| v.field == name && v.value == value) {
                        continue;
                    }
                    out.push(FactValue {
                        field: name.to_string(),
                        value,
                        list_item: field.is_list(),
                        quote: quote.clone(),
                        origin: Origin::Model,
                        chunk_index: self.chunk_index,
                        confidence,
                        grounded,
                    })
                }
                Err(reason) => self.dropped.push(Dropped {
                    field: dropped_name.to_string(),
                    reason,
                }),
            }
        }
    }
}

/// The JSON type the answer must use for one value; `None` when `v` has it. Strings that
/// do not parse as the field's type (a date, a URL) are not violations but dropped values.
fn type_mismatch(field: &Field, v: &Value) -> Option<String> {
    let ok = match field.value_type() {
        FieldType::Integer => {
            v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        FieldType::Float => v.is_number(),
        FieldType::Boolean => v.is_boolean(),
        FieldType::Enum => {
            return match v.as_str() {
                Some(s) if field.values.iter().any(|x| x == s) => None,
                Some(s) => Some(format!("{s:?} is not one of: {}", field.values.join(", "))),
                None => Some(format!("expected a string, found {}", json_kind(v))),
            };
        }
        _ => v.is_string(),
    };
    (!ok).then(|| {
        let want = match field.value_type() {
            FieldType::Integer => "an integer",
            FieldType::Float => "a number",
            FieldType::Boolean => "a boolean",
            _ => "a string",
        };
        format!("expected {want}, found {}", json_kind(v))
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Checks a model's answer against the schema and turns it into records.
///
/// Every value is coerced to its field's type (a string that is no date is dropped and
/// reported, not a violation); each gets `origin = model`, `chunk_index`, the confidence
/// when it is within 0..=1, and `grounded` = whether its quote occurs in `page` (see
/// [`crate::ground`]). An ungrounded value is kept, for the caller to count, and must never
/// be presented as a fact. The top-level record comes first even when it has no values.
///
/// # Errors
/// [`Violations`] listing every place the answer does not follow [`answer_schema`]: a
/// missing or unknown key, a value of the wrong JSON type, an enum value not declared.
pub fn parse_answer(
    schema: &Schema,
    answer: &Value,
    chunk_index: Option<i32>,
    page: &PageText,
) -> Result<Filled, Violations> {
    let mut check = Check {
        violations: Vec::new(),
        dropped: Vec::new(),
        page,
        chunk_index,
    };
    let Value::Object(root) = answer else {
        return Err(Violations(vec![Violation {
            path: "$".into(),
            message: format!("expected an object, found {}", json_kind(answer)),
        }]));
    };
    for k in root.keys() {
        if *k != schema.name && !schema.entities.contains_key(k) {
            check.violation(k.clone(), "unknown record or entity list");
        }
    }
    let mut records = Vec::new();
    match root.get(&schema.name) {
        None => check.violation(schema.name.clone(), "missing"),
        Some(v) => {
            let values = check.record(v, &schema.name, "", &schema.fields);
            records.push(Record {
                entity: schema.name.clone(),
                key: record_key(&schema.key, &values),
                values,
            });
        }
    }
    for (name, list) in &schema.entities {
        match root.get(name) {
            None => check.violation(name.clone(), "missing"),
            Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let values = check.record(
                        item,
                        &format!("{name}[{i}]"),
                        &format!("{name}."),
                        &list.fields,
                    );
                    if values.is_empty() {
                        continue;
                    }
                    if let Some((f, _)) = list
                        .fields
                        .iter()
                        .find(|(f, fd)| fd.required && !values.iter().any(|v| &v.field == *f))
                    {
                        check.dropped.push(Dropped {
                            field: format!("{name}.{f}"),
                            reason: "required field missing: record dropped".into(),
                        });
                        continue;
                    }
                    records.push(Record {
                        entity: name.clone(),
                        key: record_key(&list.key, &values),
                        values,
                    });
                }
            }
            Some(other) => check.violation(
                name.clone(),
                format!("expected a list, found {}", json_kind(other)),
            ),
        }
    }
    if !check.violations.is_empty() {
        return Err(Violations(check.violations));
    }
    Ok(Filled {
        records,
        dropped: check.dropped,
    })
}

#[cfg(test)]
mod tests;
