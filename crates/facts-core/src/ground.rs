//! Grounding: whether a quote occurs in the page.
//!
//! The page's text and the quote are both normalised the same way before comparing: every
//! run of Unicode whitespace (`char::is_whitespace`: spaces, tabs, newlines, no-break
//! spaces...) becomes one ASCII space, and leading and trailing whitespace is removed.
//! Nothing else changes: the comparison is case-sensitive and byte-exact otherwise (no
//! Unicode normalisation, no punctuation folding), because a quote is meant to be copied
//! verbatim. An empty quote (or one of whitespace only) is never grounded.
//!
//! The page is normalised once ([`PageText::new`]); each lookup is a substring search with
//! `memchr::memmem`, linear in the page's length.

/// A page's text, whitespace-normalised once, for checking many quotes against it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageText {
    text: String,
}

impl PageText {
    /// Normalises `text` (see the module documentation).
    pub fn new(text: &str) -> Self {
        Self {
            text: normalize_whitespace(text),
        }
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `quote`, normalised the same way, occurs in the text.
    pub fn contains(&self, quote: &str) -> bool {
        let q = normalize_whitespace(quote);
        !q.is_empty() && memchr::memmem::find(self.text.as_bytes(), q.as_bytes()).is_some()
    }
}

/// Every run of Unicode whitespace to one space, trimmed.
pub fn normalize_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_runs_match_any_whitespace() {
        let page = PageText::new("The  price is\n\t$12.00\u{a0}per month.\n");
        assert_eq!(page.as_str(), "The price is $12.00 per month.");
        assert!(page.contains("price is $12.00 per"));
        assert!(page.contains("  price\nis  "));
        assert!(page.contains("$12.00\u{2003}per month."));
    }

    #[test]
    fn case_and_punctuation_are_verbatim() {
        let page = PageText::new("Ada Lovelace wrote the first program.");
        assert!(!page.contains("ada lovelace"));
        assert!(!page.contains("Ada Lovelace wrote the first program!"));
        assert!(page.contains("Ada Lovelace"));
    }

    #[test]
    fn empty_quotes_are_never_grounded() {
        let page = PageText::new("anything");
        assert!(!page.contains(""));
        assert!(!page.contains(" \n "));
        assert!(!PageText::new("").contains("x"));
    }
}
