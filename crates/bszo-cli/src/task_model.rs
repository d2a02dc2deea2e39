//! The task models: a zo-models prompt head joined with zo-data splits, as a zo-train
//! [`TaskModel`] over the model's [`Weights`].

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow, bail};
use zo_data::{Example, Splits, Task, accuracy, macro_f1};
use zo_models::calibration::{content_free_scores, sfc_scores};
use zo_models::causal::{
    CandidateExample, argmax, candidate_example_losses, candidate_lm_loss,
    candidate_lm_token_losses, candidate_logprob_sums, candidate_loss_and_predictions,
    candidate_mean_and_sum_scores, loss_and_predictions_of_scores,
};
use zo_models::masked::{MaskedLmClassifier, PromptBatch};
use zo_models::{CausalLm, Llama2cTokenizer, Tokenizer, Weights};
use zo_optim::{ObjectiveError, RowSupport};
use zo_train::comm::Communicator;
use zo_train::{LossTerms, Metrics, Split, TaskModel};

use crate::config::Calibration;

/// How a prompt becomes a prediction.
// One value per run: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Head {
    /// A masked LM: the label words' logits at the mask.
    Masked(MaskedLmClassifier),
    /// A causal LM: the candidates' mean log-likelihoods.
    Causal {
        /// The model.
        model: Box<dyn CausalLm + Send + Sync>,
        /// Its tokenizer.
        tokenizer: CausalTokenizer,
        /// Tokens put before every context (e.g. BOS).
        prefix: Vec<u32>,
        /// Longest sequence (context + candidate) in tokens.
        max_length: usize,
    },
}

/// A causal LM's tokenizer: a `tokenizer.json` or llama2.c's `tok512.bin` format.
// One value per run: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum CausalTokenizer {
    /// A Hugging Face tokenizer (also built from GGUF metadata).
    Hf(Tokenizer),
    /// llama2.c's SentencePiece-style BPE (it adds the dummy-prefix space itself).
    Llama2c(Llama2cTokenizer),
}

impl CausalTokenizer {
    /// Token ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(match self {
            Self::Hf(t) => t.encode(text, false)?,
            // llama2.c puts a space before the text; a candidate's own leading space is that one.
            Self::Llama2c(t) => t.encode(text.strip_prefix(' ').unwrap_or(text), false, false),
        })
    }
}

/// The texts of `example` that fill the slots of `classifier`'s template (the first ones, in
/// [`Task::fields`] order).
pub fn masked_texts<'a>(classifier: &MaskedLmClassifier, example: &'a Example) -> Vec<&'a str> {
    example
        .texts
        .iter()
        .take(classifier.template().slots())
        .map(String::as_str)
        .collect()
}

/// The causal-LM prompt of `example` for `task`, tokenised: `prefix` (e.g. BOS) then the context,
/// cut at its start to fit `max_length` with the longest candidate.
pub fn causal_example(
    task: Task,
    example: &Example,
    tokenizer: &CausalTokenizer,
    prefix: &[u32],
    max_length: Option<usize>,
) -> Result<CandidateExample> {
    let p = task.causal_prompt(example)?;
    tokenize_prompt(&p, tokenizer, prefix, max_length)
}

/// The causal-LM SFC prompt of `example` for `task` (`Task::causal_sfc_prompt`), tokenised as
/// [`causal_example`] tokenises the prompt. An empty SFC context needs a prefix (BOS) to be scored
/// after.
pub fn causal_sfc_example(
    task: Task,
    example: &Example,
    tokenizer: &CausalTokenizer,
    prefix: &[u32],
    max_length: Option<usize>,
) -> Result<CandidateExample> {
    let p = task.causal_sfc_prompt(example)?;
    tokenize_prompt(&p, tokenizer, prefix, max_length).with_context(|| {
        format!(
            "task.calibrate: the SFC prompt of {} ({:?})",
            task.display_name(),
            p.context
        )
    })
}

