//! Named algorithms, the validated optimizer, its serialisable state and the step report.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use zo_sampler::Distribution;

use crate::error::{ConfigError, OptimError};
use crate::estimator::probe::Evaluator;
use crate::estimator::{Estimator, EstimatorState, ExtraSample, KalmanReport, KalmanSubspace};
use crate::objective::Objective;
use crate::params::{ParamSet, StoreRounding};
use crate::rule::{RuleState, SignMode, UpdateRule};
use crate::schedule::Schedule;

/// An estimator composed with an update rule.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// How the descent direction is estimated.
    pub estimator: Estimator,
    /// How the estimate is applied.
    pub rule: UpdateRule,
}

/// The named algorithms of the family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// MeZO: two-point SPSA + SGD (2 forwards).
    Mezo,
    /// n-SPSA: SPSA averaged over n directions + SGD (two-point by default: 2n forwards, as
    /// MeZO's `medium_models` trainer; 1 + n with one-sided differences).
    Nspsa,
    /// MeZO-Adam: two-point SPSA + Adam (2 forwards, +2n floats).
    MezoAdam,
    /// ZO-SGD-MMT: two-point SPSA + momentum (2 forwards, +n floats).
    ZoSgdMmt,
    /// ZO-SGD-Sign: two-point SPSA + sign descent (2 forwards).
    ZoSgdSign,
    /// ZO-SGD-Cons: two-point SPSA + the conservative step (5 forwards).
    ZoSgdCons,
    /// HiZOO: diagonal-curvature SPSA + preconditioned SGD (3 forwards, +n floats).
    Hizoo,
    /// LOZO: low-rank two-point SPSA + SGD (2 forwards).
    Lozo,
    /// BSZO: Kalman subspace with cached extra samples + SGD (1 + k forwards).
    Bszo,
    /// BSZO-B: Kalman subspace with fresh extra samples + SGD (1 + m forwards).
    BszoB,
    /// FZOO: one-sided Rademacher SPSA over N directions divided by the standard deviation of the
    /// N perturbed losses + SGD, a normalised SGD (1 + N forwards, N = 8 by default).
    Fzoo,
}

impl Algorithm {
    /// Every algorithm, in a fixed order.
    pub const ALL: [Algorithm; 11] = [
        Self::Mezo,
        Self::Nspsa,
        Self::MezoAdam,
        Self::ZoSgdMmt,
        Self::ZoSgdSign,
        Self::ZoSgdCons,
        Self::Hizoo,
        Self::Lozo,
        Self::Bszo,
        Self::BszoB,
        Self::Fzoo,
    ];

    /// The algorithm's name (`mezo`, `nspsa`, `mezo_adam`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Mezo => "mezo",
            Self::Nspsa => "nspsa",
            Self::MezoAdam => "mezo_adam",
            Self::ZoSgdMmt => "zo_sgd_mmt",
            Self::ZoSgdSign => "zo_sgd_sign",
            Self::ZoSgdCons => "zo_sgd_cons",
            Self::Hizoo => "hizoo",
            Self::Lozo => "lozo",
            Self::Bszo => "bszo",
            Self::BszoB => "bszo_b",
            Self::Fzoo => "fzoo",
        }
    }

    /// The algorithm with its default hyper-parameters (those of its paper or authors' code) at
    /// perturbation scale `eps`.
    pub fn config(self, eps: f64) -> OptimizerConfig {
        let spsa = Estimator::Spsa {
            eps,
            samples: 1,
            one_sided: false,
            distribution: Distribution::Normal,
        };
        let sgd = UpdateRule::Sgd { weight_decay: 0.0 };
        let (estimator, rule) = match self {
            Self::Mezo => (spsa, sgd),
            Self::Nspsa => (
                Estimator::Spsa {
                    eps,
                    samples: 4,
                    one_sided: false,
                    distribution: Distribution::Normal,
                },
                sgd,
            ),
            Self::MezoAdam => (
                spsa,
                UpdateRule::Adam {
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: 0.0,
                },
            ),
            Self::ZoSgdMmt => (
                spsa,
                UpdateRule::Momentum {
                    beta: 0.9,
                    weight_decay: 0.0,
                },
            ),
            Self::ZoSgdSign => (
                spsa,
                UpdateRule::Sign {
                    mode: SignMode::Coefficient,
                    weight_decay: 0.0,
                },
            ),
            Self::ZoSgdCons => (spsa, UpdateRule::Conservative),
            // HiZOO's own setting: α = 1e-8 at μ = 1e-3; keep α/μ² fixed for other scales.
            Self::Hizoo => (
                Estimator::Hessian {
                    eps,
                    alpha: 1e-8 * (eps / 1e-3).powi(2),
                    log_loss_after_update: false,
                },
                sgd,
            ),
            Self::Lozo => (
                Estimator::LowRank {
                    eps,
                    rank: 2,
                    interval: 50,
                },
                sgd,
            ),
            Self::Bszo => (
                Estimator::KalmanSubspace(KalmanSubspace {
                    eps,
                    ..KalmanSubspace::default()
                }),
                sgd,
            ),
            Self::BszoB => (
                Estimator::KalmanSubspace(KalmanSubspace {
                    eps,
                    extra: ExtraSample::Fresh,
                    ..KalmanSubspace::default()
                }),
                sgd,
            ),
            // N = 8 directions and σ's floor 1e-8 are this crate's defaults.
            Self::Fzoo => (
                Estimator::Fzoo {
                    eps,
                    samples: 8,
                    std_floor: 1e-8,
                },
                sgd,
            ),
        };
        OptimizerConfig { estimator, rule }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown algorithm name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown optimizer `{0}` (expected one of: mezo, nspsa, mezo_adam, zo_sgd_mmt, zo_sgd_sign, zo_sgd_cons, hizoo, lozo, bszo, bszo_b, fzoo)"
)]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|a| a.name() == norm)
            .ok_or_else(|| UnknownAlgorithm(s.to_string()))
    }
}

