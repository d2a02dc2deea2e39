//! Pivoted (semidefinite) Cholesky factorisation: the positive-semidefiniteness check of the
//! process noise `Q` and the square-root factor the square-root filter propagates it with.

use ndarray::{Array2, ArrayView2};

use crate::KalmanError;
use crate::float::{KalmanFloat, wide};

/// Factorises a symmetric positive semidefinite matrix as `A ≈ G Gᵀ`, or reports that it is not
/// positive semidefinite beyond the tolerance.
///
/// Symmetric (diagonal) pivoting: at each step the largest remaining diagonal entry `d` of the
/// Schur complement is the pivot; its column divided by `√d` becomes the next column of `G` and
/// its outer product is subtracted. The factorisation stops when the largest remaining diagonal
/// entry is at most `τ = √ε · max_i a_ii`. `A` is accepted when every entry of the remainder is
/// then at most `τ` in magnitude; the remainder is dropped, so `G Gᵀ` differs from `A` by at
/// most `τ` per entry (and the smallest eigenvalue of `A` is at least `−n τ`). A positive
/// semidefinite matrix of any rank passes (its remainder is rounding noise); an indefinite one
/// has a remainder entry of about the magnitude of its negative eigenvalue.
///
/// `G` is `n × n`, with the columns beyond the numerical rank zero; row `i` belongs to row `i` of
/// `A` (no permutation to undo). The diagonal of `A` must already be known to be non-negative and
/// `A` finite and symmetric.
pub(crate) fn semidefinite_factor<T: KalmanFloat>(
    a: ArrayView2<'_, T>,
    matrix: &'static str,
) -> Result<Array2<T>, KalmanError> {
    let n = a.nrows();
    let mut work = a.as_standard_layout().into_owned();
    let mut g = Array2::<T>::zeros((n, n));
    let scale = a.diag().iter().fold(T::zero(), |m, &d| m.max(d));
    let tolerance = T::symmetry_tolerance() * scale;
    let mut pivoted = vec![false; n];
    for k in 0..n {
        // Largest remaining diagonal entry.
        let mut best: Option<(usize, T)> = None;
        for i in (0..n).filter(|&i| !pivoted[i]) {
            let d = work[[i, i]];
            if best.is_none_or(|(_, b)| d > b) {
                best = Some((i, d));
            }
        }
        let Some((p, d)) = best else { break };
        if d <= tolerance {
            break;
        }
        pivoted[p] = true;
        let inv = d.sqrt().recip();
        for i in 0..n {
            g[[i, k]] = if pivoted[i] && i != p {
                T::zero()
            } else {
                work[[i, p]] * inv
            };
        }
        for i in (0..n).filter(|&i| !pivoted[i]) {
            let gi = g[[i, k]];
            for j in (0..n).filter(|&j| !pivoted[j]) {
                work[[i, j]] -= gi * g[[j, k]];
            }
        }
    }
    let mut residual = T::zero();
    for i in (0..n).filter(|&i| !pivoted[i]) {
        for j in (0..n).filter(|&j| !pivoted[j]) {
            residual = residual.max(work[[i, j]].abs());
        }
    }
    if residual <= tolerance {
        Ok(g)
    } else {
        Err(KalmanError::NotPositiveSemidefinite {
            matrix,
            residual: wide(residual),
            tolerance: wide(tolerance),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;
    use ndarray::array;

    #[test]
    fn factors_semidefinite_matrices() {
        for a in [
            array![[4.0, 2.0], [2.0, 3.0]],
            array![[1.0, 1.0], [1.0, 1.0]],
            array![[0.0, 0.0], [0.0, 0.0]],
            array![[0.0, 0.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 0.5]],
        ] {
            let g = semidefinite_factor(a.view(), "q").unwrap();
            assert_abs_diff_eq!(g.dot(&g.t()), a, epsilon = 1e-14);
        }
    }

    #[test]
    fn rejects_indefinite_matrices() {
        // Eigenvalues 4 and −2: after the first pivot the remainder is 1 − 9 = −8.
        let err = semidefinite_factor(array![[1.0, 3.0], [3.0, 1.0]].view(), "q").unwrap_err();
        assert!(matches!(
            err,
            KalmanError::NotPositiveSemidefinite { matrix: "q", residual, .. } if residual == 8.0
        ));
        // A zero diagonal with a non-zero off-diagonal entry.
        let err = semidefinite_factor(array![[0.0, 1.0], [1.0, 0.0]].view(), "q").unwrap_err();
        assert!(matches!(err, KalmanError::NotPositiveSemidefinite { .. }));
    }
}
