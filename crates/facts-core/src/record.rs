//! What filling a schema produces: records of typed values, each with the quote it came
//! from, and their consolidation.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ground::normalize_whitespace;

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// A `<script type="application/ld+json">` block.
    JsonLd,
    /// Microdata (`itemscope`, `itemprop`).
    Microdata,
    /// RDFa Lite (`vocab`, `typeof`, `property`).
    Rdfa,
    /// An OpenGraph-style `<meta property>` (`og:*`, `article:*`, `product:*`...).
    #[serde(rename = "opengraph")]
    OpenGraph,
    /// Any other `<meta>` tag, or `<html lang>`.
    Meta,
    /// A selector rule of the schema, or the `<title>` element (a `title` rule).
    Selector,
    /// A pattern rule of the schema, over the page's visible text.
    Pattern,
    /// A language model's answer.
    Model,
}

impl Origin {
    /// The stored name: `json-ld`, `microdata`, `rdfa`, `opengraph`, `meta`, `selector`,
    /// `pattern`, `model`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JsonLd => "json-ld",
            Self::Microdata => "microdata",
            Self::Rdfa => "rdfa",
            Self::OpenGraph => "opengraph",
            Self::Meta => "meta",
            Self::Selector => "selector",
            Self::Pattern => "pattern",
            Self::Model => "model",
        }
    }
}

/// One value of one field, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FactValue {
    /// The field's name.
    pub field: String,
    /// The value coerced to the field's type: a string, number or boolean (dates and URLs
    /// as strings).
    pub value: Value,
    /// Whether this is one item of a list field (many values are then not a conflict).
    pub list_item: bool,
    /// The text the value was read from, as the page has it (entities decoded).
    pub quote: String,
    /// Where the value came from.
    pub origin: Origin,
    /// The chunk of the page's text the model read (model values only).
    pub chunk_index: Option<i32>,
    /// The model's confidence, when it gave one within 0..=1.
    pub confidence: Option<f32>,
    /// Whether the quote occurs in the page. An ungrounded value is kept for the record
    /// but must never be presented as a fact.
    pub grounded: bool,
}

/// One record: the top-level entity of a page, or one item of an entity list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The schema's name for the top-level record, else the entity list's name.
    pub entity: String,
    /// The key fields' values, normalised (lowercased, whitespace collapsed) and joined by
    /// `" | "`; `None` when the entity has no key or a key value is missing, so the record
    /// is identified by its page only.
    pub key: Option<String>,
    /// The values, in the order found.
    pub values: Vec<FactValue>,
}

/// A value that was found but could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// The field, as `field` for the top-level record or `list.field` for an entity list.
    pub field: String,
    /// Why: `not a float: "call us"`, `required field missing`...
    pub reason: String,
}

/// What filling a schema for one page gave.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filled {
    /// The top-level record first (always present, possibly without values), then the
    /// entity lists' records.
    pub records: Vec<Record>,
    /// Values found but not usable.
    pub dropped: Vec<Dropped>,
}

/// The separator between key values.
pub const KEY_SEPARATOR: &str = " | ";

/// Normalises one key value: whitespace collapsed, lowercased.
pub fn normalize_key_value(s: &str) -> String {
    normalize_whitespace(s).to_lowercase()
}

/// The key of a record from its values: the first grounded value of each key field; `None`
/// when `key` is empty or a key field has no grounded value (a name whose quote is not in
/// the page must not name a record, nor merge grounded values of different pages).
pub fn record_key(key: &[String], values: &[FactValue]) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    let mut parts = Vec::with_capacity(key.len());
    for k in key {
        let v = values
            .iter()
            .filter(|v| &v.field == k)
            .find(|v| v.grounded)?;
        let s = match &v.value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let n = normalize_key_value(&s);
        if n.is_empty() {
            return None;
        }
        parts.push(n);
    }
    Some(parts.join(KEY_SEPARATOR))
}

/// Merges records of the same entity and key, taking the entity of the first record as
/// the top-level one (as [`Filled::records`] orders them); see [`consolidate_for`].
pub fn consolidate(records: Vec<Record>) -> Vec<Record> {
    let top = records
        .first()
        .map(|r| r.entity.clone())
        .unwrap_or_default();
    consolidate_for(&top, records)
}

