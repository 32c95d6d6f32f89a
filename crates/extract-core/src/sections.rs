//! Sections: the main text cut at its headings, each with the path of headings above it.

use serde::{Deserialize, Serialize};

use crate::blocks::{Block, BlockKind, join_blocks};

/// What separates two sections in [`crate::Extracted::text`].
pub const SECTION_SEPARATOR: &str = "\n\n";

/// What joins the headings of a heading path for display: "Guide › Install › Linux".
pub const HEADING_TRAIL_SEPARATOR: &str = " › ";

/// A run of the main text under one heading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// Headings from the outermost to this section's own (empty before the first heading).
    pub heading_path: Vec<String>,
    /// The section's text, starting with its own heading line when it has one.
    pub text: String,
    /// The page the section is on, from 1, for paged documents (PDF); `None` for pages of
    /// the web.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

impl Section {
    /// The heading path as one line, "Guide › Install › Linux" (empty before the first
    /// heading).
    pub fn heading_trail(&self) -> String {
        self.heading_path.join(HEADING_TRAIL_SEPARATOR)
    }
}

/// Groups blocks into sections. Joining the sections' texts with [`SECTION_SEPARATOR`]
/// gives exactly `join_blocks(blocks)`, so chunk offsets can point into the whole text.
pub(crate) fn sections_from_blocks(blocks: &[Block]) -> Vec<Section> {
    let mut sections = Vec::new();
    // (level, text) of the headings currently open.
    let mut stack: Vec<(u8, String)> = Vec::new();
    let mut start = 0;
    for (i, b) in blocks.iter().enumerate() {
        let BlockKind::Heading(level) = b.kind else {
            continue;
        };
        if i > start {
            sections.push(section(&stack, &blocks[start..i]));
        }
        while stack.last().is_some_and(|(l, _)| *l >= level) {
            stack.pop();
        }
        stack.push((level, b.text.replace('\n', " ")));
        start = i;
    }
    if start < blocks.len() {
        sections.push(section(&stack, &blocks[start..]));
    }
    sections
}

fn section(stack: &[(u8, String)], blocks: &[Block]) -> Section {
    Section {
        heading_path: stack.iter().map(|(_, t)| t.clone()).collect(),
        text: join_blocks(blocks),
        page: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::Block;

    fn html_to_blocks(html: &str) -> Vec<Block> {
        crate::blocks::html_to_blocks(
            html,
            &crate::Limits::default(),
            &mut crate::Budget::unlimited(),
        )
        .unwrap()
    }

    #[test]
    fn heading_paths_follow_levels() {
        let blocks = html_to_blocks(
            "<p>intro</p><h1>A</h1><p>a</p><h2>A1</h2><p>a1</p><h3>A1x</h3><p>x</p>\
             <h2>A2</h2><p>a2</p><h1>B</h1><p>b</p>",
        );
        let got: Vec<(Vec<String>, String)> = sections_from_blocks(&blocks)
            .into_iter()
            .map(|s| (s.heading_path, s.text))
            .collect();
        let want = |p: &[&str], t: &str| (p.iter().map(|s| s.to_string()).collect(), t.to_string());
        assert_eq!(
            got,
            vec![
                want(&[], "intro"),
                want(&["A"], "A\n\na"),
                want(&["A", "A1"], "A1\n\na1"),
                want(&["A", "A1", "A1x"], "A1x\n\nx"),
                want(&["A", "A2"], "A2\n\na2"),
                want(&["B"], "B\n\nb"),
            ]
        );
    }

    #[test]
    fn the_heading_trail_joins_the_path() {
        let blocks = html_to_blocks("<h1>Guide</h1><h2>Install</h2><h3>Linux</h3><p>apt</p>");
        let sections = sections_from_blocks(&blocks);
        assert_eq!(
            sections.last().map(Section::heading_trail).as_deref(),
            Some("Guide › Install › Linux")
        );
    }

    #[test]
    fn sections_rejoin_to_the_whole_text() {
        let blocks = html_to_blocks("<ul><li>x</li></ul><h2>H</h2><ul><li>a</li><li>b</li></ul>");
        let joined: Vec<String> = sections_from_blocks(&blocks)
            .into_iter()
            .map(|s| s.text)
            .collect();
        assert_eq!(joined.join(SECTION_SEPARATOR), join_blocks(&blocks));
    }
}
