use super::*;

const GOOD: &str = r#"
name: pricing
description: Pricing pages
types: [Product]
key: [name]
fields:
  name: {type: text, required: true, from: [{schema: name}, {meta: "og:title"}, {selector: "h1"}]}
  published: {type: date, from: [{selector: "time", attribute: datetime}]}
  topics: {type: list, items: text}
  kind: {type: enum, values: [news, opinion]}
  seats: integer
  code: {type: text, from: [{pattern: "Code: ([A-Z0-9]+)"}, {lang: true}, {title: true}]}
entities:
  plans:
    description: Pricing plans
    types: [Offer]
    key: [name]
    fields: { name: {type: text, required: true}, price: {type: float}, currency: {type: text} }
"#;

fn errors(text: &str) -> SchemaErrors {
    match Schema::parse(text) {
        Ok(s) => panic!("expected errors, parsed {s:?}"),
        Err(e) => e,
    }
}

#[test]
fn a_valid_schema_parses_and_round_trips_through_json() {
    let s = Schema::parse(GOOD).unwrap();
    assert_eq!(s.name, "pricing");
    assert_eq!(s.backend, Backend::Markup);
    assert_eq!(s.fields.keys().next().map(String::as_str), Some("name"));
    assert_eq!(s.fields["seats"].ty, FieldType::Integer);
    assert_eq!(
        s.fields["published"].from,
        vec![Rule::Selector {
            selector: "time".into(),
            attribute: Some("datetime".into())
        }]
    );
    assert_eq!(
        s.fields["topics"].rules("topics"),
        vec![Rule::Schema("topics".into())]
    );
    assert_eq!(camel_case("date_posted"), "datePosted");
    let json = s.to_json();
    assert_eq!(
        json["fields"]["code"]["from"][1],
        serde_json::json!({"lang": true})
    );
    assert_eq!(Schema::parse(&json.to_string()).unwrap(), s);
    let back: Schema = serde_json::from_value(json).unwrap();
    assert_eq!(back, s);
}

#[test]
fn json_is_detected_by_its_brace() {
    let s = Schema::parse(r#"  {"name": "x", "fields": {"a": {"type": "text"}}}"#).unwrap();
    assert_eq!(s.fields.len(), 1);
    let e = errors(r#"{"name": "x", "fields": "#);
    assert!(e.0[0].message.starts_with("invalid JSON"), "{e}");
    let e = errors("name: [unclosed\n");
    assert!(e.0[0].message.starts_with("invalid YAML"), "{e}");
}

#[test]
fn every_error_is_reported_with_its_path() {
    let text = r#"
name: Bad-Name
colour: blue
fields:
  price: {type: money}
  kind: {type: enum, values: []}
  x:
    type: text
    from:
      - {schema: name}
      - {pattern: "([a-z"}
      - {pattern: "no group"}
      - {selector: "h1[", attribute: href}
      - {meta: a, pattern: "(b)"}
      - {meta: a, attribute: content}
      - {shout: yes}
  s: {type: summary, from: [{schema: x}]}
  tags: {type: list}
  Upper: text
  n: {type: integer, required: maybe, valuez: [1]}
key: [sku]
entities:
  plans:
    key: [sku]
    fields: {name: {type: text, from: [{meta: "og:title"}]}}
  bad-name:
    fields: {a: text}
"#;
    let e = errors(text);
    let shown = e.to_string();
    for (path, needle) in [
        ("name", "must match [a-z][a-z0-9_]*"),
        ("colour", "unknown key \"colour\""),
        (
            "fields.price.type",
            "unknown type \"money\" (expected one of: text, integer, float, boolean, enum, list, summary, date, url)",
        ),
        ("fields.kind.values", "an enum needs at least one value"),
        ("fields.x.from[1].pattern", "invalid regex"),
        (
            "fields.x.from[2].pattern",
            "must have exactly one capture group (found 0)",
        ),
        ("fields.x.from[3].selector", "invalid CSS selector"),
        ("fields.x.from[4]", "a rule has exactly one of"),
        (
            "fields.x.from[5].attribute",
            "only selector rules take an attribute",
        ),
        ("fields.x.from[6].shout", "unknown key"),
        ("fields.s.from", "cannot have from rules"),
        ("fields.s.type", "need the llm backend"),
        ("fields.tags.items", "a list needs the type of its items"),
        ("fields.Upper", "the field name \"Upper\" must match"),
        ("fields.n.required", "expected true or false"),
        ("fields.n.valuez", "unknown key"),
        ("key[0]", "\"sku\" is not a field of"),
        ("entities.plans.key[0]", "\"sku\" is not a field of plans"),
        (
            "entities.plans.fields.name.from[0]",
            "only have schema rules",
        ),
        ("entities.bad-name", "must match"),
    ] {
        assert!(e.has(path, needle), "missing {path}: {needle} in\n{shown}");
    }
    // One line per error.
    assert_eq!(shown.lines().count(), e.0.len());
    assert!(shown.contains("fields.price.type: unknown type \"money\""));
}

#[test]
fn limits_and_names() {
    let e = errors("name: article\nfields: {a: text}\nentities:\n  article: {fields: {b: text}}\n");
    assert!(
        e.has("entities.article", "cannot have the schema's own name"),
        "{e}"
    );

    let mut many = String::from("name: x\nfields:\n");
    for i in 0..201 {
        many.push_str(&format!("  f{i}: text\n"));
    }
    assert!(errors(&many).has("fields", "201 fields in all, over the limit of 200"));

    let long = format!(
        "name: x\ndescription: \"{}\"\nfields: {{a: text}}\n",
        "d".repeat(2_001)
    );
    assert!(errors(&long).has("description", "over the limit of 2000"));

    let huge = format!(
        "name: x\nfields: {{a: text}}\n#{}\n",
        "x".repeat(MAX_SCHEMA_BYTES)
    );
    assert!(
        errors(&huge).0[0]
            .message
            .contains("over the limit of 262144")
    );

    let mut lists = String::from("name: x\nfields: {a: text}\nentities:\n");
    for i in 0..33 {
        lists.push_str(&format!("  l{i}: {{fields: {{a: text}}}}\n"));
    }
    assert!(errors(&lists).has("entities", "33 entity lists"));

    let e = errors("fields: {}\n");
    assert!(e.has("name", "missing"));
    assert!(e.has("fields", "at least one field"));
}

#[test]
fn llm_schemas_may_have_summaries() {
    let s = Schema::parse(
        "name: a\nbackend: llm\nfields:\n  summary: {type: summary, description: two sentences}\n",
    )
    .unwrap();
    assert_eq!(s.backend, Backend::Llm);
    assert!(s.fields["summary"].rules("summary").is_empty());
    assert!(errors("name: a\nbackend: gpt\nfields: {a: text}\n").has("backend", "unknown backend"));
}
