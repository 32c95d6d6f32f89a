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
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| bad(dir, "tokenizer.json", e))?;
        // No padding: the forward pass pads each chunk of texts itself.
        tokenizer.with_padding(None);
        let weights = read("model.safetensors")?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| bad(dir, "model.safetensors", e))?;
        let bert = Bert::load(vb, &config).map_err(|e| bad(dir, "model.safetensors", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                tokenizer,
                bert,
                batch_size: cfg.batch_size,
                dims: config.hidden_size,
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

    /// Embeds texts on the calling thread (CPU-bound: call it from a blocking thread).
    /// Every vector has length 1.
    ///
    /// # Errors
    /// [`EmbedError::Model`] when tokenizing or the forward pass fails.
    pub fn embed_sync(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let inner = &self.inner;
        // Sorting by length makes each batch pad to a similar length: less wasted compute.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out = vec![Vec::new(); texts.len()];
        for batch in order.chunks(inner.batch_size) {
            let inputs: Vec<&str> = batch.iter().map(|&i| texts[i].as_str()).collect();
            let vectors = inner.forward(inputs)?;
            for (&i, v) in batch.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

impl Inner {
    fn forward(&self, inputs: Vec<&str>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| EmbedError::Model(format!("tokenizer: {e}")))?;
        let lengths: Vec<usize> = encodings.iter().map(|e| e.get_ids().len()).collect();
        let mut out = Vec::with_capacity(encodings.len());
        let mut start = 0;
        while start < encodings.len() {
            // The next texts whose padded rows fit in CHUNK_TOKENS (at least one text).
            let (mut end, mut len) = (start + 1, lengths[start]);
            while end < encodings.len() && len.max(lengths[end]) * (end + 1 - start) <= CHUNK_TOKENS
            {
                len = len.max(lengths[end]);
                end += 1;
            }
            // At least one column, so a chunk of texts without tokens still has rows.
            let len = len.max(1);
            let mut ids = vec![0u32; (end - start) * len];
            for (row, e) in ids.chunks_exact_mut(len).zip(&encodings[start..end]) {
                row[..e.get_ids().len()].copy_from_slice(e.get_ids());
            }
            out.extend(
                self.run(ids, &lengths[start..end], len)
                    .map_err(|e| EmbedError::Model(format!("forward pass: {e}")))?,
            );
            start = end;
        }
        Ok(out)
    }

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
    weight: Tensor,
    bias: Vec<f32>,
}

impl Dense {
    fn load(vb: &VarBuilder, inputs: usize, outputs: usize) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get((outputs, inputs), "weight")?,
            bias: vb.get(outputs, "bias")?.to_vec1()?,
        })
    }

    /// The product without the bias: one matrix product over all rows.
    fn matmul(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.weight.t()?)
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
    fn load(vb: VarBuilder, c: &BertConfig) -> candle_core::Result<Self> {
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
                    qkv: Dense { weight, bias },
                    attention_out: Dense::load(&a.pp("output.dense"), h, h)?,
                    attention_norm: Norm::load(&a.pp("output.LayerNorm"), h, c.layer_norm_eps)?,
                    intermediate: Dense::load(&l.pp("intermediate.dense"), h, c.intermediate_size)?,
                    output: Dense::load(&l.pp("output.dense"), c.intermediate_size, h)?,
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
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("config.json"), "{text}");
        assert!(text.contains(INSTALL_HINT), "{text}");
        assert!(!err.is_transient());
    }
}
