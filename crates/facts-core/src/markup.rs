//! The markup backend: fills a schema from what a page declares about itself.
//!
//! One guarded parse of the page ([`extract_core::html::parse_guarded`]) and one walk of
//! its tree collect everything at once: JSON-LD blocks, microdata items, RDFa Lite items,
//! `<meta>` tags, `<html lang>`, `<title>` and the visible text (for pattern rules and
//! grounding). Selector rules then query the same tree. All three item syntaxes become one
//! model (typed items with named properties whose values are strings or nested items), so
//! a `schema:` rule reads JSON-LD, microdata and RDFa alike, in that order of preference.
//!
//! Bounded: the walk spends from an [`extract_core::Budget`] (one unit per node), at most
//! [`MAX_JSONLD_BLOCKS`] JSON-LD blocks of at most [`MAX_JSONLD_BYTES`] are read, items,
//! properties, metas and values per rule are capped, and nesting is followed
//! [`MAX_NESTING`] levels deep. Synchronous: HTML trees are not `Send`.

use std::collections::{HashMap, HashSet};

use dom_query::{Document, NodeRef};
use extract_core::{Budget, ExtractError, Limits};
use serde_json::Value;
use url::Url;

use crate::coerce::{MAX_TEXT_CHARS, coerce};
use crate::ground::{PageText, normalize_whitespace};
use crate::record::{Dropped, FactValue, Filled, Origin, Record, consolidate_for, record_key};
use crate::schema::{Field, Rule, Schema, compile_pattern};

/// Most JSON-LD blocks read per page.
pub const MAX_JSONLD_BLOCKS: usize = 32;
/// Largest JSON-LD block read.
pub const MAX_JSONLD_BYTES: usize = 256 * 1024;
/// Most items (JSON-LD objects, microdata and RDFa items together) per page.
pub const MAX_ITEMS: usize = 2_000;
/// Most properties of all items together per page.
pub const MAX_PROPS: usize = 20_000;
/// Most `<meta>` tags read per page.
pub const MAX_METAS: usize = 2_000;
/// Deepest nesting of JSON-LD values followed.
pub const MAX_NESTING: usize = 16;
/// Most values one rule yields.
pub const MAX_VALUES_PER_RULE: usize = 100;
/// Most item properties one rule's path walk looks at.
pub const MAX_VISITS_PER_RULE: usize = 20_000;
/// Most records of one entity list per page.
pub const MAX_RECORDS_PER_LIST: usize = 500;

/// A property's value: a declared string, or a nested item.
#[derive(Debug, Clone)]
enum Prop {
    Text(String),
    Item(usize),
}

/// One item of the page (a JSON-LD object, a microdata or RDFa item).
#[derive(Debug, Clone)]
struct Item {
    /// Type names without their vocabulary (`https://schema.org/Offer` is `Offer`).
    types: Vec<String>,
    props: Vec<(String, Prop)>,
    origin: Origin,
    /// A JSON-LD object that is only `{"@id": ...}`: a reference to another object.
    reference: Option<String>,
}

/// Everything the walk reads from the page.
#[derive(Default)]
struct Page {
    items: Vec<Item>,
    props: usize,
    metas: Vec<(String, String, Origin)>,
    lang: Option<String>,
    title: Option<String>,
    text: String,
    jsonld: Vec<String>,
    /// Normalised declared strings, for grounding values that are not in the visible text.
    declared: HashSet<String>,
    by_id: HashMap<String, usize>,
}

/// Elements whose content is never visible text.
const INVISIBLE: &[&str] = &["script", "style", "noscript", "template", "head", "title"];
/// Elements that do not separate words in the visible text.
const INLINE: &[&str] = &[
    "a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "i", "kbd", "mark", "q",
    "s", "samp", "small", "span", "strong", "sub", "sup", "time", "u", "var", "font",
];
/// Meta name prefixes of the OpenGraph protocol and its vocabularies.
const OG_PREFIXES: &[&str] = &[
    "og:", "article:", "book:", "profile:", "product:", "music:", "video:", "fb:",
];

