//! Fused element-wise steps of the forward pass, as candle custom ops on the CPU.
//!
//! candle's own steps are scalar per element (`exp` and `erf` through libm) and each is a
//! separate pass over memory (`broadcast_add` for a bias, then `gelu_erf`, then an add and a
//! layer norm). These do the same arithmetic in one pass each, with `exp` and `erf` written
//! as branch-free polynomials so the compiler vectorises the loops. Rows are split over
//! rayon's threads, as candle's matrix products are.

use candle_core::{CpuStorage, CustomOp2, InplaceOp1, Layout, Shape};
use rayon::prelude::*;

/// Rows per rayon task: enough work per task that splitting costs nothing measurable.
const ROWS_PER_TASK: usize = 64;

/// `e^x` in f32 (Cephes `expf`: `x = n ln 2 + r`, a degree-6 polynomial for `e^r`, `2^n`
/// from the exponent bits); relative error about 2e-7 over the clamped range.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding 1.5 * 2^23 rounds to the nearest integer and leaves it in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Clamped so `2^n` stays a normal number (n in -126..=127); e^-87 is ~1.6e-38.
    let x = if x < -87.0 { -87.0 } else { x };
    let x = if x > 88.0 { 88.0 } else { x };
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // n as an integer is the low bits of t; the bias of the f32 exponent is 127.
    let n = t.to_bits().wrapping_sub(ROUND.to_bits());
    er * f32::from_bits(n.wrapping_add(127) << 23)
}

/// `erf(x)` in f32 (Abramowitz and Stegun 7.1.26, as torch's vectorised CPU `erf`):
/// absolute error below 1.5e-7 before rounding.
#[inline(always)]
fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_7;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = ((((A5 * t + A4) * t + A3) * t + A2) * t + A1) * t;
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// GELU with the exact (erf) form, as BERT uses: `x/2 * (1 + erf(x / sqrt 2))`.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Eight partial sums, so the loop is vectorised without reordering a serial sum.
#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let mut m = f32::NEG_INFINITY;
    for &v in chunks.remainder() {
        m = if v > m { v } else { m };
    }
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    acc.iter().fold(m, |m, &v| if v > m { v } else { m })
}

/// The whole f32 buffer of a contiguous tensor.
fn slice_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a mut [f32]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input is not contiguous")))?;
    match storage {
        CpuStorage::F32(v) => Ok(&mut v[start..end]),
        _ => candle_core::bail!("{op}: f32 only"),
    }
}

fn slice<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input is not contiguous")))?;
    match storage {
        CpuStorage::F32(v) => Ok(&v[start..end]),
        _ => candle_core::bail!("{op}: f32 only"),
    }
}

fn last_dim(layout: &Layout) -> usize {
    layout.dims().last().copied().unwrap_or(1)
}

/// Softmax over the last dimension, in place.
pub(super) struct Softmax;

impl InplaceOp1 for Softmax {
    fn name(&self) -> &'static str {
        "minilm-softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let width = last_dim(layout);
        let xs = slice_mut(storage, layout, self.name())?;
        xs.par_chunks_mut(width * ROWS_PER_TASK).for_each(|rows| {
            for row in rows.chunks_exact_mut(width) {
                let m = max(row);
                for v in row.iter_mut() {
                    *v = exp(*v - m);
                }
                let inv = 1.0 / sum(row);
                for v in row.iter_mut() {
                    *v *= inv;
                }
            }
        });
        Ok(())
    }
}

/// Adds a bias to every row in place, then GELU if `gelu` is set.
pub(super) struct Bias<'a> {
    pub bias: &'a [f32],
    pub gelu: bool,
}

impl InplaceOp1 for Bias<'_> {
    fn name(&self) -> &'static str {
        "minilm-bias"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let width = last_dim(layout);
        if width != self.bias.len() {
            candle_core::bail!(
                "{}: {} columns, bias {}",
                self.name(),
                width,
                self.bias.len()
            );
        }
        let xs = slice_mut(storage, layout, self.name())?;
        xs.par_chunks_mut(width * ROWS_PER_TASK).for_each(|rows| {
            for row in rows.chunks_exact_mut(width) {
                if self.gelu {
                    for (v, b) in row.iter_mut().zip(self.bias) {
                        *v = gelu(*v + b);
                    }
                } else {
                    for (v, b) in row.iter_mut().zip(self.bias) {
                        *v += b;
                    }
                }
            }
        });
        Ok(())
    }
}

