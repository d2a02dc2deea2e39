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
//! Whole files are written atomically: to a temporary file `.NAME.tmp-PID` in the same folder,
//! synced, then renamed over the target (and the folder synced), so a crash leaves either the old or
//! the new file. Logs are appended one whole line per write; a checkpoint first syncs them and
//! records their lengths ([`LogMark`]), so that a resume cuts every log back to exactly the bytes of
//! its checkpoint, whatever a kill or a full disk left after them (a torn last line included).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zo_optim::{EstimatorState, OptimizerState, RuleState, StateVec, StepReport};

use crate::error::{Result, TrainError};
use crate::trainer::TrainConfig;

/// The checkpoint file's name in an output folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";
/// The seed log's name in an output folder.
pub const SEED_LOG_FILE: &str = "seed_log.jsonl";
/// The checkpoint format version.
pub const FORMAT_VERSION: u32 = 2;
/// The prefix of the optimizer-state sidecar files (`optimizer-state-STEP.safetensors`).
pub const STATE_FILE_PREFIX: &str = "optimizer-state-";
/// The prefix of the parameter files (`params-STEP.bin`).
pub const PARAMS_FILE_PREFIX: &str = "params-";

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

/// The temporary file that [`write_atomic`] writes `path` through.
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_dir(path).join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Whether `name` is a temporary file of [`write_atomic`] (`.NAME.tmp-PID`).
pub fn is_temporary_name(name: &str) -> bool {
    name.starts_with('.')
        && name.rsplit_once(".tmp-").is_some_and(|(head, pid)| {
            head.len() > 1 && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
        })
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Sync the folder `dir`, making renames and creations in it durable (best effort: not every
/// platform can open a folder).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Write `path` atomically with `write`: to a temporary file in the same folder, synced, renamed
/// over `path`; the folder is then synced. On an error the temporary file is removed.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temporary_path(path);
    let result = (|| {
        write(&tmp)?;
        let f = File::open(&tmp).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_dir(&parent_dir(path));
    Ok(())
}

/// Write `bytes` to `path` atomically (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f = File::create(tmp).map_err(io_err(tmp))?;
        f.write_all(bytes).map_err(io_err(tmp))
    })
}

