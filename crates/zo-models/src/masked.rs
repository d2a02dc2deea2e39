//! Prompt-based classification with a masked LM (LM-BFF / MeZO style).
//!
//! A template such as `"<S> It was[MASK]."` turns an example into a sequence with one mask slot;
//! each class has a label word (`great`, `terrible`) and its score is the MLM logit of that word at
//! the mask. The loss is the cross-entropy over the label words' logits, the prediction the argmax.
//!
//! Template syntax ([`Template`]):
//!
//! - `<S>` (or `<S1>`) is the example's first text, `<S2>`, `<S3>`, … the next ones, in any order;
//! - `<S2:t1,t2,…>` is text 2 changed by [`Transform`]s, applied in the order written: `trim`,
//!   `drop-last`, `lower-first`, `upper-first`, `question-mark`;
//! - `[MASK]` is the mask slot (exactly one);
//! - everything else is literal text.
//!
//! Each piece is tokenised on its own without special tokens, the pieces are concatenated and
//! framed by the tokenizer's special tokens (`[CLS] … [SEP]`, `<s> … </s>`), as LM-BFF's
//! `tokenize_multipart_input` does (princeton-nlp/LM-BFF `src/dataset.py`). Whitespace decides
//! what attaches to what: whitespace at the end of a literal piece belongs to the next piece, so a
//! text slot preceded by whitespace is tokenised with a leading space (LM-BFF's `*+sent_i*`), a
//! literal piece keeps its leading whitespace (`" It was"`, LM-BFF's `_It_was`), and a literal
//! written right after the mask or a slot attaches without a space: `[MASK].` tokenises `.`
//! (LM-BFF's `*mask*.`) where `[MASK] .` tokenises `" ."`. Byte-level BPE tokenizers (RoBERTa)
//! give these different ids (`.` vs `Ġ.`); WordPiece tokenizers (BERT) give the same ones. The
//! mask token absorbs whitespace before it (like RoBERTa's `<mask>`, whose `lstrip` is set).
//! Label words are tokenised with a leading space (`" great"`), as LM-BFF does, and must be
//! single tokens.
//!
//! Too long inputs are truncated in their text slots (the longest slot loses tokens at its end
//! first), never in the template, so the mask slot always survives.

use candle_core::{DType, Device, Tensor};
use zo_optim::{Objective, ObjectiveError};

use crate::bert::MaskedLm;
use crate::error::{ModelError, Result};
use crate::tokenizer::Tokenizer;

/// A change to an example's text before it fills a slot, written `<S2:name>` in a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transform {
    /// `trim`: whitespace removed at both ends (Python's `str.strip()`, as the BSZO authors'
    /// RoBERTa templates apply to their fields).
    Trim,
    /// `drop-last`: the last character removed (LM-BFF's `*sent-_i*`, `text[:-1]`).
    DropLast,
    /// `lower-first`: the first character lower-cased (LM-BFF's `*sentl_i*`).
    LowerFirst,
    /// `upper-first`: the first character upper-cased (LM-BFF's `*sentu_i*`).
    UpperFirst,
    /// `question-mark`: `?` appended unless the text already ends with one (BoolQ's questions in
    /// MeZO's and the BSZO authors' templates).
    QuestionMark,
}

impl Transform {
    /// Every transform.
    pub const ALL: [Transform; 5] = [
        Transform::Trim,
        Transform::DropLast,
        Transform::LowerFirst,
        Transform::UpperFirst,
        Transform::QuestionMark,
    ];

    /// The name written in templates.
    pub fn name(self) -> &'static str {
        match self {
            Transform::Trim => "trim",
            Transform::DropLast => "drop-last",
            Transform::LowerFirst => "lower-first",
            Transform::UpperFirst => "upper-first",
            Transform::QuestionMark => "question-mark",
        }
    }

    /// The transform written `name`.
    pub fn from_name(name: &str) -> Option<Transform> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Apply to `text`.
    pub fn apply(self, text: &str) -> String {
        match self {
            Transform::Trim => text.trim().to_string(),
            Transform::DropLast => {
                let mut s = text.to_string();
                s.pop();
                s
            }
            Transform::LowerFirst => map_first(text, |c| c.to_lowercase().collect()),
            Transform::UpperFirst => map_first(text, |c| c.to_uppercase().collect()),
            Transform::QuestionMark => {
                if text.ends_with('?') {
                    text.to_string()
                } else {
                    format!("{text}?")
                }
            }
        }
    }
}

