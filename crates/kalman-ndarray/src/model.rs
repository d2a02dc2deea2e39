//! Linear-Gaussian model pieces: transitions, measurement models, and sequences of them.

use std::borrow::Cow;

use ndarray::{Array2, ArrayView1, ArrayView2};

use crate::KalmanError;
use crate::float::KalmanFloat;
use crate::linalg::Cholesky;
use crate::linalg::psd::semidefinite_factor;
use crate::validate::{
    check_diagonal_non_negative, check_finite, check_shape, check_square, check_symmetric,
    owned_symmetric,
};

/// A linear-Gaussian state transition
/// `x_t = F x_{t−1} + B u_t + w_t`, `w_t ~ N(0, Q)`.
///
/// The control matrix `B` is optional; without it the control dimension is zero. The process
/// noise `Q` must be a covariance matrix: symmetric positive semidefinite, singular or zero
/// allowed. The constructor checks all of it (shapes, finiteness, symmetry, a non-negative
/// diagonal, and semidefiniteness by a pivoted Cholesky factorisation, within the tolerance stated
/// at [`Transition::new`]), and keeps the factor `G` (`Q = G Gᵀ`) that the square-root filter
/// ([`UpdateForm::SquareRoot`](crate::UpdateForm::SquareRoot)) propagates.
///
/// ```
/// use kalman_ndarray::Transition;
/// use ndarray::array;
///
/// # fn main() -> Result<(), kalman_ndarray::KalmanError> {
/// // Constant velocity in one dimension, time step 1.
/// let t = Transition::new(array![[1.0, 1.0], [0.0, 1.0]], array![[0.25, 0.5], [0.5, 1.0]])?
///     .with_control(array![[0.5], [1.0]])?; // acceleration input
/// assert_eq!((t.state_dim(), t.control_dim()), (2, 1));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Transition<T> {
    f: Array2<T>,
    q: Array2<T>,
    q_factor: Array2<T>,
    b: Option<Array2<T>>,
}

impl<T: KalmanFloat> Transition<T> {
    /// Builds `x_t = F x_{t−1} + w_t`, `w_t ~ N(0, Q)`.
    ///
    /// Errors: `f` not square or `q` not of the same order ([`KalmanError::ShapeMismatch`]),
    /// non-finite entries ([`KalmanError::NonFinite`]), `q` not symmetric
    /// ([`KalmanError::NotSymmetric`]), with a negative diagonal entry
    /// ([`KalmanError::NegativeVariance`]) or not positive semidefinite
    /// ([`KalmanError::NotPositiveSemidefinite`]), each naming `"f"` or `"q"`. `q` is stored
    /// symmetrised.
    ///
    /// Semidefiniteness is decided by a pivoted Cholesky factorisation `Q ≈ G Gᵀ` that stops
    /// when the largest remaining pivot is at most `τ = √ε · max_i q_ii` (`√ε ≈ 1.5e-8` in
    /// `f64`, `3.5e-4` in `f32`): `Q` is accepted when every entry of what remains is at most `τ`
    /// in magnitude. Every positive semidefinite `Q` passes, whatever its rank; an indefinite one
    /// fails unless its negative eigenvalues are within rounding of zero (its smallest
    /// eigenvalue is at least `−n τ` when it passes).
    ///
    /// ```
    /// use kalman_ndarray::{KalmanError, Transition};
    /// use ndarray::array;
    ///
    /// // Non-negative diagonal, but eigenvalues 4 and −2: not a covariance.
    /// let err = Transition::new(array![[1.0, 0.0], [0.0, 1.0]], array![[1.0, 3.0], [3.0, 1.0]]);
    /// assert!(matches!(err, Err(KalmanError::NotPositiveSemidefinite { matrix: "q", .. })));
    /// // Singular (rank one) is fine.
    /// assert!(Transition::new(array![[1.0, 0.0], [0.0, 1.0]], array![[1.0, 1.0], [1.0, 1.0]]).is_ok());
    /// ```
    pub fn new(f: Array2<T>, q: Array2<T>) -> Result<Self, KalmanError> {
        let n = check_square("f", &f.view())?;
        check_finite("f", &f)?;
        check_shape("q", &q.view(), (n, n))?;
        check_finite("q", &q)?;
        check_symmetric("q", &q.view())?;
        check_diagonal_non_negative("q", &q.view())?;
        let q = owned_symmetric(q.view());
        let q_factor = semidefinite_factor(q.view(), "q")?;
        Ok(Self {
            f: standard(f),
            q,
            q_factor,
            b: None,
        })
    }

