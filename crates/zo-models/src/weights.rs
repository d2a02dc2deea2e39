//! The trainable weights of a model as a zeroth-order [`ParamSet`] read through a view.
//!
//! Each weight is a plain (non-variable) candle tensor, stored in f32, bf16 or f16: the model's
//! layers hold [`Param`]s over the same tensors, which share their storage, so a forward pass reads
//! whatever the last update wrote and builds no backprop graph. Probes never write the storage:
//! the optimizer shows the displacement through [`ParamSet::set_view`] and the layers add it as
//! they read (see `param.rs`). The update writes the storage in place, as a candle in-place custom
//! op (`Tensor::inplace_op1`), with stochastic rounding into bf16 and f16 by default.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Tensor};
use zo_optim::params::Visitor;
use zo_optim::{
    ParamError, ParamSet, ParamSliceMut, Perturbation, ProbeMode, Rounding, RowSupport, TensorInfo,
    default_decay, with_row_support,
};

use crate::error::{ModelError, Result};
use crate::param::{Param, Role, ViewState};

/// Named trainable tensors, in a fixed order (sorted by name).
///
/// Not `Clone`: a candle `Tensor` clone shares its storage, and updates write the storage in
/// place, so a clone would be an alias of the live weights, not a copy. [`deep_copy`](Self::deep_copy)
/// copies the storage.
#[derive(Debug, Default)]
pub struct Weights {
    entries: Vec<(TensorInfo, Tensor)>,
    state: Arc<ViewState>,
    rounding: Rounding,
}

impl Weights {
    /// No weights.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a trainable tensor and return the handle the model's layers read it through.
    pub(crate) fn register_param(
        &mut self,
        name: &str,
        tensor: Tensor,
        role: Role,
    ) -> Result<Param> {
        self.insert(name, tensor.clone())?;
        let info = self
            .entries
            .iter()
            .find(|(i, _)| i.name == name)
            .map(|(i, _)| i.clone())
            .ok_or_else(|| ModelError::Config {
                field: name.into(),
                message: "not registered".into(),
            })?;
        Ok(Param::new(info, tensor, Arc::clone(&self.state), role))
    }

    /// How updates are written into bf16 or f16 weights ([`Rounding::Stochastic`] by default).
    pub fn set_rounding(&mut self, rounding: Rounding) {
        self.rounding = rounding;
    }

    /// The size of the scratch buffer the layers materialise perturbed or widened weights into, in
    /// f32 elements: the largest dense matrix (at least 2¹⁶). Allocated on the first read that
    /// needs it, once.
    pub fn scratch_elements(&self) -> usize {
        self.state.capacity()
    }

