//! One fine-tuning run, end to end: data, model, zero-shot evaluation, training with checkpoints,
//! the best weights rebuilt from the seed log, the report, plots and the exported weights.

use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use zo_models::Weights;
use zo_optim::{ObjectiveError, ParamSet};
use zo_train::comm::Communicator;
pub use zo_train::{CONFIG_FILE, METRICS_FILE, REPORT_FILE, WEIGHTS_FILE, ZERO_SHOT_FILE};
use zo_train::{Event, JsonlWriter, RunDir, Split, StopReason, Trainer, read_jsonl};
use zo_train::{Guard, ParallelMode};

use crate::config::RunConfig;
use crate::inputs::{self, Inputs, Role};
use crate::load;
pub use crate::report::{
    Forwards, Outcome, ProcessesReport, Report, ZeroShot, peak_rss_bytes, status_kb,
};
use crate::resources::{self, ModelShape};
use crate::task_model::PromptTask;

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
    /// The processes of the run and how they split a step (`None`: this process alone).
    pub processes: Option<Processes>,
}

/// The processes that run one fine-tuning as one (`bszo finetune --parallel`): every process
/// calls [`finetune`] with the same options; process 0 owns the run folder.
#[derive(Clone)]
pub struct Processes {
    /// The communicator (e.g. MPI's world).
    pub comm: Rc<dyn Communicator>,
    /// How a step is split between the processes.
    pub mode: ParallelMode,
    /// Compare a hash of the weights between the processes every this many steps (and before
    /// the first step; 0: only then).
    pub guard_every: u64,
}

impl std::fmt::Debug for Processes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processes")
            .field("rank", &self.comm.rank())
            .field("size", &self.comm.size())
            .field("mode", &self.mode)
            .field("guard_every", &self.guard_every)
            .finish()
    }
}

/// A hash of the weights' current values (BLAKE3 of every tensor's name and f32 values, cut
/// to 64 bits): what the processes' consistency guard compares.
pub fn fingerprint(weights: &Weights) -> std::result::Result<u64, ObjectiveError> {
    let mut h = blake3::Hasher::new();
    for (info, tensor) in weights.iter() {
        h.update(info.name.as_bytes());
        let values = tensor
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        h.update(bytemuck::cast_slice(&values));
    }
    let bytes = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes.as_bytes()[..8]);
    Ok(u64::from_le_bytes(first))
}

/// The mean time of one all-gather of one `f64` over `reps` of them, in microseconds (0 for one
/// process), after one to line the processes up.
fn allgather_latency_us(comm: &dyn Communicator, reps: usize) -> Result<f64> {
    if comm.size() == 1 {
        return Ok(0.0);
    }
    comm.all_gather(&[0.0])?;
    let t = Instant::now();
    for i in 0..reps {
        comm.all_gather(&[i as f64])?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / reps as f64)
}

/// Process 0's `value`, on every process (`None` when `value` is empty there).
fn share_bytes(comm: Option<&Rc<dyn Communicator>>, value: Vec<u8>) -> Result<Vec<u8>> {
    match comm {
        Some(c) if c.size() > 1 => {
            let mut buf = if c.rank() == 0 { value } else { Vec::new() };
            c.broadcast(0, &mut buf)?;
            Ok(buf)
        }
        _ => Ok(value),
    }
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
            processes: None,
        }
    }
}

