//! Writing updates back to storage narrower than f32: round to nearest, or stochastic rounding
//! whose random bits come from a keyed stream (unbiased and deterministic).

use half::{bf16, f16};
use serde::{Deserialize, Serialize};
use zo_sampler::sweep::Element;
use zo_sampler::{DirectionKey, Distribution, Stream, TensorId};

/// The direction index whose stream gives the random bits of a step's stochastic rounding (the
/// key `(seed, step, ROUNDING_DIRECTION)`; LOZO's `V` uses `u32::MAX`).
pub const ROUNDING_DIRECTION: u32 = u32::MAX - 1;

/// How an update is written to bf16 or f16 storage (f32 storage is written exactly either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Stochastic rounding: a value between two neighbours `a < v < b` becomes `b` with probability
    /// `(v − a)/(b − a)`, so the stored value is unbiased and an update far below half an ulp still
    /// moves the weights on average. The random bits are element `i` of the stream
    /// `(seed, step, ROUNDING_DIRECTION)` on the tensor: replay and resume stay bitwise.
    #[default]
    Stochastic,
    /// Round to nearest, ties to even: updates below half an ulp of a weight are lost.
    Nearest,
}

/// The rounding of one update: nearest, or stochastic with the bits of a step's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreRounding {
    /// Round to nearest, ties to even.
    Nearest,
    /// Stochastic rounding with the random bits of this key.
    Stochastic(DirectionKey),
}

impl StoreRounding {
    /// The rounding a parameter set asks for, keyed by the step.
    pub fn for_step(rounding: Rounding, seed: u64, step: u64) -> Self {
        match rounding {
            Rounding::Nearest => Self::Nearest,
            Rounding::Stochastic => {
                Self::Stochastic(DirectionKey::new(seed, step, ROUNDING_DIRECTION))
            }
        }
    }

    /// The bit stream on tensor `id`, when stochastic.
    pub(crate) fn stream(&self, id: TensorId) -> Option<Stream> {
        match self {
            Self::Nearest => None,
            Self::Stochastic(key) => Some(Stream::new(*key, id, Distribution::Normal)),
        }
    }
}

/// The 16 random bits of element `index` of a rounding stream: Philox block `index / 8`, word
/// `(index / 2) mod 4`, low half for even indices and high half for odd ones.
#[inline]
pub fn rounding_bits(stream: &Stream, index: u64) -> u16 {
    let word = stream.block_bits(index >> 3)[((index >> 1) & 3) as usize];
    (word >> (16 * (index & 1))) as u16
}

/// Fill `out` with the rounding bits of elements `offset .. offset + out.len()`.
pub(crate) fn fill_bits(stream: &Stream, offset: u64, out: &mut [u16]) {
    let mut i = 0;
    while i < out.len() {
        let index = offset + i as u64;
        let block = stream.block_bits(index >> 3);
        // Take every element of this block from here on.
        let first = (index & 7) as usize;
        for (j, slot) in (first..8).enumerate() {
            if i + j >= out.len() {
                break;
            }
            out[i + j] = (block[slot >> 1] >> (16 * (slot & 1))) as u16;
        }
        i += 8 - first;
    }
}

/// A storage element that can be written with stochastic rounding.
pub trait StochasticRound: Element {
    /// Round `v` stochastically with the 16 random bits `bits`. Exact values, infinities and NaN
    /// round as [`Element::from_f32`] does.
    fn round_stochastic(v: f32, bits: u16) -> Self;
}

impl StochasticRound for f32 {
    #[inline(always)]
    fn round_stochastic(v: f32, _bits: u16) -> Self {
        v
    }
}

impl StochasticRound for bf16 {
    /// bf16 keeps the high 16 bits of an f32: adding 16 random bits to the dropped half before
    /// truncating rounds the magnitude up with probability `dropped / 2¹⁶`, exactly.
    #[inline(always)]
    fn round_stochastic(v: f32, bits: u16) -> Self {
        if !v.is_finite() {
            return <bf16 as Element>::from_f32(v);
        }
        let x = v.to_bits();
        bf16::from_bits((x.wrapping_add(u32::from(bits)) >> 16) as u16)
    }
}

