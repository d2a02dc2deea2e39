//! Ways to *estimate* a descent direction from forward passes.

use kalman_ndarray::Gaussian;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};
use zo_sampler::{DirectionKey, Distribution};

use crate::direction::{Direction, DirectionKind, TensorDirection, Term};
use crate::error::{ConfigError, OptimError, ParamError};
use crate::objective::Objective;
use crate::params::{Chunk, ParamSet, StateVec, for_each_chunk};

/// How to choose a variance that scales with the parameter count.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variance {
    /// `n · 1e-6` for `n` trainable parameters (the authors' "auto": `(√(n/1e6))²`).
    Auto,
    /// A fixed value.
    Value(f64),
}

impl Variance {
    /// The value for `n` parameters.
    pub fn resolve(self, n: usize) -> f64 {
        match self {
            Self::Auto => n as f64 * 1e-6,
            Self::Value(v) => v,
        }
    }

    fn validate(self, field: &'static str) -> Result<(), ConfigError> {
        match self {
            Self::Auto => Ok(()),
            Self::Value(v) => positive(field, v),
        }
    }
}

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

/// A gradient estimator.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
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

fn positive(field: &'static str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::NotPositive { field, value: v })
    }
}

impl Estimator {
    /// Validate the hyper-parameters.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Self::Spsa { eps, samples, .. } => {
                positive("eps", eps)?;
                if samples == 0 {
                    return Err(ConfigError::TooSmall {
                        field: "samples",
                        min: 1,
                        value: 0,
                    });
                }
            }
            Self::LowRank {
                eps,
                rank,
                interval,
            } => {
                positive("eps", eps)?;
                if rank == 0 {
                    return Err(ConfigError::TooSmall {
                        field: "rank",
                        min: 1,
                        value: 0,
                    });
                }
                if interval == 0 {
                    return Err(ConfigError::TooSmall {
                        field: "interval",
                        min: 1,
                        value: 0,
                    });
                }
            }
            Self::Hessian { eps, alpha, .. } => {
                positive("eps", eps)?;
                if !(alpha.is_finite() && (0.0..1.0).contains(&alpha)) {
                    return Err(ConfigError::OutOfRange {
                        field: "alpha",
                        interval: "[0, 1)",
                        value: alpha,
                    });
                }
            }
            Self::KalmanSubspace(c) => {
                if c.k == 0 {
                    return Err(ConfigError::TooSmall {
                        field: "k",
                        min: 1,
                        value: 0,
                    });
                }
                if c.m < c.k {
                    return Err(ConfigError::SamplesBelowSubspace { m: c.m, k: c.k });
                }
                positive("eps", c.eps)?;
                if !(c.alpha.is_finite() && (0.0..1.0).contains(&c.alpha)) {
                    return Err(ConfigError::OutOfRange {
                        field: "alpha",
                        interval: "[0, 1)",
                        value: c.alpha,
                    });
                }
                c.prior_variance.validate("prior_variance")?;
                c.noise_variance.validate("noise_variance")?;
                if !(c.noise_floor.is_finite() && c.noise_floor >= 0.0) {
                    return Err(ConfigError::Negative {
                        field: "noise_floor",
                        value: c.noise_floor,
                    });
                }
                if !(c.jitter.is_finite() && c.jitter >= 0.0) {
                    return Err(ConfigError::Negative {
                        field: "jitter",
                        value: c.jitter,
                    });
                }
            }
        }
        Ok(())
    }

    /// Forward passes per step.
    pub fn forwards_per_step(&self) -> usize {
        match *self {
            Self::Spsa {
                samples, one_sided, ..
            } => {
                if one_sided {
                    1 + samples
                } else {
                    2 * samples
                }
            }
            Self::LowRank { .. } => 2,
            Self::Hessian {
                log_loss_after_update,
                ..
            } => 3 + usize::from(log_loss_after_update),
            Self::KalmanSubspace(c) => {
                let queried = match c.extra {
                    ExtraSample::Cached => c.k,
                    ExtraSample::Fresh | ExtraSample::Requery => c.m,
                };
                let per_query = match c.difference {
                    Difference::OneSided => 1,
                    Difference::Central => 2,
                };
                1 + per_query * queried
            }
        }
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

/// An estimate `ĝ = Σᵢ cᵢ zᵢ` (divided element-wise by `√H` when `curvature` is set), together with
/// the displacement still applied to the parameters (`θ_now = θ + Σ pending`).
pub(crate) struct Estimate<'s> {
    pub terms: Vec<Term>,
    pub pending: Vec<Term>,
    pub curvature: Option<&'s StateVec>,
    pub loss: f64,
    pub projected: Vec<f64>,
    pub kalman: Option<KalmanReport>,
}

