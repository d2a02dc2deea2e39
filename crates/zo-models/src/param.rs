//! Trainable tensors as the model's layers read them: through the probe view.
//!
//! A [`Param`] is a stored tensor (f32, bf16 or f16) plus the view shared by every trainable
//! tensor of one model. While an optimizer probes, the view holds the displacement `Σ cᵢ zᵢ`, and
//! each read computes `θ + Σ cᵢ zᵢ` in f32 from the exact stored value:
//!
//! - a linear layer materialises its perturbed weight into one scratch buffer shared by the model's
//!   layers (sized for the largest dense matrix, reused by each layer in turn) just before its
//!   matrix product; a matrix larger than the scratch (an embedding table used as a tied output
//!   head) is materialised and multiplied in blocks of rows, so the whole perturbed matrix never
//!   exists;
//! - an embedding lookup widens and perturbs only the rows it gathers;
//! - a vector (a norm's weight, a bias) is read whole into a fresh small tensor.
//!
//! The stored tensor is written only by the update, once per step. Unperturbed f32 weights are
//! read in place (no copy); half-precision weights are always widened to f32, so every forward
//! computes in f32.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use candle_core::{DType, Device, Tensor};
use zo_optim::params::Widen;
use zo_optim::{ParamError, ParamSliceMut, Perturbation, TensorInfo};

use crate::error::{ModelError, Result};
use crate::weights::visit_tensor;

/// The smallest scratch buffer, in elements (so that a model without dense matrices still reads
/// its tables in blocks of a useful size).
const MIN_SCRATCH: usize = 1 << 16;

/// The view shared by the trainable tensors of one model: the current displacement and the
/// scratch buffer the layers materialise their weights into.
#[derive(Default)]
pub(crate) struct ViewState {
    current: RwLock<Option<Arc<Perturbation>>>,
    /// The row supports of the current step (row-sparse directions), by tensor name.
    rows: RwLock<HashMap<String, Arc<[u32]>>>,
    scratch: Mutex<Option<Tensor>>,
    capacity: AtomicUsize,
}

impl std::fmt::Debug for ViewState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewState")
            .field("active", &self.current().is_some())
            .field("scratch_elements", &self.capacity())
            .finish()
    }
}

impl ViewState {
    /// The displacement readers add now.
    pub(crate) fn current(&self) -> Option<Arc<Perturbation>> {
        self.current.read().map(|g| g.clone()).unwrap_or(None)
    }

    /// Replace the displacement.
    pub(crate) fn set(&self, view: Option<Perturbation>) -> std::result::Result<(), ParamError> {
        let mut g = self
            .current
            .write()
            .map_err(|_| ParamError::Backend("the view's lock is poisoned".into()))?;
        *g = view.filter(|v| !v.is_empty()).map(Arc::new);
        Ok(())
    }

    /// The row support of tensor `name` in the current step, if restricted.
    fn rows_of(&self, name: &str) -> Option<Arc<[u32]>> {
        self.rows.read().ok().and_then(|g| g.get(name).cloned())
    }

    /// Replace the row supports (from the tensors' descriptions).
    pub(crate) fn set_rows(&self, infos: &[TensorInfo]) -> std::result::Result<(), ParamError> {
        let mut g = self
            .rows
            .write()
            .map_err(|_| ParamError::Backend("the view's lock is poisoned".into()))?;
        *g = infos
            .iter()
            .filter_map(|i| i.rows.clone().map(|r| (i.name.clone(), r)))
            .collect();
        Ok(())
    }

    /// The scratch size in elements: the largest dense matrix registered (at least
    /// [`MIN_SCRATCH`]).
    pub(crate) fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed).max(MIN_SCRATCH)
    }

    /// Make room for a dense matrix of `elements`.
    fn reserve(&self, elements: usize) {
        self.capacity.fetch_max(elements, Ordering::Relaxed);
    }
}

/// How a trainable tensor is read, which decides whether it sizes the shared scratch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A dense matrix or vector read whole (its size counts toward the scratch).
    Dense,
    /// A table read by rows (embeddings) or in blocks of rows (a vocabulary-sized output head):
    /// never materialised whole.
    Table,
}

/// A trainable tensor of a model, read through the model's probe view.
///
/// Cloning a `Param` shares its storage and its view (a tied head is a clone of the embedding).
#[derive(Clone, Debug)]
pub struct Param {
    info: Arc<TensorInfo>,
    stored: Tensor,
    state: Arc<ViewState>,
}