/// `p` tokenised: `prefix` then the context (cut at its start to fit `max_length` with the
/// longest candidate), and each candidate.
fn tokenize_prompt(
    p: &zo_data::CausalPrompt,
    tokenizer: &CausalTokenizer,
    prefix: &[u32],
    max_length: Option<usize>,
) -> Result<CandidateExample> {
    let enc = p.encode(
        |t: &str| tokenizer.encode(t).map_err(|e| format!("{e:#}")),
        prefix,
        max_length,
    )?;
    Ok(CandidateExample {
        context: enc.context,
        candidates: enc.candidates,
        label: enc.label,
    })
}

/// One encoded minibatch.
enum Batch {
    Masked(PromptBatch, Vec<usize>),
    Causal(Vec<CandidateExample>),
}

/// What a split's calibrated scores are measured against.
enum Reference {
    /// The masked LM's content-free prompt (one row; the same for every example).
    Masked(PromptBatch),
    /// The causal LM's distinct SFC prompts, in chunks of the evaluation batch size, and for each
    /// example of the split (in order) the index of its SFC prompt among them.
    Causal {
        chunks: Vec<Vec<CandidateExample>>,
        index: Vec<usize>,
    },
}

impl Reference {
    /// The forwards one evaluation spends on it.
    fn forwards(&self) -> usize {
        match self {
            Reference::Masked(_) => 1,
            Reference::Causal { chunks, .. } => chunks.len(),
        }
    }
}

/// Scores of one evaluated batch: the uncalibrated loss and predictions and what calibration
/// compares (the label words' logits of a masked LM, the candidates' summed log-likelihoods of a
/// causal LM).
enum Raw {
    Masked(Vec<Vec<f32>>),
    Causal(Vec<Vec<f64>>),
}

/// A prompt-based classifier on one task's splits.
pub struct PromptTask {
    head: Head,
    task: Task,
    train: Vec<Example>,
    validation: Vec<Batch>,
    test: Vec<Batch>,
    validation_labels: Vec<usize>,
    test_labels: Vec<usize>,
    cache: Option<(Vec<usize>, Batch)>,
    /// The encoded pieces of the current minibatch ([`TaskModel::train_terms`]).
    piece_cache: Vec<(Vec<usize>, Batch)>,
    /// The processes an evaluation is split between (chunk `c` on process `c mod N`).
    comm: Option<std::rc::Rc<dyn Communicator>>,
    train_as_classification: bool,
    calibration: Calibration,
    /// The calibration references of the validation and test splits (with calibration on).
    references: Option<[Reference; 2]>,
}

impl PromptTask {
    /// Encode the validation and test splits in chunks of `eval_batch` examples.
    pub fn new(head: Head, splits: Splits, eval_batch: usize) -> Result<Self> {
        Self::with_calibration(head, splits, eval_batch, Calibration::None)
    }

    /// [`PromptTask::new`] whose evaluations also report calibrated metrics (`calibration` other
    /// than [`Calibration::None`]): `calibrated_accuracy` and `calibrated_macro_f1` in
    /// [`Metrics::extra`], the uncalibrated metrics unchanged, the calibration forwards counted
    /// in [`Metrics::forwards`]. A causal LM's distinct SFC prompts (`Task::causal_sfc_prompt`)
    /// run in chunks of `eval_batch`; a masked LM's content-free prompt is one forward. Training
    /// is unchanged.
    pub fn with_calibration(
        head: Head,
        splits: Splits,
        eval_batch: usize,
        calibration: Calibration,
    ) -> Result<Self> {
        let task = splits.task;
        if splits.train.is_empty() {
            bail!("{}: the training split is empty", task.display_name());
        }
        let mut me = Self {
            head,
            task,
            train: splits.train,
            validation: Vec::new(),
            test: Vec::new(),
            validation_labels: splits.validation.iter().map(|e| e.label).collect(),
            test_labels: splits.test.iter().map(|e| e.label).collect(),
            cache: None,
            piece_cache: Vec::new(),
            comm: None,
            train_as_classification: true,
            calibration,
            references: None,
        };
        if calibration != Calibration::None {
            let validation = me
                .reference(&splits.validation, eval_batch)
                .context("encoding the validation split's calibration prompts")?;
            let test = me
                .reference(&splits.test, eval_batch)
                .context("encoding the test split's calibration prompts")?;
            me.references = Some([validation, test]);
        }
        me.validation = splits
            .validation
            .chunks(eval_batch)
            .map(|c| me.encode(c))
            .collect::<Result<_>>()
            .context("encoding the validation split")?;
        me.test = splits
            .test
            .chunks(eval_batch)
            .map(|c| me.encode(c))
            .collect::<Result<_>>()
            .context("encoding the test split")?;
        Ok(me)
    }

