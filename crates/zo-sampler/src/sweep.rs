//! Fused in-place sweeps: `θ[i] += scale[i] · Σⱼ cⱼ · zⱼ(offset + i)`, computed in f32.
//!
//! One pass over the parameters, no direction materialised: the directions are regenerated in
//! groups of 128 elements on the stack (single-term sweeps of f32 and bf16 storage write straight
//! into the parameters). For each element the arithmetic is, in this order,
//!
//! ```text
//! a = c₀·z₀                      // first term
//! a = a + cⱼ·zⱼ   for j = 1, 2, …  // remaining terms, in slice order
//! a = scale[i] · a               // only with a scale vector
//! θ[i] = E::from_f32(θ[i].to_f32() + a)
//! ```
//!
//! so a single term gives exactly `E::from_f32(p.to_f32() + c·z)` (perturbing and restoring drift
//! like plain f32 arithmetic), and the result does not depend on chunking or thread count. An
//! empty list of terms leaves the parameters untouched.

use rayon::prelude::*;

use crate::Stream;
use crate::kernel::{self, Isa};

/// A storage element that sweeps read and write through f32.
///
/// Implemented for `f32`, [`half::bf16`] and [`half::f16`].
pub trait Element: Copy + Send + Sync + 'static {
    /// Widen to f32 (exact).
    fn to_f32(self) -> f32;
    /// Round from f32 to nearest, ties to even.
    fn from_f32(v: f32) -> Self;
    /// Whether [`to_f32`](Self::to_f32) and [`from_f32`](Self::from_f32) are inline arithmetic
    /// that vectorises, so that sweeps may convert element by element inside their loops; when
    /// `false`, sweeps convert through [`add_f32_slice`](Self::add_f32_slice) on small buffers.
    const INLINE_CONVERSIONS: bool = true;
    /// `dst[i] = Self::from_f32(dst[i].to_f32() + add[i])` for every `i` (the slices have equal
    /// lengths). Implementations may vectorise the conversions but must give exactly these
    /// values.
    #[inline(always)]
    fn add_f32_slice(dst: &mut [Self], add: &[f32]) {
        for (d, a) in dst.iter_mut().zip(add) {
            *d = Self::from_f32(d.to_f32() + *a);
        }
    }
}

impl Element for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
}

/// bf16 → f32 bits, quieting NaNs like [`half::bf16::to_f32`], without branches.
#[inline(always)]
fn bf16_to_f32_bits(h: u16) -> u32 {
    let h = u32::from(h);
    let quiet = if h & 0x7FFF > 0x7F80 { 0x0040 } else { 0 };
    (h | quiet) << 16
}

/// f32 bits → bf16 rounded to nearest even, quieting NaNs like [`half::bf16::from_f32`], without
/// branches.
#[inline(always)]
fn f32_bits_to_bf16(x: u32) -> u16 {
    let rounded = x.wrapping_add(0x7FFF + ((x >> 16) & 1)) >> 16;
    let nan = (x >> 16) | 0x0040;
    (if x & 0x7FFF_FFFF > 0x7F80_0000 {
        nan
    } else {
        rounded
    }) as u16
}

impl Element for half::bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from_bits(bf16_to_f32_bits(self.to_bits()))
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        half::bf16::from_bits(f32_bits_to_bf16(v.to_bits()))
    }
}

impl Element for half::f16 {
    /// `half`'s conversions pick F16C at run time, per call: too costly per element.
    const INLINE_CONVERSIONS: bool = false;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        half::f16::from_f32(v)
    }
    /// Through a stack buffer and `half`'s slice conversions (F16C when the CPU has it).
    #[inline(always)]
    fn add_f32_slice(dst: &mut [Self], add: &[f32]) {
        use half::slice::HalfFloatSliceExt;
        let mut buf = [0f32; 128];
        for (d, a) in dst.chunks_mut(buf.len()).zip(add.chunks(buf.len())) {
            let b = &mut buf[..d.len()];
            d.convert_to_f32_slice(b);
            for (b, a) in b.iter_mut().zip(a) {
                *b += *a;
            }
            d.convert_from_f32_slice(b);
        }
    }
}

/// One term `c · z` of a sweep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Term {
    /// The coefficient.
    pub coeff: f32,
    /// The direction stream.
    pub stream: Stream,
}

impl Term {
    /// A new term.
    pub const fn new(coeff: f32, stream: Stream) -> Self {
        Self { coeff, stream }
    }
}

