//! A schema text (any bytes that are UTF-8) through `facts_core::Schema::parse`, as a
//! project's schema arrives from a user. Checks, besides "no panic, no hang": a refused
//! text names at least one error, each on one line; an accepted schema's stored form
//! (`to_json`) parses back to an equal schema, whose stored form is the same JSON.
//!
//! Shared by the fuzz target of the same name and by the test that replays the kept inputs
//! (`fuzz/corpus-regressions/facts_schema/`), so the two cannot check different things.

use facts_core::Schema;

/// Runs one input through the steps and checks; panics on a broken invariant.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let schema = match Schema::parse(text) {
        Ok(s) => s,
        Err(errors) => {
            assert!(!errors.0.is_empty(), "refused without an error");
            for e in &errors.0 {
                assert!(!e.message.contains('\n'), "a message on two lines: {e:?}");
            }
            return;
        }
    };
    let stored = schema.to_json();
    assert!(stored.is_object(), "stored form {stored}");
    let again = match Schema::parse(&stored.to_string()) {
        Ok(s) => s,
        Err(e) => panic!("the stored form {stored} does not parse:\n{e}"),
    };
    assert_eq!(
        again, schema,
        "the stored form {stored} parses to another schema"
    );
    assert_eq!(again.to_json(), stored);
}