/// The next f16 toward +∞ (`up`) or −∞ of a finite `x`.
fn f16_next(x: f16, up: bool) -> f16 {
    let b = x.to_bits();
    let negative = b & 0x8000 != 0;
    if b & 0x7FFF == 0 {
        // ±0: the smallest subnormal of the requested sign.
        return f16::from_bits(if up { 0x0001 } else { 0x8001 });
    }
    f16::from_bits(if up != negative { b + 1 } else { b - 1 })
}

/// `2⁻¹⁴`, the smallest normal f16, as f32 bits.
const F16_MIN_NORMAL_BITS: u32 = 0x3880_0000;
/// `65504`, the largest finite f16, as f32 bits.
const F16_MAX_BITS: u32 = 0x477F_E000;

impl StochasticRound for f16 {
    /// In the normal range (`2⁻¹⁴ ≤ |v| < 65504`) an f16 keeps the top 10 of the f32's 23
    /// fraction bits: the low 13 bits of `bits` are added to the 13 dropped bits of `|v|` before
    /// truncating, so the magnitude rounds up with probability `dropped / 2¹³`, exactly (the same
    /// device as bf16's). Elsewhere (subnormals, the overflow boundary), between the neighbours
    /// `a < v < b`, `b` is chosen when `(bits + ½)/2¹⁶ < (v − a)/(b − a)`.
    #[inline(always)]
    fn round_stochastic(v: f32, bits: u16) -> Self {
        let x = v.to_bits();
        let magnitude = x & 0x7FFF_FFFF;
        if (F16_MIN_NORMAL_BITS..F16_MAX_BITS).contains(&magnitude) {
            // At most 0x477F_FFFF: the truncation stays at or below 65504.
            let y = (magnitude + (u32::from(bits) & 0x1FFF)) & !0x1FFF;
            let sign = ((x >> 16) & 0x8000) as u16;
            let exponent = ((y >> 23) - 112) as u16;
            let fraction = ((y >> 13) & 0x3FF) as u16;
            return f16::from_bits(sign | (exponent << 10) | fraction);
        }
        f16_round_stochastic_slow(v, bits)
    }
}