/// `LayerNorm(x + bias + residual)` over the last dimension: a projection's output (without
/// its bias), the residual stream, and the norm's weight and bias.
pub(super) struct AddNorm<'a> {
    pub bias: &'a [f32],
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub eps: f32,
}

impl CustomOp2 for AddNorm<'_> {
    fn name(&self) -> &'static str {
        "minilm-add-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let width = last_dim(l1);
        if l1.dims() != l2.dims() || [self.gamma.len(), self.beta.len()] != [width, width] {
            candle_core::bail!("{}: shapes differ", self.name());
        }
        let xs = slice(s1, l1, self.name())?;
        let residual = slice(s2, l2, self.name())?;
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(width * ROWS_PER_TASK)
            .zip(xs.par_chunks(width * ROWS_PER_TASK))
            .zip(residual.par_chunks(width * ROWS_PER_TASK))
            .for_each(|((out, xs), residual)| {
                for ((o, x), r) in out
                    .chunks_exact_mut(width)
                    .zip(xs.chunks_exact(width))
                    .zip(residual.chunks_exact(width))
                {
                    for (((o, x), r), b) in o.iter_mut().zip(x).zip(r).zip(self.bias) {
                        *o = x + b + r;
                    }
                    let mean = sum(o) / width as f32;
                    for v in o.iter_mut() {
                        *v -= mean;
                    }
                    let mut sq = [0f32; 8];
                    let chunks = o.chunks_exact(8);
                    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
                    for c in chunks {
                        for (a, v) in sq.iter_mut().zip(c) {
                            *a += v * v;
                        }
                    }
                    let var = (sq.iter().sum::<f32>() + tail) / width as f32;
                    let inv = 1.0 / (var + self.eps).sqrt();
                    for ((v, g), b) in o.iter_mut().zip(self.gamma).zip(self.beta) {
                        *v = *v * inv * g + b;
                    }
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_match_f64_references() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.01;
            let (want, got) = (f64::from(x).exp() as f32, exp(x));
            assert!(
                (got - want).abs() <= want * 4e-7,
                "exp({x}): {got} vs {want}"
            );
            let (want, got) = (erf_f64(x), erf(x));
            // 1.5e-7 from the approximation, the rest from rounding in f32.
            assert!((got - want).abs() <= 3e-7, "erf({x}): {got} vs {want}");
        }
        assert!(exp(-1e4) < 1e-37 && exp(-1e4) >= 0.0);
    }

    /// erf in f64 for the test: its Taylor series below 3, the asymptotic series of erfc
    /// from 3 on (both far more precise than f32 there).
    fn erf_f64(x: f32) -> f32 {
        let x = f64::from(x);
        let a = x.abs();
        if a >= 3.0 {
            let z = 1.0 / (2.0 * a * a);
            let series = 1.0 - z + 3.0 * z * z - 15.0 * z * z * z + 105.0 * z.powi(4);
            let erfc = (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * series;
            return ((1.0 - erfc) as f32).copysign(x as f32);
        }
        let (mut term, mut total, mut k) = (x, x, 0f64);
        while term.abs() > 1e-17 {
            k += 1.0;
            term *= -x * x / k;
            total += term / (2.0 * k + 1.0);
        }
        (total * 2.0 / std::f64::consts::PI.sqrt()) as f32
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_order() {
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
        let want: Vec<f64> = {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f64> = row.iter().map(|v| f64::from(v - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        };
        let m = max(&row);
        for v in row.iter_mut() {
            *v = exp(*v - m);
        }
        let inv = 1.0 / sum(&row);
        for (got, want) in row.iter().zip(&want) {
            assert!((f64::from(got * inv) - want).abs() < 1e-6);
        }
    }
}