fn local_name(s: &str) -> String {
    let s = s.trim();
    s.rsplit(['/', '#', ':']).next().unwrap_or(s).to_string()
}

fn element_name(node: &NodeRef) -> String {
    node.node_name()
        .map(|n| n.to_ascii_lowercase())
        .unwrap_or_default()
}

fn bounded(s: &str) -> String {
    if s.len() <= MAX_TEXT_CHARS * 4 {
        s.to_string()
    } else {
        s.chars().take(MAX_TEXT_CHARS + 1).collect()
    }
}

impl Page {
    fn new_item(&mut self, types: Vec<String>, origin: Origin) -> Option<usize> {
        if self.items.len() >= MAX_ITEMS {
            return None;
        }
        self.items.push(Item {
            types,
            props: Vec::new(),
            origin,
            reference: None,
        });
        Some(self.items.len() - 1)
    }

    fn add_prop(&mut self, item: usize, name: String, value: Prop) {
        if self.props >= MAX_PROPS {
            return;
        }
        self.props += 1;
        self.items[item].props.push((name, value));
    }

    fn read(doc: &Document, limits: &Limits) -> Result<Page, ExtractError> {
        let mut budget = Budget::new(limits);
        let mut page = Page::default();
        enum Step<'a> {
            Enter {
                node: NodeRef<'a>,
                md: Option<usize>,
                rdfa: Option<usize>,
                visible: bool,
            },
            Space,
        }
        let mut stack = vec![Step::Enter {
            node: doc.root(),
            md: None,
            rdfa: None,
            visible: true,
        }];
        while let Some(step) = stack.pop() {
            let (node, md, rdfa, visible) = match step {
                Step::Space => {
                    if !page.text.ends_with(' ') {
                        page.text.push(' ');
                    }
                    continue;
                }
                Step::Enter {
                    node,
                    md,
                    rdfa,
                    visible,
                } => (node, md, rdfa, visible),
            };
            budget.spend(1, "reading the page's markup")?;
            if node.is_text() {
                if visible && page.text.len() < limits.max_text_bytes {
                    page.text.push_str(&node.text());
                }
                continue;
            }
            if !node.is_element() && !node.is_document() {
                continue;
            }
            let name = element_name(&node);
            match name.as_str() {
                "script" => {
                    let is_ld = node
                        .attr("type")
                        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/ld+json"));
                    if is_ld && page.jsonld.len() < MAX_JSONLD_BLOCKS {
                        let text = node.text();
                        budget.spend(text.len() as u64, "reading JSON-LD")?;
                        if text.len() <= MAX_JSONLD_BYTES {
                            page.jsonld.push(text.to_string());
                        }
                    }
                    continue;
                }
                "html" if page.lang.is_none() => {
                    page.lang = node
                        .attr("lang")
                        .or_else(|| node.attr("xml:lang"))
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty());
                }
                "title" if page.title.is_none() => {
                    let t = normalize_whitespace(&bounded(&node.text()));
                    if !t.is_empty() {
                        page.title = Some(t);
                    }
                }
                "meta" if page.metas.len() < MAX_METAS => {
                    if let Some(content) = node.attr("content") {
                        let content = bounded(content.trim());
                        for attr in ["name", "property"] {
                            if let Some(key) = node.attr(attr) {
                                let key = key.trim().to_ascii_lowercase();
                                if key.is_empty() {
                                    continue;
                                }
                                let origin = if OG_PREFIXES.iter().any(|p| key.starts_with(p)) {
                                    Origin::OpenGraph
                                } else {
                                    Origin::Meta
                                };
                                page.metas.push((key, content.clone(), origin));
                            }
                        }
                    }
                }
                _ => {}
            }

