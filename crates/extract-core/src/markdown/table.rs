//! Tables: a pipe table when every row is a plain row of cells, raw HTML when cells span
//! rows or columns or hold another table (a pipe table cannot say either), and the cells'
//! content as blocks when the table lays out a page (one row, one column, or cells holding
//! headings, code or quotes).

use dom_query::NodeRef;

use super::{MAX_DEPTH, Md, Renderer, element_name, flat_text, join_blocks, skipped};
use crate::limits::TooExpensive;

/// Renders `table` as Markdown blocks (its caption first, as a paragraph).
pub(super) fn render(
    r: &mut Renderer,
    table: &NodeRef,
    depth: usize,
) -> Result<Vec<Md>, TooExpensive> {
    let mut out = Vec::new();
    if depth > MAX_DEPTH {
        out.push(Md::Other(super::paragraph_from_text(&flat_text(
            table, r.budget,
        )?)));
        return Ok(out);
    }
    let mut caption = None;
    let mut rows: Vec<Vec<NodeRef>> = Vec::new();
    let mut complex = false;
    let mut sections = vec![*table];
    while let Some(section) = sections.pop() {
        for child in section.children_it(false) {
            if !child.is_element() {
                continue;
            }
            let name = element_name(&child);
            match name.as_str() {
                "caption" => caption = Some(child),
                "thead" | "tbody" | "tfoot" => sections.insert(0, child),
                "tr" => {
                    let cells: Vec<NodeRef> = child
                        .children_it(false)
                        .filter(|c| {
                            c.is_element() && matches!(element_name(c).as_str(), "td" | "th")
                        })
                        .collect();
                    complex |= cells.iter().any(spans);
                    rows.push(cells);
                }
                _ => {}
            }
        }
    }
    r.spend(rows.len())?;
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    // A table of one row or one column, or whose cells hold headings, code or quotes, lays
    // out content; it is not data, and its cells read as blocks.
    let mut layout = columns == 1 || rows.len() == 1;
    for cell in rows.iter().flatten() {
        if layout {
            break;
        }
        for d in cell.descendants_it() {
            r.spend(0)?;
            if !d.is_element() {
                continue;
            }
            match element_name(&d).as_str() {
                "pre" | "blockquote" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                    layout = true;
                    break;
                }
                "table" => complex = true,
                _ => {}
            }
        }
    }
    if layout {
        for cell in rows.iter().flatten() {
            out.extend(r.container(cell, depth + 2)?);
        }
        return Ok(out);
    }
    if !complex && let Some(caption) = caption {
        let text = r.leaf_inline(&caption, depth + 1)?;
        if !text.is_empty() {
            out.push(Md::Other(text));
        }
    }
    if columns == 0 {
        return Ok(out);
    }
    if complex {
        let mut html = String::from("<table>");
        raw_html(r, table, depth, &mut html)?;
        html.push_str("\n</table>");
        // Keep it one HTML block: a blank line would end it.
        let lines: Vec<&str> = html
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.trim().is_empty())
            .collect();
        out.push(Md::Other(lines.join("\n")));
        return Ok(out);
    }
    let mut lines = Vec::with_capacity(rows.len() + 1);
    for (i, row) in rows.iter().enumerate() {
        let mut cells = Vec::with_capacity(columns);
        for cell in row {
            let blocks = r.container(cell, depth + 2)?;
            // A cell is one line: its line breaks, paragraphs and list items as `<br>`.
            let text = join_blocks(&blocks)
                .replace("\\\n", "\n")
                .replace("\n\n", "\n")
                .replace('\n', " <br> ")
                .replace('|', "\\|");
            cells.push(text);
        }
        cells.resize(columns, String::new());
        lines.push(format!("| {} |", cells.join(" | ")));
        if i == 0 {
            lines.push(format!("|{}", " --- |".repeat(columns)));
        }
    }
    out.push(Md::Other(lines.join("\n")));
    Ok(out)
}

fn spans(cell: &NodeRef) -> bool {
    ["rowspan", "colspan"].iter().any(|a| {
        cell.attr(a)
            .and_then(|v| v.trim().parse::<u32>().ok())
            .is_some_and(|n| n > 1)
    })
}

/// The table as plain HTML: structure, spans, links and images (absolute), text escaped;
/// attributes, styles and scripts dropped. No blank line, so it stays one HTML block.
fn raw_html(
    r: &mut Renderer,
    node: &NodeRef,
    depth: usize,
    out: &mut String,
) -> Result<(), TooExpensive> {
    if depth > MAX_DEPTH {
        let text = flat_text(node, r.budget)?;
        push_html_text(out, &text);
        return Ok(());
    }
    for child in node.children_it(false) {
        r.spend(0)?;
        if child.is_text() {
            let text = child.text();
            r.spend(text.len())?;
            push_html_text(out, &text);
            continue;
        }
        if !child.is_element() {
            continue;
        }
        let name = element_name(&child);
        if skipped(&child, &name) {
            continue;
        }
        match name.as_str() {
            "table" | "caption" | "thead" | "tbody" | "tfoot" | "tr" | "th" | "td" => {
                if name == "tr" || name == "table" {
                    out.push('\n');
                }
                out.push('<');
                out.push_str(&name);
                for attr in ["rowspan", "colspan"] {
                    if let Some(n) = child.attr(attr).and_then(|v| v.trim().parse::<u32>().ok())
                        && n > 1
                    {
                        out.push_str(&format!(" {attr}=\"{}\"", n.min(1000)));
                    }
                }
                out.push('>');
                raw_html(r, &child, depth + 1, out)?;
                out.push_str(&format!("</{name}>"));
                if name == "table" {
                    out.push('\n');
                }
            }
            "a" => match child.attr("href").and_then(|h| r.resolve(&h)) {
                Some(href) => {
                    out.push_str("<a href=\"");
                    push_html_attr(out, &href);
                    out.push_str("\">");
                    raw_html(r, &child, depth + 1, out)?;
                    out.push_str("</a>");
                }
                None => raw_html(r, &child, depth + 1, out)?,
            },
            "img" => {
                if let Some(src) = ["src", "data-src"]
                    .iter()
                    .filter_map(|a| child.attr(a))
                    .find_map(|s| r.resolve(&s))
                {
                    out.push_str("<img src=\"");
                    push_html_attr(out, &src);
                    out.push_str("\" alt=\"");
                    push_html_attr(out, &child.attr("alt").unwrap_or_default());
                    out.push_str("\">");
                }
            }
            "br" => out.push_str("<br>"),
            _ if super::BLOCK.contains(&name.as_str()) => {
                if !out.ends_with(['>', ' ', '\n']) {
                    out.push(' ');
                }
                raw_html(r, &child, depth + 1, out)?;
                out.push(' ');
            }
            _ => raw_html(r, &child, depth + 1, out)?,
        }
    }
    Ok(())
}

fn push_html_text(out: &mut String, text: &str) {
    for (i, part) in text.split(char::is_whitespace).enumerate() {
        if i > 0 && !out.is_empty() && !out.ends_with([' ', '\n']) {
            out.push(' ');
        }
        for c in part.chars() {
            match c {
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '&' => out.push_str("&amp;"),
                c => out.push(c),
            }
        }
    }
}

fn push_html_attr(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' => out.push_str("&quot;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            c => out.push(c),
        }
    }
}
