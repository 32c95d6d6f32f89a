//! all-MiniLM-L6-v2, a sentence-embedding model, run in process on the CPU with candle.
//!
//! The model is a 6-layer BERT (384 hidden, 12 heads) whose token states are mean-pooled
//! over the attention mask and L2-normalized, exactly as sentence-transformers does for
//! this model (`modules.json`: Transformer, Pooling(mean), Normalize). Texts are cut at
//! `max_tokens` word pieces (256, the model's `max_seq_length`).
//!
//! The weights are read from a model directory (`config.json`, `tokenizer.json`,
//! `model.safetensors`), put there by `deploy/local/install-model.sh` or the container
//! image; nothing is downloaded at run time. A missing file is a [`EmbedError::Config`] that
//! names the install command.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use serde::{Deserialize, Serialize};
use tokenizers::{Tokenizer, TruncationParams};

use crate::EmbedError;

mod ops;

/// The model name stored with each vector.
pub const MINILM_MODEL: &str = "all-MiniLM-L6-v2";

/// The command that installs the model files, named in the error when they are missing.
pub const INSTALL_HINT: &str = "deploy/local/install-model.sh";

/// Settings of the in-process model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiniLmConfig {
    /// Directory holding `config.json`, `tokenizer.json` and `model.safetensors`.
    pub model_dir: PathBuf,
    /// Longest input in word pieces; longer texts are truncated (the model saw 256).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// Texts tokenized together. Texts are sorted by length first, so a batch pads little;
    /// the forward pass then runs a batch in chunks of at most 256 padded tokens (or one
    /// text when it is longer).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Arithmetic of the projections (`f32`, the default here, or `int8`; `int8` runs in
    /// `f32` on a CPU without VNNI, where candle's int8 products are slower).
    #[serde(default)]
    pub precision: Precision,
}

/// Arithmetic of the model's projections (its matrix products with weights).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats (gemm's kernels).
    #[default]
    F32,
    /// 8-bit integers: weights quantised once at load, activations at each product, by
    /// candle's quantized kernels (see the crate README for which ones and their quality).
    Int8,
}

fn default_max_tokens() -> usize {
    256
}

fn default_batch_size() -> usize {
    32
}

/// Rows (texts times their padded length) per forward pass: a batch is run in chunks of
/// texts that fit, so the activations of a chunk stay in the CPU's caches.
const CHUNK_TOKENS: usize = 256;

/// The loaded model. Cheap to clone (the weights are shared).
#[derive(Clone)]
pub struct MiniLmEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    tokenizer: Tokenizer,
    /// The same tokenizer without truncation, to count what a text would need.
    counter: Tokenizer,
    max_tokens: usize,
    /// The precision the model runs in (int8 asked for on a CPU without VNNI runs in f32).
    precision: Precision,
    bert: Bert,
    batch_size: usize,
    dims: usize,
}

impl std::fmt::Debug for MiniLmEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLmEmbedder")
            .field("dims", &self.inner.dims)
            .field("batch_size", &self.inner.batch_size)
            .finish()
    }
}

#[derive(Deserialize)]
struct BertConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    type_vocab_size: usize,
    layer_norm_eps: f64,
    hidden_act: String,
}

