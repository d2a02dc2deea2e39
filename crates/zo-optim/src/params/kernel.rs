//! Element-wise kernels over a tensor in parallel chunks, with the directions' values materialised
//! per chunk.

use half::{bf16, f16};
use rayon::prelude::*;

use super::ParamSliceMut;
use super::rounding::{StochasticRound, fill_bits};
use crate::direction::TensorDirection;

/// Elements per chunk of the element-wise kernels.
pub(crate) const CHUNK: usize = 4096;

/// A chunk of parameters seen through f32.
pub(crate) enum ChunkParams<'a> {
    F32(&'a mut [f32]),
    BF16(&'a mut [bf16]),
    F16(&'a mut [f16]),
}

impl ChunkParams<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::F32(s) => s.len(),
            Self::BF16(s) => s.len(),
            Self::F16(s) => s.len(),
        }
    }

    /// Replace every element `p` (read as f32) by `f(i, p)`, rounded to nearest.
    pub(crate) fn for_each(self, f: impl FnMut(usize, f32) -> f32) {
        self.for_each_rounded(None, f);
    }

    /// Replace every element `p` (read as f32) by `f(i, p)`, rounded stochastically with `bits`
    /// (one 16-bit word per element) when given, to nearest otherwise.
    pub(crate) fn for_each_rounded(
        self,
        bits: Option<&[u16]>,
        mut f: impl FnMut(usize, f32) -> f32,
    ) {
        fn go<E: StochasticRound>(
            s: &mut [E],
            bits: Option<&[u16]>,
            f: &mut impl FnMut(usize, f32) -> f32,
        ) {
            match bits {
                Some(bits) => {
                    for (i, (x, r)) in s.iter_mut().zip(bits).enumerate() {
                        *x = E::round_stochastic(f(i, x.to_f32()), *r);
                    }
                }
                None => {
                    for (i, x) in s.iter_mut().enumerate() {
                        *x = E::from_f32(f(i, x.to_f32()));
                    }
                }
            }
        }
        match self {
            Self::F32(s) => go(s, None, &mut f),
            Self::BF16(s) => go(s, bits, &mut f),
            Self::F16(s) => go(s, bits, &mut f),
        }
    }
}

/// One chunk handed to an element-wise kernel.
pub(crate) struct Chunk<'a> {
    /// Offset of the chunk's first element within the tensor.
    pub offset: usize,
    /// The parameters of the chunk.
    pub params: ChunkParams<'a>,
    /// The values of each direction on the chunk.
    pub z: &'a [Vec<f32>],
    /// First state slice (e.g. a first moment), if any.
    pub s1: Option<&'a mut [f32]>,
    /// Second state slice (e.g. a second moment), if any.
    pub s2: Option<&'a mut [f32]>,
    /// The stochastic-rounding bits of the chunk (only for storage narrower than f32 written
    /// with stochastic rounding).
    pub bits: Option<&'a [u16]>,
}

/// Run `kernel` over a tensor in parallel chunks, with the directions' values materialised per
/// chunk (and, with a `rounding` stream on bf16 or f16 storage, the chunk's rounding bits).
/// Element-wise kernels give bitwise-identical results for any thread count.
pub(crate) fn for_each_chunk(
    data: ParamSliceMut<'_>,
    dirs: &[TensorDirection],
    s1: Option<&mut [f32]>,
    s2: Option<&mut [f32]>,
    rounding: Option<&zo_sampler::Stream>,
    kernel: &(dyn Fn(Chunk<'_>) + Sync),
) {
    let rounding = match data {
        ParamSliceMut::F32(_) => None,
        _ => rounding,
    };
    fn split<'a>(s: Option<&'a mut [f32]>) -> Box<dyn Iterator<Item = Option<&'a mut [f32]>> + 'a> {
        match s {
            Some(s) => Box::new(s.chunks_mut(CHUNK).map(Some)),
            None => Box::new(std::iter::repeat_with(|| None)),
        }
    }
    let chunks: Vec<ChunkParams<'_>> = match data {
        ParamSliceMut::F32(d) => d.chunks_mut(CHUNK).map(ChunkParams::F32).collect(),
        ParamSliceMut::BF16(d) => d.chunks_mut(CHUNK).map(ChunkParams::BF16).collect(),
        ParamSliceMut::F16(d) => d.chunks_mut(CHUNK).map(ChunkParams::F16).collect(),
    };
    let work: Vec<_> = chunks
        .into_iter()
        .zip(split(s1))
        .zip(split(s2))
        .enumerate()
        .collect();
    work.into_par_iter().for_each(|(ci, ((params, s1), s2))| {
        let offset = ci * CHUNK;
        let len = params.len();
        let z: Vec<Vec<f32>> = dirs
            .iter()
            .map(|d| {
                let mut buf = vec![0.0f32; len];
                d.fill(offset, &mut buf);
                buf
            })
            .collect();
        let bits = rounding.map(|stream| {
            let mut bits = vec![0u16; len];
            fill_bits(stream, offset as u64, &mut bits);
            bits
        });
        kernel(Chunk {
            offset,
            params,
            z: &z,
            s1,
            s2,
            bits: bits.as_deref(),
        });
    });
}

/// Run `kernel` over the element ranges `ranges` (sorted, disjoint, `[start, end)`) of a tensor
/// only, in parallel over ranges and in chunks of at most [`CHUNK`] within each, with the
/// directions' values and rounding bits of each chunk's elements (by their index in the tensor,
/// so each element gets what [`for_each_chunk`] would give it). No state slices.
pub(crate) fn for_each_range(
    data: ParamSliceMut<'_>,
    ranges: &[(usize, usize)],
    dirs: &[TensorDirection],
    rounding: Option<&zo_sampler::Stream>,
    kernel: &(dyn Fn(Chunk<'_>) + Sync),
) {
    let rounding = match data {
        ParamSliceMut::F32(_) => None,
        _ => rounding,
    };
    // Cut the storage into the ranges' disjoint slices, each cut into chunks.
    fn cut<'a, E>(
        mut rest: &'a mut [E],
        ranges: &[(usize, usize)],
        wrap: fn(&'a mut [E]) -> ChunkParams<'a>,
    ) -> Vec<(usize, ChunkParams<'a>)> {
        let mut at = 0;
        let mut out = Vec::new();
        for &(a, b) in ranges {
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(a - at);
            let (mid, tail) = tail.split_at_mut(b - a);
            rest = tail;
            at = b;
            let mut start = a;
            for c in mid.chunks_mut(CHUNK) {
                let len = c.len();
                out.push((start, wrap(c)));
                start += len;
            }
        }
        out
    }
    let chunks = match data {
        ParamSliceMut::F32(d) => cut(d, ranges, ChunkParams::F32),
        ParamSliceMut::BF16(d) => cut(d, ranges, ChunkParams::BF16),
        ParamSliceMut::F16(d) => cut(d, ranges, ChunkParams::F16),
    };
    chunks.into_par_iter().for_each(|(offset, params)| {
        let len = params.len();
        let z: Vec<Vec<f32>> = dirs
            .iter()
            .map(|d| {
                let mut buf = vec![0.0f32; len];
                d.fill(offset, &mut buf);
                buf
            })
            .collect();
        let bits = rounding.map(|stream| {
            let mut bits = vec![0u16; len];
            fill_bits(stream, offset as u64, &mut bits);
            bits
        });
        kernel(Chunk {
            offset,
            params,
            z: &z,
            s1: None,
            s2: None,
            bits: bits.as_deref(),
        });
    });
}
