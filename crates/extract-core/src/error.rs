//! Errors of extraction.

/// Why a document yielded no extraction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The content type is neither HTML nor text. Permanent: retrying cannot change it.
    #[error("unsupported content type: {0:?}")]
    UnsupportedContentType(String),
    /// The document has no readable text at all (empty body, only scripts or images).
    #[error("no text content in the document")]
    NoContent,
    /// The document is over one of the [`crate::Limits`], or its [`crate::Budget`] ran out.
    /// Permanent: the same document costs the same the next time.
    #[error("too expensive to extract: {0}")]
    TooExpensive(#[from] crate::TooExpensive),
    /// A PDF that is not one, is encrypted, or cannot be read. Permanent.
    #[error(transparent)]
    Pdf(#[from] crate::pdf::PdfError),
}

impl ExtractError {
    /// Whether a retry could succeed. Extraction is a pure function of its input, so no
    /// extraction error is transient; the method exists so callers classify uniformly.
    pub fn is_transient(&self) -> bool {
        false
    }
}