    /// Register a trainable tensor under `name` (weight decay by [`default_decay`]). The tensor must
    /// be contiguous, on the CPU, in f32, bf16 or f16, and not a candle `Var`.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) -> Result<()> {
        let name = name.into();
        let decay = default_decay(&name);
        self.insert_with_decay(name, tensor, decay)
    }

    /// Register a trainable tensor with an explicit weight-decay group.
    pub fn insert_with_decay(
        &mut self,
        name: impl Into<String>,
        tensor: Tensor,
        decay: bool,
    ) -> Result<()> {
        let name = name.into();
        if !matches!(tensor.dtype(), DType::F32 | DType::BF16 | DType::F16) {
            return Err(ModelError::Config {
                field: name,
                message: format!(
                    "trainable weights must be f32, bf16 or f16, got {:?}",
                    tensor.dtype()
                ),
            });
        }
        if !tensor.is_contiguous() {
            return Err(ModelError::Config {
                field: name,
                message: "trainable weights must be contiguous".into(),
            });
        }
        if self.entries.iter().any(|(i, _)| i.name == name) {
            return Err(ModelError::Config {
                field: name,
                message: "registered twice".into(),
            });
        }
        let info = TensorInfo {
            name,
            shape: tensor.dims().to_vec(),
            decay,
            rows: None,
        };
        let at = self.entries.partition_point(|(i, _)| i.name < info.name);
        self.entries.insert(at, (info, tensor));
        Ok(())
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.entries
            .iter()
            .find(|(i, _)| i.name == name)
            .map(|(_, t)| t)
    }

    /// The current value of tensor `name` as the model's layers read it — the stored value plus
    /// the probe shown through the view, if any — in f32. `None` for an unknown name. The way for
    /// an objective that reads the weights itself (not through a model) to see the probes.
    pub fn current(&self, name: &str) -> Result<Option<Tensor>> {
        let Some((info, tensor)) = self.entries.iter().find(|(i, _)| i.name == name) else {
            return Ok(None);
        };
        let param = Param::new(
            info.clone(),
            tensor.clone(),
            Arc::clone(&self.state),
            Role::Table,
        );
        param.value().map(Some)
    }

    /// Names and tensors, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&TensorInfo, &Tensor)> {
        self.entries.iter().map(|(i, t)| (i, t))
    }

    /// The number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A copy of the weights with storage of its own (every tensor's values copied): perturbing or
    /// updating `self` afterwards leaves the copy as it was. The copy is not shared with any model.
    pub fn deep_copy(&self) -> Result<Weights> {
        let entries = self
            .entries
            .iter()
            .map(|(info, t)| Ok((info.clone(), t.copy()?)))
            .collect::<Result<_>>()?;
        Ok(Weights {
            entries,
            state: Arc::default(),
            rounding: self.rounding,
        })
    }

    /// Overwrite every tensor's values, in place, with those of the same-named tensor of `other`
    /// (e.g. the base weights reloaded from disk). Names, shapes and dtypes must match; the model
    /// sharing this storage sees the new values at once.
    pub fn copy_from(&mut self, other: &Weights) -> Result<()> {
        if self.entries.len() != other.entries.len() {
            return Err(ModelError::Config {
                field: "weights".into(),
                message: format!(
                    "{} tensors to copy into {} tensors",
                    other.entries.len(),
                    self.entries.len()
                ),
            });
        }
        for ((info, t), (oinfo, o)) in self.entries.iter().zip(&other.entries) {
            if info.name != oinfo.name || info.shape != oinfo.shape || t.dtype() != o.dtype() {
                return Err(ModelError::Shape {
                    name: info.name.clone(),
                    expected: info.shape.clone(),
                    found: oinfo.shape.clone(),
                });
            }
        }
        for ((info, t), (_, o)) in self.entries.iter().zip(&other.entries) {
            let flat = o.flatten_all()?;
            let source = match o.dtype() {
                DType::F32 => Source::F32(flat.to_vec1::<f32>()?),
                DType::BF16 => Source::BF16(flat.to_vec1::<half::bf16>()?),
                _ => Source::F16(flat.to_vec1::<half::f16>()?),
            };
            let mut visit = |_: &TensorInfo, data: ParamSliceMut<'_>| {
                match (data, &source) {
                    (ParamSliceMut::F32(d), Source::F32(s)) => d.copy_from_slice(s),
                    (ParamSliceMut::BF16(d), Source::BF16(s)) => d.copy_from_slice(s),
                    (ParamSliceMut::F16(d), Source::F16(s)) => d.copy_from_slice(s),
                    _ => {
                        return Err(ParamError::Backend(
                            format!("`{}`: dtype changed during the copy", info.name).into(),
                        ));
                    }
                }
                Ok(())
            };
            visit_tensor(info, t, &mut visit).map_err(|e| ModelError::Config {
                field: info.name.clone(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Write the weights to a safetensors file under their (Hugging Face) names, atomically: into
    /// a private temporary folder `.NAME.tmp-PID` beside `path` (the serialiser makes its own
    /// temporary file there), then renamed over `path`, and the folder removed. A process killed
    /// on the way leaves only that folder, which a run folder's clean-up removes.
    pub fn save_safetensors(&self, path: &std::path::Path) -> Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let scratch = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let io = |p: &std::path::Path| {
            let p = p.to_path_buf();
            move |source| ModelError::Io { path: p, source }
        };
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir(&scratch).map_err(io(&scratch))?;
        let tmp = scratch.join(&name);
        let tensors: std::collections::HashMap<String, Tensor> = self
            .entries
            .iter()
            .map(|(i, t)| (i.name.clone(), t.clone()))
            .collect();
        let result = candle_core::safetensors::save(&tensors, &tmp)
            .map_err(ModelError::from)
            .and_then(|()| std::fs::rename(&tmp, path).map_err(io(path)));
        let _ = std::fs::remove_dir_all(&scratch);
        result
    }
}

/// A tensor's values on the host, by dtype.
enum Source {
    F32(Vec<f32>),
    BF16(Vec<half::bf16>),
    F16(Vec<half::f16>),
}

/// The in-place op that hands a tensor's storage to a visitor.
struct Visit<'a, 'v> {
    info: &'a TensorInfo,
    f: Mutex<&'a mut Visitor<'v>>,
    result: Mutex<Option<Result<(), ParamError>>>,
}

impl InplaceOp1 for Visit<'_, '_> {
    fn name(&self) -> &'static str {
        "zo-visit"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (start, end) = layout.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg(format!("`{}` is not contiguous", self.info.name))
        })?;
        let slice = match storage {
            CpuStorage::F32(v) => ParamSliceMut::F32(&mut v[start..end]),
            CpuStorage::BF16(v) => ParamSliceMut::BF16(&mut v[start..end]),
            CpuStorage::F16(v) => ParamSliceMut::F16(&mut v[start..end]),
            _ => {
                return Err(candle_core::Error::Msg(format!(
                    "`{}` has unsupported storage (trainable weights are f32, bf16 or f16)",
                    self.info.name
                )));
            }
        };
        let mut f = self
            .f
            .lock()
            .map_err(|_| candle_core::Error::Msg("visitor poisoned".into()))?;
        let r = (*f)(self.info, slice);
        *self
            .result
            .lock()
            .map_err(|_| candle_core::Error::Msg("visitor poisoned".into()))? = Some(r);
        Ok(())
    }
}

