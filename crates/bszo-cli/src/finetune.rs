//! One fine-tuning run, end to end: data, model, zero-shot evaluation, training with checkpoints,
//! the best weights rebuilt from the seed log, the report, plots and the exported weights.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use zo_data::{Protocol, load_splits, resolve_data_dir};
use zo_optim::ParamSet;
use zo_train::{
    Best, CHECKPOINT_FILE, Event, JsonlWriter, Metrics, SEED_LOG_FILE, Split, StopReason,
    TestWeights, Trainer, read_seed_log, replay, write_atomic,
};

use crate::config::{ModelKind, RunConfig};
use crate::load;
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
    /// Continue the run in `out_dir` from its checkpoint.
    pub resume: bool,
    /// Draw a progress bar.
    pub progress: bool,
    /// Set to stop after the current step (Ctrl-C).
    pub stop: Arc<AtomicBool>,
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
    /// Trainable parameters.
    pub parameters: usize,
    /// The data protocol.
    pub protocol: Protocol,
    /// Examples in train / validation / test.
    pub sizes: [usize; 3],
    /// The base weights' metrics.
    pub zero_shot: ZeroShot,
    /// The best validation score and its step.
    pub best: Option<Best>,
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

fn default_out_dir(config: &RunConfig) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!(
        "{}-{}-{secs}",
        config.task.name.to_ascii_lowercase(),
        config.optimizer.name.to_ascii_lowercase()
    ))
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

/// Keep the metrics events up to `step` (a resumed run rewrites what came after its checkpoint).
fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let file = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut kept = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(&line)
            .map_err(|e| anyhow!("{}:{}: bad event: {e}", path.display(), i + 1))?;
        let keep = match &event {
            Event::Step { report, .. } => report.step < step,
            Event::Evaluation { step: s, split, .. } => *s <= step && *split == Split::Validation,
            Event::EarlyStop { step: s, .. } => *s <= step,
            _ => false,
        };
        if keep {
            kept.extend_from_slice(line.as_bytes());
            kept.push(b'\n');
        }
    }
    write_atomic(path, &kept)?;
    Ok(())
}

/// Read the metrics stream.
pub fn read_metrics(path: &Path) -> Result<Vec<Event>> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| anyhow!("{}:{}: bad event: {e}", path.display(), i + 1))
        })
        .collect()
}

