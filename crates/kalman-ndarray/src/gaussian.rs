//! The Gaussian belief and the predict / update steps acting on it.

use ndarray::{Array1, Array2, ArrayView1};

use crate::KalmanError;
use crate::filter::{core_belief, flat};
use crate::float::{KalmanFloat, lit};
use crate::kernel::LN_2PI;
use crate::linalg::Cholesky;
use crate::model::{Measurement, Transition};
use crate::step::{Core, Prepared};
use crate::validate::{
    check_finite, check_finite_scalar, check_len, check_non_negative, check_shape, check_symmetric,
    owned_symmetric, symmetrize,
};

/// A multivariate normal distribution `N(μ, Σ)`: the belief about the state.
///
/// Constructed through validating constructors ([`Gaussian::new`], [`Gaussian::isotropic`]),
/// a `Gaussian` always has a finite mean, and a covariance that is exactly symmetric, of matching
/// order, and positive definite when constructed. Every operation re-symmetrises the covariance;
/// positive definiteness is preserved by the updates in exact arithmetic, and the Joseph form
/// ([`UpdateForm::Joseph`]) keeps it robustly in floating point.
///
/// ```
/// use kalman_ndarray::Gaussian;
/// use ndarray::array;
///
/// # fn main() -> Result<(), kalman_ndarray::KalmanError> {
/// // Prior N(0, 4); observe y = 2 of the state with noise variance 1.
/// let mut belief = Gaussian::<f64>::isotropic(1, 4.0)?;
/// let out = belief.scalar_update(array![1.0].view(), 1.0, 2.0)?;
/// // Gain 4/5: mean 1.6, variance 4 − 0.8·4 = 0.8.
/// assert!((belief.mean()[0] - 1.6).abs() < 1e-12);
/// assert!((belief.cov()[[0, 0]] - 0.8).abs() < 1e-12);
/// assert!((out.innovation_variance - 5.0).abs() < 1e-12);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Gaussian<T> {
    mean: Array1<T>,
    cov: Array2<T>,
}

/// The outcome of a scalar update ([`Gaussian::scalar_update`]).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ScalarUpdate<T> {
    /// `y − hᵀμ`, with the mean before the update.
    pub innovation: T,
    /// `hᵀΣh + r`, with the covariance before the update.
    pub innovation_variance: T,
    /// `ln N(y; hᵀμ, hᵀΣh + r)`: the log predictive density of the observation.
    pub log_likelihood: T,
}

/// The outcome of a vector update ([`Gaussian::update`]).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct VectorUpdate<T> {
    /// `y − Hμ`, with the mean before the update.
    pub innovation: Array1<T>,
    /// `S = HΣHᵀ + R`, with the covariance before the update.
    pub innovation_cov: Array2<T>,
    /// `ln N(y; Hμ, S)`: the log predictive density of the observation.
    pub log_likelihood: T,
}

/// How the covariance is updated after a vector observation.
///
/// All forms give the same result in exact arithmetic with the optimal (Kalman) gain `K`; they
/// differ in cost and in how rounding can hurt them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum UpdateForm {
    /// `Σ⁺ = (I − KH) Σ (I − KH)ᵀ + K R Kᵀ`: a sum of a congruence and a positive semidefinite
    /// term, so the result stays symmetric positive semidefinite even when rounding perturbs
    /// `K`. About twice the cost of the standard form; the default.
    #[default]
    Joseph,
    /// `Σ⁺ = Σ − K H Σ` (evaluated as `Σ − Zᵀ D⁻¹ Z` with `Z = L⁻¹ H Σ`, `S = L D Lᵀ`):
    /// cheaper, but rounding can make the result indefinite when the observation is much more
    /// precise than the prior.
    Standard,
    /// Square-root (Cholesky-factor) form: the filter propagates a triangular `S` with
    /// `Σ = S Sᵀ` by orthogonal transformations (Householder QR of the pre-arrays
    /// `[(F S)ᵀ; Gᵀ]` for the prediction, `Q = G Gᵀ`, and `[[L_Rᵀ, 0], [(H S)ᵀ, Sᵀ]]` for the
    /// update), so the covariance `S Sᵀ` is positive semidefinite by construction and the
    /// factor's condition number is the square root of the covariance's. For long runs and
    /// ill-conditioned problems; several times the cost of the standard form (QR of the pre-arrays
    /// instead of products; see the benchmarks). In
    /// [`filter`](crate::filter) and [`KalmanFilter`](crate::KalmanFilter) the factor is carried
    /// from step to step; a one-off [`Gaussian::update`] factorises `Σ` first.
    SquareRoot,
}

