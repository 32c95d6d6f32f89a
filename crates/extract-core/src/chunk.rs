//! Chunks: sections cut into pieces of bounded size, overlapping so a sentence cut at a
//! boundary is still whole in one of the two neighbours. Chunks never cross a section, so
//! each carries one heading path.

use serde::{Deserialize, Serialize};

use crate::limits::{Budget, Exceeded, Limits, TooExpensive};
use crate::sections::{SECTION_SEPARATOR, Section};

/// Smallest `max_chars` honoured; anything below is raised to it so chunking always
/// makes progress with whole words.
const MIN_MAX_CHARS: usize = 32;

/// Size bounds of chunks, in characters (Unicode scalar values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkOptions {
    /// Largest chunk. Raised to 32 if smaller.
    pub max_chars: usize,
    /// How many characters a chunk repeats from the end of the previous one in the same
    /// section. Capped at half of `max_chars`, so every chunk adds new text.
    pub overlap_chars: usize,
}

impl Default for ChunkOptions {
    /// 1,000 characters (a few paragraphs) with 150 characters of overlap: with its title
    /// and headings, such a chunk of English is about 240 word pieces, inside the 256 that
    /// all-MiniLM-L6-v2 reads (at 1,500, half the chunks ran past it).
    fn default() -> Self {
        Self {
            max_chars: 1000,
            overlap_chars: 150,
        }
    }
}

/// One piece of the main text, as stored and embedded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Position in the document, from 0.
    pub index: usize,
    /// The heading path of the section the chunk comes from.
    pub heading_path: Vec<String>,
    /// The chunk's text: exactly `whole_text[char_start..char_end]` (in characters).
    pub text: String,
    /// First character of the chunk in [`crate::Extracted::text`].
    pub char_start: usize,
    /// One past the last character of the chunk in [`crate::Extracted::text`].
    pub char_end: usize,
    /// The page the chunk is on, from 1, for paged documents (PDF): its section's page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

impl Chunk {
    /// The heading path as one line, "Guide › Install › Linux" (see
    /// [`crate::Section::heading_trail`]).
    pub fn heading_trail(&self) -> String {
        self.heading_path
            .join(crate::sections::HEADING_TRAIL_SEPARATOR)
    }

    /// The text to embed: the document title and the heading path, then the chunk. A
    /// chunk such as "Run it." means little alone; under "Guide > Install" it is findable.
    pub fn embedding_text(&self, title: Option<&str>) -> String {
        let mut context: Vec<&str> = title.into_iter().filter(|t| !t.trim().is_empty()).collect();
        // A section's own heading is usually its first line already; the path still helps
        // for the chunks after the first.
        context.extend(self.heading_path.iter().map(String::as_str));
        context.dedup();
        if context.is_empty() {
            self.text.clone()
        } else {
            format!("{}\n\n{}", context.join(" > "), self.text)
        }
    }
}

/// Cuts `sections` into chunks. Offsets refer to the sections' texts joined with
/// [`SECTION_SEPARATOR`], which is [`crate::Extracted::text`] for an extraction's sections.
/// No caps: see [`chunk_in`] for fetched documents.
pub fn chunk(sections: &[Section], opts: ChunkOptions) -> Vec<Chunk> {
    match chunk_in(
        sections,
        opts,
        &Limits::unlimited(),
        &mut Budget::unlimited(),
    ) {
        Ok(chunks) => chunks,
        Err(_) => unreachable!("unlimited chunking cannot run out"),
    }
}

/// [`chunk`] within `limits` (`max_text_bytes`, `max_chunks`), spending from `budget`.
///
/// # Errors
/// [`TooExpensive`] when the text or the chunk count is over its cap, or the budget runs
/// out. A document is refused whole rather than cut short: the chunks must cover its text.
pub fn chunk_in(
    sections: &[Section],
    opts: ChunkOptions,
    limits: &Limits,
    budget: &mut Budget,
) -> Result<Vec<Chunk>, TooExpensive> {
    let bytes: usize = sections.iter().map(|s| s.text.len()).sum();
    if bytes > limits.max_text_bytes {
        return Err(TooExpensive::new(
            Exceeded::TextBytes,
            format!(
                "{bytes} bytes of main text, over the cap of {}",
                limits.max_text_bytes
            ),
        ));
    }
    let max = opts.max_chars.max(MIN_MAX_CHARS);
    let overlap = opts.overlap_chars.min(max / 2);
    let sep = SECTION_SEPARATOR.chars().count();
    let mut out = Vec::new();
    let mut offset = 0;
    for (i, section) in sections.iter().enumerate() {
        if i > 0 {
            offset += sep;
        }
        let chars: Vec<char> = section.text.chars().collect();
        let room = limits.max_chunks.saturating_sub(out.len());
        let spans = spans(&chars, max, overlap, room.saturating_add(1));
        if out.len() + spans.len() > limits.max_chunks {
            return Err(TooExpensive::new(
                Exceeded::Chunks,
                format!("more than {} chunks", limits.max_chunks),
            ));
        }
        for (a, b) in spans {
            // Each chunk copies its characters (and searched back for a break).
            budget.spend((b - a) as u64 * 2, "the chunker")?;
            out.push(Chunk {
                index: out.len(),
                heading_path: section.heading_path.clone(),
                text: chars[a..b].iter().collect(),
                char_start: offset + a,
                char_end: offset + b,
                page: section.page,
            });
        }
        offset += chars.len();
    }
    Ok(out)
}

