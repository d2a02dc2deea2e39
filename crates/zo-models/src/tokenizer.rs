//! Hugging Face `tokenizer.json` files, loaded with the `tokenizers` crate.
//!
//! The file's own padding and truncation settings are switched off: the prompt code of this crate
//! builds, truncates and pads its sequences itself, so that a template's mask slot always survives.

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// A tokenizer read from a `tokenizer.json`.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    prefix: Vec<u32>,
    suffix: Vec<u32>,
    pad: Option<u32>,
}

/// Mask tokens recognised by [`Tokenizer::mask_token`], in order of preference.
const MASK_TOKENS: [&str; 2] = ["[MASK]", "<mask>"];
/// Padding tokens recognised by [`Tokenizer::pad_id`] when the file sets no padding.
const PAD_TOKENS: [&str; 2] = ["[PAD]", "<pad>"];

impl Tokenizer {
    /// Load a `tokenizer.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(ModelError::Io {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "tokenizer file not found",
                ),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| ModelError::Malformed {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Self::from_tokenizer(inner, path)
    }

    /// Wrap a `tokenizers` tokenizer (e.g. one built from GGUF metadata); `origin` names where it
    /// came from in errors.
    pub fn from_tokenizer(
        mut inner: tokenizers::Tokenizer,
        origin: impl Into<PathBuf>,
    ) -> Result<Self> {
        let path = origin.into();
        let pad = inner.get_padding().map(|p| p.pad_id);
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| ModelError::Malformed {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let mut tok = Self {
            inner,
            path,
            prefix: Vec::new(),
            suffix: Vec::new(),
            pad,
        };
        let (prefix, suffix) = tok.framing()?;
        tok.prefix = prefix;
        tok.suffix = suffix;
        Ok(tok)
    }

    /// Load `tokenizer.json` from a model folder.
    pub fn from_folder(dir: impl AsRef<Path>) -> Result<Self> {
        Self::from_file(dir.as_ref().join("tokenizer.json"))
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The full encoding of `text` (ids, tokens, offsets, masks).
    pub fn encoding(&self, text: &str, add_special_tokens: bool) -> Result<tokenizers::Encoding> {
        self.inner
            .encode(text, add_special_tokens)
            .map_err(|e| ModelError::Malformed {
                path: self.path.clone(),
                message: format!("cannot encode {text:?}: {e}"),
            })
    }

    /// The token ids of `text`, with or without the special tokens of the file's post-processor.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        Ok(self.encoding(text, add_special_tokens)?.get_ids().to_vec())
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| ModelError::Malformed {
                path: self.path.clone(),
                message: format!("cannot decode {ids:?}: {e}"),
            })
    }

    /// The id of a token (vocabulary or added token).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The special tokens the post-processor puts before a single sequence (`[CLS]`, `<s>`).
    pub fn prefix(&self) -> &[u32] {
        &self.prefix
    }

    /// The special tokens the post-processor puts after a single sequence (`[SEP]`, `</s>`).
    pub fn suffix(&self) -> &[u32] {
        &self.suffix
    }

    /// The mask token (`[MASK]` or `<mask>`) and its id, if the vocabulary has one.
    pub fn mask_token(&self) -> Option<(&'static str, u32)> {
        MASK_TOKENS
            .iter()
            .find_map(|t| self.token_to_id(t).map(|id| (*t, id)))
    }

    /// The padding id: the file's padding setting if it had one, else `[PAD]` or `<pad>`.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad
            .or_else(|| PAD_TOKENS.iter().find_map(|t| self.token_to_id(t)))
    }

    /// The special tokens added around a single sequence, found by encoding a probe text with and
    /// without them.
    fn framing(&self) -> Result<(Vec<u32>, Vec<u32>)> {
        let bare = self.encode("a", false)?;
        let full = self.encode("a", true)?;
        if bare.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let at = full.windows(bare.len()).position(|w| w == bare.as_slice());
        Ok(match at {
            Some(i) => (full[..i].to_vec(), full[i + bare.len()..].to_vec()),
            None => (Vec::new(), Vec::new()),
        })
    }
}
