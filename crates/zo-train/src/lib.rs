#![doc = include_str!("../README.md")]

pub mod checkpoint;
pub mod error;
pub mod model;
pub mod observer;
pub mod plot;
pub mod progress;
pub mod replay;
pub mod rundir;
pub mod trainer;

pub use checkpoint::{
    Best, CHECKPOINT_FILE, Checkpoint, LogMark, LoopState, RunState, SEED_LOG_FILE, SeedLogEntry,
    read_jsonl, read_seed_log, write_atomic, write_atomic_with,
};
pub use error::{Result, TrainError};
pub use model::{Metrics, Split, TaskModel};
pub use observer::{Event, JsonlWriter, Observer, Recorder};
pub use plot::{LinePlot, Series, plot_run};
pub use progress::ProgressBar;
pub use replay::replay;
pub use rundir::{LOCK_FILE, RunLock, create_unique_dir, remove_temporaries};
pub use trainer::{
    ParamEncoder, StopReason, Summary, TestWeights, TrainConfig, Trainer, json_params,
};
