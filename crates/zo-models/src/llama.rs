//! Llama and Mistral causal language models (RoPE, grouped-query attention, SwiGLU, RMSNorm, and
//! Mistral's sliding-window attention), with a forward pass over right-padded batches.
//!
//! The forward takes `input_ids [b, s]` and `attention_mask [b, s]` and returns logits
//! `[b, s, vocab]`, or the final hidden states so that the LM head can be applied at chosen positions
//! only. Positions are `0..s` for every row (as in Hugging Face transformers); padded keys are
//! masked. RoPE uses the `rotate_half` form of Hugging Face checkpoints; readers of checkpoints in
//! the interleaved layout (GGUF, llama2.c) un-permute the query/key rows at load time
//! ([`unpermute_rope_rows`]).
//!
//! Attention scores, softmax and norms run in f32 whatever the working precision; the projections
//! run in the working precision.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use serde::{Deserialize, Serialize};

use crate::causal::CausalLm;
use crate::error::{ModelError, Result};
use crate::loading::{Checkpoint, read_json};
use crate::param::{Linear, Param, Prefix};

fn default_rope_theta() -> f64 {
    10_000.0
}

fn default_max_positions() -> usize {
    4096
}

fn default_act() -> String {
    "silu".into()
}

/// RoPE settings in the form transformers 5 writes (`rope_parameters`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RopeParameters {
    /// The RoPE base θ.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// The RoPE variant; only `"default"` is supported.
    #[serde(default)]
    pub rope_type: Option<String>,
}

/// The configuration of a Llama or Mistral model, mirroring `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention); defaults to the query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Width of a head; defaults to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base as transformers 4 writes it.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// RoPE settings as transformers 5 writes them.
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    /// RoPE scaling (transformers 4); only absent or `null` is supported.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Maximum sequence length.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Whether the LM head is the token embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Mistral's attention window (a query sees itself and the `sliding_window - 1` previous keys).
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// The MLP activation; only `silu` is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Whether the attention projections have biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether the MLP projections have biases.
    #[serde(default)]
    pub mlp_bias: bool,
    /// `llama`, `mistral`, …
    #[serde(default)]
    pub model_type: Option<String>,
    /// Beginning-of-sequence token.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token(s).
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
}

impl LlamaConfig {
    /// Read `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let cfg: Self = read_json(path)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The number of key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// The width of a head.
    pub fn head_width(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// The RoPE base θ (`rope_parameters.rope_theta`, else `rope_theta`, else 10000).
    pub fn theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .map(|p| p.rope_theta)
            .or(self.rope_theta)
            .unwrap_or_else(default_rope_theta)
    }

    /// Check the values this implementation supports.
    pub fn validate(&self) -> Result<()> {
        let err = |field: &str, message: String| {
            Err(ModelError::Config {
                field: field.into(),
                message,
            })
        };
        if self.num_attention_heads == 0 || self.num_hidden_layers == 0 || self.hidden_size == 0 {
            return err(
                "num_attention_heads",
                "heads, layers and width must be positive".into(),
            );
        }
        if self.kv_heads() == 0 || !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return err(
                "num_key_value_heads",
                format!(
                    "{} query heads are not a multiple of {} key/value heads",
                    self.num_attention_heads,
                    self.kv_heads()
                ),
            );
        }
        if !self.head_width().is_multiple_of(2) || self.head_width() == 0 {
            return err(
                "head_dim",
                format!("RoPE needs an even head width, got {}", self.head_width()),
            );
        }
        if let Some(p) = &self.rope_parameters
            && let Some(t) = &p.rope_type
            && t != "default"
        {
            return err(
                "rope_parameters.rope_type",
                format!("unsupported RoPE type `{t}` (only `default`)"),
            );
        }
        if let Some(s) = &self.rope_scaling
            && !s.is_null()
        {
            return err("rope_scaling", "RoPE scaling is not supported".into());
        }
        if self.hidden_act != "silu" {
            return err(
                "hidden_act",
                format!("unsupported activation `{}` (only `silu`)", self.hidden_act),
            );
        }
        if self.sliding_window == Some(0) {
            return err("sliding_window", "must be positive".into());
        }
        Ok(())
    }
}