    /// Train a causal LM on the candidates' cross-entropy (`true`, the default) or on the
    /// language-model loss of the correct candidate's tokens (`false`, MeZO's
    /// `train_as_classification = false`); evaluation always scores the candidates. A masked
    /// head has no language-model loss: `false` is an error there.
    pub fn with_train_as_classification(mut self, yes: bool) -> Result<Self> {
        if !yes && matches!(self.head, Head::Masked(_)) {
            bail!(
                "task.train_as_classification = false needs a causal LM (a masked LM has no language-model loss)"
            );
        }
        self.train_as_classification = yes;
        Ok(self)
    }

    /// Split every evaluation between the processes of `comm`: chunk `c` of a split (of the
    /// evaluation batch size) is evaluated by process `c mod N` and the results are gathered, so
    /// every process gets the metrics one process computes, bit for bit. Every process must
    /// evaluate the same splits in the same order.
    pub fn with_processes(mut self, comm: std::rc::Rc<dyn Communicator>) -> Self {
        self.comm = (comm.size() > 1).then_some(comm);
        self
    }

    /// Whether the model can tell which table rows a minibatch reads (row-sparse directions):
    /// a masked LM can; a causal LM's output head reads every vocabulary row.
    pub fn knows_rows_read(&self) -> bool {
        matches!(self.head, Head::Masked(_))
    }

    /// The task.
    pub fn task(&self) -> Task {
        self.task
    }

    /// The number of validation and test examples.
    pub fn eval_sizes(&self) -> (usize, usize) {
        (self.validation_labels.len(), self.test_labels.len())
    }

    /// The head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The calibration evaluation reports.
    pub fn calibration(&self) -> Calibration {
        self.calibration
    }

    /// The calibration reference of `examples`.
    fn reference(&self, examples: &[Example], eval_batch: usize) -> Result<Reference> {
        match &self.head {
            Head::Masked(clf) => Ok(Reference::Masked(clf.content_free_batch()?)),
            Head::Causal {
                tokenizer,
                prefix,
                max_length,
                ..
            } => {
                let mut distinct: Vec<CandidateExample> = Vec::new();
                let mut seen: HashMap<(Vec<u32>, Vec<Vec<u32>>), usize> = HashMap::new();
                let mut index = Vec::with_capacity(examples.len());
                for e in examples {
                    let mut row =
                        causal_sfc_example(self.task, e, tokenizer, prefix, Some(*max_length))?;
                    // The label plays no part in the reference.
                    row.label = 0;
                    let key = (row.context.clone(), row.candidates.clone());
                    let at = *seen.entry(key).or_insert_with(|| {
                        distinct.push(row);
                        distinct.len() - 1
                    });
                    index.push(at);
                }
                let chunks = distinct.chunks(eval_batch).map(<[_]>::to_vec).collect();
                Ok(Reference::Causal { chunks, index })
            }
        }
    }