/// Evaluation of the objective inside a step: counts, checks finiteness, and on failure puts the
/// parameters back before returning the error.
pub(crate) struct Evaluator<'o, O> {
    pub objective: &'o mut O,
    pub step: u64,
    pub forwards: usize,
    pub losses: Vec<f64>,
}

impl<O> Evaluator<'_, O> {
    pub(crate) fn eval<P: ParamSet + ?Sized>(
        &mut self,
        params: &mut P,
        undo: &dyn Fn(&mut P) -> Result<(), ParamError>,
    ) -> Result<f64, OptimError>
    where
        O: Objective<P>,
    {
        self.forwards += 1;
        let forward = self.forwards;
        match self.objective.loss(params) {
            Ok(v) if v.is_finite() => {
                self.losses.push(v);
                Ok(v)
            }
            Ok(value) => {
                undo(params)?;
                Err(OptimError::NonFiniteLoss {
                    step: self.step,
                    forward,
                    value,
                })
            }
            Err(source) => {
                undo(params)?;
                Err(OptimError::Objective {
                    step: self.step,
                    forward,
                    source,
                })
            }
        }
    }
}

fn negate(terms: &[Term]) -> Vec<Term> {
    terms
        .iter()
        .map(|t| Term::new(-t.coeff, t.direction))
        .collect()
}

/// Move the parameters from displacement `from` to displacement `to` in one sweep.
fn move_to<P: ParamSet + ?Sized>(
    params: &mut P,
    from: &[Term],
    to: &[Term],
) -> Result<(), ParamError> {
    let mut terms = negate(from);
    terms.extend_from_slice(to);
    params.add(&terms, None)
}

fn undo_with<P: ParamSet + ?Sized>(
    pending: Vec<Term>,
) -> impl Fn(&mut P) -> Result<(), ParamError> {
    move |p: &mut P| p.add(&negate(&pending), None)
}

impl Estimator {
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
                let dirs: Vec<Direction> = (0..samples)
                    .map(|j| Direction {
                        key: key(j),
                        kind: DirectionKind::Full(distribution),
                    })
                    .collect();
                spsa(params, ev, &dirs, eps, one_sided)
            }
            Self::LowRank {
                eps,
                rank,
                interval,
            } => {
                let v_step = step - step % interval;
                let dir = Direction {
                    key: key(0),
                    kind: DirectionKind::LowRank { rank, v_step },
                };
                spsa(params, ev, &[dir], eps, false)
            }
            Self::Hessian { eps, alpha, .. } => {
                let EstimatorState::Hessian { h } = state else {
                    return Err(OptimError::StateMismatch(
                        "HiZOO needs its curvature state".into(),
                    ));
                };
                h.check_matches(params)?;
                hessian(params, ev, h, Direction::gaussian(key(0)), eps, alpha)
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
                let mut ema = *residual_ema;
                let est = kalman_subspace(
                    params,
                    ev,
                    &c,
                    &dirs,
                    *prior_variance,
                    *noise_init,
                    &mut ema,
                )?;
                *residual_ema = ema;
                Ok(est)
            }
        }
    }
}

