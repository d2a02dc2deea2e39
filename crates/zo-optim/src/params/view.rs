//! Probe points as a view: the perturbation `Σ cᵢ zᵢ` a parameter set's readers add to the stored
//! values as they read them, so that a probe never writes the stored parameters.

use std::sync::Arc;

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rayon::prelude::*;
use zo_sampler::sweep::{self, Element};

use super::{CHUNK, StateVec, TensorInfo};
use crate::direction::{TensorDirection, Term};
use crate::error::ParamError;

/// How a parameter set realises a probe point `θ + Σ cᵢ zᵢ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeMode {
    /// The displacement is written into the stored values and written back out after the
    /// evaluation (`Vec<f32>`, `ndarray` arrays, [`ParamStore`](super::ParamStore)): what a
    /// black-box objective that reads the parameters directly needs. In f32 each perturb-restore
    /// cycle may move a value by an ulp; in bf16 and f16 a displacement below half an ulp is lost.
    InPlace,
    /// The stored values never move during a probe: the optimizer hands the displacement to
    /// [`ParamSet::set_view`](super::ParamSet::set_view) and the objective's readers (a model's
    /// layers) compute `θ + Σ cᵢ zᵢ` in f32 from the exact stored value as they read it. Only the
    /// update writes the stored values, once per step.
    View,
}

/// The displacement of a probe point: `Σ cᵢ zᵢ`, optionally divided element-wise by `√h` (HiZOO's
/// curvature-scaled probes).
#[derive(Clone, Debug, Default)]
pub struct Perturbation {
    terms: Vec<Term>,
    curvature: Option<Arc<StateVec>>,
}

impl Perturbation {
    /// The displacement `Σ terms`.
    pub fn new(terms: Vec<Term>) -> Self {
        Self {
            terms,
            curvature: None,
        }
    }

    /// The displacement `(Σ terms) / √h`, element by element (`h` shaped like the parameter set).
    pub fn with_curvature(terms: Vec<Term>, h: Arc<StateVec>) -> Self {
        Self {
            terms,
            curvature: Some(h),
        }
    }

    /// The terms.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// Whether the displacement is zero (no terms).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The curvature values of tensor `info`, checked against its size.
    fn curvature_of(&self, info: &TensorInfo) -> Result<Option<&[f32]>, ParamError> {
        let Some(h) = &self.curvature else {
            return Ok(None);
        };
        let values = h.get(&info.name).ok_or_else(|| ParamError::StateMismatch {
            tensor: info.name.clone(),
            detail: "the curvature of the perturbation has no such tensor".into(),
        })?;
        if values.len() != info.numel() {
            return Err(ParamError::StateMismatch {
                tensor: info.name.clone(),
                detail: format!(
                    "the curvature has {} elements, the tensor {}",
                    values.len(),
                    info.numel()
                ),
            });
        }
        Ok(Some(values))
    }

    /// `out[i] += Σ cⱼ zⱼ(offset + i)` (divided by `√h[offset + i]` with a curvature): the
    /// displacement of elements `offset .. offset + out.len()` of tensor `info`, added in f32.
    ///
    /// For every element the arithmetic is that of `zo-sampler`'s fused sweeps (`a = Σ cⱼ zⱼ` in
    /// term order, then `out + a`), so a reader that widens the stored value into `out` first
    /// gets exactly `θ + a` rounded once to f32, whatever the chunking or thread count.
    pub fn add_to(
        &self,
        info: &TensorInfo,
        offset: usize,
        out: &mut [f32],
    ) -> Result<(), ParamError> {
        if self.terms.is_empty() || out.is_empty() {
            return Ok(());
        }
        let bound = self.bind(info, offset, out.len())?;
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .try_for_each(|(ci, chunk)| bound.add(offset + ci * CHUNK, chunk))
    }

