//! Element-wise kernels over a tensor in parallel chunks, with the directions' values materialised
//! per chunk.

use half::{bf16, f16};
use rayon::prelude::*;
use zo_sampler::sweep::Element;

use super::ParamSliceMut;
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

    /// Replace every element `p` (read as f32) by `f(i, p)`.
    pub(crate) fn for_each(self, mut f: impl FnMut(usize, f32) -> f32) {
        fn go<E: Element>(s: &mut [E], f: &mut impl FnMut(usize, f32) -> f32) {
            for (i, x) in s.iter_mut().enumerate() {
                *x = E::from_f32(f(i, x.to_f32()));
            }
        }
        match self {
            Self::F32(s) => go(s, &mut f),
            Self::BF16(s) => go(s, &mut f),
            Self::F16(s) => go(s, &mut f),
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
}

/// Run `kernel` over a tensor in parallel chunks, with the directions' values materialised per
/// chunk. Element-wise kernels give bitwise-identical results for any thread count.
pub(crate) fn for_each_chunk(
    data: ParamSliceMut<'_>,
    dirs: &[TensorDirection],
    s1: Option<&mut [f32]>,
    s2: Option<&mut [f32]>,
    kernel: &(dyn Fn(Chunk<'_>) + Sync),
) {
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
        kernel(Chunk {
            offset,
            params,
            z: &z,
            s1,
            s2,
        });
    });
}
