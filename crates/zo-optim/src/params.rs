//! The parameter-set abstraction: the one place that knows tensors, storage and seeds.

use half::{bf16, f16};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use zo_sampler::TensorId;
use zo_sampler::sweep::{self, Element};

use crate::direction::{Direction, TensorDirection, Term};
use crate::error::ParamError;

/// Description of one trainable tensor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    /// The tensor's name: its identity for every random stream (never its position).
    pub name: String,
    /// The shape (row-major; the first dimension is the "rows" of LOZO's low-rank directions).
    pub shape: Vec<usize>,
    /// Whether weight decay applies to this tensor (parameter group).
    pub decay: bool,
}

impl TensorInfo {
    /// A tensor description whose weight-decay group follows [`default_decay`].
    pub fn new(name: impl Into<String>, shape: Vec<usize>) -> Self {
        let name = name.into();
        let decay = default_decay(&name);
        Self { name, shape, decay }
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The stream identity of this tensor (from its name).
    pub fn id(&self) -> TensorId {
        TensorId::from_name(&self.name)
    }
}

/// The default parameter group of a tensor name, following MeZO's and LOZO's code: biases and
/// normalisation weights get no weight decay. Returns `false` when the lower-cased name contains
/// `bias` or `norm` (`LayerNorm.gamma`, `input_layernorm.weight`, `final_layer_norm.bias`, …).
pub fn default_decay(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !(lower.contains("bias") || lower.contains("norm"))
}

/// Mutable storage of one tensor, in its working precision.
#[derive(Debug)]
pub enum ParamSliceMut<'a> {
    /// f32 storage.
    F32(&'a mut [f32]),
    /// bfloat16 storage (computed in f32).
    BF16(&'a mut [bf16]),
    /// IEEE half storage (computed in f32).
    F16(&'a mut [f16]),
}

impl ParamSliceMut<'_> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(s) => s.len(),
            Self::BF16(s) => s.len(),
            Self::F16(s) => s.len(),
        }
    }

    /// Whether the slice is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The visitor type of [`ParamSet::visit_mut`].
pub type Visitor<'v> = dyn FnMut(&TensorInfo, ParamSliceMut<'_>) -> Result<(), ParamError> + 'v;

/// A set of trainable tensors that zeroth-order optimizers perturb and update in place.
///
/// An implementation provides [`tensors`](ParamSet::tensors) and [`visit_mut`](ParamSet::visit_mut);
/// every other primitive has a default built on them and on `zo-sampler`'s fused sweeps. A backend
/// with its own kernels (a GPU) overrides [`add`](ParamSet::add) and
/// [`scale_decayed`](ParamSet::scale_decayed).
///
/// Contract: `visit_mut` visits the tensors in the order of `tensors()`, each exactly once, and the
/// slice it passes has `numel()` elements in row-major order. Results never depend on that order:
/// every random stream is keyed by the tensor's name.
///
/// Aliasing: the optimizers write the storage that `visit_mut` exposes, in place. Two values that
/// share that storage (tensor handles cloned from one another, the model's layers and its weights)
/// see every perturbation and update of either. So a type whose `Clone` shares storage must not be
/// used where an independent copy is meant (e.g. to keep the best weights while training goes
/// on): copy its storage explicitly instead (a `deep_copy`), and do not derive `Clone` for it.
pub trait ParamSet {
    /// The trainable tensors.
    fn tensors(&self) -> Vec<TensorInfo>;