/// Why a sweep refused its input (the parameters are then left untouched).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SweepError {
    /// The scale vector's length differs from the parameter slice's.
    #[error("scale vector has {scale} elements but the parameter slice has {params}")]
    ScaleLength {
        /// Number of parameters.
        params: usize,
        /// Number of scale entries.
        scale: usize,
    },
}

/// Elements per parallel chunk of [`apply`]. Chunks are aligned to multiples of `CHUNK` in index
/// space (the first may be shorter); the values never depend on this.
pub const CHUNK: usize = 1 << 16;

fn check(len: usize, scale: Option<&[f32]>) -> Result<(), SweepError> {
    match scale {
        Some(s) if s.len() != len => Err(SweepError::ScaleLength {
            params: len,
            scale: s.len(),
        }),
        _ => Ok(()),
    }
}

/// `params[i] += scale[i] · Σⱼ cⱼ zⱼ(offset + i)` (scale omitted ⇒ 1) in one sweep, parallel over
/// chunks of [`CHUNK`] elements on the current rayon pool.
///
/// Bitwise identical to [`apply_serial`] for any thread count. Element indices are taken modulo
/// 2^64. See the [module documentation](self) for the exact arithmetic.
///
/// # Errors
/// [`SweepError::ScaleLength`] if `scale` is given and its length differs from `params.len()`.
pub fn apply<E: Element>(
    params: &mut [E],
    offset: u64,
    terms: &[Term],
    scale: Option<&[f32]>,
) -> Result<(), SweepError> {
    if params.len() <= CHUNK {
        return apply_serial(params, offset, terms, scale);
    }
    check(params.len(), scale)?;
    let isa = Isa::detect();
    let head = ((CHUNK as u64 - offset % CHUNK as u64) % CHUNK as u64) as usize;
    let head = head.min(params.len());
    let (first, rest) = params.split_at_mut(head);
    let run = |start: usize, chunk: &mut [E]| {
        let sc = scale.map(|s| &s[start..start + chunk.len()]);
        kernel::sweep(isa, chunk, offset.wrapping_add(start as u64), terms, sc);
    };
    rayon::iter::once(first)
        .chain(rest.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(i, chunk)| {
            let start = if i == 0 { 0 } else { head + (i - 1) * CHUNK };
            run(start, chunk);
        });
    Ok(())
}

/// Single-threaded [`apply`].
///
/// # Errors
/// [`SweepError::ScaleLength`] if `scale` is given and its length differs from `params.len()`.
pub fn apply_serial<E: Element>(
    params: &mut [E],
    offset: u64,
    terms: &[Term],
    scale: Option<&[f32]>,
) -> Result<(), SweepError> {
    check(params.len(), scale)?;
    kernel::sweep(Isa::detect(), params, offset, terms, scale);
    Ok(())
}

/// `params += s · z`: perturb, restore (`−s`) or SGD update. Each element becomes exactly
/// `E::from_f32(p.to_f32() + s * z)`.
///
/// # Errors
/// Never fails today; the `Result` keeps the signature uniform with the other sweeps.
pub fn add_scaled<E: Element>(
    params: &mut [E],
    offset: u64,
    s: f32,
    z: &Stream,
) -> Result<(), SweepError> {
    apply(params, offset, &[Term::new(s, *z)], None)
}

/// `params += Σᵢ cᵢ zᵢ` (the BSZO / n-SPSA update), summed in term order.
///
/// # Errors
/// Never fails today; the `Result` keeps the signature uniform with the other sweeps.
pub fn add_combination<E: Element>(
    params: &mut [E],
    offset: u64,
    terms: &[Term],
) -> Result<(), SweepError> {
    apply(params, offset, terms, None)
}

/// `params += s · (z_to − z_from)`: move from `θ + s·z_from` to `θ + s·z_to` in one sweep, without
/// restoring first. Computed as the two terms `[(−s, from), (s, to)]`, i.e. each element becomes
/// `E::from_f32(p + ((−s)·z_from + s·z_to))`.
///
/// # Errors
/// Never fails today; the `Result` keeps the signature uniform with the other sweeps.
pub fn add_difference<E: Element>(
    params: &mut [E],
    offset: u64,
    s: f32,
    from: &Stream,
    to: &Stream,
) -> Result<(), SweepError> {
    apply(
        params,
        offset,
        &[Term::new(-s, *from), Term::new(s, *to)],
        None,
    )
}

/// `params[i] += scale[i] · s · z(offset + i)` (e.g. HiZOO's `θ ± μ·u/√H` with `scale = 1/√H`):
/// each element becomes `E::from_f32(p + scale[i]·(s·z))`.
///
/// # Errors
/// [`SweepError::ScaleLength`] if `scale.len() != params.len()`.
pub fn add_scaled_elementwise<E: Element>(
    params: &mut [E],
    offset: u64,
    s: f32,
    z: &Stream,
    scale: &[f32],
) -> Result<(), SweepError> {
    apply(params, offset, &[Term::new(s, *z)], Some(scale))
}

