//! Bounds on what goes back to the assistant: every tool result and every resource is at
//! most [`MAX_RESULT_BYTES`] of text, and a cut one says so at its end.
//!
//! An assistant's context is small and costly; an answer that fills it hides the rest of the
//! conversation. The tools ask the API for bounded pages already (a search's `limit`, a
//! trail's `limit`), so the cut is the last line of defence, not the usual path.

use serde_json::Value;

/// Largest text of one tool result or resource read, in bytes (64 KiB).
pub const MAX_RESULT_BYTES: usize = 64 * 1024;

/// Longest chunk text of one search hit, in characters; a longer one ends with `…`.
pub const MAX_HIT_CHARS: usize = 4_000;

/// `text` cut to at most `max` bytes at a character boundary, and whether it was cut.
pub fn cut(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

/// `text` bounded to [`MAX_RESULT_BYTES`] in all: when it is longer, its start and a last
/// line that says how much of it is shown, and what to do to see the rest.
pub fn bounded(text: String, hint: &str) -> String {
    if text.len() <= MAX_RESULT_BYTES {
        return text;
    }
    // The note's own length comes out of the budget: with the largest count it can show, it
    // is at least as long as the note written below, so the whole stays within the bound.
    let longest_note = format!(
        "\n[truncated: {MAX_RESULT_BYTES} of {} bytes shown; {hint}]",
        text.len()
    );
    let (head, _) = cut(&text, MAX_RESULT_BYTES.saturating_sub(longest_note.len()));
    let shown = head.len();
    format!(
        "{head}\n[truncated: {shown} of {} bytes shown; {hint}]",
        text.len()
    )
}

/// A JSON value as indented text, bounded as [`bounded`].
pub fn json_text(value: &Value, hint: &str) -> String {
    // A `Value` always serializes.
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    bounded(text, hint)
}

/// `s` cut to `max` characters, with `…` when cut.
pub fn clip_chars(s: &str, max: usize) -> Option<String> {
    let mut chars = s.char_indices();
    let (end, _) = chars.nth(max)?;
    let mut out = s[..end].to_owned();
    out.push('…');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(bounded("abc".into(), "x"), "abc");
        let exact = "a".repeat(MAX_RESULT_BYTES);
        assert_eq!(bounded(exact.clone(), "x"), exact);
    }

    #[test]
    fn long_text_is_cut_within_the_bound_and_says_so() {
        // Multi-byte characters across the cut: never split one.
        let long = "é".repeat(MAX_RESULT_BYTES);
        let out = bounded(long.clone(), "ask for less");
        assert!(out.len() <= MAX_RESULT_BYTES, "{}", out.len());
        let note = out.lines().last().unwrap();
        assert!(note.starts_with("[truncated: "), "{note}");
        assert!(
            note.ends_with(&format!(" of {} bytes shown; ask for less]", long.len())),
            "{note}"
        );
        let shown: usize = note["[truncated: ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(out.len(), shown + 1 + note.len());
    }

    #[test]
    fn cut_respects_character_boundaries() {
        assert_eq!(cut("aé", 2), ("a", true));
        assert_eq!(cut("aé", 3), ("aé", false));
    }

    #[test]
    fn clip_counts_characters() {
        assert_eq!(clip_chars("ééé", 3), None);
        assert_eq!(clip_chars("éééé", 3).as_deref(), Some("ééé…"));
    }
}