    /// The terms bound to tensor `info`, for elements `offset .. offset + len`.
    fn bind(&self, info: &TensorInfo, offset: usize, len: usize) -> Result<Bound<'_>, ParamError> {
        if offset + len > info.numel() {
            return Err(ParamError::StateMismatch {
                tensor: info.name.clone(),
                detail: format!(
                    "elements {offset}..{} requested of a tensor of {}",
                    offset + len,
                    info.numel()
                ),
            });
        }
        let dirs: Vec<TensorDirection> = self
            .terms
            .iter()
            .map(|t| TensorDirection::new(&t.direction, info))
            .collect();
        let curvature = self.curvature_of(info)?;
        let streams: Option<Vec<sweep::Term>> = dirs
            .iter()
            .zip(&self.terms)
            .map(|(d, t)| d.stream().map(|s| sweep::Term::new(t.coeff, *s)))
            .collect();
        Ok(Bound {
            streams: if curvature.is_none() { streams } else { None },
            dirs,
            coeffs: self.terms.iter().map(|t| t.coeff).collect(),
            curvature,
        })
    }

    /// `out[r] += Σ cⱼ zⱼ` on whole rows of tensor `info` viewed as `rows × cols` (its first
    /// dimension by the rest): `out` holds `rows.len()` rows of `cols` values, row `k` being row
    /// `rows[k]` of the tensor (an embedding lookup). Each element gets exactly the value
    /// [`add_to`](Self::add_to) gives it.
    pub fn add_to_rows(
        &self,
        info: &TensorInfo,
        rows: &[u32],
        out: &mut [f32],
    ) -> Result<(), ParamError> {
        if self.terms.is_empty() || rows.is_empty() {
            return Ok(());
        }
        let total_rows = info.shape.first().copied().unwrap_or(1).max(1);
        let cols = info.numel() / total_rows;
        if out.len() != rows.len() * cols {
            return Err(ParamError::StateMismatch {
                tensor: info.name.clone(),
                detail: format!(
                    "{} rows of {cols} need {} values, got {}",
                    rows.len(),
                    rows.len() * cols,
                    out.len()
                ),
            });
        }
        if let Some(&bad) = rows.iter().find(|&&r| r as usize >= total_rows) {
            return Err(ParamError::StateMismatch {
                tensor: info.name.clone(),
                detail: format!("row {bad} of a tensor with {total_rows} rows"),
            });
        }
        let bound = self.bind(info, 0, info.numel())?;
        out.par_chunks_mut(cols.max(1))
            .zip(rows.par_iter())
            .try_for_each(|(row, &r)| bound.add(r as usize * cols, row))
    }

    /// `out = θ + Σ cⱼ zⱼ` on elements `offset .. offset + base.len()` of tensor `info`, where
    /// `base` holds the stored values of those elements: each stored value is widened to f32
    /// exactly and the displacement added in f32, so it is never rounded away.
    pub fn materialize<E: Widen>(
        &self,
        info: &TensorInfo,
        offset: usize,
        base: &[E],
        out: &mut [f32],
    ) -> Result<(), ParamError> {
        if base.len() != out.len() {
            return Err(ParamError::StateMismatch {
                tensor: info.name.clone(),
                detail: format!(
                    "{} stored values for an output of {}",
                    base.len(),
                    out.len()
                ),
            });
        }
        if self.terms.is_empty() {
            E::widen(base, out);
            return Ok(());
        }
        // Block by block: the widened block is still in cache when the displacement is added.
        let bound = self.bind(info, offset, out.len())?;
        out.par_chunks_mut(CHUNK)
            .zip(base.par_chunks(CHUNK))
            .enumerate()
            .try_for_each(|(ci, (o, b))| {
                E::widen_serial(b, o);
                bound.add(offset + ci * CHUNK, o)
            })
    }
}

/// A perturbation bound to one tensor: its direction streams (or generators) and coefficients.
struct Bound<'a> {
    /// The sweep terms, when every direction is a plain stream and there is no curvature.
    streams: Option<Vec<sweep::Term>>,
    dirs: Vec<TensorDirection>,
    coeffs: Vec<f32>,
    curvature: Option<&'a [f32]>,
}

impl Bound<'_> {
    /// `out[i] += a(start + i)` on one block, single-threaded.
    fn add(&self, start: usize, out: &mut [f32]) -> Result<(), ParamError> {
        if let Some(streams) = &self.streams {
            sweep::apply_serial(out, start as u64, streams, None)?;
            return Ok(());
        }
        let z: Vec<Vec<f32>> = self
            .dirs
            .iter()
            .map(|d| {
                let mut buf = vec![0.0f32; out.len()];
                d.fill(start, &mut buf);
                buf
            })
            .collect();
        let h = self.curvature.map(|h| &h[start..start + out.len()]);
        for (i, o) in out.iter_mut().enumerate() {
            let mut a = self.coeffs[0] * z[0][i];
            for (c, zj) in self.coeffs.iter().zip(&z).skip(1) {
                a += c * zj[i];
            }
            if let Some(h) = h {
                a /= h[i].sqrt();
            }
            *o += a;
        }
        Ok(())
    }
}

