//! The run configuration: TOML presets (`configs/`) with overrides, completed over the libraries'
//! defaults (`crate::settings`), typed with the libraries' own types, and validated once into a
//! [`Resolved`] run.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use zo_data::{FEW_SHOT_SEEDS, NliTemplate, Protocol, Task};
use zo_models::{Peft, Precision};
use zo_optim::{Algorithm, Estimator, Optimizer, OptimizerConfig, Rounding, Schedule, UpdateRule};
use zo_train::TrainConfig;

use crate::settings;

/// The embedded default run (`configs/default.toml`): BSZO on SST-2 with SPLADE-tiny.
pub const DEFAULT_TOML: &str = include_str!("../../../configs/default.toml");

/// A whole run: what `cargo xtask finetune` reads from a preset and its overrides. Its sections
/// hold the libraries' own types under their own names; [`RunConfig::resolve`] validates it once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The model.
    pub model: ModelSection,
    /// The task and its data protocol.
    pub task: TaskSection,
    /// The optimizer: an algorithm, its estimator and update rule, and the learning rate.
    pub optimizer: OptimizerSection,
    /// The training loop.
    pub train: TrainSection,
    /// Where results go.
    pub output: OutputSection,
    /// What is trained: every weight (`method = "full"`, the default, left out of a written
    /// configuration), LoRA adapters (`"lora"`: `rank`, `alpha`, `targets`) or attention
    /// prefixes (`"prefix"`: `tokens`, `init`). The adapters' initial values follow
    /// `train.seed`.
    #[serde(default, skip_serializing_if = "Peft::is_full")]
    pub peft: Peft,
}

/// `[model]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A path (Hugging Face folder, `.gguf`, llama2.c `.bin`), a provisioned name (`splade-tiny`,
    /// `smollm2-135m`) or a hub name `org/name`.
    pub name: String,
    /// `masked` (prompt + label words at the mask) or `causal` (candidate log-likelihoods); `auto`
    /// picks by the checkpoint's architecture.
    #[serde(default, with = "auto_kind")]
    pub kind: Option<ModelKind>,
    /// Weight precision: `f32`, `bf16` or `f16` (stored in it, computed in f32).
    #[serde(default)]
    pub precision: Precision,
    /// How updates are written into bf16/f16 weights: `stochastic` (unbiased, keyed by the step)
    /// or `nearest`.
    #[serde(default)]
    pub rounding: Rounding,
    /// Longest prompt in tokens (special tokens included); the prompt's text is cut, never the
    /// label slot.
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// A tokenizer.json to use instead of the model's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
}

/// `[task]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSection {
    /// sst2, sst5, trec, rte, cb, snli, mnli, boolq, copa, wsc, wic.
    pub name: Task,
    /// `few_shot` (LM-BFF k-shot folders; `seed` one of 13, 21, 42, 87, 100) or `sampled`
    /// (`train` / `validation` examples sampled from the pool with `seed`; the original test set).
    pub protocol: Protocol,
    /// At most this many test examples (the first ones; for quick checks — reported results use
    /// the whole test set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_size: Option<usize>,
    /// The data folder; it must exist (default: `$ZO_DATA_DIR` if set, else `./data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Examples per evaluation forward.
    #[serde(default = "default_eval_batch")]
    pub eval_batch_size: usize,
    /// The masked-LM template of RTE, CB, SNLI and MNLI: `lm-bff` (LM-BFF's
    /// `<S1:drop-last>?[MASK], <S2:lower-first>`) or `spaced` (the BSZO authors' RoBERTa template
    /// `<S1> ? [MASK] , <S2>`).
    #[serde(default)]
    pub nli_template: NliTemplate,
    /// Causal LMs: train on the cross-entropy over the candidates' scores (`true`), or with
    /// `false` on the language-model loss of the correct candidate's tokens, as MeZO trains COPA
    /// (its `train_as_classification = false`). Evaluation always scores the candidates.
    #[serde(default = "yes")]
    pub train_as_classification: bool,
    /// Evaluation also reports calibrated scores (`Metrics.extra`: `calibrated_accuracy`,
    /// `calibrated_macro_f1`) beside the uncalibrated ones: `none` (the default) or
    /// `content_free` (surface form competition for causal LMs, content-free calibration for
    /// masked LMs; see [`Calibration`]). Training is unchanged.
    #[serde(default, skip_serializing_if = "Calibration::is_none")]
    pub calibrate: Calibration,
}

