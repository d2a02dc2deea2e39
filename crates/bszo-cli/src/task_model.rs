//! The task models: a zo-models prompt head joined with zo-data splits, as a zo-train
//! [`TaskModel`] over the model's [`Weights`].

use anyhow::{Context, Result, anyhow, bail};
use zo_data::{Example, Splits, Task, accuracy, macro_f1};
use zo_models::causal::{CandidateExample, candidate_lm_loss, candidate_loss_and_predictions};
use zo_models::masked::{MaskedLmClassifier, PromptBatch};
use zo_models::{CausalLm, Llama2cTokenizer, Tokenizer, Weights};
use zo_optim::ObjectiveError;
use zo_train::{Metrics, Split, TaskModel};

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
    train_as_classification: bool,
}

impl PromptTask {
    /// Encode the validation and test splits in chunks of `eval_batch` examples.
    pub fn new(head: Head, splits: Splits, eval_batch: usize) -> Result<Self> {
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
            train_as_classification: true,
        };
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
        let mut predictions = Vec::with_capacity(labels.len());
        let mut loss = 0.0;
        for b in batches {
            let (l, p) = self.run(b)?;
            loss += l * Self::rows(b) as f64;
            predictions.extend(p);
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
        Ok(Metrics {
            score: accuracy(&predictions, labels)?,
            loss: Some(loss / labels.len() as f64),
            forwards: batches.len() as u64,
            extra,
        })
    }
}

impl TaskModel<Weights> for PromptTask {
    fn num_train(&self) -> usize {
        self.train.len()
    }

    fn train_loss(&mut self, _params: &Weights, batch: &[usize]) -> Result<f64, ObjectiveError> {
        // Every forward of a step sees the same minibatch: encode it once.
        let hit = self.cache.as_ref().is_some_and(|(idx, _)| idx == batch);
        if !hit {
            let examples: Vec<Example> = batch
                .iter()
                .map(|&i| {
                    self.train
                        .get(i)
                        .cloned()
                        .ok_or_else(|| anyhow!("training index {i} out of range"))
                })
                .collect::<Result<_>>()
                .map_err(into_objective)?;
            let encoded = self.encode(&examples).map_err(into_objective)?;
            self.cache = Some((batch.to_vec(), encoded));
        }
        let (_, encoded) = self.cache.as_ref().expect("cached above");
        match (&self.head, encoded) {
            (Head::Causal { model, .. }, Batch::Causal(rows)) if !self.train_as_classification => {
                candidate_lm_loss(model.as_ref(), rows).map_err(|e| into_objective(anyhow!(e)))
            }
            _ => self.run(encoded).map(|(l, _)| l).map_err(into_objective),
        }
    }

    fn evaluate(&mut self, _params: &Weights, split: Split) -> Result<Metrics, ObjectiveError> {
        self.evaluate_split(split).map_err(into_objective)
    }
}

fn into_objective(e: anyhow::Error) -> ObjectiveError {
    format!("{e:#}").into()
}
