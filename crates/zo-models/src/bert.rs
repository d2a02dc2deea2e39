//! BERT and RoBERTa masked language models (`BertForMaskedLM`, `RobertaForMaskedLM`).
//!
//! The two architectures share the encoder (post-LN transformer blocks with exact erf GELU) and the
//! MLM head (`dense → activation → LayerNorm → x · Eᵀ + b` with the decoder tied to the word
//! embeddings); they differ in names, in the LayerNorm epsilon and in positions: BERT numbers every
//! row `0..seq_len`, RoBERTa numbers the non-padding tokens `padding_idx + 1, …` and gives padding
//! tokens `padding_idx` (computed from the input ids, not from the attention mask).
//!
//! Every weight is taken through [`Checkpoint::trainable`], so it is registered in the model's
//! [`Weights`] under its Hugging Face name (`….LayerNorm.weight`/`bias`, whatever the file calls
//! them); the layers read it through a [`Param`], which adds the optimizer's probe
//! displacement as it reads. A tied decoder is the word-embedding tensor itself, registered once.
//!
//! Precision: weights are stored in the checkpoint's precision (f32, f16 or bf16) and widened to
//! f32 as they are read, so every product, norm and softmax runs in f32; logits are f32.
//!
//! This file is the definition of one model family (its configuration, layers, checkpoint loading
//! and forward pass), kept in one place, hence its length.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use zo_optim::RowSupport;

use crate::causal::Capture;
use crate::error::{ModelError, Result};
use crate::loading::{Checkpoint, read_json};
use crate::param::{Linear, Param, Prefix};
use crate::weights::Weights;

/// An activation function named by `hidden_act` in `config.json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// The exact GELU, `x Φ(x)` with the error function (transformers' `"gelu"`).
    #[default]
    #[serde(rename = "gelu")]
    Gelu,
    /// The tanh approximation of GELU (`"gelu_new"`, `"gelu_pytorch_tanh"`, `"gelu_fast"`).
    #[serde(
        alias = "gelu_new",
        alias = "gelu_pytorch_tanh",
        alias = "gelu_fast",
        rename = "gelu_tanh"
    )]
    GeluTanh,
    /// `max(x, 0)`.
    #[serde(rename = "relu")]
    Relu,
    /// `x σ(x)`.
    #[serde(alias = "swish", rename = "silu")]
    Silu,
}

impl Activation {
    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Gelu => crate::activation::gelu_erf_tensor(x),
            Self::GeluTanh => x.gelu(),
            Self::Relu => x.relu(),
            Self::Silu => crate::activation::silu_tensor(x),
        }
    }
}

/// Which of the two architectures (names, positions and head activation differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// `BertForMaskedLM`: tensors under `bert.` and `cls.predictions.`, positions `0..seq_len`.
    Bert,
    /// `RobertaForMaskedLM`: tensors under `roberta.` and `lm_head.`, positions from the input ids.
    Roberta,
}

impl Flavor {
    /// The flavor of a `model_type` (`bert`; `roberta`, `xlm-roberta`, `camembert`).
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "bert" => Some(Self::Bert),
            "roberta" | "xlm-roberta" | "camembert" => Some(Self::Roberta),
            _ => None,
        }
    }

    fn encoder_prefix(self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::Roberta => "roberta",
        }
    }

    fn default_pad_id(self) -> u32 {
        match self {
            Self::Bert => 0,
            Self::Roberta => 1,
        }
    }
}

fn default_type_vocab_size() -> usize {
    2
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}

fn default_true() -> bool {
    true
}