impl<T: KalmanFloat> Gaussian<T> {
    /// Builds `N(mean, cov)`.
    ///
    /// Errors: `cov` not `n × n` for `n = mean.len()` ([`KalmanError::ShapeMismatch`]), a
    /// non-finite entry ([`KalmanError::NonFinite`] naming `"mean"` or `"cov"`), `cov` not
    /// symmetric within [`KalmanFloat::symmetry_tolerance`] ([`KalmanError::NotSymmetric`]) or not
    /// positive definite ([`KalmanError::NotPositiveDefinite`], by Cholesky factorisation).
    /// The covariance is stored symmetrised.
    pub fn new(mean: Array1<T>, cov: Array2<T>) -> Result<Self, KalmanError> {
        let n = mean.len();
        check_finite("mean", &mean)?;
        check_shape("cov", &cov.view(), (n, n))?;
        check_finite("cov", &cov)?;
        check_symmetric("cov", &cov.view())?;
        let cov = owned_symmetric(cov.view());
        Cholesky::factor(cov.view(), "cov")?;
        Ok(Self { mean, cov })
    }

    /// `N(0, variance · I)` in `dim` dimensions.
    ///
    /// Errors: `variance` not finite ([`KalmanError::NonFinite`]) or not positive
    /// ([`KalmanError::NotPositiveDefinite`]), naming `"variance"`.
    pub fn isotropic(dim: usize, variance: T) -> Result<Self, KalmanError> {
        check_finite_scalar("variance", variance)?;
        if variance <= T::zero() {
            return Err(KalmanError::NotPositiveDefinite { matrix: "variance" });
        }
        Ok(Self {
            mean: Array1::zeros(dim),
            cov: Array2::eye(dim) * variance,
        })
    }

    /// `N(mean, diag(variances))`.
    ///
    /// Errors: lengths differ ([`KalmanError::ShapeMismatch`] naming `"variances"`), a
    /// non-finite entry, or a variance that is not positive ([`KalmanError::NotPositiveDefinite`]
    /// naming `"variances"`).
    pub fn from_diagonal(mean: Array1<T>, variances: Array1<T>) -> Result<Self, KalmanError> {
        check_finite("mean", &mean)?;
        check_len("variances", &variances.view(), mean.len())?;
        check_finite("variances", &variances)?;
        if variances.iter().any(|&v| v <= T::zero()) {
            return Err(KalmanError::NotPositiveDefinite {
                matrix: "variances",
            });
        }
        Ok(Self {
            mean,
            cov: Array2::from_diag(&variances),
        })
    }

    /// Internal constructor for results the crate computed: symmetrises, does not validate.
    pub(crate) fn from_parts_unchecked(mean: Array1<T>, cov: Array2<T>) -> Self {
        let mut cov = if cov.is_standard_layout() {
            cov
        } else {
            cov.as_standard_layout().into_owned()
        };
        symmetrize(&mut cov);
        Self { mean, cov }
    }

    /// The mean `μ`.
    pub fn mean(&self) -> &Array1<T> {
        &self.mean
    }

    /// The covariance `Σ` (exactly symmetric).
    pub fn cov(&self) -> &Array2<T> {
        &self.cov
    }

    /// Dimension of the distribution.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Splits into `(mean, cov)`.
    pub fn into_parts(self) -> (Array1<T>, Array2<T>) {
        (self.mean, self.cov)
    }

    /// `ln N(x; μ, Σ)`.
    ///
    /// Errors: `x` of the wrong length or not finite (naming `"x"`); the covariance is not
    /// positive definite (it can lose definiteness numerically after many standard-form
    /// updates) ([`KalmanError::NotPositiveDefinite`] naming `"cov"`).
    pub fn log_density(&self, x: ArrayView1<'_, T>) -> Result<T, KalmanError> {
        check_len("x", &x, self.dim())?;
        check_finite("x", &x)?;
        let chol = Cholesky::factor(self.cov.view(), "cov")?;
        let diff = &x - &self.mean;
        Ok(gaussian_log_density(&chol, diff.view()))
    }

    /// Time update (prediction) through `transition` without control:
    /// `μ ← Fμ`, `Σ ← FΣFᵀ + Q`.
    ///
    /// Errors: the transition's state dimension differs from [`Self::dim`]
    /// ([`KalmanError::ShapeMismatch`] naming `"f"`).
    pub fn predict(&mut self, transition: &Transition<T>) -> Result<(), KalmanError> {
        self.predict_impl(transition, None)
    }

