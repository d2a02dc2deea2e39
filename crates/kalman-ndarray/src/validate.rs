//! Input checks shared by the public constructors and operations.

use ndarray::{Array2, ArrayBase, ArrayView1, ArrayView2, Data, Dimension};

use crate::KalmanError;
use crate::float::{KalmanFloat, wide};

/// Checks that a vector has length `expected`.
pub(crate) fn check_len<T>(
    argument: &'static str,
    v: &ArrayView1<'_, T>,
    expected: usize,
) -> Result<(), KalmanError> {
    if v.len() == expected {
        Ok(())
    } else {
        Err(KalmanError::ShapeMismatch {
            argument,
            expected: vec![expected],
            found: vec![v.len()],
        })
    }
}

/// Checks that a matrix has shape `expected`.
pub(crate) fn check_shape<T>(
    argument: &'static str,
    a: &ArrayView2<'_, T>,
    expected: (usize, usize),
) -> Result<(), KalmanError> {
    if a.dim() == expected {
        Ok(())
    } else {
        Err(KalmanError::ShapeMismatch {
            argument,
            expected: vec![expected.0, expected.1],
            found: a.shape().to_vec(),
        })
    }
}

/// Checks that a matrix is square and returns its order.
pub(crate) fn check_square<T>(
    argument: &'static str,
    a: &ArrayView2<'_, T>,
) -> Result<usize, KalmanError> {
    let n = a.nrows();
    check_shape(argument, a, (n, n))?;
    Ok(n)
}

/// Checks that every element is finite.
pub(crate) fn check_finite<T, S, D>(
    argument: &'static str,
    a: &ArrayBase<S, D>,
) -> Result<(), KalmanError>
where
    T: KalmanFloat,
    S: Data<Elem = T>,
    D: Dimension,
{
    if a.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(KalmanError::NonFinite { argument })
    }
}

/// Checks that a scalar is finite.
pub(crate) fn check_finite_scalar<T: KalmanFloat>(
    argument: &'static str,
    x: T,
) -> Result<(), KalmanError> {
    if x.is_finite() {
        Ok(())
    } else {
        Err(KalmanError::NonFinite { argument })
    }
}

/// Checks that a finite scalar is non-negative.
pub(crate) fn check_non_negative<T: KalmanFloat>(
    argument: &'static str,
    x: T,
) -> Result<(), KalmanError> {
    if x >= T::zero() {
        Ok(())
    } else {
        Err(KalmanError::NegativeVariance {
            argument,
            value: wide(x),
        })
    }
}

/// Checks that a finite square matrix is symmetric within
/// `√ε · max(1, max |a_kl|)` (see [`KalmanFloat::symmetry_tolerance`]).
pub(crate) fn check_symmetric<T: KalmanFloat>(
    matrix: &'static str,
    a: &ArrayView2<'_, T>,
) -> Result<(), KalmanError> {
    let scale = a.iter().fold(T::one(), |m, x| m.max(x.abs()));
    let tolerance = T::symmetry_tolerance() * scale;
    let n = a.nrows();
    let mut asymmetry = T::zero();
    for i in 0..n {
        for j in 0..i {
            asymmetry = asymmetry.max((a[[i, j]] - a[[j, i]]).abs());
        }
    }
    if asymmetry <= tolerance {
        Ok(())
    } else {
        Err(KalmanError::NotSymmetric {
            matrix,
            asymmetry: wide(asymmetry),
            tolerance: wide(tolerance),
        })
    }
}

/// Checks that the diagonal of a square matrix is non-negative (a necessary condition for a
/// covariance matrix).
pub(crate) fn check_diagonal_non_negative<T: KalmanFloat>(
    argument: &'static str,
    a: &ArrayView2<'_, T>,
) -> Result<(), KalmanError> {
    a.diag()
        .iter()
        .try_for_each(|&d| check_non_negative(argument, d))
}

/// Replaces `a` by `(a + aᵀ) / 2` in place.
pub(crate) fn symmetrize<T: KalmanFloat>(a: &mut Array2<T>) {
    let half = crate::float::lit::<T>(0.5);
    let n = a.nrows();
    for i in 0..n {
        for j in 0..i {
            let m = (a[[i, j]] + a[[j, i]]) * half;
            a[[i, j]] = m;
            a[[j, i]] = m;
        }
    }
}

/// Returns `a` in standard (row-major) layout, symmetrised.
pub(crate) fn owned_symmetric<T: KalmanFloat>(a: ArrayView2<'_, T>) -> Array2<T> {
    let mut a = a.as_standard_layout().into_owned();
    symmetrize(&mut a);
    a
}
