//! Ways to *estimate* a descent direction from forward passes.
//!
//! One file per estimator: `spsa.rs` (MeZO, n-SPSA), `fzoo.rs` (FZOO, SPSA's probes with its
//! coefficients divided by the spread of the perturbed losses), `low_rank.rs` (LOZO), `hessian.rs`
//! (HiZOO) and `kalman.rs` (BSZO, BSZO-B). The additive estimators move the parameters between
//! probe points through the probe helper of `probe.rs`, which also puts them back when a loss
//! fails. An estimate is a sum of direction terms, the displacement still applied to the parameters
//! and an optional per-element preconditioner: the update rules see nothing else of the estimator
//! that produced it.

mod fzoo;
mod hessian;
mod kalman;
mod low_rank;
pub(crate) mod probe;
mod spsa;
mod variance;

use serde::{Deserialize, Serialize};
use zo_sampler::{DirectionKey, Distribution};

pub use self::kalman::{Difference, ExtraSample, KalmanReport, KalmanSubspace, NoiseUpdate};
pub use self::variance::Variance;
use crate::direction::{Direction, Term};
use crate::error::{ConfigError, OptimError, ParamError};
use crate::objective::Objective;
use crate::params::{ParamSet, StateVec, TensorInfo};
use probe::{Evaluator, Probe};

/// A gradient estimator.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Estimator {
    /// SPSA over `samples` directions: two-point `(L(θ+εz) − L(θ−εz))/2ε` (2 forwards each) or
    /// one-sided `(L(θ+εz) − L(θ))/ε` (1 + samples forwards), averaged: `ĝ = (1/n) Σ g_j z_j`.
    Spsa {
        /// Perturbation scale ε.
        eps: f64,
        /// Number of directions `n`.
        samples: usize,
        /// One-sided differences.
        one_sided: bool,
        /// Distribution of the directions.
        distribution: Distribution,
    },
    /// FZOO: one-sided SPSA over `samples` Rademacher directions `uᵢ ∈ {±1}ᵈ`, normalised by the
    /// spread of the perturbed losses (1 + samples forwards). With `lᵢ = L(θ+εuᵢ)`,
    /// `g = (1/(εN)) Σᵢ (lᵢ − L(θ)) uᵢ` and σ the sample standard deviation of `l₁ … l_N`
    /// (denominator N − 1), the estimate is `ĝ = g / max(σ, std_floor)`: with SGD, the normalised
    /// step `θ ← θ − η g / σ`. σ is reported in [`StepReport::loss_std`](crate::StepReport::loss_std).
    Fzoo {
        /// Perturbation scale ε.
        eps: f64,
        /// Number of directions `N` (at least 2, since σ needs two losses; default 8).
        samples: usize,
        /// The floor under σ (default 1e-8): the step divides by `max(σ, std_floor)`, so equal
        /// perturbed losses (σ = 0) give a finite step. Finite and `> 0`.
        std_floor: f64,
    },
    /// LOZO: the two-point estimate along a low-rank direction `U Vᵀ` per matrix.
    LowRank {
        /// Perturbation scale ε.
        eps: f64,
        /// Rank `r` (default 2).
        rank: u32,
        /// `V` is redrawn every `interval` steps (ν, default 50).
        interval: u64,
    },
    /// HiZOO: the two-point estimate along `u/√H` with a diagonal curvature estimate `H`.
    Hessian {
        /// Perturbation scale μ.
        eps: f64,
        /// Curvature EMA weight α (it must scale with μ²: α/μ² is what matters).
        alpha: f64,
        /// Run a fourth forward after the update, only to log the loss there (off by default).
        log_loss_after_update: bool,
    },
    /// BSZO / BSZO-B: Kalman fusion of finite differences in a random k-dimensional subspace.
    KalmanSubspace(KalmanSubspace),
}

