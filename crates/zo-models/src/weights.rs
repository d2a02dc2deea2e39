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

use crate::adapters::Peft;
use crate::error::{ModelError, Result};
use crate::param::{Param, Role, ViewState};

/// One LoRA-adapted linear layer: the frozen weight's name, its adapters' names and `α / r`.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraPair {
    /// The frozen weight `W` (`out × in`).
    pub weight: String,
    /// `A` (`r × in`).
    pub a: String,
    /// `B` (`out × r`).
    pub b: String,
    /// `α / r`.
    pub scale: f64,
}

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
    /// The checkpoint's weights that are not trained (adapter fine-tuning), by name.
    frozen: Vec<(TensorInfo, Tensor)>,
    lora: Vec<LoraPair>,
    peft: Peft,
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

    /// Keep `frozen`'s tensors beside the trainable ones (they are shared, not copied), with the
    /// LoRA pairs and the method that made the trainable set.
    pub(crate) fn set_frozen(&mut self, frozen: Weights, lora: Vec<LoraPair>, peft: Peft) {
        self.frozen = frozen.entries;
        self.lora = lora;
        self.peft = peft;
    }

    /// What the trainable set is: every weight ([`Peft::Full`]) or adapters.
    pub fn peft(&self) -> &Peft {
        &self.peft
    }

    /// The checkpoint's weights that are not trained (empty unless adapters are), sorted by name.
    pub fn frozen(&self) -> impl Iterator<Item = (&TensorInfo, &Tensor)> {
        self.frozen.iter().map(|(i, t)| (i, t))
    }

    /// Elements of the frozen weights.
    pub fn frozen_elements(&self) -> usize {
        self.frozen.iter().map(|(_, t)| t.elem_count()).sum()
    }

    /// The LoRA-adapted layers.
    pub fn lora_pairs(&self) -> &[LoraPair] {
        &self.lora
    }

    /// The full model's weights with the LoRA adapters merged in: every frozen tensor, each
    /// adapted weight replaced by `W + (α/r)·B A` (computed in f32 from the stored values, then
    /// stored in the frozen weight's dtype). The result is a full-parameter set with storage of
    /// its own. An error for prefix tuning (prefixes are not weights of the base model) and for
    /// full-parameter sets (nothing to merge).
    pub fn merged(&self) -> Result<Weights> {
        if !matches!(self.peft, Peft::Lora(_)) {
            return Err(ModelError::Config {
                field: "peft.method".into(),
                message: format!(
                    "only LoRA adapters merge into the base weights (this set is `{}`)",
                    self.peft.method()
                ),
            });
        }
        let value = |name: &str| -> Result<Tensor> {
            let t = self.get(name).ok_or_else(|| ModelError::Config {
                field: name.into(),
                message: "adapter missing from the trainable set".into(),
            })?;
            Ok(t.to_dtype(DType::F32)?)
        };
        let mut out = Weights::new();
        for (info, t) in &self.frozen {
            let merged = match self.lora.iter().find(|p| p.weight == info.name) {
                Some(pair) => {
                    let delta = (value(&pair.b)?.matmul(&value(&pair.a)?)? * pair.scale)?;
                    (t.to_dtype(DType::F32)? + delta)?.to_dtype(t.dtype())?
                }
                None => t.copy()?,
            };
            out.insert_with_decay(info.name.clone(), merged.contiguous()?, info.decay)?;
        }
        out.rounding = self.rounding;
        Ok(out)
    }

    /// The adapters' description in the layout of Hugging Face PEFT's `adapter_config.json`
    /// (LoRA: `peft_type` `LORA`, `r`, `lora_alpha`, `target_modules`; prefix: this crate's own
    /// `PREFIX_KV`, whose keys and values are read after the projections, with the sequence
    /// keeping its positions). `None` for a full-parameter set.
    pub fn adapter_config(&self, base_model: &str) -> Option<serde_json::Value> {
        match &self.peft {
            Peft::Full => None,
            Peft::Lora(c) => {
                let mut targets: Vec<String> = self
                    .lora
                    .iter()
                    .filter_map(|p| {
                        p.weight
                            .trim_end_matches(".weight")
                            .rsplit('.')
                            .next()
                            .map(str::to_string)
                    })
                    .collect();
                targets.sort();
                targets.dedup();
                Some(serde_json::json!({
                    "peft_type": "LORA",
                    "base_model_name_or_path": base_model,
                    "r": c.rank,
                    "lora_alpha": c.alpha,
                    "lora_dropout": 0.0,
                    "bias": "none",
                    "fan_in_fan_out": false,
                    "target_modules": targets,
                    "inference_mode": true,
                }))
            }
            Peft::Prefix(c) => Some(serde_json::json!({
                "peft_type": "PREFIX_KV",
                "base_model_name_or_path": base_model,
                "num_virtual_tokens": c.tokens,
                "init": c.init,
                "layout": "per attention layer: <layer>.prefix_keys and <layer>.prefix_values [tokens, kv_width], after the key/value projections (and the rotary embedding), attended by every query before the sequence's own keys; the sequence keeps its positions",
            })),
        }
    }

    /// Write the adapters into the folder `dir` (created if needed) as Hugging Face PEFT lays them
    /// out: `adapter_model.safetensors` (LoRA tensors named `base_model.model.<module>.lora_A.weight`
    /// as PEFT saves them; prefixes under their own names) and `adapter_config.json`
    /// ([`adapter_config`](Self::adapter_config)), each written atomically. An error for a
    /// full-parameter set.
    pub fn save_adapters(&self, dir: &std::path::Path, base_model: &str) -> Result<()> {
        let Some(config) = self.adapter_config(base_model) else {
            return Err(ModelError::Config {
                field: "peft.method".into(),
                message: "the run trained every weight: there are no adapters to save".into(),
            });
        };
        std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let prefix = if matches!(self.peft, Peft::Lora(_)) {
            "base_model.model."
        } else {
            ""
        };
        let mut named = Weights::new();
        for (info, t) in &self.entries {
            named.insert_with_decay(format!("{prefix}{}", info.name), t.clone(), info.decay)?;
        }
        named.save_safetensors(&dir.join("adapter_model.safetensors"))?;
        let text = serde_json::to_string_pretty(&config).map_err(|e| ModelError::Config {
            field: "adapter_config".into(),
            message: e.to_string(),
        })?;
        let path = dir.join("adapter_config.json");
        let tmp = dir.join(format!(".adapter_config.json.tmp-{}", std::process::id()));
        let io = |p: &std::path::Path| {
            let p = p.to_path_buf();
            move |source| ModelError::Io { path: p, source }
        };
        std::fs::write(&tmp, text + "\n").map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
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
            frozen: self.frozen.clone(),
            lora: self.lora.clone(),
            peft: self.peft.clone(),
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