/// Run.
pub fn finetune(options: Options) -> Result<Outcome> {
    let started = Instant::now();
    let (config, dir) = if options.resume {
        let dir = options
            .out_dir
            .clone()
            .or_else(|| options.config.output.dir.clone())
            .ok_or_else(|| anyhow!("--resume needs the run's folder (--out DIR)"))?;
        let saved_path = dir.join(CONFIG_FILE);
        if !dir.join(CHECKPOINT_FILE).exists() {
            bail!("--resume: no checkpoint in {}", dir.display());
        }
        let saved = RunConfig::load(&saved_path)?;
        if let Some((field, was, now)) = first_difference(&saved, &options.config) {
            bail!(
                "--resume: `{field}` is {now} but the run in {} has {was}; only train.steps, the evaluation cadence and [output] may change",
                dir.display()
            );
        }
        let mut config = options.config.clone();
        config.output.dir = Some(dir.clone());
        (config, dir)
    } else {
        let dir = match &options.out_dir {
            Some(d) => d.clone(),
            None => match &options.config.output.dir {
                Some(d) => d.clone(),
                None => default_out_dir(&options.config),
            },
        };
        let mut config = options.config.clone();
        config.output.dir = Some(dir.clone());
        for name in [CHECKPOINT_FILE, REPORT_FILE] {
            if dir.join(name).exists() && !config.output.overwrite {
                bail!(
                    "{} holds an earlier run ({name}); pass --overwrite to replace it, or --resume to continue it",
                    dir.display()
                );
            }
        }
        (config, dir)
    };
    let resolved = config.resolve()?;

    // Data and model.
    let data_dir = resolve_data_dir(config.task.data_dir.clone())?;
    let mut splits = load_splits(&data_dir, resolved.task, resolved.protocol)?;
    if let Some(n) = config.task.test_size {
        splits.test.truncate(n);
    }
    let sizes = [
        splits.train.len(),
        splits.validation.len(),
        splits.test.len(),
    ];
    let loaded = load::load(
        &config.model,
        resolved.kind,
        resolved.precision,
        resolved.task,
        resolved.nli_template,
    )?;
    let (model_path, kind) = (loaded.path.clone(), loaded.kind);
    let mut weights = loaded.weights;
    let parameters = weights.num_params();
    let task = PromptTask::new(loaded.head, splits, config.task.eval_batch_size)?
        .with_train_as_classification(resolved.train_as_classification)?;

    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let zero_path = dir.join(ZERO_SHOT_FILE);
    let zero_shot = if options.resume && zero_path.exists() {
        let text = fs::read_to_string(&zero_path)
            .with_context(|| format!("cannot read {}", zero_path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| anyhow!("{}: bad JSON: {e}", zero_path.display()))?
    } else {
        let z = ZeroShot {
            validation: task.evaluate_split(Split::Validation)?,
            test: task.evaluate_split(Split::Test)?,
        };
        if !options.resume {
            write_atomic(&dir.join(CONFIG_FILE), config.to_toml().as_bytes())?;
        }
        write_atomic(&zero_path, &serde_json::to_vec_pretty(&z)?)?;
        z
    };

    // The trainer.
    let metrics_path = dir.join(METRICS_FILE);
    let optimizer = resolved.optimizer.clone();
    let per_step = optimizer.forwards_per_step();
    let mut trainer = Trainer::new(optimizer.clone(), resolved.train.clone(), task)?
        .output_dir(&dir, config.output.overwrite)
        .stop_flag(options.stop.clone());
    let (mut state, start_step) = if options.resume {
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
        truncate_metrics(&metrics_path, step)?;
        (ck.state, step)
    } else {
        (trainer.start(&weights, config.train.seed)?, 0)
    };
    let writer = if options.resume {
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
        let fresh = load::load_weights(&base.0, base.1, base.2).map_err(|e| format!("{e:#}"))?;
        w.copy_from(&fresh).map_err(|e| e.to_string().into())
    })?;

    let mut files = vec![
        CONFIG_FILE.to_string(),
        ZERO_SHOT_FILE.to_string(),
        CHECKPOINT_FILE.to_string(),
        SEED_LOG_FILE.to_string(),
        METRICS_FILE.to_string(),
    ];
    if summary.reason != StopReason::StopFlag {
        if config.output.export {
            weights
                .save_safetensors(&dir.join(WEIGHTS_FILE))
                .with_context(|| format!("exporting the weights to {}", dir.display()))?;
            files.push(WEIGHTS_FILE.into());
        }
        if config.output.plots {
            let events = read_metrics(&metrics_path)?;
            for p in zo_train::plot::plot_run(&events, &dir)? {
                if let Some(name) = p.file_name() {
                    files.push(name.to_string_lossy().into_owned());
                }
            }
        }
        files.push(REPORT_FILE.into());
    }
    let report = Report {
        config: config.clone(),
        model_path,
        model_kind: kind,
        parameters,
        protocol: resolved.protocol,
        sizes,
        zero_shot,
        best: summary.best,
        test: summary.test.clone(),
        test_weights: summary.test_weights,
        steps: summary.steps,
        stop_reason: summary.reason,
        forwards: Forwards {
            train: summary.train_forwards,
            eval: summary.eval_forwards,
            zero_shot: 0,
            per_step,
        },
        wall_time_s: started.elapsed().as_secs_f64(),
        peak_rss_bytes: peak_rss_bytes(),
        files,
    };
    let mut report = report;
    report.forwards.zero_shot =
        report.zero_shot.validation.forwards + report.zero_shot.test.forwards;
    if summary.reason != StopReason::StopFlag {
        write_atomic(&dir.join(REPORT_FILE), &serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(Outcome { dir, report })
}
