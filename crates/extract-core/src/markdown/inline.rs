//! Inline content: text with its whitespace collapsed and escaped, emphasis, code spans,
//! links and images with absolute URLs.

use dom_query::NodeRef;
use url::Url;

use super::escape::{code_span, destination, push_escaped};
use super::{BLOCK, MAX_DEPTH, MAX_URL_LEN, Renderer, element_name, flat_text, skipped};
use crate::limits::TooExpensive;

/// Inline Markdown being built: whitespace collapsed, with a pending space written only
/// before the next visible content.
#[derive(Default)]
pub(super) struct Inline {
    pub(super) s: String,
    pub(super) space: bool,
    /// The content started with whitespace (for emphasis, which must not).
    pub(super) lead: bool,
}

impl Inline {
    pub(super) fn text(&mut self, text: &str) {
        let mut first = true;
        for part in text.split(char::is_whitespace) {
            if !first {
                self.mark_space();
            }
            first = false;
            if !part.is_empty() {
                self.before_content();
                push_escaped(&mut self.s, part);
            }
        }
    }

    pub(super) fn mark_space(&mut self) {
        if self.s.is_empty() {
            self.lead = true;
        } else {
            self.space = true;
        }
    }

    pub(super) fn before_content(&mut self) {
        if self.space && !self.s.is_empty() && !self.s.ends_with('\n') {
            self.s.push(' ');
        }
        self.space = false;
    }

    /// Appends Markdown as is.
    pub(super) fn raw(&mut self, md: &str) {
        if md.is_empty() {
            return;
        }
        self.before_content();
        self.s.push_str(md);
    }

    pub(super) fn hard_break(&mut self) {
        self.space = false;
        if !self.s.is_empty() && !self.s.ends_with('\n') {
            self.s.push_str("\\\n");
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.s.trim().is_empty()
    }

    /// The content so far, without a dangling hard break; the buffer is emptied.
    pub(super) fn take(&mut self) -> String {
        let mut s = std::mem::take(&mut self.s);
        while s.ends_with("\\\n") {
            s.truncate(s.len() - 2);
        }
        self.space = false;
        self.lead = false;
        s.trim().to_string()
    }
}

impl Renderer<'_, '_> {
    pub(super) fn inline_children(
        &mut self,
        node: &NodeRef,
        depth: usize,
        inline: &mut Inline,
    ) -> Result<(), TooExpensive> {
        if depth > MAX_DEPTH {
            let text = flat_text(node, self.budget)?;
            inline.text(&text);
            return Ok(());
        }
        for child in node.children_it(false) {
            self.spend(0)?;
            if child.is_text() {
                let text = child.text();
                self.spend(text.len())?;
                inline.text(&text);
            } else if child.is_element() {
                let name = element_name(&child);
                if skipped(&child, &name) {
                    continue;
                }
                self.inline_element(&child, &name, depth + 1, inline)?;
            }
        }
        Ok(())
    }

    pub(super) fn inline_element(
        &mut self,
        node: &NodeRef,
        name: &str,
        depth: usize,
        inline: &mut Inline,
    ) -> Result<(), TooExpensive> {
        match name {
            "br" => inline.hard_break(),
            "img" => {
                if let Some(md) = self.image(node) {
                    inline.raw(&md);
                }
            }
            "input" => {
                if node
                    .attr("type")
                    .is_some_and(|t| t.eq_ignore_ascii_case("checkbox"))
                {
                    inline.raw(if node.has_attr("checked") {
                        "\\[x\\]"
                    } else {
                        "\\[ \\]"
                    });
                }
            }
            "a" => self.link(node, depth, inline)?,
            "code" | "kbd" | "samp" | "tt" => {
                let text = flat_text(node, self.budget)?;
                let code = text.split_whitespace().collect::<Vec<_>>().join(" ");
                if code.is_empty() {
                    return Ok(());
                }
                if text.starts_with(char::is_whitespace) {
                    inline.mark_space();
                }
                inline.raw(&code_span(&code));
                if text.ends_with(char::is_whitespace) {
                    inline.mark_space();
                }
            }
            "em" | "i" => {
                let was = std::mem::replace(&mut self.em, true);
                let delim = if was { "" } else { "*" };
                self.wrapped(node, depth, inline, delim)?;
                self.em = was;
            }
            "strong" | "b" => {
                let was = std::mem::replace(&mut self.strong, true);
                let delim = if was { "" } else { "**" };
                self.wrapped(node, depth, inline, delim)?;
                self.strong = was;
            }
            "del" | "s" | "strike" => {
                let was = std::mem::replace(&mut self.strike, true);
                let delim = if was { "" } else { "~~" };
                self.wrapped(node, depth, inline, delim)?;
                self.strike = was;
            }
            "wbr" => {}
            _ if BLOCK.contains(&name) => {
                // A block inside inline content (a `<div>` in a link): its text, set apart.
                inline.mark_space();
                self.inline_children(node, depth, inline)?;
                inline.mark_space();
            }
            _ => self.inline_children(node, depth, inline)?,
        }
        Ok(())
    }