/// [`StochasticRound::round_stochastic`] for f16 outside the normal range.
fn f16_round_stochastic_slow(v: f32, bits: u16) -> f16 {
    {
        let n = f16::from_f32(v);
        let nv = n.to_f32();
        if nv == v || !v.is_finite() || !nv.is_finite() {
            return n;
        }
        let (lo, hi) = if nv < v {
            (n, f16_next(n, true))
        } else {
            (f16_next(n, false), n)
        };
        let (a, b) = (lo.to_f32(), hi.to_f32());
        if !b.is_finite() {
            return lo;
        }
        let p = (v - a) / (b - a);
        let u = (f32::from(bits) + 0.5) / 65536.0;
        if u < p { hi } else { lo }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_of<E: StochasticRound>(v: f32, n: u32) -> f64 {
        let stream = Stream::new(
            DirectionKey::new(1, 2, 3),
            TensorId(4),
            Distribution::Normal,
        );
        (0..n)
            .map(|i| {
                f64::from(E::round_stochastic(v, rounding_bits(&stream, u64::from(i))).to_f32())
            })
            .sum::<f64>()
            / f64::from(n)
    }

    #[test]
    fn stochastic_rounding_is_unbiased_where_nearest_loses_the_update() {
        // 1 + 2⁻¹² is a sixteenth of a bf16 ulp above 1 and a quarter of an f16 ulp.
        let v = 1.0 + 2f32.powi(-12);
        assert_eq!(<bf16 as Element>::from_f32(v).to_f32(), 1.0);
        let n = 1 << 16;
        let bf = mean_of::<bf16>(v, n);
        let hf = mean_of::<f16>(v, n);
        // Standard deviation of the mean: ulp·√(p(1−p)/n) ≈ 2⁻⁷·0.24/256.
        assert!(
            (bf - f64::from(v)).abs() < 4.0 * 2f64.powi(-7) * 0.25 / 256.0,
            "{bf}"
        );
        assert!(
            (hf - f64::from(v)).abs() < 4.0 * 2f64.powi(-10) * 0.5 / 256.0,
            "{hf}"
        );
        for v in [-v, -3.0e-6, 7.0e-8] {
            let bf = mean_of::<bf16>(v, n);
            assert!(
                ((bf - f64::from(v)) / f64::from(v)).abs() < 2e-3,
                "{v} {bf}"
            );
            let hf = mean_of::<f16>(v, n);
            assert!(
                ((hf - f64::from(v)) / f64::from(v)).abs() < 2e-2,
                "{v} {hf}"
            );
        }
    }

    #[test]
    fn exact_values_and_specials_are_kept() {
        for bits in [0u16, 1, 0x7FFF, 0xFFFF] {
            for v in [1.5f32, -2.0, 0.0, f32::INFINITY, f32::NEG_INFINITY] {
                assert_eq!(bf16::round_stochastic(v, bits).to_f32(), v);
                assert_eq!(f16::round_stochastic(v, bits).to_f32(), v);
            }
            assert!(bf16::round_stochastic(f32::NAN, bits).is_nan());
            assert!(f16::round_stochastic(f32::NAN, bits).is_nan());
        }
    }

    #[test]
    fn the_result_is_one_of_the_two_neighbours() {
        let stream = Stream::new(
            DirectionKey::new(9, 9, 9),
            TensorId(9),
            Distribution::Normal,
        );
        for i in 0..10_000u64 {
            let v = (i as f32 - 5000.0) * 0.37e-3;
            let r = rounding_bits(&stream, i);
            let truncated = (v.to_bits() >> 16) as u16;
            let b = bf16::round_stochastic(v, r).to_bits();
            assert!(b == truncated || b == truncated + 1, "{v}");
            let h = f16::round_stochastic(v, r);
            let n = f16::from_f32(v);
            assert!(h == n || h == f16_next(n, true) || h == f16_next(n, false));
        }
    }

    #[test]
    fn the_f16_fast_path_truncates_to_a_neighbour_and_matches_nearest_when_exact() {
        let stream = Stream::new(
            DirectionKey::new(2, 4, 6),
            TensorId(8),
            Distribution::Normal,
        );
        for i in 0..100_000u64 {
            let v = ((i as f32) - 50_000.0) * 1.37e-3 + 1e-4;
            let r = rounding_bits(&stream, i);
            let got = f16::round_stochastic(v, r);
            let slow = f16_round_stochastic_slow(v, r);
            let n = f16::from_f32(v);
            let neighbours = [n, f16_next(n, true), f16_next(n, false)];
            assert!(neighbours.contains(&got), "{v}: {got}");
            assert!(neighbours.contains(&slow), "{v}: {slow}");
            // Truncation toward zero or one step away from it, never further.
            assert!(
                (got.to_f32() - v).abs()
                    < (n.to_f32() - v).abs()
                        + 2.0 * (f16_next(n, true).to_f32() - n.to_f32()).abs()
            );
        }
        for v in [1.0f32, -2.5, 65504.0, 6.103_515_6e-5] {
            for bits in [0u16, 0x1FFF, 0xFFFF] {
                assert_eq!(f16::round_stochastic(v, bits).to_f32(), v);
            }
        }
    }

    #[test]
    fn filled_bits_match_single_lookups() {
        let stream = Stream::new(
            DirectionKey::new(5, 6, 7),
            TensorId(8),
            Distribution::Normal,
        );
        for offset in [0u64, 3, 8, 13] {
            let mut out = vec![0u16; 37];
            fill_bits(&stream, offset, &mut out);
            for (i, b) in out.iter().enumerate() {
                assert_eq!(*b, rounding_bits(&stream, offset + i as u64));
            }
        }
    }
}
