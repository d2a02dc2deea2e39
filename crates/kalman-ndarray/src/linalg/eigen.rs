//! Eigen-decomposition of small symmetric matrices by the cyclic Jacobi method.

use ndarray::{Array1, Array2, ArrayView2};

use crate::KalmanError;
use crate::float::{KalmanFloat, lit};
use crate::validate::{check_finite, check_square, check_symmetric};

/// Most cyclic sweeps [`SymmetricEigen::new`] runs; a small matrix converges in far fewer.
pub const JACOBI_MAX_SWEEPS: usize = 64;

/// Relative margin by which an eigenvalue (or a component's magnitude) must exceed an earlier one
/// to be ordered before it: values closer than this keep their index order.
const TIE: f64 = 1e-12;

/// The eigen-decomposition `A = V diag(λ) Vᵀ` of a small symmetric matrix, by cyclic Jacobi
/// rotations.
///
/// Eigenpairs are ordered by decreasing eigenvalue; eigenvalues within a relative `1e-12` of each
/// other count as tied and keep the order of the diagonal they converged on (lowest index first).
/// Each eigenvector has unit length and is signed so that its largest-magnitude component is
/// positive (ties again going to the lowest index).
///
/// Sweeps stop when the squared off-diagonal mass falls to `1e-30 · (1 + ‖A‖²_F)` of the rotated
/// matrix, or after [`JACOBI_MAX_SWEEPS`]. The method is meant for the small matrices of
/// subspace methods (a few dozen rows at most): each sweep costs `O(n³)`.
///
/// ```
/// use kalman_ndarray::linalg::SymmetricEigen;
/// use ndarray::{Array2, array};
///
/// # fn main() -> Result<(), kalman_ndarray::KalmanError> {
/// // Eigenvalues 3 and 1, along (1, 1)/√2 and (1, −1)/√2.
/// let a = array![[2.0f64, 1.0], [1.0, 2.0]];
/// let eig = SymmetricEigen::new(a.view())?;
/// assert!((eig.values()[0] - 3.0).abs() < 1e-12 && (eig.values()[1] - 1.0).abs() < 1e-12);
/// let v = eig.principal();
/// assert!((v[0] - 0.5f64.sqrt()).abs() < 1e-12 && (v[1] - 0.5f64.sqrt()).abs() < 1e-12);
/// // V diag(λ) Vᵀ gives A back.
/// let back = eig.vectors().dot(&Array2::from_diag(eig.values())).dot(&eig.vectors().t());
/// assert!((&back - &a).iter().all(|d| d.abs() < 1e-12));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SymmetricEigen<T> {
    values: Array1<T>,
    vectors: Array2<T>,
}

impl<T: KalmanFloat> SymmetricEigen<T> {
    /// Decomposes the symmetric matrix `a`.
    ///
    /// Errors: `a` not square ([`KalmanError::ShapeMismatch`]), not finite
    /// ([`KalmanError::NonFinite`]) or not symmetric ([`KalmanError::NotSymmetric`]), each
    /// naming `"a"`.
    pub fn new(a: ArrayView2<'_, T>) -> Result<Self, KalmanError> {
        check_square("a", &a)?;
        check_finite("a", &a)?;
        check_symmetric("a", &a)?;
        let (diagonal, rotations) = jacobi(a);
        let n = diagonal.len();
        let mut order: Vec<usize> = (0..n).collect();
        // Selection by decreasing eigenvalue; the first pick is the principal axis.
        for pos in 0..n {
            let mut best = pos;
            for cand in pos + 1..n {
                if diagonal[order[cand]] > diagonal[order[best]] * (T::one() + lit(TIE)) {
                    best = cand;
                }
            }
            let chosen = order.remove(best);
            order.insert(pos, chosen);
        }
        let mut values = Array1::zeros(n);
        let mut vectors = Array2::zeros((n, n));
        for (pos, &i) in order.iter().enumerate() {
            values[pos] = diagonal[i];
            vectors
                .column_mut(pos)
                .assign(&unit_positive(&rotations, i));
        }
        Ok(Self { values, vectors })
    }

