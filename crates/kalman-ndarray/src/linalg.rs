//! Cholesky factorisation and the triangular solves built on it, and the symmetric
//! eigen-decomposition ([`SymmetricEigen`], cyclic Jacobi) for small matrices.
//!
//! Every solve in the crate goes through [`Cholesky`]: no matrix is ever inverted explicitly where
//! a solve does the job. Factorisation is done natively (a row-oriented Cholesky–Banachiewicz
//! loop over contiguous rows) below [`LAPACK_MIN_DIM`]; with the `lapack` feature, matrices of
//! order `LAPACK_MIN_DIM` or more are factorised by LAPACK's `?potrf` through `ndarray-linalg`.
//! Triangular solves are always native.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use crate::KalmanError;
use crate::float::{KalmanFloat, lit};
use crate::validate::{check_finite, check_len, check_square};

mod eigen;
pub(crate) mod psd;

pub use eigen::{JACOBI_MAX_SWEEPS, SymmetricEigen};

/// Smallest matrix order factorised by LAPACK when the `lapack` feature is enabled.
///
/// Below this order a factorisation takes about a microsecond either way and the native path
/// avoids the library call and the copies into and out of column-major storage; from this order
/// up LAPACK's blocked `?potrf` is faster (on the reference machine of the crate README, with a
/// single OpenBLAS thread: 1.35× at order 32, 1.5–1.6× at 64 and 100, 2.1× at 200). Without the
/// feature the native path is used for every order.
pub const LAPACK_MIN_DIM: usize = 32;

/// The Cholesky factorisation `A = L Lᵀ` of a symmetric positive definite matrix.
///
/// Only the lower triangle of `A` is read. Construction fails with
/// [`KalmanError::NotPositiveDefinite`] when a pivot is not positive (or not finite).
///
/// ```
/// use kalman_ndarray::linalg::Cholesky;
/// use ndarray::array;
///
/// # fn main() -> Result<(), kalman_ndarray::KalmanError> {
/// let a = array![[4.0, 2.0], [2.0, 3.0]];
/// let chol = Cholesky::new(a.view())?;
/// // L = [[2, 0], [1, √2]]
/// assert!((chol.lower()[[1, 1]] - 2f64.sqrt()).abs() < 1e-15);
/// // Solve A x = b for b = A·[1, 1] = [6, 5].
/// let x = chol.solve_vec(array![6.0, 5.0].view())?;
/// assert!((x[0] - 1.0).abs() < 1e-14 && (x[1] - 1.0).abs() < 1e-14);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Cholesky<T> {
    lower: Array2<T>,
}

impl<T: KalmanFloat> Cholesky<T> {
    /// Factorises `a`, choosing the backend by order (see [`LAPACK_MIN_DIM`]).
    ///
    /// Errors: `a` not square ([`KalmanError::ShapeMismatch`]), not finite
    /// ([`KalmanError::NonFinite`]) or not positive definite
    /// ([`KalmanError::NotPositiveDefinite`]), each naming `"a"`.
    pub fn new(a: ArrayView2<'_, T>) -> Result<Self, KalmanError> {
        check_square("a", &a)?;
        check_finite("a", &a)?;
        Self::factor(a, "a")
    }

    /// Factorises `a` with the native algorithm whatever its order.
    ///
    /// Errors as for [`Cholesky::new`].
    pub fn new_native(a: ArrayView2<'_, T>) -> Result<Self, KalmanError> {
        check_square("a", &a)?;
        check_finite("a", &a)?;
        Self::factor_native(a, "a")
    }

    /// Factorises `a` with LAPACK (`?potrf`) whatever its order.
    ///
    /// Errors as for [`Cholesky::new`].
    #[cfg(feature = "lapack")]
    pub fn new_lapack(a: ArrayView2<'_, T>) -> Result<Self, KalmanError> {
        check_square("a", &a)?;
        check_finite("a", &a)?;
        Self::factor_lapack(a, "a")
    }

    /// Factorises a square matrix; `matrix` names it in the error.
    pub(crate) fn factor(a: ArrayView2<'_, T>, matrix: &'static str) -> Result<Self, KalmanError> {
        #[cfg(feature = "lapack")]
        if a.nrows() >= LAPACK_MIN_DIM {
            return Self::factor_lapack(a, matrix);
        }
        Self::factor_native(a, matrix)
    }

    #[cfg(feature = "lapack")]
    fn factor_lapack(a: ArrayView2<'_, T>, matrix: &'static str) -> Result<Self, KalmanError> {
        let lower = crate::float::lapack_cholesky_lower(a)
            .ok_or(KalmanError::NotPositiveDefinite { matrix })?;
        if lower.diag().iter().all(|d| d.is_finite() && *d > T::zero()) {
            Ok(Self { lower })
        } else {
            Err(KalmanError::NotPositiveDefinite { matrix })
        }
    }

