//! Prompt-based classification with a causal language model: each example is a context and a set
//! of candidate continuations (e.g. SST-2 `<S> It was` with ` terrible` | ` great`).
//!
//! A candidate's score is its log-likelihood given the context, averaged over its tokens (so
//! single- and multi-token candidates compare on the same scale). The training loss is the
//! cross-entropy of the label under the softmax of the candidates' scores (in f64), averaged over
//! the examples; the prediction is the highest-scoring candidate. All (context + candidate)
//! sequences of a batch run as one right-padded forward (candidates whose inputs are a prefix of
//! another's sequence, such as one-token candidates, share its run), and the LM head is applied
//! only at the positions that predict candidate tokens.

use candle_core::{D, DType, Device, Tensor};
use zo_optim::{Objective, ObjectiveError};

use crate::error::{ModelError, Result};
use crate::weights::Weights;

/// A causal language model with a forward pass over right-padded batches.
pub trait CausalLm {
    /// Final hidden states `[b, s, hidden]` (what feeds the LM head) for `input_ids [b, s]` (u32)
    /// and `attention_mask [b, s]` (1 for real tokens).
    fn hidden_states(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor>;

    /// The LM head: `[…, hidden]` → logits `[…, vocab]` in f32.
    fn head(&self, hidden: &Tensor) -> Result<Tensor>;

    /// The vocabulary size.
    fn vocab_size(&self) -> usize;

    /// Logits `[b, s, vocab]` (f32) at every position; those at padded positions are meaningless.
    fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        self.head(&self.hidden_states(input_ids, attention_mask)?)
    }
}

/// Greedy decoding: append the most likely next token `max_new_tokens` times (stopping after
/// `eos`), re-running the whole forward on the growing sequence. Returns the new tokens only.
pub fn generate_greedy<M: CausalLm + ?Sized>(
    model: &M,
    prompt: &[u32],
    max_new_tokens: usize,
    eos: Option<u32>,
) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        return Err(ModelError::Config {
            field: "prompt".into(),
            message: "the prompt is empty".into(),
        });
    }
    let mut seq = prompt.to_vec();
    let mut out = Vec::with_capacity(max_new_tokens);
    for _ in 0..max_new_tokens {
        let n = seq.len();
        let ids = Tensor::from_slice(&seq, (1, n), &Device::Cpu)?;
        let mask = Tensor::ones((1, n), DType::U32, &Device::Cpu)?;
        let hidden = model.hidden_states(&ids, &mask)?;
        let last = hidden.narrow(1, n - 1, 1)?;
        let logits = model.head(&last)?.flatten_all()?;
        let next = logits.argmax(0)?.to_scalar::<u32>()?;
        seq.push(next);
        out.push(next);
        if Some(next) == eos {
            break;
        }
    }
    Ok(out)
}

/// One classification example: a tokenised context, tokenised candidate continuations and the
/// index of the correct candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CandidateExample {
    /// The context tokens (non-empty; include BOS if the model expects one).
    pub context: Vec<u32>,
    /// The candidates' tokens (each non-empty).
    pub candidates: Vec<Vec<u32>>,
    /// The index of the correct candidate.
    pub label: usize,
}

/// Check an example's shape (non-empty context and candidates, label in range).
fn check_example(e: usize, ex: &CandidateExample) -> Result<()> {
    if ex.context.is_empty() {
        return Err(ModelError::Config {
            field: format!("examples[{e}].context"),
            message: "empty context".into(),
        });
    }
    if ex.candidates.is_empty() {
        return Err(ModelError::Config {
            field: format!("examples[{e}].candidates"),
            message: "no candidates".into(),
        });
    }
    if ex.label >= ex.candidates.len() {
        return Err(ModelError::Config {
            field: format!("examples[{e}].label"),
            message: format!("label {} with {} candidates", ex.label, ex.candidates.len()),
        });
    }
    if let Some(c) = ex.candidates.iter().position(Vec::is_empty) {
        return Err(ModelError::Config {
            field: format!("examples[{e}].candidates[{c}]"),
            message: "empty candidate".into(),
        });
    }
    Ok(())
}