            // Microdata: a property of the enclosing item, and maybe an item of its own.
            let mut md_child = md;
            let itemprop = node.attr("itemprop").map(|p| p.to_string());
            if node.has_attr("itemscope") {
                let types = node
                    .attr("itemtype")
                    .map(|t| t.split_whitespace().map(local_name).collect())
                    .unwrap_or_default();
                if let Some(new) = page.new_item(types, Origin::Microdata) {
                    if let (Some(parent), Some(props)) = (md, &itemprop) {
                        for p in props.split_whitespace() {
                            page.add_prop(parent, local_name(p), Prop::Item(new));
                        }
                    }
                    md_child = Some(new);
                }
            } else if let (Some(parent), Some(props)) = (md, &itemprop) {
                let value = microdata_value(&node, &name);
                for p in props.split_whitespace() {
                    page.add_prop(parent, local_name(p), Prop::Text(value.clone()));
                }
            }

            // RDFa Lite: `typeof` opens an item, `property` adds to the enclosing one.
            let mut rdfa_child = rdfa;
            let property = node.attr("property").map(|p| p.to_string());
            if let Some(t) = node.attr("typeof") {
                let types = t.split_whitespace().map(local_name).collect();
                if let Some(new) = page.new_item(types, Origin::Rdfa) {
                    if let (Some(parent), Some(props)) = (rdfa, &property) {
                        for p in props.split_whitespace() {
                            page.add_prop(parent, local_name(p), Prop::Item(new));
                        }
                    }
                    rdfa_child = Some(new);
                }
            } else if let (Some(parent), Some(props)) = (rdfa, &property) {
                let value = rdfa_value(&node, &name);
                for p in props.split_whitespace() {
                    page.add_prop(parent, local_name(p), Prop::Text(value.clone()));
                }
            }

