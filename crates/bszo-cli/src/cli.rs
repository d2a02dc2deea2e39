//! The command line: subcommands, flags and how they override a preset.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use clap::{Args, Parser, Subcommand};

use zo_data::{Protocol, Task};
use zo_optim::{Algorithm, Schedule};

use crate::config::{Calibration, DEFAULT_TOML, RunConfig};
use crate::settings::{self, Override};

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
    /// Where to write: a safetensors file for a full fine-tuning run or with `--merged`; for a
    /// LoRA or prefix run, a folder holding `adapter_model.safetensors` and
    /// `adapter_config.json` as Hugging Face PEFT lays them out.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Replace an existing file or folder.
    #[arg(long)]
    pub overwrite: bool,
    /// LoRA runs: write the base model's weights with the adapters merged in
    /// (`W + (α/r)·B A`), one safetensors file loadable as the model itself.
    #[arg(long)]
    pub merged: bool,
    /// Rebuild even if the base weights or tokenizer differ from those the run recorded.
    #[arg(long)]
    pub accept_changed_inputs: bool,
}

/// `bszo zero-shot`: a preset (default: the embedded `configs/default.toml`) with the model and
/// task overrides of `bszo finetune` on top.
#[derive(Debug, Default, Args)]
pub struct ZeroShotArgs {
    /// Also evaluate the validation split.
    #[arg(long)]
    pub validation: bool,
    /// Write the metrics as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The preset and its overrides.
    #[command(flatten)]
    pub preset: Preset,
    /// The model and task.
    #[command(flatten)]
    pub data: ModelAndTask,
}

impl ZeroShotArgs {
    /// The preset with these overrides applied (as `bszo finetune` would resolve them).
    pub fn to_config(&self) -> Result<RunConfig> {
        let mut overrides = self.data.overrides();
        overrides.extend(self.preset.set.iter().cloned());
        run_config(self.preset.config.as_deref(), &overrides)
    }
}

/// A preset and `--set` overrides: what every run command starts from.
#[derive(Debug, Default, Args)]
pub struct Preset {
    /// A TOML preset: a file, or the name of one in `./configs/` (e.g. `paper-bszo`).
    #[arg(long, short = 'c', value_name = "FILE|NAME")]
    pub config: Option<String>,
    /// Set any key of the preset, e.g. `--set optimizer.estimator.k=4` or `--set
    /// task.protocol.kind=sampled` (repeatable; the value is TOML, a bare word is a string;
    /// the keys are listed below).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<Override>,
}

/// The model and the task, the settings most often changed.
#[derive(Debug, Default, Args)]
pub struct ModelAndTask {
    /// The model (`model.name`): a path (Hugging Face folder, `.gguf`, llama2.c `.bin`), a
    /// provisioned name (`splade-tiny`, `smollm2-135m`), `stories260k` or a hub name `org/name`.
    #[arg(long, help_heading = "Common settings")]
    pub model: Option<String>,
    /// The task (`task.name`): sst2, sst5, trec, rte, cb, snli, mnli, boolq, copa, wsc, wic.
    #[arg(long, help_heading = "Common settings")]
    pub task: Option<String>,
    /// The data folder (`task.data_dir`); it must exist (default: $ZO_DATA_DIR if set, else
    /// ./data).
    #[arg(long, help_heading = "Common settings")]
    pub data_dir: Option<PathBuf>,
    /// The weights' precision (`model.precision`): f32, bf16 or f16. Half-precision weights are
    /// widened to f32 as they are read, probed exactly and updated with stochastic rounding.
    #[arg(long, help_heading = "Common settings")]
    pub precision: Option<String>,
    /// Also report calibrated accuracy and macro-F1 at every evaluation (`task.calibrate =
    /// content_free`): surface form competition for a causal LM, content-free calibration for a
    /// masked LM. The uncalibrated metrics and training are unchanged.
    #[arg(long, help_heading = "Common settings")]
    pub calibrate: bool,
}