/// The optimizer state's per-parameter vectors, by sidecar name prefix.
fn vectors(state: &OptimizerState) -> Vec<(&'static str, &StateVec)> {
    let mut out: Vec<(&'static str, &StateVec)> = Vec::new();
    if let EstimatorState::Hessian { h } = &state.estimator {
        out.push(("estimator.h", h));
    }
    match &state.rule {
        RuleState::Momentum { m } => out.push(("rule.m", m)),
        RuleState::Adam { m, v, .. } => {
            out.push(("rule.m", m));
            out.push(("rule.v", v));
        }
        _ => {}
    }
    out
}

/// The optimizer state with its per-parameter vectors left empty (they go to the sidecar).
fn skeleton(state: &OptimizerState) -> OptimizerState {
    let empty = || StateVec::from_tensors(Vec::new());
    OptimizerState {
        seed: state.seed,
        step: state.step,
        num_params: state.num_params,
        estimator: match &state.estimator {
            EstimatorState::Hessian { .. } => EstimatorState::Hessian { h: empty() },
            other => other.clone(),
        },
        rule: match &state.rule {
            RuleState::Momentum { .. } => RuleState::Momentum { m: empty() },
            RuleState::Adam { t, .. } => RuleState::Adam {
                m: empty(),
                v: empty(),
                t: *t,
            },
            other => other.clone(),
        },
    }
}

/// The slots of the optimizer state that hold per-parameter vectors, by sidecar name prefix.
fn vector_slots(state: &mut OptimizerState) -> Vec<(&'static str, &mut StateVec)> {
    let mut out: Vec<(&'static str, &mut StateVec)> = Vec::new();
    if let EstimatorState::Hessian { h } = &mut state.estimator {
        out.push(("estimator.h", h));
    }
    match &mut state.rule {
        RuleState::Momentum { m } => out.push(("rule.m", m)),
        RuleState::Adam { m, v, .. } => {
            out.push(("rule.m", m));
            out.push(("rule.v", v));
        }
        _ => {}
    }
    out
}

/// A 1-D f32 tensor for safetensors (little-endian bytes).
struct F32View<'a> {
    values: &'a [f32],
    shape: [usize; 1],
}

impl safetensors::View for F32View<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        if cfg!(target_endian = "little") {
            // The values' own bytes: no copy of a state that can be gigabytes.
            std::borrow::Cow::Borrowed(bytemuck::cast_slice(self.values))
        } else {
            std::borrow::Cow::Owned(self.values.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
    }
    fn data_len(&self) -> usize {
        self.values.len() * 4
    }
}

/// Write the vectors to a safetensors file at `path` (not atomically: the caller writes a
/// temporary file).
fn write_sidecar(path: &Path, vectors: &[(&'static str, &StateVec)]) -> Result<()> {
    let mut views = Vec::new();
    for (prefix, v) in vectors {
        for (name, values) in v.iter() {
            views.push((
                format!("{prefix}/{name}"),
                F32View {
                    values,
                    shape: [values.len()],
                },
            ));
        }
    }
    // Keep the parameter set's order: safetensors sorts its header, so record the order.
    let order: Vec<String> = views.iter().map(|(n, _)| n.clone()).collect();
    let mut meta = std::collections::HashMap::new();
    meta.insert(
        "order".to_string(),
        serde_json::to_string(&order).map_err(|e| TrainError::BadFile {
            path: path.to_path_buf(),
            message: format!("cannot serialise: {e}"),
        })?,
    );
    safetensors::serialize_to_file(views, Some(meta), path).map_err(|e| TrainError::BadFile {
        path: path.to_path_buf(),
        message: format!("cannot write: {e}"),
    })
}

/// Read a sidecar back into the slots of `state`.
fn read_sidecar(path: &Path, state: &mut OptimizerState) -> Result<()> {
    let bad = |message: String| TrainError::BadFile {
        path: path.to_path_buf(),
        message,
    };
    let bytes = fs::read(path).map_err(io_err(path))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let order: Vec<String> = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("order"))
        .ok_or_else(|| bad("no tensor order in the metadata".into()))
        .and_then(|o| serde_json::from_str(o).map_err(|e| bad(format!("bad order: {e}"))))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let mut by_prefix: BTreeMap<&str, Vec<(String, Vec<f32>)>> = BTreeMap::new();
    for full in &order {
        let (prefix, name) = full
            .split_once('/')
            .ok_or_else(|| bad(format!("tensor `{full}` has no prefix")))?;
        let view = st
            .tensor(full)
            .map_err(|e| bad(format!("tensor `{full}`: {e}")))?;
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(bad(format!(
                "tensor `{full}` is {:?}, not F32",
                view.dtype()
            )));
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        by_prefix
            .entry(prefix)
            .or_default()
            .push((name.to_string(), values));
    }
    for (prefix, slot) in vector_slots(state) {
        let tensors = by_prefix
            .remove(prefix)
            .ok_or_else(|| bad(format!("no `{prefix}` tensors for the optimizer state")))?;
        *slot = StateVec::from_tensors(tensors);
    }
    if let Some(prefix) = by_prefix.keys().next() {
        return Err(bad(format!(
            "`{prefix}` tensors that the optimizer state has no place for"
        )));
    }
    Ok(())
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

/// Cut the log at `path` back to `bytes` (its length at a checkpoint) and sync it. A log shorter
/// than that has lost lines that the checkpoint counts on: an error.
pub(crate) fn cut_log(path: &Path, bytes: u64, step: u64) -> Result<()> {
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io_err(path)(e)),
    };
    if len < bytes {
        return Err(TrainError::LostLog {
            path: path.to_path_buf(),
            found: len,
            expected: bytes,
            step,
        });
    }
    if len > bytes {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        f.set_len(bytes).map_err(io_err(path))?;
        f.sync_all().map_err(io_err(path))?;
    }
    Ok(())
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