/// `params[i] += scale[i] · Σⱼ cⱼ zⱼ(offset + i)`.
///
/// # Errors
/// [`SweepError::ScaleLength`] if `scale.len() != params.len()`.
pub fn add_combination_elementwise<E: Element>(
    params: &mut [E],
    offset: u64,
    terms: &[Term],
    scale: &[f32],
) -> Result<(), SweepError> {
    apply(params, offset, terms, Some(scale))
}

/// `params[i] += scale[i] · s · (z_to − z_from)(offset + i)`, as the terms `[(−s, from), (s, to)]`.
///
/// # Errors
/// [`SweepError::ScaleLength`] if `scale.len() != params.len()`.
pub fn add_difference_elementwise<E: Element>(
    params: &mut [E],
    offset: u64,
    s: f32,
    from: &Stream,
    to: &Stream,
    scale: &[f32],
) -> Result<(), SweepError> {
    apply(
        params,
        offset,
        &[Term::new(-s, *from), Term::new(s, *to)],
        Some(scale),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Edge cases plus a stride through all 2^32 bit patterns (the exhaustive version is
    /// `bf16_conversions_match_half_exhaustively`).
    fn sample_bits() -> impl Iterator<Item = u32> {
        let edges = [
            0u32,
            0x8000_0000,
            1,
            0x7F7F_FFFF,
            0x7F80_0000,
            0xFF80_0000,
            0x7F80_0001,
            0x7FC0_0000,
            0xFFFF_FFFF,
            0x3F80_8000,
            0x3F81_8000,
            0x3F80_8001,
            0x3F80_7FFF,
            0x0000_8000,
            0x7F7F_8000,
            0xFF7F_8000,
        ];
        edges
            .into_iter()
            .chain((0..=u32::MAX).step_by(65_521))
            .chain((0..1 << 17).map(|i| {
                // Every rounding situation of the low 16 bits around a few exponents.
                0x3F80_0000 ^ (i << 15 & 0xFFFF_0000) ^ (i & 0xFFFF)
            }))
    }

    #[test]
    fn bf16_conversions_match_half() {
        for x in sample_bits() {
            let f = f32::from_bits(x);
            assert_eq!(
                <half::bf16 as Element>::from_f32(f).to_bits(),
                half::bf16::from_f32(f).to_bits(),
                "{x:#010x}"
            );
        }
        for h in 0..=u16::MAX {
            let b = half::bf16::from_bits(h);
            assert_eq!(
                Element::to_f32(b).to_bits(),
                b.to_f32().to_bits(),
                "{h:#06x}"
            );
        }
    }

    #[test]
    #[ignore = "exhaustive over 2^32 inputs; run with --ignored in release mode"]
    fn bf16_conversions_match_half_exhaustively() {
        for x in 0..=u32::MAX {
            let f = f32::from_bits(x);
            assert_eq!(
                <half::bf16 as Element>::from_f32(f).to_bits(),
                half::bf16::from_f32(f).to_bits(),
                "{x:#010x}"
            );
        }
    }

    #[test]
    fn slice_additions_match_elementwise_arithmetic() {
        let add: Vec<f32> = sample_bits().take(5000).map(f32::from_bits).collect();
        let base: Vec<f32> = (0..add.len())
            .map(|i| (i as f32 - 2500.0) * 0.013)
            .collect();
        let mut f = base.clone();
        f32::add_f32_slice(&mut f, &add);
        let mut b: Vec<half::bf16> = base.iter().map(|&v| half::bf16::from_f32(v)).collect();
        let b0 = b.clone();
        half::bf16::add_f32_slice(&mut b, &add);
        let mut h: Vec<half::f16> = base.iter().map(|&v| half::f16::from_f32(v)).collect();
        let h0 = h.clone();
        half::f16::add_f32_slice(&mut h, &add);
        for i in 0..add.len() {
            assert_eq!(f[i].to_bits(), (base[i] + add[i]).to_bits());
            let want = half::bf16::from_f32(b0[i].to_f32() + add[i]);
            assert_eq!(b[i].to_bits(), want.to_bits(), "bf16 {i}");
            let want = half::f16::from_f32(h0[i].to_f32() + add[i]);
            assert_eq!(h[i].to_bits(), want.to_bits(), "f16 {i}");
        }
    }
}
