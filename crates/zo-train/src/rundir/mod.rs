//! The run folder: the name of every file a run writes, one writer at a time, atomic writes, the
//! cut-back of the logs on a resume, no stale temporary files, and the weights at any logged step.
//!
//! A run folder holds
//!
//! - [`CONFIG_FILE`], [`INPUTS_FILE`], [`ZERO_SHOT_FILE`], [`REPORT_FILE`]: the caller's
//!   configuration, input hashes, zero-shot metrics and final report, written atomically;
//! - [`CHECKPOINT_FILE`] with its optimizer-state sidecar (`optimizer-state-STEP.safetensors`) and
//!   parameter file (`params-STEP.bin`), see [`Checkpoint`];
//! - the append-only logs [`SEED_LOG_FILE`] and [`METRICS_FILE`], cut back to the checkpoint's
//!   recorded lengths by a resume ([`RunDir::cut_logs`]);
//! - [`WEIGHTS_FILE`] (exported weights) and the plots ([`LOSS_PLOT`], [`VALIDATION_PLOT`], as SVG
//!   and PNG);
//! - [`LOCK_FILE`] ([`RunLock`]) and, after a kill, temporary files of atomic writes
//!   (`.NAME.tmp-PID`, removed by [`RunDir::remove_temporaries`]).
//!
//! A folder may hold other files too: [`RunDir::remove_run_files`] removes exactly the run's own.
//!
//! **Weights at a step.** The folder stores the trajectory, not the weights: the weights after `N`
//! steps are the base weights with the first `N` steps of the seed log replayed
//! ([`RunDir::weights_at`], [`RunDir::replay_into`]; see [`replay`]). The caller supplies the
//! parameters (this crate knows no tensor library), or a loader of the base weights.

mod files;
mod lock;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use zo_optim::{ObjectiveError, Optimizer, OptimizerState, ParamSet};

pub(crate) use files::{cut_log, io_err};
pub use files::{
    is_temporary_name, remove_temporaries, sync_dir, temporary_path, write_atomic,
    write_atomic_with,
};
pub use lock::{RunLock, create_unique_dir, utc_timestamp};

use crate::checkpoint::{Checkpoint, SeedLogEntry, read_jsonl, read_seed_log};
use crate::error::{Result, TrainError};
use crate::replay::replay;

/// The run's configuration as saved in its folder (what a resume reads back).
pub const CONFIG_FILE: &str = "config.toml";
/// The recorded hashes of the run's inputs.
pub const INPUTS_FILE: &str = "inputs.json";
/// The zero-shot evaluation, written before training.
pub const ZERO_SHOT_FILE: &str = "zero_shot.json";
/// The checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";
/// The seed log (one step per line).
pub const SEED_LOG_FILE: &str = "seed_log.jsonl";
/// The metrics stream (one event per line).
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The final report.
pub const REPORT_FILE: &str = "report.json";
/// The exported best weights.
pub const WEIGHTS_FILE: &str = "best.safetensors";
/// The stem of the training-loss plot (`loss.svg`, `loss.png`).
pub const LOSS_PLOT: &str = "loss";
/// The stem of the validation plot (`validation.svg`, `validation.png`).
pub const VALIDATION_PLOT: &str = "validation";
/// The lock file.
pub const LOCK_FILE: &str = ".lock";
/// The prefix of the optimizer-state sidecar files (`optimizer-state-STEP.safetensors`).
pub const STATE_FILE_PREFIX: &str = "optimizer-state-";
/// The prefix of the parameter files (`params-STEP.bin`).
pub const PARAMS_FILE_PREFIX: &str = "params-";

/// The files a run writes in its folder, besides the optimizer-state sidecars, parameter files,
/// temporary files of atomic writes and the lock.
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

/// Whether `name` is an optimizer-state sidecar or a parameter file.
fn is_checkpoint_part(name: &str) -> bool {
    (name.starts_with(STATE_FILE_PREFIX) && name.ends_with(".safetensors"))
        || (name.starts_with(PARAMS_FILE_PREFIX) && name.ends_with(".bin"))
}