    /// The reference scores of each example of a split, in order, from fresh forwards.
    fn reference_scores(&self, reference: &Reference) -> Result<ReferenceScores> {
        Ok(match (&self.head, reference) {
            (Head::Masked(clf), Reference::Masked(batch)) => {
                let row = clf
                    .scores(batch)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| anyhow!("the content-free prompt gave no scores"))?;
                ReferenceScores::Masked(row)
            }
            (Head::Causal { model, .. }, Reference::Causal { chunks, index }) => {
                let mut distinct = Vec::new();
                for chunk in chunks {
                    distinct.extend(candidate_logprob_sums(model.as_ref(), chunk)?);
                }
                ReferenceScores::Causal {
                    distinct,
                    index: index.clone(),
                }
            }
            _ => {
                return Err(anyhow!(
                    "a calibration reference was encoded for another head"
                ));
            }
        })
    }

    fn encode(&self, examples: &[Example]) -> Result<Batch> {
        match &self.head {
            Head::Masked(clf) => {
                let texts: Vec<Vec<&str>> = examples.iter().map(|e| masked_texts(clf, e)).collect();
                let batch = clf.encode_examples(&texts)?;
                Ok(Batch::Masked(
                    batch,
                    examples.iter().map(|e| e.label).collect(),
                ))
            }
            Head::Causal {
                tokenizer,
                prefix,
                max_length,
                ..
            } => {
                let rows = examples
                    .iter()
                    .map(|e| causal_example(self.task, e, tokenizer, prefix, Some(*max_length)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Batch::Causal(rows))
            }
        }
    }

    fn run(&self, batch: &Batch) -> Result<(f64, Vec<usize>)> {
        Ok(match (&self.head, batch) {
            (Head::Masked(clf), Batch::Masked(b, labels)) => clf.loss_and_predictions(b, labels)?,
            (Head::Causal { model, .. }, Batch::Causal(rows)) => {
                candidate_loss_and_predictions(model.as_ref(), rows)?
            }
            _ => return Err(anyhow!("a batch was encoded for another head")),
        })
    }

    /// [`run`](Self::run), also returning what calibration compares, from the same forward.
    fn run_raw(&self, batch: &Batch) -> Result<(f64, Vec<usize>, Raw)> {
        Ok(match (&self.head, batch) {
            (Head::Masked(clf), Batch::Masked(b, labels)) => {
                let (loss, predictions, scores) = clf.loss_predictions_and_scores(b, labels)?;
                (loss, predictions, Raw::Masked(scores))
            }
            (Head::Causal { model, .. }, Batch::Causal(rows)) => {
                let (means, sums) = candidate_mean_and_sum_scores(model.as_ref(), rows)?;
                let (loss, predictions) = loss_and_predictions_of_scores(&means, rows)?;
                (loss, predictions, Raw::Causal(sums))
            }
            _ => return Err(anyhow!("a batch was encoded for another head")),
        })
    }

    /// The training examples with indices `idx`.
    fn training_examples(&self, idx: &[usize]) -> Result<Vec<Example>> {
        idx.iter()
            .map(|&i| {
                self.train
                    .get(i)
                    .cloned()
                    .ok_or_else(|| anyhow!("training index {i} out of range"))
            })
            .collect()
    }

    /// Encode the training minibatch `batch` into the cache, unless it is there already (every
    /// forward of a step sees the same minibatch: it is encoded once).
    fn encode_train(&mut self, batch: &[usize]) -> Result<()> {
        if self.cache.as_ref().is_some_and(|(idx, _)| idx == batch) {
            return Ok(());
        }
        let encoded = self.encode(&self.training_examples(batch)?)?;
        self.cache = Some((batch.to_vec(), encoded));
        Ok(())
    }

    fn rows(batch: &Batch) -> usize {
        match batch {
            Batch::Masked(_, labels) => labels.len(),
            Batch::Causal(rows) => rows.len(),
        }
    }

    /// Evaluate a split: accuracy (the score), mean loss and macro-F1.
    pub fn evaluate_split(&self, split: Split) -> Result<Metrics> {
        let (batches, labels) = match split {
            Split::Validation => (&self.validation, &self.validation_labels),
            Split::Test => (&self.test, &self.test_labels),
        };
        if labels.is_empty() {
            bail!("the {split} split is empty");
        }
        let reference = self.references.as_ref().map(|r| match split {
            Split::Validation => &r[0],
            Split::Test => &r[1],
        });
        let mut predictions = Vec::with_capacity(labels.len());
        let mut calibrated = Vec::new();
        let mut loss = 0.0;
        let scores = match reference {
            Some(reference) => Some(self.reference_scores(reference)?),
            None => None,
        };
        // Each chunk: its mean loss, its predictions and (with calibration) its calibrated ones.
        let (rank, size) = self.comm.as_ref().map_or((0, 1), |c| (c.rank(), c.size()));
        let mut starts = Vec::with_capacity(batches.len());
        let mut at = 0;
        for b in batches {
            starts.push(at);
            at += Self::rows(b);
        }
        let mut chunks: Vec<Option<ChunkResult>> = vec![None; batches.len()];
        for (c, b) in batches.iter().enumerate() {
            if c % size != rank {
                continue;
            }
            chunks[c] = Some(match &scores {
                None => {
                    let (l, p) = self.run(b)?;
                    (l, p, Vec::new())
                }
                Some(scores) => {
                    let (l, p, raw) = self.run_raw(b)?;
                    (l, p, scores.predictions(&raw, starts[c])?)
                }
            });
        }
        if let Some(comm) = &self.comm {
            gather_chunks(comm.as_ref(), &mut chunks, batches, scores.is_some())?;
        }
        for (chunk, b) in chunks.into_iter().zip(batches) {
            let (l, p, cal) = chunk.ok_or_else(|| anyhow!("an evaluation chunk is missing"))?;
            loss += l * Self::rows(b) as f64;
            predictions.extend(p);
            calibrated.extend(cal);
        }
        let num_classes = match self.task {
            // COPA's classes are its two choices.
            Task::Copa => 2,
            t => t.num_classes(),
        };
        let mut extra = std::collections::BTreeMap::new();
        extra.insert(
            "macro_f1".to_string(),
            macro_f1(&predictions, labels, num_classes)?,
        );
        let mut forwards = batches.len() as u64;
        if let Some(reference) = reference {
            extra.insert(
                "calibrated_accuracy".to_string(),
                accuracy(&calibrated, labels)?,
            );
            extra.insert(
                "calibrated_macro_f1".to_string(),
                macro_f1(&calibrated, labels, num_classes)?,
            );
            forwards += reference.forwards() as u64;
        }
        Ok(Metrics {
            score: accuracy(&predictions, labels)?,
            loss: Some(loss / labels.len() as f64),
            forwards,
            extra,
        })
    }
}