    /// The eigenvalues, in decreasing order.
    pub fn values(&self) -> &Array1<T> {
        &self.values
    }

    /// The unit eigenvectors, as columns in the order of [`values`](Self::values).
    pub fn vectors(&self) -> &Array2<T> {
        &self.vectors
    }

    /// The unit eigenvector of the largest eigenvalue (the first column of
    /// [`vectors`](Self::vectors)); empty for an empty matrix.
    pub fn principal(&self) -> Array1<T> {
        if self.vectors.ncols() == 0 {
            return Array1::zeros(0);
        }
        self.vectors.column(0).to_owned()
    }
}

/// Column `i` of `v`, scaled to unit length and signed so that its largest-magnitude component
/// is positive.
fn unit_positive<T: KalmanFloat>(v: &Array2<T>, i: usize) -> Array1<T> {
    let mut col = v.column(i).to_owned();
    let norm = col.dot(&col).sqrt();
    col /= norm;
    let mut big = 0;
    for j in 1..col.len() {
        if col[j].abs() > col[big].abs() * (T::one() + lit(TIE)) {
            big = j;
        }
    }
    if col[big] < T::zero() {
        col.mapv_inplace(|x| -x);
    }
    col
}

/// Cyclic Jacobi sweeps: the converged diagonal and the accumulated rotations (columns).
fn jacobi<T: KalmanFloat>(a: ArrayView2<'_, T>) -> (Array1<T>, Array2<T>) {
    let n = a.nrows();
    let mut m = a.to_owned();
    let mut v = Array2::<T>::eye(n);
    let one = T::one();
    let two = lit::<T>(2.0);
    for _sweep in 0..JACOBI_MAX_SWEEPS {
        let off: T = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[[i, j]].powi(2))
            .sum();
        if off <= lit::<T>(1e-30) * (one + m.iter().map(|&x| x * x).sum::<T>()) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[[p, q]];
                if apq == T::zero() {
                    continue;
                }
                let theta = (m[[q, q]] - m[[p, p]]) / (two * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + one).sqrt());
                let t = if theta == T::zero() { one } else { t };
                let c = one / (t * t + one).sqrt();
                let s = t * c;
                rotate_columns(&mut m, p, q, c, s);
                for k in 0..n {
                    let mpk = m[[p, k]];
                    let mqk = m[[q, k]];
                    m[[p, k]] = c * mpk - s * mqk;
                    m[[q, k]] = s * mpk + c * mqk;
                }
                rotate_columns(&mut v, p, q, c, s);
            }
        }
    }
    (m.diag().to_owned(), v)
}

