//! Llama models in llama2.c's `.bin` format (e.g. stories260K) and llama2.c's `tokenizer.bin`
//! format (e.g. `tok512.bin`).
//!
//! The model file is a header of seven little-endian `i32` (`dim`, `hidden_dim`, `n_layers`,
//! `n_heads`, `n_kv_heads`, `vocab_size`, `seq_len`; a negative `vocab_size` means an untied
//! classifier follows the other arrays), then f32 arrays: token embeddings, attention RMSNorm
//! weights, `wq`, `wk`, `wv`, `wo`, FFN RMSNorm weights, `w1` (gate), `w2` (down), `w3` (up), the
//! final RMSNorm weight, two RoPE tables (unused here: recomputed), and the classifier if untied.
//! llama2.c rotates adjacent pairs `(2i, 2i+1)`; the query/key rows are reordered at load time so
//! that the `rotate_half` RoPE of [`Llama`] applies. RMSNorm epsilon 1e-5, RoPE θ = 10000.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};
use crate::llama::{Llama, LlamaConfig, unpermute_rope_rows};
use crate::loading::Checkpoint;
use crate::weights::Weights;

/// llama2.c's beginning-of-sequence token.
pub const LLAMA2C_BOS: u32 = 1;
/// llama2.c's end-of-sequence token.
pub const LLAMA2C_EOS: u32 = 2;

/// The header of a llama2.c model file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Llama2cHeader {
    /// Model width.
    pub dim: usize,
    /// MLP width.
    pub hidden_dim: usize,
    /// Number of layers.
    pub n_layers: usize,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads.
    pub n_kv_heads: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Whether the classifier is the token embedding matrix.
    pub shared_classifier: bool,
    /// Maximum sequence length.
    pub seq_len: usize,
}