/// Merges records of the same entity and key, in order of first appearance.
///
/// Records without a key merge only when they are of `top_level` (the page's one
/// top-level record, e.g. read from several chunks): items of an entity list without a key
/// cannot be told apart, so each stays its own. Within a merged record, repeats of a
/// `(field, value)` pair keep the first (its quote, origin and evidence); different values
/// of one scalar field stay side by side, since a conflict is data and is never
/// overwritten.
pub fn consolidate_for(top_level: &str, records: Vec<Record>) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::with_capacity(records.len());
    let mut index: std::collections::HashMap<(String, String), usize> =
        std::collections::HashMap::new();
    for r in records {
        let slot = match &r.key {
            Some(k) => index.get(&(r.entity.clone(), k.clone())).copied(),
            None if r.entity == top_level => out
                .iter()
                .position(|o| o.entity == r.entity && o.key.is_none()),
            None => None,
        };
        match slot {
            Some(i) => {
                let target = &mut out[i];
                for v in r.values {
                    if !target
                        .values
                        .iter()
                        .any(|t| t.field == v.field && t.value == v.value)
                    {
                        target.values.push(v);
                    }
                }
            }
            None => {
                let mut r = r;
                let mut seen: Vec<(String, Value)> = Vec::new();
                r.values.retain(|v| {
                    let k = (v.field.clone(), v.value.clone());
                    if seen.contains(&k) {
                        false
                    } else {
                        seen.push(k);
                        true
                    }
                });
                if let Some(k) = &r.key {
                    index.insert((r.entity.clone(), k.clone()), out.len());
                }
                out.push(r);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(field: &str, value: Value, quote: &str, origin: Origin) -> FactValue {
        FactValue {
            field: field.into(),
            value,
            list_item: false,
            quote: quote.into(),
            origin,
            chunk_index: None,
            confidence: None,
            grounded: true,
        }
    }

    #[test]
    fn conflicts_are_kept_and_repeats_keep_the_first_quote() {
        let a = Record {
            entity: "product".into(),
            key: None,
            values: vec![
                v("name", json!("Widget"), "Widget", Origin::JsonLd),
                v("price", json!(10.0), "10.00", Origin::JsonLd),
            ],
        };
        let b = Record {
            entity: "product".into(),
            key: None,
            values: vec![
                v("name", json!("Widget"), "Widget!", Origin::Model),
                v("price", json!(12.0), "$12", Origin::Model),
            ],
        };
        let offer = |k: &str, p: f64| Record {
            entity: "offers".into(),
            key: Some(k.into()),
            values: vec![v("price", json!(p), &p.to_string(), Origin::JsonLd)],
        };
        let loose = |p: f64| Record {
            entity: "offers".into(),
            key: None,
            values: vec![v("price", json!(p), &p.to_string(), Origin::JsonLd)],
        };
        let out = consolidate(vec![
            a,
            offer("eu", 1.0),
            loose(5.0),
            b,
            offer("eu", 2.0),
            offer("us", 3.0),
            loose(5.0),
        ]);
        assert_eq!(out.len(), 5);
        let top = &out[0];
        assert_eq!(top.values.len(), 3);
        assert_eq!(top.values[0].quote, "Widget");
        let prices: Vec<&Value> = top
            .values
            .iter()
            .filter(|v| v.field == "price")
            .map(|v| &v.value)
            .collect();
        assert_eq!(prices, vec![&json!(10.0), &json!(12.0)]);
        assert_eq!(out[1].key.as_deref(), Some("eu"));
        assert_eq!(out[1].values.len(), 2);
        assert_eq!(out[2].key, None);
        assert_eq!(out[3].key.as_deref(), Some("us"));
        assert_eq!(out[4].key, None);
    }

    #[test]
    fn keys_are_normalised_and_need_every_key_field() {
        let values = vec![
            v("name", json!("  ACME\n Corp "), "ACME Corp", Origin::JsonLd),
            v("country", json!("DE"), "DE", Origin::JsonLd),
        ];
        assert_eq!(
            record_key(&["name".into(), "country".into()], &values).as_deref(),
            Some("acme corp | de")
        );
        assert_eq!(record_key(&["name".into(), "city".into()], &values), None);
        assert_eq!(record_key(&[], &values), None);
    }
}