impl OptimizerConfig {
    /// Validate every hyper-parameter and the combination.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.estimator.validate()?;
        self.rule.validate()?;
        if self.estimator.preconditioned() && !self.rule.accepts_preconditioner() {
            return Err(ConfigError::Unsupported(
                "a preconditioned estimate (HiZOO's curvature) is applied with SGD only",
            ));
        }
        Ok(())
    }

    /// Forward passes per step (estimator plus rule).
    pub fn forwards_per_step(&self) -> usize {
        self.estimator.forwards_per_step() + self.rule.forwards_per_step()
    }

    /// Whether the optimizer is defined with row-sparse directions
    /// ([`ParamSet::set_row_support`]). Every estimator and rule
    /// reads a restricted direction as zero outside its rows, which keeps the gradient estimate
    /// unbiased when those rows are all the objective reads; HiZOO's curvature estimate
    /// `H ← (1 − α) H + α ĥ · H ⊙ u ⊙ u` would instead decay `H` on the rows a step does not
    /// probe, so it is refused.
    pub fn validate_row_sparse(&self) -> Result<(), ConfigError> {
        if matches!(self.estimator, Estimator::Hessian { .. }) {
            return Err(ConfigError::Unsupported(
                "row-sparse directions are not defined for HiZOO's curvature estimate (it would \
                 decay the curvature of every row a step does not probe)",
            ));
        }
        Ok(())
    }
}

/// A validated optimizer: an immutable rule built from a configuration and a learning-rate schedule.
///
/// Deserialising one runs [`Optimizer::new`]'s validation: an invalid serialised optimizer is a
/// deserialisation error carrying the [`ConfigError`]'s message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "UncheckedOptimizer")]
pub struct Optimizer {
    config: OptimizerConfig,
    schedule: Schedule,
}

/// The serialised form of an [`Optimizer`], before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UncheckedOptimizer {
    config: OptimizerConfig,
    schedule: Schedule,
}

impl TryFrom<UncheckedOptimizer> for Optimizer {
    type Error = ConfigError;

    fn try_from(u: UncheckedOptimizer) -> Result<Self, ConfigError> {
        Self::new(u.config, u.schedule)
    }
}

/// The optimizer's complete cross-step state: a plain serialisable value. Saving it after step N and
/// resuming from it reproduces the uninterrupted run bit for bit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    /// The run seed (every direction is keyed by it).
    pub seed: u64,
    /// The next step to run (0-based).
    pub step: u64,
    /// The parameter count the state was created for.
    pub num_params: usize,
    /// The estimator's state.
    pub estimator: EstimatorState,
    /// The update rule's state.
    pub rule: RuleState,
}