fn spsa<'s, P, O>(
    params: &mut P,
    ev: &mut Evaluator<'_, O>,
    dirs: &[Direction],
    eps: f64,
    one_sided: bool,
) -> Result<Estimate<'s>, OptimError>
where
    P: ParamSet + ?Sized,
    O: Objective<P>,
{
    let e = eps as f32;
    let n = dirs.len() as f64;
    let mut pending: Vec<Term> = Vec::new();
    let mut projected = Vec::with_capacity(dirs.len());
    let mut loss = f64::NAN;
    let f0 = if one_sided {
        let f0 = ev.eval(params, &|_: &mut P| Ok(()))?;
        loss = f0;
        Some(f0)
    } else {
        None
    };
    for (j, dir) in dirs.iter().enumerate() {
        let plus = [Term::new(e, *dir)];
        move_to(params, &pending, &plus)?;
        pending = plus.to_vec();
        let lp = ev.eval(params, &undo_with(pending.clone()))?;
        let g = match f0 {
            Some(f0) => (lp - f0) / eps,
            None => {
                if j == 0 {
                    loss = lp;
                }
                let minus = [Term::new(-e, *dir)];
                params.add(&[Term::new(-2.0 * e, *dir)], None)?;
                pending = minus.to_vec();
                let lm = ev.eval(params, &undo_with(pending.clone()))?;
                (lp - lm) / (2.0 * eps)
            }
        };
        projected.push(g);
    }
    let terms = dirs
        .iter()
        .zip(&projected)
        .map(|(d, g)| Term::new((g / n) as f32, *d))
        .collect();
    Ok(Estimate {
        terms,
        pending,
        curvature: None,
        loss,
        projected,
        kalman: None,
    })
}

/// `θ += s · z / √H` over every tensor.
fn add_curved<P: ParamSet + ?Sized>(
    params: &mut P,
    h: &StateVec,
    dir: &Direction,
    s: f32,
) -> Result<(), ParamError> {
    let mut index = 0;
    params.visit_mut(&mut |info, data| {
        let hs = h.tensor(index, info)?;
        index += 1;
        let dirs = [TensorDirection::new(dir, info)];
        let kernel = |c: Chunk<'_>| {
            let Chunk {
                offset, params, z, ..
            } = c;
            let hc = &hs[offset..offset + params.len()];
            params.for_each(|i, p| p + s * (z[0][i] / hc[i].sqrt()));
        };
        for_each_chunk(data, &dirs, None, None, &kernel);
        Ok(())
    })
}

fn hessian<'s, P, O>(
    params: &mut P,
    ev: &mut Evaluator<'_, O>,
    h: &'s mut StateVec,
    dir: Direction,
    eps: f64,
    alpha: f64,
) -> Result<Estimate<'s>, OptimError>
where
    P: ParamSet + ?Sized,
    O: Objective<P>,
{
    let mu = eps as f32;
    let l0 = ev.eval(params, &|_: &mut P| Ok(()))?;
    add_curved(params, h, &dir, mu)?;
    let hr: &StateVec = h;
    let lp = ev.eval(params, &|p: &mut P| add_curved(p, hr, &dir, -mu))?;
    add_curved(params, h, &dir, -2.0 * mu)?;
    let hr: &StateVec = h;
    let lm = ev.eval(params, &|p: &mut P| add_curved(p, hr, &dir, mu))?;
    // Restore with the old H and update H in the same sweep:
    // Ĥ = |ℓ₊ + ℓ₋ − 2ℓ₀| / (2μ²) · H ⊙ u ⊙ u ;  H ← (1 − α) H + α Ĥ.
    let curv = ((lp + lm - 2.0 * l0).abs() / (2.0 * eps * eps)) as f32;
    let a = alpha as f32;
    let mut index = 0;
    params.visit_mut(&mut |info, data| {
        let hs = h.tensor_mut(index, info)?;
        index += 1;
        let dirs = [TensorDirection::new(&dir, info)];
        let kernel = |c: Chunk<'_>| {
            let Chunk { params, z, s1, .. } = c;
            let hc = s1.expect("curvature slice is passed");
            params.for_each(|i, p| {
                let u = z[0][i];
                let old = hc[i];
                let restored = p + mu * (u / old.sqrt());
                hc[i] = (1.0 - a) * old + a * (curv * old * u * u);
                restored
            });
        };
        for_each_chunk(data, &dirs, Some(hs), None, &kernel);
        Ok(())
    })?;
    let g = (lp - lm) / (2.0 * eps);
    Ok(Estimate {
        terms: vec![Term::new(g as f32, dir)],
        pending: Vec::new(),
        curvature: Some(h),
        loss: l0,
        projected: vec![g],
        kalman: None,
    })
}