/// Reorder the rows of a query or key projection `[heads * head_dim, in]` from the interleaved
/// RoPE layout (pairs `(2i, 2i+1)`, as in Meta's, llama.cpp's and llama2.c's files) to the
/// `rotate_half` layout of Hugging Face checkpoints (pairs `(i, i + head_dim/2)`).
pub fn unpermute_rope_rows(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let hd = rows / heads.max(1);
    if heads == 0 || !rows.is_multiple_of(heads) || !hd.is_multiple_of(2) {
        return Err(ModelError::Shape {
            name: "rope rows".into(),
            expected: vec![heads, 2],
            found: vec![rows, cols],
        });
    }
    Ok(w.reshape((heads, hd / 2, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}

/// The additive attention mask `[b, 1, s, s]` (f32): 0 where query `q` may see key `k`, `f32::MIN`
/// elsewhere. Causal, key padding from `attention_mask`, and an optional window (`q - w < k`).
pub(crate) fn additive_mask(attention_mask: &Tensor, window: Option<usize>) -> Result<Tensor> {
    let (b, s) = attention_mask.dims2()?;
    let keep: Vec<Vec<f32>> = attention_mask.to_dtype(DType::F32)?.to_vec2()?;
    let mut m = vec![f32::MIN; b * s * s];
    for (r, row) in keep.iter().enumerate() {
        for q in 0..s {
            let lo = window.map_or(0, |w| (q + 1).saturating_sub(w));
            for (k, &valid) in row.iter().enumerate().take(q + 1).skip(lo) {
                if valid != 0.0 {
                    m[(r * s + q) * s + k] = 0.0;
                }
            }
        }
    }
    Ok(Tensor::from_vec(m, (b, 1, s, s), &Device::Cpu)?)
}

/// Check `input_ids [b, s]` (u32) against `attention_mask [b, s]`.
pub(crate) fn check_inputs(input_ids: &Tensor, attention_mask: &Tensor) -> Result<(usize, usize)> {
    let (b, s) = input_ids.dims2().map_err(|_| ModelError::Shape {
        name: "input_ids".into(),
        expected: vec![0, 0],
        found: input_ids.dims().to_vec(),
    })?;
    if attention_mask.dims() != [b, s] {
        return Err(ModelError::Shape {
            name: "attention_mask".into(),
            expected: vec![b, s],
            found: attention_mask.dims().to_vec(),
        });
    }
    if input_ids.dtype() != DType::U32 {
        return Err(ModelError::Config {
            field: "input_ids".into(),
            message: "input ids must be u32".into(),
        });
    }
    if s == 0 {
        return Err(ModelError::Shape {
            name: "input_ids".into(),
            expected: vec![b, 1],
            found: vec![b, 0],
        });
    }
    Ok((b, s))
}

/// Look up token embeddings (f32), failing with a typed error on an out-of-range id.
pub(crate) fn embed(table: &Param, input_ids: &Tensor) -> Result<Tensor> {
    let (b, s) = input_ids.dims2()?;
    let vocab = table.dims()[0];
    let ids = input_ids.flatten_all()?.to_vec1::<u32>()?;
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= vocab) {
        return Err(ModelError::Config {
            field: "input_ids".into(),
            message: format!("token id {bad} >= vocab size {vocab}"),
        });
    }
    let width = table.dims()[1];
    Ok(table.gather(&ids)?.reshape((b, s, width))?)
}

/// `(b, s, n·hd)` projections as `(b, n, s, hd)` heads in f32, contiguous.
pub(crate) fn split_heads(
    t: &Tensor,
    (b, s, n, hd): (usize, usize, usize, usize),
) -> Result<Tensor> {
    Ok(t.reshape((b, s, n, hd))?
        .transpose(1, 2)?
        .to_dtype(DType::F32)?
        .contiguous()?)
}

/// The logits of the hidden states through the LM head `lm_head` (`vocab × hidden`), in f32.
pub(crate) fn lm_logits(hidden: &Tensor, lm_head: &Param) -> Result<Tensor> {
    lm_head.linear(hidden)
}

/// Scaled dot-product attention in f32: `q [b, h, s, d]`, `k`/`v [b, h, s, d]`, additive mask
/// `[b, 1, s, s]`; returns `[b, s, h * d]` in `dtype`.
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    scale: f64,
    dtype: DType,
) -> Result<Tensor> {
    let (b, h, s, d) = q.dims4()?;
    let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    let out = probs.matmul(v)?;
    Ok(out
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, s, h * d))?
        .to_dtype(dtype)?)
}