    /// Cholesky–Banachiewicz, in place on a row-major copy of `a`: row `i` of `L` from rows
    /// `0..i`, every inner product over contiguous row prefixes.
    fn factor_native(a: ArrayView2<'_, T>, matrix: &'static str) -> Result<Self, KalmanError> {
        let n = a.nrows();
        let mut l = a.as_standard_layout().into_owned();
        let Some(data) = l.as_slice_mut() else {
            return Err(KalmanError::NotPositiveDefinite { matrix });
        };
        // Reciprocals of the diagonal of L: one division per row instead of one per entry.
        let mut inv_diag = vec![T::zero(); n];
        for i in 0..n {
            let (done, rest) = data.split_at_mut(i * n);
            let row_i = &mut rest[..n];
            for (j, &inv_ljj) in inv_diag.iter().enumerate().take(i) {
                let row_j = &done[j * n..j * n + j];
                row_i[j] = (row_i[j] - dot(&row_i[..j], row_j)) * inv_ljj;
            }
            let d = row_i[i] - dot(&row_i[..i], &row_i[..i]);
            if !(d > T::zero() && d.is_finite()) {
                return Err(KalmanError::NotPositiveDefinite { matrix });
            }
            let lii = d.sqrt();
            row_i[i] = lii;
            inv_diag[i] = lii.recip();
            row_i[i + 1..].fill(T::zero());
        }
        Ok(Self { lower: l })
    }

    /// The lower-triangular factor `L` (its strict upper triangle is zero).
    pub fn lower(&self) -> &Array2<T> {
        &self.lower
    }

    /// Consumes the factorisation and returns `L`.
    pub fn into_lower(self) -> Array2<T> {
        self.lower
    }

    /// Order of the factorised matrix.
    pub fn dim(&self) -> usize {
        self.lower.nrows()
    }

    /// `log det A = 2 Σ log L_ii`.
    pub fn log_det(&self) -> T {
        lit::<T>(2.0) * self.lower.diag().iter().map(|d| d.ln()).sum::<T>()
    }

    /// Solves `A x = b`.
    ///
    /// Errors: `b` of the wrong length or not finite, naming `"b"`.
    pub fn solve_vec(&self, b: ArrayView1<'_, T>) -> Result<Array1<T>, KalmanError> {
        check_len("b", &b, self.dim())?;
        check_finite("b", &b)?;
        Ok(self.solve_vec_unchecked(b))
    }

    /// Solves `A X = B` for a matrix right-hand side.
    ///
    /// Errors: `b` with the wrong number of rows or not finite, naming `"b"`.
    pub fn solve_mat(&self, b: ArrayView2<'_, T>) -> Result<Array2<T>, KalmanError> {
        if b.nrows() != self.dim() {
            return Err(KalmanError::ShapeMismatch {
                argument: "b",
                expected: vec![self.dim(), b.ncols()],
                found: b.shape().to_vec(),
            });
        }
        check_finite("b", &b)?;
        Ok(self.solve_mat_unchecked(b))
    }

    /// Solves `L z = b` (whitening: if `b ~ N(0, A)` then `z ~ N(0, I)`).
    ///
    /// Errors: `b` of the wrong length or not finite, naming `"b"`.
    pub fn solve_lower_vec(&self, b: ArrayView1<'_, T>) -> Result<Array1<T>, KalmanError> {
        check_len("b", &b, self.dim())?;
        check_finite("b", &b)?;
        Ok(self.forward_vec(b))
    }

    /// `A⁻¹`, by solving against the identity; symmetric by construction.
    ///
    /// Prefer the solves where the inverse is only applied to vectors or matrices.
    pub fn inverse(&self) -> Array2<T> {
        let n = self.dim();
        let mut inv = self.solve_mat_unchecked(Array2::eye(n).view());
        crate::validate::symmetrize(&mut inv);
        inv
    }

    /// `A x = b` without checks (the caller guarantees the length).
    pub(crate) fn solve_vec_unchecked(&self, b: ArrayView1<'_, T>) -> Array1<T> {
        let z = self.forward_vec(b);
        self.backward_vec(z)
    }

    /// `A X = B` without checks (the caller guarantees the shape).
    pub(crate) fn solve_mat_unchecked(&self, b: ArrayView2<'_, T>) -> Array2<T> {
        let z = self.forward_mat(b);
        self.backward_mat(z)
    }

    /// `L z = b`.
    pub(crate) fn forward_vec(&self, b: ArrayView1<'_, T>) -> Array1<T> {
        let n = self.dim();
        let mut z = b.to_owned();
        for i in 0..n {
            let row = self.lower.row(i);
            let mut s = z[i];
            for k in 0..i {
                s -= row[k] * z[k];
            }
            z[i] = s / row[i];
        }
        z
    }

    /// `Lᵀ x = z`, in place.
    fn backward_vec(&self, mut x: Array1<T>) -> Array1<T> {
        let n = self.dim();
        for i in (0..n).rev() {
            let mut s = x[i];
            for k in i + 1..n {
                s -= self.lower[[k, i]] * x[k];
            }
            x[i] = s / self.lower[[i, i]];
        }
        x
    }

