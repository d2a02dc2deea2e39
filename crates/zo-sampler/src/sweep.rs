//! Fused in-place sweeps: `θ[i] += scale[i] · Σⱼ cⱼ · zⱼ(offset + i)`, computed in f32.

use rayon::prelude::*;

use crate::Stream;

/// A storage element that sweeps read and write through f32.
pub trait Element: Copy + Send + Sync + 'static {
    /// Widen to f32.
    fn to_f32(self) -> f32;
    /// Round from f32 (round to nearest, ties to even).
    fn from_f32(v: f32) -> Self;
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

impl Element for half::bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        half::bf16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        half::bf16::from_f32(v)
    }
}

impl Element for half::f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        half::f16::from_f32(v)
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

/// Elements per parallel chunk.
pub const CHUNK: usize = 1 << 16;

/// `params[i] += (scale[i] ·) Σⱼ cⱼ zⱼ(offset + i)` in one sweep, parallel over chunks.
///
/// `scale`, when given, must have `params.len()` elements.
///
/// # Panics
/// If `scale` has a different length from `params`.
pub fn apply<E: Element>(params: &mut [E], offset: u64, terms: &[Term], scale: Option<&[f32]>) {
    if let Some(s) = scale {
        assert_eq!(s.len(), params.len(), "scale length must equal params length");
    }
    params.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, chunk)| {
        let start = ci * CHUNK;
        let sc = scale.map(|s| &s[start..start + chunk.len()]);
        apply_serial(chunk, offset + start as u64, terms, sc);
    });
}

/// Single-threaded [`apply`].
pub fn apply_serial<E: Element>(params: &mut [E], offset: u64, terms: &[Term], scale: Option<&[f32]>) {
    for (i, p) in params.iter_mut().enumerate() {
        let idx = offset + i as u64;
        let mut acc = 0.0f32;
        for t in terms {
            acc += t.coeff * t.stream.at(idx);
        }
        if let Some(s) = scale {
            acc *= s[i];
        }
        *p = E::from_f32(p.to_f32() + acc);
    }
}

/// `params += s · z` (perturb, restore, SGD update).
pub fn add_scaled<E: Element>(params: &mut [E], offset: u64, s: f32, z: &Stream) {
    apply(params, offset, &[Term::new(s, *z)], None);
}

/// `params += s · (z_to − z_from)`: move from `θ + s·z_from` to `θ + s·z_to` in one sweep.
pub fn add_difference<E: Element>(params: &mut [E], offset: u64, s: f32, from: &Stream, to: &Stream) {
    apply(params, offset, &[Term::new(-s, *from), Term::new(s, *to)], None);
}