impl MiniLmEmbedder {
    /// Loads the tokenizer and the weights from `cfg.model_dir`.
    ///
    /// # Errors
    /// [`EmbedError::Config`] when a file is missing (naming the install command) or unusable.
    pub fn load(cfg: &MiniLmConfig) -> Result<Self, EmbedError> {
        if cfg.max_tokens == 0 || cfg.batch_size == 0 {
            return Err(EmbedError::Config(
                "embedding.minilm: max_tokens and batch_size must be at least 1".into(),
            ));
        }
        let dir = &cfg.model_dir;
        let read = |name: &str| -> Result<Vec<u8>, EmbedError> {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| {
                EmbedError::Config(format!(
                    "model file {} cannot be read ({e}); install the model with \
                     `{INSTALL_HINT}` or point embedding.minilm.model_dir at it",
                    path.display()
                ))
            })
        };
        let config: BertConfig = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| bad(dir, "config.json", e))?;
        if config.hidden_act != "gelu"
            || config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(bad(dir, "config.json", "not a BERT with gelu activations"));
        }
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| bad(dir, "tokenizer.json", e))?;
        let max_tokens = cfg.max_tokens.min(config.max_position_embeddings);
        // No padding: the forward pass pads each chunk of texts itself.
        tokenizer.with_padding(None);
        let mut counter = tokenizer.clone();
        // The file's own truncation (128) is replaced: by none here, by `max_tokens` below.
        counter
            .with_truncation(None)
            .map_err(|e| bad(dir, "tokenizer.json", e))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| bad(dir, "tokenizer.json", e))?;
        let weights = read("model.safetensors")?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| bad(dir, "model.safetensors", e))?;
        // int8 only where candle has fast kernels for it: elsewhere its int8 products are
        // slower than f32, and the vectors are the same within the quality bar.
        let precision = match cfg.precision {
            Precision::Int8 => {
                let (kernels, fast) = int8_kernels();
                if fast {
                    tracing::info!(kernels, "model projections in int8");
                    Precision::Int8
                } else {
                    tracing::warn!(
                        kernels,
                        "embedding.minilm.precision = int8, but this CPU has no VNNI: \
                         running the model in f32, which is faster here"
                    );
                    Precision::F32
                }
            }
            Precision::F32 => Precision::F32,
        };
        let bert =
            Bert::load(vb, &config, precision).map_err(|e| bad(dir, "model.safetensors", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                tokenizer,
                counter,
                max_tokens,
                bert,
                batch_size: cfg.batch_size,
                dims: config.hidden_size,
                precision,
            }),
        })
    }

    /// The model name stored with each vector.
    pub fn model(&self) -> &str {
        MINILM_MODEL
    }

    /// Vector length (384).
    pub fn dims(&self) -> usize {
        self.inner.dims
    }

    /// The precision the model runs in: the configured one, except that `int8` runs in
    /// `f32` on a CPU without VNNI (see [`int8_kernels`]).
    pub fn precision(&self) -> Precision {
        self.inner.precision
    }

    /// The longest input in word pieces, special tokens included; the model reads no
    /// further.
    pub fn max_tokens(&self) -> usize {
        self.inner.max_tokens
    }

    /// How many word pieces (special tokens included) each text has before truncation, to
    /// size chunks to the model's window.
    ///
    /// # Errors
    /// [`EmbedError::Model`] when tokenizing fails.
    pub fn token_counts(&self, texts: &[String]) -> Result<Vec<usize>, EmbedError> {
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        Ok(self
            .inner
            .counter
            .encode_batch(inputs, true)
            .map_err(|e| EmbedError::Model(format!("tokenizer: {e}")))?
            .iter()
            .map(|e| e.get_ids().len())
            .collect())
    }

    /// Embeds texts on the calling thread (CPU-bound: call it from a blocking thread).
    /// Every vector has length 1.
    ///
    /// All texts are tokenized first, then run through the model in order of their length
    /// in word pieces, in chunks of at most [`CHUNK_TOKENS`] padded rows, so texts of
    /// similar length share a chunk and little is computed on padding.
    ///
    /// # Errors
    /// [`EmbedError::Model`] when tokenizing or the forward pass fails.
    pub fn embed_sync(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let inner = &self.inner;
        let mut encodings = Vec::with_capacity(texts.len());
        for group in texts.chunks(inner.batch_size) {
            let inputs: Vec<&str> = group.iter().map(String::as_str).collect();
            encodings.extend(
                inner
                    .tokenizer
                    .encode_batch(inputs, true)
                    .map_err(|e| EmbedError::Model(format!("tokenizer: {e}")))?,
            );
        }
        // Texts cut at the window: what follows the cut does not reach the vector.
        let truncated = encodings
            .iter()
            .filter(|e| !e.get_overflowing().is_empty())
            .count();
        if truncated > 0 {
            metrics::counter!("pipeline_embedding_truncated_total").increment(truncated as u64);
        }
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let lengths: Vec<usize> = order
            .iter()
            .map(|&i| encodings[i].get_ids().len())
            .collect();
        let mut out = vec![Vec::new(); texts.len()];
        for (start, end, len) in chunks(&lengths) {
            let mut ids = vec![0u32; (end - start) * len];
            for (row, &i) in ids.chunks_exact_mut(len).zip(&order[start..end]) {
                let e = encodings[i].get_ids();
                row[..e.len()].copy_from_slice(e);
            }
            let vectors = inner
                .run(ids, &lengths[start..end], len)
                .map_err(|e| EmbedError::Model(format!("forward pass: {e}")))?;
            for (&i, v) in order[start..end].iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Rows the forward pass computes (padding included) for texts of these lengths in
    /// word pieces, grouped as [`MiniLmEmbedder::embed_sync`] groups them; against the sum
    /// of the lengths, the share spent on padding.
    pub fn padded_rows(&self, lengths: &[usize]) -> usize {
        let mut sorted: Vec<usize> = lengths
            .iter()
            .map(|&l| l.min(self.inner.max_tokens))
            .collect();
        sorted.sort_unstable();
        chunks(&sorted)
            .into_iter()
            .map(|(start, end, len)| (end - start) * len)
            .sum()
    }
}

/// Chunks of texts sorted by length: `(start, end, padded length)`, each holding the next
/// texts whose padded rows fit in [`CHUNK_TOKENS`] (at least one text, and at least one
/// column, so texts without tokens still have rows).
fn chunks(sorted_lengths: &[usize]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < sorted_lengths.len() {
        let (mut end, mut len) = (start + 1, sorted_lengths[start]);
        while end < sorted_lengths.len()
            && len.max(sorted_lengths[end]) * (end + 1 - start) <= CHUNK_TOKENS
        {
            len = len.max(sorted_lengths[end]);
            end += 1;
        }
        out.push((start, end, len.max(1)));
        start = end;
    }
    out
}

impl Inner {
    fn run(
        &self,
        ids: Vec<u32>,
        lengths: &[usize],
        len: usize,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let ids = Tensor::from_vec(ids, (lengths.len(), len), &Device::Cpu)?;
        let states = self.bert.forward(&ids, lengths)?;
        let hidden = states.dim(1)?;
        let states = states.flatten_all()?.to_vec1::<f32>()?;
        // Mean over the real tokens (padding left out), then unit length.
        Ok(lengths
            .iter()
            .enumerate()
            .map(|(b, &tokens)| {
                let mut mean = vec![0f32; hidden];
                for row in states[b * len * hidden..][..tokens * hidden].chunks_exact(hidden) {
                    for (m, v) in mean.iter_mut().zip(row) {
                        *m += v;
                    }
                }
                let count = tokens.max(1) as f32;
                mean.iter_mut().for_each(|m| *m /= count);
                let norm = mean.iter().map(|m| m * m).sum::<f32>().sqrt().max(1e-12);
                mean.iter_mut().for_each(|m| *m /= norm);
                mean
            })
            .collect())
    }
}

fn bad(dir: &Path, file: &str, e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Config(format!(
        "model file {} is unusable ({e}); reinstall it with `{INSTALL_HINT}`",
        dir.join(file).display()
    ))
}

/// The BERT encoder: embeddings, then `layers` of self-attention and feed-forward.
struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
}