/// The fields of a BERT or RoBERTa `config.json` this implementation reads (others are ignored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Vocabulary size (rows of the word embeddings and of the decoder).
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of transformer blocks.
    pub num_hidden_layers: usize,
    /// Number of attention heads (must divide `hidden_size`).
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Activation of the feed-forward block (and of BERT's MLM head transform).
    #[serde(default)]
    pub hidden_act: Activation,
    /// Rows of the position table (RoBERTa: usable positions + `pad_token_id + 1`).
    pub max_position_embeddings: usize,
    /// Rows of the token-type table.
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon (BERT 1e-12, RoBERTa 1e-5).
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// The padding id (BERT 0, RoBERTa 1 when absent); RoBERTa's positions depend on it.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// `bert`, `roberta`, … (absent: BERT).
    #[serde(default)]
    pub model_type: Option<String>,
    /// Only `absolute` is supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    /// Whether the decoder is the word-embedding matrix (the default).
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
}

impl Config {
    /// Read and check a `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let cfg: Self = read_json(path.as_ref())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The architecture named by `model_type` (BERT when absent).
    pub fn flavor(&self) -> Result<Flavor> {
        match &self.model_type {
            None => Ok(Flavor::Bert),
            Some(t) => Flavor::from_model_type(t).ok_or_else(|| ModelError::Config {
                field: "model_type".into(),
                message: format!("`{t}` is not a BERT or RoBERTa masked LM"),
            }),
        }
    }

    /// The padding id.
    pub fn pad_id(&self) -> Result<u32> {
        Ok(self.pad_token_id.unwrap_or(self.flavor()?.default_pad_id()))
    }

    /// The longest sequence the position table allows.
    pub fn max_sequence_length(&self) -> Result<usize> {
        Ok(match self.flavor()? {
            Flavor::Bert => self.max_position_embeddings,
            Flavor::Roberta => self
                .max_position_embeddings
                .saturating_sub(self.pad_id()? as usize + 1),
        })
    }

    /// The tensors of a checkpoint of this configuration, as transformers names them (decoder tied
    /// unless `tie_word_embeddings` is false; no pooler).
    pub fn tensor_shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let flavor = self.flavor()?;
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let p = flavor.encoder_prefix();
        let mut out: Vec<(String, Vec<usize>)> = vec![
            (format!("{p}.embeddings.word_embeddings.weight"), vec![v, h]),
            (
                format!("{p}.embeddings.position_embeddings.weight"),
                vec![self.max_position_embeddings, h],
            ),
            (
                format!("{p}.embeddings.token_type_embeddings.weight"),
                vec![self.type_vocab_size, h],
            ),
            (format!("{p}.embeddings.LayerNorm.weight"), vec![h]),
            (format!("{p}.embeddings.LayerNorm.bias"), vec![h]),
        ];
        // A linear layer (`weight` [out, in]) or a LayerNorm (`weight` [dim]), each with a bias.
        let mut layer = |base: String, weight: Vec<usize>| {
            let out_dim = weight[0];
            out.push((format!("{base}.weight"), weight));
            out.push((format!("{base}.bias"), vec![out_dim]));
        };
        for l in 0..self.num_hidden_layers {
            let b = format!("{p}.encoder.layer.{l}");
            layer(format!("{b}.attention.self.query"), vec![h, h]);
            layer(format!("{b}.attention.self.key"), vec![h, h]);
            layer(format!("{b}.attention.self.value"), vec![h, h]);
            layer(format!("{b}.attention.output.dense"), vec![h, h]);
            layer(format!("{b}.attention.output.LayerNorm"), vec![h]);
            layer(format!("{b}.intermediate.dense"), vec![i, h]);
            layer(format!("{b}.output.dense"), vec![h, i]);
            layer(format!("{b}.output.LayerNorm"), vec![h]);
        }
        let (head, norm, bias, decoder) = match flavor {
            Flavor::Bert => (
                "cls.predictions.transform.dense",
                "cls.predictions.transform.LayerNorm",
                "cls.predictions.bias",
                "cls.predictions.decoder.weight",
            ),
            Flavor::Roberta => (
                "lm_head.dense",
                "lm_head.layer_norm",
                "lm_head.bias",
                "lm_head.decoder.weight",
            ),
        };
        layer(head.to_string(), vec![h, h]);
        layer(norm.to_string(), vec![h]);
        out.push((bias.to_string(), vec![v]));
        if !self.tie_word_embeddings {
            out.push((decoder.to_string(), vec![v, h]));
        }
        Ok(out)
    }

    /// Check the values this implementation relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, message: String| {
            Err(ModelError::Config {
                field: field.into(),
                message,
            })
        };
        for (field, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 {
                return bad(field, "must be positive".into());
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            );
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return bad(
                "layer_norm_eps",
                format!("must be a finite number > 0, got {}", self.layer_norm_eps),
            );
        }
        if let Some(p) = &self.position_embedding_type
            && p != "absolute"
        {
            return bad(
                "position_embedding_type",
                format!("`{p}` is not supported (only `absolute`)"),
            );
        }
        let flavor = self.flavor()?;
        if flavor == Flavor::Roberta && self.max_sequence_length()? == 0 {
            return bad(
                "max_position_embeddings",
                "leaves no usable position after the padding offset".into(),
            );
        }
        Ok(())
    }
}