impl ParamSet for Weights {
    fn tensors(&self) -> Vec<TensorInfo> {
        self.entries.iter().map(|(i, _)| i.clone()).collect()
    }

    fn visit_mut(&mut self, f: &mut Visitor<'_>) -> Result<(), ParamError> {
        for (info, tensor) in &self.entries {
            visit_tensor(info, tensor, f)?;
        }
        Ok(())
    }

    fn probe_mode(&self) -> ProbeMode {
        ProbeMode::View
    }

    fn set_view(&mut self, view: Option<Perturbation>) -> Result<(), ParamError> {
        self.state.set(view)
    }

    fn set_row_support(&mut self, support: Option<&RowSupport>) -> Result<(), ParamError> {
        let infos = with_row_support(&self.tensors(), support)?;
        self.state.set_rows(&infos)?;
        for ((info, _), new) in self.entries.iter_mut().zip(infos) {
            *info = new;
        }
        Ok(())
    }

    fn rounding(&self) -> Rounding {
        self.rounding
    }
}

/// Hand one tensor's storage to `f`, in place.
pub(crate) fn visit_tensor(
    info: &TensorInfo,
    tensor: &Tensor,
    f: &mut Visitor<'_>,
) -> Result<(), ParamError> {
    let op = Visit {
        info,
        f: Mutex::new(f),
        result: Mutex::new(None),
    };
    tensor
        .inplace_op1(&op)
        .map_err(|e| ParamError::Backend(Box::new(e)))?;
    let result = op.result.into_inner().unwrap_or(None);
    result.unwrap_or_else(|| {
        Err(ParamError::Backend(
            format!("`{}` was not visited", info.name).into(),
        ))
    })
}