/// A projection `x @ weight.t()`; its bias is added by the fused step that follows it.
struct Dense {
    weight: Weight,
    bias: Vec<f32>,
}

/// A projection's weights, in the configured precision.
enum Weight {
    /// `(out, in)` floats, multiplied by gemm.
    F32(Tensor),
    /// Quantised rows (`Q8_0`: blocks of 32 weights with one f16 scale), multiplied by
    /// candle's quantized kernels. `inputs` is the real input width; the weights are
    /// zero-padded to `padded` columns when the fast kernels need a multiple of 256, and
    /// the input is padded the same way before each product.
    Int8 {
        q: QMatMul,
        inputs: usize,
        padded: usize,
    },
}

/// Which of candle's int8 kernels this CPU gets (candle checks the same features at run
/// time): `vpdpbusd` on 512-bit (AVX-512 VNNI) or 256-bit (AVX-VNNI) registers; without
/// VNNI, candle's `Q8_0` products fall back to per-dot-product AVX2 code that is slower
/// than `f32` (see the README). Returns the kernels' name and whether they are the fast
/// (VNNI) ones.
pub fn int8_kernels() -> (&'static str, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vnni") {
            return ("avx512-vnni", true);
        }
        if std::is_x86_feature_detected!("avxvnni") && std::is_x86_feature_detected!("avx2") {
            return ("avx-vnni", true);
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return ("avx2 dot products", false);
        }
    }
    ("portable", false)
}