impl ModelAndTask {
    fn overrides(&self) -> Vec<Override> {
        let mut out = Vec::new();
        if let Some(v) = &self.model {
            out.push(Override::new("model.name", v.as_str()));
        }
        if let Some(v) = &self.task {
            out.push(Override::new("task.name", v.as_str()));
        }
        if let Some(v) = &self.data_dir {
            out.push(Override::new("task.data_dir", v.display().to_string()));
        }
        if let Some(v) = &self.precision {
            out.push(Override::new("model.precision", v.as_str()));
        }
        if self.calibrate {
            out.push(Override::new(
                "task.calibrate",
                Calibration::ContentFree.name(),
            ));
        }
        out
    }
}

/// `bszo finetune`: a preset (default: the embedded `configs/default.toml`) with overrides on top.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Run", allow_negative_numbers = true)]
pub struct FinetuneArgs {
    /// Print the resolved configuration as TOML (every setting) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// The output folder (`output.dir`; default: a new `runs/TASK-OPTIMIZER-TIME`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace an earlier run in the output folder: its files are removed first (only the files
    /// a run writes; others are kept).
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Continue the run in `--out DIR` from its checkpoint (bitwise as if never stopped; a run
    /// stopped before its first checkpoint starts over); only `train.steps`, the evaluation
    /// cadence and the output settings may change.
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
    /// No plots (`output.plots = false`).
    #[arg(long)]
    pub no_plots: bool,
    /// Write the best weights to `best.safetensors` (`output.export = true`).
    #[arg(long, conflicts_with = "no_export")]
    pub export: bool,
    /// Do not write `best.safetensors` (`output.export = false`; the weights can be rebuilt
    /// later with `bszo export`).
    #[arg(long)]
    pub no_export: bool,
    /// Run as one of the processes of an MPI job (`mpirun -np N bszo finetune --parallel MODE
    /// …`; a `bszo` built with the `mpi` feature): `data` splits every minibatch into
    /// `train.shards` pieces shared out between the processes; `directions` splits each step's
    /// independent probes (BSZO's k axes, n-SPSA's directions). Either way every process runs
    /// the identical step; process 0 writes the run folder.
    #[arg(long, value_name = "MODE", help_heading = "Several processes")]
    pub parallel: Option<zo_train::ParallelMode>,
    /// With `--parallel`: compare a hash of the weights between the processes every N steps
    /// (and before the first; 0: only then); a mismatch stops the run naming the step.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 50,
        help_heading = "Several processes"
    )]
    pub guard_every: u64,

    /// The preset and its overrides.
    #[command(flatten)]
    pub preset: Preset,
    /// The model and task.
    #[command(flatten)]
    pub data: ModelAndTask,
    /// The optimizer (`optimizer.name`): mezo, nspsa, mezo_adam, zo_sgd_mmt, zo_sgd_sign,
    /// zo_sgd_cons, hizoo, lozo, bszo, bszo_b, fzoo. Switching away from the preset's algorithm
    /// drops the preset's estimator and rule settings (its `eps` is kept).
    #[arg(long, help_heading = "Common settings")]
    pub optimizer: Option<String>,
    /// The learning rate (`optimizer.schedule.lr`).
    #[arg(long, help_heading = "Common settings")]
    pub lr: Option<f64>,
    /// The perturbation scale ε (`optimizer.estimator.eps`; HiZOO's μ).
    #[arg(long, help_heading = "Common settings")]
    pub eps: Option<f64>,
    /// The step budget (`train.steps`).
    #[arg(long, help_heading = "Common settings")]
    pub steps: Option<u64>,
    /// The run seed (`train.seed`: directions; the minibatch order uses seed + 1).
    #[arg(long, help_heading = "Common settings")]
    pub seed: Option<u64>,
    /// Row-sparse embedding probes (`train.row_sparse = true`): each step perturbs and updates
    /// only the embedding rows its minibatch reads (masked LMs; not HiZOO). Off by default.
    #[arg(long, help_heading = "Common settings")]
    pub row_sparse: bool,
    /// What is trained (`peft.method`): `full` (every weight, the default), `lora` (low-rank
    /// adapters on the query and value projections: `peft.rank` 8, `peft.alpha` 16,
    /// `peft.targets`) or `prefix` (trainable attention prefixes: `peft.tokens` 5, `peft.init`
    /// real or random). The base weights stay frozen with an adapter.
    #[arg(long, value_name = "METHOD", help_heading = "Common settings")]
    pub peft: Option<String>,
}

