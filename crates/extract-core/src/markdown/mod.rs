//! Markdown of the main content: the HTML an extractor kept, rendered for people and
//! models to read. ATX headings, nested lists, pipe tables (raw HTML where a table cannot be
//! one), fenced code with its language, inline code, emphasis, links and images with
//! absolute URLs, blockquotes and rules; text escaped where Markdown would misread it.
//!
//! The renderer walks a guarded DOM and spends from the document's [`Budget`]. It recurses
//! over elements, at most [`MAX_DEPTH`] levels: below that, a subtree is read as plain text
//! without recursion, so a hostile nesting costs no stack.

mod code;
mod escape;
mod hints;
mod inline;
mod table;

pub(crate) use hints::{SourceHints, leaf_keys};

use dom_query::NodeRef;
use url::Url;

use crate::blocks::{Block, BlockKind};
use crate::limits::{Budget, TooExpensive};
use code::code_language;
use escape::{escape_line_start, fence_for, push_escaped};
use inline::Inline;

/// Element levels the renderer recurses into; deeper content is flattened to text.
pub(crate) const MAX_DEPTH: usize = 96;

/// Longest URL kept in a link or image; longer ones (inline data, tracking blobs) are
/// dropped and the link's text kept.
const MAX_URL_LEN: usize = 4096;

/// Elements whose content is never text to show.
const SKIP: &[&str] = &[
    "script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object", "embed",
    "select", "option", "button", "textarea", "canvas", "audio", "video", "map", "title", "link",
    "meta",
];

/// Elements that are blocks of their own in Markdown.
const BLOCK: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "header",
    "footer",
    "aside",
    "nav",
    "blockquote",
    "ul",
    "ol",
    "menu",
    "dl",
    "dd",
    "dt",
    "li",
    "table",
    "thead",
    "tbody",
    "tfoot",
    "tr",
    "td",
    "th",
    "caption",
    "figure",
    "figcaption",
    "address",
    "details",
    "summary",
    "form",
    "fieldset",
    "center",
    "body",
    "html",
    "hr",
    "pre",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hgroup",
    "dialog",
    "legend",
];

/// Where links resolve and what the original page tells about the extractor's output.
#[derive(Default)]
pub(crate) struct Context<'a> {
    /// The page's base URL (its `<base href>` against its URL), when it has one.
    pub base: Option<Url>,
    /// Read from the page before extraction: code languages, and the links and images of
    /// paragraphs an extractor flattened.
    pub hints: Option<&'a SourceHints>,
    /// Whether to restore flattened paragraphs from `hints` (trafilatura's output drops
    /// links and images; Readability's keeps them).
    pub relink: bool,
}

/// Renders the children of `node` (a document, fragment or element) as Markdown.
pub(crate) fn render(
    node: &NodeRef,
    ctx: &Context,
    budget: &mut Budget,
) -> Result<String, TooExpensive> {
    let mut r = Renderer::new(ctx, budget);
    let blocks = r.container(node, 0)?;
    Ok(join_blocks(&blocks))
}

/// Markdown of text blocks (plain text, or markup read without a tree): paragraphs and
/// headings, escaped.
pub(crate) fn from_blocks(blocks: &[Block]) -> String {
    let mut out: Vec<Md> = Vec::new();
    for b in blocks {
        let md = match b.kind {
            BlockKind::Heading(level) => {
                let mut text = String::new();
                push_escaped(&mut text, &b.text.replace('\n', " "));
                format!("{} {}", "#".repeat(usize::from(level.clamp(1, 6))), text)
            }
            BlockKind::Preformatted => {
                let fence = fence_for(&b.text);
                format!("{fence}\n{}\n{fence}", b.text)
            }
            BlockKind::ListItem => {
                let mut text = String::new();
                push_escaped(&mut text, &b.text.replace('\n', " "));
                let md = format!("- {text}");
                if let Some(Md::List(prev)) = out.last_mut() {
                    prev.push('\n');
                    prev.push_str(&md);
                    continue;
                }
                out.push(Md::List(md));
                continue;
            }
            BlockKind::Paragraph => paragraph_from_text(&b.text),
        };
        out.push(Md::Other(md));
    }
    join_blocks(&out)
}