impl Param {
    pub(crate) fn new(info: TensorInfo, stored: Tensor, state: Arc<ViewState>, role: Role) -> Self {
        if role == Role::Dense && stored.rank() >= 2 {
            state.reserve(stored.elem_count());
        }
        Self {
            info: Arc::new(info),
            stored,
            state,
        }
    }

    /// The tensor's name (the identity of its random streams).
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// The stored tensor (never displaced: the probes live in the view).
    pub fn stored(&self) -> &Tensor {
        &self.stored
    }

    /// The shape.
    pub fn dims(&self) -> &[usize] {
        self.stored.dims()
    }

    /// The tensor's description as the current step sees it (with its row support, if any).
    fn info_now(&self) -> Cow<'_, TensorInfo> {
        match self.state.rows_of(&self.info.name) {
            Some(rows) => Cow::Owned(TensorInfo {
                rows: Some(rows),
                ..(*self.info).clone()
            }),
            None => Cow::Borrowed(&*self.info),
        }
    }

    /// Rows and columns of the tensor viewed as a matrix (first dimension by the rest).
    fn rows_cols(&self) -> (usize, usize) {
        let rows = self.stored.dims().first().copied().unwrap_or(1).max(1);
        (rows, self.stored.elem_count() / rows)
    }

    /// Whether a read can use the stored tensor as it is (f32 and no displacement).
    fn direct(&self, view: &Option<Arc<Perturbation>>) -> bool {
        view.is_none() && self.stored.dtype() == DType::F32
    }

    /// `out = θ[offset ..] (+ view)` in f32, for `out.len()` elements from `offset`.
    fn read_into(
        &self,
        view: Option<&Perturbation>,
        offset: usize,
        out: &mut [f32],
    ) -> std::result::Result<(), ParamError> {
        let n = out.len();
        let mut fill = |info: &TensorInfo, data: ParamSliceMut<'_>| {
            fn go<E: Widen>(
                view: Option<&Perturbation>,
                info: &TensorInfo,
                base: &[E],
                offset: usize,
                out: &mut [f32],
            ) -> std::result::Result<(), ParamError> {
                let base = &base[offset..offset + out.len()];
                match view {
                    Some(v) => v.materialize(info, offset, base, out),
                    None => {
                        E::widen(base, out);
                        Ok(())
                    }
                }
            }
            if offset + n > data.len() {
                return Err(ParamError::StateMismatch {
                    tensor: info.name.clone(),
                    detail: format!("elements {offset}..{} of {}", offset + n, data.len()),
                });
            }
            match data {
                ParamSliceMut::F32(d) => go(view, info, d, offset, out),
                ParamSliceMut::BF16(d) => go(view, info, d, offset, out),
                ParamSliceMut::F16(d) => go(view, info, d, offset, out),
            }
        };
        visit_tensor(&self.info_now(), &self.stored, &mut fill)
    }

    /// The whole tensor's current value `θ + view`, in f32: the stored tensor itself when it is f32
    /// and no displacement is shown, else a fresh tensor (meant for vectors: norms, biases).
    pub fn value(&self) -> Result<Tensor> {
        let view = self.state.current();
        if self.direct(&view) {
            return Ok(self.stored.clone());
        }
        let mut out = vec![0.0f32; self.stored.elem_count()];
        self.read_into(view.as_deref(), 0, &mut out)
            .map_err(|e| self.backend(e))?;
        Ok(Tensor::from_vec(out, self.stored.dims(), &Device::Cpu)?)
    }

    /// Rows `ids` of the tensor (viewed as rows × the rest) at their current value, in f32:
    /// `[ids.len(), cols]`. Only the gathered rows are read and displaced. An id out of range is
    /// an error naming the tensor.
    pub fn gather(&self, ids: &[u32]) -> Result<Tensor> {
        let (rows, cols) = self.rows_cols();
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= rows) {
            return Err(ModelError::Config {
                field: self.info.name.clone(),
                message: format!("row {bad} requested of a table with {rows} rows"),
            });
        }
        let view = self.state.current();
        let mut out = vec![0.0f32; ids.len() * cols];
        let mut fill = |_: &TensorInfo, data: ParamSliceMut<'_>| {
            fn go<E: Widen>(base: &[E], ids: &[u32], cols: usize, out: &mut [f32]) {
                for (row, &id) in out.chunks_mut(cols.max(1)).zip(ids) {
                    let start = id as usize * cols;
                    E::widen(&base[start..start + cols], row);
                }
            }
            match data {
                ParamSliceMut::F32(d) => go(d, ids, cols, &mut out),
                ParamSliceMut::BF16(d) => go(d, ids, cols, &mut out),
                ParamSliceMut::F16(d) => go(d, ids, cols, &mut out),
            }
            Ok(())
        };
        visit_tensor(&self.info, &self.stored, &mut fill).map_err(|e| self.backend(e))?;
        if let Some(v) = &view {
            v.add_to_rows(&self.info_now(), ids, &mut out)
                .map_err(|e| self.backend(e))?;
        }
        Ok(Tensor::from_vec(out, (ids.len(), cols), &Device::Cpu)?)
    }

    /// `x Wᵀ` for this `[out, in]` matrix and `x` of shape `[.., in]` (f32): `[.., out]` in f32.
    ///
    /// Unperturbed f32 weights are multiplied in place; otherwise the current weight is
    /// materialised in f32 into the model's shared scratch buffer, in blocks of rows when it is
    /// larger than the buffer, and each block multiplied as soon as it is written.
    pub fn linear(&self, x: &Tensor) -> Result<Tensor> {
        let (out_dim, in_dim) = self.stored.dims2()?;
        let dims = x.dims().to_vec();
        if dims.last() != Some(&in_dim) {
            let mut expected = dims.clone();
            match expected.last_mut() {
                Some(l) => *l = in_dim,
                None => expected.push(in_dim),
            }
            return Err(ModelError::Shape {
                name: format!("input of {}", self.info.name),
                expected,
                found: dims,
            });
        }
        let rows = x.elem_count() / in_dim.max(1);
        let x2 = x.reshape((rows, in_dim))?.to_dtype(DType::F32)?;
        let view = self.state.current();
        let y = if self.direct(&view) {
            x2.matmul(&self.stored.t()?)?
        } else {
            let mut guard =
                self.state.scratch.lock().map_err(|_| {
                    self.backend(ParamError::Backend("scratch lock poisoned".into()))
                })?;
            let capacity = self.state.capacity().max(in_dim);
            if guard.as_ref().is_none_or(|t| t.elem_count() < capacity) {
                *guard = Some(Tensor::zeros(capacity, DType::F32, &Device::Cpu)?);
            }
            let scratch = guard.as_ref().ok_or_else(|| {
                self.backend(ParamError::Backend("scratch buffer missing".into()))
            })?;
            let block = (capacity / in_dim.max(1)).clamp(1, out_dim.max(1));
            let mut parts = Vec::with_capacity(out_dim.div_ceil(block));
            let scratch_info = TensorInfo::new("scratch", vec![capacity]);
            for r0 in (0..out_dim).step_by(block) {
                let r = block.min(out_dim - r0);
                let w = scratch.narrow(0, 0, r * in_dim)?;
                let mut write = |_: &TensorInfo, data: ParamSliceMut<'_>| match data {
                    ParamSliceMut::F32(out) => self.read_into(view.as_deref(), r0 * in_dim, out),
                    _ => Err(ParamError::Backend("the scratch buffer is not f32".into())),
                };
                visit_tensor(&scratch_info, &w, &mut write).map_err(|e| self.backend(e))?;
                parts.push(x2.matmul(&w.reshape((r, in_dim))?.t()?)?);
            }
            if parts.len() == 1 {
                parts
                    .pop()
                    .ok_or_else(|| self.backend(ParamError::Backend("no output block".into())))?
            } else {
                Tensor::cat(&parts, 1)?
            }
        };
        let mut shape = dims[..dims.len() - 1].to_vec();
        shape.push(out_dim);
        Ok(y.reshape(shape)?)
    }

    /// Overwrite the stored values with `values` (row-major, converted to the storage dtype
    /// with rounding to nearest): how a model sets an adapter's initial value that needs a
    /// forward pass (prefixes from real activations). An error when the length differs.
    pub fn overwrite(&self, values: &[f32]) -> Result<()> {
        if values.len() != self.stored.elem_count() {
            return Err(ModelError::Shape {
                name: self.info.name.clone(),
                expected: self.stored.dims().to_vec(),
                found: vec![values.len()],
            });
        }
        let mut write = |_: &TensorInfo, data: ParamSliceMut<'_>| {
            match data {
                ParamSliceMut::F32(d) => d.copy_from_slice(values),
                ParamSliceMut::BF16(d) => d
                    .iter_mut()
                    .zip(values)
                    .for_each(|(o, &v)| *o = half::bf16::from_f32(v)),
                ParamSliceMut::F16(d) => d
                    .iter_mut()
                    .zip(values)
                    .for_each(|(o, &v)| *o = half::f16::from_f32(v)),
            }
            Ok(())
        };
        visit_tensor(&self.info, &self.stored, &mut write).map_err(|e| self.backend(e))
    }

    fn backend(&self, e: ParamError) -> ModelError {
        ModelError::Config {
            field: self.info.name.clone(),
            message: e.to_string(),
        }
    }
}

