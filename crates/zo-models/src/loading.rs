//! Checkpoint loading shared by every architecture: safetensors files (single or sharded) in a local
//! Hugging Face folder, or tensors produced by another reader (GGUF, llama2.c), converted to the
//! working precision; trainable tensors are registered in [`Weights`] as they are taken.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::adapters::{Load, Peft, PrefixInit, lora_a_values, prefix_random_values};
use crate::error::{ModelError, Result};
use crate::param::{Linear, LoraBranch, Param, Prefix, Role};
use crate::weights::{LoraPair, Weights};

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
        /// `load` is a [`Precision`](crate::Precision) or a [`Load`](crate::adapters::Load)
        /// (precision and adapters).
        pub fn from_hf_folder(
            dir: &std::path::Path,
            load: impl Into<$crate::adapters::Load>,
        ) -> $crate::error::Result<(Self, $crate::weights::Weights)> {
            $crate::loading::load_hf_folder(dir, load, $config::from_file, Self::new)
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
/// model and its trainable weights (the checkpoint's other tensors are dropped, or kept frozen
/// beside the adapters when `load` names a [`Peft`] method).
pub fn load_hf_folder<C, M>(
    dir: &Path,
    load: impl Into<Load>,
    read_config: impl FnOnce(&Path) -> Result<C>,
    build: impl FnOnce(&C, &mut Checkpoint) -> Result<M>,
) -> Result<(M, Weights)> {
    if !dir.is_dir() {
        return Err(ModelError::not_found(dir, "model folder not found"));
    }
    let cfg = read_config(&dir.join("config.json"))?;
    let mut checkpoint = Checkpoint::from_hf_folder(dir, load)?;
    let model = build(&cfg, &mut checkpoint)?;
    Ok((model, checkpoint.into_weights()?))
}

/// The tensors of a checkpoint, with the file they came from for error messages.
///
/// With a [`Peft`] method the checkpoint's weights are taken *frozen* (read by the layers as
/// they are, outside the trainable set) and the adapters are the trainable set.
#[derive(Debug)]
pub struct Checkpoint {
    origin: PathBuf,
    tensors: HashMap<String, Tensor>,
    load: Load,
    weights: Weights,
    frozen: Weights,
    lora: Vec<LoraPair>,
    /// The LoRA targets that matched a layer.
    matched: Vec<String>,
    /// The linear layers' module names (for error messages).
    linears: Vec<String>,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

impl Checkpoint {
    /// Load the safetensors weights of a local Hugging Face folder: `model.safetensors`, or the shards
    /// named by `model.safetensors.index.json`.
    pub fn from_hf_folder(dir: &Path, load: impl Into<Load>) -> Result<Self> {
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
        Self::from_tensors(dir.to_path_buf(), tensors, load).validated()
    }

    /// Wrap tensors read by another reader (GGUF, llama2.c). `load` is a [`Precision`] or a
    /// [`Load`] (precision and adapters; its settings are checked by the loaders, or call
    /// [`Peft::validate`]).
    pub fn from_tensors(
        origin: PathBuf,
        tensors: HashMap<String, Tensor>,
        load: impl Into<Load>,
    ) -> Self {
        Self {
            origin,
            tensors,
            load: load.into(),
            weights: Weights::new(),
            frozen: Weights::new(),
            lora: Vec::new(),
            matched: Vec::new(),
            linears: Vec::new(),
        }
    }

    /// `self` if its adapter settings are valid.
    pub fn validated(self) -> Result<Self> {
        self.load.peft.validate()?;
        Ok(self)
    }

    /// What is trained.
    pub fn peft(&self) -> &Peft {
        &self.load.peft
    }

    /// Where the tensors came from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The working precision.
    pub fn precision(&self) -> Precision {
        self.load.precision
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
        Ok(t.to_dtype(self.load.precision.dtype())?
            .contiguous()?
            .detach())
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
        let set = if self.load.peft.is_full() {
            &mut self.weights
        } else {
            &mut self.frozen
        };
        let param = set.register_param(canonical, t.clone(), role)?;
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
    /// `[out]` when `bias`, under [`trainable_prefixed`](Self::trainable_prefixed)'s naming. With
    /// LoRA, a layer that a target names gets the adapters `<module>.lora_A.weight` (`r × inp`)
    /// and `<module>.lora_B.weight` (`out × r`), `<module>` being `<prefixes[0]><name>`.
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
        let linear = Linear::new(w, b);
        let Peft::Lora(lora) = &self.load.peft else {
            return Ok(linear);
        };
        let module = format!("{}{name}", prefixes.first().copied().unwrap_or(""));
        self.linears.push(module.clone());
        let Some(target) = lora.target_of(&module) else {
            return Ok(linear);
        };
        let (rank, scale) = (lora.rank, lora.scale());
        let a_name = format!("{module}.lora_A.weight");
        let b_name = format!("{module}.lora_B.weight");
        let a_values = lora_a_values(self.load.seed, &a_name, rank, inp);
        let a = self.adapter(&a_name, a_values, &[rank, inp])?;
        let b = self.adapter(&b_name, vec![0.0; out * rank], &[out, rank])?;
        if !self.matched.contains(&target) {
            self.matched.push(target);
        }
        self.lora.push(LoraPair {
            weight: format!("{module}.weight"),
            a: a_name,
            b: b_name,
            scale,
        });
        Ok(linear.with_lora(LoraBranch::new(a, b, scale)))
    }

    /// The trainable prefix of the attention layer `layer` (keys and values `[tokens, kv_width]`,
    /// named `<layer>.prefix_keys` / `<layer>.prefix_values`) when prefix tuning, else `None`.
    /// With [`PrefixInit::Real`] they start at zero until the model calls
    /// [`Prefix::overwrite`] with the activations of [`prefix_tokens`](crate::adapters::prefix_tokens).
    pub fn prefix(&mut self, layer: &str, kv_width: usize) -> Result<Option<Prefix>> {
        let Peft::Prefix(cfg) = &self.load.peft else {
            return Ok(None);
        };
        let (tokens, init) = (cfg.tokens, cfg.init);
        let mut take = |what: &str| -> Result<Param> {
            let name = format!("{layer}.prefix_{what}");
            let values = match init {
                PrefixInit::Random => {
                    prefix_random_values(self.load.seed, &name, tokens * kv_width)
                }
                PrefixInit::Real => vec![0.0; tokens * kv_width],
            };
            self.adapter(&name, values, &[tokens, kv_width])
        };
        let keys = take("keys")?;
        let values = take("values")?;
        Ok(Some(Prefix::new(keys, values)))
    }

    /// The random tokens whose activations start the prefixes, when prefix tuning with
    /// [`PrefixInit::Real`] (`vocab`: the model's vocabulary size).
    pub fn prefix_init_tokens(&self, vocab: usize) -> Option<Vec<u32>> {
        match &self.load.peft {
            Peft::Prefix(c) if c.init == PrefixInit::Real => Some(crate::adapters::prefix_tokens(
                self.load.seed,
                c.tokens,
                vocab,
            )),
            _ => None,
        }
    }

    /// Register an adapter tensor (always f32) as trainable.
    fn adapter(&mut self, name: &str, values: Vec<f32>, shape: &[usize]) -> Result<Param> {
        let t = Tensor::from_vec(values, shape, &Device::Cpu)?;
        self.weights.register_param(name, t, Role::Dense)
    }

    /// The trainable weights registered so far, with the frozen ones and the LoRA pairs beside
    /// them when adapters are trained. An error when a LoRA target matched no layer, or when
    /// adapters were asked for and the architecture made none.
    pub fn into_weights(mut self) -> Result<Weights> {
        // Loaders check the settings before any adapter is made; a checkpoint built with
        // `from_tensors` alone is checked here at the latest.
        self.load.peft.validate()?;
        match &self.load.peft {
            Peft::Full => {}
            Peft::Lora(cfg) => {
                let missing: Vec<&String> = cfg
                    .targets
                    .iter()
                    .filter(|t| !self.matched.contains(t))
                    .collect();
                if !missing.is_empty() || self.lora.is_empty() {
                    let what = if missing.is_empty() {
                        "the query and value projections".to_string()
                    } else {
                        missing
                            .iter()
                            .map(|t| format!("`{t}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    return Err(ModelError::Config {
                        field: "peft.targets".into(),
                        message: format!(
                            "{what} matched no linear layer of {} (its layers: {})",
                            self.origin.display(),
                            self.linear_modules().join(", ")
                        ),
                    });
                }
            }
            Peft::Prefix(_) => {
                if self.weights.is_empty() {
                    return Err(ModelError::Config {
                        field: "peft.method".into(),
                        message: format!(
                            "{}: this architecture has no attention layer to prefix",
                            self.origin.display()
                        ),
                    });
                }
            }
        }
        let peft = self.load.peft.clone();
        self.weights
            .set_frozen(std::mem::take(&mut self.frozen), self.lora, peft);
        Ok(self.weights)
    }

    /// The distinct module names of the linear layers taken so far (for error messages), with
    /// their layer numbers folded into `N`.
    fn linear_modules(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .linears
            .iter()
            .map(|name| {
                name.split('.')
                    .map(|p| if p.parse::<usize>().is_ok() { "N" } else { p })
                    .collect::<Vec<_>>()
                    .join(".")
            })
            .collect();
        out.sort();
        out.dedup();
        out
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
        assert_eq!(ck.into_weights().unwrap().num_params(), 3);
    }
}