/// One evaluated chunk of a split: its mean loss, predictions and calibrated predictions (empty
/// without calibration).
type ChunkResult = (f64, Vec<usize>, Vec<usize>);

/// Complete `chunks` (this process's `Some`) with the other processes' chunks: each process sends
/// `[loss, predictions…, calibrated predictions…]` for its chunks in order (the lengths follow
/// from the chunks' rows).
fn gather_chunks(
    comm: &dyn Communicator,
    chunks: &mut [Option<ChunkResult>],
    batches: &[Batch],
    calibrated: bool,
) -> Result<()> {
    let mut local = Vec::new();
    for (l, p, cal) in chunks.iter().flatten() {
        local.push(*l);
        local.extend(p.iter().map(|&v| v as f64));
        local.extend(cal.iter().map(|&v| v as f64));
    }
    let parts = comm.all_gather(&local)?;
    let size = comm.size();
    let mut readers: Vec<&[f64]> = parts.iter().map(Vec::as_slice).collect();
    for (c, b) in batches.iter().enumerate() {
        let r = c % size;
        let rows = PromptTask::rows(b);
        let reader = &mut readers[r];
        let need = 1 + rows + if calibrated { rows } else { 0 };
        if reader.len() < need {
            bail!("process {r} sent too few evaluation results for chunk {c}");
        }
        let (msg, rest) = reader.split_at(need);
        *reader = rest;
        if r == comm.rank() {
            continue;
        }
        let p = msg[1..1 + rows].iter().map(|&v| v as usize).collect();
        let cal = msg[1 + rows..].iter().map(|&v| v as usize).collect();
        chunks[c] = Some((msg[0], p, cal));
    }
    Ok(())
}

impl TaskModel<Weights> for PromptTask {
    fn num_train(&self) -> usize {
        self.train.len()
    }

    fn train_loss(&mut self, _params: &Weights, batch: &[usize]) -> Result<f64, ObjectiveError> {
        self.encode_train(batch).map_err(into_objective)?;
        let (_, encoded) = self
            .cache
            .as_ref()
            .ok_or_else(|| into_objective(anyhow!("the minibatch was not encoded")))?;
        match (&self.head, encoded) {
            (Head::Causal { model, .. }, Batch::Causal(rows)) if !self.train_as_classification => {
                candidate_lm_loss(model.as_ref(), rows).map_err(|e| into_objective(anyhow!(e)))
            }
            _ => self.run(encoded).map(|(l, _)| l).map_err(into_objective),
        }
    }