/// A LoRA branch `(α/r)·B (A x)`: `A` is `r × in`, `B` is `out × r`.
#[derive(Clone, Debug)]
pub struct LoraBranch {
    a: Param,
    b: Param,
    scale: f64,
}

impl LoraBranch {
    /// The branch of adapters `a`, `b` scaled by `scale` (`α / r`).
    pub fn new(a: Param, b: Param, scale: f64) -> Self {
        Self { a, b, scale }
    }

    /// `A`.
    pub fn a(&self) -> &Param {
        &self.a
    }

    /// `B`.
    pub fn b(&self) -> &Param {
        &self.b
    }

    /// `α / r`.
    pub fn scale(&self) -> f64 {
        self.scale
    }
}

/// `y = x Wᵀ + b` with trainable `W` and optional `b`, read through the view, plus an optional
/// LoRA branch.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Param,
    bias: Option<Param>,
    lora: Option<LoraBranch>,
}

impl Linear {
    /// A linear layer.
    pub fn new(weight: Param, bias: Option<Param>) -> Self {
        Self {
            weight,
            bias,
            lora: None,
        }
    }

    /// The layer with a LoRA branch added to its output.
    pub fn with_lora(mut self, lora: LoraBranch) -> Self {
        self.lora = Some(lora);
        self
    }

