//! schema.org entities from JSON-LD blocks, including `@graph` and nested objects (an
//! article's `publisher`, an event's `location`, a product's `brand`).

use serde_json::Value;

use super::{
    Collector, EntityKind, EntitySource, normalize_email, normalize_name, normalize_phone,
};

/// Nesting deeper than this is not followed: real markup is a few levels deep, and a bound
/// keeps hostile input from exhausting the stack.
const MAX_DEPTH: usize = 32;

/// Adds the entities of every JSON-LD block; returns one failure per bad block.
pub(crate) fn find(blocks: &[String], out: &mut Collector) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, raw) in blocks.iter().enumerate() {
        let cleaned = clean_block(raw);
        if cleaned.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&cleaned) {
            Ok(v) => walk(&v, out, 0),
            Err(e) => failures.push(format!("json-ld block {}: {e}", i + 1)),
        }
    }
    failures
}

/// Undoes the wrapping pages put around JSON (HTML comments, CDATA markers) and turns raw
/// control characters, which JSON forbids inside strings but browsers tolerate, into spaces.
pub fn clean_block(raw: &str) -> String {
    let mut s = raw.trim();
    for (open, close) in [
        ("<!--", "-->"),
        ("//<![CDATA[", "//]]>"),
        ("<![CDATA[", "]]>"),
    ] {
        if let Some(rest) = s.strip_prefix(open) {
            s = rest.strip_suffix(close).unwrap_or(rest).trim();
        }
    }
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn walk(v: &Value, out: &mut Collector, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::Array(items) => items.iter().for_each(|i| walk(i, out, depth + 1)),
        Value::Object(map) => {
            if let Some(kind) = map.get("@type").and_then(kind_of)
                && let Some(name) = name_of(map, kind)
            {
                out.add(kind, &name, normalize_name(&name), EntitySource::JsonLd);
            }
            // Contact details declared on any object are entities of their own.
            if let Some(email) = string_of(map.get("email")) {
                let email = email.trim_start_matches("mailto:");
                if email.contains('@') {
                    out.add(
                        EntityKind::Email,
                        email,
                        normalize_email(email),
                        EntitySource::JsonLd,
                    );
                }
            }
            if let Some(tel) = string_of(map.get("telephone")) {
                let n = normalize_phone(&tel);
                if n.trim_start_matches('+').len() >= 5 {
                    out.add(EntityKind::Phone, &tel, n, EntitySource::JsonLd);
                }
            }
            for value in map.values() {
                walk(value, out, depth + 1);
            }
        }
        _ => {}
    }
}

/// The entity kind of a `@type` (a string or a list of them), if it is one we keep.
fn kind_of(t: &Value) -> Option<EntityKind> {
    match t {
        Value::String(s) => kind_of_type(s),
        Value::Array(items) => items.iter().find_map(|i| i.as_str().and_then(kind_of_type)),
        _ => None,
    }
}

fn kind_of_type(t: &str) -> Option<EntityKind> {
    // Types may come as full IRIs ("https://schema.org/Person").
    let t = t.rsplit(['/', '#', ':']).next().unwrap_or(t);
    const ORGANIZATIONS: &[&str] = &[
        "Organization",
        "Corporation",
        "NGO",
        "Brand",
        "LocalBusiness",
        "Restaurant",
        "Store",
        "OnlineStore",
        "OnlineBusiness",
        "CollegeOrUniversity",
        "School",
        "SportsTeam",
        "MusicGroup",
        "PerformingGroup",
        "Airline",
        "Consortium",
        "PoliticalParty",
        "WorkersUnion",
        "LibrarySystem",
        "Project",
        "Hotel",
        "FoodEstablishment",
        "AutomotiveBusiness",
        "FinancialService",
        "ProfessionalService",
        "Dentist",
        "Physician",
        "Hospital",
        "Pharmacy",
        "LegalService",
        "RealEstateAgent",
        "TravelAgency",
    ];
    const PLACES: &[&str] = &[
        "Place",
        "City",
        "Country",
        "State",
        "AdministrativeArea",
        "Landform",
        "Mountain",
        "BodyOfWater",
        "LandmarksOrHistoricalBuildings",
        "TouristAttraction",
        "TouristDestination",
        "Residence",
        "CivicStructure",
        "Airport",
        "Park",
        "Museum",
        "StadiumOrArena",
        "Venue",
        "Accommodation",
        "Continent",
        "Beach",
        "Library",
        "PlaceOfWorship",
    ];
    const PRODUCTS: &[&str] = &[
        "Product",
        "ProductModel",
        "IndividualProduct",
        "SomeProducts",
        "ProductGroup",
        "Vehicle",
        "Car",
        "Motorcycle",
        "SoftwareApplication",
        "MobileApplication",
        "WebApplication",
        "VideoGame",
    ];
    if t == "Person" || t == "Patient" {
        Some(EntityKind::Person)
    } else if ORGANIZATIONS.contains(&t) || t.ends_with("Organization") {
        Some(EntityKind::Organization)
    } else if PLACES.contains(&t) {
        Some(EntityKind::Place)
    } else if PRODUCTS.contains(&t) {
        Some(EntityKind::Product)
    } else if t.ends_with("Event") {
        Some(EntityKind::Event)
    } else {
        None
    }
}

