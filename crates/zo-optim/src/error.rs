//! Typed errors of the optimizer crate.

use kalman_ndarray::KalmanError;
use zo_sampler::sweep::SweepError;

/// The error type an [`Objective`](crate::Objective) returns.
pub type ObjectiveError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An invalid hyper-parameter, found when a configuration is validated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A value that must be strictly positive is not (or is not finite).
    #[error("`{field}` must be a finite number > 0, got {value}")]
    NotPositive {
        /// The field.
        field: &'static str,
        /// The offending value.
        value: f64,
    },
    /// A value that must be non-negative is not (or is not finite).
    #[error("`{field}` must be a finite number >= 0, got {value}")]
    Negative {
        /// The field.
        field: &'static str,
        /// The offending value.
        value: f64,
    },
    /// A value outside an interval.
    #[error("`{field}` must lie in {interval}, got {value}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The interval, written out (e.g. `(0, 1)`).
        interval: &'static str,
        /// The offending value.
        value: f64,
    },
    /// A count that must be at least some minimum.
    #[error("`{field}` must be at least {min}, got {value}")]
    TooSmall {
        /// The field.
        field: &'static str,
        /// The minimum.
        min: u64,
        /// The offending value.
        value: u64,
    },
    /// The number of Kalman samples is smaller than the subspace dimension.
    #[error("`m` (samples per step) must be >= `k` (subspace dimension), got m = {m}, k = {k}")]
    SamplesBelowSubspace {
        /// Samples per step.
        m: usize,
        /// Subspace dimension.
        k: usize,
    },
    /// A combination the chosen algorithm does not support.
    #[error("unsupported combination: {0}")]
    Unsupported(&'static str),
}

/// An error from a parameter set's primitives.
#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    /// A per-element state vector does not match the parameter set's tensors.
    #[error("state vector does not match parameter tensor `{tensor}`: {detail}")]
    StateMismatch {
        /// The tensor name.
        tensor: String,
        /// What differs.
        detail: String,
    },
    /// A sweep failed (e.g. a scale vector of the wrong length).
    #[error(transparent)]
    Sweep(#[from] SweepError),
    /// The storage behind the parameter set failed (a backend error).
    #[error("parameter storage: {0}")]
    Backend(ObjectiveError),
}

/// An error from an optimizer step. After any error the parameters are back at the values they had
/// before the step began (up to floating-point rounding of the restore), and the optimizer state is
/// unchanged.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// The configuration was invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A parameter-set primitive failed.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// The objective failed.
    #[error("objective failed at forward {forward} of step {step}: {source}")]
    Objective {
        /// The step.
        step: u64,
        /// The forward pass within the step (1-based).
        forward: usize,
        /// The objective's error.
        source: ObjectiveError,
    },
    /// The objective returned NaN or an infinity.
    #[error("non-finite loss {value} at forward {forward} of step {step}")]
    NonFiniteLoss {
        /// The step.
        step: u64,
        /// The forward pass within the step (1-based).
        forward: usize,
        /// The value returned.
        value: f64,
    },
    /// The Kalman posterior update failed.
    #[error("Kalman update: {0}")]
    Kalman(#[from] KalmanError),
    /// The state does not belong to this optimizer or parameter set.
    #[error("optimizer state mismatch: {0}")]
    StateMismatch(String),
}

/// `v` finite and `> 0`, or [`ConfigError::NotPositive`].
pub(crate) fn positive(field: &'static str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::NotPositive { field, value: v })
    }
}

/// `v` finite and `≥ 0`, or [`ConfigError::Negative`].
pub(crate) fn non_negative(field: &'static str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::Negative { field, value: v })
    }
}

/// `v` finite and in `[0, 1)`, or [`ConfigError::OutOfRange`].
pub(crate) fn unit_interval(field: &'static str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field,
            interval: "[0, 1)",
            value: v,
        })
    }
}

/// A count of at least one, or [`ConfigError::TooSmall`].
pub(crate) fn at_least_one(field: &'static str, v: u64) -> Result<(), ConfigError> {
    at_least(field, 1, v)
}

/// A count of at least `min`, or [`ConfigError::TooSmall`].
pub(crate) fn at_least(field: &'static str, min: u64, v: u64) -> Result<(), ConfigError> {
    if v < min {
        Err(ConfigError::TooSmall {
            field,
            min,
            value: v,
        })
    } else {
        Ok(())
    }
}
