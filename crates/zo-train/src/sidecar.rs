//! The optimizer-state sidecar: the per-parameter vectors of an optimizer state (MeZO-Adam's
//! moments, a momentum buffer, HiZOO's curvature) as f32 tensors in a safetensors file, named
//! `rule.m/<tensor>`, `rule.v/<tensor>`, `estimator.h/<tensor>`, in the parameter set's order.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use zo_optim::{EstimatorState, OptimizerState, RuleState, StateVec};

use crate::error::{Result, TrainError};
use crate::rundir::io_err;

/// The per-parameter vectors of an optimizer state (`$state`, borrowed as `&` or `&mut`), by
/// sidecar name prefix.
macro_rules! state_vectors {
    ($($borrow:tt)+) => {{
        let mut out = Vec::new();
        if let EstimatorState::Hessian { h } = $($borrow)+.estimator {
            out.push(("estimator.h", h));
        }
        match $($borrow)+.rule {
            RuleState::Momentum { m } => out.push(("rule.m", m)),
            RuleState::Adam { m, v, .. } => {
                out.push(("rule.m", m));
                out.push(("rule.v", v));
            }
            _ => {}
        }
        out
    }};
}

/// The optimizer state's per-parameter vectors, by sidecar name prefix.
pub(crate) fn vectors(state: &OptimizerState) -> Vec<(&'static str, &StateVec)> {
    state_vectors!(&state)
}

/// The slots of the optimizer state that hold per-parameter vectors, by sidecar name prefix.
fn vector_slots(state: &mut OptimizerState) -> Vec<(&'static str, &mut StateVec)> {
    state_vectors!(&mut state)
}

/// The optimizer state with its per-parameter vectors left empty (they go to the sidecar).
pub(crate) fn skeleton(state: &OptimizerState) -> OptimizerState {
    let empty = || StateVec::from_tensors(Vec::new());
    OptimizerState {
        seed: state.seed,
        step: state.step,
        num_params: state.num_params,
        estimator: match &state.estimator {
            EstimatorState::Hessian { .. } => EstimatorState::Hessian { h: empty() },
            other => other.clone(),
        },
        rule: match &state.rule {
            RuleState::Momentum { .. } => RuleState::Momentum { m: empty() },
            RuleState::Adam { t, .. } => RuleState::Adam {
                m: empty(),
                v: empty(),
                t: *t,
            },
            other => other.clone(),
        },
    }
}

/// A 1-D f32 tensor for safetensors (little-endian bytes).
struct F32View<'a> {
    values: &'a [f32],
    shape: [usize; 1],
}

impl safetensors::View for F32View<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        if cfg!(target_endian = "little") {
            // The values' own bytes: no copy of a state that can be gigabytes.
            std::borrow::Cow::Borrowed(bytemuck::cast_slice(self.values))
        } else {
            std::borrow::Cow::Owned(self.values.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
    }
    fn data_len(&self) -> usize {
        self.values.len() * 4
    }
}

/// Write the vectors to a safetensors file at `path` (not atomically: the caller writes a
/// temporary file).
pub(crate) fn write_sidecar(path: &Path, vectors: &[(&'static str, &StateVec)]) -> Result<()> {
    let mut views = Vec::new();
    for (prefix, v) in vectors {
        for (name, values) in v.iter() {
            views.push((
                format!("{prefix}/{name}"),
                F32View {
                    values,
                    shape: [values.len()],
                },
            ));
        }
    }
    // Keep the parameter set's order: safetensors sorts its header, so record the order.
    let order: Vec<String> = views.iter().map(|(n, _)| n.clone()).collect();
    let mut meta = std::collections::HashMap::new();
    meta.insert(
        "order".to_string(),
        serde_json::to_string(&order).map_err(|e| TrainError::BadFile {
            path: path.to_path_buf(),
            message: format!("cannot serialise: {e}"),
        })?,
    );
    safetensors::serialize_to_file(views, Some(meta), path).map_err(|e| TrainError::BadFile {
        path: path.to_path_buf(),
        message: format!("cannot write: {e}"),
    })
}

/// Read a sidecar back into the slots of `state`.
pub(crate) fn read_sidecar(path: &Path, state: &mut OptimizerState) -> Result<()> {
    let bad = |message: String| TrainError::BadFile {
        path: path.to_path_buf(),
        message,
    };
    let bytes = fs::read(path).map_err(io_err(path))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let order: Vec<String> = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("order"))
        .ok_or_else(|| bad("no tensor order in the metadata".into()))
        .and_then(|o| serde_json::from_str(o).map_err(|e| bad(format!("bad order: {e}"))))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let mut by_prefix: BTreeMap<&str, Vec<(String, Vec<f32>)>> = BTreeMap::new();
    for full in &order {
        let (prefix, name) = full
            .split_once('/')
            .ok_or_else(|| bad(format!("tensor `{full}` has no prefix")))?;
        let view = st
            .tensor(full)
            .map_err(|e| bad(format!("tensor `{full}`: {e}")))?;
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(bad(format!(
                "tensor `{full}` is {:?}, not F32",
                view.dtype()
            )));
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        by_prefix
            .entry(prefix)
            .or_default()
            .push((name.to_string(), values));
    }
    for (prefix, slot) in vector_slots(state) {
        let tensors = by_prefix
            .remove(prefix)
            .ok_or_else(|| bad(format!("no `{prefix}` tensors for the optimizer state")))?;
        *slot = StateVec::from_tensors(tensors);
    }
    if let Some(prefix) = by_prefix.keys().next() {
        return Err(bad(format!(
            "`{prefix}` tensors that the optimizer state has no place for"
        )));
    }
    Ok(())
}