/// Plain text as a Markdown paragraph: escaped, each line kept on its own line.
pub(crate) fn paragraph_from_text(text: &str) -> String {
    text.lines()
        .map(|line| {
            let mut s = String::new();
            push_escaped(&mut s, line.trim());
            escape_line_start(&s)
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// One rendered block. Lists are told apart so that a list inside a list item follows its
/// paragraph without a blank line (a tight list).
#[derive(Debug, Clone)]
enum Md {
    List(String),
    Other(String),
}

impl Md {
    fn text(&self) -> &str {
        match self {
            Md::List(s) | Md::Other(s) => s,
        }
    }
}

fn join_blocks(blocks: &[Md]) -> String {
    blocks
        .iter()
        .map(Md::text)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

struct Renderer<'c, 'b> {
    ctx: &'c Context<'c>,
    budget: &'b mut Budget,
    in_link: bool,
    em: bool,
    strong: bool,
    strike: bool,
}

impl<'c, 'b> Renderer<'c, 'b> {
    fn new(ctx: &'c Context<'c>, budget: &'b mut Budget) -> Self {
        Self {
            ctx,
            budget,
            in_link: false,
            em: false,
            strong: false,
            strike: false,
        }
    }

    fn spend(&mut self, units: usize) -> Result<(), TooExpensive> {
        self.budget.spend(1 + units as u64, "the Markdown renderer")
    }

    /// The blocks under `node`: block children rendered as blocks, runs of inline children
    /// as paragraphs.
    fn container(&mut self, node: &NodeRef, depth: usize) -> Result<Vec<Md>, TooExpensive> {
        let mut blocks = Vec::new();
        let mut inline = Inline::default();
        if depth > MAX_DEPTH {
            let text = flat_text(node, self.budget)?;
            blocks.push(Md::Other(paragraph_from_text(&text)));
            return Ok(blocks);
        }
        for child in node.children_it(false) {
            self.spend(0)?;
            if child.is_text() {
                let text = child.text();
                self.spend(text.len())?;
                inline.text(&text);
                continue;
            }
            if !child.is_element() {
                continue;
            }
            let name = element_name(&child);
            if skipped(&child, &name) {
                continue;
            }
            if name == "br" {
                inline.hard_break();
                continue;
            }
            if is_block(&child, &name) {
                flush_paragraph(&mut inline, &mut blocks);
                self.block(&child, &name, depth + 1, &mut blocks)?;
            } else {
                self.inline_element(&child, &name, depth + 1, &mut inline)?;
            }
        }
        flush_paragraph(&mut inline, &mut blocks);
        Ok(blocks)
    }

    fn block(
        &mut self,
        node: &NodeRef,
        name: &str,
        depth: usize,
        out: &mut Vec<Md>,
    ) -> Result<(), TooExpensive> {
        match name {
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                let level = usize::from(name.as_bytes()[1] - b'0');
                let text = self.leaf_inline(node, depth)?;
                let text = text.replace("\\\n", " ").replace('\n', " ");
                let text = text.trim();
                if !text.is_empty() {
                    // A trailing `#` would be read as a closing sequence.
                    let text = match text.strip_suffix('#') {
                        Some(t) => format!("{t}\\#"),
                        None => text.to_string(),
                    };
                    out.push(Md::Other(format!("{} {text}", "#".repeat(level))));
                }
            }
            "p" | "dt" | "dd" | "figcaption" | "summary" | "caption" | "legend" => {
                if has_block_child(node) {
                    out.extend(self.container(node, depth)?);
                } else {
                    let text = self.leaf_inline(node, depth)?;
                    if !text.is_empty() {
                        out.push(Md::Other(escape_lines(&text)));
                    }
                }
            }
            "ul" | "ol" | "menu" => {
                let list = self.list(node, name == "ol", depth)?;
                if !list.is_empty() {
                    out.push(Md::List(list));
                }
            }
            "pre" => out.push(Md::Other(self.code_block(node)?)),
            "code" => out.push(Md::Other(self.code_block(node)?)),
            "blockquote" => {
                let inner = self.container(node, depth)?;
                let inner = join_blocks(&inner);
                if !inner.is_empty() {
                    self.spend(inner.len())?;
                    out.push(Md::Other(prefix_lines(&inner, "> ", ">")));
                }
            }
            "hr" => out.push(Md::Other("---".into())),
            "table" => {
                let md = table::render(self, node, depth)?;
                out.extend(md);
            }
            _ => out.extend(self.container(node, depth)?),
        }
        Ok(())
    }

    /// The inline content of a block that holds no blocks (a paragraph, heading or list
    /// item's text): from the page's own markup when the extractor flattened it.
    fn leaf_inline(&mut self, node: &NodeRef, depth: usize) -> Result<String, TooExpensive> {
        if self.ctx.relink
            && let Some(hints) = self.ctx.hints
            && let Some(md) = hints.inline_for(node, self.budget)?
        {
            return Ok(md.to_string());
        }
        let mut inline = Inline::default();
        self.inline_children(node, depth, &mut inline)?;
        Ok(inline.take())
    }

    fn list(
        &mut self,
        node: &NodeRef,
        ordered: bool,
        depth: usize,
    ) -> Result<String, TooExpensive> {
        let mut n: u64 = if ordered {
            node.attr("start")
                .and_then(|s| s.trim().parse::<u64>().ok())
                .filter(|s| *s < 1_000_000_000)
                .unwrap_or(1)
        } else {
            1
        };
        let mut items: Vec<String> = Vec::new();
        let mut loose_text = Inline::default();
        for child in node.children_it(false) {
            self.spend(0)?;
            if child.is_text() {
                loose_text.text(&child.text());
                continue;
            }
            if !child.is_element() {
                continue;
            }
            let name = element_name(&child);
            if skipped(&child, &name) {
                continue;
            }
            let blocks = if name == "li" {
                if depth > MAX_DEPTH {
                    vec![Md::Other(paragraph_from_text(&flat_text(
                        &child,
                        self.budget,
                    )?))]
                } else if has_block_child(&child) {
                    self.container(&child, depth + 1)?
                } else {
                    let text = self.leaf_inline(&child, depth + 1)?;
                    vec![Md::Other(escape_lines(&text))]
                }
            } else if matches!(name.as_str(), "ul" | "ol") && !items.is_empty() {
                // A list written directly inside a list belongs to the item before it.
                let nested = self.list(&child, name == "ol", depth + 1)?;
                if let Some(last) = items.last_mut()
                    && !nested.is_empty()
                {
                    self.spend(nested.len())?;
                    last.push_str("\n  ");
                    last.push_str(&indent(&nested, "  "));
                }
                continue;
            } else {
                let mut v = Vec::new();
                self.block(&child, &name, depth + 1, &mut v)?;
                v
            };
            let content = join_item(&blocks);
            let marker = if ordered {
                format!("{n}. ")
            } else {
                "- ".to_string()
            };
            n += 1;
            self.spend(content.len())?;
            let pad = " ".repeat(marker.len());
            let body = indent(&content, &pad);
            let body = body.trim_start();
            items.push(if body.is_empty() {
                marker.trim_end().to_string()
            } else {
                format!("{marker}{body}")
            });
        }
        if items.is_empty() && !loose_text.is_empty() {
            return Ok(escape_lines(&loose_text.take()));
        }
        Ok(items.join("\n"))
    }
}

/// A list item's blocks: a nested list follows the text it belongs to on the next line;
/// other blocks are separated by a blank line.
fn join_item(blocks: &[Md]) -> String {
    let mut out = String::new();
    for b in blocks {
        if b.text().is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push_str(if matches!(b, Md::List(_)) {
                "\n"
            } else {
                "\n\n"
            });
        }
        out.push_str(b.text());
    }
    out
}

/// Each line of `s` after the first indented by `pad` (empty lines stay empty).
fn indent(s: &str, pad: &str) -> String {
    let mut out = String::with_capacity(s.len() + pad.len() * 4);
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(pad);
            }
        }
        out.push_str(line);
    }
    out
}

