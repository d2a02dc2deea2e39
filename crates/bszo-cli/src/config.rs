//! The run configuration: TOML presets (`configs/`), overridden by flags, resolved once into a
//! validated optimizer, training settings and data protocol.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use zo_data::{FEW_SHOT_SEEDS, NliTemplate, Protocol, Task};
use zo_models::Precision;
use zo_optim::{
    Algorithm, Difference, Distribution, Estimator, ExtraSample, KalmanSubspace, NoiseUpdate,
    Optimizer, Schedule, SignMode, UpdateRule, Variance,
};
use zo_train::TrainConfig;

/// The embedded default run (`configs/default.toml`): BSZO on SST-2 with SPLADE-tiny.
pub const DEFAULT_TOML: &str = include_str!("../../../configs/default.toml");

/// A whole run: what `cargo xtask finetune` reads from a preset and its flags.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The model.
    pub model: ModelSection,
    /// The task and its data protocol.
    pub task: TaskSection,
    /// The optimizer and its hyper-parameters.
    pub optimizer: OptimizerSection,
    /// The training loop.
    pub train: TrainSection,
    /// Where results go.
    pub output: OutputSection,
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
    #[serde(default = "auto")]
    pub kind: String,
    /// Weight precision: f32, bf16 or f16.
    #[serde(default = "f32_name")]
    pub precision: String,
    /// Longest prompt in tokens (special tokens included); the prompt's text is cut, never the
    /// label slot.
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// A tokenizer.json to use instead of the model's own.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
}

/// `[task]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSection {
    /// sst2, sst5, trec, rte, cb, snli, mnli, boolq, copa, wsc, wic.
    pub name: String,
    /// `few-shot` (LM-BFF k-shot folders) or `sampled` (1000 train / 500 validation / original test).
    #[serde(default = "few_shot_name")]
    pub protocol: String,
    /// The data seed: for `few-shot` one of 13, 21, 42, 87, 100; for `sampled` any integer.
    #[serde(default = "default_data_seed")]
    pub data_seed: u64,
    /// For `sampled`: at most this many training examples (default: the specification's).
    #[serde(default)]
    pub train_size: Option<usize>,
    /// For `sampled`: at most this many validation examples (default: the specification's).
    #[serde(default)]
    pub validation_size: Option<usize>,
    /// At most this many test examples (the first ones; for quick checks — reported results use
    /// the whole test set).
    #[serde(default)]
    pub test_size: Option<usize>,
    /// The data folder; it must exist (default: `$ZO_DATA_DIR` if set, else `./data`).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Examples per evaluation forward.
    #[serde(default = "default_eval_batch")]
    pub eval_batch_size: usize,
    /// The masked-LM template of RTE, CB, SNLI and MNLI: `lm-bff` (LM-BFF's
    /// `<S1:drop-last>?[MASK], <S2:lower-first>`) or `spaced` (the BSZO authors' RoBERTa template
    /// `<S1> ? [MASK] , <S2>`).
    #[serde(default = "lm_bff_name")]
    pub nli_template: String,
    /// Causal LMs: train on the cross-entropy over the candidates' scores (`true`), or with
    /// `false` on the language-model loss of the correct candidate's tokens, as MeZO trains COPA
    /// (its `train_as_classification = false`). Evaluation always scores the candidates.
    #[serde(default = "yes")]
    pub train_as_classification: bool,
}

