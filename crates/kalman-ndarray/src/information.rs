//! The information (canonical) form of a Gaussian.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use crate::KalmanError;
use crate::float::KalmanFloat;
use crate::gaussian::Gaussian;
use crate::linalg::Cholesky;
use crate::model::Measurement;
use crate::validate::{
    check_finite, check_finite_scalar, check_len, check_shape, check_symmetric, owned_symmetric,
    symmetrize,
};

/// A Gaussian in information form: precision `Λ = Σ⁻¹` and information vector `η = Σ⁻¹μ`.
///
/// Measurement updates are additive in this form — `Λ ← Λ + HᵀR⁻¹H`, `η ← η + HᵀR⁻¹y` — so
/// absorbing many observations costs one `O(n²)` (scalar) or `O(n²m)` (block) accumulation each
/// and a single `O(n³)` conversion back to moments at the end, instead of an `O(n²)`-per-update
/// chain of covariance updates that each need the previous one. It is also the natural form for
/// a vague prior (small precision). Prediction is not offered in this form; convert with
/// [`InformationGaussian::to_gaussian`] first.
///
/// ```
/// use kalman_ndarray::{Gaussian, InformationGaussian};
/// use ndarray::array;
///
/// # fn main() -> Result<(), kalman_ndarray::KalmanError> {
/// let prior = Gaussian::<f64>::isotropic(2, 1.0)?;
/// let mut info = InformationGaussian::from_gaussian(&prior)?;
/// // Two observations of the first coordinate, each with unit noise variance.
/// info.scalar_update(array![1.0, 0.0].view(), 1.0, 3.0)?;
/// info.scalar_update(array![1.0, 0.0].view(), 1.0, 3.0)?;
/// let post = info.to_gaussian()?;
/// // Precision 1 + 2 = 3 on the first coordinate; mean (0 + 3 + 3) / 3 = 2.
/// assert!((post.cov()[[0, 0]] - 1.0 / 3.0).abs() < 1e-12);
/// assert!((post.mean()[0] - 2.0).abs() < 1e-12);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct InformationGaussian<T> {
    information: Array1<T>,
    precision: Array2<T>,
}

impl<T: KalmanFloat> InformationGaussian<T> {
    /// Builds the information form from `η` and `Λ`.
    ///
    /// Errors: `precision` not `n × n` for `n = information.len()`, a non-finite entry, or
    /// `precision` not symmetric or not positive definite, each naming the argument.
    pub fn new(information: Array1<T>, precision: Array2<T>) -> Result<Self, KalmanError> {
        let n = information.len();
        check_finite("information", &information)?;
        check_shape("precision", &precision.view(), (n, n))?;
        check_finite("precision", &precision)?;
        check_symmetric("precision", &precision.view())?;
        let precision = owned_symmetric(precision.view());
        Cholesky::factor(precision.view(), "precision")?;
        Ok(Self {
            information,
            precision,
        })
    }

    /// Converts from moment form: `Λ = Σ⁻¹` (by Cholesky solves against the identity),
    /// `η = Σ⁻¹μ` (by a Cholesky solve).
    ///
    /// Errors: the covariance is not numerically positive definite
    /// ([`KalmanError::NotPositiveDefinite`] naming `"cov"`).
    pub fn from_gaussian(gaussian: &Gaussian<T>) -> Result<Self, KalmanError> {
        let chol = Cholesky::factor(gaussian.cov().view(), "cov")?;
        Ok(Self {
            information: chol.solve_vec_unchecked(gaussian.mean().view()),
            precision: chol.inverse(),
        })
    }

    /// Converts to moment form: `Σ = Λ⁻¹`, `μ = Λ⁻¹η`.
    ///
    /// Errors: the precision is not numerically positive definite
    /// ([`KalmanError::NotPositiveDefinite`] naming `"precision"`).
    pub fn to_gaussian(&self) -> Result<Gaussian<T>, KalmanError> {
        let chol = Cholesky::factor(self.precision.view(), "precision")?;
        let mean = chol.solve_vec_unchecked(self.information.view());
        Ok(Gaussian::from_parts_unchecked(mean, chol.inverse()))
    }

    /// The mean `μ = Λ⁻¹η`, by a Cholesky solve (cheaper than [`Self::to_gaussian`]).
    ///
    /// Errors as for [`Self::to_gaussian`].
    pub fn mean(&self) -> Result<Array1<T>, KalmanError> {
        let chol = Cholesky::factor(self.precision.view(), "precision")?;
        Ok(chol.solve_vec_unchecked(self.information.view()))
    }

    /// The information vector `η`.
    pub fn information(&self) -> &Array1<T> {
        &self.information
    }

    /// The precision matrix `Λ` (exactly symmetric).
    pub fn precision(&self) -> &Array2<T> {
        &self.precision
    }