fn map_first(text: &str, f: impl Fn(char) -> String) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => f(c) + chars.as_str(),
        None => String::new(),
    }
}

/// What is wrong with a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template has no `[MASK]` or more than one.
    #[error("template `{template}` must contain exactly one [MASK], found {found}")]
    MaskCount {
        /// The template.
        template: String,
        /// How many it has.
        found: usize,
    },
    /// A slot numbered 0 (`<S0>`) or with a number too large to read.
    #[error("template `{template}`: bad slot `{slot}` (slots are numbered from <S1>)")]
    BadSlot {
        /// The template.
        template: String,
        /// The slot as written.
        slot: String,
    },
    /// The slot numbers skip one (`<S1>` and `<S3>` without `<S2>`).
    #[error(
        "template `{template}` uses <S{used}> but not <S{missing}>: text slots must have no gaps"
    )]
    SlotGap {
        /// The template.
        template: String,
        /// A slot number that is used.
        used: usize,
        /// The lowest one that is not.
        missing: usize,
    },
    /// `<S2:` with no closing `>`.
    #[error("template `{template}`: `{slot}` has no closing `>`")]
    Unclosed {
        /// The template.
        template: String,
        /// The slot's start as written.
        slot: String,
    },
    /// A transform name that is not known.
    #[error(
        "template `{template}`: unknown transform `{name}` in `{slot}` (trim, drop-last, lower-first, upper-first, question-mark)"
    )]
    UnknownTransform {
        /// The template.
        template: String,
        /// The slot as written.
        slot: String,
        /// The unknown name.
        name: String,
    },
    /// The example supplies a different number of texts than the template's slots.
    #[error("template `{template}` takes {expected} text(s), got {found}")]
    TextCount {
        /// The template.
        template: String,
        /// The template's slots.
        expected: usize,
        /// The texts given.
        found: usize,
    },
}

/// One piece of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Literal text: its leading whitespace kept, its trailing whitespace given to the next piece.
    Text(String),
    /// The example's text number `index` (0-based).
    Slot {
        /// Which of the example's texts.
        index: usize,
        /// Whether whitespace precedes it (the text is tokenised with a leading space).
        space: bool,
        /// The changes applied to the text, in order.
        transforms: Vec<Transform>,
    },
    /// The mask slot.
    Mask {
        /// Whether whitespace precedes it in the template (shown by [`Template::render`]; the mask
        /// token absorbs it when tokenised).
        space: bool,
    },
}

/// A parsed prompt template (syntax: the [module documentation](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
    slots: usize,
}

