//! Filtering a whole observation sequence, and Rauch–Tung–Striebel smoothing.

use ndarray::Array1;

use crate::KalmanError;
use crate::filter::{core_belief, flat};
use crate::float::KalmanFloat;
use crate::gaussian::{Gaussian, UpdateForm};
use crate::linalg::Cholesky;
use crate::model::StateSpaceModel;
use crate::step::{Core, Prepared};
use crate::validate::check_shape;

/// The output of [`filter`]: the one-step predictions, the filtered beliefs and the
/// log-likelihood, per step.
///
/// For steps `t = 0, …, T−1` (observations `y_0, …, y_{T−1}`):
/// `predicted[t]` is `p(x_t | y_0, …, y_{t−1})` and `filtered[t]` is `p(x_t | y_0, …, y_t)`
/// (equal to `predicted[t]` where `y_t` is missing).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(bound(
        serialize = "T: KalmanFloat + serde::Serialize",
        deserialize = "T: KalmanFloat + serde::Deserialize<'de>"
    ))
)]
pub struct FilterOutput<T> {
    /// One-step predictions `p(x_t | y_{<t})`.
    pub predicted: Vec<Gaussian<T>>,
    /// Filtered beliefs `p(x_t | y_{≤t})`.
    pub filtered: Vec<Gaussian<T>>,
    /// Per-step `ln p(y_t | y_{<t})`, `None` where the observation is missing.
    pub step_log_likelihoods: Vec<Option<T>>,
    /// `ln p(y_0, …, y_{T−1})` over the observed steps: the sum of the per-step terms.
    pub log_likelihood: T,
}

impl<T> FilterOutput<T> {
    /// Number of steps.
    pub fn len(&self) -> usize {
        self.filtered.len()
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.filtered.is_empty()
    }
}

/// Runs the Kalman filter over a sequence of observations without control inputs.
///
/// `prior` is the belief about the state `x_{−1}` before the first step; each step `t` predicts
/// through `models.step(t)`'s transition and then, unless `observations[t]` is `None`, updates
/// with its measurement model in the given [`UpdateForm`]. (To start from a belief about the
/// first state itself, make the first transition the identity with zero noise.)
///
/// See [`filter_with_controls`] for errors.
///
/// ```
/// use kalman_ndarray::{filter, rts_smooth, Gaussian, LinearModel, Measurement, Transition, UpdateForm};
/// use ndarray::array;
///
/// # fn main() -> Result<(), kalman_ndarray::KalmanError> {
/// // A scalar random walk observed with noise; the third observation is missing.
/// let model = LinearModel::new(
///     Transition::random_walk(array![[0.1]])?,
///     Measurement::new(array![[1.0]], array![[0.5]])?,
/// )?;
/// let ys = vec![Some(array![1.0]), Some(array![1.2]), None, Some(array![0.9])];
/// let prior = Gaussian::<f64>::isotropic(1, 10.0)?;
/// let out = filter(&prior, &model, &ys, UpdateForm::Joseph)?;
/// assert_eq!(out.len(), 4);
/// assert_eq!(out.filtered[2], out.predicted[2]); // nothing to update with at step 2
/// let smoothed = rts_smooth(&model, &out)?;
/// // Smoothing never increases the variance.
/// assert!(smoothed[2].cov()[[0, 0]] <= out.filtered[2].cov()[[0, 0]]);
/// # Ok(())
/// # }
/// ```
pub fn filter<T, M>(
    prior: &Gaussian<T>,
    models: &M,
    observations: &[Option<Array1<T>>],
    form: UpdateForm,
) -> Result<FilterOutput<T>, KalmanError>
where
    T: KalmanFloat,
    M: StateSpaceModel<T> + ?Sized,
{
    run(prior, models, observations, None, form)
}

/// Runs the Kalman filter over a sequence of observations with a control input at every step.
///
/// As [`filter`], with step `t` predicting through `μ ← Fμ + B u_t` where `u_t = controls[t]`.
///
/// Errors: `models` covering a different number of steps than `observations`, or `controls`
/// of a different length than `observations` ([`KalmanError::ShapeMismatch`] naming
/// `"models"` or `"controls"`); any error of [`Gaussian::predict_with_control`] or
/// [`Gaussian::update`] at a step, wrapped in [`KalmanError::AtStep`] with the step index.
pub fn filter_with_controls<T, M>(
    prior: &Gaussian<T>,
    models: &M,
    observations: &[Option<Array1<T>>],
    controls: &[Array1<T>],
    form: UpdateForm,
) -> Result<FilterOutput<T>, KalmanError>
where
    T: KalmanFloat,
    M: StateSpaceModel<T> + ?Sized,
{
    if controls.len() != observations.len() {
        return Err(KalmanError::ShapeMismatch {
            argument: "controls",
            expected: vec![observations.len()],
            found: vec![controls.len()],
        });
    }
    run(prior, models, observations, Some(controls), form)
}

