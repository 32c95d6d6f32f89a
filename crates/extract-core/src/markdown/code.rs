//! Code blocks: fenced, with the language the page gives.

use dom_query::NodeRef;

use super::escape::fence_for;
use super::{Renderer, element_name};
use crate::limits::{Budget, TooExpensive};

impl Renderer<'_, '_> {
    pub(super) fn code_block(&mut self, node: &NodeRef) -> Result<String, TooExpensive> {
        let code = preformatted_text(node, self.budget)?;
        // Blank lines around the code belong to the markup; the first line's indentation
        // belongs to the code.
        let code = code.trim_start_matches(['\n', '\r']).trim_end().to_string();
        let lang = code_language(node).or_else(|| {
            self.ctx
                .hints
                .and_then(|h| h.language_of(&code))
                .map(str::to_string)
        });
        let fence = fence_for(&code);
        Ok(format!(
            "{fence}{}\n{code}\n{fence}",
            lang.as_deref().unwrap_or("")
        ))
    }
}

/// The programming language a code block declares: `class="language-x"` / `lang-x` /
/// `highlight-source-x` on the block, its `<code>` or a wrapper, or `data-lang`.
pub(crate) fn code_language(node: &NodeRef) -> Option<String> {
    let mut candidates: Vec<NodeRef> = vec![*node];
    if let Some(code) = node
        .children_it(false)
        .find(|c| c.is_element() && element_name(c) == "code")
    {
        candidates.push(code);
    }
    candidates.extend(node.ancestors_it(Some(2)).filter(|a| a.is_element()));
    for n in &candidates {
        for attr in ["data-lang", "data-language"] {
            if let Some(lang) = n.attr(attr).and_then(|v| clean_language(&v)) {
                return Some(lang);
            }
        }
        if let Some(class) = n.attr("class") {
            for token in class.split_whitespace() {
                let lower = token.to_ascii_lowercase();
                for prefix in ["language-", "lang-", "highlight-source-", "brush:"] {
                    if let Some(lang) = lower.strip_prefix(prefix).and_then(clean_language) {
                        return Some(lang);
                    }
                }
            }
        }
    }
    // `<pre lang="x">` (pip's documentation, some blog engines): last, as `lang` usually
    // names a natural language.
    [*node]
        .iter()
        .chain(candidates.get(1))
        .find_map(|n| n.attr("lang").and_then(|v| clean_language(&v)))
}

fn clean_language(raw: &str) -> Option<String> {
    let lang = raw.trim().to_ascii_lowercase();
    (!lang.is_empty()
        && lang.len() <= 32
        && lang
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '#' | '.' | '-')))
    .then_some(lang)
}

/// The text of a code block as written: text nodes whole, `<br>` as a line break.
fn preformatted_text(node: &NodeRef, budget: &mut Budget) -> Result<String, TooExpensive> {
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
            if matches!(name.as_str(), "script" | "style" | "template") {
                continue;
            }
            if name == "br" {
                out.push('\n');
                continue;
            }
        }
        stack.extend(n.children_it(true));
    }
    Ok(out.replace("\r\n", "\n"))
}
