//! A page (any bytes, read as UTF-8 with replacement) through the markup backend,
//! `facts_core::markup::fill`, with the shipped `product` and `article` templates, the
//! default limits and a page URL. Checks, besides "no panic, no hang": it returns within
//! the limits' time budget; the top-level record comes first, named after the schema;
//! every record is an entity of the schema and every value a field of its entity, of a
//! markup origin; every value is grounded (its quote is in the page's visible text or is a
//! string the page declares) and its quote is not empty.
//!
//! Shared by the fuzz target of the same name and by the test that replays the kept inputs
//! (`fuzz/corpus-regressions/facts_markup/`), so the two cannot check different things.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use extract_core::Limits;
use facts_core::{Origin, Schema};

static SCHEMAS: LazyLock<Vec<Schema>> = LazyLock::new(|| {
    ["product", "article"]
        .iter()
        .map(|name| {
            let t = facts_core::template(name).expect("a shipped template");
            Schema::parse(t.text).expect("shipped templates are valid")
        })
        .collect()
});

/// Runs one input through the steps and checks; panics on a broken invariant.
pub fn check(data: &[u8]) {
    let html = String::from_utf8_lossy(data);
    let limits = Limits::default();
    for schema in SCHEMAS.iter() {
        let start = Instant::now();
        let result =
            facts_core::markup::fill(schema, &html, Some("https://shop.example.com/p/1"), &limits);
        let took = start.elapsed();
        assert!(
            took <= Duration::from_millis(limits.time_budget_ms),
            "{} took {took:?}",
            schema.name
        );
        let Ok(filled) = result else {
            continue;
        };
        let first = filled.records.first().expect("the top-level record");
        assert_eq!(first.entity, schema.name);
        for record in &filled.records {
            let fields = schema
                .fields_of(&record.entity)
                .unwrap_or_else(|| panic!("a record of {}", record.entity));
            for v in &record.values {
                let field = fields
                    .get(&v.field)
                    .unwrap_or_else(|| panic!("{}.{} is no field", record.entity, v.field));
                assert_eq!(v.list_item, field.is_list(), "{v:?}");
                assert_ne!(v.origin, Origin::Model, "{v:?}");
                assert!(!v.quote.is_empty(), "an empty quote: {v:?}");
                assert!(
                    v.grounded,
                    "{}: {}.{} is not grounded: {v:?}",
                    schema.name, record.entity, v.field
                );
            }
        }
    }
}