    /// Time update with a control input: `μ ← Fμ + Bu`, `Σ ← FΣFᵀ + Q`.
    ///
    /// A transition without a control matrix has control dimension zero, so `u` must then be
    /// empty.
    ///
    /// Errors: dimension mismatch (naming `"f"` or `"u"`) or non-finite `u`.
    pub fn predict_with_control(
        &mut self,
        transition: &Transition<T>,
        u: ArrayView1<'_, T>,
    ) -> Result<(), KalmanError> {
        self.predict_impl(transition, Some(u))
    }

    pub(crate) fn predict_impl(
        &mut self,
        transition: &Transition<T>,
        u: Option<ArrayView1<'_, T>>,
    ) -> Result<(), KalmanError> {
        let n = self.dim();
        check_shape("f", &transition.f().view(), (n, n))?;
        if let Some(u) = &u {
            transition.check_control(u)?;
        }
        let u: Option<Vec<T>> = u.map(|u| u.iter().copied().collect());
        let (mean, cov) = flat(self);
        let mut core = Core::new(&mean, &cov, UpdateForm::Standard)?;
        let mut prep = Prepared::default();
        prep.load_transition(transition);
        core.predict(&prep, u.as_deref());
        *self = core_belief(&core);
        Ok(())
    }

    /// Measurement update with the vector observation `y` of `measurement`
    /// (`y = Hx + v`, `v ~ N(0, R)`), in the given covariance form.
    ///
    /// With `S = HΣHᵀ + R` (factorised as `L D Lᵀ`, the square-root-free Cholesky
    /// factorisation) and the gain `K = ΣHᵀS⁻¹` (obtained by triangular solves, never an
    /// inverse): `μ ← μ + K(y − Hμ)` and `Σ` per [`UpdateForm`],
    /// exactly symmetric. The same arithmetic as [`KalmanFilter::update`](crate::KalmanFilter::update),
    /// so the two agree bitwise.
    ///
    /// Errors: dimension mismatch (naming `"h"` or `"y"`), non-finite `y` (or an innovation
    /// `y − Hμ` that overflows, naming `"innovation"`), or `S` not numerically positive definite
    /// ([`KalmanError::NotPositiveDefinite`] naming `"innovation covariance"`); in
    /// [`UpdateForm::SquareRoot`], a covariance that is not numerically positive definite
    /// (naming `"cov"`). On error `self` is unchanged.
    pub fn update(
        &mut self,
        measurement: &Measurement<T>,
        y: ArrayView1<'_, T>,
        form: UpdateForm,
    ) -> Result<VectorUpdate<T>, KalmanError> {
        let n = self.dim();
        let m = measurement.obs_dim();
        check_shape("h", &measurement.h().view(), (m, n))?;
        measurement.check_observation(&y)?;
        let y: Vec<T> = y.iter().copied().collect();
        let (mean, cov) = flat(self);
        let mut core = Core::new(&mean, &cov, form)?;
        let mut prep = Prepared::default();
        prep.load_measurement(measurement);
        let log_likelihood = core.update_with_likelihood(&prep, &y)?;
        let (e, s) = core.last_innovation(m);
        let innovation = Array1::from(e.to_vec());
        let innovation_cov =
            Array2::from_shape_vec((m, m), s.to_vec()).unwrap_or_else(|_| Array2::zeros((m, m)));
        *self = core_belief(&core);
        Ok(VectorUpdate {
            innovation,
            innovation_cov,
            log_likelihood,
        })
    }