/// Input widths the repacked int8 kernels take (candle quantises the activations in
/// blocks of 256 for them).
const INT8_BLOCK: usize = 256;

impl Dense {
    fn load(
        vb: &VarBuilder,
        inputs: usize,
        outputs: usize,
        precision: Precision,
    ) -> candle_core::Result<Self> {
        Self::new(
            vb.get((outputs, inputs), "weight")?,
            vb.get(outputs, "bias")?.to_vec1()?,
            precision,
        )
    }

    fn new(weight: Tensor, bias: Vec<f32>, precision: Precision) -> candle_core::Result<Self> {
        let weight = match precision {
            Precision::F32 => Weight::F32(weight),
            Precision::Int8 => {
                let inputs = weight.dim(1)?;
                let padded = inputs.div_ceil(INT8_BLOCK) * INT8_BLOCK;
                let weight = weight.pad_with_zeros(1, 0, padded - inputs)?;
                Weight::Int8 {
                    q: QMatMul::from_qtensor(QTensor::quantize(&weight, GgmlDType::Q8_0)?)?,
                    inputs,
                    padded,
                }
            }
        };
        Ok(Self { weight, bias })
    }

    /// The product without the bias: one matrix product over all rows.
    fn matmul(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.weight {
            Weight::F32(w) => x.matmul(&w.t()?),
            Weight::Int8 { q, inputs, padded } => {
                if padded > inputs {
                    q.forward(&x.pad_with_zeros(1, 0, padded - inputs)?)
                } else {
                    q.forward(x)
                }
            }
        }
    }
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl Norm {
    fn load(vb: &VarBuilder, size: usize, eps: f64) -> candle_core::Result<Self> {
        Ok(Self {
            gamma: vb.get(size, "weight")?.to_vec1()?,
            beta: vb.get(size, "bias")?.to_vec1()?,
            eps: eps as f32,
        })
    }

    /// `LayerNorm(x + bias + residual)`, `bias` being the one of the projection that made `x`.
    fn add(&self, x: &Tensor, bias: &[f32], residual: &Tensor) -> candle_core::Result<Tensor> {
        x.apply_op2_no_bwd(
            residual,
            &ops::AddNorm {
                bias,
                gamma: &self.gamma,
                beta: &self.beta,
                eps: self.eps,
            },
        )
    }
}

struct Layer {
    /// Query, key and value in one projection (`3 * hidden` outputs, in that order); the
    /// query rows are pre-scaled by `1 / sqrt(head size)`, the attention scores' scale.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    intermediate: Dense,
    output: Dense,
    output_norm: Norm,
}

impl Bert {
    fn load(vb: VarBuilder, c: &BertConfig, precision: Precision) -> candle_core::Result<Self> {
        let h = c.hidden_size;
        let scale = 1.0 / ((h / c.num_attention_heads) as f64).sqrt();
        let e = vb.pp("embeddings");
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let a = l.pp("attention");
                let [q, k, v] = ["query", "key", "value"].map(|p| a.pp("self").pp(p));
                let weight = Tensor::cat(
                    &[
                        (q.get((h, h), "weight")? * scale)?,
                        k.get((h, h), "weight")?,
                        v.get((h, h), "weight")?,
                    ],
                    0,
                )?;
                let bias = Tensor::cat(
                    &[
                        (q.get(h, "bias")? * scale)?,
                        k.get(h, "bias")?,
                        v.get(h, "bias")?,
                    ],
                    0,
                )?
                .to_vec1()?;
                Ok(Layer {
                    qkv: Dense::new(weight, bias, precision)?,
                    attention_out: Dense::load(&a.pp("output.dense"), h, h, precision)?,
                    attention_norm: Norm::load(&a.pp("output.LayerNorm"), h, c.layer_norm_eps)?,
                    intermediate: Dense::load(
                        &l.pp("intermediate.dense"),
                        h,
                        c.intermediate_size,
                        precision,
                    )?,
                    output: Dense::load(&l.pp("output.dense"), c.intermediate_size, h, precision)?,
                    output_norm: Norm::load(&l.pp("output.LayerNorm"), h, c.layer_norm_eps)?,
                })
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            word: candle_nn::embedding(c.vocab_size, h, e.pp("word_embeddings"))?,
            position: candle_nn::embedding(
                c.max_position_embeddings,
                h,
                e.pp("position_embeddings"),
            )?,
            token_type: candle_nn::embedding(c.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            norm: candle_nn::layer_norm(h, c.layer_norm_eps, e.pp("LayerNorm"))?,
            layers,
            heads: c.num_attention_heads,
        })
    }

