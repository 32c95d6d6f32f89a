use super::*;
use crate::{ChunkOptions, chunk};

fn read(bytes: &[u8]) -> Result<PdfDocument, ExtractError> {
    read_pdf(
        bytes,
        &Limits::default(),
        &mut Budget::new(&Limits::default()),
    )
}

#[test]
fn pages_and_metadata_are_read() {
    let pdf = write_text_pdf(
        &[
            "First page, first line.\nSecond line here.",
            "",
            "Third page: café, naïve, “quotes”.",
        ],
        Some("A Report"),
        Some("Ada Lovelace; Charles Babbage"),
    );
    let doc = read(&pdf).unwrap();
    assert_eq!(
        doc.pages,
        vec![
            "First page, first line.\nSecond line here.".to_string(),
            String::new(),
            "Third page: café, naïve, “quotes”.".to_string(),
        ]
    );
    assert_eq!(doc.metadata.title.as_deref(), Some("A Report"));
    assert_eq!(
        doc.metadata.author.as_deref(),
        Some("Ada Lovelace; Charles Babbage")
    );
    assert_eq!(doc.metadata.page_count, 3);
    assert_eq!(
        doc.metadata.created.map(|d| d.to_rfc3339()).as_deref(),
        Some("2024-01-31T15:45:00+01:00")
    );
}

#[test]
fn chunks_carry_their_page() {
    let long = "A sentence of some length for the chunker. ".repeat(20);
    let pdf = write_text_pdf(&["Opening page.", "", &long], Some("T"), Some("A; B"));
    let e = extract_pdf_in(&pdf, &Limits::default(), &mut Budget::unlimited()).unwrap();
    assert_eq!(e.extractor, Extractor::Pdf);
    assert_eq!(e.title.as_deref(), Some("T"));
    assert_eq!(e.metadata.authors, vec!["A".to_string(), "B".to_string()]);
    assert!(e.metadata.published.is_some());
    let pages: Vec<Option<u32>> = e.sections.iter().map(|s| s.page).collect();
    assert_eq!(pages, vec![Some(1), Some(3)]);
    let chunks = chunk(
        &e.sections,
        ChunkOptions {
            max_chars: 200,
            overlap_chars: 20,
        },
    );
    assert!(chunks.len() > 3);
    assert_eq!(chunks[0].page, Some(1));
    assert!(chunks[1..].iter().all(|c| c.page == Some(3)));
    let chars: Vec<char> = e.text.chars().collect();
    for c in &chunks {
        let slice: String = chars[c.char_start..c.char_end].iter().collect();
        assert_eq!(slice, c.text);
    }
}

#[test]
fn a_pdf_without_text_has_no_content() {
    let pdf = write_text_pdf(&["", ""], None, None);
    assert_eq!(
        extract_pdf_in(&pdf, &Limits::default(), &mut Budget::unlimited()),
        Err(ExtractError::NoContent)
    );
}

#[test]
fn the_title_falls_back_to_the_first_line() {
    let pdf = write_text_pdf(&["Annual Report 2024\nBody text."], None, None);
    let e = extract_pdf_in(&pdf, &Limits::default(), &mut Budget::unlimited()).unwrap();
    assert_eq!(e.title.as_deref(), Some("Annual Report 2024"));
}

#[test]
fn not_a_pdf_is_said_so() {
    assert_eq!(read(b"<html>hi</html>"), Err(PdfError::NotPdf.into()));
    assert!(looks_like_pdf(b"\xef\xbb\xbf%PDF-1.4\n"));
    assert!(!looks_like_pdf(b"%PD"));
}

#[test]
fn caps_are_enforced() {
    let pdf = write_text_pdf(&["one", "two", "three"], None, None);
    let limits = Limits {
        max_pdf_pages: 2,
        ..Limits::default()
    };
    let err = read_pdf(&pdf, &limits, &mut Budget::new(&limits)).unwrap_err();
    assert!(
        matches!(&err, ExtractError::TooExpensive(t) if t.kind == Exceeded::Pages),
        "{err}"
    );
    let limits = Limits {
        max_input_bytes: 100,
        ..Limits::default()
    };
    let err = read_pdf(&pdf, &limits, &mut Budget::new(&limits)).unwrap_err();
    assert!(
        matches!(&err, ExtractError::TooExpensive(t) if t.kind == Exceeded::InputBytes),
        "{err}"
    );
    let limits = Limits {
        max_text_bytes: 5,
        ..Limits::default()
    };
    let err = read_pdf(&pdf, &limits, &mut Budget::new(&limits)).unwrap_err();
    assert!(
        matches!(&err, ExtractError::TooExpensive(t) if t.kind == Exceeded::TextBytes),
        "{err}"
    );
}

#[test]
fn encryption_is_found_in_the_raw_bytes() {
    assert!(is_encrypted(b"trailer << /Root 1 0 R /Encrypt 5 0 R >>"));
    assert!(is_encrypted(b"<</Encrypt<</Filter/Standard>>>>"));
    assert!(!is_encrypted(b"<< /EncryptMetadata false >>"));
    assert!(!is_encrypted(b"%PDF-1.4 nothing here"));
}
