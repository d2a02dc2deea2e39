//! The command line: subcommands, flags and how they override a preset.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use clap::{Args, Parser, Subcommand};

use crate::config::{DEFAULT_TOML, OptimizerSection, RunConfig, VarianceSetting};

/// Fine-tune language models with zeroth-order optimizers (forward passes only).
#[derive(Debug, Parser)]
#[command(name = "bszo", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fine-tune a model on a task; prints zero-shot and fine-tuned test accuracy and writes the
    /// run's folder (config, checkpoint, seed log, metrics, report, plots, weights).
    Finetune(Box<FinetuneArgs>),
    /// Evaluate the base weights on a task's test split with the prompts a fine-tuning run would
    /// use (no training, no run folder); prints the zero-shot test accuracy.
    ZeroShot(Box<ZeroShotArgs>),
    /// Rebuild a run's weights at a step from the base weights and its seed log, and write them
    /// to a safetensors file.
    Export(ExportArgs),
    /// The benchmark suite: every optimizer at equal forward budgets on real weights, memory,
    /// time per step, the k ablation, HiZOO's α, sampler throughput → RESULTS.md with plots.
    Bench(BenchArgs),
    /// One memory/time measurement in a fresh process (used by `bench`).
    #[command(hide = true)]
    BenchProbe(ProbeArgs),
}

/// `bszo bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Every section at a tiny budget (minutes): checks the harness, not the methods.
    #[arg(long)]
    pub quick: bool,
    /// Where RESULTS.md, results.json and the plots go.
    #[arg(long, value_name = "DIR", default_value = "docs")]
    pub out: PathBuf,
    /// Where the runs' folders go (a run whose configuration matches is reused).
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    pub work: PathBuf,
    /// The data folder; it must exist (default: $ZO_DATA_DIR if set, else ./data, else the repository's data/).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `bszo bench-probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// splade-tiny or bert-67m.
    #[arg(long)]
    pub model: String,
    /// inference or an optimizer name.
    #[arg(long)]
    pub scenario: String,
    /// Timed repetitions.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// The data folder.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `bszo export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run's folder.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// The step to rebuild: a number, `best` (best validation score) or `last` (the checkpoint).
    #[arg(long, default_value = "best")]
    pub step: String,
    /// The safetensors file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    pub overwrite: bool,
    /// Rebuild even if the base weights or tokenizer differ from those the run recorded.
    #[arg(long)]
    pub accept_changed_inputs: bool,
}

/// `bszo zero-shot`: a preset (default: the embedded `configs/default.toml`) with the model and
/// task flags of `bszo finetune` on top.
#[derive(Debug, Default, Args)]
pub struct ZeroShotArgs {
    /// A TOML preset: a file, or the name of one in `configs/` (e.g. `causal-smollm2`).
    #[arg(long, short = 'c', value_name = "FILE|NAME")]
    pub config: Option<String>,
    /// Also evaluate the validation split.
    #[arg(long)]
    pub validation: bool,
    /// Write the metrics as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// The model: a path, a provisioned name (`splade-tiny`, `smollm2-135m`) or a hub name.
    #[arg(long, help_heading = "Model")]
    pub model: Option<String>,
    /// The prompt head: auto, masked or causal.
    #[arg(long, help_heading = "Model")]
    pub model_kind: Option<String>,
    /// Weight precision: f32, bf16 or f16.
    #[arg(long, help_heading = "Model")]
    pub precision: Option<String>,
    /// Longest prompt in tokens (the text is cut, never the label slot).
    #[arg(long, help_heading = "Model")]
    pub max_length: Option<usize>,
    /// A tokenizer.json to use instead of the model's own.
    #[arg(long, help_heading = "Model")]
    pub tokenizer: Option<PathBuf>,

