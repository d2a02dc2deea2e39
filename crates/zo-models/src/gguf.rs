//! Llama-architecture models from GGUF files (llama.cpp's format): tensors dequantised to the
//! working precision, the model configuration and the tokenizer read from the metadata.
//!
//! llama.cpp stores the query and key projections with their rows in the interleaved RoPE layout;
//! they are reordered at load time ([`unpermute_rope_rows`]) so that the Hugging Face
//! `rotate_half` RoPE of [`Llama`] applies. Tensors are renamed to Hugging Face names
//! (`blk.N.attn_q.weight` → `model.layers.N.self_attn.q_proj.weight`, …), which are also the names
//! the trainable weights are registered under.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use tokenizers::Tokenizer;

use crate::error::{ModelError, Result};
use crate::llama::{Llama, LlamaConfig, unpermute_rope_rows};
use crate::loading::Checkpoint;
use crate::weights::Weights;

/// A model loaded from a GGUF file.
#[derive(Debug)]
pub struct GgufModel {
    /// The configuration derived from the metadata.
    pub config: LlamaConfig,
    /// The model.
    pub model: Llama,
    /// Its trainable weights (Hugging Face names).
    pub weights: Weights,
    /// The tokenizer built from the metadata (`tokenizer.ggml.model = "gpt2"`, byte-level BPE);
    /// `None` for other tokenizer kinds.
    pub tokenizer: Option<Tokenizer>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_token_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`: whether prompts should start with BOS.
    pub add_bos_token: bool,
}

/// The tokenizer of a GGUF file, read from its metadata only (no tensors).
#[derive(Debug)]
pub struct GgufTokenizer {
    /// The tokenizer built from the metadata (`tokenizer.ggml.model = "gpt2"`, byte-level BPE);
    /// `None` for other tokenizer kinds.
    pub tokenizer: Option<Tokenizer>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`: whether prompts should start with BOS.
    pub add_bos_token: bool,
}

/// Read the tokenizer of a GGUF file (the same one [`load_gguf`] returns) without its tensors.
pub fn load_gguf_tokenizer(path: &Path) -> Result<GgufTokenizer> {
    if !path.exists() {
        return Err(ModelError::not_found(path, "GGUF file not found"));
    }
    let (_, content) = open_gguf(path)?;
    let meta = Meta {
        path,
        content: &content,
    };
    tokenizer_of(&meta)
}

fn tokenizer_of(meta: &Meta<'_>) -> Result<GgufTokenizer> {
    let tokenizer = match (
        meta.string("tokenizer.ggml.model"),
        meta.strings("tokenizer.ggml.tokens"),
    ) {
        (Ok("gpt2"), Ok(tokens)) => Some(byte_level_bpe(meta, &tokens)?),
        _ => None,
    };
    let add_bos_token = meta
        .content
        .metadata
        .get("tokenizer.ggml.add_bos_token")
        .and_then(|v| v.to_bool().ok())
        .unwrap_or(false);
    Ok(GgufTokenizer {
        tokenizer,
        bos_token_id: meta.opt_u32("tokenizer.ggml.bos_token_id"),
        add_bos_token,
    })
}

struct Meta<'a> {
    path: &'a Path,
    content: &'a Content,
}

impl Meta<'_> {
    fn malformed(&self, message: String) -> ModelError {
        ModelError::Malformed {
            path: self.path.to_path_buf(),
            message,
        }
    }

    fn get(&self, key: &str) -> Result<&Value> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| self.malformed(format!("missing metadata `{key}`")))
    }

    fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key)?;
        let n = v
            .to_u64()
            .or_else(|_| v.to_u32().map(u64::from))
            .or_else(|_| v.to_i32().map(|x| x.max(0) as u64))
            .or_else(|_| v.to_i64().map(|x| x.max(0) as u64))
            .map_err(|_| self.malformed(format!("metadata `{key}` is not an integer")))?;
        Ok(n as usize)
    }

    fn opt_u32(&self, key: &str) -> Option<u32> {
        self.content.metadata.get(key).and_then(|v| v.to_u32().ok())
    }

    fn f64(&self, key: &str) -> Result<f64> {
        let v = self.get(key)?;
        v.to_f32()
            .map(f64::from)
            .or_else(|_| v.to_f64())
            .map_err(|_| self.malformed(format!("metadata `{key}` is not a float")))
    }

    fn string(&self, key: &str) -> Result<&str> {
        self.get(key)?
            .to_string()
            .map(String::as_str)
            .map_err(|_| self.malformed(format!("metadata `{key}` is not a string")))
    }

    fn strings(&self, key: &str) -> Result<Vec<&str>> {
        let list = self
            .get(key)?
            .to_vec()
            .map_err(|_| self.malformed(format!("metadata `{key}` is not an array")))?;
        list.iter()
            .map(|v| {
                v.to_string()
                    .map(String::as_str)
                    .map_err(|_| self.malformed(format!("metadata `{key}` holds a non-string")))
            })
            .collect()
    }
}

