//! The floating-point types the crate computes in.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

use ndarray::{LinalgScalar, ScalarOperand};
use num_traits::Float;

mod sealed {
    /// Prevents implementations of [`KalmanFloat`](super::KalmanFloat) outside the crate and
    /// carries the per-type hooks the crate needs (conversions, the optional LAPACK backend).
    pub trait Sealed: Sized {
        /// Converts an `f64` constant (rounding for `f32`).
        fn from_f64_const(x: f64) -> Self;
        /// Widens to `f64` (exact for both implementors).
        fn to_f64_lossless(self) -> f64;
        /// Lower Cholesky factor through LAPACK (`?potrf`), `None` if the factorisation fails.
        #[cfg(feature = "lapack")]
        fn lapack_cholesky_lower(a: ndarray::ArrayView2<'_, Self>)
        -> Option<ndarray::Array2<Self>>;
    }
}

/// The floating-point types the crate computes in: `f32` and `f64`.
///
/// The trait is sealed: it cannot be implemented outside this crate. It collects the arithmetic,
/// `ndarray` and formatting bounds the algorithms need so that user code can stay generic with a
/// single bound, `T: KalmanFloat`.
pub trait KalmanFloat:
    Float
    + LinalgScalar
    + ScalarOperand
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
    + sealed::Sealed
{
    /// Relative tolerance of the symmetry check on input matrices: `√ε`
    /// (about `1.5e-8` for `f64`, `3.5e-4` for `f32`).
    ///
    /// A matrix `A` passes when `|a_ij − a_ji| ≤ √ε · max(1, max_kl |a_kl|)` for all `i, j`.
    fn symmetry_tolerance() -> Self {
        Self::epsilon().sqrt()
    }
}

/// Converts an `f64` constant to `T` (rounding to nearest for `f32`).
#[inline]
pub(crate) fn lit<T: KalmanFloat>(x: f64) -> T {
    <T as sealed::Sealed>::from_f64_const(x)
}

/// Widens a `T` to `f64` (exact), for error reports.
#[inline]
pub(crate) fn wide<T: KalmanFloat>(x: T) -> f64 {
    <T as sealed::Sealed>::to_f64_lossless(x)
}

/// LAPACK lower Cholesky factor of `a`, `None` if LAPACK reports failure.
#[cfg(feature = "lapack")]
pub(crate) fn lapack_cholesky_lower<T: KalmanFloat>(
    a: ndarray::ArrayView2<'_, T>,
) -> Option<ndarray::Array2<T>> {
    <T as sealed::Sealed>::lapack_cholesky_lower(a)
}

macro_rules! impl_float {
    ($t:ty) => {
        impl sealed::Sealed for $t {
            #[inline]
            fn from_f64_const(x: f64) -> Self {
                x as $t
            }

            #[inline]
            fn to_f64_lossless(self) -> f64 {
                f64::from(self)
            }

            #[cfg(feature = "lapack")]
            fn lapack_cholesky_lower(
                a: ndarray::ArrayView2<'_, Self>,
            ) -> Option<ndarray::Array2<Self>> {
                use ndarray_linalg::{Cholesky, UPLO};
                a.cholesky(UPLO::Lower).ok()
            }
        }

        impl KalmanFloat for $t {}
    };
}

impl_float!(f32);
impl_float!(f64);