    /// The random walk `x_t = x_{t−1} + w_t`, `w_t ~ N(0, Q)`.
    ///
    /// Errors as for [`Transition::new`].
    pub fn random_walk(q: Array2<T>) -> Result<Self, KalmanError> {
        Self::new(Array2::eye(q.nrows()), q)
    }

    /// Adds the control matrix `B` (`state_dim × control_dim`), replacing any previous one.
    ///
    /// Errors: `b` with a row count other than the state dimension, or non-finite entries.
    pub fn with_control(mut self, b: Array2<T>) -> Result<Self, KalmanError> {
        check_shape("b", &b.view(), (self.state_dim(), b.ncols()))?;
        check_finite("b", &b)?;
        self.b = Some(standard(b));
        Ok(self)
    }

    /// The transition matrix `F`.
    pub fn f(&self) -> &Array2<T> {
        &self.f
    }

    /// The process-noise covariance `Q`.
    pub fn q(&self) -> &Array2<T> {
        &self.q
    }

    /// A square-root factor `G` of the process noise: `n × n` with `G Gᵀ = Q` up to the
    /// tolerance of [`Transition::new`]. Row `i` belongs to state component `i`; the columns
    /// beyond the numerical rank of `Q` are zero. (From a pivoted Cholesky factorisation, so it is
    /// not triangular in general.)
    pub fn q_factor(&self) -> &Array2<T> {
        &self.q_factor
    }

    /// The control matrix `B`, if any.
    pub fn b(&self) -> Option<&Array2<T>> {
        self.b.as_ref()
    }

    /// Dimension of the state.
    pub fn state_dim(&self) -> usize {
        self.f.nrows()
    }

    /// Dimension of the control input `u` (zero without a control matrix).
    pub fn control_dim(&self) -> usize {
        self.b.as_ref().map_or(0, |b| b.ncols())
    }

    /// Checks a control vector against `B`: finite and of length [`Self::control_dim`].
    pub(crate) fn check_control(&self, u: &ArrayView1<'_, T>) -> Result<(), KalmanError> {
        crate::validate::check_len("u", u, self.control_dim())?;
        check_finite("u", u)
    }
}

/// A linear-Gaussian measurement model `y = H x + v`, `v ~ N(0, R)`.
///
/// `R` must be symmetric positive definite; this is checked (by Cholesky factorisation, whose
/// factor is kept for the information-form update). For an exact (noise-free) scalar constraint
/// use [`Gaussian::scalar_update`](crate::Gaussian::scalar_update) with `r = 0`.
///
/// ```
/// use kalman_ndarray::Measurement;
/// use ndarray::array;
///
/// # fn main() -> Result<(), kalman_ndarray::KalmanError> {
/// // Observe the position (first component) of a [position, velocity] state.
/// let m = Measurement::new(array![[1.0, 0.0]], array![[0.5]])?;
/// assert_eq!((m.obs_dim(), m.state_dim()), (1, 2));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement<T> {
    h: Array2<T>,
    r: Array2<T>,
    r_chol: Cholesky<T>,
}

impl<T: KalmanFloat> Measurement<T> {
    /// Builds `y = H x + v`, `v ~ N(0, R)` with `H` of shape `obs_dim × state_dim`.
    ///
    /// Errors: `r` not `obs_dim × obs_dim` ([`KalmanError::ShapeMismatch`]), non-finite
    /// entries ([`KalmanError::NonFinite`]), `r` not symmetric ([`KalmanError::NotSymmetric`])
    /// or not positive definite ([`KalmanError::NotPositiveDefinite`]). `r` is stored
    /// symmetrised.
    pub fn new(h: Array2<T>, r: Array2<T>) -> Result<Self, KalmanError> {
        check_finite("h", &h)?;
        let m = h.nrows();
        check_shape("r", &r.view(), (m, m))?;
        check_finite("r", &r)?;
        check_symmetric("r", &r.view())?;
        let r = owned_symmetric(r.view());
        let r_chol = Cholesky::factor(r.view(), "r")?;
        Ok(Self {
            h: standard(h),
            r,
            r_chol,
        })
    }