    /// The task: sst2, sst5, trec, rte, cb, snli, mnli, boolq, copa, wsc, wic.
    #[arg(long, help_heading = "Task")]
    pub task: Option<String>,
    /// few-shot or sampled (the test split is the same; SNLI/MNLI: see the zo-data README).
    #[arg(long, help_heading = "Task")]
    pub protocol: Option<String>,
    /// The data seed (few-shot: 13, 21, 42, 87 or 100).
    #[arg(long, help_heading = "Task")]
    pub data_seed: Option<u64>,
    /// Sampled protocol: at most this many training examples.
    #[arg(long, help_heading = "Task")]
    pub train_size: Option<usize>,
    /// Sampled protocol: at most this many validation examples.
    #[arg(long, help_heading = "Task")]
    pub validation_size: Option<usize>,
    /// At most this many test examples (the first).
    #[arg(long, help_heading = "Task")]
    pub test_size: Option<usize>,
    /// The data folder; it must exist (default: $ZO_DATA_DIR if set, else ./data, else the repository's data/).
    #[arg(long, help_heading = "Task")]
    pub data_dir: Option<PathBuf>,
    /// Examples per evaluation forward.
    #[arg(long, help_heading = "Task")]
    pub eval_batch_size: Option<usize>,
    /// Masked LMs, RTE/CB/SNLI/MNLI: lm-bff or spaced.
    #[arg(long, help_heading = "Task")]
    pub nli_template: Option<String>,
}

impl ZeroShotArgs {
    /// The preset with these flags applied (as `bszo finetune` would resolve them).
    pub fn to_config(&self) -> Result<RunConfig> {
        FinetuneArgs {
            config: self.config.clone(),
            model: self.model.clone(),
            model_kind: self.model_kind.clone(),
            precision: self.precision.clone(),
            max_length: self.max_length,
            tokenizer: self.tokenizer.clone(),
            task: self.task.clone(),
            protocol: self.protocol.clone(),
            data_seed: self.data_seed,
            train_size: self.train_size,
            validation_size: self.validation_size,
            test_size: self.test_size,
            data_dir: self.data_dir.clone(),
            eval_batch_size: self.eval_batch_size,
            nli_template: self.nli_template.clone(),
            ..FinetuneArgs::default()
        }
        .to_config()
    }
}

