//! Hostile PDFs (`fuzz/corpus-regressions/pdf/`, made for the purpose: truncated, broken
//! cross-reference table, deep nesting, decompression bombs, loops, encryption) end with
//! the error a user should see, stopped by the cap meant for them (the decode cap, not the
//! time budget), and the kept inputs are replayed through the checks of the `pdf` fuzz
//! target. How long they take is measured by the `pdf_eval` example, not asserted here (a
//! shared machine's timings are noise).

use std::path::{Path, PathBuf};

use extract_core::{Budget, Exceeded, ExtractError, Limits, PdfError, read_pdf};

#[path = "../../../fuzz/checks/pdf.rs"]
mod pdf_check;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus-regressions/pdf")
}

/// Reads one kept input with the default limits.
fn read(name: &str) -> Result<extract_core::PdfDocument, ExtractError> {
    let bytes = std::fs::read(corpus().join(name)).expect("a kept input");
    let limits = Limits::default();
    read_pdf(&bytes, &limits, &mut Budget::new(&limits))
}

fn too_expensive(name: &str) -> Exceeded {
    match read(name) {
        Err(ExtractError::TooExpensive(t)) => t.kind,
        other => panic!("{name}: expected too expensive, got {other:?}"),
    }
}

#[test]
fn decompression_bombs_stop_at_the_decode_cap() {
    for name in [
        "flate-bomb-content.pdf",
        "flate-bomb-two-layers.pdf",
        "flate-bomb-objstm.pdf",
    ] {
        assert_eq!(too_expensive(name), Exceeded::DecodedBytes, "{name}");
    }
}

#[test]
fn encrypted_documents_are_refused_by_name() {
    for name in [
        "encrypted-user-password.pdf",
        "encrypted-empty-password.pdf",
    ] {
        assert_eq!(read(name), Err(PdfError::Encrypted.into()), "{name}");
        let err = read(name).unwrap_err().to_string();
        assert!(err.contains("encrypted PDF"), "{err}");
    }
}

#[test]
fn a_valid_document_reads() {
    let doc = read("valid-minimal.pdf").unwrap();
    assert_eq!(doc.pages, vec!["Hello hostile world".to_string()]);
}

#[test]
fn broken_files_fail_or_read_without_panicking() {
    // A broken cross-reference table is rebuilt by scanning the file: the text is found.
    let doc = read("broken-xref.pdf").unwrap();
    assert_eq!(doc.pages, vec!["Hello hostile world".to_string()]);
    for name in [
        "truncated.pdf",
        "no-xref-no-trailer.pdf",
        "deep-arrays.pdf",
        "deep-dicts.pdf",
        "deep-content.pdf",
        "page-tree-loop.pdf",
        "parent-loop.pdf",
        "reference-loop.pdf",
        "form-draws-itself.pdf",
        "hundred-thousand-kids.pdf",
        "stream-length-lies.pdf",
    ] {
        match read(name) {
            Ok(doc) => assert!(doc.pages.len() <= Limits::default().max_pdf_pages, "{name}"),
            Err(ExtractError::Pdf(_) | ExtractError::TooExpensive(_)) => {}
            Err(other) => panic!("{name}: unexpected {other:?}"),
        }
    }
}

#[test]
fn a_page_tree_that_names_one_page_many_times_stays_small() {
    // 100,000 kids that are all the same page: the page walk stops after as many pages as
    // the file has objects (five here), so the count cannot grow past the file's size.
    let doc = read("hundred-thousand-kids.pdf").unwrap();
    assert!(doc.pages.len() <= 5, "{} pages", doc.pages.len());
}

/// Every kept input through the very checks the `pdf` fuzz target runs.
#[test]
fn fuzz_regressions_pdf() {
    let mut paths: Vec<_> = std::fs::read_dir(corpus())
        .expect("the regression corpus exists")
        .map(|e| e.expect("a readable directory").path())
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "only {} inputs", paths.len());
    for path in paths {
        eprintln!("replaying {}", path.display());
        pdf_check::check(&std::fs::read(&path).expect("a readable file"));
    }
}