/// `task.calibrate`: which calibrated scores evaluation reports beside the uncalibrated ones.
///
/// Serialises as `none` or `content_free`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Calibration {
    /// No calibration: evaluation reports the uncalibrated metrics only.
    #[default]
    None,
    /// Each class's score measured against the prompt without the example's input: for a causal
    /// LM, surface form competition (Holtzman et al. 2021; MeZO's `--sfc`), the candidate's summed
    /// log-likelihood after the prompt minus that after the SFC prompt
    /// (`zo_data::Task::causal_sfc_prompt`); for a masked LM, content-free calibration (Zhao et
    /// al. 2021, "Calibrate Before Use"), the label word's log-probability at the mask minus that
    /// for the template with empty text slots. The argmax of the calibrated scores gives
    /// `calibrated_accuracy` and `calibrated_macro_f1`.
    ContentFree,
}

impl Calibration {
    /// Both values.
    pub const ALL: [Calibration; 2] = [Calibration::None, Calibration::ContentFree];

    /// The name (`none`, `content_free`).
    pub fn name(self) -> &'static str {
        match self {
            Calibration::None => "none",
            Calibration::ContentFree => "content_free",
        }
    }

    /// Whether this is [`Calibration::None`].
    pub fn is_none(&self) -> bool {
        *self == Calibration::None
    }
}

impl fmt::Display for Calibration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[optimizer]`: a named algorithm and its settings. In a preset, `estimator` and `rule` list
/// only what differs from the algorithm's defaults (`estimator.eps` is required) and `schedule`
/// needs only `lr`; the completed section holds every value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSection {
    /// mezo, nspsa, mezo_adam, zo_sgd_mmt, zo_sgd_sign, zo_sgd_cons, hizoo, lozo, bszo, bszo_b,
    /// fzoo.
    pub name: Algorithm,
    /// The learning-rate schedule (`kind` constant, linear or cosine; a decaying one runs over
    /// `train.steps` unless `total_steps` says otherwise).
    pub schedule: Schedule,
    /// How the descent direction is estimated (its kind is the algorithm's).
    pub estimator: Estimator,
    /// How the estimate is applied (its kind is the algorithm's).
    pub rule: UpdateRule,
}

impl OptimizerSection {
    /// `algorithm` with its default settings at perturbation scale `eps` and a constant
    /// learning rate `lr`.
    pub fn named(algorithm: Algorithm, eps: f64, lr: f64) -> Self {
        let OptimizerConfig { estimator, rule } = algorithm.config(eps);
        Self {
            name: algorithm,
            schedule: Schedule::constant(lr),
            estimator,
            rule,
        }
    }

    /// The validated optimizer.
    pub fn build(&self) -> Result<Optimizer> {
        use std::mem::discriminant;
        let expected = self.name.config(1.0);
        if discriminant(&expected.estimator) != discriminant(&self.estimator)
            || discriminant(&expected.rule) != discriminant(&self.rule)
        {
            bail!(
                "optimizer.estimator, optimizer.rule: not the kinds of estimator and rule that {} uses",
                self.name
            );
        }
        // Each part's own check first, so that an error names the table its key is in.
        let parts = [
            ("optimizer.estimator", self.estimator.validate()),
            ("optimizer.rule", self.rule.validate()),
            ("optimizer.schedule", self.schedule.validate()),
        ];
        for (table, checked) in parts {
            checked.map_err(|e| anyhow!("{table}: {e}"))?;
        }
        let config = OptimizerConfig {
            estimator: self.estimator,
            rule: self.rule,
        };
        Optimizer::new(config, self.schedule).map_err(|e| anyhow!("optimizer: {e}"))
    }
}

/// `[train]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// The step budget.
    pub steps: u64,
    /// Training examples per minibatch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Evaluate on validation every this many steps (0: only at the end).
    #[serde(default = "default_eval_every")]
    pub eval_every: u64,
    /// Stop after this many evaluations without improvement (0: never).
    #[serde(default)]
    pub patience: u64,
    /// The run seed (directions) — the minibatch order uses `seed + 1`.
    #[serde(default)]
    pub seed: u64,
    /// Write a checkpoint every this many steps (0: only at the end and on Ctrl-C).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Row-sparse embedding probes: restrict each step's directions to the rows of the
    /// embedding tables (and of a label-word head) that its minibatch reads, so that every other
    /// row, whose gradient on that minibatch is zero, is neither perturbed nor updated. The
    /// estimate stays unbiased; the published algorithms perturb every row (off). Masked LMs
    /// only; not with HiZOO.
    #[serde(default)]
    pub row_sparse: bool,
    /// Evaluate each minibatch in this many contiguous pieces, one forward each; the loss sums
    /// the per-example terms of all pieces in example order. Part of the computation (a piece's
    /// logits can differ in their last bit from the same rows in a whole-batch forward): with
    /// `--parallel data` the pieces are shared out between the processes, and a run with N
    /// processes equals the one-process run with the same `shards` bit for bit. 1: the whole
    /// minibatch in one forward.
    #[serde(default = "default_shards")]
    pub shards: usize,
}