/// The entity's name: `name`, else (for people) given and family names, else `legalName`.
fn name_of(map: &serde_json::Map<String, Value>, kind: EntityKind) -> Option<String> {
    let name = string_of(map.get("name"))
        .or_else(|| {
            (kind == EntityKind::Person)
                .then(|| {
                    let given = string_of(map.get("givenName")).unwrap_or_default();
                    let family = string_of(map.get("familyName")).unwrap_or_default();
                    let full = format!("{given} {family}");
                    (!full.trim().is_empty()).then_some(full)
                })
                .flatten()
        })
        .or_else(|| string_of(map.get("legalName")))?;
    let name = decode_entities(&name);
    (!normalize_name(&name).is_empty()).then_some(name)
}

/// A string value, the first of a list, or an `{"@value": ...}` literal.
fn string_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items.iter().find_map(|i| string_of(Some(i))),
        Value::Object(m) => string_of(m.get("@value")),
        _ => None,
    }
}

/// Decodes the few HTML entities that leak into JSON-LD names from templating.
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#039;", "'")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(html: &str) -> (Vec<(EntityKind, String)>, Vec<String>) {
        let doc = crate::html::parse_guarded(html, &crate::Limits::default()).unwrap();
        let markup = super::super::Markup::from_document(&doc);
        let mut c = Collector::default();
        let failures = find(&markup.jsonld, &mut c);
        (
            c.entities
                .into_iter()
                .map(|e| (e.kind, e.normalized))
                .collect(),
            failures,
        )
    }

    #[test]
    fn graph_and_nested_objects() {
        let html = r#"<script type="application/ld+json">{"@context":"https://schema.org",
          "@graph":[{"@type":"NewsArticle","headline":"x",
             "author":{"@type":"Person","givenName":"Ada","familyName":"Lovelace"},
             "publisher":{"@type":["Organization","Thing"],"name":" Acme  &amp; Co ",
                          "email":"News@Acme.example","telephone":"+1 555 010 2030"}},
            {"@type":"Event","name":"Launch","location":{"@type":"Place","name":"Hall 1"}}]}
        </script>"#;
        let (got, failures) = run(html);
        assert!(failures.is_empty());
        assert_eq!(
            got,
            vec![
                (EntityKind::Person, "Ada Lovelace".into()),
                (EntityKind::Organization, "Acme & Co".into()),
                (EntityKind::Email, "news@acme.example".into()),
                (EntityKind::Phone, "+15550102030".into()),
                (EntityKind::Event, "Launch".into()),
                (EntityKind::Place, "Hall 1".into()),
            ]
        );
    }

    #[test]
    fn a_bad_block_is_reported_and_the_good_ones_kept() {
        let html = r#"<script type="application/ld+json">{"@type":"Product","name":"Widget"}</script>
            <script type="application/ld+json">{"@type": "Person", "name": </script>
            <script type="Application/LD+JSON"><!-- {"@type":"Brand","name":"Wid"} --></script>"#;
        let (got, failures) = run(html);
        assert_eq!(
            got,
            vec![
                (EntityKind::Product, "Widget".into()),
                (EntityKind::Organization, "Wid".into())
            ]
        );
        assert_eq!(failures.len(), 1);
        assert!(failures[0].starts_with("json-ld block 2:"), "{failures:?}");
    }

    #[test]
    fn types_as_iris_and_unknown_types() {
        assert_eq!(
            kind_of_type("https://schema.org/Person"),
            Some(EntityKind::Person)
        );
        assert_eq!(kind_of_type("MusicEvent"), Some(EntityKind::Event));
        assert_eq!(
            kind_of_type("NewsMediaOrganization"),
            Some(EntityKind::Organization)
        );
        assert_eq!(kind_of_type("BreadcrumbList"), None);
    }
}
