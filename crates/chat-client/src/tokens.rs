//! A rough token count, for packing text into a request within a token budget without
//! the model's tokenizer (which differs per model and is not available to the client).

/// Tokens a chat template adds around each message (role markers, separators). Chat
/// templates spend 3 to 5 tokens per message; 4 is the figure OpenAI documents.
pub const MESSAGE_OVERHEAD_TOKENS: u32 = 4;

/// A rough, deliberately generous estimate of the tokens `text` takes.
///
/// ASCII characters count a quarter of a token each (English prose runs about 4
/// characters a token on current tokenizers), every other character three quarters (a
/// Cyrillic or Greek letter is about half a token, a CJK ideograph from half to one and a
/// half), and the sum is rounded up. It does not include [`MESSAGE_OVERHEAD_TOKENS`]: add
/// that once per message when estimating a whole request
/// ([`crate::ChatRequest::estimate_prompt_tokens`] does).
///
/// Expect it to be off by tens of percent either way on unusual text (code, numbers,
/// base64); leave headroom in the budget rather than packing to the last token.
pub fn estimate_tokens(text: &str) -> u32 {
    // Counted in quarter-tokens so the sum stays an integer.
    let quarters: u64 = text
        .chars()
        .map(|c| if c.is_ascii() { 1u64 } else { 3 })
        .sum();
    u32::try_from(quarters.div_ceil(4)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_is_a_quarter_token_per_char_rounded_up() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("a"), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens(&"x".repeat(4000)), 1000);
    }

    #[test]
    fn other_scripts_count_more_per_char() {
        // Four ideographs: three quarter-tokens each.
        assert_eq!(estimate_tokens("日本語文"), 3);
        assert!(estimate_tokens("привет мир") > estimate_tokens("hello world"));
    }
}
