#![doc = include_str!("../README.md")]

pub mod datadir;
pub mod dataset;
pub mod error;
pub mod metrics;
pub mod prompt;
pub mod protocol;
pub mod read;
pub mod sample;
pub mod task;

pub use datadir::{
    DATA_DIR_ENV, DataDirOrigin, MODELS_DIR_ENV, models_dir_in, resolve_data_dir,
    resolve_data_dir_from,
};
pub use dataset::{FewGlueSplit, KShotSplit, PoolSplit, load_fewglue, load_kshot, load_pool};
pub use error::{DataError, Result};
pub use metrics::{accuracy, confusion_matrix, macro_f1};
pub use prompt::{CausalPrompt, EncodedCandidates, MaskedPrompt, NliTemplate};
pub use protocol::{FEW_SHOT_SEEDS, Protocol, Splits, load_splits, sampled_sizes};
pub use sample::{SplitMix64, permutation, shuffle};
pub use task::{Example, Source, Task};