    /// Visit every tensor's storage mutably, in the order of [`tensors`](ParamSet::tensors).
    fn visit_mut(&mut self, f: &mut Visitor<'_>) -> Result<(), ParamError>;

    /// The total number of trainable elements.
    fn num_params(&self) -> usize {
        self.tensors().iter().map(TensorInfo::numel).sum()
    }

    /// `θ += scale ⊙ Σᵢ cᵢ zᵢ` in one sweep per tensor (`scale` omitted ⇒ 1).
    fn add(&mut self, terms: &[Term], scale: Option<&StateVec>) -> Result<(), ParamError> {
        if terms.is_empty() {
            return Ok(());
        }
        let mut index = 0;
        self.visit_mut(&mut |info, data| {
            let sc = match scale {
                Some(s) => Some(s.tensor(index, info)?),
                None => None,
            };
            index += 1;
            add_terms(info, data, terms, sc)
        })
    }

    /// `θ ← factor · θ` on the tensors whose group has weight decay.
    fn scale_decayed(&mut self, factor: f32) -> Result<(), ParamError> {
        if factor == 1.0 {
            return Ok(());
        }
        self.visit_mut(&mut |info, data| {
            if info.decay {
                match data {
                    ParamSliceMut::F32(d) => scale_slice(d, factor),
                    ParamSliceMut::BF16(d) => scale_slice(d, factor),
                    ParamSliceMut::F16(d) => scale_slice(d, factor),
                }
            }
            Ok(())
        })
    }

    /// `θ += s · z(direction)`: perturb (or restore with `-s`).
    fn perturb(&mut self, direction: Direction, s: f32) -> Result<(), ParamError> {
        self.add(&[Term::new(s, direction)], None)
    }

    /// `θ += s · (z(to) − z(from))`: move from `θ + s·z(from)` to `θ + s·z(to)` in one sweep.
    fn move_between(&mut self, from: Direction, to: Direction, s: f32) -> Result<(), ParamError> {
        self.add(&[Term::new(-s, from), Term::new(s, to)], None)
    }
}

fn scale_slice<E: Element>(d: &mut [E], factor: f32) {
    d.par_chunks_mut(CHUNK).for_each(|c| {
        for x in c {
            *x = E::from_f32(x.to_f32() * factor);
        }
    });
}

/// `data += scale ⊙ Σ terms` on one tensor.
pub(crate) fn add_terms(
    info: &TensorInfo,
    data: ParamSliceMut<'_>,
    terms: &[Term],
    scale: Option<&[f32]>,
) -> Result<(), ParamError> {
    let dirs: Vec<TensorDirection> = terms
        .iter()
        .map(|t| TensorDirection::new(&t.direction, info))
        .collect();
    let streams: Option<Vec<sweep::Term>> = dirs
        .iter()
        .zip(terms)
        .map(|(d, t)| d.stream().map(|s| sweep::Term::new(t.coeff, *s)))
        .collect();
    if let Some(streams) = streams {
        // Every direction is a plain stream: the fused sweep of zo-sampler does it in one pass.
        match data {
            ParamSliceMut::F32(d) => sweep::apply(d, 0, &streams, scale)?,
            ParamSliceMut::BF16(d) => sweep::apply(d, 0, &streams, scale)?,
            ParamSliceMut::F16(d) => sweep::apply(d, 0, &streams, scale)?,
        }
        return Ok(());
    }
    if let Some(s) = scale
        && s.len() != data.len()
    {
        return Err(ParamError::StateMismatch {
            tensor: info.name.clone(),
            detail: format!("scale has {} elements, tensor has {}", s.len(), data.len()),
        });
    }
    let coeffs: Vec<f32> = terms.iter().map(|t| t.coeff).collect();
    let kernel = |c: Chunk<'_>| {
        let Chunk {
            offset, z, params, ..
        } = c;
        let sc = scale.map(|s| &s[offset..offset + params.len()]);
        params.for_each(|i, p| {
            let mut acc = 0.0f32;
            for (zj, cj) in z.iter().zip(&coeffs) {
                acc += cj * zj[i];
            }
            if let Some(sc) = sc {
                acc *= sc[i];
            }
            p + acc
        });
    };
    for_each_chunk(data, &dirs, None, None, &kernel);
    Ok(())
}

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

/// A per-element f32 vector shaped like a parameter set (optimizer state: moments, curvature).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateVec {
    tensors: Vec<(String, Vec<f32>)>,
}

impl StateVec {
    /// A vector filled with `value`, shaped like `params`.
    pub fn filled_like<P: ParamSet + ?Sized>(params: &P, value: f32) -> Self {
        Self {
            tensors: params
                .tensors()
                .into_iter()
                .map(|t| (t.name.clone(), vec![value; t.numel()]))
                .collect(),
        }
    }

    /// A vector from its tensors' names and values (e.g. read back from a checkpoint). Whether it
    /// fits a parameter set is checked when a step uses it.
    pub fn from_tensors(tensors: Vec<(String, Vec<f32>)>) -> Self {
        Self { tensors }
    }

    /// The tensors' names and values, in the parameter set's order.
    pub fn into_tensors(self) -> Vec<(String, Vec<f32>)> {
        self.tensors
    }

    /// The names and values, in the parameter set's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[f32])> {
        self.tensors.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The values of tensor `name`.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The total number of elements.
    pub fn len(&self) -> usize {
        self.tensors.iter().map(|(_, v)| v.len()).sum()
    }

    /// Whether the vector has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn tensor(&self, index: usize, info: &TensorInfo) -> Result<&[f32], ParamError> {
        let (name, v) = self
            .tensors
            .get(index)
            .ok_or_else(|| ParamError::StateMismatch {
                tensor: info.name.clone(),
                detail: format!("state has {} tensors", self.tensors.len()),
            })?;
        check(name, v.len(), info)?;
        Ok(v)
    }

    pub(crate) fn tensor_mut(
        &mut self,
        index: usize,
        info: &TensorInfo,
    ) -> Result<&mut [f32], ParamError> {
        let count = self.tensors.len();
        let (name, v) = self
            .tensors
            .get_mut(index)
            .ok_or_else(|| ParamError::StateMismatch {
                tensor: info.name.clone(),
                detail: format!("state has {count} tensors"),
            })?;
        check(name, v.len(), info)?;
        Ok(v)
    }

    /// Check that this vector matches `params` tensor for tensor.
    pub fn check_matches<P: ParamSet + ?Sized>(&self, params: &P) -> Result<(), ParamError> {
        let tensors = params.tensors();
        if tensors.len() != self.tensors.len() {
            return Err(ParamError::StateMismatch {
                tensor: tensors.first().map(|t| t.name.clone()).unwrap_or_default(),
                detail: format!(
                    "state has {} tensors, parameters {}",
                    self.tensors.len(),
                    tensors.len()
                ),
            });
        }
        for (i, info) in tensors.iter().enumerate() {
            self.tensor(i, info)?;
        }
        Ok(())
    }
}

