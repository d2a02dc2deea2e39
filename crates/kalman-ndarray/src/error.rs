//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong in this crate.
///
/// Every public function validates its inputs and reports problems through this type; none panics
/// on bad input. Each variant names the offending argument (or, for matrices the crate computes
/// itself, such as the innovation covariance, the matrix), so that the message alone locates the
/// problem. Operations that fail leave their receiver unchanged.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum KalmanError {
    /// An argument has the wrong shape: a vector of the wrong length or a matrix with the wrong
    /// number of rows or columns, or a sequence of the wrong length.
    #[error("shape mismatch in `{argument}`: expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// The argument, e.g. `"h"` or `"observations"`.
        argument: &'static str,
        /// The expected shape (one entry for vectors and sequences, two for matrices).
        expected: Vec<usize>,
        /// The shape that was passed.
        found: Vec<usize>,
    },

    /// An argument contains NaN or an infinity.
    #[error("`{argument}` contains a non-finite value (NaN or infinity)")]
    NonFinite {
        /// The argument, e.g. `"y"`.
        argument: &'static str,
    },

    /// A matrix that must be symmetric is not, beyond the tolerance of
    /// [`KalmanFloat::symmetry_tolerance`](crate::KalmanFloat::symmetry_tolerance).
    #[error(
        "`{matrix}` is not symmetric: largest |a_ij - a_ji| is {asymmetry:e}, tolerance {tolerance:e}"
    )]
    NotSymmetric {
        /// The matrix, e.g. `"cov"` or `"q"`.
        matrix: &'static str,
        /// The largest absolute difference between mirrored entries.
        asymmetry: f64,
        /// The absolute tolerance it was compared with.
        tolerance: f64,
    },

    /// A matrix (or variance) that must be positive definite is not: its Cholesky factorisation
    /// met a non-positive pivot.
    #[error("`{matrix}` is not positive definite")]
    NotPositiveDefinite {
        /// The matrix, e.g. `"cov"`, `"r"` or `"innovation covariance"`.
        matrix: &'static str,
    },

    /// A matrix that must be positive semidefinite (the process noise `Q`) is not, beyond a
    /// tolerance: its pivoted Cholesky factorisation leaves a remainder with an entry larger in
    /// magnitude than `tolerance` (see [`Transition::new`](crate::Transition::new)).
    #[error(
        "`{matrix}` is not positive semidefinite: pivoted Cholesky leaves a remainder entry of {residual:e}, tolerance {tolerance:e}"
    )]
    NotPositiveSemidefinite {
        /// The matrix, e.g. `"q"`.
        matrix: &'static str,
        /// The largest magnitude in the remainder of the factorisation (for an indefinite
        /// matrix, of the order of its most negative eigenvalue).
        residual: f64,
        /// The absolute tolerance it was compared with.
        tolerance: f64,
    },

    /// A variance (or a diagonal entry of a covariance) is negative.
    #[error("`{argument}` must be non-negative, found {value}")]
    NegativeVariance {
        /// The argument, e.g. `"r"`, `"jitter"` or `"q"`.
        argument: &'static str,
        /// The offending value.
        value: f64,
    },

    /// An error at one step of a sequence operation ([`filter`](crate::filter),
    /// [`rts_smooth`](crate::rts_smooth)).
    #[error("at step {step}: {source}")]
    AtStep {
        /// The zero-based step index.
        step: usize,
        /// What went wrong there.
        #[source]
        source: Box<KalmanError>,
    },
}

impl KalmanError {
    /// Wraps `self` with the index of the step of a sequence at which it occurred.
    pub(crate) fn at_step(self, step: usize) -> Self {
        Self::AtStep {
            step,
            source: Box::new(self),
        }
    }

    /// The error a [`StateSpaceModel`](crate::StateSpaceModel) of `len` steps reports when asked
    /// for step `t ≥ len`: [`KalmanError::ShapeMismatch`] naming `"models"`, expected `[t + 1]`
    /// steps, found `[len]`.
    pub fn past_the_end(t: usize, len: usize) -> Self {
        Self::ShapeMismatch {
            argument: "models",
            expected: vec![t + 1],
            found: vec![len],
        }
    }

    /// The innermost error, looking through [`KalmanError::AtStep`] wrappers.
    pub fn root(&self) -> &KalmanError {
        match self {
            Self::AtStep { source, .. } => source.root(),
            other => other,
        }
    }
}