/// Whether `name` is a file that a run writes in its folder (the lock excepted).
pub fn is_run_file(name: &str) -> bool {
    RUN_FILES.contains(&name) || is_checkpoint_part(name) || is_temporary_name(name)
}

/// A run folder (see the [module](self) documentation). Holds only its path: every operation
/// reads or writes the folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    /// The run folder at `dir` (not created).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The file `name` in the folder (one of this module's names).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Whether the folder holds a checkpoint.
    pub fn has_checkpoint(&self) -> bool {
        self.file(CHECKPOINT_FILE).exists()
    }

    /// Lock the folder (which must exist) for this process (see [`RunLock`]).
    pub fn lock(&self) -> Result<RunLock> {
        RunLock::acquire(&self.dir)
    }

    /// Remove the temporary files of atomic writes that a killed process left (see
    /// [`remove_temporaries`]); call it while holding the lock.
    pub fn remove_temporaries(&self) -> Result<Vec<String>> {
        remove_temporaries(&self.dir)
    }

    /// Write the file `name` atomically (see [`write_atomic`]).
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.file(name), bytes)
    }

    /// The run files present in the folder ([`is_run_file`]), sorted; none when the folder does
    /// not exist.
    pub fn run_files(&self) -> Result<Vec<String>> {
        let mut found = self.names()?;
        found.retain(|n| is_run_file(n));
        found.sort();
        Ok(found)
    }

    /// Remove the run files present in the folder (and only those: other files are kept).
    pub fn remove_run_files(&self) -> Result<()> {
        for name in self.run_files()? {
            let path = self.file(&name);
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(io_err(&path))?;
        }
        Ok(())
    }

    /// Remove the sidecar and parameter files other than those named in `keep` (files of an
    /// earlier run, or of a checkpoint that a kill interrupted before its commit).
    pub(crate) fn remove_unreferenced(&self, keep: &[&str]) -> Result<()> {
        for name in self.names()? {
            if is_checkpoint_part(&name) && !keep.contains(&name.as_str()) {
                let path = self.file(&name);
                std::fs::remove_file(&path).map_err(io_err(&path))?;
            }
        }
        Ok(())
    }

    /// Cut every log that `checkpoint` recorded (the seed log, the metrics stream, …) back to its
    /// recorded length: whatever a kill or a full disk left after the checkpoint (steps past it, a
    /// torn last line) is redone by the resumed run. The seed log must then hold exactly the
    /// checkpoint's steps.
    pub fn cut_logs(&self, checkpoint: &Checkpoint) -> Result<()> {
        let step = checkpoint.state.looping.step;
        let Some(seed_bytes) = checkpoint.log_bytes(SEED_LOG_FILE) else {
            return Err(TrainError::BadFile {
                path: self.file(CHECKPOINT_FILE),
                message: format!("no length recorded for {SEED_LOG_FILE}"),
            });
        };
        for mark in &checkpoint.logs {
            cut_log(&self.file(&mark.file), mark.bytes, step)?;
        }
        let seed_log = self.file(SEED_LOG_FILE);
        let logged = read_seed_log(&seed_log)?;
        let bytes = read_jsonl::<serde::de::IgnoredAny>(&seed_log)?.1;
        if logged.len() as u64 != step || bytes != seed_bytes {
            return Err(TrainError::BadFile {
                path: seed_log,
                message: format!(
                    "{} complete steps in its first {seed_bytes} bytes, the checkpoint is at step {step}",
                    logged.len()
                ),
            });
        }
        Ok(())
    }

    /// The complete steps of the seed log (see [`read_seed_log`]).
    pub fn seed_log(&self) -> Result<Vec<SeedLogEntry>> {
        read_seed_log(&self.file(SEED_LOG_FILE))
    }

    /// The first `steps` entries of the seed log: an error naming the log when it holds fewer.
    fn seed_log_to(&self, steps: u64) -> Result<Vec<SeedLogEntry>> {
        let log = self.seed_log()?;
        if steps > log.len() as u64 {
            return Err(TrainError::Replay {
                step: steps,
                message: format!(
                    "{} logs {} steps",
                    self.file(SEED_LOG_FILE).display(),
                    log.len()
                ),
            });
        }
        Ok(log)
    }

    /// The run's weights after `steps` steps: `load` returns the run's base weights (checked and
    /// loaded by the caller), and the first `steps` steps of the seed log are replayed on them with
    /// the run's `optimizer` (see [`replay`]). Returns the weights and the optimizer state after
    /// them. The seed log is read, and its length checked, before `load` is called.
    pub fn weights_at<P: ParamSet>(
        &self,
        optimizer: &Optimizer,
        steps: u64,
        load: impl FnOnce() -> std::result::Result<P, ObjectiveError>,
    ) -> Result<(P, OptimizerState)> {
        let log = self.seed_log_to(steps)?;
        let mut params = load().map_err(base_weights_err)?;
        let state = replay(optimizer, &mut params, &log, steps)?;
        Ok((params, state))
    }

    /// Like [`weights_at`](Self::weights_at), into `params`: `reset` puts the run's base weights
    /// into `params` (nothing to do when they hold them already).
    pub fn replay_into<P: ParamSet + ?Sized>(
        &self,
        optimizer: &Optimizer,
        params: &mut P,
        steps: u64,
        reset: impl FnOnce(&mut P) -> std::result::Result<(), ObjectiveError>,
    ) -> Result<OptimizerState> {
        let log = self.seed_log_to(steps)?;
        reset(params).map_err(base_weights_err)?;
        replay(optimizer, params, &log, steps)
    }

    /// Replay the seed log on `params` (the run's base weights) to `checkpoint`'s step and check
    /// that it reproduces the checkpoint's optimizer state, which a resume continues from; `params`
    /// then holds the checkpoint's weights.
    pub fn resume_weights<P: ParamSet + ?Sized>(
        &self,
        optimizer: &Optimizer,
        params: &mut P,
        checkpoint: &Checkpoint,
    ) -> Result<()> {
        let step = checkpoint.state.looping.step;
        let replayed = self.replay_into(optimizer, params, step, |_| Ok(()))?;
        if replayed != checkpoint.state.optimizer {
            return Err(TrainError::Replay {
                step,
                message: format!(
                    "{}: the seed log replayed from the base weights does not reproduce the checkpoint's optimizer state",
                    self.dir.display()
                ),
            });
        }
        Ok(())
    }

    /// Open the seed log for appending (created if absent).
    pub(crate) fn append_seed_log(&self) -> Result<SeedLogWriter> {
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let path = self.file(SEED_LOG_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let bytes = file.metadata().map_err(io_err(&path))?.len();
        Ok(SeedLogWriter {
            path,
            file,
            bytes,
            line: Vec::new(),
        })
    }

    /// The names in the folder (none when it does not exist).
    fn names(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        entries
            .map(|e| {
                e.map(|e| e.file_name().to_string_lossy().into_owned())
                    .map_err(io_err(&self.dir))
            })
            .collect()
    }
}

fn base_weights_err(e: ObjectiveError) -> TrainError {
    TrainError::Replay {
        step: 0,
        message: format!("restoring the base weights: {e}"),
    }
}

/// The seed log being appended to: one whole line per `write`, so that a kill tears at most the
/// line being written, and the steps before it are readable at once (e.g. by an export).
pub(crate) struct SeedLogWriter {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    pub(crate) bytes: u64,
    line: Vec<u8>,
}

impl SeedLogWriter {
    pub(crate) fn append(&mut self, entry: &SeedLogEntry) -> Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, entry).map_err(|e| TrainError::BadFile {
            path: self.path.clone(),
            message: format!("cannot write: {e}"),
        })?;
        self.line.push(b'\n');
        self.file
            .write_all(&self.line)
            .map_err(io_err(&self.path))?;
        self.bytes += self.line.len() as u64;
        Ok(())
    }
}
