//! BSZO / BSZO-B: Kalman fusion of finite differences in a random k-dimensional subspace
//! (Feng & Huang 2026, arXiv 2601.01452; the authors' code AeonianQuill/BSZO).

use kalman_ndarray::Gaussian;
use kalman_ndarray::linalg::SymmetricEigen;
use ndarray::Array1;
use serde::{Deserialize, Serialize};

use super::Estimate;
use super::probe::Probe;
use super::variance::Variance;
use crate::direction::{Direction, Term, negate};
use crate::error::{ConfigError, OptimError, at_least_one, non_negative, positive, unit_interval};
use crate::objective::Objective;
use crate::params::ParamSet;

/// Where BSZO updates its noise estimate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseUpdate {
    /// Before every Kalman update (the authors' code and the paper's Algorithm 2; the default).
    #[default]
    EveryObservation,
    /// Only for the adaptive extra samples, `τ > k` (the paper's Algorithm 1).
    ExtraSamplesOnly,
}

/// How BSZO obtains its observations beyond the first `k`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtraSample {
    /// BSZO: re-use the cached value along the axis of largest posterior variance (no forward;
    /// the authors' code with `bayesian_adaptive_sampling = True`).
    #[default]
    Cached,
    /// BSZO-B: a fresh forward along the principal eigenvector of the posterior covariance.
    Fresh,
    /// A fresh forward along the axis `e_(τ mod k)`: observation `τ` re-queries direction
    /// `τ mod k` (the authors' code with adaptive sampling off, `bayesian_adaptive_sampling =
    /// False`, AeonianQuill/BSZO `bszo_optimizer_v3.py`).
    Requery,
}

/// The finite difference behind one BSZO observation `y ≈ dᵀ g̃`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Difference {
    /// `(L(θ + ε B d) − L(θ)) / ε`: one forward per queried observation (the paper's default).
    #[default]
    OneSided,
    /// `(L(θ + ε B d) − L(θ − ε B d)) / 2ε`: two forwards per queried observation (the authors'
    /// code with `bayesian_one_sided = False`); `L(θ)` is still evaluated once, for the logged loss.
    Central,
}

/// Configuration of the Kalman-subspace (BSZO) estimator.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KalmanSubspace {
    /// Subspace dimension `k` (paper: 2).
    pub k: usize,
    /// Observations per step `m ≥ k` (paper: `k + 1`).
    pub m: usize,
    /// Perturbation scale ε (paper: 1e-4).
    pub eps: f64,
    /// Noise EMA weight α ∈ [0, 1) (paper: 0.1). With α = 0 the noise level stays at σ_e,init
    /// (the authors' code with `bayesian_adaptive_noise = False`).
    pub alpha: f64,
    /// Prior variance σ_p² of the projected gradient.
    pub prior_variance: Variance,
    /// Initial noise variance σ_e,init².
    pub noise_variance: Variance,
    /// Floor of σ_e as a fraction of σ_e,init (paper: 0.1).
    pub noise_floor: f64,
    /// Placement of the noise update.
    pub noise_update: NoiseUpdate,
    /// Cached (BSZO), fresh eigen-direction (BSZO-B) or re-queried axis extra samples.
    pub extra: ExtraSample,
    /// One-sided (default) or central differences.
    #[serde(default)]
    pub difference: Difference,
    /// Diagonal jitter added to the posterior covariance after each update (authors' code: 1e-10).
    pub jitter: f64,
}

impl Default for KalmanSubspace {
    fn default() -> Self {
        Self {
            k: 2,
            m: 3,
            eps: 1e-4,
            alpha: 0.1,
            prior_variance: Variance::Auto,
            noise_variance: Variance::Auto,
            noise_floor: 0.1,
            noise_update: NoiseUpdate::EveryObservation,
            extra: ExtraSample::Cached,
            difference: Difference::OneSided,
            jitter: 1e-10,
        }
    }
}

impl KalmanSubspace {
    /// Check the hyper-parameters.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        at_least_one("k", self.k as u64)?;
        if self.m < self.k {
            return Err(ConfigError::SamplesBelowSubspace {
                m: self.m,
                k: self.k,
            });
        }
        positive("eps", self.eps)?;
        unit_interval("alpha", self.alpha)?;
        self.prior_variance.validate("prior_variance")?;
        self.noise_variance.validate("noise_variance")?;
        non_negative("noise_floor", self.noise_floor)?;
        non_negative("jitter", self.jitter)
    }

    /// Forward passes per step: `L(θ)` once, then one (one-sided) or two (central) per queried
    /// observation: `k` with cached extra samples, `m` otherwise.
    pub(super) fn forwards_per_step(&self) -> usize {
        let queried = match self.extra {
            ExtraSample::Cached => self.k,
            ExtraSample::Fresh | ExtraSample::Requery => self.m,
        };
        let per_query = match self.difference {
            Difference::OneSided => 1,
            Difference::Central => 2,
        };
        1 + per_query * queried
    }
}

/// What BSZO's posterior looked like at the end of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KalmanReport {
    /// Posterior mean μ of the projected gradient (the step is `−η Σ μᵢ zᵢ`).
    pub posterior_mean: Vec<f64>,
    /// Posterior covariance Σ (row-major k × k).
    pub posterior_cov: Vec<f64>,
    /// The observations `y` of each of the `m` updates.
    pub observations: Vec<f64>,
    /// The noise variance σ_e² in force at the end of the step.
    pub noise_variance: f64,
    /// The shrinkage γ = σ_p² / (σ_p² + σ_e²) at that noise level.
    pub gamma: f64,
}