    /// Dimension of the distribution.
    pub fn dim(&self) -> usize {
        self.information.len()
    }

    /// Splits into `(information, precision)`.
    pub fn into_parts(self) -> (Array1<T>, Array2<T>) {
        (self.information, self.precision)
    }

    /// Absorbs the vector observation `y` of `measurement`: with `R = L_R L_Rᵀ`,
    /// `W = L_R⁻¹H` and `z = L_R⁻¹y`, `Λ ← Λ + WᵀW` and `η ← η + Wᵀz`.
    ///
    /// Errors: dimension mismatch (naming `"h"` or `"y"`) or non-finite `y`. On error `self` is
    /// unchanged.
    pub fn update(
        &mut self,
        measurement: &Measurement<T>,
        y: ArrayView1<'_, T>,
    ) -> Result<(), KalmanError> {
        let n = self.dim();
        let h = measurement.h();
        check_shape("h", &h.view(), (measurement.obs_dim(), n))?;
        measurement.check_observation(&y)?;
        let chol = measurement.r_cholesky();
        let w = chol.forward_mat(h.view());
        let z = chol.forward_vec(y);
        self.precision += &w.t().dot(&w);
        symmetrize(&mut self.precision);
        self.information += &w.t().dot(&z);
        Ok(())
    }

    /// Absorbs the scalar observation `y = hᵀx + v`, `v ~ N(0, r)`:
    /// `Λ ← Λ + h hᵀ / r`, `η ← η + h y / r`. In place, `O(n²)`.
    ///
    /// Errors: `h` of the wrong length, non-finite `h`, `r` or `y`, or `r ≤ 0`
    /// ([`KalmanError::NotPositiveDefinite`] naming `"r"`: an exact observation has no
    /// information form).
    pub fn scalar_update(&mut self, h: ArrayView1<'_, T>, r: T, y: T) -> Result<(), KalmanError> {
        check_len("h", &h, self.dim())?;
        check_finite("h", &h)?;
        check_finite_scalar("r", r)?;
        check_finite_scalar("y", y)?;
        if r <= T::zero() {
            return Err(KalmanError::NotPositiveDefinite { matrix: "r" });
        }
        // w = h/√r; Λ += w wᵀ (bitwise symmetric), η += w · y/√r.
        let inv_sqrt_r = r.sqrt().recip();
        let w = &h * inv_sqrt_r;
        crate::gaussian::rank_one_update(&mut self.precision, T::one(), &w);
        self.information.scaled_add(y * inv_sqrt_r, &w);
        Ok(())
    }

    /// Absorbs `m` independent scalar observations at once: `y_i = h_iᵀx + v_i`,
    /// `v_i ~ N(0, r_i)`, with the `h_i` the rows of `h` (`m × n`). Equivalent to `m` calls of
    /// [`Self::scalar_update`], computed as one product `Λ += Hᵀ diag(1/r) H`.
    ///
    /// Errors: shape mismatch (naming `"h"`, `"r"` or `"y"`), non-finite input, or an `r_i ≤ 0`
    /// ([`KalmanError::NotPositiveDefinite`] naming `"r"`).
    pub fn update_independent(
        &mut self,
        h: ArrayView2<'_, T>,
        r: ArrayView1<'_, T>,
        y: ArrayView1<'_, T>,
    ) -> Result<(), KalmanError> {
        let m = h.nrows();
        check_shape("h", &h, (m, self.dim()))?;
        check_finite("h", &h)?;
        check_len("r", &r, m)?;
        check_finite("r", &r)?;
        check_len("y", &y, m)?;
        check_finite("y", &y)?;
        if r.iter().any(|&ri| ri <= T::zero()) {
            return Err(KalmanError::NotPositiveDefinite { matrix: "r" });
        }
        let inv_sqrt_r = r.mapv(|ri| ri.sqrt().recip());
        // W = diag(1/√r) H, z = y/√r.
        let w = &h * &inv_sqrt_r.view().insert_axis(ndarray::Axis(1));
        let z = &y * &inv_sqrt_r;
        self.precision += &w.t().dot(&w);
        symmetrize(&mut self.precision);
        self.information += &w.t().dot(&z);
        Ok(())
    }
}

impl<T: KalmanFloat> TryFrom<&Gaussian<T>> for InformationGaussian<T> {
    type Error = KalmanError;

    fn try_from(gaussian: &Gaussian<T>) -> Result<Self, KalmanError> {
        Self::from_gaussian(gaussian)
    }
}

impl<T: KalmanFloat> TryFrom<&InformationGaussian<T>> for Gaussian<T> {
    type Error = KalmanError;

    fn try_from(info: &InformationGaussian<T>) -> Result<Self, KalmanError> {
        info.to_gaussian()
    }
}