/// `y = x Wᵀ + b` named `{base}.weight` / `{base}.bias`.
fn load_linear(ckpt: &mut Checkpoint, base: &str, out_dim: usize, in_dim: usize) -> Result<Linear> {
    ckpt.trainable_linear(&[""], base, (out_dim, in_dim), true)
}

/// LayerNorm over the last dimension; statistics in f32.
#[derive(Clone, Debug)]
struct LayerNorm {
    weight: Param,
    bias: Param,
    eps: f32,
}

impl LayerNorm {
    /// Registered as `{base}.weight` / `{base}.bias`; the file may call them `gamma` / `beta`.
    fn load(ckpt: &mut Checkpoint, base: &str, dim: usize, eps: f64) -> Result<Self> {
        let (w, g) = (format!("{base}.weight"), format!("{base}.gamma"));
        let (b, be) = (format!("{base}.bias"), format!("{base}.beta"));
        Ok(Self {
            weight: ckpt.trainable(&w, &[&w, &g], &[dim])?,
            bias: ckpt.trainable(&b, &[&b, &be], &[dim])?,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(
            &x.contiguous()?,
            &self.weight.value()?,
            &self.bias.value()?,
            self.eps,
        )?)
    }
}

#[derive(Clone, Debug)]
struct Embeddings {
    word: Param,
    position: Param,
    token_type: Param,
    norm: LayerNorm,
}

#[derive(Clone, Debug)]
struct Block {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
    /// Prefix tuning's keys and values (`{base}.attention.self.prefix_keys` / `_values`).
    prefix: Option<Prefix>,
}

impl Block {
    fn load(ckpt: &mut Checkpoint, cfg: &Config, base: &str) -> Result<Self> {
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        Ok(Self {
            query: load_linear(ckpt, &format!("{base}.attention.self.query"), h, h)?,
            key: load_linear(ckpt, &format!("{base}.attention.self.key"), h, h)?,
            value: load_linear(ckpt, &format!("{base}.attention.self.value"), h, h)?,
            attn_out: load_linear(ckpt, &format!("{base}.attention.output.dense"), h, h)?,
            attn_norm: LayerNorm::load(
                ckpt,
                &format!("{base}.attention.output.LayerNorm"),
                h,
                eps,
            )?,
            intermediate: load_linear(ckpt, &format!("{base}.intermediate.dense"), i, h)?,
            output: load_linear(ckpt, &format!("{base}.output.dense"), h, i)?,
            out_norm: LayerNorm::load(ckpt, &format!("{base}.output.LayerNorm"), h, eps)?,
            prefix: ckpt.prefix(&format!("{base}.attention.self"), h)?,
        })
    }

