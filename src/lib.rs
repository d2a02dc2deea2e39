#![doc = include_str!("../README.md")]

//! `bszo`: zeroth-order fine-tuning with forward passes only.
//!
//! This facade re-exports the workspace's crates so that one dependency brings them all:
//!
//! - [`kalman`] (`kalman-ndarray`): linear-Gaussian Kalman filtering over `ndarray` (no machine learning in it);
//! - [`sampler`] (`zo-sampler`): keyed, seekable direction streams and fused in-place sweeps;
//! - [`optim`] (`zo-optim`): the zeroth-order optimizer family over an abstract parameter set;
//! - [`models`] (`zo-models`): BERT/RoBERTa masked LMs, OPT, Llama/Mistral on candle, perturbed in place;
//! - [`data`] (`zo-data`): tasks, prompts, readers, protocols and metrics;
//! - [`train`] (`zo-train`): the training loop, checkpoints and resume.

pub use kalman_ndarray as kalman;
pub use zo_data as data;
pub use zo_models as models;
pub use zo_optim as optim;
pub use zo_sampler as sampler;
pub use zo_train as train;