            let child_visible = visible && !INVISIBLE.contains(&name.as_str());
            let block = !INLINE.contains(&name.as_str());
            if block {
                stack.push(Step::Space);
            }
            let children: Vec<NodeRef> = node.children_it(true).collect();
            for c in children {
                stack.push(Step::Enter {
                    node: c,
                    md: md_child,
                    rdfa: rdfa_child,
                    visible: child_visible,
                });
            }
            if block {
                stack.push(Step::Space);
            }
        }
        page.text = normalize_whitespace(&page.text);
        page.read_jsonld(&mut budget)?;
        page.collect_declared();
        page.by_id = page
            .items
            .iter()
            .enumerate()
            .filter(|(_, it)| it.reference.is_none())
            .filter_map(|(i, it)| {
                it.props.iter().find_map(|(k, v)| match v {
                    Prop::Text(id) if k == "@id" => Some((id.clone(), i)),
                    _ => None,
                })
            })
            .collect();
        Ok(page)
    }

    fn read_jsonld(&mut self, budget: &mut Budget) -> Result<(), ExtractError> {
        let blocks = std::mem::take(&mut self.jsonld);
        for raw in &blocks {
            budget.spend(raw.len() as u64, "reading JSON-LD")?;
            // A block that does not parse is skipped: the page declares nothing usable there.
            let Ok(v) = serde_json::from_str::<Value>(&extract_core::clean_jsonld_block(raw))
            else {
                continue;
            };
            let roots: Vec<&Value> = match &v {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            for root in roots {
                if let Some(graph) = root.get("@graph") {
                    match graph {
                        Value::Array(a) => a.iter().for_each(|g| {
                            self.jsonld_value(g, 0);
                        }),
                        other => {
                            self.jsonld_value(other, 0);
                        }
                    }
                } else {
                    self.jsonld_value(root, 0);
                }
            }
        }
        Ok(())
    }

    /// Converts one JSON-LD value; objects become items.
    fn jsonld_value(&mut self, v: &Value, depth: usize) -> Vec<Prop> {
        if depth > MAX_NESTING {
            return Vec::new();
        }
        match v {
            Value::String(s) => {
                let s = extract_core::decode_jsonld_entities(&bounded(s));
                vec![Prop::Text(s)]
            }
            Value::Number(n) => vec![Prop::Text(n.to_string())],
            Value::Bool(b) => vec![Prop::Text(b.to_string())],
            Value::Null => Vec::new(),
            Value::Array(a) => a
                .iter()
                .take(MAX_VALUES_PER_RULE)
                .flat_map(|x| self.jsonld_value(x, depth + 1))
                .collect(),
            Value::Object(m) => {
                if let Some(inner) = m.get("@value") {
                    return self.jsonld_value(inner, depth + 1);
                }
                let types = match m.get("@type") {
                    Some(Value::String(t)) => vec![local_name(t)],
                    Some(Value::Array(ts)) => ts
                        .iter()
                        .filter_map(Value::as_str)
                        .map(local_name)
                        .collect(),
                    _ => Vec::new(),
                };
                let Some(idx) = self.new_item(types, Origin::JsonLd) else {
                    return Vec::new();
                };
                if m.len() == 1
                    && let Some(id) = m.get("@id").and_then(Value::as_str)
                {
                    self.items[idx].reference = Some(id.to_string());
                    return vec![Prop::Item(idx)];
                }
                for (k, val) in m {
                    if k == "@type" || k == "@context" || k == "@graph" {
                        continue;
                    }
                    let name = if k == "@id" { k.clone() } else { local_name(k) };
                    for p in self.jsonld_value(val, depth + 1) {
                        self.add_prop(idx, name.clone(), p);
                    }
                }
                vec![Prop::Item(idx)]
            }
        }
    }

    /// An item, with a reference followed once.
    fn resolve(&self, idx: usize) -> usize {
        match &self.items[idx].reference {
            Some(id) => self.by_id.get(id).copied().unwrap_or(idx),
            None => idx,
        }
    }

    fn has_type(&self, idx: usize, types: &[String]) -> bool {
        self.items[idx]
            .types
            .iter()
            .any(|t| types.iter().any(|w| w.eq_ignore_ascii_case(t)))
    }

    /// The strings at a property path of an item, in order, at most
    /// [`MAX_VALUES_PER_RULE`]. The path is walked level by level over the set of distinct
    /// items reached, and at most [`MAX_VISITS_PER_RULE`] properties are looked at: JSON-LD
    /// `@id` references let many properties point at the same item, and a walk that
    /// followed every route separately grew with the product of the fan-outs (a hostile
    /// page of 82 KB kept a worker busy for seconds, and a deeper path without end).
    fn values_at(&self, idx: usize, path: &[&str], want_url: bool, out: &mut Vec<String>) {
        let Some((last, init)) = path.split_last() else {
            return;
        };
        if init.len() > MAX_NESTING {
            return;
        }
        let mut visits = 0usize;
        let mut frontier = vec![self.resolve(idx)];
        for name in init {
            let mut seen = std::collections::HashSet::new();
            let mut next = Vec::new();
            for &i in &frontier {
                for (n, value) in &self.items[i].props {
                    visits += 1;
                    if visits > MAX_VISITS_PER_RULE {
                        return;
                    }
                    if n != name {
                        continue;
                    }
                    if let Prop::Item(j) = value {
                        let j = self.resolve(*j);
                        if seen.insert(j) {
                            next.push(j);
                        }
                    }
                }
            }
            if next.is_empty() {
                return;
            }
            frontier = next;
        }
        for &i in &frontier {
            for (n, value) in &self.items[i].props {
                visits += 1;
                if visits > MAX_VISITS_PER_RULE {
                    return;
                }
                if n != last {
                    continue;
                }
                match value {
                    Prop::Text(s) => out.push(s.clone()),
                    Prop::Item(j) => {
                        if let Some(s) = self.display(*j, want_url) {
                            out.push(s);
                        }
                    }
                }
                if out.len() >= MAX_VALUES_PER_RULE {
                    return;
                }
            }
        }
    }

    /// The string that stands for a nested item used as a value: its name, else another
    /// naming property; for URL fields its URL first. A text field never takes an item's
    /// URL for its name (an author known only by a profile link has no name here).
    fn display(&self, idx: usize, want_url: bool) -> Option<String> {
        let idx = self.resolve(idx);
        const NAMING: &[&str] = &["name", "alternateName", "legalName", "headline", "text"];
        const LINKS: &[&str] = &["url", "contentUrl", "@id"];
        let order: Vec<&str> = if want_url {
            LINKS.iter().chain(NAMING).copied().collect()
        } else {
            NAMING.to_vec()
        };
        order.iter().find_map(|n| {
            self.items[idx].props.iter().find_map(|(k, v)| match v {
                Prop::Text(s) if k == n && !s.trim().is_empty() => Some(s.clone()),
                _ => None,
            })
        })
    }
}

