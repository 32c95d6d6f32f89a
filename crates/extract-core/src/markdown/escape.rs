//! Escaping: text that must read as text in Markdown, code that must stay code.

/// Appends `text` to `out` with the characters that could start Markdown syntax inline
/// escaped. Line-start constructs (`#`, `>`, list markers) are handled by
/// [`escape_line_start`] once a paragraph's lines are known.
pub(crate) fn push_escaped(out: &mut String, text: &str) {
    let mut prev: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let escape = match c {
            '\\' | '`' | '*' | '[' | ']' => true,
            // `snake_case` cannot start emphasis inside a word; only a `_` at a word's edge can.
            '_' => {
                !(prev.is_some_and(char::is_alphanumeric)
                    && next.is_some_and(char::is_alphanumeric))
            }
            // Only before what could open a tag or an autolink.
            '<' => next.is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?')),
            // Only where it could start a character reference (`&amp;`, `&#38;`).
            '&' => looks_like_reference(&text[i + 1..]),
            '~' => next == Some('~'),
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
        prev = Some(c);
    }
}

fn looks_like_reference(rest: &str) -> bool {
    let body = rest
        .bytes()
        .take(33)
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'#')
        .count();
    body > 0 && rest.as_bytes().get(body) == Some(&b';')
}

/// Escapes what would make a line of a paragraph something else: an ATX heading, a
/// blockquote, a list item, a thematic break or a setext underline, a code fence.
pub(crate) fn escape_line_start(line: &str) -> String {
    let trimmed = line.trim_start();
    let first = match trimmed.chars().next() {
        Some(c) => c,
        None => return line.to_string(),
    };
    let rest = &trimmed[first.len_utf8()..];
    let followed_by_space = rest.is_empty() || rest.starts_with(' ');
    let escape_at = match first {
        '#' | '>' => Some(0),
        '-' | '+' if followed_by_space => Some(0),
        '=' | '-' if trimmed.chars().all(|c| c == first || c == ' ') => Some(0),
        '~' if rest.starts_with("~~") => Some(0),
        c if c.is_ascii_digit() => {
            // "1. " or "1) " starts an ordered list; escape the delimiter.
            let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
            let after = &trimmed[digits..];
            let delim = after.chars().next();
            let then = &after[delim.map_or(0, char::len_utf8)..];
            (digits <= 9
                && matches!(delim, Some('.' | ')'))
                && (then.is_empty() || then.starts_with(' ')))
            .then_some(digits)
        }
        _ => None,
    };
    match escape_at {
        Some(at) => {
            let lead = line.len() - trimmed.len();
            format!("{}\\{}", &line[..lead + at], &line[lead + at..])
        }
        None => line.to_string(),
    }
}

/// An inline code span holding `code` (whitespace already collapsed): delimited by one more
/// backtick than the longest run inside, padded when the code starts or ends with one.
pub(crate) fn code_span(code: &str) -> String {
    let ticks = "`".repeat(longest_run(code, '`') + 1);
    let pad = if code.starts_with('`') || code.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{ticks}{pad}{code}{pad}{ticks}")
}

/// The fence of a code block holding `code`: at least three backticks, more than any run
/// of backticks inside.
pub(crate) fn fence_for(code: &str) -> String {
    "`".repeat((longest_run(code, '`') + 1).max(3))
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for ch in s.chars() {
        if ch == c {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}

/// A link or image destination: in angle brackets when it holds characters that would end
/// a bare destination.
pub(crate) fn destination(url: &str) -> String {
    if url.contains([' ', '(', ')', '<', '>']) {
        format!("<{}>", url.replace('<', "%3C").replace('>', "%3E"))
    } else {
        url.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut out = String::new();
        push_escaped(&mut out, s);
        out
    }

    #[test]
    fn inline_specials_are_escaped_and_harmless_ones_kept() {
        assert_eq!(esc("a*b* [x] `c` \\"), "a\\*b\\* \\[x\\] \\`c\\` \\\\");
        assert_eq!(esc("snake_case _emph_"), "snake_case \\_emph\\_");
        assert_eq!(
            esc("1 < 2 and <b> &amp; & co"),
            "1 < 2 and \\<b> \\&amp; & co"
        );
        assert_eq!(esc("~~gone~~ ~ok"), "\\~~gone\\~~ ~ok");
    }

    #[test]
    fn line_starts_that_would_change_the_block_are_escaped() {
        assert_eq!(escape_line_start("# not a heading"), "\\# not a heading");
        assert_eq!(escape_line_start("> not a quote"), "\\> not a quote");
        assert_eq!(escape_line_start("- not an item"), "\\- not an item");
        assert_eq!(escape_line_start("1984. A year"), "1984\\. A year");
        assert_eq!(escape_line_start("2) second"), "2\\) second");
        assert_eq!(escape_line_start("==="), "\\===");
        assert_eq!(escape_line_start("-5 degrees"), "-5 degrees");
        assert_eq!(escape_line_start("3.14 is pi"), "3.14 is pi");
        assert_eq!(escape_line_start("plain"), "plain");
    }

    #[test]
    fn code_delimiters_outnumber_backticks_inside() {
        assert_eq!(code_span("a`b"), "``a`b``");
        assert_eq!(code_span("`x"), "`` `x ``");
        assert_eq!(fence_for("no ticks"), "```");
        assert_eq!(fence_for("```inner```"), "````");
        assert_eq!(
            destination("https://x.test/a_(b)"),
            "<https://x.test/a_(b)>"
        );
    }
}