/// Every line of `s` prefixed (`> ` for a blockquote, `>` alone on empty lines).
fn prefix_lines(s: &str, prefix: &str, empty: &str) -> String {
    s.split('\n')
        .map(|l| {
            if l.is_empty() {
                empty.to_string()
            } else {
                format!("{prefix}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn flush_paragraph(inline: &mut Inline, blocks: &mut Vec<Md>) {
    if inline.is_empty() {
        inline.take();
        return;
    }
    let text = inline.take();
    blocks.push(Md::Other(escape_lines(&text)));
}

/// Escapes the line starts of a rendered paragraph (lines start only after hard breaks).
fn escape_lines(text: &str) -> String {
    text.split('\n')
        .map(escape_line_start)
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn element_name(node: &NodeRef) -> String {
    node.node_name()
        .map(|n| n.to_ascii_lowercase())
        .unwrap_or_default()
}

fn skipped(node: &NodeRef, name: &str) -> bool {
    (SKIP.contains(&name) && name != "input") || is_hidden(node)
}

fn is_hidden(node: &NodeRef) -> bool {
    node.has_attr("hidden")
        || node
            .attr("aria-hidden")
            .is_some_and(|v| v.as_ref() == "true")
        || node.attr("style").is_some_and(|s| {
            let s = s.to_ascii_lowercase().replace(' ', "");
            s.contains("display:none") || s.contains("visibility:hidden")
        })
}

/// Whether `node` is a block in Markdown. A `<code>` holding several lines outside a `<pre>`
/// is one too: trafilatura writes its code blocks that way.
fn is_block(node: &NodeRef, name: &str) -> bool {
    BLOCK.contains(&name) || (name == "code" && node.text().contains('\n'))
}

/// Whether any child of `node` is a block (its text cannot be rendered as one line run).
fn has_block_child(node: &NodeRef) -> bool {
    node.children_it(false)
        .filter(|c| c.is_element())
        .any(|c| is_block(&c, &element_name(&c)))
}

/// The text under `node` without recursion, skipping what is never text; whitespace kept.
pub(crate) fn flat_text(node: &NodeRef, budget: &mut Budget) -> Result<String, TooExpensive> {
    let mut out = String::new();
    let mut stack = vec![*node];
    while let Some(n) = stack.pop() {
        budget.spend(1, "the Markdown renderer")?;
        if n.is_text() {
            let t = n.text();
            budget.spend(t.len() as u64, "the Markdown renderer")?;
            out.push_str(&t);
            continue;
        }
        if n.is_element() {
            let name = element_name(&n);
            if SKIP.contains(&name.as_str()) {
                continue;
            }
            if name == "br" {
                out.push('\n');
                continue;
            }
            if BLOCK.contains(&name.as_str()) && !out.ends_with(char::is_whitespace) {
                out.push(' ');
            }
        }
        stack.extend(n.children_it(true));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