/// Columns `p` and `q` of `m` ← `(c·m_p − s·m_q, s·m_p + c·m_q)`.
fn rotate_columns<T: KalmanFloat>(m: &mut Array2<T>, p: usize, q: usize, c: T, s: T) {
    for k in 0..m.nrows() {
        let mkp = m[[k, p]];
        let mkq = m[[k, q]];
        m[[k, p]] = c * mkp - s * mkq;
        m[[k, q]] = s * mkp + c * mkq;
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, array};

    use super::*;

    fn reconstruct(e: &SymmetricEigen<f64>) -> Array2<f64> {
        e.vectors()
            .dot(&Array2::from_diag(e.values()))
            .dot(&e.vectors().t())
    }

    fn check_decomposition(a: &Array2<f64>, tol: f64) {
        let e = SymmetricEigen::new(a.view()).unwrap();
        let n = a.nrows();
        assert!(
            reconstruct(&e).abs_diff_eq(a, tol),
            "{a} vs {}",
            reconstruct(&e)
        );
        let gram = e.vectors().t().dot(e.vectors());
        assert!(gram.abs_diff_eq(&Array2::eye(n), 1e-12), "VᵀV = {gram}");
        for w in e.values().windows(2) {
            assert!(w[0] >= w[1] * (1.0 + TIE), "not decreasing: {}", e.values());
        }
        for j in 0..n {
            let col = e.vectors().column(j);
            let big = col.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let first = col.iter().position(|x| x.abs() == big).unwrap();
            assert!(col[first] > 0.0, "column {j} = {col} not signed positive");
        }
    }

    #[test]
    fn reconstructs_orthonormal_sorted() {
        check_decomposition(&array![[2.0, 1.0], [1.0, 2.0]], 1e-12);
        check_decomposition(
            &array![[1.0, 2.0, 0.5], [2.0, -3.0, 1.5], [0.5, 1.5, 4.0]],
            1e-12,
        );
        check_decomposition(&array![[1e-6, 3e-7], [3e-7, 2e-6]], 1e-18);
        // A 6 × 6 matrix B Bᵀ + diag with pseudo-random entries.
        let b = Array2::from_shape_fn((6, 6), |(i, j)| ((i * 7 + j * 3) % 11) as f64 / 11.0 - 0.4);
        let a = b.dot(&b.t()) + Array2::from_diag(&ndarray::Array1::linspace(0.0, 1.0, 6));
        check_decomposition(&a, 1e-12);
    }

    #[test]
    fn diagonal_input_is_sorted_without_rotation() {
        let e =
            SymmetricEigen::new(array![[1.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 3.0]].view())
                .unwrap();
        assert_eq!(e.values(), &array![5.0, 3.0, 1.0]);
        assert_eq!(
            e.vectors(),
            &array![[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
        );
        assert_eq!(e.principal(), array![0.0, 1.0, 0.0]);
    }

    #[test]
    fn ties_keep_index_order() {
        // Equal eigenvalues: the identity is already diagonal and keeps its axes in order.
        let e = SymmetricEigen::new(Array2::<f64>::eye(3).view()).unwrap();
        assert_eq!(e.vectors(), &Array2::<f64>::eye(3));
        // Within the relative tie margin the lower index still comes first.
        let e = SymmetricEigen::new(array![[1.0, 0.0], [0.0, 1.0 + 1e-14]].view()).unwrap();
        assert_eq!(e.principal(), array![1.0, 0.0]);
        let e = SymmetricEigen::new(array![[1.0, 0.0], [0.0, 1.0 + 1e-9]].view()).unwrap();
        assert_eq!(e.principal(), array![0.0, 1.0]);
    }

    #[test]
    fn principal_sign_is_positive_on_largest_component() {
        // Principal axis (1, −2)/√5 up to sign: the larger component (−2) is made positive.
        let a = array![[1.0, -2.0], [-2.0, 4.0]];
        let v = SymmetricEigen::new(a.view()).unwrap().principal();
        let s = 5f64.sqrt();
        assert!(
            (v[0] + 1.0 / s).abs() < 1e-12 && (v[1] - 2.0 / s).abs() < 1e-12,
            "{v}"
        );
    }

    #[test]
    fn f32_decomposition() {
        let a = array![[4.0f32, 1.0], [1.0, 3.0]];
        let e = SymmetricEigen::new(a.view()).unwrap();
        let back = e
            .vectors()
            .dot(&Array2::from_diag(e.values()))
            .dot(&e.vectors().t());
        assert!(back.abs_diff_eq(&a, 1e-5));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            SymmetricEigen::new(Array2::<f64>::zeros((2, 3)).view()),
            Err(KalmanError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            SymmetricEigen::new(array![[1.0, f64::NAN], [f64::NAN, 1.0]].view()),
            Err(KalmanError::NonFinite { argument: "a" })
        ));
        assert!(matches!(
            SymmetricEigen::new(array![[1.0, 2.0], [0.0, 1.0]].view()),
            Err(KalmanError::NotSymmetric { matrix: "a", .. })
        ));
        let empty = SymmetricEigen::new(Array2::<f64>::zeros((0, 0)).view()).unwrap();
        assert_eq!(empty.principal().len(), 0);
    }
}