/// `bszo finetune`: a preset (default: the embedded `configs/default.toml`) with flags on top.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Run", allow_negative_numbers = true)]
pub struct FinetuneArgs {
    /// A TOML preset: a file, or the name of one in `configs/` (e.g. `paper-bszo`).
    #[arg(long, short = 'c', value_name = "FILE|NAME")]
    pub config: Option<String>,
    /// Print the resolved configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// The output folder (default: `[output].dir`, else a new `runs/TASK-OPTIMIZER-TIME`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace an earlier run in the output folder: its files are removed first (only the files
    /// a run writes; others are kept).
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Continue the run in `--out DIR` from its checkpoint (bitwise as if never stopped; a run
    /// stopped before its first checkpoint starts over); only `--steps`, the evaluation cadence
    /// and output flags may change.
    #[arg(long)]
    pub resume: bool,
    /// Go on although the base weights, tokenizer or data files differ from those the run
    /// recorded when it started (its results will not be reproducible).
    #[arg(long)]
    pub accept_changed_inputs: bool,
    /// Refuse a configuration whose estimated memory exceeds SIZE (e.g. 8G, 512M; default: the
    /// memory available on this machine).
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// No plots.
    #[arg(long)]
    pub no_plots: bool,
    /// Write the best weights to `best.safetensors` in the output folder.
    #[arg(long, conflicts_with = "no_export")]
    pub export: bool,
    /// Do not write `best.safetensors` (they can be rebuilt later with `bszo export`).
    #[arg(long)]
    pub no_export: bool,

    /// The model: a path (Hugging Face folder, `.gguf`, llama2.c `.bin`), a provisioned name
    /// (`splade-tiny`, `smollm2-135m`) or a hub name `org/name`.
    #[arg(long, help_heading = "Model")]
    pub model: Option<String>,
    /// The prompt head: auto, masked (label words at the mask) or causal (candidate
    /// log-likelihoods).
    #[arg(long, help_heading = "Model")]
    pub model_kind: Option<String>,
    /// Weight precision: f32, bf16 or f16.
    #[arg(long, help_heading = "Model")]
    pub precision: Option<String>,
    /// Longest prompt in tokens (the text is cut, never the label slot).
    #[arg(long, help_heading = "Model")]
    pub max_length: Option<usize>,
    /// A tokenizer.json to use instead of the model's own.
    #[arg(long, help_heading = "Model")]
    pub tokenizer: Option<PathBuf>,

    /// The task: sst2, sst5, trec, rte, cb, snli, mnli, boolq, copa, wsc, wic.
    #[arg(long, help_heading = "Task")]
    pub task: Option<String>,
    /// few-shot (LM-BFF 16-shot folders) or sampled (1000 train / 500 validation / original test).
    #[arg(long, help_heading = "Task")]
    pub protocol: Option<String>,
    /// The data seed (few-shot: 13, 21, 42, 87 or 100).
    #[arg(long, help_heading = "Task")]
    pub data_seed: Option<u64>,
    /// Sampled protocol: at most this many training examples.
    #[arg(long, help_heading = "Task")]
    pub train_size: Option<usize>,
    /// Sampled protocol: at most this many validation examples.
    #[arg(long, help_heading = "Task")]
    pub validation_size: Option<usize>,
    /// At most this many test examples (the first; for quick checks).
    #[arg(long, help_heading = "Task")]
    pub test_size: Option<usize>,
    /// The data folder; it must exist (default: $ZO_DATA_DIR if set, else ./data, else the repository's data/).
    #[arg(long, help_heading = "Task")]
    pub data_dir: Option<PathBuf>,
    /// Examples per evaluation forward.
    #[arg(long, help_heading = "Task")]
    pub eval_batch_size: Option<usize>,
    /// Masked LMs, RTE/CB/SNLI/MNLI: lm-bff (LM-BFF's template) or spaced (the BSZO authors'
    /// `<premise> ? <mask> , <hypothesis>`).
    #[arg(long, help_heading = "Task")]
    pub nli_template: Option<String>,
    /// Causal LMs: true trains on the candidates' cross-entropy, false on the language-model loss
    /// of the correct candidate (MeZO's setting for COPA); evaluation scores the candidates.
    #[arg(long, help_heading = "Task")]
    pub train_as_classification: Option<bool>,

    /// mezo, nspsa, mezo_adam, zo_sgd_mmt, zo_sgd_sign, zo_sgd_cons, hizoo, lozo, bszo, bszo_b.
    /// Switching algorithm away from the preset's drops the preset's algorithm-specific settings.
    #[arg(long, help_heading = "Optimizer")]
    pub optimizer: Option<String>,
    /// Learning rate η.
    #[arg(long, help_heading = "Optimizer")]
    pub lr: Option<f64>,
    /// Perturbation scale ε (HiZOO's μ).
    #[arg(long, help_heading = "Optimizer")]
    pub eps: Option<f64>,
    /// Learning-rate schedule: constant, linear or cosine (over the step budget).
    #[arg(long, help_heading = "Optimizer")]
    pub schedule: Option<String>,
    /// Final learning rate of a linear or cosine schedule.
    #[arg(long, help_heading = "Optimizer")]
    pub end_lr: Option<f64>,
    /// Weight decay λ (SGD, momentum, sign, Adam rules).
    #[arg(long, help_heading = "Optimizer")]
    pub weight_decay: Option<f64>,
    /// SPSA (mezo, nspsa, …): directions averaged per step.
    #[arg(long, help_heading = "Optimizer")]
    pub samples: Option<usize>,
    /// SPSA: one-sided differences (true/false).
    #[arg(long, help_heading = "Optimizer")]
    pub one_sided: Option<bool>,
    /// SPSA: direction distribution, normal or rademacher.
    #[arg(long, help_heading = "Optimizer")]
    pub distribution: Option<String>,
    /// ZO-SGD-MMT: momentum β.
    #[arg(long, help_heading = "Optimizer")]
    pub momentum: Option<f64>,
    /// MeZO-Adam: β₁.
    #[arg(long, help_heading = "Optimizer")]
    pub beta1: Option<f64>,
    /// MeZO-Adam: β₂.
    #[arg(long, help_heading = "Optimizer")]
    pub beta2: Option<f64>,
    /// MeZO-Adam: the denominator's ε.
    #[arg(long, help_heading = "Optimizer")]
    pub adam_eps: Option<f64>,
    /// ZO-SGD-Sign: coefficient (sign of each projected gradient) or elementwise.
    #[arg(long, help_heading = "Optimizer")]
    pub sign_mode: Option<String>,
    /// HiZOO: curvature EMA weight α (default 1e-8·(ε/1e-3)²; α/ε² is what matters).
    #[arg(long, help_heading = "Optimizer")]
    pub hizoo_alpha: Option<f64>,
    /// HiZOO: a fourth forward after the update, only to log the loss there.
    #[arg(long, help_heading = "Optimizer")]
    pub log_loss_after_update: Option<bool>,
    /// LOZO: rank r.
    #[arg(long, help_heading = "Optimizer")]
    pub rank: Option<u32>,
    /// LOZO: V is redrawn every this many steps (ν).
    #[arg(long, help_heading = "Optimizer")]
    pub interval: Option<u64>,
    /// BSZO: subspace dimension k (m defaults to k + 1).
    #[arg(long, help_heading = "Optimizer")]
    pub k: Option<usize>,
    /// BSZO: observations per step m ≥ k.
    #[arg(long, help_heading = "Optimizer")]
    pub m: Option<usize>,
    /// BSZO: noise EMA weight α in [0, 1) (0: a fixed noise level, no adaptation).
    #[arg(long, help_heading = "Optimizer")]
    pub noise_ema: Option<f64>,
    /// BSZO: prior variance σ_p²: auto (n·1e-6) or a number.
    #[arg(long, help_heading = "Optimizer")]
    pub prior_variance: Option<VarianceSetting>,
    /// BSZO: initial noise variance σ_e²: auto (n·1e-6) or a number.
    #[arg(long, help_heading = "Optimizer")]
    pub noise_variance: Option<VarianceSetting>,
    /// BSZO: floor of σ_e as a fraction of its initial value.
    #[arg(long, help_heading = "Optimizer")]
    pub noise_floor: Option<f64>,
    /// BSZO: every_observation (the authors' code) or extra_samples_only (the paper's Algorithm 1).
    #[arg(long, help_heading = "Optimizer")]
    pub noise_update: Option<String>,
    /// BSZO: diagonal jitter added to the posterior covariance.
    #[arg(long, help_heading = "Optimizer")]
    pub jitter: Option<f64>,
    /// BSZO: observations beyond the first k: cached (bszo), fresh (bszo_b) or requery (a fresh
    /// forward along axis τ mod k: the authors' adaptive sampling off).
    #[arg(long, help_heading = "Optimizer")]
    pub extra_sample: Option<String>,
    /// BSZO: one_sided (default) or central finite differences.
    #[arg(long, help_heading = "Optimizer")]
    pub difference: Option<String>,

    /// The step budget.
    #[arg(long, help_heading = "Training")]
    pub steps: Option<u64>,
    /// Training examples per minibatch.
    #[arg(long, help_heading = "Training")]
    pub batch_size: Option<usize>,
    /// Evaluate on validation every this many steps (0: only at the end).
    #[arg(long, help_heading = "Training")]
    pub eval_every: Option<u64>,
    /// Stop after this many evaluations without improvement (0: never).
    #[arg(long, help_heading = "Training")]
    pub patience: Option<u64>,
    /// The run seed (directions; the minibatch order uses seed + 1).
    #[arg(long, help_heading = "Training")]
    pub seed: Option<u64>,
    /// Write a checkpoint every this many steps (0: only at the end and on Ctrl-C).
    #[arg(long, help_heading = "Training")]
    pub checkpoint_every: Option<u64>,
}

/// Find a preset: an existing file, else `configs/NAME.toml` in the current folder or the
/// workspace.
pub fn preset_path(spec: &str) -> Result<PathBuf> {
    let p = Path::new(spec);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    let name = if spec.ends_with(".toml") {
        spec.to_string()
    } else {
        format!("{spec}.toml")
    };
    for base in [
        PathBuf::from("configs"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs"),
    ] {
        let candidate = base.join(&name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    // A path (a folder in it, or an absolute one) names a file, never a preset.
    if spec.contains(std::path::MAIN_SEPARATOR) || spec.contains('/') || p.is_absolute() {
        return Err(anyhow!("--config: no file {}", p.display()));
    }
    Err(anyhow!(
        "--config: no file `{spec}` and no preset `{name}` in configs/ (presets: {})",
        presets().join(", ")
    ))
}

/// The names of the presets in `configs/` (of the current folder, else the workspace).
pub fn presets() -> Vec<String> {
    for base in [
        PathBuf::from("configs"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs"),
    ] {
        if let Ok(entries) = std::fs::read_dir(&base) {
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .strip_suffix(".toml")
                        .map(str::to_string)
                })
                .collect();
            names.sort();
            if !names.is_empty() {
                return names;
            }
        }
    }
    Vec::new()
}

impl FinetuneArgs {
    /// The preset (or the embedded default) with these flags applied.
    pub fn to_config(&self) -> Result<RunConfig> {
        let mut c = match &self.config {
            Some(spec) => RunConfig::load(&preset_path(spec)?)?,
            None => RunConfig::embedded_default(),
        };
        self.apply(&mut c);
        Ok(c)
    }

    /// Apply the flags that were given.
    pub fn apply(&self, c: &mut RunConfig) {
        fn set<T: Clone>(dst: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *dst = v.clone();
            }
        }
        fn set_opt<T: Clone>(dst: &mut Option<T>, v: &Option<T>) {
            if v.is_some() {
                dst.clone_from(v);
            }
        }
        set(&mut c.model.name, &self.model);
        set(&mut c.model.kind, &self.model_kind);
        set(&mut c.model.precision, &self.precision);
        set(&mut c.model.max_length, &self.max_length);
        set_opt(&mut c.model.tokenizer, &self.tokenizer);

        set(&mut c.task.name, &self.task);
        set(&mut c.task.protocol, &self.protocol);
        set(&mut c.task.data_seed, &self.data_seed);
        set_opt(&mut c.task.train_size, &self.train_size);
        set_opt(&mut c.task.validation_size, &self.validation_size);
        set_opt(&mut c.task.test_size, &self.test_size);
        set_opt(&mut c.task.data_dir, &self.data_dir);
        set(&mut c.task.eval_batch_size, &self.eval_batch_size);
        set(&mut c.task.nli_template, &self.nli_template);
        set(
            &mut c.task.train_as_classification,
            &self.train_as_classification,
        );

        let o = &mut c.optimizer;
        if let Some(name) = &self.optimizer {
            let norm = |s: &str| s.trim().to_ascii_lowercase().replace('-', "_");
            if norm(name) != norm(&o.name) {
                *o = OptimizerSection {
                    name: name.clone(),
                    lr: o.lr,
                    eps: o.eps,
                    schedule: o.schedule.take(),
                    end_lr: o.end_lr,
                    ..OptimizerSection::default()
                };
            }
        }
        set(&mut o.lr, &self.lr);
        set(&mut o.eps, &self.eps);
        set_opt(&mut o.schedule, &self.schedule);
        set_opt(&mut o.end_lr, &self.end_lr);
        set_opt(&mut o.weight_decay, &self.weight_decay);
        set_opt(&mut o.samples, &self.samples);
        set_opt(&mut o.one_sided, &self.one_sided);
        set_opt(&mut o.distribution, &self.distribution);
        set_opt(&mut o.momentum, &self.momentum);
        set_opt(&mut o.beta1, &self.beta1);
        set_opt(&mut o.beta2, &self.beta2);
        set_opt(&mut o.adam_eps, &self.adam_eps);
        set_opt(&mut o.sign_mode, &self.sign_mode);
        set_opt(&mut o.hizoo_alpha, &self.hizoo_alpha);
        set_opt(&mut o.log_loss_after_update, &self.log_loss_after_update);
        set_opt(&mut o.rank, &self.rank);
        set_opt(&mut o.interval, &self.interval);
        set_opt(&mut o.k, &self.k);
        set_opt(&mut o.m, &self.m);
        set_opt(&mut o.noise_ema, &self.noise_ema);
        set_opt(&mut o.prior_variance, &self.prior_variance);
        set_opt(&mut o.noise_variance, &self.noise_variance);
        set_opt(&mut o.noise_floor, &self.noise_floor);
        set_opt(&mut o.noise_update, &self.noise_update);
        set_opt(&mut o.jitter, &self.jitter);
        set_opt(&mut o.extra_sample, &self.extra_sample);
        set_opt(&mut o.difference, &self.difference);
        if self.k.is_some() && self.m.is_none() {
            // m follows k unless given.
            o.m = None;
        }

        set(&mut c.train.steps, &self.steps);
        set(&mut c.train.batch_size, &self.batch_size);
        set(&mut c.train.eval_every, &self.eval_every);
        set(&mut c.train.patience, &self.patience);
        set(&mut c.train.seed, &self.seed);
        set(&mut c.train.checkpoint_every, &self.checkpoint_every);

        if self.out.is_some() {
            c.output.dir.clone_from(&self.out);
        }
        c.output.overwrite |= self.overwrite;
        c.output.plots &= !self.no_plots;
        c.output.export = (c.output.export || self.export) && !self.no_export;
    }
}

/// Each `finetune` knob: its argument, its place in a preset (`section.key`), what applies when the
/// embedded preset leaves it unset, and its valid values.
const KNOBS: &[(&str, &str, &str, &str)] = &[
    (
        "model",
        "model.name",
        "",
        "a path, a provisioned name or org/name",
    ),
    ("model_kind", "model.kind", "auto", "auto, masked, causal"),
    ("precision", "model.precision", "f32", "f32, bf16, f16"),
    ("max_length", "model.max_length", "128", "≥ 8"),
    (
        "tokenizer",
        "model.tokenizer",
        "the model's own",
        "a tokenizer.json",
    ),
    (
        "task",
        "task.name",
        "",
        "sst2, sst5, trec, rte, cb, snli, mnli, boolq, copa, wsc, wic",
    ),
    ("protocol", "task.protocol", "few-shot", "few-shot, sampled"),
    (
        "data_seed",
        "task.data_seed",
        "42",
        "few-shot: 13, 21, 42, 87, 100; sampled: any",
    ),
    (
        "train_size",
        "task.train_size",
        "1000 (the protocol's)",
        "≥ 1",
    ),
    (
        "validation_size",
        "task.validation_size",
        "500 (the protocol's)",
        "≥ 1",
    ),
    ("test_size", "task.test_size", "the whole test set", "≥ 1"),
    (
        "data_dir",
        "task.data_dir",
        "$ZO_DATA_DIR, else ./data, else the repository's data/",
        "an existing folder",
    ),
    ("eval_batch_size", "task.eval_batch_size", "64", "≥ 1"),
    (
        "optimizer",
        "optimizer.name",
        "",
        "mezo, nspsa, mezo_adam, zo_sgd_mmt, zo_sgd_sign, zo_sgd_cons, hizoo, lozo, bszo, bszo_b",
    ),
    ("lr", "optimizer.lr", "", "> 0"),
    ("eps", "optimizer.eps", "", "> 0"),
    (
        "schedule",
        "optimizer.schedule",
        "constant",
        "constant, linear, cosine",
    ),
    ("end_lr", "optimizer.end_lr", "0", "≥ 0"),
    ("weight_decay", "optimizer.weight_decay", "0", "≥ 0"),
    ("samples", "optimizer.samples", "1", "≥ 1"),
    (
        "one_sided",
        "optimizer.one_sided",
        "per algorithm",
        "true, false",
    ),
    (
        "distribution",
        "optimizer.distribution",
        "normal",
        "normal, rademacher",
    ),
    ("momentum", "optimizer.momentum", "per algorithm", "[0, 1)"),
    ("beta1", "optimizer.beta1", "per algorithm", "[0, 1)"),
    ("beta2", "optimizer.beta2", "per algorithm", "[0, 1)"),
    ("adam_eps", "optimizer.adam_eps", "per algorithm", "> 0"),
    (
        "sign_mode",
        "optimizer.sign_mode",
        "per algorithm",
        "coefficient, elementwise",
    ),
    (
        "hizoo_alpha",
        "optimizer.hizoo_alpha",
        "1e-8·(ε/1e-3)²",
        "[0, 1)",
    ),
    (
        "log_loss_after_update",
        "optimizer.log_loss_after_update",
        "false",
        "true, false",
    ),
    ("rank", "optimizer.rank", "per algorithm", "≥ 1"),
    ("interval", "optimizer.interval", "per algorithm", "≥ 1"),
    (
        "k",
        "optimizer.k",
        "per algorithm",
        "≥ 1 (memory grows as k²)",
    ),
    ("m", "optimizer.m", "k + 1", "≥ k"),
    (
        "noise_ema",
        "optimizer.noise_ema",
        "per algorithm",
        "(0, 1)",
    ),
    (
        "prior_variance",
        "optimizer.prior_variance",
        "auto",
        "auto or > 0",
    ),
    (
        "noise_variance",
        "optimizer.noise_variance",
        "auto",
        "auto or > 0",
    ),
    (
        "noise_floor",
        "optimizer.noise_floor",
        "per algorithm",
        "≥ 0",
    ),
    (
        "noise_update",
        "optimizer.noise_update",
        "per algorithm",
        "every_observation, extra_samples_only",
    ),
    ("jitter", "optimizer.jitter", "per algorithm", "≥ 0"),
    ("steps", "train.steps", "", "≥ 1"),
    ("batch_size", "train.batch_size", "16", "≥ 1"),
    ("eval_every", "train.eval_every", "100", "≥ 0"),
    ("patience", "train.patience", "0", "≥ 0"),
    ("seed", "train.seed", "0", "any"),
    ("checkpoint_every", "train.checkpoint_every", "100", "≥ 0"),
];

/// A preset value as a flag would spell it (small floats in exponent form: `3e-4`).
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) if *f != 0.0 && f.abs() < 1e-2 => format!("{f:e}"),
        other => other.to_string(),
    }
}

/// The `bszo` command line, with every `finetune` knob's help ending in its default (the embedded
/// preset `configs/default.toml`, else the value that applies when it is unset) and its valid
/// values.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let preset: toml::Table = toml::from_str(DEFAULT_TOML).unwrap_or_default();
    Cli::command().mut_subcommand("finetune", |mut c| {
        for (id, path, unset, range) in KNOBS {
            let (section, key) = path.split_once('.').unwrap_or((path, ""));
            let default = preset
                .get(section)
                .and_then(|s| s.get(key))
                .map(show)
                .unwrap_or_else(|| unset.to_string());
            c = c.mut_arg(*id, |a| {
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                let default = if default.is_empty() {
                    String::new()
                } else {
                    format!(" [default: {default}]")
                };
                a.help(format!("{help}{default} [valid: {range}]"))
            });
        }
        c.after_help("Defaults are those of the embedded preset configs/default.toml; a --config preset replaces them.")
    })
}