    /// Inline content between `delim`s, with surrounding whitespace kept outside them
    /// (`*word*`, never `* word *`).
    pub(super) fn wrapped(
        &mut self,
        node: &NodeRef,
        depth: usize,
        inline: &mut Inline,
        delim: &str,
    ) -> Result<(), TooExpensive> {
        let mut inner = Inline::default();
        self.inline_children(node, depth, &mut inner)?;
        let (lead, trail) = (inner.lead, inner.space);
        let content = inner.take();
        if lead {
            inline.mark_space();
        }
        if !content.is_empty() {
            if delim.is_empty() || content.contains('\n') {
                inline.raw(&content);
            } else {
                inline.raw(&format!("{delim}{content}{delim}"));
            }
        }
        if trail {
            inline.mark_space();
        }
        Ok(())
    }

    pub(super) fn link(
        &mut self,
        node: &NodeRef,
        depth: usize,
        inline: &mut Inline,
    ) -> Result<(), TooExpensive> {
        let href = node.attr("href").and_then(|h| self.resolve(&h));
        if self.in_link || href.is_none() {
            return self.inline_children(node, depth, inline);
        }
        let mut inner = Inline::default();
        self.in_link = true;
        let rendered = self.inline_children(node, depth, &mut inner);
        self.in_link = false;
        rendered?;
        let (lead, trail) = (inner.lead, inner.space);
        let text = inner.take().replace("\\\n", " ");
        if lead {
            inline.mark_space();
        }
        if let Some(href) = href
            && !text.is_empty()
        {
            inline.raw(&format!("[{text}]({})", destination(&href)));
        }
        if trail {
            inline.mark_space();
        }
        Ok(())
    }

    pub(super) fn image(&mut self, node: &NodeRef) -> Option<String> {
        let src = ["src", "data-src", "data-original"]
            .iter()
            .filter_map(|a| node.attr(a))
            .find_map(|s| self.resolve(&s))?;
        let mut alt = String::new();
        let alt_text = node.attr("alt").unwrap_or_default();
        push_escaped(
            &mut alt,
            &alt_text.split_whitespace().collect::<Vec<_>>().join(" "),
        );
        Some(format!("![{alt}]({})", destination(&src)))
    }

    /// An absolute URL for `raw`, against the base when there is one; `None` for scripts,
    /// inline data and empty or oversized values.
    pub(super) fn resolve(&self, raw: &str) -> Option<String> {
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > MAX_URL_LEN {
            return None;
        }
        let lower: String = raw
            .chars()
            .take(11)
            .collect::<String>()
            .to_ascii_lowercase();
        if ["javascript:", "data:", "vbscript:"]
            .iter()
            .any(|p| lower.starts_with(p))
        {
            return None;
        }
        let url = match &self.ctx.base {
            Some(base) => base.join(raw).ok()?,
            None => match Url::parse(raw) {
                Ok(u) => u,
                // No page URL to resolve against: a relative link stays as written.
                Err(_) => return Some(raw.to_string()),
            },
        };
        // A reader can follow web and mail links; `file:` and app schemes lead nowhere.
        if !matches!(url.scheme(), "http" | "https" | "mailto" | "tel" | "ftp") {
            return None;
        }
        let url = url.to_string();
        (url.len() <= MAX_URL_LEN).then_some(url)
    }
}
