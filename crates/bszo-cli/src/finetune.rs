//! One fine-tuning run, end to end: data, model, zero-shot evaluation, training with checkpoints,
//! the best weights rebuilt from the seed log, the report, plots and the exported weights.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use zo_data::Protocol;
use zo_optim::ParamSet;
use zo_train::{
    Best, CHECKPOINT_FILE, Event, JsonlWriter, Metrics, RunLock, SEED_LOG_FILE, Split, StopReason,
    TestWeights, Trainer, read_jsonl, read_seed_log, remove_temporaries, replay, write_atomic,
};

use crate::config::{ModelKind, RunConfig};
use crate::inputs::{self, INPUTS_FILE, Inputs, Role};
use crate::load;
use crate::resources::{self, ModelShape};
use crate::task_model::PromptTask;

/// The run's configuration as saved in its folder (what `--resume` reads back).
pub const CONFIG_FILE: &str = "config.toml";
/// The metrics stream (one event per line).
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The final report.
pub const REPORT_FILE: &str = "report.json";
/// The zero-shot evaluation, written before training.
pub const ZERO_SHOT_FILE: &str = "zero_shot.json";
/// The exported best weights.
pub const WEIGHTS_FILE: &str = "best.safetensors";

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The run.
    pub config: RunConfig,
    /// The output folder (`None`: a new folder under `runs/`).
    pub out_dir: Option<PathBuf>,
    /// Continue the run in `out_dir` from its checkpoint (a run without a checkpoint yet starts
    /// over from step 0).
    pub resume: bool,
    /// Draw a progress bar.
    pub progress: bool,
    /// Set to stop after the current step (Ctrl-C, SIGTERM).
    pub stop: Arc<AtomicBool>,
    /// Go on when the run's recorded inputs (base weights, tokenizer, data) changed.
    pub accept_changed_inputs: bool,
    /// Refuse a configuration whose estimated memory exceeds this many bytes (default: the memory
    /// available on the machine).
    pub max_memory: Option<u64>,
}

impl Options {
    /// Run `config` in `out_dir`, fresh, without a progress bar, limits and flags at their defaults.
    pub fn new(config: RunConfig, out_dir: Option<PathBuf>) -> Self {
        Self {
            config,
            out_dir,
            resume: false,
            progress: false,
            stop: Arc::new(AtomicBool::new(false)),
            accept_changed_inputs: false,
            max_memory: None,
        }
    }
}

/// The zero-shot metrics of the base weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZeroShot {
    /// On the validation split.
    pub validation: Metrics,
    /// On the test split.
    pub test: Metrics,
}

/// Forward-pass counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Forwards {
    /// Of the optimizer steps.
    pub train: u64,
    /// Of the evaluations (zero-shot excluded).
    pub eval: u64,
    /// Of the zero-shot evaluation.
    pub zero_shot: u64,
    /// Per optimizer step.
    pub per_step: usize,
}

/// The final report (`report.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The run's configuration.
    pub config: RunConfig,
    /// The resolved model path.
    pub model_path: PathBuf,
    /// The head.
    pub model_kind: ModelKind,
    /// The data folder that was read (as resolved from `task.data_dir`, `ZO_DATA_DIR` and the
    /// default locations).
    #[serde(default)]
    pub data_dir: PathBuf,
    /// Trainable parameters.
    pub parameters: usize,
    /// The data protocol.
    pub protocol: Protocol,
    /// Examples in train / validation / test.
    pub sizes: [usize; 3],
    /// The base weights' metrics.
    pub zero_shot: ZeroShot,
    /// The best validation score and its step; step 0 is the starting (base) weights, whose
    /// zero-shot validation score every later evaluation must strictly beat.
    pub best: Option<Best>,
    /// No step beat the starting weights on validation: the best step is 0, and the tested and
    /// exported weights are the starting weights.
    #[serde(default)]
    pub best_is_start: bool,
    /// The test metrics.
    pub test: Option<Metrics>,
    /// Which weights were tested.
    pub test_weights: Option<TestWeights>,
    /// Steps completed.
    pub steps: u64,
    /// Why the run ended.
    pub stop_reason: StopReason,
    /// Forward passes.
    pub forwards: Forwards,
    /// Wall-clock seconds of this process (a resumed run counts only its own time).
    pub wall_time_s: f64,
    /// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
    pub peak_rss_bytes: Option<u64>,
    /// Files written in the output folder.
    pub files: Vec<String>,
}