/// Character spans of the chunks of one section's text; at most `cap` of them.
fn spans(chars: &[char], max: usize, overlap: usize, cap: usize) -> Vec<(usize, usize)> {
    let n = chars.len();
    let mut out = Vec::new();
    let mut start = skip_space(chars, 0);
    while start < n && out.len() < cap {
        if n - start <= max {
            out.push((start, trim_end(chars, start, n)));
            break;
        }
        let end = trim_end(chars, start, break_point(chars, start, start + max));
        out.push((start, end));
        let mut next = end.saturating_sub(overlap).max(start + 1);
        if overlap > 0 {
            // Start the overlap on a word, not inside one.
            if next > 0
                && !chars[next - 1].is_whitespace()
                && let Some(ws) = (next..end).find(|&j| chars[j].is_whitespace())
            {
                next = ws;
            }
        } else {
            next = end;
        }
        start = skip_space(chars, next);
    }
    out
}

/// Where to end a chunk that may run to `hard_end`: the last paragraph break, else line
/// break, else sentence end, else space in the second half of the window; else `hard_end`.
fn break_point(chars: &[char], start: usize, hard_end: usize) -> usize {
    let min_end = start + (hard_end - start) / 2;
    let window = min_end..hard_end;
    let last = |pred: &dyn Fn(usize) -> bool| window.clone().rev().find(|&p| pred(p));
    last(&|p| chars[p] == '\n' && chars.get(p + 1) == Some(&'\n'))
        .or_else(|| last(&|p| chars[p] == '\n'))
        .or_else(|| {
            last(&|p| chars[p].is_whitespace() && matches!(chars[p - 1], '.' | '!' | '?' | '。'))
        })
        .or_else(|| last(&|p| chars[p].is_whitespace()))
        .unwrap_or(hard_end)
}

fn skip_space(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

fn trim_end(chars: &[char], start: usize, mut end: usize) -> usize {
    while end > start + 1 && chars[end - 1].is_whitespace() {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(path: &[&str], text: &str) -> Section {
        Section {
            heading_path: path.iter().map(|s| s.to_string()).collect(),
            text: text.to_string(),
            page: None,
        }
    }

    fn whole(sections: &[Section]) -> Vec<char> {
        let texts: Vec<&str> = sections.iter().map(|s| s.text.as_str()).collect();
        texts.join(SECTION_SEPARATOR).chars().collect()
    }

    #[test]
    fn chunks_are_bounded_overlap_and_point_into_the_whole_text() {
        let para = "Sentence number one is here. Another sentence follows it closely. ";
        let body = para.repeat(30);
        let sections = vec![section(&[], "Short intro."), section(&["H"], &body)];
        let opts = ChunkOptions {
            max_chars: 300,
            overlap_chars: 60,
        };
        let chunks = chunk(&sections, opts);
        let all = whole(&sections);
        assert!(chunks.len() > 5);
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.index, i);
            assert!(c.text.chars().count() <= 300, "chunk {i} too long");
            let slice: String = all[c.char_start..c.char_end].iter().collect();
            assert_eq!(slice, c.text);
            assert_eq!(c.text.trim(), c.text);
        }
        assert_eq!(chunks[0].heading_path, Vec::<String>::new());
        assert_eq!(chunks[1].heading_path, vec!["H".to_string()]);
        // Consecutive chunks of one section overlap, and together they cover it all.
        for w in chunks[1..].windows(2) {
            assert!(w[1].char_start < w[0].char_end, "no overlap");
            assert!(w[1].char_start > w[0].char_start, "no progress");
        }
        assert_eq!(chunks.last().map(|c| c.char_end), Some(all.len() - 1));
    }

    #[test]
    fn chunks_end_at_sentence_ends_when_they_can() {
        let text = "First sentence here. Second sentence is a little longer. Third one.";
        let chunks = chunk(
            &[section(&[], text)],
            ChunkOptions {
                max_chars: 40,
                overlap_chars: 0,
            },
        );
        assert_eq!(chunks[0].text, "First sentence here.");
        let rebuilt: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(rebuilt.join(" "), text);
    }

    #[test]
    fn embedding_text_carries_title_and_headings() {
        let chunks = chunk(
            &[section(&["Guide", "Install"], "Run it.")],
            ChunkOptions::default(),
        );
        assert_eq!(
            chunks[0].embedding_text(Some("Guide")),
            "Guide > Install\n\nRun it."
        );
        assert_eq!(chunks[0].embedding_text(None), "Guide > Install\n\nRun it.");
        let bare = chunk(&[section(&[], "Alone.")], ChunkOptions::default());
        assert_eq!(bare[0].embedding_text(Some(" ")), "Alone.");
    }

    #[test]
    fn a_word_longer_than_the_limit_is_cut_hard() {
        let text = "x".repeat(100);
        let chunks = chunk(
            &[section(&[], &text)],
            ChunkOptions {
                max_chars: 10,
                overlap_chars: 50,
            },
        );
        // max raised to 32, overlap capped at 16.
        assert!(chunks.iter().all(|c| c.text.len() <= 32));
        assert_eq!(chunks.last().map(|c| c.char_end), Some(100));
    }
}
