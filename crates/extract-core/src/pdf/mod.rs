//! PDF documents: text per page and the document's own metadata, read with `lopdf`, and
//! their conversion into an [`Extracted`] whose sections (hence chunks) know their page.
//!
//! A PDF is outside bytes like any page, so reading one is bounded:
//! - the input is capped at [`Limits::max_input_bytes`], as HTML is;
//! - an encrypted document is refused before it is parsed ([`PdfError::Encrypted`]): its
//!   text cannot be read without a password, and lopdf would decrypt every object first;
//! - every stream lopdf decodes (at load: object and cross-reference streams; per page: the
//!   content streams and font maps) stops at [`Limits::max_pdf_decoded_bytes`], so a
//!   decompression bomb fails with [`Exceeded::DecodedBytes`] instead of filling memory;
//! - lopdf's parser caps object nesting (100 levels) and page-tree depth, and rebuilds a
//!   broken cross-reference table by a linear scan of the file;
//! - more than [`Limits::max_pdf_pages`] pages is refused, the budget's clock is read
//!   before each page, and the text read so far is held to [`Limits::max_text_bytes`];
//! - a panic inside the library is caught and reported as [`PdfError::Malformed`].
//!
//! What is not interruptible is one call into lopdf: the load of the whole file and the
//! reading of one page. Their cost is bounded by the input cap and the decode cap; the
//! extraction worker's deadline on the whole extraction (it stops waiting and frees the
//! slot) is the last guard.

mod info;

use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono::{DateTime, FixedOffset};
use lopdf::{Document, LoadOptions};
use serde::{Deserialize, Serialize};

use crate::blocks::{Block, BlockKind};
use crate::limits::{Budget, Exceeded, Limits, TooExpensive};
use crate::sections::{SECTION_SEPARATOR, Section};
use crate::{ExtractError, Extracted, Extractor, markdown, metadata};

/// The media type of PDF documents.
pub const PDF_MEDIA_TYPE: &str = "application/pdf";

/// Why a PDF could not be read (besides being too expensive, which is
/// [`ExtractError::TooExpensive`]). Every case is permanent: the same bytes fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PdfError {
    /// The bytes do not start with a PDF header (`%PDF-` in the first 1,024 bytes).
    #[error("not a PDF: no %PDF- header")]
    NotPdf,
    /// The document is encrypted; its text cannot be read without the password.
    #[error("encrypted PDF: its text cannot be read without a password")]
    Encrypted,
    /// The file is broken beyond what the reader can repair, or the reader failed on it.
    #[error("malformed PDF: {0}")]
    Malformed(String),
}

/// What a PDF says about itself: its Info dictionary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdfMetadata {
    /// `Title`.
    pub title: Option<String>,
    /// `Author`, as written (often several names in one string).
    pub author: Option<String>,
    /// `Subject`.
    pub subject: Option<String>,
    /// `Keywords`.
    pub keywords: Option<String>,
    /// `Creator`: the application the document was written with.
    pub creator: Option<String>,
    /// `Producer`: the application that made the PDF.
    pub producer: Option<String>,
    /// `CreationDate`, with the offset it was written with (UTC when it gives none).
    pub created: Option<DateTime<FixedOffset>>,
    /// `ModDate`, as `created`.
    pub modified: Option<DateTime<FixedOffset>>,
    /// Number of pages.
    pub page_count: u32,
}

/// A PDF read into text: one string per page (page 1 first; a page without text is an
/// empty string, so indexes stay page numbers minus one) and its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdfDocument {
    /// The text of each page, lines joined with `\n`, spaces collapsed.
    pub pages: Vec<String>,
    /// The document's Info dictionary.
    pub metadata: PdfMetadata,
}

/// Whether `bytes` start like a PDF: `%PDF-` within the first 1,024 bytes (readers accept
/// junk before the header, and so do we).
pub fn looks_like_pdf(bytes: &[u8]) -> bool {
    find(&bytes[..bytes.len().min(1024)], b"%PDF-").is_some()
}

