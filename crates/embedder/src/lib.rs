//! Text embeddings for the pipeline.
//!
//! An [`Embedder`] has three built-in backends:
//! - [`MiniLmEmbedder`] (the default): the all-MiniLM-L6-v2 sentence model, in process on
//!   the CPU, from model files on disk (nothing is downloaded at run time).
//! - [`HashingEmbedder`]: feature hashing of word n-grams into a fixed number
//!   of dimensions, L2-normalized. In-process, deterministic, no network; lexical, not
//!   semantic, and honest about it (its model name says `hashing`).
//! - [`OpenAiEmbedder`]: any OpenAI-compatible `/v1/embeddings` server.
//!
//! A [`Batcher`] gathers texts from many concurrent callers into batches (up to a size or a
//! time window), calls the embedder once per batch and hands every caller its own vectors,
//! or the batch's error.
//!
//! Errors say whether a retry can help ([`EmbedError::is_transient`]).

#![warn(missing_docs)]

mod batcher;
mod error;
mod hashing;
mod minilm;
mod openai;

pub use batcher::{Batcher, BatcherConfig};
pub use error::EmbedError;
pub use hashing::{HashingConfig, HashingEmbedder};
pub use minilm::{
    INSTALL_HINT, MINILM_MODEL, MiniLmConfig, MiniLmEmbedder, Precision, int8_kernels,
};
pub use openai::{OpenAiConfig, OpenAiEmbedder};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Which backend to build, as read from configuration (`backend = "minilm"`, `"hashing"`
/// or `"openai"`, plus that backend's keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum EmbedderConfig {
    /// The in-process sentence model.
    Minilm(MiniLmConfig),
    /// The in-process hashing embedder.
    Hashing(HashingConfig),
    /// An OpenAI-compatible server.
    Openai(OpenAiConfig),
}

/// An embedding backend. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub enum Embedder {
    /// The sentence model, in process.
    MiniLm(MiniLmEmbedder),
    /// Feature hashing, in process.
    Hashing(HashingEmbedder),
    /// An OpenAI-compatible server.
    OpenAi(OpenAiEmbedder),
}

impl Embedder {
    /// Builds the configured backend. `api_key` is used by the `openai` backend only.
    /// Loading the model takes a moment (it reads ~90 MB); an `openai` backend without
    /// configured dimensions is asked for them with [`Embedder::probe_dims`] by the caller.
    ///
    /// # Errors
    /// [`EmbedError::Config`] when the model files are missing or the `openai` settings are
    /// unusable.
    pub fn from_config(
        cfg: EmbedderConfig,
        api_key: Option<SecretString>,
    ) -> Result<Self, EmbedError> {
        Ok(match cfg {
            EmbedderConfig::Minilm(m) => Self::MiniLm(MiniLmEmbedder::load(&m)?),
            EmbedderConfig::Hashing(h) => Self::Hashing(HashingEmbedder::new(h)),
            EmbedderConfig::Openai(o) => Self::OpenAi(OpenAiEmbedder::new(o, api_key)?),
        })
    }

    /// Embeds `texts`: one vector of [`Self::dims`] floats per text, in order. All or
    /// nothing: on error no vector is returned.
    ///
    /// # Errors
    /// See [`EmbedError`]; the hashing backend never fails.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        match self {
            // Hashing costs microseconds per text: cheaper inline than a thread hop.
            Self::Hashing(h) => Ok(h.embed_sync(texts)),
            // Milliseconds of CPU per text: off the async threads.
            Self::MiniLm(m) => {
                let (m, texts) = (m.clone(), texts.to_vec());
                tokio::task::spawn_blocking(move || m.embed_sync(&texts))
                    .await
                    .map_err(|e| EmbedError::Model(format!("embedding thread: {e}")))?
            }
            Self::OpenAi(o) => o.embed(texts).await,
        }
    }

    /// The model name to store with each vector.
    pub fn model(&self) -> &str {
        match self {
            Self::MiniLm(m) => m.model(),
            Self::Hashing(h) => h.model(),
            Self::OpenAi(o) => o.model(),
        }
    }

    /// Vector length.
    pub fn dims(&self) -> usize {
        match self {
            Self::MiniLm(m) => m.dims(),
            Self::Hashing(h) => h.dims(),
            Self::OpenAi(o) => o.dims(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_either_backend_and_rejects_unknown_keys() {
        let h: EmbedderConfig = serde_json::from_str(r#"{"backend":"hashing","dims":64}"#).unwrap();
        assert_eq!(
            h,
            EmbedderConfig::Hashing(HashingConfig {
                dims: 64,
                ..Default::default()
            })
        );
        let o: EmbedderConfig = serde_json::from_str(
            r#"{"backend":"openai","url":"http://127.0.0.1:1/v1","model":"m","dims":8}"#,
        )
        .unwrap();
        let EmbedderConfig::Openai(o) = o else {
            panic!("not openai")
        };
        assert_eq!((o.batch_size, o.timeout_ms), (64, 30_000));
        assert!(
            serde_json::from_str::<EmbedderConfig>(r#"{"backend":"hashing","dimz":64}"#).is_err()
        );
        assert!(serde_json::from_str::<EmbedderConfig>(r#"{"backend":"magic"}"#).is_err());
    }

    #[tokio::test]
    async fn hashing_backend_through_the_enum() {
        let e =
            Embedder::from_config(EmbedderConfig::Hashing(HashingConfig::default()), None).unwrap();
        assert_eq!(e.model(), "hashing-v1-n2-d384");
        let v = e
            .embed(&["a b".to_string(), "c".to_string()])
            .await
            .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].len(), e.dims());
    }
}