impl Llama2cHeader {
    /// The number of f32 values after the header (saturating at `usize::MAX` for absurd headers).
    pub fn num_floats(&self) -> usize {
        let w = |x: usize| x as u128;
        let (d, h, l, v) = (
            w(self.dim),
            w(self.hidden_dim),
            w(self.n_layers),
            w(self.vocab_size),
        );
        let hd = d / w(self.n_heads.max(1));
        let kv = w(self.n_kv_heads) * hd;
        let classifier = if self.shared_classifier { 0 } else { v * d };
        let n = v * d
            + 2 * l * d
            + 2 * l * d * d
            + 2 * l * kv * d
            + 3 * l * h * d
            + d
            + w(self.seq_len) * hd
            + classifier;
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    /// The equivalent [`LlamaConfig`].
    pub fn config(&self) -> LlamaConfig {
        LlamaConfig {
            vocab_size: self.vocab_size,
            hidden_size: self.dim,
            intermediate_size: self.hidden_dim,
            num_hidden_layers: self.n_layers,
            num_attention_heads: self.n_heads,
            num_key_value_heads: Some(self.n_kv_heads),
            head_dim: Some(self.dim / self.n_heads.max(1)),
            rms_norm_eps: 1e-5,
            rope_theta: Some(10_000.0),
            rope_parameters: None,
            rope_scaling: None,
            max_position_embeddings: self.seq_len,
            tie_word_embeddings: self.shared_classifier,
            sliding_window: None,
            hidden_act: "silu".into(),
            attention_bias: false,
            mlp_bias: false,
            model_type: Some("llama".into()),
            bos_token_id: Some(LLAMA2C_BOS),
            eos_token_id: Some(serde_json::Value::from(LLAMA2C_EOS)),
        }
    }
}

/// A model loaded from a llama2.c file.
#[derive(Debug)]
pub struct Llama2cModel {
    /// The header.
    pub header: Llama2cHeader,
    /// The equivalent configuration.
    pub config: LlamaConfig,
    /// The model.
    pub model: Llama,
    /// Its trainable weights (Hugging Face names).
    pub weights: Weights,
}

fn malformed(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Malformed {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn i32_at(bytes: &[u8], at: usize) -> Option<i32> {
    bytes
        .get(at..at + 4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parse and check the header of a llama2.c model file.
pub fn read_header(path: &Path, bytes: &[u8]) -> Result<Llama2cHeader> {
    let mut v = [0i32; 7];
    for (i, x) in v.iter_mut().enumerate() {
        *x = i32_at(bytes, 4 * i)
            .ok_or_else(|| malformed(path, "file shorter than the 28-byte llama2.c header"))?;
    }
    let [dim, hidden, layers, heads, kv_heads, vocab, seq] = v;
    if [dim, hidden, layers, heads, kv_heads, seq]
        .iter()
        .any(|&x| x <= 0)
        || vocab == 0
    {
        return Err(malformed(path, format!("invalid llama2.c header {v:?}")));
    }
    let big = 1 << 24;
    if [dim, hidden, layers, heads, kv_heads, vocab.abs(), seq]
        .iter()
        .any(|&x| x > big)
    {
        return Err(malformed(
            path,
            format!("implausible llama2.c header {v:?}"),
        ));
    }
    if dim % heads != 0 || heads % kv_heads != 0 || (dim / heads) % 2 != 0 {
        return Err(malformed(
            path,
            format!("inconsistent heads in llama2.c header {v:?}"),
        ));
    }
    Ok(Llama2cHeader {
        dim: dim as usize,
        hidden_dim: hidden as usize,
        n_layers: layers as usize,
        n_heads: heads as usize,
        n_kv_heads: kv_heads as usize,
        vocab_size: vocab.unsigned_abs() as usize,
        shared_classifier: vocab > 0,
        seq_len: seq as usize,
    })
}

/// Load a llama2.c model file, converting its weights to `precision`.
/// `load` is a [`Precision`](crate::Precision) or a [`Load`](crate::adapters::Load) (precision and adapters).
pub fn load_llama2c(path: &Path, load: impl Into<crate::adapters::Load>) -> Result<Llama2cModel> {
    let load = load.into();
    load.peft.validate()?;
    let bytes = read_file(path)?;
    let header = read_header(path, &bytes)?;
    let need = header.num_floats().saturating_mul(4).saturating_add(28);
    if bytes.len() < need {
        return Err(malformed(
            path,
            format!(
                "truncated llama2.c file: the header needs {need} bytes, the file has {}",
                bytes.len()
            ),
        ));
    }
    let floats: Vec<f32> = bytes[28..need]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let (d, h, l, v) = (
        header.dim,
        header.hidden_dim,
        header.n_layers,
        header.vocab_size,
    );
    let hd = d / header.n_heads;
    let kv = header.n_kv_heads * hd;
    let mut at = 0usize;
    let mut take = |n: usize, shape: &[usize]| -> Result<Tensor> {
        let t = Tensor::from_slice(&floats[at..at + n], shape, &Device::Cpu)?;
        at += n;
        Ok(t)
    };
    let emb = take(v * d, &[v, d])?;
    let rms_att = take(l * d, &[l, d])?;
    let wq = take(l * d * d, &[l, d, d])?;
    let wk = take(l * kv * d, &[l, kv, d])?;
    let wv = take(l * kv * d, &[l, kv, d])?;
    let wo = take(l * d * d, &[l, d, d])?;
    let rms_ffn = take(l * d, &[l, d])?;
    let w1 = take(l * h * d, &[l, h, d])?;
    let w2 = take(l * d * h, &[l, d, h])?;
    let w3 = take(l * h * d, &[l, h, d])?;
    let rms_final = take(d, &[d])?;
    let _freq_tables = take(header.seq_len * hd, &[header.seq_len * hd])?;
    let wcls = if header.shared_classifier {
        None
    } else {
        Some(take(v * d, &[v, d])?)
    };

    let mut tensors = HashMap::new();
    tensors.insert("model.embed_tokens.weight".to_string(), emb);
    tensors.insert("model.norm.weight".to_string(), rms_final);
    if let Some(w) = wcls {
        tensors.insert("lm_head.weight".to_string(), w);
    }
    for i in 0..l {
        let p = format!("model.layers.{i}");
        tensors.insert(format!("{p}.input_layernorm.weight"), rms_att.get(i)?);
        tensors.insert(
            format!("{p}.self_attn.q_proj.weight"),
            unpermute_rope_rows(&wq.get(i)?, header.n_heads)?,
        );
        tensors.insert(
            format!("{p}.self_attn.k_proj.weight"),
            unpermute_rope_rows(&wk.get(i)?, header.n_kv_heads)?,
        );
        tensors.insert(format!("{p}.self_attn.v_proj.weight"), wv.get(i)?);
        tensors.insert(format!("{p}.self_attn.o_proj.weight"), wo.get(i)?);
        tensors.insert(
            format!("{p}.post_attention_layernorm.weight"),
            rms_ffn.get(i)?,
        );
        tensors.insert(format!("{p}.mlp.gate_proj.weight"), w1.get(i)?);
        tensors.insert(format!("{p}.mlp.down_proj.weight"), w2.get(i)?);
        tensors.insert(format!("{p}.mlp.up_proj.weight"), w3.get(i)?);
    }
    let config = header.config();
    let mut ckpt = Checkpoint::from_tensors(PathBuf::from(path), tensors, load.clone());
    let model = Llama::new(&config, &mut ckpt)?;
    Ok(Llama2cModel {
        header,
        config,
        model,
        weights: ckpt.into_weights()?,
    })
}

/// llama2.c's tokenizer (`tokenizer.bin`, `tok512.bin`): a SentencePiece-style BPE vocabulary of
/// byte strings with merge scores; ids 3..=258 are the byte-fallback tokens `<0x00>`..`<0xFF>`.
#[derive(Clone, Debug)]
pub struct Llama2cTokenizer {
    pieces: Vec<Vec<u8>>,
    scores: Vec<f32>,
    lookup: HashMap<Vec<u8>, u32>,
    max_token_len: usize,
}

impl Llama2cTokenizer {
    /// Read a tokenizer file: `i32` max token length, then per token an `f32` score, an `i32`
    /// length and that many bytes, until the end of the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = read_file(path)?;
        let max = i32_at(&bytes, 0)
            .ok_or_else(|| malformed(path, "file shorter than the 4-byte header"))?;
        if max <= 0 {
            return Err(malformed(path, format!("invalid max token length {max}")));
        }
        let mut at = 4;
        let (mut pieces, mut scores) = (Vec::new(), Vec::new());
        while at < bytes.len() {
            let id = pieces.len();
            let head = bytes
                .get(at..at + 8)
                .ok_or_else(|| malformed(path, format!("token {id}: truncated entry")))?;
            let score = f32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            let len = i32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            if len < 0 || len > max {
                return Err(malformed(
                    path,
                    format!("token {id}: length {len} outside 0..={max}"),
                ));
            }
            at += 8;
            let piece = bytes
                .get(at..at + len as usize)
                .ok_or_else(|| malformed(path, format!("token {id}: truncated bytes")))?;
            at += len as usize;
            pieces.push(piece.to_vec());
            scores.push(score);
        }
        let mut lookup = HashMap::new();
        for (i, p) in pieces.iter().enumerate() {
            lookup.entry(p.clone()).or_insert(i as u32);
        }
        Ok(Self {
            pieces,
            scores,
            lookup,
            max_token_len: max as usize,
        })
    }

    /// The number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The longest token in bytes.
    pub fn max_token_len(&self) -> usize {
        self.max_token_len
    }

    /// The bytes of one token (`<0xHH>` byte tokens give their byte).
    pub fn piece_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let p = self.pieces.get(id as usize)?;
        if p.len() == 6
            && p.starts_with(b"<0x")
            && p[5] == b'>'
            && let Ok(s) = std::str::from_utf8(&p[3..5])
            && let Ok(b) = u8::from_str_radix(s, 16)
        {
            return Some(vec![b]);
        }
        Some(p.clone())
    }

    /// Decode ids to text as llama2.c prints them: BOS and EOS are dropped, the leading space of the
    /// token after BOS is removed, byte tokens become bytes, invalid UTF-8 is replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut out = Vec::new();
        let mut prev = None;
        for &id in ids {
            if id != LLAMA2C_BOS
                && id != LLAMA2C_EOS
                && let Some(mut p) = self.piece_bytes(id)
            {
                if prev == Some(LLAMA2C_BOS) && p.first() == Some(&b' ') {
                    p.remove(0);
                }
                out.extend_from_slice(&p);
            }
            prev = Some(id);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Encode text as llama2.c does: optional BOS, a dummy-prefix space, one token per UTF-8
    /// character (byte fallback otherwise), then repeated merges of the adjacent pair whose
    /// concatenation has the best score; optional EOS.
    pub fn encode(&self, text: &str, bos: bool, eos: bool) -> Vec<u32> {
        let mut ids = Vec::new();
        if bos {
            ids.push(LLAMA2C_BOS);
        }
        let mut toks: Vec<u32> = Vec::new();
        if !text.is_empty() {
            let spaced = format!(" {text}");
            for ch in spaced.chars() {
                let mut buf = [0u8; 4];
                let s = ch.encode_utf8(&mut buf).as_bytes();
                match self.lookup.get(s) {
                    Some(&id) => toks.push(id),
                    None => toks.extend(s.iter().map(|&b| u32::from(b) + 3)),
                }
            }
        }
        loop {
            let mut best: Option<(f32, usize, u32)> = None;
            for i in 0..toks.len().saturating_sub(1) {
                let (Some(a), Some(b)) = (
                    self.pieces.get(toks[i] as usize),
                    self.pieces.get(toks[i + 1] as usize),
                ) else {
                    continue;
                };
                let mut joined = a.clone();
                joined.extend_from_slice(b);
                if let Some(&id) = self.lookup.get(&joined) {
                    let score = self.scores[id as usize];
                    if best.is_none_or(|(s, _, _)| score > s) {
                        best = Some((score, i, id));
                    }
                }
            }
            let Some((_, i, id)) = best else { break };
            toks[i] = id;
            toks.remove(i + 1);
        }
        ids.extend(toks);
        if eos {
            ids.push(LLAMA2C_EOS);
        }
        ids
    }
}