/// BSZO's noise model, carried across steps.
pub(super) struct NoiseState {
    /// σ_p², resolved for the parameter count.
    pub prior_variance: f64,
    /// σ_e,init², resolved for the parameter count.
    pub noise_init: f64,
    /// The EMA `s²` of squared residuals; written back by the caller once the step succeeded.
    pub residual_ema: f64,
}

/// One step: `m` scalar Kalman updates of the posterior over the projected gradient in the
/// subspace spanned by `dirs`; the estimate is `Σᵢ μᵢ zᵢ` with the posterior mean μ.
pub(super) fn estimate<'s, P, O>(
    mut probe: Probe<'_, '_, P, O>,
    c: &KalmanSubspace,
    dirs: &[Direction],
    noise_state: &mut NoiseState,
) -> Result<Estimate<'s>, OptimError>
where
    P: ParamSet + ?Sized,
    O: Objective<P>,
{
    let NoiseState {
        prior_variance,
        noise_init,
        residual_ema,
    } = noise_state;
    let (prior_variance, noise_init) = (*prior_variance, *noise_init);
    let k = c.k;
    let eps = c.eps;
    let e = eps as f32;
    let floor = c.noise_floor * noise_init.sqrt();
    let mut post = Gaussian::<f64>::isotropic(k, prior_variance)?;
    let mut cached = vec![0.0; k];
    let mut observations = Vec::with_capacity(c.m);
    let mut noise = (residual_ema.sqrt().max(floor)).powi(2);
    // With a shared objective the `k` axis probes (and `θ`) are independent: evaluated as one
    // set up front, they are then read in the order the sequential path evaluates them.
    let mut planned: Option<std::vec::IntoIter<f64>> = match probe.share() {
        Some(share) => {
            let mut points = vec![Vec::new()];
            for dir in dirs.iter().take(k.min(c.m)) {
                points.push(vec![Term::new(e, *dir)]);
                if c.difference == Difference::Central {
                    points.push(vec![Term::new(-e, *dir)]);
                }
            }
            Some(probe.losses_at(share, &points)?.into_iter())
        }
        None => None,
    };
    let f0 = match planned.as_mut().and_then(Iterator::next) {
        Some(f0) => f0,
        None => probe.loss()?,
    };
    // The observation along the axis `tau < k` from the planned losses, as `query` forms it.
    let mut planned_axis = || -> Option<f64> {
        let it = planned.as_mut()?;
        let lp = it.next()?;
        match c.difference {
            Difference::OneSided => Some((lp - f0) / eps),
            Difference::Central => it.next().map(|lm| (lp - lm) / (2.0 * eps)),
        }
    };
    // The observation along `to` (the displacement ε B d): one-sided against f0, or central.
    let query = |probe: &mut Probe<'_, '_, P, O>, to: Vec<Term>| -> Result<f64, OptimError> {
        let lp = probe.loss_at(to)?;
        match c.difference {
            Difference::OneSided => Ok((lp - f0) / eps),
            Difference::Central => {
                let back = negate(probe.displacement());
                let lm = probe.loss_at(back)?;
                Ok((lp - lm) / (2.0 * eps))
            }
        }
    };
    for tau in 0..c.m {
        let axis = |j: usize| {
            let mut d = Array1::zeros(k);
            d[j] = 1.0;
            d
        };
        let (d, y) = if tau < k {
            let y = match planned_axis() {
                Some(y) => y,
                None => query(&mut probe, vec![Term::new(e, dirs[tau])])?,
            };
            cached[tau] = y;
            (axis(tau), y)
        } else {
            match c.extra {
                ExtraSample::Cached => {
                    let cov = post.cov();
                    let mut j = 0;
                    for i in 1..k {
                        if cov[[i, i]] > cov[[j, j]] {
                            j = i;
                        }
                    }
                    (axis(j), cached[j])
                }
                ExtraSample::Fresh => {
                    let v = match SymmetricEigen::new(post.cov().view()) {
                        Ok(eig) => eig.principal(),
                        Err(err) => return Err(probe.abort(err.into())),
                    };
                    let to: Vec<Term> = dirs
                        .iter()
                        .zip(v.iter())
                        .map(|(dir, vi)| Term::new(e * *vi as f32, *dir))
                        .collect();
                    let y = query(&mut probe, to)?;
                    (v, y)
                }
                ExtraSample::Requery => {
                    let j = tau % k;
                    let y = query(&mut probe, vec![Term::new(e, dirs[j])])?;
                    (axis(j), y)
                }
            }
        };
        let dnorm2 = d.dot(&d);
        let r = (y - d.dot(post.mean())) / dnorm2.sqrt();
        if c.noise_update == NoiseUpdate::EveryObservation || tau >= k {
            *residual_ema = (1.0 - c.alpha) * *residual_ema + c.alpha * r * r;
            noise = (residual_ema.sqrt().max(floor)).powi(2);
        }
        let updated = post
            .scalar_update(d.view(), noise * dnorm2, y)
            .and_then(|_| {
                if c.jitter > 0.0 {
                    post.add_diagonal(c.jitter)
                } else {
                    Ok(())
                }
            });
        if let Err(err) = updated {
            return Err(probe.abort(err.into()));
        }
        observations.push(y);
    }
    let mean = post.mean().to_vec();
    let terms = dirs
        .iter()
        .zip(&mean)
        .map(|(d, mu)| Term::new(*mu as f32, *d))
        .collect();
    let report = KalmanReport {
        posterior_mean: mean.clone(),
        posterior_cov: post.cov().iter().copied().collect(),
        observations,
        noise_variance: noise,
        gamma: prior_variance / (prior_variance + noise),
    };
    Ok(Estimate {
        terms,
        displacement: probe.finish()?,
        preconditioner: None,
        loss: f0,
        projected: mean,
        kalman: Some(report),
        loss_std: None,
    })
}