/// The log-probability (f32) of each continuation token of each (context, continuation) pair,
/// computed with one right-padded forward.
///
/// A pair needs the hidden states of its context followed by all but the last continuation
/// token (the last token is only a target). Under causal attention those states depend on that
/// prefix alone, so a pair whose needed prefix starts another pair's sequence is read from that
/// sequence: SST-2's two one-token candidates share one run of their context, which halves the
/// forward's cost. Sequences are chosen longest first; each pair's rows keep the pairs' order.
fn continuation_logprobs<M: CausalLm + ?Sized>(
    model: &M,
    pairs: &[(&[u32], &[u32])],
) -> Result<Vec<Vec<f32>>> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let vocab = model.vocab_size();
    if let Some(&bad) = pairs
        .iter()
        .flat_map(|(ctx, cont)| ctx.iter().chain(cont.iter()))
        .find(|&&t| t as usize >= vocab)
    {
        return Err(ModelError::Config {
            field: "examples".into(),
            message: format!("token id {bad} >= vocab size {vocab}"),
        });
    }
    let needed: Vec<Vec<u32>> = pairs
        .iter()
        .map(|(ctx, cont)| {
            let inputs = &cont[..cont.len().saturating_sub(1)];
            ctx.iter().chain(inputs).copied().collect()
        })
        .collect();
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(needed[i].len()));
    let mut runs: Vec<usize> = Vec::new(); // the pair whose needed prefix each sequence is
    let mut host = vec![0usize; pairs.len()];
    for &i in &order {
        host[i] = match runs.iter().position(|&s| needed[s].starts_with(&needed[i])) {
            Some(k) => k,
            None => {
                runs.push(i);
                runs.len() - 1
            }
        };
    }
    let len = runs.iter().map(|&s| needed[s].len()).max().unwrap_or(0);
    let r = runs.len();
    let mut ids = vec![0u32; r * len];
    let mut mask = vec![0u32; r * len];
    for (k, &s) in runs.iter().enumerate() {
        let seq = &needed[s];
        ids[k * len..k * len + seq.len()].copy_from_slice(seq);
        mask[k * len..k * len + seq.len()].fill(1);
    }
    let mut gather = Vec::new(); // flat position whose hidden state predicts a continuation token
    let mut targets = Vec::new();
    for (i, (ctx, cont)) in pairs.iter().enumerate() {
        for (j, &token) in cont.iter().enumerate() {
            gather.push((host[i] * len + ctx.len() - 1 + j) as u32);
            targets.push(token);
        }
    }
    let dev = Device::Cpu;
    let ids = Tensor::from_vec(ids, (r, len), &dev)?;
    let mask = Tensor::from_vec(mask, (r, len), &dev)?;
    let hidden = model.hidden_states(&ids, &mask)?;
    let width = hidden.dim(D::Minus1)?;
    let picked = hidden
        .reshape((r * len, width))?
        .index_select(&Tensor::new(gather.as_slice(), &dev)?, 0)?;
    let logp = candle_nn::ops::log_softmax(&model.head(&picked)?.to_dtype(DType::F32)?, D::Minus1)?;
    let n = targets.len();
    let tok = logp
        .gather(&Tensor::from_vec(targets, (n, 1), &dev)?, 1)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut at = 0;
    Ok(pairs
        .iter()
        .map(|(_, cont)| {
            let row = tok[at..at + cont.len()].to_vec();
            at += cont.len();
            row
        })
        .collect())
}

/// The log-probability (f32) of each token of every candidate of every example, computed with
/// one right-padded forward over all (context + candidate) sequences.
fn candidate_token_logprobs<M: CausalLm + ?Sized>(
    model: &M,
    examples: &[CandidateExample],
) -> Result<Vec<Vec<Vec<f32>>>> {
    let mut pairs: Vec<(&[u32], &[u32])> = Vec::new();
    for (e, ex) in examples.iter().enumerate() {
        check_example(e, ex)?;
        for cand in &ex.candidates {
            pairs.push((&ex.context, cand));
        }
    }
    let mut rows = continuation_logprobs(model, &pairs)?.into_iter();
    Ok(examples
        .iter()
        .map(|ex| rows.by_ref().take(ex.candidates.len()).collect())
        .collect())
}

