//! The Article Extraction Benchmark's shingle metric, so extraction quality is measured the
//! way published results are.
//!
//! Tokens are maximal runs of Unicode word characters (`\w+`); a text becomes the multiset of
//! its 4-token shingles (a text of fewer than 4 tokens is one shingle). Per page, true
//! positives are the shingles both sides share (with multiplicity), false positives the
//! predicted surplus, false negatives the true surplus. The three are divided by their sum so
//! every page weighs the same, whatever its length.

use std::collections::HashMap;

/// Shingle width used by the benchmark.
const SHINGLE: usize = 4;

/// Per-page shingle counts, already normalized so `tp + fp + fn_ == 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageScore {
    /// Share of shingles found on both sides.
    pub tp: f64,
    /// Share of predicted shingles that the truth lacks.
    pub fp: f64,
    /// Share of true shingles that the prediction lacks.
    pub fn_: f64,
}

impl PageScore {
    /// This page's precision, if it has any predicted shingle.
    pub fn precision(&self) -> Option<f64> {
        ratio(self.tp, self.fp, self.fn_)
    }

    /// This page's recall, if it has any true shingle.
    pub fn recall(&self) -> Option<f64> {
        ratio(self.tp, self.fn_, self.fp)
    }

    /// This page's own F1 (for reports per page; the corpus F1 is not the mean of these).
    pub fn f1(&self) -> f64 {
        let p = self.precision().unwrap_or(0.0);
        let r = self.recall().unwrap_or(0.0);
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

/// `tp / (tp + wrong)`, with the benchmark's convention that a page with no error at all
/// scores 1, and a page with nothing on that side is left out of the mean.
fn ratio(tp: f64, wrong: f64, other_wrong: f64) -> Option<f64> {
    if wrong == 0.0 && other_wrong == 0.0 {
        return Some(1.0);
    }
    let denom = tp + wrong;
    (denom > 0.0).then(|| tp / denom)
}

/// Corpus-level figures: means of the per-page ratios, and the F1 of those means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CorpusScore {
    /// Mean per-page precision.
    pub precision: f64,
    /// Mean per-page recall.
    pub recall: f64,
    /// Harmonic mean of `precision` and `recall`.
    pub f1: f64,
}

/// Splits a text into `\w+` tokens (letters, digits and underscore in any script).
pub fn tokens(text: &str) -> Vec<&str> {
    text.split(|c: char| !is_word_char(c))
        .filter(|t| !t.is_empty())
        .collect()
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn shingles(text: &str) -> HashMap<Vec<&str>, usize> {
    let toks = tokens(text);
    let mut out = HashMap::new();
    if toks.len() < SHINGLE {
        out.insert(toks, 1);
        return out;
    }
    for w in toks.windows(SHINGLE) {
        *out.entry(w.to_vec()).or_insert(0) += 1;
    }
    out
}

/// Scores one page's predicted text against its true text.
pub fn score_page(truth: &str, predicted: &str) -> PageScore {
    let t = shingles(truth);
    let p = shingles(predicted);
    let mut tp = 0usize;
    let mut fp = 0usize;
    for (sh, &pc) in &p {
        let tc = t.get(sh).copied().unwrap_or(0);
        tp += pc.min(tc);
        fp += pc.saturating_sub(tc);
    }
    let fn_: usize = t
        .iter()
        .map(|(sh, &tc)| tc.saturating_sub(p.get(sh).copied().unwrap_or(0)))
        .sum();
    let total = (tp + fp + fn_) as f64;
    if total == 0.0 {
        return PageScore {
            tp: 0.0,
            fp: 0.0,
            fn_: 0.0,
        };
    }
    PageScore {
        tp: tp as f64 / total,
        fp: fp as f64 / total,
        fn_: fn_ as f64 / total,
    }
}

/// Averages page scores the benchmark's way.
pub fn score_corpus(pages: &[PageScore]) -> CorpusScore {
    let mean = |xs: Vec<f64>| {
        if xs.is_empty() {
            0.0
        } else {
            xs.iter().sum::<f64>() / xs.len() as f64
        }
    };
    let precision = mean(pages.iter().filter_map(PageScore::precision).collect());
    let recall = mean(pages.iter().filter_map(PageScore::recall).collect());
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    CorpusScore {
        precision,
        recall,
        f1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_follow_unicode_word_characters() {
        assert_eq!(
            tokens("Hello, wörld! snake_case 42x — 東京"),
            ["Hello", "wörld", "snake_case", "42x", "東京"]
        );
    }

    #[test]
    fn identical_texts_score_one() {
        let s = score_page("one two three four five", "one two three four five");
        assert_eq!(s.precision(), Some(1.0));
        assert_eq!(s.recall(), Some(1.0));
    }

    #[test]
    fn counts_surplus_with_multiplicity() {
        // truth shingles: (a b c d), (b c d e); prediction adds a repeated shingle.
        let s = score_page("a b c d e", "a b c d e a b c d");
        // predicted: abcd x2, bcde, cdea, deab, eabc -> tp 2, fp 4, fn 0
        assert!((s.tp - 2.0 / 6.0).abs() < 1e-12);
        assert!((s.fp - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(s.fn_, 0.0);
        assert_eq!(s.recall(), Some(1.0));
    }

    #[test]
    fn short_texts_are_one_shingle() {
        let s = score_page("a b", "a b");
        assert_eq!(s.f1(), 1.0);
        let miss = score_page("a b", "a c");
        assert_eq!(miss.f1(), 0.0);
    }

    #[test]
    fn corpus_f1_is_harmonic_mean_of_mean_ratios() {
        let pages = [
            score_page("a b c d e f", "a b c d e f"),
            score_page("a b c d e f", "x y z w"),
        ];
        let c = score_corpus(&pages);
        assert!((c.precision - 0.5).abs() < 1e-12);
        assert!((c.recall - 0.5).abs() < 1e-12);
        assert!((c.f1 - 0.5).abs() < 1e-12);
    }
}