/// What one step saw and did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The step (0-based).
    pub step: u64,
    /// The learning rate used.
    pub lr: f64,
    /// The training loss to log (MeZO: ℓ₊; one-sided estimators, FZOO, HiZOO and BSZO: L(θ); the
    /// conservative rule: the kept candidate's loss; HiZOO with the logging forward: the loss after
    /// the update).
    pub loss: f64,
    /// Every loss evaluated in the step, in order.
    pub losses: Vec<f64>,
    /// The projected gradients (SPSA, FZOO, LOZO, HiZOO: the finite difference along each
    /// direction, FZOO's before its division by σ) or the posterior mean (BSZO).
    pub projected: Vec<f64>,
    /// Forward passes used.
    pub forwards: usize,
    /// BSZO's posterior and noise level.
    pub kalman: Option<KalmanReport>,
    /// The conservative rule's choice: -1 (θ − ηĝ), 0 (θ), +1 (θ + ηĝ).
    pub chosen: Option<i8>,
    /// FZOO's σ: the sample standard deviation of the step's perturbed losses, as computed (the
    /// step divides by `max(σ, std_floor)`); `None` for the other estimators, and then not
    /// written when serialised (a report without it reads back as `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_std: Option<f64>,
}

impl Optimizer {
    /// Validate `config` and `schedule`.
    pub fn new(config: OptimizerConfig, schedule: Schedule) -> Result<Self, ConfigError> {
        config.validate()?;
        schedule.validate()?;
        Ok(Self { config, schedule })
    }

    /// The named algorithm with its default hyper-parameters, perturbation scale `eps` and a
    /// constant learning rate `lr`.
    pub fn named(algorithm: Algorithm, eps: f64, lr: f64) -> Result<Self, ConfigError> {
        Self::new(algorithm.config(eps), Schedule::constant(lr))
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Forward passes per step.
    pub fn forwards_per_step(&self) -> usize {
        self.config.forwards_per_step()
    }

    /// A fresh state for `params` under run seed `seed`.
    pub fn init<P: ParamSet + ?Sized>(&self, params: &P, seed: u64) -> OptimizerState {
        OptimizerState {
            seed,
            step: 0,
            num_params: params.num_params(),
            estimator: self.config.estimator.init(params),
            rule: self.config.rule.init(params),
        }
    }

    /// One optimizer step on the objective's current minibatch.
    ///
    /// On error the parameters are put back where the step found them (up to the rounding of the
    /// restore) and `state` is left unchanged (except when the estimator's hook after the update
    /// fails: HiZOO's optional logging forward runs once the update is applied).
    pub fn step<P, O>(
        &self,
        state: &mut OptimizerState,
        params: &mut P,
        objective: &mut O,
    ) -> Result<StepReport, OptimError>
    where
        P: ParamSet + ?Sized,
        O: Objective<P>,
    {
        if state.num_params != params.num_params() {
            return Err(OptimError::StateMismatch(format!(
                "state was made for {} parameters, the parameter set has {}",
                state.num_params,
                params.num_params()
            )));
        }
        let step = state.step;
        let lr = self.schedule.lr(step);
        let mut ev = Evaluator {
            objective,
            step,
            forwards: 0,
            losses: Vec::new(),
        };
        // Estimators and rules write their state only after every forward of the step succeeded,
        // so an error below leaves `state` as it was.
        let est = self.config.estimator.estimate(
            &mut state.estimator,
            params,
            &mut ev,
            state.seed,
            step,
        )?;
        let rounding = StoreRounding::for_step(params.rounding(), state.seed, step);
        let applied =
            self.config
                .rule
                .apply(&mut state.rule, params, &mut ev, &est, lr, rounding)?;
        let mut loss = applied.loss.unwrap_or(est.loss);
        let projected = est.projected.clone();
        let kalman = est.kalman.clone();
        let loss_std = est.loss_std;
        drop(est);
        state.step = step + 1;
        // The estimator's hook runs after the update (HiZOO's optional logging forward): a failure
        // here is reported with the step applied and the state advanced.
        if let Some(after) = self.config.estimator.after_update(params, &mut ev)? {
            loss = after;
        }
        Ok(StepReport {
            step,
            lr,
            loss,
            losses: ev.losses,
            projected,
            forwards: ev.forwards,
            kalman,
            chosen: applied.chosen,
            loss_std,
        })
    }
}
