//! Checkpoints: the loop and optimizer state as JSON, the seed log as JSONL, atomic writes.
//!
//! An output folder holds
//!
//! - `checkpoint.json`: a [`Checkpoint`] (the training settings, the [`RunState`] and the name of
//!   the parameter file), the commit point of a checkpoint: it is written last;
//! - `seed_log.jsonl`: one [`SeedLogEntry`] per step — seed, step, learning rate, losses,
//!   projected gradients or posterior means, forwards — the whole trajectory in kilobytes;
//! - `params-STEP.bin`, when the trainer was given a parameter encoder: the caller's bytes.
//!
//! Every file is written atomically: to a temporary file in the same folder, synced, then renamed
//! over the target (and the folder synced), so a crash leaves either the old or the new file.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zo_optim::{OptimizerState, StepReport};

use crate::error::{Result, TrainError};
use crate::trainer::TrainConfig;

/// The checkpoint file's name in an output folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";
/// The seed log's name in an output folder.
pub const SEED_LOG_FILE: &str = "seed_log.jsonl";
/// The checkpoint format version.
pub const FORMAT_VERSION: u32 = 1;

/// The best validation score so far.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// Steps completed when it was measured.
    pub step: u64,
    /// The score.
    pub score: f64,
}

/// The loop's state between steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// Steps completed (the next step's index).
    pub step: u64,
    /// Minibatches drawn from the sampler (equal to `step` between steps).
    pub batches_drawn: u64,
    /// Forward passes of the optimizer steps.
    pub train_forwards: u64,
    /// Forward passes of the evaluations.
    pub eval_forwards: u64,
    /// Validation evaluations so far.
    pub evaluations: u64,
    /// The best validation score so far.
    pub best: Option<Best>,
    /// Evaluations since the best one (the patience counter).
    pub evals_since_best: u64,
    /// Whether early stopping has triggered.
    pub early_stopped: bool,
}

/// Everything a run needs to continue: the optimizer's state and the loop's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The optimizer's state.
    pub optimizer: OptimizerState,
    /// The loop's state.
    pub looping: LoopState,
}

/// The contents of `checkpoint.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The training settings the run was started with.
    pub config: TrainConfig,
    /// The state.
    pub state: RunState,
    /// The parameter file in the same folder, if parameters were saved.
    pub params_file: Option<String>,
}

/// One line of the seed log: a step's seed and report. With the initial parameters, the seed log
/// replays the whole run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedLogEntry {
    /// The run seed (directions of step `t` are keyed by `(seed, t, j)`).
    pub seed: u64,
    /// The step's report (step, lr, losses, projected gradients / posterior mean, forwards).
    #[serde(flatten)]
    pub report: StepReport,
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `bytes` to `path` atomically: a temporary file in the same folder, synced, renamed over
/// `path`; the folder is then synced (where the platform allows).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename durable; not every platform can open a folder, so this is best effort.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

impl Checkpoint {
    /// The checkpoint file of the output folder `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(CHECKPOINT_FILE)
    }

    /// Read `dir/checkpoint.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = Self::path(dir);
        if !path.exists() {
            return Err(TrainError::NoCheckpoint { path });
        }
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        let ck: Checkpoint = serde_json::from_str(&text).map_err(|e| TrainError::BadFile {
            path: path.clone(),
            message: format!("bad JSON: {e}"),
        })?;
        if ck.version != FORMAT_VERSION {
            return Err(TrainError::Mismatch {
                path,
                field: "version",
                found: ck.version.to_string(),
                expected: FORMAT_VERSION.to_string(),
            });
        }
        Ok(ck)
    }

    /// Write `dir/checkpoint.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        let path = Self::path(dir);
        let json = serde_json::to_vec_pretty(self).map_err(|e| TrainError::BadFile {
            path: path.clone(),
            message: format!("cannot serialise: {e}"),
        })?;
        write_atomic(&path, &json)?;
        Ok(path)
    }

    /// The bytes of the parameter file, if the checkpoint names one.
    pub fn params_bytes(&self, dir: &Path) -> Result<Option<Vec<u8>>> {
        match &self.params_file {
            None => Ok(None),
            Some(name) => {
                let path = dir.join(name);
                fs::read(&path).map(Some).map_err(io_err(&path))
            }
        }
    }

    /// The parameters, decoded as JSON (the format of [`json_params`](crate::json_params)).
    pub fn params_json<P: serde::de::DeserializeOwned>(&self, dir: &Path) -> Result<Option<P>> {
        let Some(bytes) = self.params_bytes(dir)? else {
            return Ok(None);
        };
        let path = dir.join(self.params_file.as_deref().unwrap_or_default());
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| TrainError::BadFile {
                path,
                message: format!("bad JSON: {e}"),
            })
    }
}

/// Read the seed log at `path`.
pub fn read_seed_log(path: &Path) -> Result<Vec<SeedLogEntry>> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| TrainError::BadFile {
                path: path.to_path_buf(),
                message: format!("line {}: bad JSON: {e}", i + 1),
            })
        })
        .collect()
}

/// Cut the seed log at `path` to its first `steps` lines (the steps a checkpoint covers), checking
/// that line `t` is step `t`; rewritten atomically.
pub(crate) fn truncate_seed_log(path: &Path, steps: u64) -> Result<()> {
    let text = if path.exists() {
        fs::read_to_string(path).map_err(io_err(path))?
    } else {
        String::new()
    };
    let mut kept = String::new();
    let mut count = 0u64;
    for (i, line) in text.lines().enumerate() {
        if count == steps {
            break;
        }
        let entry: SeedLogEntry = serde_json::from_str(line).map_err(|e| TrainError::BadFile {
            path: path.to_path_buf(),
            message: format!("line {}: bad JSON: {e}", i + 1),
        })?;
        if entry.report.step != count {
            return Err(TrainError::BadFile {
                path: path.to_path_buf(),
                message: format!(
                    "line {}: step {} where step {count} was expected",
                    i + 1,
                    entry.report.step
                ),
            });
        }
        kept.push_str(line);
        kept.push('\n');
        count += 1;
    }
    if count < steps {
        return Err(TrainError::BadFile {
            path: path.to_path_buf(),
            message: format!("{count} steps logged, the checkpoint is at step {steps}"),
        });
    }
    write_atomic(path, kept.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_the_file_and_leave_no_temporary_files() {
        let dir = std::env::temp_dir().join(format!("zo-train-atomic-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        // A folder that does not exist is an error naming a path, not a panic.
        let err = write_atomic(&dir.join("missing").join("x.json"), b"x").unwrap_err();
        assert!(matches!(err, TrainError::Io { .. }), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