    /// The weight.
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// The LoRA branch, if any.
    pub fn lora(&self) -> Option<&LoraBranch> {
        self.lora.as_ref()
    }

    /// `x Wᵀ + b` in f32, plus `(α/r)·(x Aᵀ) Bᵀ` with a LoRA branch (added last, as PEFT and
    /// MeZO's `LoRALinear` do; with `B = 0` the output is the base layer's exactly).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.weight.linear(x)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(&b.value()?)?,
            None => y,
        };
        match &self.lora {
            Some(l) => {
                let low = l.b.linear(&l.a.linear(x)?)?;
                Ok((y + (low * l.scale)?)?)
            }
            None => Ok(y),
        }
    }
}

/// The trainable attention prefix of one layer: `tokens` key and value vectors
/// (`[tokens, kv_width]`, in the space after the key/value projections).
#[derive(Clone, Debug)]
pub struct Prefix {
    keys: Param,
    values: Param,
}

impl Prefix {
    /// A prefix of `keys` and `values`, both `[tokens, kv_width]`.
    pub fn new(keys: Param, values: Param) -> Self {
        Self { keys, values }
    }

    /// The number of prefix tokens.
    pub fn tokens(&self) -> usize {
        self.keys.dims().first().copied().unwrap_or(0)
    }

    /// The keys.
    pub fn keys(&self) -> &Param {
        &self.keys
    }

    /// The values.
    pub fn values(&self) -> &Param {
        &self.values
    }

    /// Keys and values `[b, heads, s, hd]` with the prefix's before them: `[b, heads, p + s, hd]`
    /// (every sequence of the batch gets the same prefix).
    pub fn prepend(&self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, n, _, hd) = k.dims4()?;
        let p = self.tokens();
        let widen = |param: &Param, t: &Tensor| -> Result<Tensor> {
            let pre = param
                .value()?
                .reshape((1, p, n, hd))?
                .transpose(1, 2)?
                .broadcast_as((b, n, p, hd))?
                .to_dtype(t.dtype())?;
            Ok(Tensor::cat(&[&pre, t], 2)?.contiguous()?)
        };
        Ok((widen(&self.keys, k)?, widen(&self.values, v)?))
    }

    /// An additive attention mask `[b, 1, q, s]` with `p` zero (visible) columns in front.
    pub fn widen_mask(&self, mask: &Tensor) -> Result<Tensor> {
        let (b, one, q, _) = mask.dims4()?;
        let zeros = Tensor::zeros((b, one, q, self.tokens()), mask.dtype(), mask.device())?;
        Ok(Tensor::cat(&[&zeros, mask], 3)?.contiguous()?)
    }

    /// Set the keys and values to `keys` and `values` (`[tokens, kv_width]` each, f32).
    pub fn overwrite(&self, keys: &Tensor, values: &Tensor) -> Result<()> {
        let flat = |t: &Tensor| -> Result<Vec<f32>> {
            Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        };
        self.keys.overwrite(&flat(keys)?)?;
        self.values.overwrite(&flat(values)?)
    }
}