/// The Hugging Face name of a GGUF tensor (Llama architecture), if it is one the model uses.
fn hf_name(gguf: &str) -> Option<String> {
    Some(match gguf {
        "token_embd.weight" => "model.embed_tokens.weight".into(),
        "output_norm.weight" => "model.norm.weight".into(),
        "output.weight" => "lm_head.weight".into(),
        _ => {
            let rest = gguf.strip_prefix("blk.")?;
            let (layer, tail) = rest.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            let (part, kind) = tail.rsplit_once('.')?;
            let hf = match part {
                "attn_norm" => "input_layernorm",
                "ffn_norm" => "post_attention_layernorm",
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_output" => "self_attn.o_proj",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                _ => return None,
            };
            format!("model.layers.{layer}.{hf}.{kind}")
        }
    })
}

/// Open a GGUF file and read its header, metadata and tensor directory.
fn open_gguf(path: &Path) -> Result<(BufReader<File>, Content)> {
    let file = File::open(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader).map_err(|e| ModelError::Malformed {
        path: path.to_path_buf(),
        message: format!("not a readable GGUF file: {e}"),
    })?;
    Ok((reader, content))
}

/// Load a Llama-architecture GGUF file (e.g. SmolLM2), dequantising every tensor to `precision`.
/// `load` is a [`Precision`](crate::Precision) or a [`Load`](crate::adapters::Load) (precision and adapters).
pub fn load_gguf(path: &Path, load: impl Into<crate::adapters::Load>) -> Result<GgufModel> {
    let load = load.into();
    load.peft.validate()?;
    let precision = load.precision;
    if !path.exists() {
        return Err(ModelError::not_found(path, "GGUF file not found"));
    }
    let (mut reader, content) = open_gguf(path)?;
    let meta = Meta {
        path,
        content: &content,
    };
    let arch = meta.string("general.architecture")?.to_string();
    if arch != "llama" {
        return Err(ModelError::Config {
            field: "general.architecture".into(),
            message: format!(
                "{}: unsupported architecture `{arch}` (only `llama`)",
                path.display()
            ),
        });
    }
    let k = |s: &str| format!("{arch}.{s}");
    let heads = meta.usize(&k("attention.head_count"))?;
    let kv_heads = match meta.content.metadata.get(&k("attention.head_count_kv")) {
        Some(_) => meta.usize(&k("attention.head_count_kv"))?,
        None => heads,
    };
    let hidden = meta.usize(&k("embedding_length"))?;
    let tokens = meta.strings("tokenizer.ggml.tokens").ok();
    let vocab_size = match meta.content.metadata.get(&k("vocab_size")) {
        Some(_) => meta.usize(&k("vocab_size"))?,
        None => tokens
            .as_ref()
            .map(Vec::len)
            .ok_or_else(|| meta.malformed("no vocabulary size in the metadata".into()))?,
    };
    let theta = match meta.content.metadata.get(&k("rope.freq_base")) {
        Some(_) => meta.f64(&k("rope.freq_base"))?,
        None => 10_000.0,
    };
    let head_dim = match meta.content.metadata.get(&k("rope.dimension_count")) {
        Some(_) => meta.usize(&k("rope.dimension_count"))?,
        None => hidden / heads.max(1),
    };
    let tie = !content.tensor_infos.contains_key("output.weight");
    let config = LlamaConfig {
        vocab_size,
        hidden_size: hidden,
        intermediate_size: meta.usize(&k("feed_forward_length"))?,
        num_hidden_layers: meta.usize(&k("block_count"))?,
        num_attention_heads: heads,
        num_key_value_heads: Some(kv_heads),
        head_dim: Some(head_dim),
        rms_norm_eps: meta.f64(&k("attention.layer_norm_rms_epsilon"))?,
        rope_theta: Some(theta),
        rope_parameters: None,
        rope_scaling: None,
        max_position_embeddings: meta.usize(&k("context_length")).unwrap_or(4096),
        tie_word_embeddings: tie,
        sliding_window: None,
        hidden_act: "silu".into(),
        attention_bias: false,
        mlp_bias: false,
        model_type: Some("llama".into()),
        bos_token_id: meta.opt_u32("tokenizer.ggml.bos_token_id"),
        eos_token_id: meta
            .opt_u32("tokenizer.ggml.eos_token_id")
            .map(serde_json::Value::from),
    };
    config.validate()?;

    let dtype = precision.dtype();
    let mut tensors = HashMap::new();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let Some(hf) = hf_name(name) else { continue };
        let mut t = dequantized(&mut reader, &content, path, name)?;
        if hf.ends_with("q_proj.weight") {
            t = unpermute_rope_rows(&t, heads)?;
        } else if hf.ends_with("k_proj.weight") {
            t = unpermute_rope_rows(&t, kv_heads)?;
        }
        tensors.insert(hf, t.to_dtype(dtype)?);
    }
    let mut ckpt = Checkpoint::from_tensors(PathBuf::from(path), tensors, load.clone());
    let model = Llama::new(&config, &mut ckpt)?;
    let weights = ckpt.into_weights()?;

    let tok = tokenizer_of(&meta)?;
    Ok(GgufModel {
        bos_token_id: config.bos_token_id,
        eos_token_id: meta.opt_u32("tokenizer.ggml.eos_token_id"),
        config,
        model,
        weights,
        tokenizer: tok.tokenizer,
        add_bos_token: tok.add_bos_token,
    })
}

