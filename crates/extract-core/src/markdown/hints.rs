//! What the page itself says about the content an extractor hands back, read before
//! Readability takes the page apart: the languages of its code blocks (Readability drops
//! classes, trafilatura every attribute of a code block), and the inline Markdown of
//! paragraphs holding links or images (trafilatura, as configured for the text, drops both).
//! Both are looked up by the block's text without its whitespace, so only the same
//! characters in the same order bring anything back.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use dom_query::{Document, NodeRef};

use super::{Context, Renderer, code_language, element_name, flat_text, has_block_child, skipped};
use crate::limits::{Budget, TooExpensive};

/// Blocks whose inline Markdown is kept when they hold a link or an image.
const LEAF_BLOCKS: &[&str] = &[
    "p",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "td",
    "th",
    "dd",
    "dt",
    "figcaption",
];

/// Most hints kept per page; a page with more is not an article.
const MAX_HINTS: usize = 20_000;

/// Code languages and inline Markdown of the original page, by normalized text.
#[derive(Debug, Default)]
pub(crate) struct SourceHints {
    languages: HashMap<u64, String>,
    inlines: HashMap<u64, String>,
}

impl SourceHints {
    /// Reads the hints of a parsed page (links resolved against `base`): every code
    /// block's language, and the inline Markdown of the blocks whose words are `wanted`
    /// (see [`leaf_keys`]; rendering every linked block of a page would cost more than the
    /// article needs).
    pub(crate) fn from_document(
        doc: &Document,
        base: Option<url::Url>,
        wanted: &HashSet<u64>,
        budget: &mut Budget,
    ) -> Result<Self, TooExpensive> {
        let ctx = Context {
            base,
            hints: None,
            relink: false,
        };
        let mut hints = Self::default();
        let root = doc.root();
        let mut stack: Vec<NodeRef> = root.children_it(true).collect();
        while let Some(node) = stack.pop() {
            budget.spend(1, "reading the page's code and links")?;
            if !node.is_element() {
                continue;
            }
            let name = element_name(&node);
            if skipped(&node, &name) {
                continue;
            }
            if hints.languages.len() + hints.inlines.len() >= MAX_HINTS {
                break;
            }
            let multi_line_code = name == "code" && node.text().contains('\n');
            if name == "pre" || multi_line_code {
                if let Some(lang) = code_language(&node) {
                    let text = flat_text(&node, budget)?;
                    if let Some(key) = key_of(&text) {
                        hints.languages.entry(key).or_insert(lang);
                    }
                }
                continue;
            }
            if LEAF_BLOCKS.contains(&name.as_str()) && !has_block_child(&node) {
                if !wanted.is_empty()
                    && let Some(key) = key_of(&flat_text(&node, budget)?)
                    && wanted.contains(&key)
                    && !hints.inlines.contains_key(&key)
                    && has_link_or_image(&node, budget)?
                {
                    let mut r = Renderer::new(&ctx, budget);
                    let md = r.leaf_inline(&node, 1)?;
                    hints.inlines.insert(key, md);
                }
                continue;
            }
            stack.extend(node.children_it(true));
        }
        Ok(hints)
    }

    /// The page's own inline Markdown for a block with the same words as `node`.
    pub(crate) fn inline_for(
        &self,
        node: &NodeRef,
        budget: &mut Budget,
    ) -> Result<Option<&str>, TooExpensive> {
        if self.inlines.is_empty() {
            return Ok(None);
        }
        let text = flat_text(node, budget)?;
        Ok(key_of(&text)
            .and_then(|k| self.inlines.get(&k))
            .map(String::as_str))
    }

    /// The language the page declared for a code block with this text.
    pub(crate) fn language_of(&self, code: &str) -> Option<&str> {
        key_of(code)
            .and_then(|k| self.languages.get(&k))
            .map(String::as_str)
    }
}

/// The keys of the blocks under `root` that [`SourceHints::inline_for`] may be asked about.
pub(crate) fn leaf_keys(root: &NodeRef, budget: &mut Budget) -> Result<HashSet<u64>, TooExpensive> {
    let mut keys = HashSet::new();
    let mut stack: Vec<NodeRef> = root.children_it(true).collect();
    while let Some(node) = stack.pop() {
        budget.spend(1, "reading the page's code and links")?;
        if !node.is_element() {
            continue;
        }
        let name = element_name(&node);
        if LEAF_BLOCKS.contains(&name.as_str()) && !has_block_child(&node) {
            if let Some(key) = key_of(&flat_text(&node, budget)?) {
                keys.insert(key);
            }
            continue;
        }
        stack.extend(node.children_it(true));
    }
    Ok(keys)
}

fn has_link_or_image(node: &NodeRef, budget: &mut Budget) -> Result<bool, TooExpensive> {
    for d in node.descendants_it() {
        budget.spend(1, "reading the page's code and links")?;
        if d.is_element() {
            let name = element_name(&d);
            if (name == "a" && d.has_attr("href")) || name == "img" {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The hash of the text's characters with all whitespace left out (extractors move spaces
/// around links: "North , Ahmad" for "North, Ahmad"), or `None` for a text without any.
fn key_of(text: &str) -> Option<u64> {
    let mut h = DefaultHasher::new();
    let mut any = false;
    for c in text.chars().filter(|c| !c.is_whitespace()) {
        c.hash(&mut h);
        any = true;
    }
    any.then(|| h.finish())
}
