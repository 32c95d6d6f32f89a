//! Chooses between the two extractors' outputs by a quality signal that needs no ground truth.
//!
//! Readability (dom_smoothie) almost never misses article text but often keeps boilerplate
//! around it (bylines, share prompts, related links): high recall, lower precision.
//! Trafilatura is more precise but now and then stops early (a page of several parts) or
//! grabs the wrong container. When the two agree that trafilatura's text is *inside*
//! Readability's, the surplus Readability kept is most likely boilerplate, so the tighter
//! text wins; when trafilatura's text is much shorter (a truncation) or reaches outside
//! Readability's (a different container), Readability's is kept.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::metric::tokens;

/// Trafilatura's text must keep at least this share of Readability's tokens: below it, the
/// difference is more likely a truncated article than trimmed boilerplate.
const MIN_LENGTH_RATIO: f64 = 0.5;
/// Share of trafilatura's shingles that must also be in Readability's text for the two to
/// count as "the same article, one tighter than the other".
const MIN_CONTAINMENT: f64 = 0.9;

/// Which extractors run on an HTML page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Both, and the tighter text when they agree (best quality; about 140 pages/s).
    #[default]
    Combined,
    /// Readability (dom_smoothie) only: about three times faster, more boilerplate kept.
    Readability,
    /// Trafilatura only.
    Trafilatura,
}

/// Which extractor produced the main text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Extractor {
    /// Readability (dom_smoothie) alone.
    Readability,
    /// Trafilatura, chosen as the tighter of two agreeing extractions or as the only one.
    Trafilatura,
    /// Neither found an article: the visible text of the whole body.
    Body,
    /// Not HTML: the text as given, split into paragraphs.
    PlainText,
    /// A PDF: the text of its pages (see [`crate::pdf`]).
    Pdf,
}

impl Extractor {
    /// A short stable name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Readability => "readability",
            Self::Trafilatura => "trafilatura",
            Self::Body => "body",
            Self::PlainText => "plain_text",
            Self::Pdf => "pdf",
        }
    }
}

/// Whether the tighter trafilatura text should replace Readability's.
pub(crate) fn prefer_tighter(readability: &str, trafilatura: &str) -> bool {
    let r = tokens(readability);
    let t = tokens(trafilatura);
    if t.is_empty() || t.len() > r.len() {
        return false;
    }
    if (t.len() as f64) < MIN_LENGTH_RATIO * r.len() as f64 {
        return false;
    }
    containment(&t, &r) >= MIN_CONTAINMENT
}

/// Share of `inner`'s 4-token shingles (with multiplicity) also found in `outer`.
fn containment(inner: &[&str], outer: &[&str]) -> f64 {
    let inner = shingle_counts(inner);
    let outer = shingle_counts(outer);
    let total: usize = inner.values().sum();
    if total == 0 {
        return 0.0;
    }
    let shared: usize = inner
        .iter()
        .map(|(h, &c)| c.min(outer.get(h).copied().unwrap_or(0)))
        .sum();
    shared as f64 / total as f64
}

/// Shingles hashed to 64 bits: collisions are negligible at article sizes and hashing avoids
/// allocating a vector per shingle.
fn shingle_counts(toks: &[&str]) -> HashMap<u64, usize> {
    let mut out = HashMap::new();
    let width = 4.min(toks.len().max(1));
    for w in toks.windows(width) {
        let mut h = DefaultHasher::new();
        w.hash(&mut h);
        *out.entry(h.finish()).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARTICLE: &str = "The river rose overnight and flooded the lower town. Residents were \
        evacuated by boat before dawn, and the council opened the school as a shelter. \
        Engineers said the levee held, but the pumps failed when the power went out.";

    #[test]
    fn tighter_text_inside_the_looser_one_wins() {
        let loose = format!(
            "Share this article. Sign up for our newsletter. {ARTICLE} Related stories: more news"
        );
        assert!(prefer_tighter(&loose, ARTICLE));
    }

    #[test]
    fn much_shorter_text_is_a_truncation_not_a_trim() {
        let first_sentence = "The river rose overnight and flooded the lower town.";
        assert!(!prefer_tighter(ARTICLE, first_sentence));
    }

    #[test]
    fn text_from_elsewhere_on_the_page_is_not_preferred() {
        let other = "Cookie policy and terms of use apply to all readers of this site. \
            Subscribe today for unlimited access to every story we publish online.";
        assert!(!prefer_tighter(ARTICLE, other));
        // Longer than Readability's text: never "tighter".
        assert!(!prefer_tighter(ARTICLE, &format!("{ARTICLE} {other}")));
    }
}