/// A candidate's mean token log-likelihood (f64).
fn mean_logprob(row: &[f32]) -> f64 {
    row.iter().map(|&v| f64::from(v)).sum::<f64>() / row.len() as f64
}

/// A candidate's summed token log-likelihood (f64).
fn sum_logprob(row: &[f32]) -> f64 {
    row.iter().map(|&v| f64::from(v)).sum::<f64>()
}

/// The mean per-token log-likelihood of every candidate of every example (f64), computed with one
/// right-padded forward over all (context + candidate) sequences.
pub fn candidate_scores<M: CausalLm + ?Sized>(
    model: &M,
    examples: &[CandidateExample],
) -> Result<Vec<Vec<f64>>> {
    Ok(candidate_token_logprobs(model, examples)?
        .iter()
        .map(|ex| ex.iter().map(|row| mean_logprob(row)).collect())
        .collect())
}

/// The summed token log-likelihood `Σ log p(candidate's tokens | context)` of every candidate of
/// every example (f64), from one forward: what surface-form-competition calibration compares
/// ([`crate::calibration::sfc_scores`]).
pub fn candidate_logprob_sums<M: CausalLm + ?Sized>(
    model: &M,
    examples: &[CandidateExample],
) -> Result<Vec<Vec<f64>>> {
    Ok(candidate_token_logprobs(model, examples)?
        .iter()
        .map(|ex| ex.iter().map(|row| sum_logprob(row)).collect())
        .collect())
}

/// Scores by example, then by candidate.
pub type ScoreRows = Vec<Vec<f64>>;

/// Both [`candidate_scores`] (the means) and [`candidate_logprob_sums`] (the sums), from one
/// forward.
pub fn candidate_mean_and_sum_scores<M: CausalLm + ?Sized>(
    model: &M,
    examples: &[CandidateExample],
) -> Result<(ScoreRows, ScoreRows)> {
    let logprobs = candidate_token_logprobs(model, examples)?;
    let means = logprobs
        .iter()
        .map(|ex| ex.iter().map(|row| mean_logprob(row)).collect())
        .collect();
    let sums = logprobs
        .iter()
        .map(|ex| ex.iter().map(|row| sum_logprob(row)).collect())
        .collect();
    Ok((means, sums))
}

/// The language-model loss on the correct candidates: the negative log-likelihood of each correct
/// candidate's tokens given its context, averaged over all those tokens of the batch (f64). This is
/// MeZO's training loss with `train_as_classification = false` (princeton-nlp/MeZO
/// `large_models/run.py` `_convert`, `only_train_option`, and `large_models/utils.py`
/// `forward_wrap_with_option_len`: a token-level cross-entropy over the option tokens); only the
/// correct candidates are run.
pub fn candidate_lm_loss<M: CausalLm + ?Sized>(
    model: &M,
    examples: &[CandidateExample],
) -> Result<f64> {
    let terms = candidate_lm_token_losses(model, examples)?;
    let mut total = 0.0;
    for t in &terms {
        total += *t;
    }
    Ok(total / terms.len() as f64)
}

/// The terms of [`candidate_lm_loss`]: the negative log-likelihood (f64) of every token of every
/// correct candidate, example by example; the loss is their sum (from 0, in order) divided by
/// their number — so a batch's loss can be assembled from the terms of its pieces.
pub fn candidate_lm_token_losses<M: CausalLm + ?Sized>(
    model: &M,
    examples: &[CandidateExample],
) -> Result<Vec<f64>> {
    non_empty(examples)?;
    let mut pairs: Vec<(&[u32], &[u32])> = Vec::with_capacity(examples.len());
    for (e, ex) in examples.iter().enumerate() {
        check_example(e, ex)?;
        pairs.push((&ex.context, &ex.candidates[ex.label]));
    }
    let logprobs = continuation_logprobs(model, &pairs)?;
    Ok(logprobs.iter().flatten().map(|&v| -f64::from(v)).collect())
}