/// A byte-level BPE tokenizer (GPT-2 style) from the GGUF vocabulary and merges.
fn byte_level_bpe(meta: &Meta<'_>, tokens: &[&str]) -> Result<Tokenizer> {
    let merges = meta.strings("tokenizer.ggml.merges")?;
    let types: Vec<i64> = match meta.content.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(|_| {
                meta.malformed("metadata `tokenizer.ggml.token_type` is not an array".into())
            })?
            .iter()
            .map(|t| t.to_i32().map(i64::from).unwrap_or(1))
            .collect(),
        None => vec![1; tokens.len()],
    };
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        vocab.insert((*tok).to_string(), serde_json::Value::from(id));
        // 3 = control, 4 = user-defined: matched as whole tokens before BPE.
        let ty = types.get(id).copied().unwrap_or(1);
        if ty == 3 || ty == 4 {
            added.push(serde_json::json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": ty == 3,
            }));
        }
    }
    let byte_level = serde_json::json!({
        "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true,
    });
    let pre = match meta.string("tokenizer.ggml.pre") {
        // SmolLM's tokenizer splits digits one by one before the byte-level split.
        Ok("smollm") => serde_json::json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level],
        }),
        _ => byte_level.clone(),
    };
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre,
        "post_processor": null,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    });
    let bytes = serde_json::to_vec(&json).map_err(|e| meta.malformed(format!("tokenizer: {e}")))?;
    Tokenizer::from_bytes(bytes)
        .map_err(|e| meta.malformed(format!("tokenizer from the metadata: {e}")))
}

/// Dequantise one tensor of a GGUF file to f32 (for inspection).
pub fn read_gguf_tensor(path: &Path, name: &str) -> Result<Tensor> {
    let (mut reader, content) = open_gguf(path)?;
    if !content.tensor_infos.contains_key(name) {
        return Err(ModelError::MissingTensor {
            name: name.into(),
            path: path.to_path_buf(),
        });
    }
    dequantized(&mut reader, &content, path, name)
}

/// The tensor `name` of the GGUF file at `path` (read through `reader`), dequantised to f32.
fn dequantized(
    reader: &mut BufReader<File>,
    content: &Content,
    path: &Path,
    name: &str,
) -> Result<Tensor> {
    let malformed = |e: candle_core::Error| ModelError::Malformed {
        path: path.to_path_buf(),
        message: format!("tensor `{name}`: {e}"),
    };
    content
        .tensor(reader, name, &Device::Cpu)
        .map_err(malformed)?
        .dequantize(&Device::Cpu)
        .map_err(malformed)
}