/// Reads the text of every page and the metadata of a PDF, within `limits`, spending from
/// `budget`.
///
/// # Errors
/// [`ExtractError::Pdf`] when the bytes are not a PDF, are encrypted or cannot be read;
/// [`ExtractError::TooExpensive`] over the input, page, decode or text caps, or when the
/// budget runs out.
pub fn read_pdf(
    bytes: &[u8],
    limits: &Limits,
    budget: &mut Budget,
) -> Result<PdfDocument, ExtractError> {
    if bytes.len() > limits.max_input_bytes {
        return Err(TooExpensive::new(
            Exceeded::InputBytes,
            format!(
                "{} bytes of PDF, over the cap of {}",
                bytes.len(),
                limits.max_input_bytes
            ),
        )
        .into());
    }
    if !looks_like_pdf(bytes) {
        return Err(PdfError::NotPdf.into());
    }
    // The scan for the header and for `/Encrypt` reads the file once each.
    budget.spend(bytes.len() as u64 / 8, "scanning the PDF")?;
    if is_encrypted(bytes) {
        return Err(PdfError::Encrypted.into());
    }
    let decode_cap = usize::try_from(limits.max_pdf_decoded_bytes).unwrap_or(usize::MAX);
    let doc = guarded("loading the document", || {
        let opts = LoadOptions {
            max_decompressed_size: Some(decode_cap),
            ..LoadOptions::default()
        };
        Document::load_mem_with_options(bytes, opts)
    })?
    .map_err(|e| lopdf_error(&e, limits))?;
    budget.check_time("loading the PDF")?;
    if doc.is_encrypted() {
        return Err(PdfError::Encrypted.into());
    }

    let page_ids: Vec<lopdf::ObjectId> = guarded("walking the page tree", || {
        doc.page_iter()
            .take(limits.max_pdf_pages.saturating_add(1))
            .collect()
    })?;
    if page_ids.len() > limits.max_pdf_pages {
        return Err(TooExpensive::new(
            Exceeded::Pages,
            format!("more than {} pages", limits.max_pdf_pages),
        )
        .into());
    }
    let mut metadata = guarded("reading the Info dictionary", || info::read(&doc))?;
    metadata.page_count = page_ids.len() as u32;

    let mut pages = Vec::with_capacity(page_ids.len());
    let mut text_bytes = 0usize;
    for number in 1..=page_ids.len() as u32 {
        budget.check_time("reading PDF pages")?;
        let raw = guarded("reading a page", || {
            doc.extract_text_with_limit(&[number], decode_cap)
        })?;
        let text = match raw {
            Ok(text) => normalize_page(&text),
            Err(e @ lopdf::Error::Decompress(_)) => return Err(lopdf_error(&e, limits)),
            // A page whose content cannot be decoded (a broken stream, an unknown font)
            // is a page without text; the document's other pages still count.
            Err(_) => String::new(),
        };
        budget.spend(text.len() as u64 + 1, "reading PDF pages")?;
        text_bytes += text.len();
        if text_bytes > limits.max_text_bytes {
            return Err(TooExpensive::new(
                Exceeded::TextBytes,
                format!(
                    "more than {} bytes of text in the PDF",
                    limits.max_text_bytes
                ),
            )
            .into());
        }
        pages.push(text);
    }
    Ok(PdfDocument { pages, metadata })
}

/// [`read_pdf`] then [`PdfDocument::into_extracted`].
///
/// # Errors
/// As [`read_pdf`]; [`ExtractError::NoContent`] when no page has text (a scanned PDF
/// without a text layer).
pub fn extract_pdf_in(
    bytes: &[u8],
    limits: &Limits,
    budget: &mut Budget,
) -> Result<Extracted, ExtractError> {
    read_pdf(bytes, limits, budget)?.into_extracted()
}

impl PdfDocument {
    /// The document as an [`Extracted`]: one section per page that has text, carrying its
    /// page number (so the chunks cut from it carry it too), the pages' text joined with
    /// [`SECTION_SEPARATOR`], Markdown of the pages as paragraphs, and page metadata from
    /// the Info dictionary (title, author, dates) completed from the text (language,
    /// description).
    ///
    /// # Errors
    /// [`ExtractError::NoContent`] when no page has text.
    pub fn into_extracted(self) -> Result<Extracted, ExtractError> {
        let mut sections = Vec::new();
        let mut blocks = Vec::new();
        for (i, text) in self.pages.into_iter().enumerate() {
            if text.is_empty() {
                continue;
            }
            blocks.push(Block {
                kind: BlockKind::Paragraph,
                text: text.clone(),
            });
            sections.push(Section {
                heading_path: Vec::new(),
                text,
                page: Some(i as u32 + 1),
            });
        }
        if sections.is_empty() {
            return Err(ExtractError::NoContent);
        }
        let texts: Vec<&str> = sections.iter().map(|s| s.text.as_str()).collect();
        let text = texts.join(SECTION_SEPARATOR);
        let meta = self.metadata;
        let title = meta.title.clone().or_else(|| first_line_title(&text));
        let mut page_meta = metadata::for_text(title.clone(), &text, &blocks);
        if let Some(author) = &meta.author {
            page_meta.authors = author
                .split(';')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect();
            page_meta.byline = Some(author.clone());
        }
        page_meta.published = meta.created;
        page_meta.modified = meta.modified.or(meta.created);
        if let Some(subject) = meta.subject.clone() {
            page_meta.description = Some(subject);
        }
        Ok(Extracted {
            title,
            markdown: markdown::from_blocks(&blocks),
            text,
            sections,
            extractor: Extractor::Pdf,
            markup: None,
            metadata: page_meta,
        })
    }
}

