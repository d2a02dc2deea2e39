//! Checkpoint loading shared by every architecture: safetensors files (single or sharded) in a local
//! Hugging Face folder, or tensors produced by another reader (GGUF, llama2.c), converted to the
//! working precision; trainable tensors are registered in [`Weights`] as they are taken.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::param::{Linear, Param, Role};
use crate::weights::Weights;

/// The working precision of a model's weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats.
    #[default]
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
}

impl Precision {
    /// The candle dtype.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::BF16 => DType::BF16,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "f16" | "fp16" | "float16" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::BF16),
            other => Err(ModelError::Config {
                field: "precision".into(),
                message: format!("unknown precision `{other}` (expected f32, f16 or bf16)"),
            }),
        }
    }
}

/// Read and parse a JSON file, naming the file in any error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ModelError::Malformed {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The `from_hf_folder` and `config` methods of a model type with a `cfg: $config` field and a
/// constructor `Self::new(&$config, &mut Checkpoint)`, whose configuration reads with
/// `$config::from_file`.
macro_rules! hf_model_loader {
    ($config:ident) => {
        /// Load a local Hugging Face folder (`config.json` + safetensors). Returns the model and
        /// its trainable weights.
        pub fn from_hf_folder(
            dir: &std::path::Path,
            precision: $crate::loading::Precision,
        ) -> $crate::error::Result<(Self, $crate::weights::Weights)> {
            $crate::loading::load_hf_folder(dir, precision, $config::from_file, Self::new)
        }

        /// The configuration.
        pub fn config(&self) -> &$config {
            &self.cfg
        }
    };
}
pub(crate) use hf_model_loader;

/// Load a model from a local Hugging Face folder: `config.json` parsed by `read_config`, the
/// safetensors weights by [`Checkpoint::from_hf_folder`], the model built by `build`. Returns the
/// model and its trainable weights (the checkpoint's other tensors are dropped).
pub fn load_hf_folder<C, M>(
    dir: &Path,
    precision: Precision,
    read_config: impl FnOnce(&Path) -> Result<C>,
    build: impl FnOnce(&C, &mut Checkpoint) -> Result<M>,
) -> Result<(M, Weights)> {
    if !dir.is_dir() {
        return Err(ModelError::not_found(dir, "model folder not found"));
    }
    let cfg = read_config(&dir.join("config.json"))?;
    let mut checkpoint = Checkpoint::from_hf_folder(dir, precision)?;
    let model = build(&cfg, &mut checkpoint)?;
    Ok((model, checkpoint.into_weights()))
}