/// An element's text as the page shows it, read by the same rules as the page's visible
/// text (no invisible elements; a space between blocks, none around inline elements), so a
/// selector's value is a quote of that text: `<h1>Anvil<div>3000</div></h1>` reads
/// `Anvil 3000`, not the `Anvil3000` of the bare text nodes. The two walks must agree: the
/// `facts_markup` fuzz target checks that every value is grounded. `None` for an element that
/// is not shown (inside `head`, `script`, `template`...). Reading stops a little past the
/// longest text kept.
fn shown_text(node: &NodeRef) -> Option<String> {
    let hidden = |n: &NodeRef| n.is_element() && INVISIBLE.contains(&element_name(n).as_str());
    if hidden(node) || node.ancestors_it(None).any(|a| hidden(&a)) {
        return None;
    }
    enum Step<'a> {
        Enter(NodeRef<'a>),
        Space,
    }
    let mut out = String::new();
    let mut stack = vec![Step::Enter(*node)];
    while let Some(step) = stack.pop() {
        if out.len() > MAX_TEXT_CHARS * 4 {
            break;
        }
        let node = match step {
            Step::Space => {
                out.push(' ');
                continue;
            }
            Step::Enter(node) => node,
        };
        if node.is_text() {
            out.push_str(&node.text());
            continue;
        }
        let name = element_name(&node);
        // As in `Page::read`: a script is no text and no break; the other hidden elements
        // give no text but break it like any block.
        if !node.is_element() || name == "script" {
            continue;
        }
        let block = !INLINE.contains(&name.as_str());
        if block {
            stack.push(Step::Space);
        }
        if !INVISIBLE.contains(&name.as_str()) {
            stack.extend(node.children_it(true).map(Step::Enter));
        }
        if block {
            stack.push(Step::Space);
        }
    }
    Some(normalize_whitespace(&bounded(&out)))
}

/// A microdata property's value, as the microdata specification reads it (and `content`
/// on any element, which pages use widely).
fn microdata_value(node: &NodeRef, name: &str) -> String {
    let attr = match name {
        "meta" => Some("content"),
        "audio" | "embed" | "iframe" | "img" | "source" | "track" | "video" => Some("src"),
        "a" | "area" | "link" => Some("href"),
        "object" => Some("data"),
        "data" | "meter" => Some("value"),
        "time" => Some("datetime"),
        _ => None,
    };
    if let Some(v) = attr
        .and_then(|a| node.attr(a))
        .or_else(|| node.attr("content"))
    {
        return bounded(v.trim());
    }
    normalize_whitespace(&bounded(&node.text()))
}

/// An RDFa Lite property's value: `content`, else the link target of links and media,
/// else `datetime` of a `<time>`, else the text.
fn rdfa_value(node: &NodeRef, name: &str) -> String {
    let linked = match name {
        "a" | "area" | "link" => node.attr("href"),
        "img" | "audio" | "video" | "source" | "embed" | "iframe" => node.attr("src"),
        "time" => node.attr("datetime"),
        _ => None,
    };
    if let Some(v) = node
        .attr("content")
        .or_else(|| node.attr("resource"))
        .or(linked)
    {
        return bounded(v.trim());
    }
    normalize_whitespace(&bounded(&node.text()))
}

