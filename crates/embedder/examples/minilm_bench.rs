//! Embedding speed of the in-process model: texts/s for ~256-token chunks.
//!
//! ```sh
//! deploy/local/install-model.sh
//! RAYON_NUM_THREADS=1 cargo run --release -p embedder --example minilm_bench -- [TEXTS] [BATCH]
//! ```
//!
//! `RAYON_NUM_THREADS=1` keeps the matrix products on one core, to compare with
//! `minilm_bench_st.py` (sentence-transformers, `torch.set_num_threads(1)`), which embeds the
//! same texts (same generator) with the same batch size. Model directory: `MINILM_MODEL_DIR`,
//! else `.local/models/all-MiniLM-L6-v2`.

use std::time::Instant;

use embedder::{MiniLmConfig, MiniLmEmbedder};

const WORDS: [&str; 64] = [
    "the",
    "river",
    "market",
    "report",
    "showed",
    "that",
    "prices",
    "rose",
    "after",
    "rain",
    "and",
    "workers",
    "in",
    "the",
    "city",
    "planned",
    "new",
    "roads",
    "while",
    "schools",
    "opened",
    "late",
    "because",
    "of",
    "snow",
    "council",
    "members",
    "voted",
    "on",
    "budget",
    "for",
    "parks",
    "libraries",
    "hospitals",
    "engineers",
    "measured",
    "water",
    "levels",
    "near",
    "bridge",
    "farmers",
    "sold",
    "grain",
    "to",
    "mills",
    "across",
    "region",
    "during",
    "autumn",
    "when",
    "harvest",
    "was",
    "strong",
    "despite",
    "dry",
    "summer",
    "storms",
    "damaged",
    "power",
    "lines",
    "north",
    "coast",
    "towns",
    "again",
];

/// Text `i`: 250 words, about 256 word pieces with the special tokens.
fn text(i: usize) -> String {
    (0..250)
        .map(|j| WORDS[(i * 7 + j * 3) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(256), |a| a.parse())?;
    let batch: usize = args.next().map_or(Ok(32), |a| a.parse())?;
    let dir = std::env::var("MINILM_MODEL_DIR")
        .unwrap_or_else(|_| ".local/models/all-MiniLM-L6-v2".into());
    let model = MiniLmEmbedder::load(&MiniLmConfig {
        model_dir: dir.into(),
        max_tokens: 256,
        batch_size: batch,
    })?;
    let texts: Vec<String> = (0..n).map(text).collect();
    // Warm-up: first-touch page faults and allocator growth are not the steady state.
    model.embed_sync(&texts[..batch.min(n)])?;
    let started = Instant::now();
    let vectors = model.embed_sync(&texts)?;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(vectors.len(), n);
    println!(
        "candle all-MiniLM-L6-v2: {n} texts of ~256 tokens, batch {batch}, threads {}: {:.1} texts/s ({secs:.2} s)",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into()),
        n as f64 / secs
    );
    Ok(())
}