/// A title for a document whose Info dictionary gives none: its first line, when short.
fn first_line_title(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    (line.chars().count() <= 200).then(|| line.to_string())
}

/// Lines trimmed, runs of spaces collapsed, empty lines dropped.
fn normalize_page(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_none() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        for (i, w) in words.enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(w);
        }
    }
    out
}

/// Whether the file declares encryption: a `/Encrypt` name in a trailer or cross-reference
/// stream dictionary. Searched in the raw bytes, so it works before (and whether or not) the
/// file parses; a compressed stream cannot hide it, since trailers are never compressed.
fn is_encrypted(bytes: &[u8]) -> bool {
    let key = b"/Encrypt";
    let mut from = 0;
    while let Some(at) = find(&bytes[from..], key) {
        let next = bytes.get(from + at + key.len()).copied();
        // `/EncryptMetadata` and the like are other names.
        if !matches!(next, Some(b) if b.is_ascii_alphanumeric()) {
            return true;
        }
        from += at + key.len();
    }
    false
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Runs `f`, turning a panic inside the library into [`PdfError::Malformed`]. lopdf
/// indexes and unwraps in places on input it did not expect; a bad file must fail as a
/// bad file, not take the worker thread with it.
fn guarded<T>(step: &str, f: impl FnOnce() -> T) -> Result<T, ExtractError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown failure".to_string());
        PdfError::Malformed(format!("the reader failed {step}: {why}")).into()
    })
}

fn lopdf_error(e: &lopdf::Error, limits: &Limits) -> ExtractError {
    match e {
        lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded { .. }) => {
            TooExpensive::new(
                Exceeded::DecodedBytes,
                format!(
                    "a PDF stream decodes to more than {} bytes",
                    limits.max_pdf_decoded_bytes
                ),
            )
            .into()
        }
        lopdf::Error::Decryption(_) | lopdf::Error::AlreadyEncrypted => PdfError::Encrypted.into(),
        other => PdfError::Malformed(other.to_string()).into(),
    }
}

#[cfg(test)]
mod tests;

/// A small valid PDF with one page per entry of `pages` (lines split at `\n`), in
/// Helvetica, with `title` and `author` in its Info dictionary and the page contents
/// Flate-compressed. For tests and examples: real documents come from the web.
///
/// # Panics
/// Never on any input: the document is built from valid objects.
pub fn write_text_pdf(pages: &[&str], title: Option<&str>, author: Option<&str>) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{Object, Stream, dictionary};

    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
        "Encoding" => "WinAnsiEncoding",
    });
    let resources_id = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => font_id },
    });
    let mut kids = Vec::new();
    for page in pages {
        let mut ops = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 11.into()]),
            Operation::new("TL", vec![14.into()]),
            Operation::new("Td", vec![56.into(), 780.into()]),
        ];
        for line in page.lines() {
            ops.push(Operation::new(
                "Tj",
                vec![Object::string_literal(win_ansi(line))],
            ));
            ops.push(Operation::new("T*", vec![]));
        }
        ops.push(Operation::new("ET", vec![]));
        let content = Content { operations: ops };
        let mut stream = Stream::new(dictionary! {}, content.encode().unwrap_or_default());
        // Compressed as real files are; a failure leaves the stream plain, still valid.
        let _ = stream.compress();
        let content_id = doc.add_object(stream);
        kids.push(Object::from(doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content_id,
        })));
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => count,
            "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! {
        "Type" => "Catalog",
        "Pages" => pages_id,
    });
    doc.trailer.set("Root", catalog_id);
    let mut info = lopdf::Dictionary::new();
    if let Some(t) = title {
        info.set("Title", Object::string_literal(win_ansi(t)));
    }
    if let Some(a) = author {
        info.set("Author", Object::string_literal(win_ansi(a)));
    }
    info.set(
        "CreationDate",
        Object::string_literal("D:20240131154500+01'00'"),
    );
    let info_id = doc.add_object(info);
    doc.trailer.set("Info", info_id);
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = doc.save_to(&mut out);
    out
}

/// Text as Windows-1252 bytes (what Helvetica with WinAnsiEncoding draws); characters it
/// cannot encode become `?`.
fn win_ansi(text: &str) -> Vec<u8> {
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(text);
    bytes.into_owned()
}