impl Estimator {
    /// Validate the hyper-parameters.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Self::Spsa { eps, samples, .. } => spsa::validate(eps, samples),
            Self::Fzoo {
                eps,
                samples,
                std_floor,
            } => fzoo::validate(eps, samples, std_floor),
            Self::LowRank {
                eps,
                rank,
                interval,
            } => low_rank::validate(eps, rank, interval),
            Self::Hessian { eps, alpha, .. } => hessian::validate(eps, alpha),
            Self::KalmanSubspace(c) => c.validate(),
        }
    }

    /// Forward passes per step.
    pub fn forwards_per_step(&self) -> usize {
        match *self {
            Self::Spsa {
                samples, one_sided, ..
            } => spsa::forwards(samples, one_sided),
            Self::Fzoo { samples, .. } => fzoo::forwards(samples),
            Self::LowRank { .. } => 2,
            Self::Hessian {
                log_loss_after_update,
                ..
            } => 3 + usize::from(log_loss_after_update),
            Self::KalmanSubspace(c) => c.forwards_per_step(),
        }
    }

    /// Whether the estimate carries a per-element preconditioner (HiZOO's `1/√H`), which only
    /// rules that [accept one](crate::UpdateRule::accepts_preconditioner) can apply.
    pub fn preconditioned(&self) -> bool {
        matches!(self, Self::Hessian { .. })
    }

    pub(crate) fn init<P: ParamSet + ?Sized>(&self, params: &P) -> EstimatorState {
        match *self {
            Self::Hessian { .. } => EstimatorState::Hessian {
                h: StateVec::filled_like(params, 1.0),
            },
            Self::KalmanSubspace(c) => {
                let n = params.num_params();
                let noise_init = c.noise_variance.resolve(n);
                EstimatorState::Kalman {
                    prior_variance: c.prior_variance.resolve(n),
                    noise_init,
                    residual_ema: noise_init,
                }
            }
            _ => EstimatorState::Stateless,
        }
    }

    pub(crate) fn estimate<'s, P, O>(
        &self,
        state: &'s mut EstimatorState,
        params: &mut P,
        ev: &mut Evaluator<'_, O>,
        seed: u64,
        step: u64,
    ) -> Result<Estimate<'s>, OptimError>
    where
        P: ParamSet + ?Sized,
        O: Objective<P>,
    {
        let key = |j: usize| DirectionKey::new(seed, step, j as u32);
        match *self {
            Self::Spsa {
                eps,
                samples,
                one_sided,
                distribution,
            } => {
                let dirs = spsa::directions(key, samples, distribution);
                spsa::estimate(Probe::new(params, ev), &dirs, eps, one_sided)
            }
            Self::Fzoo {
                eps,
                samples,
                std_floor,
            } => {
                let dirs = spsa::directions(key, samples, Distribution::Rademacher);
                fzoo::estimate(Probe::new(params, ev), &dirs, eps, std_floor)
            }
            Self::LowRank {
                eps,
                rank,
                interval,
            } => {
                let dir = low_rank::direction(key(0), step, rank, interval);
                low_rank::estimate(Probe::new(params, ev), dir, eps)
            }
            Self::Hessian { eps, alpha, .. } => {
                let EstimatorState::Hessian { h } = state else {
                    return Err(OptimError::StateMismatch(
                        "HiZOO needs its curvature state".into(),
                    ));
                };
                h.check_matches(params)?;
                hessian::estimate(params, ev, h, Direction::gaussian(key(0)), eps, alpha)
            }
            Self::KalmanSubspace(c) => {
                let EstimatorState::Kalman {
                    prior_variance,
                    noise_init,
                    residual_ema,
                } = state
                else {
                    return Err(OptimError::StateMismatch(
                        "BSZO needs its noise state".into(),
                    ));
                };
                let dirs: Vec<Direction> = (0..c.k).map(|j| Direction::gaussian(key(j))).collect();
                let mut noise = kalman::NoiseState {
                    prior_variance: *prior_variance,
                    noise_init: *noise_init,
                    residual_ema: *residual_ema,
                };
                let est = kalman::estimate(Probe::new(params, ev), &c, &dirs, &mut noise)?;
                *residual_ema = noise.residual_ema;
                Ok(est)
            }
        }
    }

    /// Runs once the update rule has moved the parameters (and the step's state is written):
    /// returns the loss to report in place of the estimate's, where the estimator evaluates one
    /// (HiZOO's optional logging forward); `None` otherwise.
    pub(crate) fn after_update<P, O>(
        &self,
        params: &mut P,
        ev: &mut Evaluator<'_, O>,
    ) -> Result<Option<f64>, OptimError>
    where
        P: ParamSet + ?Sized,
        O: Objective<P>,
    {
        match *self {
            Self::Hessian {
                log_loss_after_update: true,
                ..
            } => ev.eval_here(params).map(Some),
            _ => Ok(None),
        }
    }
}