/// `[optimizer]`: the algorithm and any hyper-parameter of the specification; unset values take
/// the algorithm's defaults. Setting one that the algorithm does not have is an error.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSection {
    /// mezo, nspsa, mezo_adam, zo_sgd_mmt, zo_sgd_sign, zo_sgd_cons, hizoo, lozo, bszo, bszo_b.
    pub name: String,
    /// Learning rate η.
    pub lr: f64,
    /// Perturbation scale ε (HiZOO's μ).
    pub eps: f64,
    /// Learning-rate schedule: constant, linear or cosine (decaying to `end_lr` over the step budget).
    #[serde(default)]
    pub schedule: Option<String>,
    /// The schedule's final learning rate (linear, cosine).
    #[serde(default)]
    pub end_lr: Option<f64>,
    /// Weight decay λ (SGD, momentum, sign, Adam).
    #[serde(default)]
    pub weight_decay: Option<f64>,
    /// SPSA: directions averaged per step.
    #[serde(default)]
    pub samples: Option<usize>,
    /// SPSA: one-sided differences.
    #[serde(default)]
    pub one_sided: Option<bool>,
    /// SPSA: direction distribution, normal or rademacher.
    #[serde(default)]
    pub distribution: Option<String>,
    /// Momentum β (zo_sgd_mmt).
    #[serde(default)]
    pub momentum: Option<f64>,
    /// Adam β₁.
    #[serde(default)]
    pub beta1: Option<f64>,
    /// Adam β₂.
    #[serde(default)]
    pub beta2: Option<f64>,
    /// Adam's denominator ε.
    #[serde(default)]
    pub adam_eps: Option<f64>,
    /// Sign descent: `coefficient` (sign of each projected gradient) or `elementwise`.
    #[serde(default)]
    pub sign_mode: Option<String>,
    /// HiZOO: curvature EMA weight α (default 1e-8·(ε/1e-3)²).
    #[serde(default)]
    pub hizoo_alpha: Option<f64>,
    /// HiZOO: a fourth forward after the update, only to log the loss there.
    #[serde(default)]
    pub log_loss_after_update: Option<bool>,
    /// LOZO: rank r.
    #[serde(default)]
    pub rank: Option<u32>,
    /// LOZO: V is redrawn every this many steps (ν).
    #[serde(default)]
    pub interval: Option<u64>,
    /// BSZO: subspace dimension k.
    #[serde(default)]
    pub k: Option<usize>,
    /// BSZO: observations per step m ≥ k.
    #[serde(default)]
    pub m: Option<usize>,
    /// BSZO: noise EMA weight α.
    #[serde(default)]
    pub noise_ema: Option<f64>,
    /// BSZO: prior variance σ_p², `auto` (n·1e-6) or a number.
    #[serde(default)]
    pub prior_variance: Option<VarianceSetting>,
    /// BSZO: initial noise variance σ_e,init², `auto` (n·1e-6) or a number.
    #[serde(default)]
    pub noise_variance: Option<VarianceSetting>,
    /// BSZO: floor of σ_e as a fraction of σ_e,init.
    #[serde(default)]
    pub noise_floor: Option<f64>,
    /// BSZO: where σ_e is updated, every_observation or extra_samples_only.
    #[serde(default)]
    pub noise_update: Option<String>,
    /// BSZO: diagonal jitter added to the posterior covariance.
    #[serde(default)]
    pub jitter: Option<f64>,
    /// BSZO: observations beyond the first k: `cached` (bszo), `fresh` (bszo_b: the posterior's
    /// principal direction) or `requery` (a fresh forward along axis τ mod k).
    #[serde(default)]
    pub extra_sample: Option<String>,
    /// BSZO: `one_sided` or `central` finite differences.
    #[serde(default)]
    pub difference: Option<String>,
}

/// A variance: `"auto"` or a number.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VarianceSetting {
    /// A number.
    Value(f64),
    /// `"auto"`.
    Named(AutoName),
}

/// The word `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoName {
    /// `auto`.
    Auto,
}

impl VarianceSetting {
    fn to_variance(self) -> Variance {
        match self {
            Self::Value(v) => Variance::Value(v),
            Self::Named(AutoName::Auto) => Variance::Auto,
        }
    }
}

impl std::str::FromStr for VarianceSetting {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Self::Named(AutoName::Auto));
        }
        s.parse::<f64>()
            .map(Self::Value)
            .map_err(|_| format!("`{s}` is neither `auto` nor a number"))
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

fn auto() -> String {
    "auto".into()
}
fn f32_name() -> String {
    "f32".into()
}
fn lm_bff_name() -> String {
    NliTemplate::default().name().into()
}
fn few_shot_name() -> String {
    "few-shot".into()
}
fn default_max_length() -> usize {
    128
}
fn default_data_seed() -> u64 {
    42
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
    /// The weights' precision.
    pub precision: Precision,
    /// The optimizer.
    pub optimizer: Optimizer,
    /// The loop's settings.
    pub train: TrainConfig,
}

