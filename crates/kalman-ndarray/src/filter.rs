//! [`KalmanFilter`]: a filter that owns its model and its workspace and steps in place.

use ndarray::{Array1, Array2};

use crate::KalmanError;
use crate::float::KalmanFloat;
use crate::gaussian::{Gaussian, UpdateForm};
use crate::model::LinearModel;
use crate::step::{Core, Prepared};

/// A Kalman filter that steps in place: the fast path for long runs and small states.
///
/// It owns the belief (mean and covariance in flat row-major storage), the model, the transposes
/// of the model's matrices and every temporary a step needs, all allocated once, so
/// [`predict`](Self::predict), [`update`](Self::update) and [`step`](Self::step) allocate
/// nothing. The model is checked against the belief once, when it is set; a step checks only
/// the observation (length, finiteness) and the numerical conditions of the update. State
/// dimensions up to 8 run copies of the step compiled for that dimension (unrolled loops); from
/// [`BLOCKED_MIN_DIM`](crate::BLOCKED_MIN_DIM) up the products go through blocked matrix
/// multiplication.
///
/// It runs exactly the arithmetic of [`Gaussian::predict`], [`Gaussian::update`] and
/// [`filter`](crate::filter), so its results are bitwise the same as theirs; they allocate
/// their outputs, it does not.
///
/// Each update computes the log-likelihood `ln N(y; Hμ, S)` of its observation by default. A
/// filter built with [`track_log_likelihood(false)`](Self::track_log_likelihood) skips that
/// work (the log-determinant of `S` and the quadratic form `eᵀS⁻¹e`) and its
/// [`update`](Self::update) and [`step`](Self::step) return `None` for it; the mean and
/// covariance are bitwise the same either way.
///
/// ```
/// use kalman_ndarray::{Gaussian, KalmanFilter, LinearModel, Measurement, Transition, UpdateForm};
/// use ndarray::array;
///
/// fn main() -> Result<(), kalman_ndarray::KalmanError> {
///     let model = LinearModel::new(
///         Transition::new(array![[1.0, 1.0], [0.0, 1.0]], array![[0.25, 0.5], [0.5, 1.0]] * 0.01)?,
///         Measurement::new(array![[1.0, 0.0]], array![[0.25]])?,
///     )?;
///     let prior = Gaussian::<f64>::from_diagonal(array![0.0, 0.0], array![10.0, 10.0])?;
///     let mut kf = KalmanFilter::new(model, &prior, UpdateForm::Standard)?;
///     let mut log_likelihood = 0.0;
///     for y in [1.0, 2.1, 2.9, 4.2, 5.0] {
///         kf.predict();
///         // `Some` while the filter tracks the log-likelihood (the default).
///         log_likelihood += kf.update(&[y])?.unwrap_or(0.0);
///     }
///     assert!((kf.mean()[1] - 1.0).abs() < 0.2); // velocity
///     assert!(log_likelihood.is_finite());
///     let belief: Gaussian<f64> = kf.belief(); // an owned snapshot
///     assert_eq!(belief.mean()[0], kf.mean()[0]);
///
///     // Without the log-likelihood: the same belief, a little less work per step.
///     let mut fast = KalmanFilter::new(kf.model().clone(), &prior, UpdateForm::Standard)?
///         .track_log_likelihood(false);
///     for y in [1.0, 2.1, 2.9, 4.2, 5.0] {
///         assert_eq!(fast.step(Some(&[y]))?, None);
///     }
///     assert_eq!(fast.mean(), kf.mean());
///     assert_eq!(fast.cov(), kf.cov());
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct KalmanFilter<T> {
    model: LinearModel<T>,
    prep: Prepared<T>,
    core: Core<T>,
    /// Whether updates compute the log-likelihood.
    likelihood: bool,
}

impl<T: KalmanFloat> KalmanFilter<T> {
    /// A filter for `model` starting from the belief `prior`, updating in `form`.
    ///
    /// Errors: the prior's dimension differs from the model's state dimension
    /// ([`KalmanError::ShapeMismatch`] naming `"prior"`); in [`UpdateForm::SquareRoot`], a prior
    /// covariance that is not numerically positive definite ([`KalmanError::NotPositiveDefinite`]
    /// naming `"cov"`).
    pub fn new(
        model: LinearModel<T>,
        prior: &Gaussian<T>,
        form: UpdateForm,
    ) -> Result<Self, KalmanError> {
        check_dim("prior", model.state_dim(), prior.dim())?;
        let (mean, cov) = flat(prior);
        let core = Core::new(&mean, &cov, form)?;
        let mut prep = Prepared::default();
        prep.load(&model);
        Ok(Self {
            model,
            prep,
            core,
            likelihood: true,
        })
    }

    /// The filter, with its updates computing the log-likelihood (`true`, the default) or not
    /// (`false`: [`update`](Self::update) and [`step`](Self::step) then return `None` for it
    /// and skip the log-determinant and quadratic form that only serve it). The mean and
    /// covariance do not depend on this setting, bitwise.
    #[must_use]
    pub fn track_log_likelihood(mut self, on: bool) -> Self {
        self.likelihood = on;
        self
    }

    /// As [`track_log_likelihood`](Self::track_log_likelihood), in place: applies from the next
    /// update on.
    pub fn set_track_log_likelihood(&mut self, on: bool) {
        self.likelihood = on;
    }

    /// Whether updates compute the log-likelihood (see
    /// [`track_log_likelihood`](Self::track_log_likelihood)).
    pub fn tracks_log_likelihood(&self) -> bool {
        self.likelihood
    }