/// The estimator's state carried across steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EstimatorState {
    /// No cross-step state.
    Stateless,
    /// HiZOO's diagonal curvature estimate `H` (initialised to ones).
    Hessian {
        /// The curvature estimate.
        h: StateVec,
    },
    /// BSZO's noise model.
    Kalman {
        /// σ_p², resolved for this parameter count.
        prior_variance: f64,
        /// σ_e,init², resolved for this parameter count.
        noise_init: f64,
        /// The EMA `s²` of squared residuals (starts at σ_e,init²).
        residual_ema: f64,
    },
}

/// A per-element preconditioner `g ↦ g / √h` over a parameter set.
#[derive(Clone, Copy)]
pub(crate) struct Preconditioner<'s> {
    h: &'s StateVec,
}

impl<'s> Preconditioner<'s> {
    /// Division by the element-wise square root of `h`.
    fn inverse_sqrt(h: &'s StateVec) -> Self {
        Self { h }
    }

    /// The preconditioner on tensor `index` of the parameter set.
    pub(crate) fn tensor(
        &self,
        index: usize,
        info: &TensorInfo,
    ) -> Result<TensorPreconditioner<'s>, ParamError> {
        Ok(TensorPreconditioner {
            h: self.h.tensor(index, info)?,
        })
    }
}

/// A [`Preconditioner`] on one tensor.
#[derive(Clone, Copy)]
pub(crate) struct TensorPreconditioner<'s> {
    h: &'s [f32],
}

impl TensorPreconditioner<'_> {
    /// The preconditioner on elements `offset .. offset + len`.
    pub(crate) fn range(&self, offset: usize, len: usize) -> Self {
        Self {
            h: &self.h[offset..offset + len],
        }
    }

    /// Element `i`'s preconditioned value of `g`.
    #[inline]
    pub(crate) fn apply(&self, i: usize, g: f32) -> f32 {
        g / self.h[i].sqrt()
    }
}

/// An estimate `ĝ = P(Σᵢ cᵢ zᵢ)` with an optional per-element preconditioner `P`, together with the
/// displacement still applied to the parameters (`θ_now = θ + Σ displacement`), which the update
/// rule removes as it applies the estimate.
pub(crate) struct Estimate<'s> {
    terms: Vec<Term>,
    displacement: Vec<Term>,
    preconditioner: Option<Preconditioner<'s>>,
    /// The loss to report for the step unless the rule or estimator evaluates another.
    pub loss: f64,
    /// The projected gradients or the posterior mean.
    pub projected: Vec<f64>,
    /// BSZO's posterior.
    pub kalman: Option<KalmanReport>,
    /// FZOO's σ, the sample standard deviation of the perturbed losses (before its floor).
    pub loss_std: Option<f64>,
}

impl<'s> Estimate<'s> {
    /// The direction terms `cᵢ zᵢ` whose sum is the (unpreconditioned) estimate.
    pub(crate) fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// The displacement the parameters still carry.
    pub(crate) fn displacement(&self) -> &[Term] {
        &self.displacement
    }

    /// The per-element preconditioner, if the estimate has one.
    pub(crate) fn preconditioner(&self) -> Option<Preconditioner<'s>> {
        self.preconditioner
    }
}
