#![doc = include_str!("../README.md")]

mod error;
mod filter;
mod fixed;
mod float;
mod gaussian;
mod information;
mod kernel;
pub mod linalg;
mod model;
mod sequence;
#[cfg(feature = "serde")]
mod serde_impls;
mod step;
mod validate;

pub use error::KalmanError;
pub use filter::KalmanFilter;
pub use float::KalmanFloat;
pub use gaussian::{Gaussian, ScalarUpdate, UpdateForm, VectorUpdate};
pub use information::InformationGaussian;
pub use kernel::BLOCKED_MIN_DIM;
pub use model::{LinearModel, Measurement, StateSpaceModel, Transition};
pub use sequence::{FilterOutput, filter, filter_with_controls, rts_smooth};
pub use step::{FIXED_MAX_DIM, FIXED_MAX_OBS_DIM};