/// Removes what a fresh run wrote when it fails before training starts (a bad model, data or
/// setting found during loading or the zero-shot evaluation): no half-made run is left behind.
struct Cleanup {
    dir: RunDir,
    created: bool,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.dir.remove_run_files();
            if self.created {
                let _ = fs::remove_file(self.dir.file(zo_train::LOCK_FILE));
                let _ = fs::remove_dir(self.dir.path());
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

/// Open the run's folder for process 0: create or check it, take its lock, compare a resumed
/// run's configuration with the saved one, clear an earlier run's files (with `--overwrite`),
/// and write the configuration of a fresh run. Returns the folder, whether the run resumes, the
/// lock, the clean-up of a fresh run that fails before training, and the configuration.
fn open_run_folder(
    options: &Options,
) -> Result<(PathBuf, bool, zo_train::RunLock, Cleanup, RunConfig)> {
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
    let run = RunDir::new(&dir);
    let lock = run.lock()?;
    run.remove_temporaries()?;
    let resuming = options.resume && run.has_checkpoint();
    let mut cleanup = Cleanup {
        dir: run.clone(),
        created,
        armed: false,
    };
    let mut config = options.config.clone();
    if resuming {
        let saved = RunConfig::load(&run.file(CONFIG_FILE))?;
        if let Some((field, was, now)) = first_difference(&saved, &options.config) {
            bail!(
                "--resume: `{field}` is {now} but the run in {} has {was}; only train.steps, the evaluation cadence and [output] may change",
                dir.display()
            );
        }
    } else {
        // A fresh run; or a resumed one that had no checkpoint yet (stopped before its first
        // one), which starts over.
        let present = run.run_files()?;
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
            run.remove_run_files()?;
        }
        cleanup.armed = true;
    }
    config.output.dir = Some(dir.clone());
    if !resuming {
        run.write(CONFIG_FILE, config.to_toml().as_bytes())?;
    }
    Ok((dir, resuming, lock, cleanup, config))
}

/// A test hook for the processes' consistency guard: with `BSZO_TEST_DESYNC_RANK=r` process `r`
/// moves one weight by 1e-3 after loading, as a process whose weights went astray would.
fn desync_hook(rank: usize, weights: &mut Weights) -> Result<()> {
    let Ok(target) = std::env::var("BSZO_TEST_DESYNC_RANK") else {
        return Ok(());
    };
    if target.trim().parse::<usize>().ok() != Some(rank) {
        return Ok(());
    }
    let mut done = false;
    weights.visit_mut(&mut |_, data| {
        if !done {
            use zo_optim::ParamSliceMut as S;
            match data {
                S::F32(d) => d.first_mut().into_iter().for_each(|v| *v += 1e-3),
                S::BF16(d) => d
                    .first_mut()
                    .into_iter()
                    .for_each(|v| *v = half::bf16::from_f32(v.to_f32() + 1e-3)),
                S::F16(d) => d
                    .first_mut()
                    .into_iter()
                    .for_each(|v| *v = half::f16::from_f32(v.to_f32() + 1e-3)),
            }
            done = true;
        }
        Ok(())
    })?;
    Ok(())
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

    let comm = options.processes.as_ref().map(|p| p.comm.clone());
    let leader = comm.as_ref().is_none_or(|c| c.rank() == 0);
    if let Some(p) = &options.processes {
        let (size, shards) = (p.comm.size(), options.config.train.shards);
        if p.mode == ParallelMode::Data && shards < size {
            bail!(
                "--parallel data: train.shards is {shards}, fewer pieces than the {size} processes \
                 (set --set train.shards={size}: each process then evaluates one piece of every \
                 minibatch; the same train.shards with one process gives the same run bit for bit)"
            );
        }
    }

    // Process 0 owns the folder; the others learn where it is and whether the run resumes.
    let (dir, resuming, _lock, mut cleanup, config) = if leader {
        let (dir, resuming, lock, cleanup, config) = open_run_folder(&options)?;
        (dir, resuming, Some(lock), Some(cleanup), config)
    } else {
        (PathBuf::new(), false, None, None, options.config.clone())
    };
    let shared = share_bytes(
        comm.as_ref(),
        if leader {
            serde_json::to_vec(&(&dir, resuming))?
        } else {
            Vec::new()
        },
    )?;
    let (dir, resuming): (PathBuf, bool) = serde_json::from_slice(&shared)
        .map_err(|e| anyhow!("the run folder sent by process 0: {e}"))?;
    let mut config = config;
    config.output.dir = Some(dir.clone());
    let run = RunDir::new(&dir);
    let resolved = config.resolve()?;

    // Data and model.
    let (data_dir, splits, loaded) = load::data_and_model(&config, &resolved)?;
    let sizes = [
        splits.train.len(),
        splits.validation.len(),
        splits.test.len(),
    ];
    let source = loaded.source.clone();
    let (model_path, kind) = (source.path.clone(), source.kind);
    let mut weights = loaded.weights;
    let parameters = weights.num_params();
    let frozen_parameters = weights.frozen_elements();
    // With adapters the trainable set is small and the frozen base never changes: its initial
    // values rebuild the best weights at the end, where loading the base model again would hold
    // it twice in memory.
    let initial = (frozen_parameters > 0)
        .then(|| weights.deep_copy())
        .transpose()?;
    if let Some(c) = &comm {
        desync_hook(c.rank(), &mut weights)?;
    }

    // What the run needs, before any work.
    let frozen: Vec<zo_optim::TensorInfo> = weights.frozen().map(|(i, _)| i.clone()).collect();
    let shape = ModelShape::with_frozen(
        &weights.tensors(),
        &frozen,
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

    // The inputs' hashes: recorded by a fresh run, checked by a resumed one (process 0).
    let model_inputs = inputs::model_files(&model_path, config.model.tokenizer.as_deref())?;
    let mut all_inputs = model_inputs.clone();
    all_inputs.extend(inputs::data_files(&data_dir, resolved.task)?);
    let recorded = if !leader || (resuming && options.accept_changed_inputs) {
        None
    } else if resuming {
        let recorded = Inputs::load(&dir)?;
        recorded.check(&all_inputs, &[Role::Model, Role::Tokenizer, Role::Data])?;
        Some(recorded)
    } else {
        let recorded = inputs::record(&all_inputs)?;
        recorded.save(&dir)?;
        Some(recorded)
    };

    let mut task = PromptTask::with_calibration(
        loaded.head,
        splits,
        config.task.eval_batch_size,
        resolved.calibrate,
    )?
    .with_train_as_classification(resolved.train_as_classification)?;
    if let Some(c) = &comm {
        task = task.with_processes(c.clone());
    }
    if resolved.train.row_sparse && !task.knows_rows_read() {
        bail!(
            "train.row_sparse: row-sparse embedding probes need a masked LM (a causal LM's output \
             head reads every vocabulary row, so every row of its tied table is read)"
        );
    }
    let zero_path = run.file(ZERO_SHOT_FILE);
    let saved = if leader && resuming && zero_path.exists() {
        fs::read(&zero_path).with_context(|| format!("cannot read {}", zero_path.display()))?
    } else {
        Vec::new()
    };
    let saved = share_bytes(comm.as_ref(), saved)?;
    let zero_shot = if !saved.is_empty() {
        serde_json::from_slice(&saved)
            .map_err(|e| anyhow!("{}: bad JSON: {e}", zero_path.display()))?
    } else {
        let z = ZeroShot {
            validation: task.evaluate_split(Split::Validation)?,
            test: task.evaluate_split(Split::Test)?,
        };
        if leader {
            run.write(ZERO_SHOT_FILE, &serde_json::to_vec_pretty(&z)?)?;
        }
        z
    };

    // The trainer.
    let metrics_path = run.file(METRICS_FILE);
    let optimizer = resolved.optimizer.clone();
    let per_step = optimizer.forwards_per_step();
    // The zero-shot validation score is the step-0 candidate for the best weights.
    let mut trainer = Trainer::new(optimizer.clone(), resolved.train.clone(), task)?
        .output_dir(&dir, true)
        .stop_flag(options.stop.clone())
        .start_validation(zero_shot.validation.clone());
    if let Some(p) = &options.processes {
        trainer = trainer.processes(
            p.comm.clone(),
            p.mode,
            Guard {
                every: p.guard_every,
                fingerprint: Box::new(fingerprint),
            },
        );
    }
    let (mut state, start_step) = if resuming {
        let ck = trainer.resume()?;
        run.resume_weights(&optimizer, &mut weights, &ck)?;
        let step = ck.state.looping.step;
        (ck.state, step)
    } else {
        (trainer.start(&weights, config.train.seed)?, 0)
    };
    // From here on the folder holds a run that `--resume` continues or restarts.
    if let Some(c) = &mut cleanup {
        c.armed = false;
    }
    if leader {
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
    }

    let summary = trainer.run_replay_best(&mut weights, &mut state, |w| {
        if let Some(initial) = &initial {
            return w.copy_from(initial).map_err(|e| e.to_string().into());
        }
        if let Some(recorded) = &recorded {
            recorded
                .check(&model_inputs, &[Role::Model, Role::Tokenizer])
                .map_err(|e| format!("{e:#}"))?;
        }
        let fresh = source.load_weights().map_err(|e| format!("{e:#}"))?;
        w.copy_from(&fresh).map_err(|e| e.to_string().into())
    })?;
    let processes = match &options.processes {
        Some(p) => {
            let t = trainer.step_traffic();
            let all = p.comm.all_gather(&[t.bytes as f64, t.steps as f64])?;
            let allgather_latency_us = allgather_latency_us(p.comm.as_ref(), 1000)?;
            Some(ProcessesReport {
                count: p.comm.size(),
                mode: p.mode,
                shards: config.train.shards,
                bytes_per_step: all
                    .iter()
                    .map(|v| match v.as_slice() {
                        [bytes, steps] if *steps > 0.0 => bytes / steps,
                        _ => 0.0,
                    })
                    .collect(),
                allgather_latency_us,
            })
        }
        None => None,
    };

    if leader && summary.reason != StopReason::StopFlag {
        if config.output.export {
            weights
                .save_safetensors(&run.file(WEIGHTS_FILE))
                .with_context(|| format!("exporting the weights to {}", dir.display()))?;
        }
        if config.output.plots {
            let events = read_metrics(&metrics_path)?;
            zo_train::plot::plot_run(&events, &dir)?;
        }
    }
    let mut files = run.run_files()?;
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
        frozen_parameters,
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
        processes,
    };
    if leader && summary.reason != StopReason::StopFlag {
        run.write(REPORT_FILE, &serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(Outcome {
        dir,
        report,
        started_over: options.resume && !resuming,
    })
}