impl Template {
    /// Parse `<S>`/`<S1>`, `<S2>`, …, `<S2:transform,…>`, `[MASK]` and literal text. A `<S`
    /// not followed by digits and `>` or `:` is literal text.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        let mut pending_space = false;
        let flush = |text: &mut String, pieces: &mut Vec<Piece>, pending: &mut bool| {
            let ends_in_space = text.ends_with(char::is_whitespace);
            let trimmed = text.trim_end();
            if !trimmed.is_empty() {
                pieces.push(Piece::Text(trimmed.to_string()));
                *pending = ends_in_space;
            } else if !text.is_empty() {
                *pending = true;
            }
            text.clear();
        };
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("[MASK]") {
                flush(&mut text, &mut pieces, &mut pending_space);
                pieces.push(Piece::Mask {
                    space: pending_space,
                });
                pending_space = false;
                rest = after;
                continue;
            }
            if let Some((slot, after)) = parse_slot(template, rest)? {
                flush(&mut text, &mut pieces, &mut pending_space);
                let (index, transforms) = slot;
                pieces.push(Piece::Slot {
                    index,
                    space: pending_space,
                    transforms,
                });
                pending_space = false;
                rest = after;
                continue;
            }
            let c = rest.chars().next().unwrap_or(' ');
            text.push(c);
            rest = &rest[c.len_utf8()..];
        }
        flush(&mut text, &mut pieces, &mut pending_space);
        let masks = pieces
            .iter()
            .filter(|p| matches!(p, Piece::Mask { .. }))
            .count();
        if masks != 1 {
            return Err(TemplateError::MaskCount {
                template: template.to_string(),
                found: masks,
            });
        }
        let mut indices: Vec<usize> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Slot { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        indices.sort_unstable();
        indices.dedup();
        if let Some(missing) = indices.iter().enumerate().position(|(i, &s)| i != s) {
            return Err(TemplateError::SlotGap {
                template: template.to_string(),
                used: indices[missing] + 1,
                missing: missing + 1,
            });
        }
        Ok(Self {
            source: template.to_string(),
            pieces,
            slots: indices.len(),
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parsed pieces.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// How many texts an example supplies.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The text that fills slot piece `index` (transformed, with its leading space), as it is
    /// tokenised.
    fn slot_text(index: usize, space: bool, transforms: &[Transform], texts: &[&str]) -> String {
        let mut text = texts[index].to_string();
        for t in transforms {
            text = t.apply(&text);
        }
        if space { format!(" {text}") } else { text }
    }

    /// Each piece's text as it is tokenised (`None` for the mask), for an example's texts.
    fn piece_texts<S: AsRef<str>>(
        &self,
        texts: &[S],
    ) -> Result<Vec<Option<String>>, TemplateError> {
        if texts.len() != self.slots {
            return Err(TemplateError::TextCount {
                template: self.source.clone(),
                expected: self.slots,
                found: texts.len(),
            });
        }
        let texts: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        Ok(self
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => Some(t.clone()),
                Piece::Slot {
                    index,
                    space,
                    transforms,
                } => Some(Self::slot_text(*index, *space, transforms, &texts)),
                Piece::Mask { .. } => None,
            })
            .collect())
    }

    /// The prompt as text: the pieces' texts concatenated as they are tokenised, with `mask`
    /// (e.g. `"[MASK]"`) at the mask slot, preceded by a space where the template has one. No
    /// special tokens.
    pub fn render<S: AsRef<str>>(&self, texts: &[S], mask: &str) -> Result<String, TemplateError> {
        let mut out = String::new();
        for (piece, text) in self.pieces.iter().zip(self.piece_texts(texts)?) {
            match (piece, text) {
                (_, Some(t)) => out.push_str(&t),
                (Piece::Mask { space }, None) => {
                    if *space {
                        out.push(' ');
                    }
                    out.push_str(mask);
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// A slot at the start of `rest` (`<S>`, `<S2>`, `<S2:t,…>`): its 0-based index, its transforms
/// and what follows it; `None` if `rest` does not start with one.
#[allow(clippy::type_complexity)]
fn parse_slot<'a>(
    template: &str,
    rest: &'a str,
) -> Result<Option<((usize, Vec<Transform>), &'a str)>, TemplateError> {
    let Some(after) = rest.strip_prefix("<S") else {
        return Ok(None);
    };
    let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, tail) = after.split_at(digits);
    let (transforms, after) = if let Some(after) = tail.strip_prefix('>') {
        (Vec::new(), after)
    } else if let Some(list) = tail.strip_prefix(':') {
        let Some(close) = list.find('>') else {
            return Err(TemplateError::Unclosed {
                template: template.to_string(),
                slot: format!("<S{number}:"),
            });
        };
        let slot = format!("<S{number}:{}>", &list[..close]);
        let transforms = list[..close]
            .split(',')
            .map(|name| {
                Transform::from_name(name.trim()).ok_or_else(|| TemplateError::UnknownTransform {
                    template: template.to_string(),
                    slot: slot.clone(),
                    name: name.trim().to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        (transforms, &list[close + 1..])
    } else {
        return Ok(None);
    };
    let index = if number.is_empty() {
        0
    } else {
        number
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .ok_or_else(|| TemplateError::BadSlot {
                template: template.to_string(),
                slot: format!("<S{number}>"),
            })?
    };
    Ok(Some(((index, transforms), after)))
}

/// A padded batch of prompts.
#[derive(Clone, Debug)]
pub struct PromptBatch {
    /// Token ids [batch, seq] (u32), right-padded with the model's padding id.
    pub input_ids: Tensor,
    /// 1 for real tokens, 0 for padding [batch, seq] (u32).
    pub attention_mask: Tensor,
    /// The mask slot of each row.
    pub mask_positions: Vec<usize>,
    /// The unpadded length of each row.
    pub lengths: Vec<usize>,
}

impl PromptBatch {
    /// The number of rows.
    pub fn len(&self) -> usize {
        self.mask_positions.len()
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.mask_positions.is_empty()
    }
}

/// Prompt classification with a masked LM: template, label words and the model.
#[derive(Clone, Debug)]
pub struct MaskedLmClassifier {
    model: MaskedLm,
    tokenizer: Tokenizer,
    template: Template,
    /// Token ids of the template's literal pieces, by piece (empty for slots and the mask).
    piece_ids: Vec<Vec<u32>>,
    mask_id: u32,
    label_words: Vec<String>,
    label_ids: Vec<u32>,
    max_length: usize,
}

impl MaskedLmClassifier {
    /// A classifier with one label word per class (class `i` is `label_words[i]`).
    pub fn new(
        model: MaskedLm,
        tokenizer: Tokenizer,
        template: &str,
        label_words: &[&str],
    ) -> Result<Self> {
        let template = Template::parse(template)?;
        let (_, mask_id) = tokenizer.mask_token().ok_or_else(|| ModelError::Config {
            field: "tokenizer".into(),
            message: format!(
                "{} has no [MASK] or <mask> token",
                tokenizer.path().display()
            ),
        })?;
        if label_words.len() < 2 {
            return Err(ModelError::Config {
                field: "label_words".into(),
                message: format!("need at least two classes, got {}", label_words.len()),
            });
        }
        let mut label_ids = Vec::with_capacity(label_words.len());
        for word in label_words {
            let text = if word.starts_with(char::is_whitespace) {
                word.to_string()
            } else {
                format!(" {word}")
            };
            let ids = tokenizer.encode(&text, false)?;
            if ids.len() != 1 {
                return Err(ModelError::Config {
                    field: "label_words".into(),
                    message: format!("{text:?} is {} tokens, not one", ids.len()),
                });
            }
            if ids[0] as usize >= model.config().vocab_size {
                return Err(ModelError::Config {
                    field: "label_words".into(),
                    message: format!("{text:?} has id {} outside the model's vocabulary", ids[0]),
                });
            }
            if label_ids.contains(&ids[0]) {
                return Err(ModelError::Config {
                    field: "label_words".into(),
                    message: format!("{text:?} repeats the token of another label word"),
                });
            }
            label_ids.push(ids[0]);
        }
        let piece_ids = template
            .pieces()
            .iter()
            .map(|p| match p {
                Piece::Text(t) => tokenizer.encode(t, false),
                _ => Ok(Vec::new()),
            })
            .collect::<Result<Vec<_>>>()?;
        let max_length = model.max_sequence_length();
        Ok(Self {
            model,
            tokenizer,
            template,
            piece_ids,
            mask_id,
            label_words: label_words.iter().map(|w| w.to_string()).collect(),
            label_ids,
            max_length,
        })
    }

    /// Limit the prompt length (tokens, special tokens included); at most the model's positions.
    pub fn with_max_length(mut self, max_length: usize) -> Result<Self> {
        let limit = self.model.max_sequence_length();
        if max_length == 0 || max_length > limit {
            return Err(ModelError::Config {
                field: "max_length".into(),
                message: format!("must be in 1..={limit}, got {max_length}"),
            });
        }
        self.max_length = max_length;
        Ok(self)
    }

    /// The model.
    pub fn model(&self) -> &MaskedLm {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The template.
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// The label words, by class.
    pub fn label_words(&self) -> &[String] {
        &self.label_words
    }

    /// The label words' token ids, by class.
    pub fn label_ids(&self) -> &[u32] {
        &self.label_ids
    }

    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.label_ids.len()
    }

    /// The maximum prompt length.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Token ids of one example (one text per template slot) and its mask position.
    pub fn encode<S: AsRef<str>>(&self, texts: &[S]) -> Result<(Vec<u32>, usize)> {
        let piece_texts = self.template.piece_texts(texts)?;
        let mut slot_ids = Vec::with_capacity(texts.len());
        for (piece, text) in self.template.pieces().iter().zip(&piece_texts) {
            if let (Piece::Slot { .. }, Some(text)) = (piece, text) {
                slot_ids.push(self.tokenizer.encode(text, false)?);
            }
        }
        let fixed = self.tokenizer.prefix().len()
            + self.tokenizer.suffix().len()
            + self.piece_ids.iter().map(Vec::len).sum::<usize>()
            + 1;
        if fixed > self.max_length {
            return Err(ModelError::Config {
                field: "max_length".into(),
                message: format!(
                    "the template alone takes {fixed} tokens, more than the maximum length {}",
                    self.max_length
                ),
            });
        }
        // Truncate the slots: the longest loses tokens at its end first.
        let mut total = fixed + slot_ids.iter().map(Vec::len).sum::<usize>();
        while total > self.max_length {
            let longest = (0..slot_ids.len())
                .max_by_key(|&i| (slot_ids[i].len(), usize::MAX - i))
                .unwrap_or(0);
            let excess = total - self.max_length;
            let other = slot_ids
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != longest)
                .map(|(_, s)| s.len())
                .max()
                .unwrap_or(0);
            // Cut down to the next-longest slot at most, so that long slots shrink together.
            let cut = excess.min(slot_ids[longest].len() - other).max(1);
            let keep = slot_ids[longest].len() - cut;
            slot_ids[longest].truncate(keep);
            total -= cut;
        }
        let mut ids = Vec::with_capacity(total);
        ids.extend_from_slice(self.tokenizer.prefix());
        let mut mask_at = 0;
        let mut next_slot = 0;
        for (piece, fixed_ids) in self.template.pieces().iter().zip(&self.piece_ids) {
            match piece {
                Piece::Text(_) => ids.extend_from_slice(fixed_ids),
                Piece::Slot { .. } => {
                    ids.extend_from_slice(&slot_ids[next_slot]);
                    next_slot += 1;
                }
                Piece::Mask { .. } => {
                    mask_at = ids.len();
                    ids.push(self.mask_id);
                }
            }
        }
        ids.extend_from_slice(self.tokenizer.suffix());
        Ok((ids, mask_at))
    }

    /// Encode and right-pad a batch of single-text examples (templates with one slot).
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<PromptBatch> {
        let examples: Vec<[&str; 1]> = texts.iter().map(|t| [t.as_ref()]).collect();
        self.encode_examples(&examples)
    }

    /// Encode and right-pad a batch of examples, each with one text per template slot.
    pub fn encode_examples<E: AsRef<[S]>, S: AsRef<str>>(
        &self,
        examples: &[E],
    ) -> Result<PromptBatch> {
        if examples.is_empty() {
            return Err(ModelError::Config {
                field: "texts".into(),
                message: "empty batch".into(),
            });
        }
        let encoded = examples
            .iter()
            .map(|e| self.encode(e.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        let seq = encoded.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
        let b = encoded.len();
        let pad = self.model.pad_id();
        let mut ids = vec![pad; b * seq];
        let mut mask = vec![0u32; b * seq];
        let mut mask_positions = Vec::with_capacity(b);
        let mut lengths = Vec::with_capacity(b);
        for (row, (e, at)) in encoded.iter().enumerate() {
            ids[row * seq..row * seq + e.len()].copy_from_slice(e);
            mask[row * seq..row * seq + e.len()].fill(1);
            mask_positions.push(*at);
            lengths.push(e.len());
        }
        Ok(PromptBatch {
            input_ids: Tensor::from_vec(ids, (b, seq), &Device::Cpu)?,
            attention_mask: Tensor::from_vec(mask, (b, seq), &Device::Cpu)?,
            mask_positions,
            lengths,
        })
    }

    /// The label words' logits at the mask: [batch, classes] in f32.
    pub fn logits(&self, batch: &PromptBatch) -> Result<Tensor> {
        let logits = self.model.logits_at(
            &batch.input_ids,
            &batch.attention_mask,
            &batch.mask_positions,
            Some(&self.label_ids),
        )?;
        Ok(logits.to_dtype(DType::F32)?)
    }

    /// The label words' logits as rows of f32.
    pub fn scores(&self, batch: &PromptBatch) -> Result<Vec<Vec<f32>>> {
        Ok(self.logits(batch)?.to_vec2::<f32>()?)
    }

    /// The mean cross-entropy over the label words (computed in f64).
    pub fn loss(&self, batch: &PromptBatch, labels: &[usize]) -> Result<f64> {
        let scores = self.scores(batch)?;
        self.check_labels(labels, scores.len())?;
        let total: f64 = scores
            .iter()
            .zip(labels)
            .map(|(row, &y)| cross_entropy(row, y))
            .sum();
        Ok(total / scores.len() as f64)
    }

    /// The predicted class of each row (argmax of the label words' logits; ties go to the lower class).
    pub fn predict(&self, batch: &PromptBatch) -> Result<Vec<usize>> {
        Ok(self.scores(batch)?.iter().map(|row| argmax(row)).collect())
    }

    /// The loss and the predictions from one forward pass.
    pub fn loss_and_predictions(
        &self,
        batch: &PromptBatch,
        labels: &[usize],
    ) -> Result<(f64, Vec<usize>)> {
        let scores = self.scores(batch)?;
        self.check_labels(labels, scores.len())?;
        let total: f64 = scores
            .iter()
            .zip(labels)
            .map(|(row, &y)| cross_entropy(row, y))
            .sum();
        Ok((
            total / scores.len() as f64,
            scores.iter().map(|row| argmax(row)).collect(),
        ))
    }

    /// The loss on a fixed batch as a zeroth-order objective (the weights are read through the
    /// model's shared tensors, so the parameter set passed to the optimizer is not inspected).
    pub fn objective<'a>(
        &'a self,
        batch: &'a PromptBatch,
        labels: &'a [usize],
    ) -> PromptObjective<'a> {
        PromptObjective {
            classifier: self,
            batch,
            labels,
        }
    }

    fn check_labels(&self, labels: &[usize], rows: usize) -> Result<()> {
        if labels.len() != rows {
            return Err(ModelError::Shape {
                name: "labels".into(),
                expected: vec![rows],
                found: vec![labels.len()],
            });
        }
        if let Some(&y) = labels.iter().find(|&&y| y >= self.num_classes()) {
            return Err(ModelError::Config {
                field: "labels".into(),
                message: format!("class {y} is outside 0..{}", self.num_classes()),
            });
        }
        Ok(())
    }
}

/// The prompt loss on a fixed batch, as a [`zo_optim::Objective`] over any parameter set whose
/// storage the model shares (e.g. the model's [`Weights`](crate::Weights)).
#[derive(Clone, Copy, Debug)]
pub struct PromptObjective<'a> {
    classifier: &'a MaskedLmClassifier,
    batch: &'a PromptBatch,
    labels: &'a [usize],
}

impl<P: ?Sized> Objective<P> for PromptObjective<'_> {
    fn loss(&mut self, _params: &P) -> std::result::Result<f64, ObjectiveError> {
        Ok(self.classifier.loss(self.batch, self.labels)?)
    }
}

/// `−log softmax(row)[y]` in f64.
fn cross_entropy(row: &[f32], y: usize) -> f64 {
    let max = row
        .iter()
        .map(|&v| f64::from(v))
        .fold(f64::NEG_INFINITY, f64::max);
    let lse = max
        + row
            .iter()
            .map(|&v| (f64::from(v) - max).exp())
            .sum::<f64>()
            .ln();
    lse - f64::from(row[y])
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}