    /// The observation matrix `H`.
    pub fn h(&self) -> &Array2<T> {
        &self.h
    }

    /// The measurement-noise covariance `R`.
    pub fn r(&self) -> &Array2<T> {
        &self.r
    }

    /// The Cholesky factorisation of `R`.
    pub fn r_cholesky(&self) -> &Cholesky<T> {
        &self.r_chol
    }

    /// Dimension of an observation.
    pub fn obs_dim(&self) -> usize {
        self.h.nrows()
    }

    /// Dimension of the state.
    pub fn state_dim(&self) -> usize {
        self.h.ncols()
    }

    /// Checks an observation: finite and of length [`Self::obs_dim`].
    pub(crate) fn check_observation(&self, y: &ArrayView1<'_, T>) -> Result<(), KalmanError> {
        crate::validate::check_len("y", y, self.obs_dim())?;
        check_finite("y", y)
    }

    pub(crate) fn h_view(&self) -> ArrayView2<'_, T> {
        self.h.view()
    }
}

/// One step of a linear-Gaussian state-space model: the [`Transition`] into the step's state
/// and the [`Measurement`] of it,
///
/// ```text
/// x_t = F_t x_{t−1} + B_t u_t + w_t,   w_t ~ N(0, Q_t)
/// y_t = H_t x_t + v_t,                 v_t ~ N(0, R_t)
/// ```
///
/// A single `LinearModel` is a time-invariant [`StateSpaceModel`]; a slice or `Vec` of them is a
/// time-varying one.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel<T> {
    transition: Transition<T>,
    measurement: Measurement<T>,
}

impl<T: KalmanFloat> LinearModel<T> {
    /// Pairs a transition with a measurement model.
    ///
    /// Errors: the measurement's state dimension (columns of `H`) differs from the transition's
    /// ([`KalmanError::ShapeMismatch`] naming `"h"`).
    pub fn new(
        transition: Transition<T>,
        measurement: Measurement<T>,
    ) -> Result<Self, KalmanError> {
        let n = transition.state_dim();
        check_shape("h", &measurement.h_view(), (measurement.obs_dim(), n))?;
        Ok(Self {
            transition,
            measurement,
        })
    }

    /// The transition part.
    pub fn transition(&self) -> &Transition<T> {
        &self.transition
    }

    /// The measurement part.
    pub fn measurement(&self) -> &Measurement<T> {
        &self.measurement
    }

    /// Dimension of the state.
    pub fn state_dim(&self) -> usize {
        self.transition.state_dim()
    }

    /// Splits the model into its parts.
    pub fn into_parts(self) -> (Transition<T>, Measurement<T>) {
        (self.transition, self.measurement)
    }
}