fn linear(ckpt: &mut Checkpoint, name: &str, out: usize, inp: usize, bias: bool) -> Result<Linear> {
    ckpt.trainable_linear(&[""], name, (out, inp), bias)
}

fn rms_norm(x: &Tensor, w: &Param, eps: f32) -> Result<Tensor> {
    Ok(candle_nn::ops::rms_norm(
        &x.to_dtype(DType::F32)?.contiguous()?,
        &w.value()?,
        eps,
    )?)
}

#[derive(Clone, Debug)]
struct Layer {
    input_norm: Param,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    post_norm: Param,
    gate: Linear,
    up: Linear,
    down: Linear,
    prefix: Option<Prefix>,
}

/// A Llama or Mistral causal language model.
#[derive(Clone, Debug)]
pub struct Llama {
    cfg: LlamaConfig,
    embed_tokens: Param,
    layers: Vec<Layer>,
    norm: Param,
    lm_head: Param,
    dtype: DType,
}

impl Llama {
    /// Build the model from a checkpoint with Hugging Face tensor names (`model.layers.N.…`),
    /// registering every weight as trainable. A tied head shares the embedding tensor.
    pub fn new(cfg: &LlamaConfig, ckpt: &mut Checkpoint) -> Result<Self> {
        cfg.validate()?;
        let (h, hd, nh, nkv) = (
            cfg.hidden_size,
            cfg.head_width(),
            cfg.num_attention_heads,
            cfg.kv_heads(),
        );
        let embed_tokens = ckpt.trainable_table(
            "model.embed_tokens.weight",
            &["model.embed_tokens.weight"],
            &[cfg.vocab_size, h],
        )?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let ab = cfg.attention_bias;
            let mb = cfg.mlp_bias;
            layers.push(Layer {
                input_norm: ckpt.trainable(
                    &format!("{p}.input_layernorm.weight"),
                    &[&format!("{p}.input_layernorm.weight")],
                    &[h],
                )?,
                q: linear(ckpt, &format!("{p}.self_attn.q_proj"), nh * hd, h, ab)?,
                k: linear(ckpt, &format!("{p}.self_attn.k_proj"), nkv * hd, h, ab)?,
                v: linear(ckpt, &format!("{p}.self_attn.v_proj"), nkv * hd, h, ab)?,
                o: linear(ckpt, &format!("{p}.self_attn.o_proj"), h, nh * hd, ab)?,
                post_norm: ckpt.trainable(
                    &format!("{p}.post_attention_layernorm.weight"),
                    &[&format!("{p}.post_attention_layernorm.weight")],
                    &[h],
                )?,
                gate: linear(
                    ckpt,
                    &format!("{p}.mlp.gate_proj"),
                    cfg.intermediate_size,
                    h,
                    mb,
                )?,
                up: linear(
                    ckpt,
                    &format!("{p}.mlp.up_proj"),
                    cfg.intermediate_size,
                    h,
                    mb,
                )?,
                down: linear(
                    ckpt,
                    &format!("{p}.mlp.down_proj"),
                    h,
                    cfg.intermediate_size,
                    mb,
                )?,
                prefix: ckpt.prefix(&format!("{p}.self_attn"), nkv * hd)?,
            });
        }
        let norm = ckpt.trainable("model.norm.weight", &["model.norm.weight"], &[h])?;
        let lm_head = if cfg.tie_word_embeddings && !ckpt.contains("lm_head.weight") {
            embed_tokens.clone()
        } else if !cfg.tie_word_embeddings {
            ckpt.trainable_table("lm_head.weight", &["lm_head.weight"], &[cfg.vocab_size, h])?
        } else {
            // Tied in the config but stored explicitly: the stored copy is the same matrix.
            embed_tokens.clone()
        };
        let model = Self {
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            norm,
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

    crate::loading::hf_model_loader!(LlamaConfig);

    fn rope_tables(&self, s: usize) -> Result<(Tensor, Tensor)> {
        let hd = self.cfg.head_width();
        let theta = self.cfg.theta();
        let mut cos = Vec::with_capacity(s * hd / 2);
        let mut sin = Vec::with_capacity(s * hd / 2);
        for p in 0..s {
            for i in 0..hd / 2 {
                let inv = 1.0 / theta.powf((2 * i) as f64 / hd as f64);
                // transformers computes the angle in f32: inv_freq (f32) times the position (f32).
                let angle = (inv as f32) * (p as f32);
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok((
            Tensor::from_vec(cos, (s, hd / 2), &Device::Cpu)?,
            Tensor::from_vec(sin, (s, hd / 2), &Device::Cpu)?,
        ))
    }
}

impl Llama {
    /// The final hidden states; with `capture`, without prefixes, collecting each layer's keys
    /// (after the rotary embedding) and values of the first sequence, `[s, kv_heads · hd]`.
    fn run(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        mut capture: Option<&mut crate::causal::Capture>,
    ) -> Result<Tensor> {
        let (b, s) = check_inputs(input_ids, attention_mask)?;
        let (hd, nh, nkv) = (
            self.cfg.head_width(),
            self.cfg.num_attention_heads,
            self.cfg.kv_heads(),
        );
        let groups = nh / nkv;
        let eps = self.cfg.rms_norm_eps as f32;
        let mask = additive_mask(attention_mask, self.cfg.sliding_window)?;
        let (cos, sin) = self.rope_tables(s)?;
        let mut x = embed(&self.embed_tokens, input_ids)?;
        for layer in &self.layers {
            let h = rms_norm(&x, &layer.input_norm, eps)?;
            let q = split_heads(&layer.q.forward(&h)?, (b, s, nh, hd))?;
            let k = split_heads(&layer.k.forward(&h)?, (b, s, nkv, hd))?;
            let v = split_heads(&layer.v.forward(&h)?, (b, s, nkv, hd))?;
            let q = candle_nn::rotary_emb::rope(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope(&k, &cos, &sin)?;
            if let Some(sink) = capture.as_deref_mut() {
                let flat = |t: &Tensor| -> Result<Tensor> {
                    Ok(t.get(0)?
                        .transpose(0, 1)?
                        .contiguous()?
                        .reshape((s, nkv * hd))?)
                };
                sink.push((flat(&k)?, flat(&v)?));
            }
            let (k, v, layer_mask) = match (&capture, &layer.prefix) {
                (None, Some(prefix)) => {
                    let (k, v) = prefix.prepend(&k, &v)?;
                    (k, v, prefix.widen_mask(&mask)?)
                }
                _ => (k, v, mask.clone()),
            };
            let keys = k.dim(2)?;
            // Query head j uses key/value head j / groups: repeat each KV head `groups` times.
            let repeat = |t: Tensor| -> Result<Tensor> {
                if groups == 1 {
                    return Ok(t);
                }
                Ok(t.unsqueeze(2)?
                    .expand((b, nkv, groups, keys, hd))?
                    .reshape((b, nh, keys, hd))?)
            };
            let k = repeat(k)?;
            let v = repeat(v)?;
            let a = attention(
                &q,
                &k,
                &v,
                &layer_mask,
                1.0 / (hd as f64).sqrt(),
                self.dtype,
            )?;
            x = (x + layer.o.forward(&a)?)?;
            let h = rms_norm(&x, &layer.post_norm, eps)?;
            let m = (crate::activation::silu_tensor(&layer.gate.forward(&h)?)?
                * layer.up.forward(&h)?)?;
            x = (x + layer.down.forward(&m)?)?;
        }
        rms_norm(&x, &self.norm, eps)
    }
}

impl CausalLm for Llama {
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
