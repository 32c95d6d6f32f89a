//! Embedding speed of the in-process model, in texts/s, on texts of realistic chunk lengths.
//!
//! ```sh
//! deploy/local/install-model.sh
//! cargo run --release -p extraction-worker --example chunk_texts -- <corpus dir> --out texts.jsonl
//! RAYON_NUM_THREADS=1 taskset -c 1 cargo run --release -p embedder --example minilm_bench -- \
//!     texts.jsonl [--precision f32|int8] [--calls N] [--rounds N]
//! ```
//!
//! TEXTS holds one JSON string per line (`chunk_texts` writes chunks of a corpus as the
//! extraction worker embeds them). Without a file, generated texts of 250 words are used.
//! `--calls N` splits the texts into N calls in file order (what the worker's batcher hands
//! the model: 32 texts a call by default); the default, 1, hands all of them at once, so
//! they are grouped by length over the whole set. Prints texts/s, word pieces/s, the padding
//! the chunks of the forward pass carried, and the arithmetic done (GFLOP/s).
//!
//! `RAYON_NUM_THREADS=1` keeps the model on one core, to compare with `minilm_bench_st.py`
//! (sentence-transformers, `torch.set_num_threads(1)`) on the same file. Model directory:
//! `MINILM_MODEL_DIR`, else `.local/models/all-MiniLM-L6-v2`.

use std::time::Instant;

use embedder::{MiniLmConfig, MiniLmEmbedder, Precision, int8_kernels};

const WORDS: [&str; 16] = [
    "the", "river", "market", "report", "showed", "that", "prices", "rose", "after", "rain", "and",
    "workers", "in", "city", "planned", "roads",
];

/// The forward pass's arithmetic for one text of `t` word pieces (multiply-adds counted
/// as two operations): the six layers' projections (4·384² + 2·384·1536 weights, each used
/// once per token) and attention (scores and context: 2·t²·384 multiply-adds per layer).
pub fn flops(t: usize) -> f64 {
    let (h, i, layers) = (384.0, 1536.0, 6.0);
    let t = t as f64;
    layers * 2.0 * (t * (4.0 * h * h + 2.0 * h * i) + 2.0 * t * t * h)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let precision = match flag("--precision").as_deref() {
        None | Some("f32") => Precision::F32,
        Some("int8") => Precision::Int8,
        Some(p) => return Err(format!("--precision {p}: f32 or int8").into()),
    };
    let calls: usize = flag("--calls").map_or(Ok(1), |v| v.parse())?;
    let rounds: usize = flag("--rounds").map_or(Ok(1), |v| v.parse())?;
    let texts: Vec<String> = match args.first().filter(|a| !a.starts_with("--")) {
        Some(path) => std::fs::read_to_string(path)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?,
        None => (0..256)
            .map(|i| {
                (0..250)
                    .map(|j| WORDS[(i * 7 + j * 3) % WORDS.len()])
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect(),
    };
    let n = texts.len();
    if precision == Precision::Int8 {
        println!("int8 kernels: {:?}", int8_kernels());
    }
    let dir = std::env::var("MINILM_MODEL_DIR")
        .unwrap_or_else(|_| ".local/models/all-MiniLM-L6-v2".into());
    let model = MiniLmEmbedder::load(&MiniLmConfig {
        model_dir: dir.into(),
        max_tokens: 256,
        batch_size: 32,
        precision,
    })?;
    let window = model.max_tokens();
    let tokens: Vec<usize> = model
        .token_counts(&texts)?
        .into_iter()
        .map(|t| t.min(window))
        .collect();
    let real: usize = tokens.iter().sum();
    let work: f64 = tokens.iter().map(|&t| flops(t)).sum();
    let per_call = n.div_ceil(calls.max(1));
    let padded: usize = texts
        .chunks(per_call)
        .zip(tokens.chunks(per_call))
        .map(|(_, t)| model.padded_rows(t))
        .sum();
    // Warm-up: first-touch page faults, allocator growth and the int8 kernels' weight
    // packing are not the steady state.
    model.embed_sync(&texts[..n.min(32)])?;
    for round in 0..rounds.max(1) {
        let started = Instant::now();
        let mut vectors = 0;
        for call in texts.chunks(per_call) {
            vectors += model.embed_sync(call)?.len();
        }
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(vectors, n);
        println!(
            "candle all-MiniLM-L6-v2 {precision:?}: {n} texts ({:.0} word pieces on average), \
             {} call(s), threads {}, round {}: {:.1} texts/s, {:.0} word pieces/s, \
             padding {:.1}% of rows, {:.1} GFLOP/s ({secs:.2} s)",
            real as f64 / n as f64,
            texts.chunks(per_call).count(),
            std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into()),
            round + 1,
            n as f64 / secs,
            real as f64 / secs,
            100.0 * (padded - real) as f64 / padded as f64,
            work / secs / 1e9,
        );
    }
    Ok(())
}