/// An error for an empty batch of examples.
fn non_empty(examples: &[CandidateExample]) -> Result<()> {
    if examples.is_empty() {
        return Err(ModelError::Config {
            field: "examples".into(),
            message: "empty batch".into(),
        });
    }
    Ok(())
}

/// Cross-entropy of `label` under the softmax of `scores` (f64).
pub fn cross_entropy(scores: &[f64], label: usize) -> Result<f64> {
    let Some(&target) = scores.get(label) else {
        return Err(ModelError::Config {
            field: "label".into(),
            message: format!("label {label} with {} scores", scores.len()),
        });
    };
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + scores.iter().map(|s| (s - max).exp()).sum::<f64>().ln();
    Ok(lse - target)
}

/// The index of the highest score (the first on ties).
pub fn argmax(scores: &[f64]) -> usize {
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = i;
        }
    }
    best
}

/// The mean cross-entropy loss over `examples` and the predicted candidate of each.
pub fn candidate_loss_and_predictions<M: CausalLm + ?Sized>(
    model: &M,
    examples: &[CandidateExample],
) -> Result<(f64, Vec<usize>)> {
    non_empty(examples)?;
    let scores = candidate_scores(model, examples)?;
    loss_and_predictions_of_scores(&scores, examples)
}

/// The mean cross-entropy loss of the examples' labels under `scores` (one row per example, e.g.
/// from [`candidate_scores`]) and the argmax of each row: what
/// [`candidate_loss_and_predictions`] computes after its forward.
pub fn loss_and_predictions_of_scores(
    scores: &[Vec<f64>],
    examples: &[CandidateExample],
) -> Result<(f64, Vec<usize>)> {
    if examples.is_empty() || scores.len() != examples.len() {
        return Err(ModelError::Config {
            field: "examples".into(),
            message: format!(
                "{} score rows for {} examples",
                scores.len(),
                examples.len()
            ),
        });
    }
    let mut total = 0.0;
    for (s, ex) in scores.iter().zip(examples) {
        total += cross_entropy(s, ex.label)?;
    }
    let loss = total / examples.len() as f64;
    Ok((loss, scores.iter().map(|s| argmax(s)).collect()))
}

/// The cross-entropy of each example's label under its candidates' mean log-likelihoods (f64),
/// from one forward: the terms of [`candidate_loss`] (their sum from 0 in order, divided by
/// their number).
pub fn candidate_example_losses<M: CausalLm + ?Sized>(
    model: &M,
    examples: &[CandidateExample],
) -> Result<Vec<f64>> {
    non_empty(examples)?;
    let scores = candidate_scores(model, examples)?;
    scores
        .iter()
        .zip(examples)
        .map(|(s, ex)| cross_entropy(s, ex.label))
        .collect()
}

/// The mean cross-entropy loss over `examples`.
pub fn candidate_loss<M: CausalLm + ?Sized>(
    model: &M,
    examples: &[CandidateExample],
) -> Result<f64> {
    Ok(candidate_loss_and_predictions(model, examples)?.0)
}

/// The predicted candidate of each example.
pub fn predict<M: CausalLm + ?Sized>(
    model: &M,
    examples: &[CandidateExample],
) -> Result<Vec<usize>> {
    Ok(candidate_scores(model, examples)?
        .iter()
        .map(|s| argmax(s))
        .collect())
}

/// A zeroth-order objective: the candidate cross-entropy of a model on the current minibatch. The
/// model holds clones of the [`Weights`]' tensors, so the loss sees every in-place perturbation.
#[derive(Debug)]
pub struct CandidateObjective<'m, M: ?Sized> {
    model: &'m M,
    batch: Vec<CandidateExample>,
}

impl<'m, M: CausalLm + ?Sized> CandidateObjective<'m, M> {
    /// An objective on `model` with an initial minibatch.
    pub fn new(model: &'m M, batch: Vec<CandidateExample>) -> Self {
        Self { model, batch }
    }