/// Storage that widens to f32 exactly, in bulk.
pub trait Widen: Element {
    /// `out[i] = src[i] as f32` on one thread (the slices have equal lengths).
    fn widen_serial(src: &[Self], out: &mut [f32]);

    /// `out[i] = src[i] as f32`, in parallel blocks (the slices have equal lengths).
    fn widen(src: &[Self], out: &mut [f32]) {
        out.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(o, s)| Self::widen_serial(s, o));
    }
}

impl Widen for f32 {
    fn widen_serial(src: &[f32], out: &mut [f32]) {
        out.copy_from_slice(src);
    }
}

impl Widen for bf16 {
    fn widen_serial(src: &[bf16], out: &mut [f32]) {
        src.convert_to_f32_slice(out);
    }
}

impl Widen for f16 {
    fn widen_serial(src: &[f16], out: &mut [f32]) {
        src.convert_to_f32_slice(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::direction::Direction;
    use crate::params::ParamSet;
    use zo_sampler::DirectionKey;

    #[test]
    fn the_view_equals_an_in_place_perturbation_of_f32_values() {
        let base: Vec<f32> = (0..10_000).map(|i| (i as f32 * 0.001).sin()).collect();
        let info = ParamSet::tensors(&base)[0].clone();
        let terms = vec![
            Term::new(1e-3, Direction::gaussian(DirectionKey::new(1, 2, 0))),
            Term::new(-2e-3, Direction::gaussian(DirectionKey::new(1, 2, 1))),
        ];
        let mut moved = base.clone();
        moved.add(&terms, None).unwrap();
        let view = Perturbation::new(terms);
        let mut out = vec![0.0; base.len()];
        view.materialize(&info, 0, &base, &mut out).unwrap();
        assert_eq!(out, moved);
        // A window of the tensor reads the same values as the whole.
        let mut window = vec![0.0; 777];
        view.materialize(&info, 4321, &base[4321..4321 + 777], &mut window)
            .unwrap();
        assert_eq!(window, moved[4321..4321 + 777]);
        // Rows gathered one by one read the same values too.
        let rows_info = TensorInfo::new("params", vec![100, 100]);
        let mut rows = vec![0.0; 300];
        let picked = [7u32, 0, 99];
        for (k, r) in picked.iter().enumerate() {
            let r = *r as usize;
            rows[k * 100..(k + 1) * 100].copy_from_slice(&base[r * 100..(r + 1) * 100]);
        }
        view.add_to_rows(&rows_info, &picked, &mut rows).unwrap();
        for (k, r) in picked.iter().enumerate() {
            let r = *r as usize;
            assert_eq!(rows[k * 100..(k + 1) * 100], moved[r * 100..(r + 1) * 100]);
        }
        assert!(
            view.add_to_rows(&rows_info, &[100], &mut rows[..100])
                .is_err()
        );
        // A window past the end is an error naming the tensor.
        let err = view
            .add_to(&info, 9_999, &mut [0.0; 2])
            .unwrap_err()
            .to_string();
        assert!(err.contains("params"), "{err}");
    }

    #[test]
    fn a_half_precision_view_keeps_the_displacement_the_storage_would_round_away() {
        let base: Vec<bf16> = (0..512)
            .map(|i| bf16::from_f32(1.0 + i as f32 / 512.0))
            .collect();
        let info = TensorInfo::new("w", vec![512]);
        let view = Perturbation::new(vec![Term::new(
            1e-4,
            Direction::gaussian(DirectionKey::new(3, 0, 0)),
        )]);
        let mut out = vec![0.0; 512];
        view.materialize(&info, 0, &base, &mut out).unwrap();
        let moved = out
            .iter()
            .zip(&base)
            .filter(|(o, b)| **o != b.to_f32())
            .count();
        assert!(moved > 500, "{moved}");
        let rounded = out
            .iter()
            .zip(&base)
            .filter(|(o, b)| bf16::from_f32(**o) != **b)
            .count();
        assert!(rounded < 5, "{rounded}");
    }
}
