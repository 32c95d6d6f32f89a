//! The in-process model against the reference implementation: every sentence of the
//! committed fixture (written by `fixtures/minilm_reference.py` with sentence-transformers
//! from the same model files) must get a vector with cosine >= 0.999 to the reference in
//! `f32`, and >= 0.99 in `int8`.
//!
//! Needs the model files: `deploy/local/install-model.sh` (the test command runs it), or
//! `MINILM_MODEL_DIR` pointing at another copy.

use std::path::PathBuf;

use embedder::{Embedder, EmbedderConfig, MiniLmConfig, Precision};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    sentences: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

fn model_dir() -> PathBuf {
    std::env::var_os("MINILM_MODEL_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.local/models/all-MiniLM-L6-v2"),
        PathBuf::from,
    )
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Embeds the fixture in `precision` and returns the worst cosine to the reference, after
/// checking that a text alone gets the vector it gets in a batch.
async fn worst_cosine(precision: Precision) -> anyhow::Result<(f32, usize, Vec<String>)> {
    let reference: Reference =
        serde_json::from_str(include_str!("fixtures/minilm_reference.json"))?;
    assert!(reference.sentences.len() >= 50);
    let embedder = Embedder::from_config(
        EmbedderConfig::Minilm(MiniLmConfig {
            model_dir: model_dir(),
            max_tokens: 256,
            // Smaller than the fixture, so tokenizing in several groups is exercised too.
            batch_size: 8,
            precision,
        }),
        None,
    )
    .map_err(|e| anyhow::anyhow!("{e} (run deploy/local/install-model.sh)"))?;
    assert_eq!(
        (embedder.model(), embedder.dims()),
        ("all-MiniLM-L6-v2", 384)
    );

    let vectors = embedder.embed(&reference.sentences).await?;
    assert_eq!(vectors.len(), reference.sentences.len());
    let mut worst = (1.0f32, 0usize);
    for (i, (got, want)) in vectors.iter().zip(&reference.vectors).enumerate() {
        assert_eq!(got.len(), 384);
        let c = cosine(got, want);
        if c < worst.0 {
            worst = (c, i);
        }
    }
    println!(
        "{precision:?}: worst cosine {} (sentence {}) over {} sentences",
        worst.0,
        worst.1,
        reference.sentences.len()
    );

    // Alone or in a batch, a text gets the same vector (padding does not leak in).
    let alone = embedder.embed(&reference.sentences[3..4]).await?;
    assert!(cosine(&alone[0], &vectors[3]) > 0.9999);
    Ok((worst.0, worst.1, reference.sentences))
}

#[tokio::test]
async fn vectors_match_sentence_transformers() -> anyhow::Result<()> {
    let (worst, i, sentences) = worst_cosine(Precision::F32).await?;
    assert!(
        worst >= 0.999,
        "sentence {i} {:?}: cosine {worst} to the reference",
        sentences[i]
    );
    Ok(())
}

#[tokio::test]
async fn int8_vectors_stay_close_to_the_reference() -> anyhow::Result<()> {
    let (worst, i, sentences) = worst_cosine(Precision::Int8).await?;
    assert!(
        worst >= 0.99,
        "sentence {i} {:?}: cosine {worst} to the reference",
        sentences[i]
    );
    Ok(())
}

#[tokio::test]
async fn similar_sentences_are_closer_than_unrelated_ones() -> anyhow::Result<()> {
    let embedder = Embedder::from_config(
        EmbedderConfig::Minilm(MiniLmConfig {
            model_dir: model_dir(),
            max_tokens: 256,
            batch_size: 32,
            precision: Precision::F32,
        }),
        None,
    )?;
    let v = embedder
        .embed(&[
            "The quick brown fox jumps over the lazy dog.".into(),
            "A fast auburn fox leaps above an idle hound.".into(),
            "Quarterly earnings beat analyst forecasts.".into(),
        ])
        .await?;
    // No shared content words, same meaning: only a semantic model gets this right.
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.3);
    Ok(())
}
