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

mod template;

pub use template::{Piece, Template, TemplateError, Transform};

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
        self.pad(&encoded)
    }

    /// The content-free prompt (Zhao et al. 2021, "Calibrate Before Use"): the template with
    /// every text slot empty — its literal pieces and the mask between the tokenizer's special
    /// tokens, a slot contributing no token (not even the space before it) — as its token ids
    /// and mask position. The same for every example.
    pub fn encode_content_free(&self) -> Result<(Vec<u32>, usize)> {
        let mut ids = Vec::new();
        ids.extend_from_slice(self.tokenizer.prefix());
        let mut mask_at = 0;
        for (piece, fixed_ids) in self.template.pieces().iter().zip(&self.piece_ids) {
            match piece {
                Piece::Text(_) => ids.extend_from_slice(fixed_ids),
                Piece::Slot { .. } => {}
                Piece::Mask { .. } => {
                    mask_at = ids.len();
                    ids.push(self.mask_id);
                }
            }
        }
        ids.extend_from_slice(self.tokenizer.suffix());
        if ids.len() > self.max_length {
            return Err(ModelError::Config {
                field: "max_length".into(),
                message: format!(
                    "the template alone takes {} tokens, more than the maximum length {}",
                    ids.len(),
                    self.max_length
                ),
            });
        }
        Ok((ids, mask_at))
    }

    /// [`encode_content_free`](Self::encode_content_free) as a batch of one row; its
    /// [`scores`](Self::scores) are the reference of
    /// [`crate::calibration::content_free_scores`].
    pub fn content_free_batch(&self) -> Result<PromptBatch> {
        self.pad(&[self.encode_content_free()?])
    }

    /// Right-pad encoded rows into a batch.
    fn pad(&self, encoded: &[(Vec<u32>, usize)]) -> Result<PromptBatch> {
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

    /// The rows of each table that [`logits`](Self::logits) reads on `batch` (see
    /// [`MaskedLm::rows_read`]): what row-sparse directions restrict a step to.
    pub fn rows_read(&self, batch: &PromptBatch) -> Result<zo_optim::RowSupport> {
        self.model
            .rows_read(&batch.input_ids, Some(&self.label_ids))
    }

    /// The label words' logits as rows of f32.
    pub fn scores(&self, batch: &PromptBatch) -> Result<Vec<Vec<f32>>> {
        Ok(self.logits(batch)?.to_vec2::<f32>()?)
    }

    /// The mean cross-entropy over the label words (computed in f64).
    pub fn loss(&self, batch: &PromptBatch, labels: &[usize]) -> Result<f64> {
        self.mean_loss(&self.scores(batch)?, labels)
    }

    /// The mean cross-entropy of the rows `scores` over the label words (computed in f64).
    fn mean_loss(&self, scores: &[Vec<f32>], labels: &[usize]) -> Result<f64> {
        self.check_labels(labels, scores.len())?;
        let mut total = 0.0;
        for (row, &y) in scores.iter().zip(labels) {
            total += cross_entropy(row, y);
        }
        Ok(total / scores.len() as f64)
    }

    /// The cross-entropy over the label words of each row (f64), from one forward: the terms of
    /// [`loss`](Self::loss) (their sum from 0 in order, divided by their number), so that a
    /// batch's loss can be assembled from those of its pieces.
    pub fn example_losses(&self, batch: &PromptBatch, labels: &[usize]) -> Result<Vec<f64>> {
        let scores = self.scores(batch)?;
        self.check_labels(labels, scores.len())?;
        Ok(scores
            .iter()
            .zip(labels)
            .map(|(row, &y)| cross_entropy(row, y))
            .collect())
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
        let (loss, predictions, _) = self.loss_predictions_and_scores(batch, labels)?;
        Ok((loss, predictions))
    }

    /// The loss, the predictions and the label words' logits (the rows of
    /// [`scores`](Self::scores)) from one forward pass.
    pub fn loss_predictions_and_scores(
        &self,
        batch: &PromptBatch,
        labels: &[usize],
    ) -> Result<(f64, Vec<usize>, Vec<Vec<f32>>)> {
        let scores = self.scores(batch)?;
        let loss = self.mean_loss(&scores, labels)?;
        let predictions = scores.iter().map(|row| argmax(row)).collect();
        Ok((loss, predictions, scores))
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
    crate::calibration::log_sum_exp(row) - f64::from(row[y])
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