    /// `x`: [b, s, h]; `mask`: additive [b, 1, 1, s] in f32; `rows`: when given, the flat indices
    /// (into b·s) of the one query row per sequence to compute, and the result is [b, 1, h].
    /// With `capture`, the prefix is left out and the block's keys and values are pushed to it.
    fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        rows: Option<&Tensor>,
        heads: usize,
        act: Activation,
        capture: Option<&mut Capture>,
    ) -> Result<Tensor> {
        let (b, s, h) = x.dims3()?;
        let hd = h / heads;
        let xq = match rows {
            Some(r) => x
                .reshape((b * s, h))?
                .index_select(r, 0)?
                .reshape((b, 1, h))?,
            None => x.clone(),
        };
        let sq = xq.dim(1)?;
        let split = |t: Tensor, len: usize| -> Result<Tensor> {
            Ok(t.reshape((b, len, heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = split(self.query.forward(&xq)?, sq)?;
        let (k, v) = (self.key.forward(x)?, self.value.forward(x)?);
        let (k, v, mask) = match (capture, &self.prefix) {
            (Some(sink), _) => {
                // The first sequence's, `[s, h]` (the capture runs one sequence).
                sink.push((k.get(0)?, v.get(0)?));
                (split(k, s)?, split(v, s)?, mask.clone())
            }
            (None, Some(prefix)) => {
                let (k, v) = prefix.prepend(&split(k, s)?, &split(v, s)?)?;
                (k, v, prefix.widen_mask(mask)?)
            }
            (None, None) => (split(k, s)?, split(v, s)?, mask.clone()),
        };
        let dtype = x.dtype();
        let scores = q.matmul(&k.t()?)?.to_dtype(DType::F32)?;
        let scores = (scores * (1.0 / (hd as f64).sqrt()))?.broadcast_add(&mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, sq, h))?;
        let attn = self
            .attn_norm
            .forward(&(self.attn_out.forward(&ctx)? + &xq)?)?;
        let inner = act.apply(&self.intermediate.forward(&attn)?)?;
        self.out_norm
            .forward(&(self.output.forward(&inner)? + &attn)?)
    }
}

#[derive(Clone, Debug)]
struct MlmHead {
    dense: Linear,
    norm: LayerNorm,
    act: Activation,
    decoder: Param,
    bias: Param,
}

/// A BERT or RoBERTa encoder with its masked-LM head.
///
/// Inputs are `input_ids` [batch, seq] (u32) and `attention_mask` [batch, seq] (1 for real tokens,
/// 0 for padding; any numeric dtype); token-type ids are all 0.
#[derive(Clone, Debug)]
pub struct MaskedLm {
    cfg: Config,
    flavor: Flavor,
    pad_id: u32,
    dtype: DType,
    embeddings: Embeddings,
    blocks: Vec<Block>,
    head: MlmHead,
}

impl MaskedLm {
    /// Build the model from `checkpoint`, registering every weight as trainable. The flavor follows
    /// `cfg.model_type`.
    pub fn new(cfg: &Config, checkpoint: &mut Checkpoint) -> Result<Self> {
        cfg.validate()?;
        let flavor = cfg.flavor()?;
        let (h, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        let p = flavor.encoder_prefix();
        let word_name = format!("{p}.embeddings.word_embeddings.weight");
        let pos_name = format!("{p}.embeddings.position_embeddings.weight");
        let tt_name = format!("{p}.embeddings.token_type_embeddings.weight");
        let word = checkpoint.trainable_table(&word_name, &[&word_name], &[cfg.vocab_size, h])?;
        let position = checkpoint.trainable_table(
            &pos_name,
            &[&pos_name],
            &[cfg.max_position_embeddings, h],
        )?;
        let token_type =
            checkpoint.trainable_table(&tt_name, &[&tt_name], &[cfg.type_vocab_size, h])?;
        let norm = LayerNorm::load(checkpoint, &format!("{p}.embeddings.LayerNorm"), h, eps)?;
        let embeddings = Embeddings {
            word,
            position,
            token_type,
            norm,
        };
        let blocks = (0..cfg.num_hidden_layers)
            .map(|i| Block::load(checkpoint, cfg, &format!("{p}.encoder.layer.{i}")))
            .collect::<Result<Vec<_>>>()?;
        let (dense, norm, act, decoder_name, bias_names) = match flavor {
            Flavor::Bert => (
                load_linear(checkpoint, "cls.predictions.transform.dense", h, h)?,
                LayerNorm::load(checkpoint, "cls.predictions.transform.LayerNorm", h, eps)?,
                cfg.hidden_act,
                "cls.predictions.decoder.weight",
                ["cls.predictions.bias", "cls.predictions.decoder.bias"],
            ),
            Flavor::Roberta => (
                load_linear(checkpoint, "lm_head.dense", h, h)?,
                LayerNorm::load(checkpoint, "lm_head.layer_norm", h, eps)?,
                // transformers' RobertaLMHead applies the exact GELU whatever `hidden_act` says.
                Activation::Gelu,
                "lm_head.decoder.weight",
                ["lm_head.bias", "lm_head.decoder.bias"],
            ),
        };
        let decoder = if cfg.tie_word_embeddings {
            embeddings.word.clone()
        } else {
            checkpoint.trainable_table(decoder_name, &[decoder_name], &[cfg.vocab_size, h])?
        };
        let bias = checkpoint.trainable_table(bias_names[0], &bias_names, &[cfg.vocab_size])?;
        let head = MlmHead {
            dense,
            norm,
            act,
            decoder,
            bias,
        };
        let model = Self {
            cfg: cfg.clone(),
            flavor,
            pad_id: cfg.pad_id()?,
            dtype: DType::F32,
            embeddings,
            blocks,
            head,
        };
        if let Some(tokens) = checkpoint.prefix_init_tokens(cfg.vocab_size) {
            model.init_prefixes(&tokens)?;
        }
        Ok(model)
    }

    /// Set every block's prefix to the keys and values of `tokens` run through the model without
    /// prefixes (MeZO's initialisation from real activations).
    fn init_prefixes(&self, tokens: &[u32]) -> Result<()> {
        crate::causal::init_prefixes(
            tokens,
            |ids, mask, sink| self.encode_with(ids, mask, None, Some(sink)).map(|_| ()),
            self.blocks.iter().map(|b| b.prefix.as_ref()),
        )
    }

    /// Load `config.json` and the safetensors weights of a local Hugging Face folder in `precision`;
    /// returns the model and its trainable weights (the checkpoint's other tensors are dropped).
    /// `load` is a [`Precision`](crate::Precision) or a [`Load`](crate::adapters::Load) (precision and adapters).
    pub fn from_folder(
        dir: impl AsRef<Path>,
        load: impl Into<crate::adapters::Load>,
    ) -> Result<(Self, Weights)> {
        crate::loading::load_hf_folder(dir.as_ref(), load, |p| Config::from_file(p), Self::new)
    }

    /// A model with random weights: matrices ~ N(0, 0.02²), LayerNorm weights 1, biases 0, drawn
    /// from `zo-sampler` streams keyed by `seed` and each tensor's name. For tests and benchmarks.
    /// `load` is a [`Precision`](crate::Precision) or a [`Load`](crate::adapters::Load).
    pub fn random(
        cfg: &Config,
        load: impl Into<crate::adapters::Load>,
        seed: u64,
    ) -> Result<(Self, Weights)> {
        cfg.validate()?;
        let key = zo_sampler::DirectionKey::new(seed, u64::MAX, u32::MAX);
        let mut tensors = std::collections::HashMap::new();
        for (name, shape) in cfg.tensor_shapes()? {
            let n: usize = shape.iter().product();
            let values = if shape.len() == 1 {
                let one = name.ends_with("LayerNorm.weight") || name.ends_with("layer_norm.weight");
                vec![if one { 1.0f32 } else { 0.0 }; n]
            } else {
                let stream = key.stream(
                    zo_sampler::TensorId::from_name(&name),
                    zo_sampler::Distribution::Normal,
                );
                let mut v = vec![0.0f32; n];
                stream.fill(0, &mut v);
                v.iter_mut().for_each(|x| *x *= 0.02);
                v
            };
            tensors.insert(name, Tensor::from_vec(values, shape, &Device::Cpu)?);
        }
        let mut checkpoint =
            Checkpoint::from_tensors("<random>".into(), tensors, load).validated()?;
        let model = Self::new(cfg, &mut checkpoint)?;
        Ok((model, checkpoint.into_weights()?))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// BERT or RoBERTa.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The padding id (RoBERTa's positions depend on it).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The dtype of the hidden states: f32 (weights stored in bf16 or f16 are widened as they are
    /// read).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The longest sequence the position table allows.
    pub fn max_sequence_length(&self) -> usize {
        // Validated at construction.
        self.cfg
            .max_sequence_length()
            .unwrap_or(self.cfg.max_position_embeddings)
    }

    /// Check the inputs and return (batch, seq).
    fn check_inputs(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<(usize, usize)> {
        let dims = input_ids.dims();
        if dims.len() != 2 || dims[0] == 0 || dims[1] == 0 {
            return Err(ModelError::Shape {
                name: "input_ids".into(),
                expected: vec![
                    dims.first().copied().unwrap_or(1).max(1),
                    dims.get(1).copied().unwrap_or(1).max(1),
                ],
                found: dims.to_vec(),
            });
        }
        if attention_mask.dims() != dims {
            return Err(ModelError::Shape {
                name: "attention_mask".into(),
                expected: dims.to_vec(),
                found: attention_mask.dims().to_vec(),
            });
        }
        if input_ids.dtype() != DType::U32 {
            return Err(ModelError::Config {
                field: "input_ids".into(),
                message: format!("expected u32 token ids, got {:?}", input_ids.dtype()),
            });
        }
        let (b, s) = (dims[0], dims[1]);
        let max_len = self.max_sequence_length();
        if s > max_len {
            return Err(ModelError::Config {
                field: "input_ids".into(),
                message: format!("sequence length {s} exceeds the model's {max_len} positions"),
            });
        }
        let max_id = input_ids.flatten_all()?.max(0)?.to_scalar::<u32>()?;
        if max_id as usize >= self.cfg.vocab_size {
            return Err(ModelError::Config {
                field: "input_ids".into(),
                message: format!(
                    "token id {max_id} is outside the vocabulary of {}",
                    self.cfg.vocab_size
                ),
            });
        }
        Ok((b, s))
    }

    /// Position ids [b, s] (u32) of the flavor.
    fn positions(&self, input_ids: &Tensor, b: usize, s: usize) -> Result<Tensor> {
        match self.flavor {
            Flavor::Bert => {
                let row = Tensor::arange(0u32, s as u32, &Device::Cpu)?;
                Ok(row.unsqueeze(0)?.broadcast_as((b, s))?.contiguous()?)
            }
            Flavor::Roberta => {
                let pad = self.pad_id;
                let ids = input_ids.to_vec2::<u32>()?;
                let mut pos = Vec::with_capacity(b * s);
                for row in &ids {
                    let mut n = 0u32;
                    for &id in row {
                        if id == pad {
                            pos.push(pad);
                        } else {
                            n += 1;
                            pos.push(pad + n);
                        }
                    }
                }
                Ok(Tensor::from_vec(pos, (b, s), &Device::Cpu)?)
            }
        }
    }

    fn embed(&self, input_ids: &Tensor, b: usize, s: usize) -> Result<Tensor> {
        let h = self.cfg.hidden_size;
        let e = &self.embeddings;
        let ids = input_ids.flatten_all()?.to_vec1::<u32>()?;
        let words = e.word.gather(&ids)?.reshape((b, s, h))?;
        let pos = self
            .positions(input_ids, b, s)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        let positions = e.position.gather(&pos)?.reshape((b, s, h))?;
        let token_type = e.token_type.gather(&[0])?.reshape((1, 1, h))?;
        let x = (words + positions)?.broadcast_add(&token_type)?;
        e.norm.forward(&x)
    }

    /// Additive attention mask [b, 1, 1, s] in f32: 0 on real keys, `f32::MIN` on padding.
    fn additive_mask(attention_mask: &Tensor, b: usize, s: usize) -> Result<Tensor> {
        let m = attention_mask.to_dtype(DType::F32)?.reshape((b, 1, 1, s))?;
        Ok(((1.0 - m)? * f64::from(f32::MIN))?)
    }

    /// Run the encoder. With `rows`, the last block computes only those query rows.
    fn encode(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        rows: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.encode_with(input_ids, attention_mask, rows, None)
    }

    /// [`encode`](Self::encode); with `capture`, without prefixes, collecting each block's keys
    /// and values.
    fn encode_with(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        rows: Option<&Tensor>,
        mut capture: Option<&mut Capture>,
    ) -> Result<Tensor> {
        let (b, s) = self.check_inputs(input_ids, attention_mask)?;
        let mask = Self::additive_mask(attention_mask, b, s)?;
        let heads = self.cfg.num_attention_heads;
        let mut x = self.embed(input_ids, b, s)?;
        let last = self.blocks.len().saturating_sub(1);
        for (i, block) in self.blocks.iter().enumerate() {
            let r = if i == last { rows } else { None };
            x = block.forward(
                &x,
                &mask,
                r,
                heads,
                self.cfg.hidden_act,
                capture.as_deref_mut(),
            )?;
        }
        if self.blocks.is_empty()
            && let Some(r) = rows
        {
            let h = self.cfg.hidden_size;
            x = x
                .reshape((b * s, h))?
                .index_select(r, 0)?
                .reshape((b, 1, h))?;
        }
        Ok(x)
    }

    /// The last block's hidden states [batch, seq, hidden] (what feeds the MLM head), in the
    /// working dtype.
    pub fn forward_hidden(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        self.encode(input_ids, attention_mask, None)
    }

    /// Full-vocabulary logits [batch, seq, vocab] in f32, as `…ForMaskedLM` computes them.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let hidden = self.forward_hidden(input_ids, attention_mask)?;
        self.head(&hidden, None)
    }

    /// The MLM head on hidden states [.., hidden]: logits [.., vocab] in f32, or only the columns
    /// of `vocab_ids` (in that order) when given.
    pub fn head(&self, hidden: &Tensor, vocab_ids: Option<&[u32]>) -> Result<Tensor> {
        let width = self.cfg.hidden_size;
        if hidden.dims().last() != Some(&width) {
            let mut expected = hidden.dims().to_vec();
            match expected.last_mut() {
                Some(last) => *last = width,
                None => expected.push(width),
            }
            return Err(ModelError::Shape {
                name: "hidden".into(),
                expected,
                found: hidden.dims().to_vec(),
            });
        }
        let hd = &self.head;
        let x = hd
            .norm
            .forward(&hd.act.apply(&hd.dense.forward(hidden)?)?)?;
        let dims = x.dims().to_vec();
        let h = dims[dims.len() - 1];
        let rows = x.elem_count() / h.max(1);
        let x2 = x.reshape((rows, h))?;
        let (logits, width) = match vocab_ids {
            None => (
                hd.decoder.linear(&x2)?.broadcast_add(&hd.bias.value()?)?,
                self.cfg.vocab_size,
            ),
            Some(ids) => {
                if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.cfg.vocab_size) {
                    return Err(ModelError::Config {
                        field: "vocab_ids".into(),
                        message: format!(
                            "token id {bad} is outside the vocabulary of {}",
                            self.cfg.vocab_size
                        ),
                    });
                }
                let decoder = hd.decoder.gather(ids)?;
                let bias = hd.bias.gather(ids)?.flatten_all()?;
                (x2.matmul(&decoder.t()?)?.broadcast_add(&bias)?, ids.len())
            }
        };
        let mut shape = dims[..dims.len() - 1].to_vec();
        shape.push(width);
        Ok(logits.reshape(shape)?.to_dtype(DType::F32)?)
    }

    /// The rows of each table that a forward of `input_ids` [batch, seq] reads when the head
    /// computes only the vocabulary rows `vocab_ids` (all of them with `None`), for row-sparse
    /// directions: the word embeddings' rows of the batch's tokens (padding included), the
    /// position rows used, token type 0, and the head's decoder and bias rows of `vocab_ids` (a
    /// tied decoder adds them to the word embeddings' rows). A table the forward reads whole (the
    /// head without `vocab_ids`) is not restricted. On any gradient of a loss of these logits,
    /// every other row of these tables is zero.
    pub fn rows_read(&self, input_ids: &Tensor, vocab_ids: Option<&[u32]>) -> Result<RowSupport> {
        let dims = input_ids.dims();
        let [b, s] = dims else {
            return Err(ModelError::Shape {
                name: "input_ids".into(),
                expected: vec![0, 0],
                found: dims.to_vec(),
            });
        };
        let (b, s) = (*b, *s);
        let e = &self.embeddings;
        let hd = &self.head;
        let mut support = RowSupport::new();
        let mut add = |p: &Param, rows: &[u32]| {
            support
                .entry(p.name().to_string())
                .or_default()
                .extend_from_slice(rows);
        };
        let ids = input_ids.flatten_all()?.to_vec1::<u32>()?;
        let positions = self
            .positions(input_ids, b, s)?
            .flatten_all()?
            .to_vec1::<u32>()?;
        add(&e.word, &ids);
        add(&e.position, &positions);
        add(&e.token_type, &[0]);
        match vocab_ids {
            Some(v) => {
                add(&hd.decoder, v);
                add(&hd.bias, v);
            }
            None => {
                // The head reads every vocabulary row (and a tied decoder is the word table).
                support.remove(hd.decoder.name());
                support.remove(hd.bias.name());
            }
        }
        for rows in support.values_mut() {
            rows.sort_unstable();
            rows.dedup();
        }
        Ok(support)
    }

    /// Logits at one position per sequence (`positions[i]` for row `i`, e.g. the mask slot):
    /// [batch, vocab] in f32, or [batch, vocab_ids.len()] when `vocab_ids` is given. The last block
    /// computes only those query rows and the head only those vocabulary rows, which makes
    /// prompt classification several times cheaper than [`forward`](Self::forward).
    pub fn logits_at(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        positions: &[usize],
        vocab_ids: Option<&[u32]>,
    ) -> Result<Tensor> {
        let (b, s) = self.check_inputs(input_ids, attention_mask)?;
        if positions.len() != b {
            return Err(ModelError::Shape {
                name: "positions".into(),
                expected: vec![b],
                found: vec![positions.len()],
            });
        }
        if let Some(&p) = positions.iter().find(|&&p| p >= s) {
            return Err(ModelError::Config {
                field: "positions".into(),
                message: format!("position {p} is outside sequences of length {s}"),
            });
        }
        let flat: Vec<u32> = positions
            .iter()
            .enumerate()
            .map(|(i, &p)| (i * s + p) as u32)
            .collect();
        let rows = Tensor::new(flat.as_slice(), &Device::Cpu)?;
        let hidden = self.encode(input_ids, attention_mask, Some(&rows))?;
        let logits = self.head(&hidden, vocab_ids)?;
        Ok(logits.squeeze(1)?)
    }
}