/// Fills `schema` from what `html` declares. `url` is the page's URL (relative URLs
/// resolve against it). The first record is the top-level one (always present, possibly
/// without values); records of entity lists follow, consolidated by key.
///
/// # Errors
/// [`ExtractError::TooExpensive`] when the page is over `limits` (checked before parsing)
/// or its walk runs out of budget.
pub fn fill(
    schema: &Schema,
    html: &str,
    url: Option<&str>,
    limits: &Limits,
) -> Result<Filled, ExtractError> {
    let doc = extract_core::html::parse_guarded(html, limits)?;
    let page = Page::read(&doc, limits)?;
    let base = url.and_then(|u| Url::parse(u).ok());
    let visible = PageText::new(&page.text);
    let ctx = Ctx {
        page: &page,
        doc: &doc,
        base: base.as_ref(),
        visible: &visible,
    };
    let mut dropped = Vec::new();
    let mut records = Vec::new();

    // The page's main items: the first item of the schema's types in each syntax.
    let mut main: Vec<usize> = Vec::new();
    for origin in [Origin::JsonLd, Origin::Microdata, Origin::Rdfa] {
        if let Some(i) = (0..page.items.len())
            .find(|&i| page.items[i].origin == origin && page.has_type(i, &schema.types))
        {
            main.push(i);
        }
    }
    let mut values = Vec::new();
    for (name, field) in &schema.fields {
        ctx.fill_field(name, name, field, &main, true, &mut values, &mut dropped);
        if field.required && !values.iter().any(|v: &FactValue| &v.field == name) {
            dropped.push(Dropped {
                field: name.clone(),
                reason: "required field not found".into(),
            });
        }
    }
    records.push(Record {
        entity: schema.name.clone(),
        key: record_key(&schema.key, &values),
        values,
    });

    for (list_name, list) in &schema.entities {
        let mut n = 0usize;
        for i in 0..page.items.len() {
            if main.contains(&i) || !page.has_type(i, &list.types) {
                continue;
            }
            if n >= MAX_RECORDS_PER_LIST {
                dropped.push(Dropped {
                    field: list_name.clone(),
                    reason: format!("more than {MAX_RECORDS_PER_LIST} records on the page"),
                });
                break;
            }
            let mut values = Vec::new();
            let mut item_dropped = Vec::new();
            for (fname, field) in &list.fields {
                let path = format!("{list_name}.{fname}");
                ctx.fill_field(
                    fname,
                    &path,
                    field,
                    &[i],
                    false,
                    &mut values,
                    &mut item_dropped,
                );
            }
            dropped.extend(item_dropped);
            if values.is_empty() {
                continue;
            }
            if let Some((fname, _)) = list
                .fields
                .iter()
                .find(|(f, fd)| fd.required && !values.iter().any(|v| &v.field == *f))
            {
                dropped.push(Dropped {
                    field: format!("{list_name}.{fname}"),
                    reason: "required field missing: record dropped".into(),
                });
                continue;
            }
            n += 1;
            records.push(Record {
                entity: list_name.clone(),
                key: record_key(&list.key, &values),
                values,
            });
        }
    }
    Ok(Filled {
        records: consolidate_for(&schema.name, records),
        dropped,
    })
}

struct Ctx<'a> {
    page: &'a Page,
    doc: &'a Document,
    base: Option<&'a Url>,
    visible: &'a PageText,
}