/// A sequence of [`LinearModel`]s indexed by step, as consumed by [`filter`](crate::filter) and
/// [`rts_smooth`](crate::rts_smooth).
///
/// Implemented for a single [`LinearModel`] (time-invariant: the same model at every step) and
/// for slices and vectors of them (time-varying: one model per step), which all lend their stored
/// models ([`Cow::Borrowed`]). Implement it yourself to compute each step's model on the fly from
/// a compact description and hand it back owned ([`Cow::Owned`]), e.g. a constant-velocity model
/// whose time step varies between reports:
///
/// ```
/// use std::borrow::Cow;
///
/// use kalman_ndarray::{
///     filter, Gaussian, KalmanError, LinearModel, Measurement, StateSpaceModel, Transition,
///     UpdateForm,
/// };
/// use ndarray::array;
///
/// /// Position reports at irregular times, of a target with white-noise acceleration.
/// struct IrregularTimes {
///     times: Vec<f64>,
///     accel_density: f64,
///     sensor_variance: f64,
/// }
///
/// impl StateSpaceModel<f64> for IrregularTimes {
///     fn step(&self, t: usize) -> Result<Cow<'_, LinearModel<f64>>, KalmanError> {
///         let Some(&now) = self.times.get(t) else {
///             return Err(KalmanError::past_the_end(t, self.times.len()));
///         };
///         let dt = if t == 0 { now } else { now - self.times[t - 1] };
///         let (a, b, c) = (dt.powi(3) / 3.0, dt.powi(2) / 2.0, dt);
///         let transition = Transition::new(
///             array![[1.0, dt], [0.0, 1.0]],
///             array![[a, b], [b, c]] * self.accel_density,
///         )?;
///         let measurement = Measurement::new(array![[1.0, 0.0]], array![[self.sensor_variance]])?;
///         Ok(Cow::Owned(LinearModel::new(transition, measurement)?))
///     }
///
///     fn num_steps(&self) -> Option<usize> {
///         Some(self.times.len())
///     }
/// }
///
/// fn main() -> Result<(), KalmanError> {
///     let model = IrregularTimes {
///         times: vec![0.5, 1.0, 2.5, 2.75, 4.0],
///         accel_density: 0.1,
///         sensor_variance: 0.25,
///     };
///     let reports: Vec<_> = [0.5, 1.1, 2.4, 2.8, 4.1].iter().map(|&y| Some(array![y])).collect();
///     let prior = Gaussian::from_diagonal(array![0.0, 1.0], array![1.0, 1.0])?;
///     let out = filter(&prior, &model, &reports, UpdateForm::Joseph)?;
///     // A longer gap makes the prediction less certain.
///     assert!(out.predicted[2].cov()[[0, 0]] > out.predicted[3].cov()[[0, 0]]);
///     Ok(())
/// }
/// ```
pub trait StateSpaceModel<T: KalmanFloat> {
    /// The model of step `t` (zero-based): borrowed when it is stored, owned when it is computed
    /// for the step.
    ///
    /// Errors: `t` beyond the end of the sequence ([`KalmanError::ShapeMismatch`] naming
    /// `"models"`, as [`KalmanError::past_the_end`] builds it), or any error of building the step's model.
    /// [`filter`](crate::filter) and [`rts_smooth`](crate::rts_smooth) report it wrapped in
    /// [`KalmanError::AtStep`].
    fn step(&self, t: usize) -> Result<Cow<'_, LinearModel<T>>, KalmanError>;

    /// The number of steps covered, or `None` when any number is (time-invariant models).
    fn num_steps(&self) -> Option<usize>;
}

impl<T: KalmanFloat> StateSpaceModel<T> for LinearModel<T> {
    fn step(&self, _t: usize) -> Result<Cow<'_, LinearModel<T>>, KalmanError> {
        Ok(Cow::Borrowed(self))
    }

    fn num_steps(&self) -> Option<usize> {
        None
    }
}

impl<T: KalmanFloat> StateSpaceModel<T> for [LinearModel<T>] {
    fn step(&self, t: usize) -> Result<Cow<'_, LinearModel<T>>, KalmanError> {
        self.get(t)
            .map(Cow::Borrowed)
            .ok_or_else(|| KalmanError::past_the_end(t, self.len()))
    }

    fn num_steps(&self) -> Option<usize> {
        Some(self.len())
    }
}

impl<T: KalmanFloat> StateSpaceModel<T> for Vec<LinearModel<T>> {
    fn step(&self, t: usize) -> Result<Cow<'_, LinearModel<T>>, KalmanError> {
        self.as_slice().step(t)
    }

    fn num_steps(&self) -> Option<usize> {
        Some(self.len())
    }
}

impl<T: KalmanFloat, M: StateSpaceModel<T> + ?Sized> StateSpaceModel<T> for &M {
    fn step(&self, t: usize) -> Result<Cow<'_, LinearModel<T>>, KalmanError> {
        (**self).step(t)
    }

    fn num_steps(&self) -> Option<usize> {
        (**self).num_steps()
    }
}

/// `a` in standard (row-major) layout, which the in-place kernels read as a slice.
fn standard<T: KalmanFloat>(a: Array2<T>) -> Array2<T> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}