/// Find a preset: an existing file, else `configs/NAME.toml` in the current folder.
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
    let candidate = Path::new("configs").join(&name);
    if candidate.is_file() {
        return Ok(candidate);
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

/// The names of the presets in `configs/` of the current folder.
pub fn presets() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("configs")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".toml")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

impl FinetuneArgs {
    /// The preset (or the embedded default) with these flags and overrides applied.
    pub fn to_config(&self) -> Result<RunConfig> {
        run_config(self.preset.config.as_deref(), &self.overrides()?)
    }

    /// Every flag that was given, as an override, in the order they apply (`--set` last).
    pub fn overrides(&self) -> Result<Vec<Override>> {
        let mut out = self.data.overrides();
        if let Some(v) = &self.optimizer {
            out.push(Override::new("optimizer.name", v.as_str()));
        }
        if let Some(v) = self.lr {
            out.push(Override::new("optimizer.schedule.lr", v));
        }
        if let Some(v) = self.eps {
            out.push(Override::new("optimizer.estimator.eps", v));
        }
        for (key, value, flag) in [
            ("train.steps", self.steps, "--steps"),
            ("train.seed", self.seed, "--seed"),
        ] {
            if let Some(v) = value {
                let v = i64::try_from(v).map_err(|_| anyhow!("{flag}: {v} is too large"))?;
                out.push(Override::new(key, v));
            }
        }
        if self.row_sparse {
            out.push(Override::new("train.row_sparse", true));
        }
        if let Some(v) = &self.peft {
            out.push(Override::new("peft.method", v.as_str()));
        }
        if let Some(v) = &self.out {
            out.push(Override::new("output.dir", v.display().to_string()));
        }
        if self.overwrite {
            out.push(Override::new("output.overwrite", true));
        }
        if self.no_plots {
            out.push(Override::new("output.plots", false));
        }
        if self.export || self.no_export {
            out.push(Override::new("output.export", self.export));
        }
        out.extend(self.preset.set.iter().cloned());
        Ok(out)
    }
}

/// A preset (a file or a name in `./configs/`; `None`: the embedded default) with `overrides`
/// applied in order, completed and typed. A change of `optimizer.name` applies first and drops the
/// preset's estimator and rule settings other than `eps`, which belonged to its algorithm.
pub fn run_config(preset: Option<&str>, overrides: &[Override]) -> Result<RunConfig> {
    let (mut doc, origin) = match preset {
        Some(spec) => {
            let path = preset_path(spec)?;
            (RunConfig::document(&path)?, path.display().to_string())
        }
        None => {
            let origin = "configs/default.toml".to_string();
            (settings::parse(DEFAULT_TOML, &origin)?, origin)
        }
    };
    // The string at `table.key` of the document: a setting that selects which others apply.
    let selector = |doc: &toml::Table, table: &str, key: &str| {
        doc.get(table)
            .and_then(|t| t.get(key))
            .and_then(toml::Value::as_str)
            .map(str::to_string)
    };
    let algorithm = |doc: &toml::Table| selector(doc, "optimizer", "name");
    let before = algorithm(&doc);
    let method = |doc: &toml::Table| selector(doc, "peft", "method");
    let method_before = method(&doc);
    let (methods, overrides): (Vec<&Override>, Vec<&Override>) =
        overrides.iter().partition(|o| o.dotted() == "peft.method");
    for o in &methods {
        o.apply(&mut doc)?;
    }
    // A change of method drops the preset's settings of the other method.
    if method(&doc) != method_before
        && let Some(toml::Value::Table(peft)) = doc.get_mut("peft")
    {
        peft.retain(|k, _| k == "method");
    }
    let (names, rest): (Vec<&Override>, Vec<&Override>) = overrides
        .into_iter()
        .partition(|o| o.dotted() == "optimizer.name");
    for o in &names {
        o.apply(&mut doc)?;
    }
    if algorithm(&doc) != before
        && let Some(toml::Value::Table(opt)) = doc.get_mut("optimizer")
    {
        opt.remove("rule");
        if let Some(toml::Value::Table(est)) = opt.get_mut("estimator") {
            est.retain(|k, _| k == "eps");
        }
    }
    for o in rest {
        o.apply(&mut doc)?;
    }
    RunConfig::from_document(doc, &origin)
}

