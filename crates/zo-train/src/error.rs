//! The crate's error type.

use std::path::PathBuf;

use zo_optim::{ObjectiveError, OptimError};

use crate::model::Split;

/// Everything that can stop a training run. Errors about a file name the file.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The processes of a run disagree on the weights (the consistency guard).
    #[error(
        "the processes' weights differ after step {step}: process {rank} found processes {differ:?} with other weights (a process was desynchronised: stop the run and resume it from its checkpoint)"
    )]
    Desync {
        /// The step after which the weights were compared.
        step: u64,
        /// The process reporting.
        rank: usize,
        /// The processes whose weights differ from this one's.
        differ: Vec<usize>,
    },
    /// A collective operation between the processes failed.
    #[error(transparent)]
    Comm(#[from] crate::comm::CommError),
    /// An invalid setting of [`TrainConfig`](crate::TrainConfig).
    #[error("invalid training setting `{field}`: {message}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A fresh run would overwrite the checkpoint of an earlier run.
    #[error(
        "{} already holds a checkpoint; resume from it or allow overwriting",
        path.display()
    )]
    OutputExists {
        /// The existing checkpoint file.
        path: PathBuf,
    },
    /// No checkpoint to resume from.
    #[error("no checkpoint at {}", path.display())]
    NoCheckpoint {
        /// The checkpoint file looked for.
        path: PathBuf,
    },
    /// An append-only log is shorter than its checkpoint recorded: lines the checkpoint counts on
    /// were deleted or never reached the disk, and resuming would lose them silently.
    #[error(
        "{} holds {found} bytes but the checkpoint after step {step} recorded {expected}: the run's history before the checkpoint is lost (restore the file, or start the run over)",
        path.display()
    )]
    LostLog {
        /// The log.
        path: PathBuf,
        /// Its length now.
        found: u64,
        /// Its length at the checkpoint.
        expected: u64,
        /// The checkpoint's step.
        step: u64,
    },
    /// Another process holds the output folder's lock.
    #[error(
        "{} is in use by another running process (it holds the lock {}); wait for it to end or choose another folder",
        dir.display(),
        lock.display()
    )]
    Locked {
        /// The output folder.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// A file or folder could not be read or written.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint, seed-log or parameter file that is not what it should be.
    #[error("{}: {message}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (the JSON parser's message, a missing line, …).
        message: String,
    },
    /// A checkpoint made under settings that differ from the current ones.
    #[error("{}: checkpoint field `{field}` is {found}, the current run has {expected}", path.display())]
    Mismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// The checkpoint's value.
        found: String,
        /// The current value.
        expected: String,
    },
    /// A training loss was NaN or infinite. The last checkpoint on disk (if any) is left as it was.
    #[error("non-finite training loss {value} at step {step} (forward {forward}); last checkpoint: {}",
        checkpoint.as_ref().map_or("none".to_string(), |p| p.display().to_string()))]
    NonFiniteLoss {
        /// The step (0-based).
        step: u64,
        /// The forward pass within the step (1-based).
        forward: usize,
        /// The value returned.
        value: f64,
        /// The last checkpoint written, if any.
        checkpoint: Option<PathBuf>,
    },
    /// Any other failure of an optimizer step.
    #[error("optimizer step {step}: {source}")]
    Step {
        /// The step (0-based).
        step: u64,
        /// The optimizer's error.
        #[source]
        source: OptimError,
    },
    /// The model failed to evaluate a split.
    #[error("evaluation on {split} after {step} steps: {source}")]
    Evaluation {
        /// Steps completed.
        step: u64,
        /// The split.
        split: Split,
        /// The model's error.
        #[source]
        source: ObjectiveError,
    },
    /// An evaluation returned a NaN or infinite score.
    #[error("evaluation on {split} after {step} steps returned the non-finite score {value}")]
    NonFiniteScore {
        /// Steps completed.
        step: u64,
        /// The split.
        split: Split,
        /// The score.
        value: f64,
    },
    /// Replaying the seed log failed (see [`replay`](crate::replay())).
    #[error("replaying the seed log at step {step}: {message}")]
    Replay {
        /// The step that could not be replayed.
        step: u64,
        /// What went wrong.
        message: String,
    },
    /// The copy of the best weights could not be made.
    #[error("copying the best weights at step {step}: {source}")]
    CopyWeights {
        /// The best step.
        step: u64,
        /// The copy's error.
        #[source]
        source: ObjectiveError,
    },
    /// An observer failed (e.g. a metrics file could not be written).
    #[error("observer: {0}")]
    Observer(#[source] ObjectiveError),
    /// The caller's parameter encoder failed.
    #[error("saving parameters to {}: {source}", path.display())]
    SaveParams {
        /// The parameter file.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: ObjectiveError,
    },
    /// A plot could not be drawn or encoded.
    #[error("cannot draw {}: {message}", path.display())]
    Plot {
        /// The image file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// No font for the text of a PNG plot (SVG plots need none).
    #[error(
        "cannot draw {}: no font for PNG text; set {env} to a TrueType/OpenType file (tried {})",
        path.display(),
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NoFont {
        /// The image file.
        path: PathBuf,
        /// The environment variable that names a font file.
        env: &'static str,
        /// The font files looked for.
        tried: Vec<PathBuf>,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, TrainError>;