fn default_shards() -> usize {
    1
}

/// `[output]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// The output folder (checkpoint, seed log, metrics, report, plots, weights); unset: a new
    /// folder `runs/TASK-OPTIMIZER-TIMESTAMP`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Replace an earlier run's results in `dir`.
    #[serde(default)]
    pub overwrite: bool,
    /// Draw loss and validation plots (PNG and SVG).
    #[serde(default = "yes")]
    pub plots: bool,
    /// Write the best weights to `best.safetensors`.
    #[serde(default)]
    pub export: bool,
}

fn default_max_length() -> usize {
    128
}
fn default_eval_batch() -> usize {
    64
}
fn default_batch() -> usize {
    16
}
fn default_eval_every() -> u64 {
    100
}
fn default_checkpoint_every() -> u64 {
    100
}
fn yes() -> bool {
    true
}

/// Which prompt head the model uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Masked LM: prompt with a mask, label words' logits.
    Masked,
    /// Causal LM: candidate continuations' log-likelihoods.
    Causal,
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Masked => "masked",
            Self::Causal => "causal",
        })
    }
}

/// The validated pieces of a [`RunConfig`].
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The task.
    pub task: Task,
    /// The data protocol.
    pub protocol: Protocol,
    /// The requested head (`None`: auto).
    pub kind: Option<ModelKind>,
    /// The masked-LM template of the entailment tasks.
    pub nli_template: NliTemplate,
    /// Train a causal LM on the candidate cross-entropy (`true`) or the language-model loss.
    pub train_as_classification: bool,
    /// The calibrated scores evaluation also reports.
    pub calibrate: Calibration,
    /// The weights' precision.
    pub precision: Precision,
    /// What is trained.
    pub peft: Peft,
    /// The optimizer.
    pub optimizer: Optimizer,
    /// The loop's settings.
    pub train: TrainConfig,
}

