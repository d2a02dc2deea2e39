//! `bszo`: zeroth-order fine-tuning with forward passes only.
//!
//! This facade re-exports the workspace's crates so that one dependency brings them all:
//!
//! - [`kalman`]: linear-Gaussian Kalman filtering over `ndarray` (no machine learning in it);
//! - [`sampler`] (`zo-sampler`): keyed, seekable direction streams and fused in-place sweeps.

pub use kalman;
pub use zo_sampler as sampler;
