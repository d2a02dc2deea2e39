//! Checkpoints: the loop and optimizer state as JSON, the optimizer's per-parameter vectors in a
//! safetensors sidecar, the seed log as JSONL, atomic writes, and the byte lengths of the
//! append-only logs that belong to each checkpoint.
//!
//! An output folder holds
//!
//! - `checkpoint.json`: a [`Checkpoint`] (the training settings, the [`RunState`] without its
//!   per-parameter vectors, the names of the sidecar and parameter files, and the byte length of
//!   every append-only log at the checkpoint), the commit point of a checkpoint: it is written last;
//! - `optimizer-state-STEP.safetensors`, when the optimizer keeps per-parameter vectors (MeZO-Adam's
//!   moments, a momentum buffer, HiZOO's curvature): those vectors as f32 tensors named
//!   `rule.m/<tensor>`, `rule.v/<tensor>`, `estimator.h/<tensor>`;
//! - `seed_log.jsonl`: one [`SeedLogEntry`] per step — seed, step, learning rate, losses,
//!   projected gradients or posterior means, forwards — the whole trajectory in kilobytes;
//! - `params-STEP.bin`, when the trainer was given a parameter encoder: the caller's bytes.
//!
//! Whole files are written atomically ([`write_atomic`]). Logs are appended one whole line per write; a checkpoint first syncs them and
//! records their lengths ([`LogMark`]), so that a resume cuts every log back to exactly the bytes of
//! its checkpoint, whatever a kill or a full disk left after them (a torn last line included).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zo_optim::{OptimizerState, RowSupport, StepReport};

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
pub use crate::rundir::{CHECKPOINT_FILE, SEED_LOG_FILE, write_atomic, write_atomic_with};
use crate::rundir::{STATE_FILE_PREFIX, io_err};
use crate::sidecar::{read_sidecar, skeleton, vectors, write_sidecar};

/// The checkpoint format version.
pub const FORMAT_VERSION: u32 = 2;

/// The best validation score so far.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// Steps completed when it was measured (0: the starting weights).
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

/// How many bytes of an append-only log in the output folder belong to a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogMark {
    /// The log's file name in the output folder.
    pub file: String,
    /// Its length at the checkpoint.
    pub bytes: u64,
}

/// The contents of `checkpoint.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The training settings the run was started with.
    pub config: TrainConfig,
    /// The state (after [`load`](Self::load): with its per-parameter vectors read back from the
    /// sidecar).
    pub state: RunState,
    /// The parameter file in the same folder, if parameters were saved.
    pub params_file: Option<String>,
    /// The sidecar holding the optimizer's per-parameter vectors, if it keeps any.
    #[serde(default)]
    pub state_file: Option<String>,
    /// The byte length of every append-only log at the checkpoint (the seed log, and every log an
    /// observer reports through [`Observer::sync`](crate::Observer::sync)).
    #[serde(default)]
    pub logs: Vec<LogMark>,
}

/// One line of the seed log: a step's seed and report. With the initial parameters, the seed log
/// replays the whole run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedLogEntry {
    /// The run seed (directions of step `t` are keyed by `(seed, t, j)`).
    pub seed: u64,
    /// The step's report (step, lr, losses, projected gradients / posterior mean, forwards; FZOO's
    /// σ of the perturbed losses).
    #[serde(flatten)]
    pub report: StepReport,
    /// With row-sparse directions: the rows each restricted table's directions lived on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<RowSupport>,
}

