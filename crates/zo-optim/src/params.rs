//! The parameter-set abstraction: the one place that knows tensors, storage and seeds.
//!
//! This file holds the trait and its additive default; the element-wise chunked kernels are in
//! `params/kernel.rs`, the per-element state vector in `params/state.rs`, the implementations
//! for `Vec<f32>`, `ndarray` arrays and [`ParamStore`] in `params/store.rs`, probe points as a view
//! in `params/view.rs` and the rounding of updates into half-precision storage in
//! `params/rounding.rs`.

mod kernel;
mod rounding;
mod state;
mod store;
mod view;

pub(crate) use kernel::{CHUNK, Chunk, for_each_chunk};
pub use rounding::{ROUNDING_DIRECTION, Rounding, StochasticRound, StoreRounding, rounding_bits};
pub use state::StateVec;
pub use store::{FLAT_NAME, ParamStore, TensorData};
pub use view::{Perturbation, ProbeMode, Widen};

use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// Row-sparse directions: when set, every direction of the current step is zero outside
    /// these rows (first index; sorted, distinct), so probes and updates touch only them. Set by
    /// [`ParamSet::set_row_support`] for the duration of a step; `None` (the default): all rows.
    #[serde(default, skip)]
    pub rows: Option<Arc<[u32]>>,
}

impl TensorInfo {
    /// A tensor description whose weight-decay group follows [`default_decay`].
    pub fn new(name: impl Into<String>, shape: Vec<usize>) -> Self {
        let name = name.into();
        let decay = default_decay(&name);
        Self {
            name,
            shape,
            decay,
            rows: None,
        }
    }

    /// Rows and columns of the tensor viewed as a matrix: its first dimension by the rest (a
    /// vector is one column per element; a scalar one row).
    pub fn rows_cols(&self) -> (usize, usize) {
        let rows = self.shape.first().copied().unwrap_or(1);
        let cols = self.numel().checked_div(rows).unwrap_or(0);
        (rows, cols)
    }