    /// Replace the minibatch (between optimizer steps).
    pub fn set_batch(&mut self, batch: Vec<CandidateExample>) {
        self.batch = batch;
    }

    /// The current minibatch.
    pub fn batch(&self) -> &[CandidateExample] {
        &self.batch
    }
}

impl<M: CausalLm + ?Sized> Objective<Weights> for CandidateObjective<'_, M> {
    fn loss(&mut self, _params: &Weights) -> Result<f64, ObjectiveError> {
        candidate_loss(self.model, &self.batch).map_err(|e| Box::new(e) as ObjectiveError)
    }
}

/// The keys and values of each layer for one sequence, `[s, kv_width]`, as a model's forward
/// collects them with its prefixes left out.
pub(crate) type Capture = Vec<(Tensor, Tensor)>;

/// Set each layer's prefix to the keys and values of `tokens` (MeZO's initialisation from real
/// activations): `run` computes the forward of `ids`, `mask` (`[1, n]` u32, no padding) without
/// prefixes, collecting each layer's keys and values; `prefixes` are the layers' prefixes in order.
pub(crate) fn init_prefixes<'p>(
    tokens: &[u32],
    run: impl FnOnce(&Tensor, &Tensor, &mut Capture) -> Result<()>,
    prefixes: impl Iterator<Item = Option<&'p crate::param::Prefix>>,
) -> Result<()> {
    let n = tokens.len();
    let ids = Tensor::from_vec(tokens.to_vec(), (1, n), &candle_core::Device::Cpu)?;
    let mask = Tensor::ones((1, n), candle_core::DType::U32, &candle_core::Device::Cpu)?;
    let mut capture = Capture::new();
    run(&ids, &mask, &mut capture)?;
    for (prefix, (k, v)) in prefixes.zip(&capture) {
        if let Some(prefix) = prefix {
            prefix.overwrite(k, v)?;
        }
    }
    Ok(())
}

/// Load a causal language model by path: a `.gguf` file, a llama2.c `.bin` file, or a local Hugging
/// Face folder whose `config.json` has `model_type` `opt`, `llama` or `mistral`. Returns the model
/// and its trainable weights. A path that does not exist is a [`ModelError::Io`] naming it (model
/// names are not resolved on the Hugging Face hub).
///
/// `load` is a [`Precision`](crate::Precision) or a [`Load`](crate::adapters::Load) (precision
/// and adapters).
pub fn load_causal_lm(
    path: &std::path::Path,
    load: impl Into<crate::adapters::Load>,
) -> Result<(Box<dyn CausalLm + Send + Sync>, Weights)> {
    let precision = load.into();
    #[derive(serde::Deserialize)]
    struct Kind {
        #[serde(default)]
        model_type: Option<String>,
    }
    if !path.exists() {
        return Err(ModelError::not_found(
            path,
            "model path not found (only local folders and files are supported)",
        ));
    }
    if path.is_file() {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        return match ext.as_str() {
            "gguf" => {
                let m = crate::gguf::load_gguf(path, precision)?;
                Ok((Box::new(m.model), m.weights))
            }
            "bin" => {
                let m = crate::llama2c::load_llama2c(path, precision)?;
                Ok((Box::new(m.model), m.weights))
            }
            _ => Err(ModelError::Malformed {
                path: path.to_path_buf(),
                message: "expected a .gguf file, a llama2.c .bin file or a model folder".into(),
            }),
        };
    }
    let config = path.join("config.json");
    let kind: Kind = crate::loading::read_json(&config)?;
    match kind.model_type.as_deref() {
        Some("opt") => {
            let (m, w) = crate::opt::Opt::from_hf_folder(path, precision)?;
            Ok((Box::new(m), w))
        }
        Some("llama" | "mistral") => {
            let (m, w) = crate::llama::Llama::from_hf_folder(path, precision)?;
            Ok((Box::new(m), w))
        }
        other => Err(ModelError::Config {
            field: "model_type".into(),
            message: format!(
                "{}: unsupported causal LM type {other:?} (opt, llama, mistral)",
                config.display()
            ),
        }),
    }
}