/// What a run returns.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The output folder.
    pub dir: PathBuf,
    /// The report (also in `dir/report.json` unless the run was stopped).
    pub report: Report,
    /// A resume that found no checkpoint (a run stopped before its first one, or none at all)
    /// and started the run from step 0.
    pub started_over: bool,
}

/// A `kB` field of this process's `/proc/self/status` (Linux), e.g. `VmHWM:`.
pub fn status_kb(field: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident set size of this process (Linux `VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kb("VmHWM:").map(|kb| kb * 1024)
}

/// The files a run writes in its folder, besides the optimizer-state sidecars
/// (`optimizer-state-STEP.safetensors`), parameter files (`params-STEP.bin`), temporary files of
/// atomic writes (`.NAME.tmp-PID`) and the lock (`.lock`).
pub const RUN_FILES: [&str; 12] = [
    CONFIG_FILE,
    INPUTS_FILE,
    ZERO_SHOT_FILE,
    CHECKPOINT_FILE,
    SEED_LOG_FILE,
    METRICS_FILE,
    REPORT_FILE,
    WEIGHTS_FILE,
    "loss.svg",
    "loss.png",
    "validation.svg",
    "validation.png",
];

/// Whether `name` is a file that a run writes in its folder (the lock excepted).
pub fn is_run_file(name: &str) -> bool {
    RUN_FILES.contains(&name)
        || (name.starts_with("optimizer-state-") && name.ends_with(".safetensors"))
        || (name.starts_with("params-") && name.ends_with(".bin"))
        || zo_train::checkpoint::is_temporary_name(name)
}

/// The run files present in `dir`, sorted.
pub fn run_files_in(dir: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_run_file(&name) {
            found.push(name);
        }
    }
    found.sort();
    Ok(found)
}

fn remove_run_files(dir: &Path) -> Result<()> {
    for name in run_files_in(dir)? {
        let path = dir.join(&name);
        fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

/// Removes what a fresh run wrote when it fails before training starts (a bad model, data or
/// setting found during loading or the zero-shot evaluation): no half-made run is left behind.
struct Cleanup {
    dir: PathBuf,
    created: bool,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.armed {
            let _ = remove_run_files(&self.dir);
            if self.created {
                let _ = fs::remove_file(self.dir.join(zo_train::LOCK_FILE));
                let _ = fs::remove_dir(&self.dir);
            }
        }
    }
}

fn default_out_dir(config: &RunConfig) -> Result<PathBuf> {
    let stem = format!(
        "{}-{}",
        config.task.name.name(),
        config.optimizer.name.name()
    );
    Ok(zo_train::create_unique_dir(Path::new("runs"), &stem)?)
}

/// The first field (dotted path) where two configurations differ, among those a resume must keep.
fn first_difference(saved: &RunConfig, now: &RunConfig) -> Option<(String, String, String)> {
    fn walk(
        path: &str,
        a: &serde_json::Value,
        b: &serde_json::Value,
    ) -> Option<(String, String, String)> {
        use serde_json::Value;
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                keys.into_iter().find_map(|k| {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(
                        &p,
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                    )
                })
            }
            _ if a == b => None,
            _ => Some((path.to_string(), a.to_string(), b.to_string())),
        }
    }
    // Only the budget, the evaluation cadence and the outputs may change on a resume.
    let strip = |c: &RunConfig| {
        let mut c = c.clone();
        c.train.steps = 0;
        c.train.eval_every = 0;
        c.train.patience = 0;
        c.train.checkpoint_every = 0;
        c.output = crate::config::OutputSection {
            dir: None,
            overwrite: false,
            plots: false,
            export: false,
        };
        serde_json::to_value(c).expect("a run config serialises")
    };
    walk("", &strip(saved), &strip(now))
}

/// Read the metrics stream (a torn last line, left by a kill, is left out).
pub fn read_metrics(path: &Path) -> Result<Vec<Event>> {
    Ok(read_jsonl(path)?.0)
}

/// Run.
pub fn finetune(options: Options) -> Result<Outcome> {
    let started = Instant::now();
    if options.resume && options.config.output.overwrite {
        bail!(
            "--resume continues the run in its folder and --overwrite replaces it: pass one of them"
        );
    }
    // Every setting is checked before anything is written.
    options.config.resolve()?;

    // The folder, locked for this process alone.
    let explicit = options
        .out_dir
        .clone()
        .or_else(|| options.config.output.dir.clone());
    let (dir, created) = match explicit {
        Some(d) if options.resume && !d.is_dir() => bail!(
            "--resume: no checkpoint in {} (the folder does not exist: nothing was started there); run without --resume to start it",
            d.display()
        ),
        Some(d) => {
            let created = !d.exists();
            fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
            (d, created)
        }
        None if options.resume => bail!("--resume needs the run's folder (--out DIR)"),
        None => (default_out_dir(&options.config)?, true),
    };
    let _lock = RunLock::acquire(&dir)?;
    remove_temporaries(&dir)?;
    let resuming = options.resume && dir.join(CHECKPOINT_FILE).exists();
    let mut cleanup = Cleanup {
        dir: dir.clone(),
        created,
        armed: false,
    };
    let mut config = options.config.clone();
    if resuming {
        let saved = RunConfig::load(&dir.join(CONFIG_FILE))?;
        if let Some((field, was, now)) = first_difference(&saved, &options.config) {
            bail!(
                "--resume: `{field}` is {now} but the run in {} has {was}; only train.steps, the evaluation cadence and [output] may change",
                dir.display()
            );
        }
    } else {
        // A fresh run; or a resumed one that had no checkpoint yet (stopped before its first
        // one), which starts over.
        let present = run_files_in(&dir)?;
        if let Some(first) = present.first() {
            if !(config.output.overwrite || options.resume) {
                bail!(
                    "{} already holds {first}{}, which a run writes; pass --overwrite to replace the earlier run's files (other files are kept), or --resume to continue it",
                    dir.display(),
                    if present.len() > 1 {
                        format!(" and {} more", present.len() - 1)
                    } else {
                        String::new()
                    }
                );
            }
            remove_run_files(&dir)?;
        }
        cleanup.armed = true;
    }
    config.output.dir = Some(dir.clone());
    if !resuming {
        write_atomic(&dir.join(CONFIG_FILE), config.to_toml().as_bytes())?;
    }
    let resolved = config.resolve()?;

    // Data and model.
    let (data_dir, splits, loaded) = load::data_and_model(&config, &resolved)?;
    let sizes = [
        splits.train.len(),
        splits.validation.len(),
        splits.test.len(),
    ];
    let (model_path, kind) = (loaded.path.clone(), loaded.kind);
    let mut weights = loaded.weights;
    let parameters = weights.num_params();

    // What the run needs, before any work.
    let shape = ModelShape::from_tensors(
        &weights.tensors(),
        resources::precision_bytes(resolved.precision),
    );
    resources::check(
        &resources::estimate(
            shape,
            &resolved.optimizer,
            config.train.batch_size,
            config.task.eval_batch_size,
            config.model.max_length,
        ),
        options.max_memory,
    )?;

    // The inputs' hashes: recorded by a fresh run, checked by a resumed one.
    let model_inputs = inputs::model_files(&model_path, config.model.tokenizer.as_deref())?;
    let mut all_inputs = model_inputs.clone();
    all_inputs.extend(inputs::data_files(&data_dir, resolved.task)?);
    let recorded = if resuming {
        if options.accept_changed_inputs {
            None
        } else {
            let recorded = Inputs::load(&dir)?;
            recorded.check(&all_inputs, &[Role::Model, Role::Tokenizer, Role::Data])?;
            Some(recorded)
        }
    } else {
        let recorded = inputs::record(&all_inputs)?;
        recorded.save(&dir)?;
        Some(recorded)
    };

    let task = PromptTask::new(loaded.head, splits, config.task.eval_batch_size)?
        .with_train_as_classification(resolved.train_as_classification)?;
    let zero_path = dir.join(ZERO_SHOT_FILE);
    let zero_shot = if resuming && zero_path.exists() {
        let text = fs::read_to_string(&zero_path)
            .with_context(|| format!("cannot read {}", zero_path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| anyhow!("{}: bad JSON: {e}", zero_path.display()))?
    } else {
        let z = ZeroShot {
            validation: task.evaluate_split(Split::Validation)?,
            test: task.evaluate_split(Split::Test)?,
        };
        write_atomic(&zero_path, &serde_json::to_vec_pretty(&z)?)?;
        z
    };

    // The trainer.
    let metrics_path = dir.join(METRICS_FILE);
    let optimizer = resolved.optimizer.clone();
    let per_step = optimizer.forwards_per_step();
    // The zero-shot validation score is the step-0 candidate for the best weights.
    let mut trainer = Trainer::new(optimizer.clone(), resolved.train.clone(), task)?
        .output_dir(&dir, true)
        .stop_flag(options.stop.clone())
        .start_validation(zero_shot.validation.clone());
    let (mut state, start_step) = if resuming {
        let ck = trainer.resume()?;
        let step = ck.state.looping.step;
        let log = read_seed_log(&dir.join(SEED_LOG_FILE))?;
        let replayed = replay(&optimizer, &mut weights, &log, step)?;
        if replayed != ck.state.optimizer {
            bail!(
                "{}: the seed log replayed from the base weights does not reproduce the checkpoint's optimizer state",
                dir.display()
            );
        }
        (ck.state, step)
    } else {
        (trainer.start(&weights, config.train.seed)?, 0)
    };
    // From here on the folder holds a run that `--resume` continues or restarts.
    cleanup.armed = false;
    let writer = if resuming {
        JsonlWriter::append(&metrics_path)?
    } else {
        JsonlWriter::create(&metrics_path)?
    };
    trainer = trainer.observe(writer.metrics_only());
    if options.progress {
        trainer = trainer.observe(zo_train::progress::ProgressBar::new(
            resolved.train.max_steps,
            start_step,
        ));
    }

    let base = (model_path.clone(), kind, resolved.precision);
    let summary = trainer.run_replay_best(&mut weights, &mut state, |w| {
        if let Some(recorded) = &recorded {
            recorded
                .check(&model_inputs, &[Role::Model, Role::Tokenizer])
                .map_err(|e| format!("{e:#}"))?;
        }
        let fresh = load::load_weights(&base.0, base.1, base.2).map_err(|e| format!("{e:#}"))?;
        w.copy_from(&fresh).map_err(|e| e.to_string().into())
    })?;

    if summary.reason != StopReason::StopFlag {
        if config.output.export {
            weights
                .save_safetensors(&dir.join(WEIGHTS_FILE))
                .with_context(|| format!("exporting the weights to {}", dir.display()))?;
        }
        if config.output.plots {
            let events = read_metrics(&metrics_path)?;
            zo_train::plot::plot_run(&events, &dir)?;
        }
    }
    let mut files = run_files_in(&dir)?;
    if summary.reason != StopReason::StopFlag && !files.iter().any(|f| f == REPORT_FILE) {
        files.push(REPORT_FILE.into());
        files.sort();
    }
    let zero_shot_forwards = zero_shot.validation.forwards + zero_shot.test.forwards;
    let report = Report {
        config: config.clone(),
        model_path,
        model_kind: kind,
        data_dir,
        parameters,
        protocol: resolved.protocol,
        sizes,
        zero_shot,
        best: summary.best,
        best_is_start: summary.best.is_some_and(|b| b.step == 0),
        test: summary.test.clone(),
        test_weights: summary.test_weights,
        steps: summary.steps,
        stop_reason: summary.reason,
        forwards: Forwards {
            train: summary.train_forwards,
            eval: summary.eval_forwards,
            zero_shot: zero_shot_forwards,
            per_step,
        },
        wall_time_s: started.elapsed().as_secs_f64(),
        peak_rss_bytes: peak_rss_bytes(),
        files,
    };
    if summary.reason != StopReason::StopFlag {
        write_atomic(&dir.join(REPORT_FILE), &serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(Outcome {
        dir,
        report,
        started_over: options.resume && !resuming,
    })
}