fn check(name: &str, len: usize, info: &TensorInfo) -> Result<(), ParamError> {
    if name != info.name {
        return Err(ParamError::StateMismatch {
            tensor: info.name.clone(),
            detail: format!("state holds `{name}` at this position"),
        });
    }
    if len != info.numel() {
        return Err(ParamError::StateMismatch {
            tensor: info.name.clone(),
            detail: format!("state has {len} elements, tensor has {}", info.numel()),
        });
    }
    Ok(())
}

/// The name under which a single flat vector is exposed.
pub const FLAT_NAME: &str = "params";

impl ParamSet for Vec<f32> {
    fn tensors(&self) -> Vec<TensorInfo> {
        vec![TensorInfo {
            name: FLAT_NAME.into(),
            shape: vec![self.len()],
            decay: true,
        }]
    }

    fn visit_mut(&mut self, f: &mut Visitor<'_>) -> Result<(), ParamError> {
        let info = TensorInfo {
            name: FLAT_NAME.into(),
            shape: vec![self.len()],
            decay: true,
        };
        f(&info, ParamSliceMut::F32(self.as_mut_slice()))
    }
}

impl<D: ndarray::Dimension> ParamSet for ndarray::Array<f32, D> {
    fn tensors(&self) -> Vec<TensorInfo> {
        vec![TensorInfo {
            name: FLAT_NAME.into(),
            shape: self.shape().to_vec(),
            decay: true,
        }]
    }

    fn visit_mut(&mut self, f: &mut Visitor<'_>) -> Result<(), ParamError> {
        let info = TensorInfo {
            name: FLAT_NAME.into(),
            shape: self.shape().to_vec(),
            decay: true,
        };
        let slice = self.as_slice_mut().ok_or_else(|| {
            ParamError::Backend(
                "an ndarray parameter set must be in standard (row-major) layout".into(),
            )
        })?;
        f(&info, ParamSliceMut::F32(slice))
    }
}

/// Owned storage of one named tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TensorData {
    /// f32 values.
    F32(Vec<f32>),
    /// bfloat16 values.
    BF16(Vec<bf16>),
    /// IEEE half values.
    F16(Vec<f16>),
}

impl TensorData {
    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::BF16(v) => v.len(),
            Self::F16(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values widened to f32.
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Self::F32(v) => v.clone(),
            Self::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            Self::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
        }
    }
}

/// A set of named tensors in host memory, each in its own precision: the general CPU parameter set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParamStore {
    tensors: Vec<(TensorInfo, TensorData)>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a tensor. Fails when the name is taken or the data does not have the shape's size.
    pub fn insert(&mut self, info: TensorInfo, data: TensorData) -> Result<(), ParamError> {
        if self.tensors.iter().any(|(t, _)| t.name == info.name) {
            return Err(ParamError::StateMismatch {
                tensor: info.name,
                detail: "duplicate tensor name".into(),
            });
        }
        if info.numel() != data.len() {
            return Err(ParamError::StateMismatch {
                tensor: info.name.clone(),
                detail: format!(
                    "shape {:?} needs {} elements, data has {}",
                    info.shape,
                    info.numel(),
                    data.len()
                ),
            });
        }
        self.tensors.push((info, data));
        Ok(())
    }

    /// The data of tensor `name`.
    pub fn get(&self, name: &str) -> Option<&TensorData> {
        self.tensors
            .iter()
            .find(|(t, _)| t.name == name)
            .map(|(_, d)| d)
    }
}

impl ParamSet for ParamStore {
    fn tensors(&self) -> Vec<TensorInfo> {
        self.tensors.iter().map(|(t, _)| t.clone()).collect()
    }

    fn visit_mut(&mut self, f: &mut Visitor<'_>) -> Result<(), ParamError> {
        for (info, data) in &mut self.tensors {
            let slice = match data {
                TensorData::F32(v) => ParamSliceMut::F32(v),
                TensorData::BF16(v) => ParamSliceMut::BF16(v),
                TensorData::F16(v) => ParamSliceMut::F16(v),
            };
            f(info, slice)?;
        }
        Ok(())
    }
}
