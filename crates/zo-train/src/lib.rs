#![doc = include_str!("../README.md")]

pub mod batches;
pub mod checkpoint;
pub mod comm;
pub mod config;
pub mod error;
pub mod keep;
pub mod model;
pub mod observer;
pub mod plot;
pub mod progress;
pub mod replay;
pub mod rundir;
mod sidecar;
pub mod trainer;

pub use batches::EpochBatches;
pub use checkpoint::{
    Best, CHECKPOINT_FILE, Checkpoint, LogMark, LoopState, RunState, SEED_LOG_FILE, SeedLogEntry,
    read_jsonl, read_seed_log, write_atomic, write_atomic_with,
};
pub use comm::{CommError, Communicator, ParallelMode, SingleProcess};
pub use error::{Result, TrainError};
pub use keep::DeepCopy;
pub use model::{LossTerms, Metrics, Split, TaskModel};
pub use observer::{Event, JsonlWriter, Observer, Recorder};
pub use plot::{LinePlot, Series, plot_run};
pub use progress::ProgressBar;
pub use replay::replay;
pub use rundir::{
    CONFIG_FILE, INPUTS_FILE, LOCK_FILE, METRICS_FILE, REPORT_FILE, RUN_FILES, RunDir, RunLock,
    WEIGHTS_FILE, ZERO_SHOT_FILE, create_unique_dir, is_run_file, remove_temporaries,
};
pub use trainer::{
    Fingerprint, Guard, ParamEncoder, StepTraffic, StopReason, Summary, TestWeights, TrainConfig,
    Trainer, json_params,
};
