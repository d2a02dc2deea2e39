//! Per-element optimizer state shaped like a parameter set.

use serde::{Deserialize, Serialize};

use super::{ParamSet, TensorInfo};
use crate::error::ParamError;

/// A per-element f32 vector shaped like a parameter set (optimizer state: moments, curvature).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
