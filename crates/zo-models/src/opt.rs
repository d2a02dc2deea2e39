//! OPT causal language models (Meta's Open Pre-trained Transformers): learned positions offset by
//! 2 and derived from the attention mask, ReLU MLP, pre- or post-LayerNorm blocks
//! (`do_layer_norm_before`), optional `project_in`/`project_out` (OPT-350m) and an LM head tied to
//! the token embeddings.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::causal::CausalLm;
use crate::error::{ModelError, Result};
use crate::llama::{additive_mask, attention, check_inputs, embed, lm_logits, split_heads};
use crate::loading::{Checkpoint, read_json};
use crate::param::{Linear, Param, Prefix};

fn yes() -> bool {
    true
}

fn default_act() -> String {
    "relu".into()
}

/// The offset of OPT's learned position table: row `pos + 2` holds position `pos`.
pub const OPT_POSITION_OFFSET: usize = 2;

/// OPT's LayerNorm epsilon (torch's default; not in `config.json`).
pub const OPT_LAYER_NORM_EPS: f32 = 1e-5;

/// The configuration of an OPT model, mirroring `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Width of the MLP.
    pub ffn_dim: usize,
    /// Number of attention heads.
    pub num_attention_heads: usize,
    /// Maximum sequence length (the position table has 2 more rows).
    pub max_position_embeddings: usize,
    /// Pre-LN (`true`, OPT-125m/1.3b/…) or post-LN (`false`, OPT-350m) blocks.
    #[serde(default = "yes")]
    pub do_layer_norm_before: bool,
    /// Width of the token embeddings (smaller than `hidden_size` ⇒ `project_in`/`project_out`).
    #[serde(default)]
    pub word_embed_proj_dim: Option<usize>,
    /// The MLP activation: `relu` (or `gelu`, exact).
    #[serde(default = "default_act")]
    pub activation_function: String,
    /// Whether the linear layers have biases.
    #[serde(default = "yes")]
    pub enable_bias: bool,
    /// Whether the LayerNorms have weights and biases.
    #[serde(default = "yes")]
    pub layer_norm_elementwise_affine: bool,
    /// Whether the pre-LN model drops its final LayerNorm (old checkpoints).
    #[serde(default, rename = "_remove_final_layer_norm")]
    pub remove_final_layer_norm: bool,
    /// Whether the LM head is the token embedding matrix.
    #[serde(default = "yes")]
    pub tie_word_embeddings: bool,
    /// Padding token.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Beginning-of-sequence token (OPT prepends `</s>` = 2).
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

impl OptConfig {
    /// Read `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let cfg: Self = read_json(path)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The token embedding width.
    pub fn embed_dim(&self) -> usize {
        self.word_embed_proj_dim.unwrap_or(self.hidden_size)
    }