impl RunConfig {
    /// Parse a preset; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| anyhow!("{origin}: {}", one_line(&e.to_string())))
    }

    /// The embedded default.
    pub fn embedded_default() -> Self {
        Self::from_toml(DEFAULT_TOML, "configs/default.toml")
            .expect("the embedded default preset parses (checked by a test)")
    }

    /// Read a preset file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// As TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a run config serialises to TOML")
    }

    /// Validate everything and build the optimizer, loop settings and protocol.
    pub fn resolve(&self) -> Result<Resolved> {
        let task = Task::from_name(&self.task.name).map_err(|e| anyhow!("task.name: {e}"))?;
        let protocol = match self
            .task
            .protocol
            .replace('_', "-")
            .to_ascii_lowercase()
            .as_str()
        {
            "few-shot" | "fewshot" => {
                if !FEW_SHOT_SEEDS.contains(&self.task.data_seed) {
                    bail!(
                        "task.data_seed: {} is not an LM-BFF data seed (expected one of {:?})",
                        self.task.data_seed,
                        FEW_SHOT_SEEDS
                    );
                }
                if self.task.train_size.is_some() || self.task.validation_size.is_some() {
                    bail!(
                        "task.train_size / task.validation_size apply to the `sampled` protocol only"
                    );
                }
                Protocol::few_shot(self.task.data_seed)
            }
            "sampled" => {
                let Protocol::Sampled {
                    seed,
                    train,
                    validation,
                } = Protocol::sampled(task, self.task.data_seed)
                else {
                    unreachable!("Protocol::sampled builds a sampled protocol")
                };
                let train = self.task.train_size.unwrap_or(train);
                let validation = self.task.validation_size.unwrap_or(validation);
                if train == 0 || validation == 0 {
                    bail!("task.train_size and task.validation_size must be at least 1");
                }
                Protocol::Sampled {
                    seed,
                    train,
                    validation,
                }
            }
            other => {
                bail!("task.protocol: unknown protocol `{other}` (expected few-shot or sampled)")
            }
        };
        if self.task.test_size == Some(0) {
            bail!("task.test_size must be at least 1");
        }
        if self.task.eval_batch_size == 0 {
            bail!("task.eval_batch_size must be at least 1");
        }
        let kind = match self.model.kind.to_ascii_lowercase().as_str() {
            "auto" => None,
            "masked" | "mlm" => Some(ModelKind::Masked),
            "causal" | "clm" => Some(ModelKind::Causal),
            other => bail!("model.kind: unknown kind `{other}` (expected auto, masked or causal)"),
        };
        let nli_template = NliTemplate::from_name(&self.task.nli_template).map_err(|_| {
            anyhow!(
                "task.nli_template: unknown template `{}` (expected lm-bff or spaced)",
                self.task.nli_template
            )
        })?;
        if !self.task.train_as_classification && kind == Some(ModelKind::Masked) {
            bail!(
                "task.train_as_classification = false needs a causal LM (a masked LM has no language-model loss)"
            );
        }
        let precision: Precision = self
            .model
            .precision
            .parse()
            .map_err(|e| anyhow!("model.precision: {e}"))?;
        if self.model.max_length < 8 {
            bail!(
                "model.max_length: {} is too short (at least 8 tokens)",
                self.model.max_length
            );
        }
        let optimizer = self.optimizer.build(self.train.steps)?;
        let train = TrainConfig {
            max_steps: self.train.steps,
            batch_size: self.train.batch_size,
            data_seed: self.train.seed.wrapping_add(1),
            eval_every: self.train.eval_every,
            patience: (self.train.patience > 0).then_some(self.train.patience),
            checkpoint_every: self.train.checkpoint_every,
        };
        train.validate().map_err(|e| anyhow!("train: {e}"))?;
        if self.train.steps == 0 {
            bail!("train.steps must be at least 1");
        }
        Ok(Resolved {
            task,
            protocol,
            kind,
            nli_template,
            train_as_classification: self.task.train_as_classification,
            precision,
            optimizer,
            train,
        })
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl OptimizerSection {
    /// The algorithm's defaults at `eps` with every set hyper-parameter applied, validated.
    pub fn build(&self, total_steps: u64) -> Result<Optimizer> {
        let algorithm: Algorithm = self
            .name
            .parse()
            .map_err(|e| anyhow!("optimizer.name: {e}"))?;
        let mut config = algorithm.config(self.eps);
        let name = algorithm.name();
        let not_for = |field: &str| anyhow!("optimizer.{field} does not apply to {name}");

        // Estimator hyper-parameters.
        match &mut config.estimator {
            Estimator::Spsa {
                samples,
                one_sided,
                distribution,
                ..
            } => {
                if let Some(v) = self.samples {
                    *samples = v;
                }
                if let Some(v) = self.one_sided {
                    *one_sided = v;
                }
                if let Some(v) = &self.distribution {
                    *distribution = match v.to_ascii_lowercase().as_str() {
                        "normal" | "gaussian" => Distribution::Normal,
                        "rademacher" => Distribution::Rademacher,
                        other => bail!(
                            "optimizer.distribution: unknown distribution `{other}` (normal or rademacher)"
                        ),
                    };
                }
            }
            Estimator::LowRank { rank, interval, .. } => {
                if let Some(v) = self.rank {
                    *rank = v;
                }
                if let Some(v) = self.interval {
                    *interval = v;
                }
            }
            Estimator::Hessian {
                alpha,
                log_loss_after_update,
                ..
            } => {
                if let Some(v) = self.hizoo_alpha {
                    *alpha = v;
                }
                if let Some(v) = self.log_loss_after_update {
                    *log_loss_after_update = v;
                }
            }
            Estimator::KalmanSubspace(ks) => self.apply_kalman(ks)?,
        }
        let est = config.estimator;
        let spsa_only = [
            ("samples", self.samples.is_some()),
            ("one_sided", self.one_sided.is_some()),
            ("distribution", self.distribution.is_some()),
        ];
        let lozo_only = [
            ("rank", self.rank.is_some()),
            ("interval", self.interval.is_some()),
        ];
        let hizoo_only = [
            ("hizoo_alpha", self.hizoo_alpha.is_some()),
            (
                "log_loss_after_update",
                self.log_loss_after_update.is_some(),
            ),
        ];
        let bszo_only = [
            ("k", self.k.is_some()),
            ("m", self.m.is_some()),
            ("noise_ema", self.noise_ema.is_some()),
            ("prior_variance", self.prior_variance.is_some()),
            ("noise_variance", self.noise_variance.is_some()),
            ("noise_floor", self.noise_floor.is_some()),
            ("noise_update", self.noise_update.is_some()),
            ("jitter", self.jitter.is_some()),
            ("extra_sample", self.extra_sample.is_some()),
            ("difference", self.difference.is_some()),
        ];
        for (group, fits) in [
            (&spsa_only[..], matches!(est, Estimator::Spsa { .. })),
            (&lozo_only[..], matches!(est, Estimator::LowRank { .. })),
            (&hizoo_only[..], matches!(est, Estimator::Hessian { .. })),
            (&bszo_only[..], matches!(est, Estimator::KalmanSubspace(_))),
        ] {
            if !fits && let Some((field, _)) = group.iter().find(|(_, set)| *set) {
                return Err(not_for(field));
            }
        }

        // Update-rule hyper-parameters.
        let rule_fields = [
            ("weight_decay", self.weight_decay.is_some()),
            ("momentum", self.momentum.is_some()),
            ("beta1", self.beta1.is_some()),
            ("beta2", self.beta2.is_some()),
            ("adam_eps", self.adam_eps.is_some()),
            ("sign_mode", self.sign_mode.is_some()),
        ];
        let allowed: &[&str] = match &mut config.rule {
            UpdateRule::Sgd { weight_decay } => {
                if let Some(v) = self.weight_decay {
                    *weight_decay = v;
                }
                &["weight_decay"]
            }
            UpdateRule::Momentum { beta, weight_decay } => {
                if let Some(v) = self.momentum {
                    *beta = v;
                }
                if let Some(v) = self.weight_decay {
                    *weight_decay = v;
                }
                &["momentum", "weight_decay"]
            }
            UpdateRule::Sign { mode, weight_decay } => {
                if let Some(v) = &self.sign_mode {
                    *mode = match v.to_ascii_lowercase().as_str() {
                        "coefficient" => SignMode::Coefficient,
                        "elementwise" => SignMode::Elementwise,
                        other => bail!(
                            "optimizer.sign_mode: unknown mode `{other}` (coefficient or elementwise)"
                        ),
                    };
                }
                if let Some(v) = self.weight_decay {
                    *weight_decay = v;
                }
                &["sign_mode", "weight_decay"]
            }
            UpdateRule::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                if let Some(v) = self.beta1 {
                    *beta1 = v;
                }
                if let Some(v) = self.beta2 {
                    *beta2 = v;
                }
                if let Some(v) = self.adam_eps {
                    *eps = v;
                }
                if let Some(v) = self.weight_decay {
                    *weight_decay = v;
                }
                &["beta1", "beta2", "adam_eps", "weight_decay"]
            }
            UpdateRule::Conservative => &[],
        };
        if let Some((field, _)) = rule_fields
            .iter()
            .find(|(f, set)| *set && !allowed.contains(f))
        {
            return Err(not_for(field));
        }

        let schedule = match self
            .schedule
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("constant") => {
                if self.end_lr.is_some() {
                    bail!("optimizer.end_lr needs a linear or cosine schedule");
                }
                Schedule::constant(self.lr)
            }
            Some("linear") => Schedule::Linear {
                lr: self.lr,
                end_lr: self.end_lr.unwrap_or(0.0),
                total_steps: total_steps.max(1),
            },
            Some("cosine") => Schedule::Cosine {
                lr: self.lr,
                min_lr: self.end_lr.unwrap_or(0.0),
                total_steps: total_steps.max(1),
            },
            Some(other) => {
                bail!("optimizer.schedule: unknown schedule `{other}` (constant, linear or cosine)")
            }
        };
        Optimizer::new(config, schedule).map_err(|e| anyhow!("optimizer: {e}"))
    }

    fn apply_kalman(&self, ks: &mut KalmanSubspace) -> Result<()> {
        if let Some(k) = self.k {
            ks.k = k;
            if self.m.is_none() {
                ks.m = k + 1;
            }
        }
        if let Some(v) = self.m {
            ks.m = v;
        }
        if let Some(v) = self.noise_ema {
            ks.alpha = v;
        }
        if let Some(v) = self.prior_variance {
            ks.prior_variance = v.to_variance();
        }
        if let Some(v) = self.noise_variance {
            ks.noise_variance = v.to_variance();
        }
        if let Some(v) = self.noise_floor {
            ks.noise_floor = v;
        }
        if let Some(v) = &self.noise_update {
            ks.noise_update = match v.to_ascii_lowercase().replace('-', "_").as_str() {
                "every_observation" => NoiseUpdate::EveryObservation,
                "extra_samples_only" => NoiseUpdate::ExtraSamplesOnly,
                other => bail!(
                    "optimizer.noise_update: unknown placement `{other}` (every_observation or extra_samples_only)"
                ),
            };
        }
        if let Some(v) = self.jitter {
            ks.jitter = v;
        }
        if let Some(v) = &self.extra_sample {
            ks.extra = match v.to_ascii_lowercase().replace('-', "_").as_str() {
                "cached" => ExtraSample::Cached,
                "fresh" => ExtraSample::Fresh,
                "requery" => ExtraSample::Requery,
                other => bail!(
                    "optimizer.extra_sample: unknown kind `{other}` (cached, fresh or requery)"
                ),
            };
        }
        if let Some(v) = &self.difference {
            ks.difference = match v.to_ascii_lowercase().replace('-', "_").as_str() {
                "one_sided" => Difference::OneSided,
                "central" => Difference::Central,
                other => bail!(
                    "optimizer.difference: unknown difference `{other}` (one_sided or central)"
                ),
            };
        }
        Ok(())
    }
}