    /// This description with the row support `rows` (checked: each row in range; sorted and
    /// made distinct).
    pub fn with_rows(&self, rows: Option<&[u32]>) -> Result<Self, ParamError> {
        let rows = match rows {
            None => None,
            Some(rows) => {
                let (n, _) = self.rows_cols();
                if let Some(&bad) = rows.iter().find(|&&r| r as usize >= n) {
                    return Err(ParamError::StateMismatch {
                        tensor: self.name.clone(),
                        detail: format!("row support names row {bad} of a tensor with {n} rows"),
                    });
                }
                let mut sorted = rows.to_vec();
                sorted.sort_unstable();
                sorted.dedup();
                Some(Arc::from(sorted))
            }
        };
        Ok(Self {
            rows,
            ..self.clone()
        })
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

/// Row-sparse directions for one step: for each named tensor, the rows (first index) its
/// directions may be non-zero on. Tensors not named keep full directions.
pub type RowSupport = BTreeMap<String, Vec<u32>>;

/// Check `support` against `infos` and return each tensor's description with its rows set
/// (`None`: every tensor's rows cleared). An unknown tensor name or a row out of range is an
/// error naming the tensor. For implementations of [`ParamSet::set_row_support`].
pub fn with_row_support(
    infos: &[TensorInfo],
    support: Option<&RowSupport>,
) -> Result<Vec<TensorInfo>, ParamError> {
    if let Some(s) = support
        && let Some(unknown) = s.keys().find(|k| !infos.iter().any(|i| &i.name == *k))
    {
        return Err(ParamError::StateMismatch {
            tensor: unknown.clone(),
            detail: "the row support names a tensor the parameter set does not have".into(),
        });
    }
    infos
        .iter()
        .map(|i| i.with_rows(support.and_then(|s| s.get(&i.name)).map(Vec::as_slice)))
        .collect()
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
/// Probe points: a parameter set says with [`probe_mode`](ParamSet::probe_mode) how the optimizers
/// reach `θ + Σ cᵢ zᵢ`. [`ProbeMode::InPlace`] (the default) writes the displacement into the
/// storage and back out; [`ProbeMode::View`] hands it to [`set_view`](ParamSet::set_view) and never
/// writes the storage during a probe (the readers of the parameters add it as they read). Either
/// way the update is the only lasting write, through [`add_rounded`](ParamSet::add_rounded) or the
/// rules' element-wise kernels, rounded as [`rounding`](ParamSet::rounding) says.
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

    /// How the optimizers reach a probe point (default: in place).
    fn probe_mode(&self) -> ProbeMode {
        ProbeMode::InPlace
    }

    /// [`ProbeMode::View`]: make `view` the displacement every reader of the parameters adds from
    /// now on (`None`: none, the stored values themselves). The stored values are not written.
    /// The default fails: an in-place parameter set has no view.
    fn set_view(&mut self, view: Option<Perturbation>) -> Result<(), ParamError> {
        let _ = view;
        Err(ParamError::Backend(
            "this parameter set perturbs in place and has no view".into(),
        ))
    }

    /// Restrict the directions of the coming step to rows of some tensors (row-sparse probes:
    /// e.g. the embedding rows a minibatch reads), or lift the restriction (`None`). While set,
    /// [`tensors`](ParamSet::tensors) and [`visit_mut`](ParamSet::visit_mut) report each
    /// restricted tensor's rows in [`TensorInfo::rows`], and every direction, probe and update is
    /// zero outside them. The default fails: the parameter set has no row-sparse directions.
    fn set_row_support(&mut self, support: Option<&RowSupport>) -> Result<(), ParamError> {
        match support {
            None => Ok(()),
            Some(_) => Err(ParamError::Backend(
                "this parameter set has no row-sparse directions".into(),
            )),
        }
    }

    /// How updates are written to bf16 or f16 storage (default: stochastic rounding).
    fn rounding(&self) -> Rounding {
        Rounding::Stochastic
    }

    /// `θ += scale ⊙ Σᵢ cᵢ zᵢ` in one sweep per tensor (`scale` omitted ⇒ 1), rounded to nearest.
    fn add(&mut self, terms: &[Term], scale: Option<&StateVec>) -> Result<(), ParamError> {
        self.add_rounded(terms, scale, StoreRounding::Nearest)
    }

    /// [`add`](ParamSet::add) with the given rounding into bf16 or f16 storage (an update).
    fn add_rounded(
        &mut self,
        terms: &[Term],
        scale: Option<&StateVec>,
        rounding: StoreRounding,
    ) -> Result<(), ParamError> {
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
            add_terms(info, data, terms, sc, rounding)
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
    rounding: StoreRounding,
) -> Result<(), ParamError> {
    let rounding = match data {
        ParamSliceMut::F32(_) => None,
        _ => rounding.stream(info.id()),
    };
    if let Some(support) = info.rows.as_deref() {
        return add_terms_on_rows(info, data, support, terms, scale, rounding.as_ref());
    }
    let dirs: Vec<TensorDirection> = terms
        .iter()
        .map(|t| TensorDirection::new(&t.direction, info))
        .collect();
    let streams: Option<Vec<sweep::Term>> = dirs
        .iter()
        .zip(terms)
        .map(|(d, t)| d.stream().map(|s| sweep::Term::new(t.coeff, *s)))
        .collect();
    if let (Some(streams), None) = (streams, rounding) {
        // Every direction is a plain stream and rounding is to nearest: the fused sweep of
        // zo-sampler does it in one pass.
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
            offset,
            z,
            params,
            bits,
            ..
        } = c;
        let sc = scale.map(|s| &s[offset..offset + params.len()]);
        params.for_each_rounded(bits, |i, p| {
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
    for_each_chunk(data, &dirs, None, None, rounding.as_ref(), &kernel);
    Ok(())
}

/// [`add_terms`] on a tensor with a row support: only the supported rows are visited (the
/// directions are zero elsewhere, so nothing else moves). Each element gets exactly what the
/// whole-tensor sweep would give it: its directions' values and rounding bits depend on its
/// index alone.
fn add_terms_on_rows(
    info: &TensorInfo,
    data: ParamSliceMut<'_>,
    support: &[u32],
    terms: &[Term],
    scale: Option<&[f32]>,
    rounding: Option<&zo_sampler::Stream>,
) -> Result<(), ParamError> {
    if let Some(s) = scale
        && s.len() != data.len()
    {
        return Err(ParamError::StateMismatch {
            tensor: info.name.clone(),
            detail: format!("scale has {} elements, tensor has {}", s.len(), data.len()),
        });
    }
    let unrestricted = TensorInfo {
        rows: None,
        ..info.clone()
    };
    let dirs: Vec<TensorDirection> = terms
        .iter()
        .map(|t| TensorDirection::unrestricted(&t.direction, &unrestricted))
        .collect();
    let ranges = row_ranges(&unrestricted, support);
    let coeffs: Vec<f32> = terms.iter().map(|t| t.coeff).collect();
    let streams: Option<Vec<sweep::Term>> = dirs
        .iter()
        .zip(terms)
        .map(|(d, t)| d.stream().map(|s| sweep::Term::new(t.coeff, *s)))
        .collect();
    let kernel = |c: Chunk<'_>| {
        let Chunk {
            offset,
            z,
            params,
            bits,
            ..
        } = c;
        if let (Some(streams), None) = (&streams, bits) {
            let sc = scale.map(|s| &s[offset..offset + params.len()]);
            // The fused sweep's arithmetic, as on the whole tensor.
            let r = match params {
                kernel::ChunkParams::F32(d) => sweep::apply_serial(d, offset as u64, streams, sc),
                kernel::ChunkParams::BF16(d) => sweep::apply_serial(d, offset as u64, streams, sc),
                kernel::ChunkParams::F16(d) => sweep::apply_serial(d, offset as u64, streams, sc),
            };
            // The scale slice has the chunk's length by construction (checked above).
            debug_assert!(r.is_ok());
            return;
        }
        let sc = scale.map(|s| &s[offset..offset + params.len()]);
        params.for_each_rounded(bits, |i, p| {
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
    let fused = streams.is_some() && rounding.is_none();
    kernel::for_each_range(
        data,
        &ranges,
        if fused { &[] } else { &dirs },
        rounding,
        &kernel,
    );
    Ok(())
}

/// The element ranges of the rows `support` of `info` (consecutive rows merged).
fn row_ranges(info: &TensorInfo, support: &[u32]) -> Vec<(usize, usize)> {
    let (_, cols) = info.rows_cols();
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &r in support {
        let (a, b) = (r as usize * cols, (r as usize + 1) * cols);
        match out.last_mut() {
            Some(last) if last.1 == a => last.1 = b,
            _ => out.push((a, b)),
        }
    }
    out
}