    /// Replaces the model (for a time-varying model, before the step it describes), keeping the
    /// belief. Buffers grow only if the observation or control dimension does.
    ///
    /// Errors: a state dimension other than the filter's ([`KalmanError::ShapeMismatch`] naming
    /// `"model"`).
    pub fn set_model(&mut self, model: LinearModel<T>) -> Result<(), KalmanError> {
        check_dim("model", self.core.dim(), model.state_dim())?;
        self.prep.load(&model);
        self.model = model;
        Ok(())
    }

    /// Replaces the belief, keeping the model and the form.
    ///
    /// Errors as for [`KalmanFilter::new`].
    pub fn set_belief(&mut self, belief: &Gaussian<T>) -> Result<(), KalmanError> {
        check_dim("prior", self.core.dim(), belief.dim())?;
        let (mean, cov) = flat(belief);
        self.core = Core::new(&mean, &cov, self.core.form())?;
        Ok(())
    }

    /// The model.
    pub fn model(&self) -> &LinearModel<T> {
        &self.model
    }

    /// The covariance form of the updates.
    pub fn form(&self) -> UpdateForm {
        self.core.form()
    }

    /// Dimension of the state.
    pub fn dim(&self) -> usize {
        self.core.dim()
    }

    /// The mean `μ`.
    pub fn mean(&self) -> &[T] {
        &self.core.x
    }

    /// The covariance `Σ`, row-major (`dim × dim`, exactly symmetric).
    pub fn cov(&self) -> &[T] {
        &self.core.p
    }

    /// In [`UpdateForm::SquareRoot`], the lower-triangular factor `S` with `Σ = S Sᵀ` that the
    /// filter propagates (row-major, `dim × dim`); `None` in the other forms.
    pub fn cov_factor(&self) -> Option<&[T]> {
        (self.core.form() == UpdateForm::SquareRoot).then_some(self.core.s.as_slice())
    }

    /// An owned copy of the belief.
    pub fn belief(&self) -> Gaussian<T> {
        core_belief(&self.core)
    }

    /// Time update through the model's transition without control: `μ ← Fμ`,
    /// `Σ ← FΣFᵀ + Q`.
    pub fn predict(&mut self) {
        self.core.predict(&self.prep, None);
    }

    /// Time update with a control input: `μ ← Fμ + Bu`, `Σ ← FΣFᵀ + Q`.
    ///
    /// Errors: `u` of a length other than the transition's control dimension
    /// ([`KalmanError::ShapeMismatch`]) or not finite ([`KalmanError::NonFinite`]), naming `"u"`.
    /// On error nothing changes.
    pub fn predict_with_control(&mut self, u: &[T]) -> Result<(), KalmanError> {
        check_dim("u", self.model.transition().control_dim(), u.len())?;
        if u.iter().any(|v| !v.is_finite()) {
            return Err(KalmanError::NonFinite { argument: "u" });
        }
        self.core.predict(&self.prep, Some(u));
        Ok(())
    }

    /// Measurement update with the observation `y` of the model's measurement; returns the
    /// log-likelihood `ln N(y; Hμ, S)`, `Some` when the filter
    /// [tracks it](Self::track_log_likelihood) (the default) and `None` when it does not.
    ///
    /// Errors (nothing changes on error): `y` of the wrong length or not finite (naming `"y"`),
    /// an innovation that overflows (`"innovation"`), or an innovation covariance that is not
    /// numerically positive definite ([`KalmanError::NotPositiveDefinite`] naming
    /// `"innovation covariance"`).
    pub fn update(&mut self, y: &[T]) -> Result<Option<T>, KalmanError> {
        let me = self.model.measurement();
        check_dim("y", me.obs_dim(), y.len())?;
        self.core.update(&self.prep, y, self.likelihood)
    }

    /// One filter step: [`predict`](Self::predict), then [`update`](Self::update) unless `y`
    /// is `None` (a missing observation). Returns the step's log-likelihood: `None` when
    /// nothing was observed or the filter does not [track it](Self::track_log_likelihood).
    ///
    /// Errors as for [`KalmanFilter::update`]; on error the prediction has been applied.
    pub fn step(&mut self, y: Option<&[T]>) -> Result<Option<T>, KalmanError> {
        self.predict();
        match y {
            Some(y) => self.update(y),
            None => Ok(None),
        }
    }
}

#[inline]
fn check_dim(argument: &'static str, expected: usize, found: usize) -> Result<(), KalmanError> {
    if expected == found {
        Ok(())
    } else {
        Err(KalmanError::ShapeMismatch {
            argument,
            expected: vec![expected],
            found: vec![found],
        })
    }
}

/// The mean and covariance of `g` as flat row-major vectors.
pub(crate) fn flat<T: KalmanFloat>(g: &Gaussian<T>) -> (Vec<T>, Vec<T>) {
    (
        g.mean().iter().copied().collect(),
        g.cov().iter().copied().collect(),
    )
}

/// The belief held by `core` as a [`Gaussian`] (its covariance is exactly symmetric already).
pub(crate) fn core_belief<T: KalmanFloat>(core: &Core<T>) -> Gaussian<T> {
    let n = core.dim();
    let cov =
        Array2::from_shape_vec((n, n), core.p.clone()).unwrap_or_else(|_| Array2::zeros((n, n)));
    Gaussian::from_parts_unchecked(Array1::from(core.x.clone()), cov)
}