impl Checkpoint {
    /// The checkpoint file of the output folder `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(CHECKPOINT_FILE)
    }

    /// Read `dir/checkpoint.json` and its sidecar.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = Self::path(dir);
        if !path.exists() {
            return Err(TrainError::NoCheckpoint { path });
        }
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        if let Ok(v) = serde_json::from_str::<Version>(&text)
            && v.version != FORMAT_VERSION
        {
            return Err(TrainError::Mismatch {
                path,
                field: "version",
                found: v.version.to_string(),
                expected: FORMAT_VERSION.to_string(),
            });
        }
        let mut ck: Checkpoint = serde_json::from_str(&text).map_err(|e| TrainError::BadFile {
            path: path.clone(),
            message: format!("bad JSON: {e}"),
        })?;
        if let Some(name) = &ck.state_file {
            read_sidecar(&dir.join(name), &mut ck.state.optimizer)?;
        }
        Ok(ck)
    }

    /// Write the sidecar (when the optimizer state has per-parameter vectors) under a name of its
    /// step, then `dir/checkpoint.json`, atomically; the sidecar of an earlier checkpoint is the
    /// caller's to remove once this one is committed. `state_file` is ignored: the file written
    /// names the sidecar written.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        let path = Self::path(dir);
        let vectors = vectors(&self.state.optimizer);
        let state_file = if vectors.is_empty() {
            None
        } else {
            let name = Self::state_file_name(self.state.looping.step);
            let sidecar = dir.join(&name);
            write_atomic_with(&sidecar, |tmp| write_sidecar(tmp, &vectors))?;
            Some(name)
        };
        #[derive(Serialize)]
        struct StateRef<'a> {
            optimizer: OptimizerState,
            looping: &'a LoopState,
        }
        #[derive(Serialize)]
        struct OnDisk<'a> {
            version: u32,
            config: &'a TrainConfig,
            state: StateRef<'a>,
            params_file: &'a Option<String>,
            state_file: Option<String>,
            logs: &'a [LogMark],
        }
        let on_disk = OnDisk {
            version: self.version,
            config: &self.config,
            state: StateRef {
                optimizer: skeleton(&self.state.optimizer),
                looping: &self.state.looping,
            },
            params_file: &self.params_file,
            state_file,
            logs: &self.logs,
        };
        let json = serde_json::to_vec_pretty(&on_disk).map_err(|e| TrainError::BadFile {
            path: path.clone(),
            message: format!("cannot serialise: {e}"),
        })?;
        write_atomic(&path, &json)?;
        Ok(path)
    }

    /// The names of the files `dir/checkpoint.json` refers to (the parameter file, the sidecar),
    /// without reading them.
    pub fn load_names(dir: &Path) -> Result<[Option<String>; 2]> {
        let path = Self::path(dir);
        #[derive(Deserialize)]
        struct Names {
            params_file: Option<String>,
            #[serde(default)]
            state_file: Option<String>,
        }
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        let n: Names = serde_json::from_str(&text).map_err(|e| TrainError::BadFile {
            path: path.clone(),
            message: format!("bad JSON: {e}"),
        })?;
        Ok([n.params_file, n.state_file])
    }

    /// The sidecar's name for a checkpoint after `step` steps.
    pub fn state_file_name(step: u64) -> String {
        format!("{STATE_FILE_PREFIX}{step:08}.safetensors")
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

    /// Check that a run with the loop settings `config` can resume from this checkpoint (read from
    /// `path`): the same minibatch settings, and consistent step counts.
    pub fn check_resumable(&self, config: &TrainConfig, path: &Path) -> Result<()> {
        let mismatch = |field, found: String, expected: String| TrainError::Mismatch {
            path: path.to_path_buf(),
            field,
            found,
            expected,
        };
        if self.config.batch_size != config.batch_size {
            return Err(mismatch(
                "batch_size",
                self.config.batch_size.to_string(),
                config.batch_size.to_string(),
            ));
        }
        if self.config.data_seed != config.data_seed {
            return Err(mismatch(
                "data_seed",
                self.config.data_seed.to_string(),
                config.data_seed.to_string(),
            ));
        }
        let looping = &self.state.looping;
        if looping.batches_drawn != looping.step || self.state.optimizer.step != looping.step {
            return Err(TrainError::BadFile {
                path: path.to_path_buf(),
                message: format!(
                    "inconsistent steps: loop {}, batches {}, optimizer {}",
                    looping.step, looping.batches_drawn, self.state.optimizer.step
                ),
            });
        }
        Ok(())
    }

    /// The mark of the log `file`, if the checkpoint recorded one.
    pub fn log_bytes(&self, file: &str) -> Option<u64> {
        self.logs.iter().find(|m| m.file == file).map(|m| m.bytes)
    }
}

/// The complete lines of a JSONL log, parsed, and the byte length they span. A last line that has
/// no newline, or does not parse, is a torn write (a kill or a full disk during the append) and is
/// left out; any other line that does not parse is an error naming the line.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<(Vec<T>, u64)> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let mut out = Vec::new();
    let mut offset = 0usize;
    let mut number = 0usize;
    while offset < bytes.len() {
        number += 1;
        let (line, next, complete) = match bytes[offset..].iter().position(|&b| b == b'\n') {
            Some(i) => (&bytes[offset..offset + i], offset + i + 1, true),
            None => (&bytes[offset..], bytes.len(), false),
        };
        let last = next >= bytes.len();
        if !complete {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            offset = next;
            continue;
        }
        match serde_json::from_slice(line) {
            Ok(v) => out.push(v),
            Err(_) if last => break,
            Err(e) => {
                return Err(TrainError::BadFile {
                    path: path.to_path_buf(),
                    message: format!("line {number}: bad JSON: {e}"),
                });
            }
        }
        offset = next;
    }
    Ok((out, offset as u64))
}

/// Read the seed log at `path`: its complete steps, in order (a torn last line is left out, see
/// [`read_jsonl`]). Line `t` must be step `t`.
pub fn read_seed_log(path: &Path) -> Result<Vec<SeedLogEntry>> {
    let (entries, _) = read_jsonl::<SeedLogEntry>(path)?;
    for (t, e) in entries.iter().enumerate() {
        if e.report.step != t as u64 {
            return Err(TrainError::BadFile {
                path: path.to_path_buf(),
                message: format!(
                    "line {}: step {} where step {t} was expected",
                    t + 1,
                    e.report.step
                ),
            });
        }
    }
    Ok(entries)
}