    /// Check the values this implementation supports.
    pub fn validate(&self) -> Result<()> {
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(ModelError::Config {
                field: "num_attention_heads".into(),
                message: format!(
                    "hidden size {} is not a multiple of {} heads",
                    self.hidden_size, self.num_attention_heads
                ),
            });
        }
        if !matches!(self.activation_function.as_str(), "relu" | "gelu") {
            return Err(ModelError::Config {
                field: "activation_function".into(),
                message: format!(
                    "unsupported activation `{}` (relu or gelu)",
                    self.activation_function
                ),
            });
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
struct Norm {
    weight: Option<Param>,
    bias: Option<Param>,
    width: usize,
}

impl Norm {
    fn load(ckpt: &mut Checkpoint, cfg: &OptConfig, name: &str) -> Result<Self> {
        let h = cfg.hidden_size;
        if cfg.layer_norm_elementwise_affine {
            Ok(Self {
                weight: Some(param(ckpt, &format!("{name}.weight"), &[h])?),
                bias: Some(param(ckpt, &format!("{name}.bias"), &[h])?),
                width: h,
            })
        } else {
            Ok(Self {
                weight: None,
                bias: None,
                width: h,
            })
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (weight, bias) = match (&self.weight, &self.bias) {
            (Some(w), Some(b)) => (w.value()?, b.value()?),
            _ => (
                Tensor::ones(self.width, DType::F32, &Device::Cpu)?,
                Tensor::zeros(self.width, DType::F32, &Device::Cpu)?,
            ),
        };
        Ok(candle_nn::ops::layer_norm(
            &x.to_dtype(DType::F32)?.contiguous()?,
            &weight,
            &bias,
            OPT_LAYER_NORM_EPS,
        )?)
    }
}

/// A trainable tensor `model.decoder.<name>`, accepting the `decoder.<name>` form of checkpoints
/// saved from the bare decoder.
fn param(ckpt: &mut Checkpoint, name: &str, shape: &[usize]) -> Result<Param> {
    ckpt.trainable_prefixed(DECODER, name, shape)
}

/// A trainable table (embedding) `model.decoder.<name>`, as [`param`] names it.
fn table(ckpt: &mut Checkpoint, name: &str, shape: &[usize]) -> Result<Param> {
    let names: Vec<String> = DECODER.iter().map(|p| format!("{p}{name}")).collect();
    let accepted: Vec<&str> = names.iter().map(String::as_str).collect();
    ckpt.trainable_table(accepted[0], &accepted, shape)
}

fn linear(ckpt: &mut Checkpoint, name: &str, out: usize, inp: usize, bias: bool) -> Result<Linear> {
    ckpt.trainable_linear(DECODER, name, (out, inp), bias)
}

/// The decoder's canonical prefix and the bare-decoder form some checkpoints use.
const DECODER: &[&str] = &["model.decoder.", "decoder."];

#[derive(Clone, Debug)]
struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    attn_norm: Norm,
    fc1: Linear,
    fc2: Linear,
    mlp_norm: Norm,
    prefix: Option<Prefix>,
}

/// An OPT causal language model.
#[derive(Clone, Debug)]
pub struct Opt {
    cfg: OptConfig,
    embed_tokens: Param,
    embed_positions: Param,
    project_in: Option<Linear>,
    project_out: Option<Linear>,
    layers: Vec<Layer>,
    final_norm: Option<Norm>,
    lm_head: Param,
    dtype: DType,
}

impl Opt {
    /// Build the model from a checkpoint with Hugging Face tensor names (`model.decoder.…` or
    /// `decoder.…`), registering every weight as trainable under its `model.decoder.…` name.
    pub fn new(cfg: &OptConfig, ckpt: &mut Checkpoint) -> Result<Self> {
        cfg.validate()?;
        let (h, e) = (cfg.hidden_size, cfg.embed_dim());
        let bias = cfg.enable_bias;
        let embed_tokens = table(ckpt, "embed_tokens.weight", &[cfg.vocab_size, e])?;
        let embed_positions = table(
            ckpt,
            "embed_positions.weight",
            &[cfg.max_position_embeddings + OPT_POSITION_OFFSET, h],
        )?;
        let (project_in, project_out) = if e != h {
            (
                Some(linear(ckpt, "project_in", h, e, false)?),
                Some(linear(ckpt, "project_out", e, h, false)?),
            )
        } else {
            (None, None)
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("layers.{i}");
            layers.push(Layer {
                q: linear(ckpt, &format!("{p}.self_attn.q_proj"), h, h, bias)?,
                k: linear(ckpt, &format!("{p}.self_attn.k_proj"), h, h, bias)?,
                v: linear(ckpt, &format!("{p}.self_attn.v_proj"), h, h, bias)?,
                out: linear(ckpt, &format!("{p}.self_attn.out_proj"), h, h, bias)?,
                attn_norm: Norm::load(ckpt, cfg, &format!("{p}.self_attn_layer_norm"))?,
                fc1: linear(ckpt, &format!("{p}.fc1"), cfg.ffn_dim, h, bias)?,
                fc2: linear(ckpt, &format!("{p}.fc2"), h, cfg.ffn_dim, bias)?,
                mlp_norm: Norm::load(ckpt, cfg, &format!("{p}.final_layer_norm"))?,
                prefix: ckpt.prefix(&format!("{}{p}.self_attn", DECODER[0]), h)?,
            });
        }
        let final_norm = if cfg.do_layer_norm_before && !cfg.remove_final_layer_norm {
            Some(Norm::load(ckpt, cfg, "final_layer_norm")?)
        } else {
            None
        };
        let lm_head = if !cfg.tie_word_embeddings && ckpt.contains("lm_head.weight") {
            ckpt.trainable_table("lm_head.weight", &["lm_head.weight"], &[cfg.vocab_size, e])?
        } else {
            embed_tokens.clone()
        };
        let model = Self {
            cfg: cfg.clone(),
            embed_tokens,
            embed_positions,
            project_in,
            project_out,
            layers,
            final_norm,
            lm_head,
            dtype: DType::F32,
        };
        if let Some(tokens) = ckpt.prefix_init_tokens(cfg.vocab_size) {
            crate::causal::init_prefixes(
                &tokens,
                |ids, mask, sink| model.run(ids, mask, Some(sink)).map(|_| ()),
                model.layers.iter().map(|l| l.prefix.as_ref()),
            )?;
        }
        Ok(model)
    }

    crate::loading::hf_model_loader!(OptConfig);

    /// Rows of the position table: `cumsum(mask) * mask - 1 + 2` per token.
    fn position_rows(&self, attention_mask: &Tensor) -> Result<Tensor> {
        let (b, s) = attention_mask.dims2()?;
        let mask: Vec<Vec<f32>> = attention_mask.to_dtype(DType::F32)?.to_vec2()?;
        let rows = self.embed_positions.dims()[0];
        let mut out = Vec::with_capacity(b * s);
        for row in &mask {
            let mut count = 0usize;
            for &m in row {
                let keep = m != 0.0;
                count += usize::from(keep);
                // pos = count - 1 for real tokens, -1 for padding; the table row is pos + 2.
                let r = if keep { count + 1 } else { 1 };
                if r >= rows {
                    return Err(ModelError::Config {
                        field: "max_position_embeddings".into(),
                        message: format!(
                            "sequence of {count} tokens is longer than {}",
                            rows - OPT_POSITION_OFFSET
                        ),
                    });
                }
                out.push(r as u32);
            }
        }
        Ok(Tensor::from_vec(out, (b, s), &Device::Cpu)?)
    }
}

impl Opt {
    /// The final hidden states; with `capture`, without prefixes, collecting each layer's keys
    /// and values of the first sequence (`[s, h]`).
    fn run(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        mut capture: Option<&mut crate::causal::Capture>,
    ) -> Result<Tensor> {
        let (b, s) = check_inputs(input_ids, attention_mask)?;
        let nh = self.cfg.num_attention_heads;
        let hd = self.cfg.hidden_size / nh;
        let mask = additive_mask(attention_mask, None)?;
        let mut x = embed(&self.embed_tokens, input_ids)?;
        if let Some(p) = &self.project_in {
            x = p.forward(&x)?;
        }
        x = (x + embed(&self.embed_positions, &self.position_rows(attention_mask)?)?)?;
        let pre = self.cfg.do_layer_norm_before;
        for layer in &self.layers {
            let h = if pre {
                layer.attn_norm.forward(&x)?
            } else {
                x.clone()
            };
            let q = split_heads(&layer.q.forward(&h)?, (b, s, nh, hd))?;
            let (k, v) = (layer.k.forward(&h)?, layer.v.forward(&h)?);
            if let Some(sink) = capture.as_deref_mut() {
                sink.push((k.get(0)?, v.get(0)?));
            }
            let k = split_heads(&k, (b, s, nh, hd))?;
            let v = split_heads(&v, (b, s, nh, hd))?;
            let (k, v, layer_mask) = match (&capture, &layer.prefix) {
                (None, Some(prefix)) => {
                    let (k, v) = prefix.prepend(&k, &v)?;
                    (k, v, prefix.widen_mask(&mask)?)
                }
                _ => (k, v, mask.clone()),
            };
            let a = attention(
                &q,
                &k,
                &v,
                &layer_mask,
                1.0 / (hd as f64).sqrt(),
                self.dtype,
            )?;
            x = (x + layer.out.forward(&a)?)?;
            if !pre {
                x = layer.attn_norm.forward(&x)?;
            }
            let h = if pre {
                layer.mlp_norm.forward(&x)?
            } else {
                x.clone()
            };
            let f = layer.fc1.forward(&h)?;
            let f = if self.cfg.activation_function == "relu" {
                f.relu()?
            } else {
                crate::activation::gelu_erf_tensor(&f)?
            };
            x = (x + layer.fc2.forward(&f)?)?;
            if !pre {
                x = layer.mlp_norm.forward(&x)?;
            }
        }
        if let Some(n) = &self.final_norm {
            x = n.forward(&x)?;
        }
        if let Some(p) = &self.project_out {
            x = p.forward(&x)?;
        }
        Ok(x)
    }
}

impl CausalLm for Opt {
    fn hidden_states(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        self.run(input_ids, attention_mask, None)
    }

    fn head(&self, hidden: &Tensor) -> Result<Tensor> {
        lm_logits(hidden, &self.lm_head)
    }

    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }
}
