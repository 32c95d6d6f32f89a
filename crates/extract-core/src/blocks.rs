//! Turns a fragment of (already cleaned) HTML into a flat list of text blocks: headings,
//! paragraphs, list items. Every extractor's output goes through this one converter so the
//! text the pipeline keeps looks the same whichever extractor produced it.

use dom_query::NodeRef;

#[cfg(test)]
use crate::html::parse_guarded;
#[cfg(test)]
use crate::limits::Limits;
use crate::limits::{Budget, TooExpensive};

/// What a block of text is, as far as sectioning cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockKind {
    /// `<h1>`..`<h6>`, with its level.
    Heading(u8),
    /// Any other block of running text.
    Paragraph,
    /// One `<li>`; consecutive items are kept on adjacent lines.
    ListItem,
    /// `<pre>`: whitespace is kept as written.
    Preformatted,
}

/// One block of text with whitespace already normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block {
    pub kind: BlockKind,
    pub text: String,
}

/// Elements whose text is never content.
const SKIP: &[&str] = &[
    "script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object", "embed",
    "select", "option", "button", "input", "textarea", "canvas", "audio", "video", "map", "title",
];

/// Elements that start and end a block of text.
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
    "dl",
    "dd",
    "dt",
    "table",
    "thead",
    "tbody",
    "tfoot",
    "tr",
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
    "dialog",
    "legend",
    "hgroup",
];

/// Parses `html` (an extractor's output, checked like any markup) and returns its blocks.
#[cfg(test)]
pub(crate) fn html_to_blocks(
    html: &str,
    limits: &Limits,
    budget: &mut Budget,
) -> Result<Vec<Block>, TooExpensive> {
    budget.spend(html.len() as u64, "scanning an extractor's output")?;
    let doc = parse_guarded(html, limits)?;
    let root = doc.root();
    node_to_blocks(&root, budget)
}

/// Returns the blocks under `node` (included).
pub(crate) fn node_to_blocks(
    node: &NodeRef,
    budget: &mut Budget,
) -> Result<Vec<Block>, TooExpensive> {
    let mut w = Walker::default();
    w.walk(node, false, budget)?;
    w.flush();
    Ok(w.blocks)
}

#[derive(Default)]
struct Walker {
    blocks: Vec<Block>,
    cur: String,
    kind: Option<BlockKind>,
}

/// Work left for the walker. An explicit stack instead of recursion: hostile pages nest
/// elements tens of thousands deep, which would overflow a thread's stack.
enum Step<'a> {
    /// Visit a node.
    Enter(NodeRef<'a>, bool),
    /// A block element is done: flush its text and restore the enclosing block's kind.
    Close(Option<BlockKind>),
    /// A table cell is done: separate it from the next one.
    CellEnd,
}

impl Walker {
    fn walk(
        &mut self,
        root: &NodeRef,
        in_pre: bool,
        budget: &mut Budget,
    ) -> Result<(), TooExpensive> {
        let mut stack = vec![Step::Enter(*root, in_pre)];
        while let Some(step) = stack.pop() {
            match step {
                Step::Enter(node, in_pre) => {
                    // One unit per node plus the text it adds.
                    let before = self.cur.len();
                    self.enter(&node, in_pre, &mut stack);
                    let added = self.cur.len().saturating_sub(before) as u64;
                    budget.spend(1 + added, "the block walker")?;
                }
                Step::Close(outer) => {
                    self.flush();
                    self.kind = outer;
                }
                Step::CellEnd => self.cur.push(' '),
            }
        }
        Ok(())
    }