    /// Token states `(n * len, hidden)` for token ids `(n, len)`, where text `b` has
    /// `lengths[b]` real tokens followed by padding. Rows of padding hold finite values
    /// that mean nothing (pooling skips them).
    fn forward(&self, ids: &Tensor, lengths: &[usize]) -> candle_core::Result<Tensor> {
        let (n, len) = ids.dims2()?;
        let positions = Tensor::arange(0u32, len as u32, ids.device())?;
        let types = ids.zeros_like()?;
        let x = self
            .word
            .forward(ids)?
            .broadcast_add(&self.position.forward(&positions)?)?
            .add(&self.token_type.forward(&types)?)?;
        let hidden = x.dim(2)?;
        // Rows of all tokens at once: every projection is one matrix product.
        let mut x = self.norm.forward(&x)?.reshape((n * len, hidden))?;
        let heads = self.heads;
        let head = hidden / heads;
        for l in &self.layers {
            let qkv = l.qkv.matmul(&x)?;
            qkv.inplace_op1(&ops::Bias {
                bias: &l.qkv.bias,
                gelu: false,
            })?;
            // (n, 3 * heads, len, head): a view, no copy. Each text's query, key and value
            // are then (heads, tokens, head) views with strides the matrix product takes.
            let qkv = qkv.reshape((n, len, 3 * heads, head))?.transpose(1, 2)?;
            let mut context = Vec::with_capacity(2 * n);
            for (b, &tokens) in lengths.iter().enumerate() {
                // Attention over the text's own tokens only: no padded keys to mask out.
                let t = qkv.get(b)?.narrow(1, 0, tokens)?;
                let q = t.narrow(0, 0, heads)?;
                let k = t.narrow(0, heads, heads)?;
                let v = t.narrow(0, 2 * heads, heads)?;
                let probs = q.matmul(&k.t()?)?;
                probs.inplace_op1(&ops::Softmax)?;
                context.push(
                    probs
                        .matmul(&v)?
                        .transpose(0, 1)?
                        .reshape((tokens, hidden))?,
                );
                if tokens < len {
                    context.push(Tensor::zeros(
                        (len - tokens, hidden),
                        x.dtype(),
                        x.device(),
                    )?);
                }
            }
            let context = Tensor::cat(&context, 0)?;
            let a = l.attention_norm.add(
                &l.attention_out.matmul(&context)?,
                &l.attention_out.bias,
                &x,
            )?;
            let i = l.intermediate.matmul(&a)?;
            i.inplace_op1(&ops::Bias {
                bias: &l.intermediate.bias,
                gelu: true,
            })?;
            x = l
                .output_norm
                .add(&l.output.matmul(&i)?, &l.output.bias, &a)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_model_names_the_install_command() {
        let err = MiniLmEmbedder::load(&MiniLmConfig {
            model_dir: "/nonexistent/model".into(),
            max_tokens: 256,
            batch_size: 8,
            precision: Precision::F32,
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("config.json"), "{text}");
        assert!(text.contains(INSTALL_HINT), "{text}");
        assert!(!err.is_transient());
    }
}
