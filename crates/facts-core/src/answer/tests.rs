use super::*;
use serde_json::json;

fn schema() -> Schema {
    Schema::parse(
        r#"
name: company
backend: llm
description: A company page
key: [name]
fields:
  name: {type: text, required: true, description: The company's name}
  founded: {type: date}
  employees: {type: integer}
  public: {type: boolean}
  kind: {type: enum, values: [startup, enterprise]}
  tags: {type: list, items: text}
  about: {type: summary, description: two sentences}
entities:
  people:
    key: [name]
    fields: {name: {type: text, required: true}, role: {type: text}}
"#,
    )
    .unwrap()
}

const PAGE: &str = "Acme Robotics was founded on 3 May 2011.\nIt employs 1,200 people. \
Jane Doe is the CEO. Topics: robots, drones.";

fn null_field() -> Value {
    json!({"value": null, "quote": null, "confidence": null})
}

#[test]
fn the_answer_schema_is_strict() {
    let s = answer_schema(&schema());
    fn check(v: &Value, path: &str) {
        if v.get("type") == Some(&json!("object")) {
            assert_eq!(v["additionalProperties"], json!(false), "{path}");
            let props: Vec<&String> = v["properties"].as_object().unwrap().keys().collect();
            let required: Vec<&str> = v["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            assert_eq!(props.len(), required.len(), "{path}");
            for p in props {
                assert!(required.contains(&p.as_str()), "{path}.{p}");
                check(&v["properties"][p], &format!("{path}.{p}"));
            }
        }
        if let Some(items) = v.get("items") {
            check(items, &format!("{path}[]"));
        }
    }
    check(&s, "$");
    let fields = &s["properties"]["company"]["properties"];
    assert_eq!(
        fields["employees"]["properties"]["value"]["type"],
        json!(["integer", "null"])
    );
    assert_eq!(
        fields["kind"]["properties"]["value"]["enum"],
        json!(["startup", "enterprise", null])
    );
    assert_eq!(
        fields["tags"]["properties"]["value"]["type"],
        json!(["array", "null"])
    );
    assert_eq!(
        fields["name"]["properties"]["value"]["description"],
        json!("The company's name")
    );
    assert_eq!(s["properties"]["people"]["type"], json!("array"));
    let text = instructions(&schema());
    assert!(text.contains("copied verbatim from the text"));
    assert!(text.contains("- name (text, required): The company's name"));
    assert!(text.contains("- kind (enum), one of: startup, enterprise"));
    assert!(text.contains("List \"people\""));
}

#[test]
fn a_conforming_answer_is_coerced_and_grounded() {
    let answer = json!({
        "company": {
            "name": {"value": "Acme Robotics", "quote": "Acme Robotics was founded", "confidence": 0.95},
            "founded": {"value": "3 May 2011", "quote": "founded on 3 May 2011.", "confidence": 2.5},
            "employees": {"value": 1200, "quote": "It employs 1,200 people.", "confidence": null},
            "public": null_field(),
            "kind": {"value": "startup", "quote": "Acme is a startup", "confidence": 0.4},
            "tags": {"value": ["robots", "drones"], "quote": "Topics: robots, drones.", "confidence": 0.8},
            "about": {"value": "A robotics firm.", "quote": "Acme Robotics", "confidence": null}
        },
        "people": [
            {"name": {"value": "Jane Doe", "quote": "Jane Doe is the CEO", "confidence": 0.9},
             "role": {"value": "CEO", "quote": "Jane Doe is the CEO", "confidence": 0.9}},
            {"name": null_field(), "role": {"value": "CTO", "quote": null, "confidence": null}}
        ]
    });
    let page = PageText::new(PAGE);
    let f = parse_answer(&schema(), &answer, Some(3), &page).unwrap();
    let top = &f.records[0];
    assert_eq!(top.key.as_deref(), Some("acme robotics"));
    let get = |field: &str| top.values.iter().find(|v| v.field == field).unwrap();
    assert_eq!(get("name").confidence, Some(0.95));
    assert_eq!(get("name").origin, Origin::Model);
    assert_eq!(get("name").chunk_index, Some(3));
    assert!(get("name").grounded);
    assert_eq!(get("founded").value, json!("2011-05-03"));
    assert_eq!(get("founded").confidence, None, "out of 0..=1");
    assert_eq!(get("employees").value, json!(1200));
    // A quote that is not in the page: kept, but not grounded.
    assert!(!get("kind").grounded);
    let tags: Vec<&FactValue> = top.values.iter().filter(|v| v.field == "tags").collect();
    assert_eq!(tags.len(), 2);
    assert!(tags.iter().all(|t| t.list_item && t.grounded));
    assert!(top.values.iter().all(|v| v.field != "public"));
    // The second person has no name (required): dropped and reported.
    assert_eq!(f.records.len(), 2);
    assert_eq!(f.records[1].key.as_deref(), Some("jane doe"));
    assert!(f.dropped.iter().any(|d| d.field == "people.name"));
}

#[test]
fn non_conforming_answers_list_every_violation() {
    let answer = json!({
        "company": {
            "name": {"value": 42, "quote": "x", "confidence": 0.5},
            "founded": "2011",
            "employees": {"value": "many", "quote": null, "confidence": null},
            "public": {"value": true, "quote": 7, "confidence": null},
            "kind": {"value": "nonprofit", "quote": "x", "confidence": null},
            "tags": {"value": "robots", "quote": "x", "confidence": null, "extra": 1},
            "ceo": null_field()
        },
        "people": {"name": null_field()},
        "offices": []
    });
    let e = parse_answer(&schema(), &answer, None, &PageText::new(PAGE)).unwrap_err();
    let shown = e.to_string();
    for expected in [
        "company.name.value: expected a string, found a number",
        "company.founded: expected an object with value, quote and confidence, found a string",
        "company.employees.value: expected an integer, found a string",
        "company.public.quote: expected a string or null, found a number",
        "company.kind.value: \"nonprofit\" is not one of: startup, enterprise",
        "company.tags.extra: unknown key",
        "company.tags.value: expected a list or null, found a string",
        "company.ceo: unknown field",
        "company.about: missing",
        "people: expected a list, found an object",
        "offices: unknown record or entity list",
    ] {
        assert!(
            shown.lines().any(|l| l == expected),
            "missing {expected:?} in\n{shown}"
        );
    }
    let e = parse_answer(&schema(), &json!([1]), None, &PageText::new(PAGE)).unwrap_err();
    assert_eq!(e.to_string(), "$: expected an object, found a list");
}

#[test]
fn a_string_that_is_no_date_is_dropped_not_a_violation() {
    let mut company = serde_json::Map::new();
    for f in ["name", "employees", "public", "kind", "tags", "about"] {
        company.insert(f.into(), null_field());
    }
    company.insert(
        "founded".into(),
        json!({"value": "long ago", "quote": "long ago", "confidence": null}),
    );
    let answer = json!({"company": company, "people": []});
    let f = parse_answer(&schema(), &answer, None, &PageText::new(PAGE)).unwrap();
    assert_eq!(f.records.len(), 1);
    assert!(f.records[0].values.is_empty());
    assert_eq!(f.dropped[0].field, "founded");
    assert!(f.dropped[0].reason.contains("not a date"));
}
