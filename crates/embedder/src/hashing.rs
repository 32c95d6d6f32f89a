//! The built-in embedder: feature hashing of word n-grams, L2-normalized.
//!
//! It is lexical, not semantic: two texts are close when they share words and word pairs,
//! whatever those words mean. It needs no model, no network and no GPU, it is deterministic
//! (same text, same vector, on every machine and in every release that keeps the model
//! name), and it is fast. Each n-gram is hashed (FNV-1a, then a SplitMix64 finaliser) to a
//! dimension and a sign; signed hashing keeps collisions from biasing dot products.

use serde::{Deserialize, Serialize};

/// Settings of the hashing embedder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HashingConfig {
    /// Vector length. More dimensions, fewer collisions; 384 matches common small models.
    pub dims: usize,
    /// Longest word n-gram hashed (1 = words only, 2 = words and word pairs).
    pub max_ngram: usize,
}

impl Default for HashingConfig {
    fn default() -> Self {
        Self {
            dims: 384,
            max_ngram: 2,
        }
    }
}

/// Feature-hashing embedder. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dims: usize,
    max_ngram: usize,
    model: String,
}

impl HashingEmbedder {
    /// Builds the embedder; `dims` and `max_ngram` below 1 are raised to 1.
    pub fn new(cfg: HashingConfig) -> Self {
        let dims = cfg.dims.max(1);
        let max_ngram = cfg.max_ngram.max(1);
        Self {
            dims,
            max_ngram,
            // The name changes whenever vectors would: stored vectors stay comparable.
            model: format!("hashing-v1-n{max_ngram}-d{dims}"),
        }
    }

    /// The model name stored with each vector, e.g. `hashing-v1-n2-d384`.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Vector length.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Embeds texts on the calling thread. A text without any word gets the zero vector
    /// (there is no direction to normalize); every other vector has length 1.
    pub fn embed_sync(&self, texts: &[String]) -> Vec<Vec<f32>> {
        texts.iter().map(|t| self.embed_one(t)).collect()
    }

    fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dims];
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        for n in 1..=self.max_ngram {
            for gram in words.windows(n) {
                let mut h = fnv1a(FNV_OFFSET ^ n as u64, gram[0].as_bytes());
                for w in &gram[1..] {
                    // A separator no word contains, so ("ab","c") != ("a","bc").
                    h = fnv1a(h, &[0x1f]);
                    h = fnv1a(h, w.as_bytes());
                }
                let h = mix(h);
                let idx = (h % self.dims as u64) as usize;
                let sign = if (h >> 63) & 1 == 1 { -1.0 } else { 1.0 };
                v[idx] += sign;
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// SplitMix64 finaliser: FNV's low bits are weak for short keys, and `% dims` uses them.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn deterministic_normalized_and_lexical() {
        let e = HashingEmbedder::new(HashingConfig::default());
        let texts = vec![
            "The river flooded the lower town".to_string(),
            "the RIVER flooded the lower town!".to_string(),
            "Flooding river hits the lower town".to_string(),
            "Quarterly earnings beat analyst forecasts".to_string(),
            "   ".to_string(),
        ];
        let v = e.embed_sync(&texts);
        assert_eq!(v.len(), 5);
        assert!(v.iter().all(|x| x.len() == 384));
        let norm = |x: &[f32]| x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm(&v[0]) - 1.0).abs() < 1e-5);
        // Case and punctuation do not matter; shared words pull texts together.
        assert!((cos(&v[0], &v[1]) - 1.0).abs() < 1e-5);
        assert!(cos(&v[0], &v[2]) > cos(&v[0], &v[3]) + 0.2);
        assert!(v[4].iter().all(|x| *x == 0.0));
        // Same input, same output, across instances.
        let again = HashingEmbedder::new(HashingConfig::default()).embed_sync(&texts[..1]);
        assert_eq!(again[0], v[0]);
    }

    #[test]
    fn known_vector_is_stable_across_releases() {
        // Pins the hash so a change that would silently alter stored vectors fails here.
        let e = HashingEmbedder::new(HashingConfig {
            dims: 8,
            max_ngram: 2,
        });
        let v = e.embed_sync(&["hello world".to_string()]);
        let nonzero: Vec<(usize, f32)> = v[0]
            .iter()
            .enumerate()
            .filter(|(_, x)| **x != 0.0)
            .map(|(i, x)| (i, (x * 1000.0).round() / 1000.0))
            .collect();
        assert_eq!(e.model(), "hashing-v1-n2-d8");
        assert_eq!(nonzero, PINNED.to_vec());
    }

    const PINNED: &[(usize, f32)] = &[(1, -0.577), (3, -0.577), (7, -0.577)];
}