    /// `L Z = B`, row by row: `Z_i = (B_i − Σ_{k<i} L_ik Z_k) / L_ii`.
    pub(crate) fn forward_mat(&self, b: ArrayView2<'_, T>) -> Array2<T> {
        let n = self.dim();
        let mut z = b.as_standard_layout().into_owned();
        for i in 0..n {
            let (done, mut rest) = z.view_mut().split_at(Axis(0), i);
            let mut zi = rest.row_mut(0);
            for k in 0..i {
                let lik = self.lower[[i, k]];
                if lik != T::zero() {
                    zi.scaled_add(-lik, &done.row(k));
                }
            }
            zi /= self.lower[[i, i]];
        }
        z
    }

    /// `Lᵀ X = Z`, row by row from the bottom: `X_i = (Z_i − Σ_{k>i} L_ki X_k) / L_ii`.
    fn backward_mat(&self, mut x: Array2<T>) -> Array2<T> {
        let n = self.dim();
        for i in (0..n).rev() {
            let (mut head, tail) = x.view_mut().split_at(Axis(0), i + 1);
            let mut xi = head.row_mut(i);
            for k in i + 1..n {
                let lki = self.lower[[k, i]];
                if lki != T::zero() {
                    xi.scaled_add(-lki, &tail.row(k - i - 1));
                }
            }
            xi /= self.lower[[i, i]];
        }
        x
    }
}

/// Inner product of two equal-length slices with four independent accumulators (lets the
/// compiler vectorise without reassociating a single running sum).
#[inline]
fn dot<T: KalmanFloat>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 4];
    let chunks_a = a.chunks_exact(4);
    let chunks_b = b.chunks_exact(4);
    let tail: T = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(&x, &y)| x * y)
        .sum();
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for k in 0..4 {
            acc[k] += ca[k] * cb[k];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use ndarray::array;

    #[test]
    fn factor_by_hand() {
        // [[4, 2, 0], [2, 5, 3], [0, 3, 10]]:
        // L₀₀ = 2; L₁₀ = 2/2 = 1; L₁₁ = √(5 − 1) = 2; L₂₀ = 0; L₂₁ = (3 − 0)/2 = 1.5;
        // L₂₂ = √(10 − 0 − 2.25) = √7.75. det = (2·2·√7.75)² = 16·7.75 = 124.
        let a = array![[4.0, 2.0, 0.0], [2.0, 5.0, 3.0], [0.0, 3.0, 10.0]];
        let c = Cholesky::new(a.view()).unwrap();
        let l = array![[2.0, 0.0, 0.0], [1.0, 2.0, 0.0], [0.0, 1.5, 7.75f64.sqrt()]];
        assert_abs_diff_eq!(c.lower(), &l, epsilon = 1e-15);
        assert_abs_diff_eq!(c.log_det(), 124f64.ln(), epsilon = 1e-14);
        // A·[1, −1, 2] = [2, 3, 17].
        let x = c.solve_vec(array![2.0, 3.0, 17.0].view()).unwrap();
        assert_abs_diff_eq!(x, array![1.0, -1.0, 2.0], epsilon = 1e-14);
        let xs = c
            .solve_mat(array![[2.0, 4.0], [3.0, 2.0], [17.0, 0.0]].view())
            .unwrap();
        // Second column: A·[1, 0, 0] = [4, 2, 0].
        assert_abs_diff_eq!(
            xs,
            array![[1.0, 1.0], [-1.0, 0.0], [2.0, 0.0]],
            epsilon = 1e-14
        );
        assert_abs_diff_eq!(c.inverse().dot(&a), Array2::eye(3), epsilon = 1e-14);
        // L z = b with b = L·[1, 1, 1] = [2, 3, 1.5 + √7.75].
        let z = c
            .solve_lower_vec(array![2.0, 3.0, 1.5 + 7.75f64.sqrt()].view())
            .unwrap();
        assert_abs_diff_eq!(z, array![1.0, 1.0, 1.0], epsilon = 1e-14);
    }

    #[test]
    fn indefinite_is_rejected() {
        // [[1, 2], [2, 1]] has eigenvalues 3 and −1: second pivot 1 − 4 < 0.
        let err = Cholesky::new(array![[1.0, 2.0], [2.0, 1.0]].view()).unwrap_err();
        assert_eq!(err, KalmanError::NotPositiveDefinite { matrix: "a" });
        let err = Cholesky::new(array![[1.0, 2.0]].view()).unwrap_err();
        assert!(matches!(
            err,
            KalmanError::ShapeMismatch { argument: "a", .. }
        ));
        let err = Cholesky::new(array![[f64::NAN]].view()).unwrap_err();
        assert_eq!(err, KalmanError::NonFinite { argument: "a" });
    }

    #[test]
    fn native_backend_matches_default() {
        let a = array![[4.0f32, 2.0], [2.0, 3.0]];
        assert_eq!(
            Cholesky::new(a.view()).unwrap(),
            Cholesky::new_native(a.view()).unwrap()
        );
    }
}