    /// Rank-one update with the scalar observation `y = hᵀx + v`, `v ~ N(0, r)`, in place.
    ///
    /// With `g = Σh`, innovation `e = y − hᵀμ` and innovation variance `s = hᵀg + r`:
    /// `μ ← μ + g e / s` and `Σ ← Σ − g gᵀ / s`. The downdate is applied as `Σ − w wᵀ` with
    /// `w = g / √s`, which keeps `Σ` exactly symmetric. Cost `O(k²)` for dimension `k`, and the
    /// only allocation is the vector `g`. Sequences of scalar updates give the same posterior as
    /// one vector update with diagonal `R`, and their log-likelihoods add up to its
    /// log-likelihood.
    ///
    /// `r = 0` (an exact observation) is allowed as long as `hᵀΣh > 0`. Since this is the
    /// standard (not Joseph) form, long runs of very precise observations can erode positive
    /// definiteness in floating point; [`Gaussian::add_diagonal`] restores a margin.
    ///
    /// Errors: `h` of the wrong length ([`KalmanError::ShapeMismatch`]), non-finite `h`, `r` or
    /// `y` ([`KalmanError::NonFinite`]; also `"innovation"` if `y − hᵀμ` overflows), `r < 0`
    /// ([`KalmanError::NegativeVariance`]), or `s ≤ 0` or overflowing
    /// ([`KalmanError::NotPositiveDefinite`] naming `"innovation variance"`). On error `self` is
    /// unchanged.
    pub fn scalar_update(
        &mut self,
        h: ArrayView1<'_, T>,
        r: T,
        y: T,
    ) -> Result<ScalarUpdate<T>, KalmanError> {
        check_len("h", &h, self.dim())?;
        check_finite("h", &h)?;
        check_finite_scalar("r", r)?;
        check_non_negative("r", r)?;
        check_finite_scalar("y", y)?;

        // g = Σh, one inner product per contiguous row.
        let g: Array1<T> = self.cov.rows().into_iter().map(|row| row.dot(&h)).collect();
        let s = h.dot(&g) + r;
        if !(s > T::zero() && s.is_finite()) {
            return Err(KalmanError::NotPositiveDefinite {
                matrix: "innovation variance",
            });
        }
        let innovation = y - h.dot(&self.mean);
        // Finite inputs can still overflow; never write non-finite values into the belief.
        check_finite_scalar("innovation", innovation)?;

        let inv_sqrt_s = s.sqrt().recip();
        // μ += g e / s.
        self.mean.scaled_add(innovation / s, &g);
        // Σ −= w wᵀ with w = g/√s; entry (i, j) and (j, i) get the same product w_i·w_j.
        let w = g * inv_sqrt_s;
        rank_one_update(&mut self.cov, -T::one(), &w);

        let log_likelihood =
            lit::<T>(-0.5) * (lit::<T>(LN_2PI) + s.ln() + innovation * innovation / s);
        Ok(ScalarUpdate {
            innovation,
            innovation_variance: s,
            log_likelihood,
        })
    }

    /// `Σ ← Σ + jitter · I`, in place.
    ///
    /// Adds isotropic process noise, or restores a margin of positive definiteness after many
    /// rank-one downdates. A non-negative jitter keeps `Σ` positive definite, so no factorisation
    /// is needed.
    ///
    /// Errors: `jitter` not finite ([`KalmanError::NonFinite`]) or negative
    /// ([`KalmanError::NegativeVariance`]), naming `"jitter"`.
    pub fn add_diagonal(&mut self, jitter: T) -> Result<(), KalmanError> {
        check_finite_scalar("jitter", jitter)?;
        check_non_negative("jitter", jitter)?;
        self.cov.diag_mut().mapv_inplace(|d| d + jitter);
        Ok(())
    }
}

/// `A ← A + α w wᵀ` in place, for `α = ±1`.
///
/// Entry `(i, j)` receives `(α w_i) w_j`; with `α = ±1` that is exactly `±(w_i w_j)`, the same
/// value entry `(j, i)` receives, so a symmetric `A` stays exactly symmetric. Runs over
/// contiguous rows when `A` is in standard layout.
pub(crate) fn rank_one_update<T: KalmanFloat>(a: &mut Array2<T>, alpha: T, w: &Array1<T>) {
    debug_assert!(alpha == T::one() || alpha == -T::one());
    let n = w.len();
    match (a.as_slice_mut(), w.as_slice()) {
        (Some(data), Some(w)) => {
            for (row, &wi) in data.chunks_exact_mut(n).zip(w) {
                let wi = alpha * wi;
                for (c, &wj) in row.iter_mut().zip(w) {
                    *c += wi * wj;
                }
            }
        }
        _ => {
            for (mut row, &wi) in a.rows_mut().into_iter().zip(w.iter()) {
                let wi = alpha * wi;
                row.zip_mut_with(w, |c, &wj| *c += wi * wj);
            }
        }
    }
}

/// `ln N(d; 0, A)` from the Cholesky factorisation of `A`:
/// `−½ (k ln 2π + ln det A + ‖L⁻¹ d‖²)`.
pub(crate) fn gaussian_log_density<T: KalmanFloat>(chol: &Cholesky<T>, d: ArrayView1<'_, T>) -> T {
    let z = chol.forward_vec(d);
    let k = lit::<T>(chol.dim() as f64);
    lit::<T>(-0.5) * (k * lit::<T>(LN_2PI) + chol.log_det() + z.dot(&z))
}

#[cfg(test)]
mod tests;
