//! A model's answer (any bytes that parse as JSON) checked by `facts_core::parse_answer`
//! against the shipped `product` template, with a fixed page text. Checks, besides "no
//! panic, no hang": a refused answer names at least one violation; an accepted one starts
//! with the top-level record; every record is an entity of the schema and every value a
//! field of it, of origin `model`, with a confidence within 0..=1 when it has one, and
//! grounded exactly when its quote is in the page.
//!
//! Shared by the fuzz target of the same name and by the test that replays the kept inputs
//! (`fuzz/corpus-regressions/facts_answer/`), so the two cannot check different things.

use std::sync::LazyLock;

use facts_core::{Origin, PageText, Schema};

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    let t = facts_core::template("product").expect("a shipped template");
    Schema::parse(t.text).expect("shipped templates are valid")
});

static PAGE: LazyLock<PageText> = LazyLock::new(|| {
    PageText::new(
        "Acme Anvil 3000\nBy Acme Corporation. SKU AN-3000, GTIN 0012345678905.\n\
         The heaviest anvil we make: drop-forged, 150 lb.\n\
         Rated 4.5 out of 5 (1,204 reviews).\n\
         Price: $1,299.00 USD - In stock - New. Offer valid until 2027-01-31.\n\
         Also used: $899.50, limited availability. Sold by Acme Outlet.",
    )
});

/// Runs one input through the steps and checks; panics on a broken invariant.
pub fn check(data: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let schema = &*SCHEMA;
    let filled = match facts_core::parse_answer(schema, &answer, Some(3), &PAGE) {
        Ok(f) => f,
        Err(v) => {
            assert!(!v.0.is_empty(), "refused without a violation");
            return;
        }
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
            assert_eq!(v.origin, Origin::Model, "{v:?}");
            assert_eq!(v.chunk_index, Some(3));
            if let Some(c) = v.confidence {
                assert!((0.0..=1.0).contains(&c), "confidence {c}");
            }
            assert_eq!(v.grounded, PAGE.contains(&v.quote), "{v:?}");
        }
    }
}