/// The tensors of a checkpoint, with the file they came from for error messages.
#[derive(Debug)]
pub struct Checkpoint {
    origin: PathBuf,
    tensors: HashMap<String, Tensor>,
    precision: Precision,
    weights: Weights,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

impl Checkpoint {
    /// Load the safetensors weights of a local Hugging Face folder: `model.safetensors`, or the shards
    /// named by `model.safetensors.index.json`.
    pub fn from_hf_folder(dir: &Path, precision: Precision) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.exists() {
            vec![single]
        } else if index.exists() {
            let idx: ShardIndex = read_json(&index)?;
            let mut shards: Vec<String> = idx.weight_map.into_values().collect();
            shards.sort();
            shards.dedup();
            shards.into_iter().map(|s| dir.join(s)).collect()
        } else {
            return Err(ModelError::Io {
                path: single,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no model.safetensors or model.safetensors.index.json in the model folder",
                ),
            });
        };
        let mut tensors = HashMap::new();
        for file in &files {
            if !file.exists() {
                return Err(ModelError::Io {
                    path: file.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "shard not found"),
                });
            }
            let loaded = candle_core::safetensors::load(file, &Device::Cpu).map_err(|e| {
                ModelError::Malformed {
                    path: file.clone(),
                    message: e.to_string(),
                }
            })?;
            tensors.extend(loaded);
        }
        Ok(Self::from_tensors(dir.to_path_buf(), tensors, precision))
    }

    /// Wrap tensors read by another reader (GGUF, llama2.c).
    pub fn from_tensors(
        origin: PathBuf,
        tensors: HashMap<String, Tensor>,
        precision: Precision,
    ) -> Self {
        Self {
            origin,
            tensors,
            precision,
            weights: Weights::new(),
        }
    }

    /// Where the tensors came from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The working precision.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Whether a tensor of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Names present in the checkpoint, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The first of `names` that exists, checked against `shape`, converted to the working precision
    /// and made contiguous. Not registered as trainable.
    pub fn constant(&self, names: &[&str], shape: &[usize]) -> Result<Tensor> {
        let (name, t) = names
            .iter()
            .find_map(|n| self.tensors.get(*n).map(|t| (*n, t)))
            .ok_or_else(|| ModelError::MissingTensor {
                name: names.join(" | "),
                path: self.origin.clone(),
            })?;
        if !matches!(
            t.dtype(),
            DType::F32 | DType::F16 | DType::BF16 | DType::F64
        ) {
            // Integer and boolean tensors are no weights: converting them to floats would train
            // (and export) something that is not a weight of the model.
            return Err(ModelError::Malformed {
                path: self.origin.clone(),
                message: format!(
                    "tensor `{name}` is {:?}, not a floating-point weight (f32, f16, bf16 or f64)",
                    t.dtype()
                ),
            });
        }
        if t.dims() != shape {
            return Err(ModelError::Shape {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        Ok(t.to_dtype(self.precision.dtype())?.contiguous()?.detach())
    }

    /// Like [`constant`](Self::constant), and registered as trainable under `canonical` (the
    /// name the optimizer's streams are keyed by): a dense matrix or vector, read whole.
    pub fn trainable(&mut self, canonical: &str, names: &[&str], shape: &[usize]) -> Result<Param> {
        self.take(canonical, names, shape, Role::Dense)
    }

    /// Like [`trainable`](Self::trainable), for a table read by rows (an embedding) or in blocks
    /// of rows (a vocabulary-sized output head): it never sizes the shared scratch buffer.
    pub fn trainable_table(
        &mut self,
        canonical: &str,
        names: &[&str],
        shape: &[usize],
    ) -> Result<Param> {
        self.take(canonical, names, shape, Role::Table)
    }

    fn take(
        &mut self,
        canonical: &str,
        names: &[&str],
        shape: &[usize],
        role: Role,
    ) -> Result<Param> {
        let t = self.constant(names, shape)?;
        // `to_dtype` of a tensor already in that dtype shares storage with the checkpoint map: copy it
        // so that the trainable tensor owns its storage alone.
        let t = t.copy()?;
        let param = self.weights.register_param(canonical, t.clone(), role)?;
        // Release the checkpoint's own copy at once, so that loading peaks near one model's size
        // instead of two: the entry now shares the trainable tensor's storage (a later lookup of the
        // same name sees the trainable tensor, as a tie would).
        if let Some(name) = names.iter().find(|n| self.tensors.contains_key(**n)) {
            self.tensors.insert((*name).to_string(), t);
        }
        Ok(param)
    }

    /// The trainable tensor `<prefixes[0]><name>`, accepting `<p><name>` for any of `prefixes` in
    /// the file (checkpoints saved from a bare decoder drop the outer prefix, for instance).
    pub fn trainable_prefixed(
        &mut self,
        prefixes: &[&str],
        name: &str,
        shape: &[usize],
    ) -> Result<Param> {
        let names: Vec<String> = prefixes.iter().map(|p| format!("{p}{name}")).collect();
        let accepted: Vec<&str> = names.iter().map(String::as_str).collect();
        let canonical = accepted.first().copied().unwrap_or(name);
        self.trainable(canonical, &accepted, shape)
    }

    /// A trainable linear layer `<name>.weight` of shape `[out, inp]`, with `<name>.bias` of shape
    /// `[out]` when `bias`, under [`trainable_prefixed`](Self::trainable_prefixed)'s naming.
    pub fn trainable_linear(
        &mut self,
        prefixes: &[&str],
        name: &str,
        (out, inp): (usize, usize),
        bias: bool,
    ) -> Result<Linear> {
        let w = self.trainable_prefixed(prefixes, &format!("{name}.weight"), &[out, inp])?;
        let b = if bias {
            Some(self.trainable_prefixed(prefixes, &format!("{name}.bias"), &[out])?)
        } else {
            None
        };
        Ok(Linear::new(w, b))
    }

    /// The trainable weights registered so far.
    pub fn into_weights(self) -> Weights {
        self.weights
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zo_optim::ParamSet;

    #[test]
    fn integer_and_boolean_tensors_are_refused_as_weights() {
        let mut tensors = HashMap::new();
        let ints = Tensor::new(&[1i64, 2, 3], &Device::Cpu).unwrap();
        let bytes = Tensor::new(&[1u8, 0, 1], &Device::Cpu).unwrap();
        let floats = Tensor::new(&[1f32, 2., 3.], &Device::Cpu).unwrap();
        tensors.insert("ids".to_string(), ints);
        tensors.insert("mask".to_string(), bytes);
        tensors.insert("w".to_string(), floats);
        let mut ck = Checkpoint::from_tensors("model.safetensors".into(), tensors, Precision::F32);
        for name in ["ids", "mask"] {
            let err = ck.trainable(name, &[name], &[3]).unwrap_err().to_string();
            assert!(
                err.contains("model.safetensors") && err.contains(name) && err.contains("floating"),
                "{err}"
            );
        }
        assert!(ck.trainable("w", &["w"], &[3]).is_ok());
        assert_eq!(ck.into_weights().num_params(), 3);
    }
}