fn check_num_steps<T, M>(models: &M, steps: usize) -> Result<(), KalmanError>
where
    T: KalmanFloat,
    M: StateSpaceModel<T> + ?Sized,
{
    match models.num_steps() {
        Some(len) if len != steps => Err(KalmanError::ShapeMismatch {
            argument: "models",
            expected: vec![steps],
            found: vec![len],
        }),
        _ => Ok(()),
    }
}

fn run<T, M>(
    prior: &Gaussian<T>,
    models: &M,
    observations: &[Option<Array1<T>>],
    controls: Option<&[Array1<T>]>,
    form: UpdateForm,
) -> Result<FilterOutput<T>, KalmanError>
where
    T: KalmanFloat,
    M: StateSpaceModel<T> + ?Sized,
{
    let steps = observations.len();
    check_num_steps(models, steps)?;
    let mut predicted = Vec::with_capacity(steps);
    let mut filtered = Vec::with_capacity(steps);
    let mut step_log_likelihoods = Vec::with_capacity(steps);
    let mut log_likelihood = T::zero();
    let (mean, cov) = flat(prior);
    let mut core = Core::new(&mean, &cov, form)?;
    let mut prep = Prepared::default();
    let n = prior.dim();
    for (t, y) in observations.iter().enumerate() {
        let at = |e: KalmanError| e.at_step(t);
        let model = models.step(t).map_err(at)?;
        let (transition, measurement) = (model.transition(), model.measurement());
        check_shape("f", &transition.f().view(), (n, n)).map_err(at)?;
        prep.load(&model);
        let u = match controls {
            Some(c) => {
                transition.check_control(&c[t].view()).map_err(at)?;
                Some(c[t].iter().copied().collect::<Vec<T>>())
            }
            None => None,
        };
        core.predict(&prep, u.as_deref());
        predicted.push(core_belief(&core));
        let ll = match y {
            Some(y) => {
                let m = measurement.obs_dim();
                check_shape("h", &measurement.h().view(), (m, n)).map_err(at)?;
                measurement.check_observation(&y.view()).map_err(at)?;
                let y: Vec<T> = y.iter().copied().collect();
                let ll = core.update_with_likelihood(&prep, &y).map_err(at)?;
                log_likelihood += ll;
                Some(ll)
            }
            None => None,
        };
        step_log_likelihoods.push(ll);
        filtered.push(match ll {
            Some(_) => core_belief(&core),
            None => predicted[t].clone(),
        });
    }
    Ok(FilterOutput {
        predicted,
        filtered,
        step_log_likelihoods,
        log_likelihood,
    })
}

