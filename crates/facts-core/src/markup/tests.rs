use super::*;
use serde_json::json;

fn schema(text: &str) -> Schema {
    Schema::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn run(s: &Schema, html: &str) -> Filled {
    fill(
        s,
        html,
        Some("https://example.com/a/page.html"),
        &Limits::default(),
    )
    .unwrap()
}

fn values<'a>(r: &'a Record, field: &str) -> Vec<&'a FactValue> {
    r.values.iter().filter(|v| v.field == field).collect()
}

fn one(r: &Record, field: &str) -> Value {
    let v = values(r, field);
    assert_eq!(v.len(), 1, "{field}: {v:?}");
    v[0].value.clone()
}

const JSONLD_PAGE: &str = r##"<!doctype html><html lang="en-GB"><head>
<title>Widget Pro | Shop</title>
<meta property="og:title" content="Widget Pro &amp; more">
<meta property="og:site_name" content="Example Shop">
<meta name="description" content="The best widget.">
<script type="application/ld+json">
{"@context": "https://schema.org", "@graph": [
  {"@type": "Organization", "@id": "#org", "name": "Example Corp"},
  {"@type": "Product", "name": "Widget Pro", "brand": {"@id": "#org"},
   "sku": "WP-1", "aggregateRating": {"@type": "AggregateRating", "ratingValue": "4.5", "reviewCount": "1,024"},
   "offers": [
     {"@type": "Offer", "price": "$1,299.00", "priceCurrency": "USD", "availability": "https://schema.org/InStock"},
     {"@type": "Offer", "price": 999, "priceCurrency": "EUR", "availability": "http://schema.org/OutOfStock"},
     {"@type": "Offer", "price": "call us", "priceCurrency": "GBP"}
   ]}
]}
</script>
<script type="application/ld+json">{ this is not json </script>
</head><body><h1>Widget   Pro</h1><p>Order code: WX-42. Only today.</p>
<script>var x = "Order code: ZZ-99";</script></body></html>"##;

#[test]
fn json_ld_graph_references_nested_offers_and_coercion() {
    let s = schema(
        r#"
name: product
types: [Product]
key: [name]
fields:
  name: {type: text, required: true}
  brand: {type: text}
  sku: {type: text}
  rating: {type: float, from: [{schema: aggregateRating.ratingValue}]}
  reviews: {type: integer, from: [{schema: aggregateRating.reviewCount}]}
  title: {type: text, from: [{meta: "og:title"}]}
  site: {type: text, from: [{meta: "og:site_name"}]}
  summary: {type: text, from: [{meta: description}]}
  language: {type: text, from: [{lang: true}]}
  page_title: {type: text, from: [{title: true}]}
  heading: {type: text, from: [{selector: "h1"}]}
  code: {type: text, from: [{pattern: "Order code: ([A-Z]{2}-[0-9]+)"}]}
  missing: {type: text, from: [{selector: ".nothing"}]}
entities:
  offers:
    types: [Offer]
    fields:
      price: {type: float, required: true}
      currency: {type: text, from: [{schema: priceCurrency}]}
      availability: {type: enum, values: [in_stock, out_of_stock]}
"#,
    );
    let f = run(&s, JSONLD_PAGE);
    let top = &f.records[0];
    assert_eq!(top.entity, "product");
    assert_eq!(top.key.as_deref(), Some("widget pro"));
    assert_eq!(one(top, "name"), json!("Widget Pro"));
    assert_eq!(values(top, "name")[0].origin, Origin::JsonLd);
    // The brand is an @id reference to the organisation, followed once.
    assert_eq!(one(top, "brand"), json!("Example Corp"));
    assert_eq!(one(top, "rating"), json!(4.5));
    assert_eq!(one(top, "reviews"), json!(1024));
    let title = values(top, "title")[0];
    assert_eq!(title.value, json!("Widget Pro & more"));
    assert_eq!(title.origin, Origin::OpenGraph);
    assert!(title.grounded, "declared in a meta tag");
    assert_eq!(values(top, "summary")[0].origin, Origin::Meta);
    assert_eq!(one(top, "site"), json!("Example Shop"));
    assert_eq!(one(top, "language"), json!("en-GB"));
    assert_eq!(one(top, "page_title"), json!("Widget Pro | Shop"));
    let heading = values(top, "heading")[0];
    assert_eq!(heading.value, json!("Widget Pro"));
    assert_eq!(heading.origin, Origin::Selector);
    assert!(heading.grounded);
    // Patterns read the visible text only, not scripts.
    let code = values(top, "code");
    assert_eq!(code.len(), 1);
    assert_eq!(code[0].value, json!("WX-42"));
    assert_eq!(code[0].origin, Origin::Pattern);
    assert!(code[0].grounded);
    assert!(values(top, "missing").is_empty());

    let offers: Vec<&Record> = f.records.iter().filter(|r| r.entity == "offers").collect();
    assert_eq!(offers.len(), 2, "{:?}", f.records);
    assert_eq!(one(offers[0], "price"), json!(1299.0));
    assert_eq!(values(offers[0], "price")[0].quote, "$1,299.00");
    assert_eq!(one(offers[0], "availability"), json!("in_stock"));
    assert_eq!(one(offers[1], "price"), json!(999.0));
    assert_eq!(one(offers[1], "currency"), json!("EUR"));
    assert_eq!(one(offers[1], "availability"), json!("out_of_stock"));
    assert!(offers.iter().all(|o| o.key.is_none()));
    // The third offer's price is no number: dropped, and the offer with it (required).
    assert!(
        f.dropped
            .iter()
            .any(|d| d.field == "offers.price" && d.reason.contains("not a number: \"call us\""))
    );
    assert!(
        f.dropped
            .iter()
            .any(|d| d.field == "offers.price" && d.reason.contains("record dropped"))
    );
}

#[test]
fn microdata_items_nest_and_read_attributes() {
    let html = r#"<html><body>
<div itemscope itemtype="https://schema.org/Event">
  <h1 itemprop="name">Rust   Meetup</h1>
  <time itemprop="startDate" datetime="2025-03-14T18:00:00+01:00">14 March, 6pm</time>
  <meta itemprop="eventStatus" content="https://schema.org/EventScheduled">
  <div itemprop="location" itemscope itemtype="https://schema.org/Place">
    <span itemprop="name">The Hall</span>
    <div itemprop="address" itemscope itemtype="https://schema.org/PostalAddress">
      <span itemprop="addressLocality">Berlin</span>
    </div>
  </div>
  <a itemprop="url" href="/events/rust">details</a>
  <div itemprop="offers" itemscope itemtype="https://schema.org/Offer">
    <span itemprop="price" content="10.00">€10</span><meta itemprop="priceCurrency" content="EUR">
  </div>
  <span itemprop="performer">Ferris</span><span itemprop="performer">Corro</span>
</div></body></html>"#;
    let s = schema(
        r#"
name: event
types: [Event]
fields:
  name: text
  start_date: date
  status: {type: enum, values: [event_scheduled, event_cancelled], from: [{schema: eventStatus}]}
  venue: {type: text, from: [{schema: location}]}
  locality: {type: text, from: [{schema: location.address.addressLocality}]}
  url: url
  performers: {type: list, items: text, from: [{schema: performer}]}
entities:
  offers:
    types: [Offer]
    fields: {price: float, currency: {type: text, from: [{schema: priceCurrency}]}}
"#,
    );
    let f = run(&s, html);
    let top = &f.records[0];
    assert_eq!(one(top, "name"), json!("Rust Meetup"));
    assert_eq!(values(top, "name")[0].origin, Origin::Microdata);
    assert_eq!(one(top, "start_date"), json!("2025-03-14T18:00:00+01:00"));
    assert_eq!(one(top, "status"), json!("event_scheduled"));
    assert_eq!(one(top, "venue"), json!("The Hall"));
    assert_eq!(one(top, "locality"), json!("Berlin"));
    assert_eq!(one(top, "url"), json!("https://example.com/events/rust"));
    let performers: Vec<Value> = values(top, "performers")
        .iter()
        .map(|v| v.value.clone())
        .collect();
    assert_eq!(performers, vec![json!("Ferris"), json!("Corro")]);
    assert!(values(top, "performers").iter().all(|v| v.list_item));
    let offer = f.records.iter().find(|r| r.entity == "offers").unwrap();
    assert_eq!(one(offer, "price"), json!(10.0));
    assert_eq!(one(offer, "currency"), json!("EUR"));
}

#[test]
fn rdfa_lite_items() {
    let html = r#"<html><body>
<div vocab="https://schema.org/" typeof="BlogPosting">
  <h2 property="headline">Hello RDFa</h2>
  <span property="author" typeof="Person"><span property="name">Ada</span></span>
  <time property="datePublished" datetime="2024-02-01">Feb 1</time>
  <a property="url" href="https://blog.example.org/hello">link</a>
</div></body></html>"#;
    let s = schema(
        r#"
name: article
types: [BlogPosting]
fields:
  headline: text
  author: {type: list, items: text}
  published: {type: date, from: [{schema: datePublished}]}
  url: url
"#,
    );
    let f = run(&s, html);
    let top = &f.records[0];
    assert_eq!(one(top, "headline"), json!("Hello RDFa"));
    assert_eq!(values(top, "headline")[0].origin, Origin::Rdfa);
    assert_eq!(one(top, "author"), json!("Ada"));
    assert_eq!(one(top, "published"), json!("2024-02-01"));
    assert_eq!(one(top, "url"), json!("https://blog.example.org/hello"));
}

#[test]
fn rules_fall_back_in_order_and_required_absence_is_reported() {
    let html = r#"<html><head><meta name="author" content="Grace Hopper">
<link rel="canonical" href="/canonical"></head><body><p>no markup</p></body></html>"#;
    let s = schema(
        r#"
name: article
types: [Article]
fields:
  headline: {type: text, required: true}
  author: {type: text, from: [{schema: author}, {meta: author}]}
  url: {type: url, from: [{selector: "link[rel=canonical]", attribute: href}]}
"#,
    );
    let f = run(&s, html);
    let top = &f.records[0];
    assert_eq!(f.records.len(), 1);
    assert_eq!(one(top, "author"), json!("Grace Hopper"));
    assert_eq!(values(top, "author")[0].origin, Origin::Meta);
    let url = values(top, "url")[0];
    assert_eq!(url.value, json!("https://example.com/canonical"));
    assert_eq!(url.quote, "/canonical");
    assert!(url.grounded);
    assert!(
        f.dropped
            .iter()
            .any(|d| d.field == "headline" && d.reason == "required field not found")
    );
}

#[test]
fn the_guard_refuses_pages_over_the_limits() {
    let s = schema("name: a\nfields: {b: text}\n");
    let limits = Limits {
        max_elements: 3,
        ..Limits::default()
    };
    let html = "<div><div><div><div>x</div></div></div></div>";
    let e = fill(&s, html, None, &limits).unwrap_err();
    assert!(matches!(e, ExtractError::TooExpensive(_)), "{e}");
}

#[test]
fn hostile_json_ld_stays_bounded() {
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let mut wide = String::from("[");
    for i in 0..5_000 {
        wide.push_str(&format!("{{\"@type\":\"Offer\",\"price\":{i}}},"));
    }
    wide.push_str("{}]");
    let html = format!(
        "<html><head><script type=application/ld+json>{deep}</script>\
         <script type=application/ld+json>{wide}</script></head><body></body></html>"
    );
    let s = schema(
        "name: p\ntypes: [Product]\nfields: {name: text}\nentities:\n  offers: {types: [Offer], fields: {price: float}}\n",
    );
    let f = run(&s, &html);
    let offers = f.records.iter().filter(|r| r.entity == "offers").count();
    assert!(offers <= MAX_RECORDS_PER_LIST);
    assert!(offers > 0);
}

/// Many properties pointing at the same items through `@id` references: a path walk that
/// followed every route separately grew with the product of the fan-outs (here 500^3
/// routes, most of a minute, and without end for a property that is not there). Level by
/// level over distinct items, each item is looked at once per level.
#[test]
fn shared_items_do_not_multiply_a_path_walk() {
    let refs = |id: &str| -> String { vec![format!("{{\"@id\": \"urn:{id}\"}}"); 500].join(",") };
    let graph = [
        "{\"@type\": \"Event\", \"name\": \"Fair\", \"location\": {\"@id\": \"urn:p\"}}".to_owned(),
        format!(
            "{{\"@type\": \"Place\", \"@id\": \"urn:p\", \"address\": [{}]}}",
            refs("a")
        ),
        format!(
            "{{\"@type\": \"PostalAddress\", \"@id\": \"urn:a\", \"street\": [{}]}}",
            refs("s")
        ),
        format!(
            "{{\"@type\": \"Street\", \"@id\": \"urn:s\", \"part\": [{}]}}",
            refs("t")
        ),
        "{\"@type\": \"Thing\", \"@id\": \"urn:t\", \"name\": \"Main Street\"}".to_owned(),
    ];
    let html = format!(
        "<html><head><script type=application/ld+json>{{\"@context\": \"https://schema.org\", \
         \"@graph\": [{}]}}</script></head><body><h1>Fair</h1></body></html>",
        graph.join(",")
    );
    let s = schema(
        "name: e\ntypes: [Event]\nfields:\n  \
         street: {type: text, from: [{schema: location.address.street.part.name}]}\n  \
         zip: {type: text, from: [{schema: location.address.street.part.zip}]}\n",
    );
    let f = run(&s, &html);
    let of = |field: &str| -> Vec<serde_json::Value> {
        f.records[0]
            .values
            .iter()
            .filter(|v| v.field == field)
            .map(|v| v.value.clone())
            .collect()
    };
    assert_eq!(of("street"), vec![json!("Main Street")]);
    assert!(of("zip").is_empty());
}

/// Found by the `facts_markup` fuzz target: a selector read the element's bare text nodes
/// (`3. NovemberText.` across a `<p>`), which is not what the page shows, so the value was
/// not grounded; then a `<title>` inside the body, which the visible text breaks at. It now
/// reads the text as the visible text is built.
#[test]
fn selector_text_is_the_shown_text_and_grounded() {
    let s = schema(
        "name: p\nfields:\n  \
         heading: {type: text, from: [{selector: h1}]}\n  \
         by: {type: list, items: text, from: [{selector: \"[rel=author]\"}]}\n  \
         hidden: {type: text, from: [{selector: \"title\"}, {selector: \"template p\"}]}\n",
    );
    let html = "<html><head><title>Shop</title></head><body>\
        <h1>Anvil<div>3000</div><script>var x = 1;</script> <b>XL</b></h1>\
        <a rel=author>Erika <em>M.</em><p>T<title>Shop</title>*</p></a>\
        <template><p>Never shown</p></template></body></html>";
    let f = run(&s, html);
    let top = &f.records[0];
    assert_eq!(one(top, "heading"), json!("Anvil 3000 XL"));
    // A `<title>` in the body is not shown, but breaks the text like a block.
    assert_eq!(one(top, "by"), json!("Erika M. T *"));
    assert!(top.values.iter().all(|v| v.grounded), "{top:?}");
    // Elements that are not shown give no text to a selector.
    assert!(values(top, "hidden").is_empty(), "{top:?}");
}