    fn train_terms(
        &mut self,
        _params: &Weights,
        piece: &[usize],
    ) -> Result<LossTerms, ObjectiveError> {
        let at = match self.piece_cache.iter().position(|(idx, _)| idx == piece) {
            Some(at) => at,
            None => {
                // The pieces of one minibatch are kept; a new minibatch starts afresh.
                if self.piece_cache.len() >= 64 {
                    self.piece_cache.clear();
                }
                let encoded = self
                    .training_examples(piece)
                    .and_then(|examples| self.encode(&examples))
                    .map_err(into_objective)?;
                self.piece_cache.push((piece.to_vec(), encoded));
                self.piece_cache.len() - 1
            }
        };
        let encoded = &self.piece_cache[at].1;
        let (terms, count) = match (&self.head, encoded) {
            (Head::Masked(clf), Batch::Masked(b, labels)) => (
                clf.example_losses(b, labels)
                    .map_err(|e| into_objective(anyhow!(e)))?,
                labels.len(),
            ),
            (Head::Causal { model, .. }, Batch::Causal(rows)) if !self.train_as_classification => {
                let t = candidate_lm_token_losses(model.as_ref(), rows)
                    .map_err(|e| into_objective(anyhow!(e)))?;
                let n = t.len();
                (t, n)
            }
            (Head::Causal { model, .. }, Batch::Causal(rows)) => (
                candidate_example_losses(model.as_ref(), rows)
                    .map_err(|e| into_objective(anyhow!(e)))?,
                rows.len(),
            ),
            _ => {
                return Err(into_objective(anyhow!(
                    "a batch was encoded for another head"
                )));
            }
        };
        Ok(LossTerms {
            terms,
            count: count as u64,
        })
    }

    fn evaluate(&mut self, _params: &Weights, split: Split) -> Result<Metrics, ObjectiveError> {
        self.evaluate_split(split).map_err(into_objective)
    }

    fn rows_read(
        &mut self,
        _params: &Weights,
        batch: &[usize],
    ) -> Result<RowSupport, ObjectiveError> {
        self.encode_train(batch).map_err(into_objective)?;
        let (_, encoded) = self
            .cache
            .as_ref()
            .ok_or_else(|| into_objective(anyhow!("the minibatch was not encoded")))?;
        match (&self.head, encoded) {
            (Head::Masked(clf), Batch::Masked(b, _)) => {
                clf.rows_read(b).map_err(|e| into_objective(anyhow!(e)))
            }
            _ => Err(into_objective(anyhow!(
                "train.row_sparse: row-sparse embedding probes need a masked LM (a causal LM's \
                 output head reads every vocabulary row)"
            ))),
        }
    }
}

/// A split's reference scores, from one evaluation's forwards.
enum ReferenceScores {
    /// The label words' logits for the content-free prompt.
    Masked(Vec<f32>),
    /// The candidates' summed log-likelihoods after each distinct SFC prompt, and each example's
    /// SFC prompt.
    Causal {
        distinct: Vec<Vec<f64>>,
        index: Vec<usize>,
    },
}

impl ReferenceScores {
    /// The calibrated predictions of a batch whose first example is example `start` of the split.
    fn predictions(&self, raw: &Raw, start: usize) -> Result<Vec<usize>> {
        let calibrated: Vec<Vec<f64>> = match (self, raw) {
            (ReferenceScores::Masked(reference), Raw::Masked(rows)) => rows
                .iter()
                .map(|row| content_free_scores(row, reference))
                .collect::<zo_models::Result<_>>()?,
            (ReferenceScores::Causal { distinct, index }, Raw::Causal(rows)) => rows
                .iter()
                .enumerate()
                .map(|(i, row)| {
                    let at = *index
                        .get(start + i)
                        .ok_or_else(|| anyhow!("example {} has no SFC prompt", start + i))?;
                    Ok(sfc_scores(row, &distinct[at])?)
                })
                .collect::<Result<_>>()?,
            _ => bail!("calibration scores of another head"),
        };
        Ok(calibrated.iter().map(|s| argmax(s)).collect())
    }
}

fn into_objective(e: anyhow::Error) -> ObjectiveError {
    format!("{e:#}").into()
}