/// Rauch–Tung–Striebel smoothing of a [`filter`] output: `p(x_t | y_0, …, y_{T−1})` for every
/// step.
///
/// Backwards from the last step (where the smoothed belief is the filtered one), with
/// `F = F_{t+1}` the transition into step `t+1`, `P = P_{t+1|t}` its predicted covariance and
/// the smoother gain `G_t = Σ_{t|t} Fᵀ P⁻¹` (obtained by a Cholesky solve):
///
/// ```text
/// μ_{t|T} = μ_{t|t} + G_t (μ_{t+1|T} − μ_{t+1|t})
/// Σ_{t|T} = Σ_{t|t} + G_t (Σ_{t+1|T} − Σ_{t+1|t}) G_tᵀ      (symmetrised)
/// ```
///
/// `models` must be the one `output` was computed with.
///
/// Errors: `output` with inconsistent lengths or `models` covering a different number of steps
/// ([`KalmanError::ShapeMismatch`] naming `"output"` or `"models"`); a dimension mismatch or a
/// predicted covariance that is not numerically positive definite at a step
/// ([`KalmanError::AtStep`] around [`KalmanError::NotPositiveDefinite`] naming
/// `"predicted covariance"`).
pub fn rts_smooth<T, M>(
    models: &M,
    output: &FilterOutput<T>,
) -> Result<Vec<Gaussian<T>>, KalmanError>
where
    T: KalmanFloat,
    M: StateSpaceModel<T> + ?Sized,
{
    let steps = output.filtered.len();
    if output.predicted.len() != steps {
        return Err(KalmanError::ShapeMismatch {
            argument: "output",
            expected: vec![steps],
            found: vec![output.predicted.len()],
        });
    }
    check_num_steps(models, steps)?;
    let Some(last) = output.filtered.last() else {
        return Ok(Vec::new());
    };
    // Built backwards from the last step, reversed at the end.
    let mut smoothed: Vec<Gaussian<T>> = Vec::with_capacity(steps);
    smoothed.push(last.clone());
    for t in (0..steps - 1).rev() {
        let step = |e: KalmanError| e.at_step(t);
        let model = models.step(t + 1).map_err(step)?;
        let f = model.transition().f();
        let filt = &output.filtered[t];
        let pred = &output.predicted[t + 1];
        let next = smoothed.last().unwrap_or(last);
        let n = filt.dim();
        check_shape("f", &f.view(), (n, n)).map_err(step)?;
        if pred.dim() != n || next.dim() != n {
            return Err(KalmanError::ShapeMismatch {
                argument: "output",
                expected: vec![n],
                found: vec![pred.dim()],
            }
            .at_step(t));
        }
        // C = Σ_{t|t} Fᵀ; G = C P⁻¹, so Gᵀ = P⁻¹ Cᵀ = P⁻¹ F Σ_{t|t}.
        let c = filt.cov().dot(&f.t());
        let chol = Cholesky::factor(pred.cov().view(), "predicted covariance").map_err(step)?;
        let gain_t = chol.solve_mat_unchecked(c.t());
        let gain = gain_t.t();
        let mean = filt.mean() + &gain.dot(&(next.mean() - pred.mean()));
        let cov = filt.cov() + &gain.dot(&(next.cov() - pred.cov())).dot(&gain_t);
        smoothed.push(Gaussian::from_parts_unchecked(mean, cov));
    }
    smoothed.reverse();
    Ok(smoothed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LinearModel, Measurement, Transition};
    use approx::assert_abs_diff_eq;
    use ndarray::array;

    /// Scalar random walk: F = 1, Q = 1, H = 1, R = 1, prior N(0, 1), y = [1, 2].
    fn random_walk() -> (LinearModel<f64>, Gaussian<f64>, Vec<Option<Array1<f64>>>) {
        let model = LinearModel::new(
            Transition::random_walk(array![[1.0]]).unwrap(),
            Measurement::new(array![[1.0]], array![[1.0]]).unwrap(),
        )
        .unwrap();
        let prior = Gaussian::isotropic(1, 1.0).unwrap();
        (model, prior, vec![Some(array![1.0]), Some(array![2.0])])
    }

    #[test]
    fn filter_and_smoother_by_hand() {
        let (model, prior, ys) = random_walk();
        let out = filter(&prior, &model, &ys, UpdateForm::Joseph).unwrap();
        // Step 0: predict N(0, 1 + 1 = 2); S = 3, K = 2/3: μ = 2/3, P = 2 − 4/3 = 2/3.
        assert_abs_diff_eq!(out.predicted[0].cov()[[0, 0]], 2.0, epsilon = 1e-15);
        assert_abs_diff_eq!(out.filtered[0].mean()[0], 2.0 / 3.0, epsilon = 1e-15);
        assert_abs_diff_eq!(out.filtered[0].cov()[[0, 0]], 2.0 / 3.0, epsilon = 1e-15);
        // Step 1: predict N(2/3, 5/3); S = 8/3, K = 5/8, e = 4/3:
        // μ = 2/3 + (5/8)(4/3) = 3/2, P = (5/3)(3/8) = 5/8.
        assert_abs_diff_eq!(out.predicted[1].cov()[[0, 0]], 5.0 / 3.0, epsilon = 1e-15);
        assert_abs_diff_eq!(out.filtered[1].mean()[0], 1.5, epsilon = 1e-15);
        assert_abs_diff_eq!(out.filtered[1].cov()[[0, 0]], 0.625, epsilon = 1e-15);
        // ln L = −½ (ln 2π + ln 3 + 1/3) − ½ (ln 2π + ln 8/3 + (16/9)/(8/3) = 2/3).
        let ln2pi = (2.0 * std::f64::consts::PI).ln();
        let ll = -0.5 * (ln2pi + 3f64.ln() + 1.0 / 3.0)
            - 0.5 * (ln2pi + (8.0f64 / 3.0).ln() + 2.0 / 3.0);
        assert_abs_diff_eq!(out.log_likelihood, ll, epsilon = 1e-14);

        let s = rts_smooth(&model, &out).unwrap();
        // G = (2/3)/(5/3) = 2/5; μ = 2/3 + (2/5)(3/2 − 2/3) = 2/3 + 1/3 = 1;
        // P = 2/3 + (2/5)² (5/8 − 5/3) = 2/3 − 1/6 = 1/2.
        assert_abs_diff_eq!(s[0].mean()[0], 1.0, epsilon = 1e-15);
        assert_abs_diff_eq!(s[0].cov()[[0, 0]], 0.5, epsilon = 1e-15);
        assert_eq!(s[1], out.filtered[1]);
    }

    #[test]
    fn missing_observation_is_a_pure_prediction() {
        let (model, prior, _) = random_walk();
        let out = filter(
            &prior,
            &model,
            &[None, Some(array![2.0])],
            UpdateForm::Standard,
        )
        .unwrap();
        assert_eq!(out.filtered[0], out.predicted[0]);
        assert_eq!(out.step_log_likelihoods[0], None);
        // Step 1 predicts N(0, 3); S = 4, K = 3/4: μ = 1.5, P = 0.75.
        assert_abs_diff_eq!(out.filtered[1].mean()[0], 1.5, epsilon = 1e-15);
        assert_abs_diff_eq!(out.filtered[1].cov()[[0, 0]], 0.75, epsilon = 1e-15);
    }

    #[test]
    fn empty_sequence() {
        let (model, prior, _) = random_walk();
        let out = filter(&prior, &model, &[], UpdateForm::Joseph).unwrap();
        assert!(out.is_empty());
        assert_eq!(out.log_likelihood, 0.0);
        assert!(rts_smooth(&model, &out).unwrap().is_empty());
    }
}