    fn enter<'a>(&mut self, node: &NodeRef<'a>, in_pre: bool, stack: &mut Vec<Step<'a>>) {
        if node.is_text() {
            let text = node.text();
            if in_pre {
                self.cur.push_str(&text);
            } else {
                push_collapsed(&mut self.cur, &text);
            }
            return;
        }
        if !(node.is_element() || node.is_document() || node.is_fragment()) {
            return;
        }
        let name = node.node_name();
        let name = name.as_deref().unwrap_or("");
        if SKIP.contains(&name) || is_hidden(node) {
            return;
        }
        let mut child_pre = in_pre;
        match name {
            // A line break inside a paragraph still separates words (and lines of verse).
            "br" => {
                self.cur.push('\n');
                return;
            }
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                let level = name.as_bytes()[1] - b'0';
                self.open(BlockKind::Heading(level), stack);
            }
            "li" => self.open(BlockKind::ListItem, stack),
            "pre" => {
                self.open(BlockKind::Preformatted, stack);
                child_pre = true;
            }
            "td" | "th" => {
                // Cells of one row read as one line.
                if !self.cur.is_empty() && !self.cur.ends_with(char::is_whitespace) {
                    self.cur.push(' ');
                }
                stack.push(Step::CellEnd);
            }
            _ if BLOCK.contains(&name) => self.open(BlockKind::Paragraph, stack),
            _ => {}
        }
        // Reversed, so the first child is popped first.
        let children: Vec<NodeRef<'a>> = node.children_it(true).collect();
        stack.extend(children.into_iter().map(|c| Step::Enter(c, child_pre)));
    }

    /// Starts a block: the text so far is flushed, and a `Close` is scheduled for after
    /// the element's children.
    fn open(&mut self, kind: BlockKind, stack: &mut Vec<Step>) {
        self.flush();
        let outer = self.kind.replace(kind);
        stack.push(Step::Close(outer));
    }

    fn flush(&mut self) {
        let kind = self.kind.unwrap_or(BlockKind::Paragraph);
        let text = if kind == BlockKind::Preformatted {
            self.cur.trim_matches('\n').trim_end().to_string()
        } else {
            tidy_lines(&self.cur)
        };
        self.cur.clear();
        if !text.is_empty() {
            self.blocks.push(Block { kind, text });
        }
    }
}

/// Depth of the deepest element under `node`, counted without recursion.
pub(crate) fn max_depth(node: &NodeRef) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(*node, 0usize)];
    while let Some((n, d)) = stack.pop() {
        deepest = deepest.max(d);
        stack.extend(
            n.children_it(false)
                .filter(|c| c.is_element())
                .map(|c| (c, d + 1)),
        );
    }
    deepest
}

/// Appends `text` with every whitespace run turned into one space.
fn push_collapsed(out: &mut String, text: &str) {
    for (i, part) in text.split(char::is_whitespace).enumerate() {
        if i > 0 && !out.ends_with([' ', '\n']) {
            out.push(' ');
        }
        out.push_str(part);
    }
}

/// Trims each line and drops empty ones, so `<br>` runs do not leave blank lines.
fn tidy_lines(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for line in s.split('\n') {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
    }
    out
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

/// Joins blocks into one text: blank line between blocks, one newline between list items.
pub(crate) fn join_blocks(blocks: &[Block]) -> String {
    let mut out = String::new();
    let mut prev: Option<BlockKind> = None;
    for b in blocks {
        if let Some(p) = prev {
            let sep = if p == BlockKind::ListItem && b.kind == BlockKind::ListItem {
                "\n"
            } else {
                "\n\n"
            };
            out.push_str(sep);
        }
        out.push_str(&b.text);
        prev = Some(b.kind);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(html: &str) -> Vec<Block> {
        html_to_blocks(html, &Limits::default(), &mut Budget::unlimited()).unwrap()
    }

    fn texts(html: &str) -> Vec<(BlockKind, String)> {
        blocks(html).into_iter().map(|b| (b.kind, b.text)).collect()
    }

    #[test]
    fn splits_blocks_and_keeps_inline_text_together() {
        let got = texts(
            "<div><h2>Title <em>here</em></h2><p>One <b>two</b>\n   three.</p>\
             <ul><li>a</li><li>b</li></ul><script>var x=1;</script><p>Last<br>line</p></div>",
        );
        assert_eq!(
            got,
            vec![
                (BlockKind::Heading(2), "Title here".into()),
                (BlockKind::Paragraph, "One two three.".into()),
                (BlockKind::ListItem, "a".into()),
                (BlockKind::ListItem, "b".into()),
                (BlockKind::Paragraph, "Last\nline".into()),
            ]
        );
    }

    #[test]
    fn hidden_and_non_content_elements_are_dropped() {
        let got = texts(
            "<p>Shown</p><p style=\"display: none\">Hidden</p><div hidden>No</div>\
             <style>p{}</style><noscript>nojs</noscript>",
        );
        assert_eq!(got, vec![(BlockKind::Paragraph, "Shown".into())]);
    }

    #[test]
    fn joined_text_separates_blocks() {
        let b = blocks("<p>A</p><ul><li>x</li><li>y</li></ul><p>B</p>");
        assert_eq!(join_blocks(&b), "A\n\nx\ny\n\nB");
    }

    #[test]
    fn the_walker_spends_from_the_budget() {
        let limits = Limits {
            max_work: 50,
            ..Limits::default()
        };
        let mut budget = Budget::new(&limits);
        let err = html_to_blocks(&"<p>word</p>".repeat(100), &limits, &mut budget).unwrap_err();
        assert_eq!(err.kind, crate::Exceeded::Work);
    }
}
