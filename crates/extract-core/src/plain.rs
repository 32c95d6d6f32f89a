//! Text that is not HTML: paragraphs are separated by blank lines; in Markdown, ATX
//! headings (`# Title`) start sections.

use crate::blocks::{Block, BlockKind};

/// Splits plain text (or Markdown, when `markdown` is set) into blocks.
pub(crate) fn text_to_blocks(text: &str, markdown: bool) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut para: Vec<&str> = Vec::new();
    let flush = |para: &mut Vec<&str>, blocks: &mut Vec<Block>| {
        if !para.is_empty() {
            blocks.push(Block {
                kind: BlockKind::Paragraph,
                text: para.join("\n"),
            });
            para.clear();
        }
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            flush(&mut para, &mut blocks);
            continue;
        }
        if markdown && let Some((level, heading)) = atx_heading(line) {
            flush(&mut para, &mut blocks);
            blocks.push(Block {
                kind: BlockKind::Heading(level),
                text: heading.to_string(),
            });
            continue;
        }
        para.push(line);
    }
    flush(&mut para, &mut blocks);
    blocks
}

/// `## Heading ##` -> `(2, "Heading")`.
fn atx_heading(line: &str) -> Option<(u8, &str)> {
    let hashes = line.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &line[hashes..];
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let heading = rest.trim().trim_end_matches('#').trim_end();
    (!heading.is_empty()).then_some((hashes as u8, heading))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_split_on_blank_lines_and_markdown_headings() {
        let blocks = text_to_blocks(
            "# Top\n\nfirst line\nsecond line\n\n\n## Sub ##\nbody\n#tag",
            true,
        );
        let got: Vec<_> = blocks.iter().map(|b| (b.kind, b.text.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (BlockKind::Heading(1), "Top"),
                (BlockKind::Paragraph, "first line\nsecond line"),
                (BlockKind::Heading(2), "Sub"),
                (BlockKind::Paragraph, "body\n#tag"),
            ]
        );
    }

    #[test]
    fn plain_text_has_no_headings() {
        let blocks = text_to_blocks("# not a heading\n\ntext", false);
        assert!(blocks.iter().all(|b| b.kind == BlockKind::Paragraph));
    }
}