impl Ctx<'_> {
    /// Applies a field's rules in order; the first rule that yields a usable value fills
    /// the field (a scalar takes its first usable value, a list all of that rule's).
    #[allow(clippy::too_many_arguments)]
    fn fill_field(
        &self,
        name: &str,
        path: &str,
        field: &Field,
        items: &[usize],
        page_rules: bool,
        out: &mut Vec<FactValue>,
        dropped: &mut Vec<Dropped>,
    ) {
        for rule in field.rules(name) {
            let want_url = field.value_type() == crate::schema::FieldType::Url;
            let found = self.apply(&rule, items, page_rules, want_url);
            let mut got = 0usize;
            for (raw, origin, from_attribute) in found {
                match coerce(field, &Value::String(raw.clone()), self.base) {
                    Ok(value) => {
                        if out.iter().any(|v| v.field == name && v.value == value) {
                            continue;
                        }
                        let quote = normalize_whitespace(&raw);
                        let grounded = from_attribute
                            || self.visible.contains(&quote)
                            || self.page.declared_contains(&quote);
                        out.push(FactValue {
                            field: name.to_string(),
                            value,
                            list_item: field.is_list(),
                            quote,
                            origin,
                            chunk_index: None,
                            confidence: None,
                            grounded,
                        });
                        got += 1;
                        if !field.is_list() {
                            return;
                        }
                    }
                    Err(reason) => dropped.push(Dropped {
                        field: path.to_string(),
                        reason,
                    }),
                }
            }
            if got > 0 {
                return;
            }
        }
    }

    /// The raw strings a rule finds, with their origin.
    ///
    /// The flag says the string was read verbatim from an attribute by a selector rule:
    /// declared by the page, though in no set the walk collected.
    fn apply(
        &self,
        rule: &Rule,
        items: &[usize],
        page_rules: bool,
        want_url: bool,
    ) -> Vec<(String, Origin, bool)> {
        let page = self.page;
        let mut out = Vec::new();
        match rule {
            Rule::Schema(p) => {
                let segs: Vec<&str> = p.split('.').collect();
                for &i in items {
                    let mut vals = Vec::new();
                    page.values_at(i, &segs, want_url, &mut vals);
                    if !vals.is_empty() {
                        let origin = page.items[i].origin;
                        out.extend(vals.into_iter().map(|v| (v, origin, false)));
                        break;
                    }
                }
            }
            _ if !page_rules => {}
            Rule::Meta(m) => out.extend(
                page.metas
                    .iter()
                    .filter(|(k, _, _)| k.eq_ignore_ascii_case(m))
                    .take(MAX_VALUES_PER_RULE)
                    .map(|(_, v, o)| (v.clone(), *o, false)),
            ),
            Rule::Lang => out.extend(page.lang.clone().map(|l| (l, Origin::Meta, false))),
            Rule::Title => out.extend(page.title.clone().map(|t| (t, Origin::Selector, false))),
            Rule::Selector {
                selector,
                attribute,
            } => {
                if let Some(sel) = self.doc.try_select(selector) {
                    for node in sel.nodes().iter().take(MAX_VALUES_PER_RULE) {
                        let v = match attribute {
                            Some(a) => node.attr(a).map(|v| bounded(v.trim())),
                            None => shown_text(node),
                        };
                        if let Some(v) = v.filter(|v| !v.is_empty()) {
                            out.push((v, Origin::Selector, attribute.is_some()));
                        }
                    }
                }
            }
            Rule::Pattern(p) => {
                if let Some(re) = compile_pattern(p) {
                    out.extend(
                        re.captures_iter(&page.text)
                            .filter_map(|c| c.get(1))
                            .take(MAX_VALUES_PER_RULE)
                            .map(|m| (m.as_str().to_string(), Origin::Pattern, false)),
                    );
                }
            }
        }
        out
    }
}

impl Page {
    /// Whether a quote is one of the strings the page declares: the grounding of values
    /// that are not in the visible text, such as a meta tag's content.
    fn declared_contains(&self, quote: &str) -> bool {
        self.declared.contains(quote)
    }

    /// Records every declared string, normalised, once the walk is over.
    fn collect_declared(&mut self) {
        let mut set = HashSet::new();
        for (_, v, _) in &self.metas {
            set.insert(normalize_whitespace(v));
        }
        for s in self.lang.iter().chain(self.title.iter()) {
            set.insert(normalize_whitespace(s));
        }
        for it in &self.items {
            for (_, p) in &it.props {
                if let Prop::Text(s) = p {
                    set.insert(normalize_whitespace(s));
                }
            }
        }
        self.declared = set;
    }
}

#[cfg(test)]
mod tests;