/// The unit principal eigenvector of a small symmetric matrix (cyclic Jacobi). Ties between
/// eigenvalues go to the lowest index; the sign makes the largest-magnitude component positive.
pub(crate) fn principal_eigenvector(a: &Array2<f64>) -> Array1<f64> {
    let n = a.nrows();
    let mut m = a.clone();
    let mut v = Array2::<f64>::eye(n);
    for _sweep in 0..64 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[[i, j]].powi(2))
            .sum();
        if off <= 1e-30 * (1.0 + m.iter().map(|x| x * x).sum::<f64>()) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[[p, q]];
                if apq == 0.0 {
                    continue;
                }
                let theta = (m[[q, q]] - m[[p, p]]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let mkp = m[[k, p]];
                    let mkq = m[[k, q]];
                    m[[k, p]] = c * mkp - s * mkq;
                    m[[k, q]] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let mpk = m[[p, k]];
                    let mqk = m[[q, k]];
                    m[[p, k]] = c * mpk - s * mqk;
                    m[[q, k]] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let vkp = v[[k, p]];
                    let vkq = v[[k, q]];
                    v[[k, p]] = c * vkp - s * vkq;
                    v[[k, q]] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut best = 0;
    for i in 1..n {
        if m[[i, i]] > m[[best, best]] * (1.0 + 1e-12) {
            best = i;
        }
    }
    let mut col = v.column(best).to_owned();
    let norm = col.dot(&col).sqrt();
    col /= norm;
    let mut big = 0;
    for i in 1..n {
        if col[i].abs() > col[big].abs() * (1.0 + 1e-12) {
            big = i;
        }
    }
    if col[big] < 0.0 {
        col.mapv_inplace(|x| -x);
    }
    col
}

#[allow(clippy::too_many_arguments)]
fn kalman_subspace<'s, P, O>(
    params: &mut P,
    ev: &mut Evaluator<'_, O>,
    c: &KalmanSubspace,
    dirs: &[Direction],
    prior_variance: f64,
    noise_init: f64,
    residual_ema: &mut f64,
) -> Result<Estimate<'s>, OptimError>
where
    P: ParamSet + ?Sized,
    O: Objective<P>,
{
    let k = c.k;
    let eps = c.eps;
    let e = eps as f32;
    let floor = c.noise_floor * noise_init.sqrt();
    let mut post = Gaussian::<f64>::isotropic(k, prior_variance)?;
    let mut cached = vec![0.0; k];
    let mut observations = Vec::with_capacity(c.m);
    let mut pending: Vec<Term> = Vec::new();
    let mut noise = (residual_ema.sqrt().max(floor)).powi(2);
    let f0 = ev.eval(params, &|_: &mut P| Ok(()))?;
    // The observation along `to` (the displacement ε B d): one-sided against f0, or central.
    let mut query =
        |params: &mut P, pending: &mut Vec<Term>, to: Vec<Term>| -> Result<f64, OptimError> {
            move_to(params, pending, &to)?;
            *pending = to;
            let lp = ev.eval(params, &undo_with(pending.clone()))?;
            match c.difference {
                Difference::OneSided => Ok((lp - f0) / eps),
                Difference::Central => {
                    let back = negate(pending);
                    move_to(params, pending, &back)?;
                    *pending = back;
                    let lm = ev.eval(params, &undo_with(pending.clone()))?;
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
            let y = query(params, &mut pending, vec![Term::new(e, dirs[tau])])?;
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
                    let v = principal_eigenvector(post.cov());
                    let to: Vec<Term> = dirs
                        .iter()
                        .zip(v.iter())
                        .map(|(dir, vi)| Term::new(e * *vi as f32, *dir))
                        .collect();
                    let y = query(params, &mut pending, to)?;
                    (v, y)
                }
                ExtraSample::Requery => {
                    let j = tau % k;
                    let y = query(params, &mut pending, vec![Term::new(e, dirs[j])])?;
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
        if let Err(e) = updated {
            params.add(&negate(&pending), None)?;
            return Err(e.into());
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
        pending,
        curvature: None,
        loss: f0,
        projected: mean,
        kalman: Some(report),
    })
}
