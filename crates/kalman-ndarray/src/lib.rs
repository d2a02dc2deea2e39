#![doc = include_str!("../README.md")]

mod error;
mod float;
mod gaussian;
mod information;
pub mod linalg;
mod model;
mod sequence;
#[cfg(feature = "serde")]
mod serde_impls;
mod validate;

pub use error::KalmanError;
pub use float::KalmanFloat;
pub use gaussian::{Gaussian, ScalarUpdate, UpdateForm, VectorUpdate};
pub use information::InformationGaussian;
pub use model::{LinearModel, Measurement, StateSpaceModel, Transition};
pub use sequence::{FilterOutput, filter, filter_with_controls, rts_smooth};
