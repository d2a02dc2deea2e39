//! Parameter sets in host memory: a flat `Vec<f32>`, an `ndarray` array and [`ParamStore`].

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

use super::{ParamSet, ParamSliceMut, TensorInfo, Visitor};
use crate::error::ParamError;

/// The name under which a single flat vector is exposed.
pub const FLAT_NAME: &str = "params";

/// The one tensor of a flat parameter set: named [`FLAT_NAME`], with weight decay.
fn flat_info(shape: Vec<usize>) -> TensorInfo {
    TensorInfo {
        name: FLAT_NAME.into(),
        shape,
        decay: true,
        rows: None,
    }
}

impl ParamSet for Vec<f32> {
    fn tensors(&self) -> Vec<TensorInfo> {
        vec![flat_info(vec![self.len()])]
    }

    fn visit_mut(&mut self, f: &mut Visitor<'_>) -> Result<(), ParamError> {
        let info = flat_info(vec![self.len()]);
        f(&info, ParamSliceMut::F32(self.as_mut_slice()))
    }
}

impl<D: ndarray::Dimension> ParamSet for ndarray::Array<f32, D> {
    fn tensors(&self) -> Vec<TensorInfo> {
        vec![flat_info(self.shape().to_vec())]
    }

    fn visit_mut(&mut self, f: &mut Visitor<'_>) -> Result<(), ParamError> {
        let info = flat_info(self.shape().to_vec());
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

    fn set_row_support(&mut self, support: Option<&super::RowSupport>) -> Result<(), ParamError> {
        let infos: Vec<TensorInfo> = self.tensors.iter().map(|(t, _)| t.clone()).collect();
        let infos = super::with_row_support(&infos, support)?;
        for ((info, _), new) in self.tensors.iter_mut().zip(infos) {
            *info = new;
        }
        Ok(())
    }
}