impl RunConfig {
    /// Parse a preset; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        Self::from_document(settings::parse(text, origin)?, origin)
    }

    /// A preset document (with any overrides applied), completed over the libraries' defaults
    /// and typed. An error names the key; one about the whole document (a missing section) names
    /// `origin`, the preset.
    pub fn from_document(mut doc: toml::Table, origin: &str) -> Result<Self> {
        settings::complete(&mut doc)?;
        settings::typed(&toml::Value::Table(doc), "").map_err(|e| {
            match e.to_string().strip_prefix("the configuration: ") {
                Some(rest) => anyhow!("{origin}: {rest}"),
                None => e,
            }
        })
    }

    /// The embedded default.
    pub fn embedded_default() -> Self {
        Self::from_toml(DEFAULT_TOML, "configs/default.toml")
            .expect("the embedded default preset parses (checked by a test)")
    }

    /// Read a preset file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_document(Self::document(path)?, &path.display().to_string())
    }

    /// A preset file's document, not yet completed.
    pub fn document(path: &Path) -> Result<toml::Table> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        settings::parse(&text, &path.display().to_string())
    }

    /// As TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a run config serialises to TOML")
    }

    /// Validate everything and build the optimizer and loop settings.
    pub fn resolve(&self) -> Result<Resolved> {
        let task = self.task.name;
        let protocol = self.task.protocol;
        match protocol {
            Protocol::FewShot { seed } => {
                if !FEW_SHOT_SEEDS.contains(&seed) {
                    bail!(
                        "task.protocol.seed: {seed} is not an LM-BFF data seed (expected one of {FEW_SHOT_SEEDS:?})"
                    );
                }
            }
            Protocol::Sampled {
                train, validation, ..
            } => {
                if train == 0 || validation == 0 {
                    bail!("task.protocol.train and task.protocol.validation must be at least 1");
                }
            }
        }
        if self.task.test_size == Some(0) {
            bail!("task.test_size must be at least 1");
        }
        if self.task.eval_batch_size == 0 {
            bail!("task.eval_batch_size must be at least 1");
        }
        let kind = self.model.kind;
        if !self.task.train_as_classification && kind == Some(ModelKind::Masked) {
            bail!(
                "task.train_as_classification = false needs a causal LM (a masked LM has no language-model loss)"
            );
        }
        if self.model.max_length < 8 {
            bail!(
                "model.max_length: {} is too short (at least 8 tokens)",
                self.model.max_length
            );
        }
        let optimizer = self.optimizer.build()?;
        let train = TrainConfig {
            max_steps: self.train.steps,
            batch_size: self.train.batch_size,
            data_seed: self.train.seed.wrapping_add(1),
            eval_every: self.train.eval_every,
            patience: (self.train.patience > 0).then_some(self.train.patience),
            checkpoint_every: self.train.checkpoint_every,
            row_sparse: self.train.row_sparse,
            shards: self.train.shards,
        };
        train.validate().map_err(|e| anyhow!("train: {e}"))?;
        if train.row_sparse {
            optimizer
                .config()
                .validate_row_sparse()
                .map_err(|e| anyhow!("train.row_sparse: {e}"))?;
        }
        if self.train.steps == 0 {
            bail!("train.steps must be at least 1");
        }
        self.peft.validate().map_err(|e| anyhow!("{e}"))?;
        if train.row_sparse && !self.peft.is_full() {
            bail!(
                "train.row_sparse: restricts the embedding tables' directions, which only full fine-tuning trains (peft.method = {})",
                self.peft.method()
            );
        }
        Ok(Resolved {
            task,
            protocol,
            kind,
            nli_template: self.task.nli_template,
            train_as_classification: self.task.train_as_classification,
            calibrate: self.task.calibrate,
            precision: self.model.precision,
            peft: self.peft.clone(),
            optimizer,
            train,
        })
    }
}

/// `model.kind`: `auto` (None), `masked` or `causal`.
mod auto_kind {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ModelKind;

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Choice {
        Auto,
        Masked,
        Causal,
    }

    pub fn serialize<S: Serializer>(kind: &Option<ModelKind>, s: S) -> Result<S::Ok, S::Error> {
        match kind {
            None => Choice::Auto,
            Some(ModelKind::Masked) => Choice::Masked,
            Some(ModelKind::Causal) => Choice::Causal,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ModelKind>, D::Error> {
        Ok(match Choice::deserialize(d)? {
            Choice::Auto => None,
            Choice::Masked => Some(ModelKind::Masked),
            Choice::Causal => Some(ModelKind::Causal),
        })
    }
}