/// A value as a preset would spell it (small floats in exponent form: `3e-4`).
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::Float(f) if *f != 0.0 && f.abs() < 1e-2 => format!("{f:e}"),
        other => other.to_string(),
    }
}

/// The settings of `bszo finetune`, for its `--help`: every key of the embedded preset with its
/// value, the optional keys, and each algorithm's estimator and rule settings with their defaults.
pub fn settings_help() -> String {
    let default = RunConfig::embedded_default();
    let mut out = String::from(
        "Settings: every key of a preset, settable with --set KEY=VALUE; the values shown are those of the embedded preset configs/default.toml:\n",
    );
    let mut pairs = Vec::new();
    if let Ok(toml::Value::Table(t)) = toml::Value::try_from(&default) {
        settings::flatten(&t, "", &mut pairs);
    }
    for (key, value) in pairs.iter().filter(|(k, _)| {
        !k.starts_with("optimizer.estimator.") && !k.starts_with("optimizer.rule.")
    }) {
        out.push_str(&format!("  {key} = {}\n", show(value)));
    }
    out.push_str(
        "  model.tokenizer, task.test_size, task.data_dir, output.dir: unset unless given\n",
    );
    out.push_str(&format!(
        "  task.calibrate = \"{}\" (or \"{}\": also report calibrated accuracy and macro-F1; --calibrate)\n",
        Calibration::None,
        Calibration::ContentFree
    ));
    out.push_str(
        "  peft.method = \"full\" (every weight is trained; --peft), or with its settings:\n",
    );
    let (lora, prefix) = (
        zo_models::LoraConfig::default(),
        zo_models::PrefixConfig::default(),
    );
    out.push_str(&format!(
        "    peft.method = \"lora\": peft.rank = {}, peft.alpha = {:?}, peft.targets = []\n",
        lora.rank, lora.alpha
    ));
    out.push_str(&format!(
        "    peft.method = \"prefix\": peft.tokens = {}, peft.init = \"real\" (or \"random\")\n",
        prefix.tokens
    ));
    out.push_str("    (peft.targets = []: the query and value projections; a target matches a layer's name or a dotted tail of it)\n\n");
    let eps = 1e-3;
    out.push_str(&format!(
        "optimizer.estimator.* and optimizer.rule.* per optimizer.name (defaults at eps = {}; a preset lists only what it changes):\n",
        show(&toml::Value::Float(eps))
    ));
    for algorithm in Algorithm::ALL {
        let keys: Vec<String> = settings::algorithm_settings(algorithm, eps)
            .iter()
            .map(|(k, v)| format!("{k} = {}", show(v)))
            .collect();
        out.push_str(&format!("  {algorithm}: {}\n", keys.join(", ")));
    }
    out.push_str(
        "\noptimizer.schedule.kind, with its settings (total_steps defaults to train.steps):\n",
    );
    for kind in Schedule::KINDS {
        if let Some(s) = Schedule::of_kind(kind, 1e-3, 1000) {
            out.push_str(&format!("  {}\n", inline(&s)));
        }
    }
    out.push_str("task.protocol.kind, with its settings (few_shot seeds: 13, 21, 42, 87, 100; sampled sizes: the task's unless given):\n");
    for kind in Protocol::KINDS {
        if let Some(p) = Protocol::of_kind(kind, Task::Sst2, 42) {
            out.push_str(&format!("  {}\n", inline(&p)));
        }
    }
    out
}

/// A value's settings on one line: `kind = "linear", lr = 1e-3, …`.
fn inline<T: serde::Serialize>(value: &T) -> String {
    let mut pairs = Vec::new();
    if let Ok(toml::Value::Table(t)) = toml::Value::try_from(value) {
        settings::flatten(&t, "", &mut pairs);
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{k} = {}", show(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `bszo` command line, with the settings listed after `finetune`'s flags.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command().mut_subcommand("finetune", |c| c.after_help(settings_help()))
}
