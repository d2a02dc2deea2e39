//! Closed-form oracles: one step (or a few) of every path of the family against its formula,
//! computed here by hand in f64.
//!
//! The objectives are *scripted*: they return a fixed sequence of losses and ignore the parameters
//! (while recording the points they were asked at). Every observation, projected gradient and
//! posterior is then an exact function of the script, and every direction is regenerated here from
//! zo-sampler's stream for its key `(seed, step, j)` and the tensor's name. The formulas are those
//! of the papers and their authors' code: MeZO (Malladi et al. 2023, princeton-nlp/MeZO), ZO-Bench
//! (Zhang et al. 2024), HiZOO (Zhao et al. 2024, Yanjun-Zhao/HiZOO), BSZO and BSZO-B (Feng & Huang
//! 2026, arXiv 2601.01452, AeonianQuill/BSZO), FZOO (Dang et al. 2025, arXiv 2506.09034), Adam
//! (Kingma & Ba 2015, `torch.optim.Adam`).
//!
//! Each test's doc comment names the one-line mutation of the source it was checked against: the
//! mutation was applied, the test failed, and the mutation was reverted.

#![allow(clippy::needless_range_loop)]

use half::bf16;
use zo_optim::{
    Algorithm, Estimator, EstimatorState, ExtraSample, KalmanReport, KalmanSubspace, Objective,
    ObjectiveError, Optimizer, OptimizerConfig, OptimizerState, ParamSet, ParamStore, RuleState,
    Schedule, SignMode, TensorData, TensorInfo, UpdateRule, Variance,
};
use zo_optim::{DirectionKey, Distribution};
use zo_sampler::{Stream, TensorId};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// An objective that returns `losses` in order, whatever the parameters, and records the point
/// (flattened, in the parameter set's tensor order) of every call.
struct Script {
    losses: Vec<f64>,
    calls: usize,
    seen: Vec<Vec<f32>>,
}

impl Script {
    fn new(losses: Vec<f64>) -> Self {
        Self {
            losses,
            calls: 0,
            seen: Vec::new(),
        }
    }

    fn next(&mut self, point: Vec<f32>) -> f64 {
        let l = self.losses[self.calls];
        self.calls += 1;
        self.seen.push(point);
        l
    }
}

impl Objective<Vec<f32>> for Script {
    fn loss(&mut self, p: &Vec<f32>) -> Result<f64, ObjectiveError> {
        Ok(self.next(p.clone()))
    }
}

impl Objective<ParamStore> for Script {
    fn loss(&mut self, p: &ParamStore) -> Result<f64, ObjectiveError> {
        Ok(self.next(flat(p)))
    }
}

/// The values of a store, tensor after tensor, widened to f32.
fn flat(p: &ParamStore) -> Vec<f32> {
    p.tensors()
        .iter()
        .flat_map(|t| p.get(&t.name).unwrap().to_f32())
        .collect()
}

/// The weight-decay group of every element of a store.
fn decay_mask(p: &ParamStore) -> Vec<bool> {
    p.tensors()
        .iter()
        .flat_map(|t| std::iter::repeat_n(t.decay, t.numel()))
        .collect()
}

/// Direction `j` of step `step` under run seed `seed` on the given tensors (name, element count),
/// concatenated in that order: the Gaussian stream keyed by `(seed, step, j)` and the tensor's name.
fn direction(seed: u64, step: u64, j: u32, tensors: &[(&str, usize)]) -> Vec<f64> {
    let mut out = Vec::new();
    for &(name, n) in tensors {
        let mut z = vec![0.0f32; n];
        Stream::new(
            DirectionKey::new(seed, step, j),
            TensorId::from_name(name),
            Distribution::Normal,
        )
        .fill(0, &mut z);
        out.extend(z.iter().map(|v| f64::from(*v)));
    }
    out
}

/// The single tensor of a `Vec<f32>` parameter set.
fn vec_tensor(n: usize) -> [(&'static str, usize); 1] {
    [("params", n)]
}

/// Deterministic starting values in [-1, 1) (a fixed sine pattern).
fn start(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i as f32) * 0.77 + 0.3).sin()).collect()
}

/// Assert that an f32 result equals its f64 closed form to within a few f32 rounding steps of the
/// magnitudes involved (`scale` per element).
fn assert_close_f32(what: &str, got: &[f32], want: &[f64], scale: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for i in 0..got.len() {
        let tol = 8.0 * f64::from(f32::EPSILON) * scale[i].max(1e-30);
        let err = (f64::from(got[i]) - want[i]).abs();
        assert!(
            err <= tol,
            "{what}[{i}]: got {} want {} (err {err:e}, tol {tol:e})",
            got[i],
            want[i]
        );
    }
}

fn assert_rel(what: &str, got: f64, want: f64, rel: f64) {
    let tol = rel * want.abs().max(f64::MIN_POSITIVE);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got:e} want {want:e} (tol {tol:e})"
    );
}

fn spsa(eps: f64, samples: usize) -> Estimator {
    Estimator::Spsa {
        eps,
        samples,
        one_sided: false,
        distribution: Distribution::Normal,
    }
}

// ---------------------------------------------------------------------------------------------
// BSZO oracle: the sequential scalar Kalman filter of the paper, written out for small k
// ---------------------------------------------------------------------------------------------

/// A Gaussian posterior over the k projected gradients.
#[derive(Clone, Debug)]
struct Posterior {
    mu: Vec<f64>,
    cov: Vec<Vec<f64>>,
}

impl Posterior {
    fn prior(k: usize, sp2: f64) -> Self {
        let mut cov = vec![vec![0.0; k]; k];
        for i in 0..k {
            cov[i][i] = sp2;
        }
        Self {
            mu: vec![0.0; k],
            cov,
        }
    }

    /// One observation `y = dᵀg̃ + ν`, `ν ~ N(0, noise‖d‖²)`: K = Σd / (dᵀΣd + noise‖d‖²),
    /// μ ← μ + K(y − dᵀμ), Σ ← Σ − K(dᵀΣ), symmetrised, then `jitter · I` added.
    fn update(&mut self, d: &[f64], y: f64, noise: f64, jitter: f64) {
        let k = d.len();
        let sd: Vec<f64> = (0..k)
            .map(|a| (0..k).map(|b| self.cov[a][b] * d[b]).sum())
            .collect();
        let dsd: f64 = (0..k).map(|a| d[a] * sd[a]).sum();
        let dd: f64 = d.iter().map(|x| x * x).sum();
        let s = dsd + noise * dd;
        let innov = y - (0..k).map(|a| d[a] * self.mu[a]).sum::<f64>();
        for a in 0..k {
            self.mu[a] += sd[a] / s * innov;
        }
        for a in 0..k {
            for b in 0..k {
                self.cov[a][b] -= sd[a] * sd[b] / s;
            }
        }
        for a in 0..k {
            for b in a + 1..k {
                let m = 0.5 * (self.cov[a][b] + self.cov[b][a]);
                self.cov[a][b] = m;
                self.cov[b][a] = m;
            }
            self.cov[a][a] += jitter;
        }
    }
}

/// The unit principal eigenvector of a symmetric 2 × 2 matrix in closed form, signed so that its
/// largest-magnitude component is positive.
fn principal_2x2(c: &[Vec<f64>]) -> [f64; 2] {
    let (a, b, d) = (c[0][0], c[0][1], c[1][1]);
    let lambda = 0.5 * (a + d) + (0.25 * (a - d) * (a - d) + b * b).sqrt();
    let v = if b == 0.0 {
        if a >= d { [1.0, 0.0] } else { [0.0, 1.0] }
    } else {
        let (x, y) = (b, lambda - a);
        let n = (x * x + y * y).sqrt();
        [x / n, y / n]
    };
    if v[0].abs() >= v[1].abs() {
        if v[0] < 0.0 { [-v[0], -v[1]] } else { v }
    } else if v[1] < 0.0 {
        [-v[0], -v[1]]
    } else {
        v
    }
}

/// The BSZO hyper-parameters the oracle needs.
#[derive(Clone, Copy)]
struct Bszo {
    k: usize,
    m: usize,
    eps: f64,
    alpha: f64,
    sp2: f64,
    se2_init: f64,
    floor: f64,
    jitter: f64,
    fresh: bool,
}

/// What the oracle predicts for one step.
struct BszoStep {
    post: Posterior,
    ys: Vec<f64>,
    /// The subspace coordinates `d` of each *queried* observation (the query point is θ + ε B d).
    queried: Vec<Vec<f64>>,
    noise: f64,
    /// Whether σ_e sat on its floor at each observation.
    floored: Vec<bool>,
}

/// One BSZO step from the paper's pseudo-code (noise updated before every Kalman update, the
/// authors' placement): `losses[0]` is L(θ), the rest are the queried forwards in order; `s2` is
/// the EMA of squared residuals carried across steps.
fn bszo_oracle(c: Bszo, s2: &mut f64, losses: &[f64]) -> BszoStep {
    let f0 = losses[0];
    let mut next = 1;
    let mut post = Posterior::prior(c.k, c.sp2);
    let floor = c.floor * c.se2_init.sqrt();
    let mut cached = vec![0.0; c.k];
    let (mut ys, mut queried, mut floored) = (Vec::new(), Vec::new(), Vec::new());
    let mut noise = 0.0;
    for tau in 0..c.m {
        let axis = |j: usize| {
            let mut d = vec![0.0; c.k];
            d[j] = 1.0;
            d
        };
        let (d, y) = if tau < c.k {
            let y = (losses[next] - f0) / c.eps;
            next += 1;
            cached[tau] = y;
            queried.push(axis(tau));
            (axis(tau), y)
        } else if c.fresh {
            let v = principal_2x2(&post.cov).to_vec();
            let y = (losses[next] - f0) / c.eps;
            next += 1;
            queried.push(v.clone());
            (v, y)
        } else {
            // argmax of the diagonal, the first on ties
            let mut j = 0;
            for i in 1..c.k {
                if post.cov[i][i] > post.cov[j][j] {
                    j = i;
                }
            }
            (axis(j), cached[j])
        };
        let dn = d.iter().map(|x| x * x).sum::<f64>().sqrt();
        let r = (y - (0..c.k).map(|a| d[a] * post.mu[a]).sum::<f64>()) / dn;
        *s2 = (1.0 - c.alpha) * *s2 + c.alpha * r * r;
        floored.push(s2.sqrt() < floor);
        noise = s2.sqrt().max(floor).powi(2);
        post.update(&d, y, noise, c.jitter);
        ys.push(y);
    }
    assert_eq!(next, losses.len(), "script length");
    BszoStep {
        post,
        ys,
        queried,
        noise,
        floored,
    }
}

/// Compare a step report with the oracle (relative `rel` on every posterior entry).
fn check_report(what: &str, kal: &KalmanReport, want: &BszoStep, sp2: f64, rel: f64) {
    let k = want.post.mu.len();
    assert_eq!(kal.observations, want.ys, "{what}: observations");
    for a in 0..k {
        assert_rel(
            &format!("{what}: mu[{a}]"),
            kal.posterior_mean[a],
            want.post.mu[a],
            rel,
        );
        for b in 0..k {
            let got = kal.posterior_cov[a * k + b];
            let exp = want.post.cov[a][b];
            let tol = rel * want.post.cov[a][a].abs().max(want.post.cov[b][b].abs());
            assert!(
                (got - exp).abs() <= tol,
                "{what}: cov[{a}{b}] got {got:e} want {exp:e}"
            );
        }
    }
    assert_rel(
        &format!("{what}: noise"),
        kal.noise_variance,
        want.noise,
        rel,
    );
    assert_rel(
        &format!("{what}: gamma"),
        kal.gamma,
        sp2 / (sp2 + want.noise),
        rel,
    );
}

/// The parameters after a BSZO step: θ − η Σᵢ μᵢ zᵢ.
fn bszo_update(theta: &[f32], mu: &[f64], dirs: &[Vec<f64>], lr: f64) -> (Vec<f64>, Vec<f64>) {
    let mut want = Vec::with_capacity(theta.len());
    let mut scale = Vec::with_capacity(theta.len());
    for i in 0..theta.len() {
        let step: f64 = mu.iter().zip(dirs).map(|(m, z)| m * z[i]).sum();
        want.push(f64::from(theta[i]) - lr * step);
        scale.push(f64::from(theta[i]).abs() + lr * step.abs());
    }
    (want, scale)
}

// ---------------------------------------------------------------------------------------------
// BSZO
// ---------------------------------------------------------------------------------------------

/// BSZO in its default configuration (k = 2, m = 3, cached extra sample, α = 0.1, σ_e floor
/// 0.1 σ_e,init, jitter 1e-10, automatic variances σ_p² = σ_e,init² = n·1e-6 = 1e-4 for n = 100)
/// over 40 steps whose observations are small (|y| ≤ 3e-4, so squared residuals ≈ 1e-8 ≪ the
/// floor's 1e-6): the residual EMA decays by 0.9 per observation (0.9⁴⁴ < 0.01), goes under the
/// floor at the 44th observation and stays there for the remaining 77 of 120. Every step's
/// posterior, noise level, γ and update match the sequential filter with σ_e = max(√s², 0.1 σ_e,init)
/// and Σ += 1e-10·I after each update; under the floor, σ_e² is 0.01 σ_e,init² (to rounding).
///
/// Mutations tried, each failing this test: removing the floor (`noise =
/// residual_ema.sqrt().powi(2)` instead of `(residual_ema.sqrt().max(floor)).powi(2)` in the
/// per-observation noise update); removing the jitter (`if c.jitter > 0.0` → `if false` before
/// `post.add_diagonal`).
#[test]
fn bszo_floor_binds_for_many_observations_with_default_jitter() {
    let n = 100;
    let (eps, lr, steps, seed) = (1e-3, 50.0, 40u64, 11u64);
    let cfg = Algorithm::Bszo.config(eps);
    let Estimator::KalmanSubspace(ks) = cfg.estimator else {
        unreachable!()
    };
    assert_eq!(ks.jitter, 1e-10, "default jitter");
    assert_eq!(ks.noise_floor, 0.1, "default floor");
    let opt = Optimizer::new(cfg, Schedule::constant(lr)).unwrap();
    let oracle = Bszo {
        k: 2,
        m: 3,
        eps,
        alpha: 0.1,
        sp2: 1e-4,
        se2_init: 1e-4,
        floor: 0.1,
        jitter: 1e-10,
        fresh: false,
    };
    let mut theta = start(n);
    let mut state = opt.init(&theta, seed);
    let mut s2 = oracle.se2_init;
    let (mut run, mut longest) = (0usize, 0usize);
    for t in 0..steps {
        let f0 = 2.0 + 0.01 * (t as f64).cos();
        let ys = [
            3e-4 * ((t as f64) * 1.3).sin(),
            -2e-4 * ((t as f64) * 0.7 + 1.0).cos(),
        ];
        let losses = vec![f0, f0 + eps * ys[0], f0 + eps * ys[1]];
        let want = bszo_oracle(oracle, &mut s2, &losses);
        let before = theta.clone();
        let mut obj = Script::new(losses);
        let r = opt.step(&mut state, &mut theta, &mut obj).unwrap();
        let kal = r.kalman.unwrap();
        check_report(&format!("step {t}"), &kal, &want, oracle.sp2, 1e-9);
        for &f in &want.floored {
            run = if f { run + 1 } else { 0 };
            longest = longest.max(run);
        }
        if want.floored[2] {
            assert_rel(
                &format!("step {t} on the floor"),
                kal.noise_variance,
                0.01 * oracle.se2_init,
                1e-12,
            );
        }
        let dirs: Vec<Vec<f64>> = (0..2)
            .map(|j| direction(seed, t, j, &vec_tensor(n)))
            .collect();
        let (want_theta, scale) = bszo_update(&before, &want.post.mu, &dirs, lr);
        assert_close_f32(&format!("step {t} θ"), &theta, &want_theta, &scale);
    }
    // 0.9⁴⁴ < 0.01: the 44th observation is the first under the floor, the last 77 all are.
    assert_eq!(longest, 77, "observations in a row with the floor binding");
    assert!(run == longest, "and still binds at the end");
}

/// `Variance::Auto` resolves σ_p² and σ_e,init² to n·1e-6 (the authors' `(√(n/1e6))²`), each on its
/// own: with n = 250, Auto gives 2.5e-4. The state holds the resolved values and the first step's
/// posterior is the filter's with them, for the prior automatic and the noise fixed (3e-3) and the
/// other way round.
///
/// Mutations tried, each failing this test: `n as f64 * 1e-6` → `n as f64 * 1e-5` in
/// `Variance::resolve`; `noise_init = c.noise_variance.resolve(n)` →
/// `c.prior_variance.resolve(n)` in `Estimator::init`.
#[test]
fn bszo_auto_variances_are_n_times_1e_minus_6() {
    let n = 250;
    let auto = n as f64 * 1e-6;
    let (eps, lr, seed) = (1e-3, 1.0, 5u64);
    for (prior, noise, sp2, se2) in [
        (Variance::Auto, Variance::Value(3e-3), auto, 3e-3),
        (Variance::Value(3e-3), Variance::Auto, 3e-3, auto),
        (Variance::Auto, Variance::Auto, auto, auto),
    ] {
        assert_eq!(prior.resolve(n), sp2);
        assert_eq!(noise.resolve(n), se2);
        let cfg = OptimizerConfig {
            estimator: Estimator::KalmanSubspace(KalmanSubspace {
                eps,
                prior_variance: prior,
                noise_variance: noise,
                ..KalmanSubspace::default()
            }),
            rule: UpdateRule::Sgd { weight_decay: 0.0 },
        };
        let opt = Optimizer::new(cfg, Schedule::constant(lr)).unwrap();
        let mut theta = start(n);
        let mut state = opt.init(&theta, seed);
        assert_eq!(
            state.estimator,
            EstimatorState::Kalman {
                prior_variance: sp2,
                noise_init: se2,
                residual_ema: se2,
            }
        );
        let oracle = Bszo {
            k: 2,
            m: 3,
            eps,
            alpha: 0.1,
            sp2,
            se2_init: se2,
            floor: 0.1,
            jitter: 1e-10,
            fresh: false,
        };
        // Observations of the size of the prior's spread, so that both variances matter.
        let losses = vec![1.0, 1.0 + eps * 0.02, 1.0 - eps * 0.05];
        let mut s2 = se2;
        let want = bszo_oracle(oracle, &mut s2, &losses);
        let r = opt
            .step(&mut state, &mut theta, &mut Script::new(losses))
            .unwrap();
        check_report(
            &format!("{prior:?}/{noise:?}"),
            &r.kalman.unwrap(),
            &want,
            sp2,
            1e-9,
        );
        let EstimatorState::Kalman { residual_ema, .. } = state.estimator else {
            unreachable!()
        };
        assert_rel("residual EMA", residual_ema, s2, 1e-12);
    }
}

/// BSZO-B (k = 2, m = 4, the default α, floor, jitter and automatic variances, n = 300): after the
/// two axis queries, each extra observation is a fresh forward at θ + ε Σᵢ vᵢ zᵢ with v the unit
/// principal eigenvector of the posterior covariance (computed here in closed form for 2 × 2), and
/// its value, not the cached one, enters the posterior. The script makes the second axis noisier
/// than the first (so v = e₂, not the lowest index) and gives the fresh forwards values that differ
/// from the cached ones; the query points, observations, posterior and update are checked over
/// three steps.
///
/// Mutations tried, each failing this test: `if m[[i, i]] > m[[best, best]] * (1.0 + 1e-12)` →
/// `<` in `principal_eigenvector` (the smallest eigenvalue's vector); `Term::new(e * *vi as f32,
/// *dir)` → `Term::new(-e * *vi as f32, *dir)` in the fresh branch (the opposite sign).
#[test]
fn bszo_b_requeries_the_principal_axis_and_fuses_the_fresh_value() {
    let n = 300;
    let (eps, lr, seed) = (1e-3, 2.0, 21u64);
    let cfg = OptimizerConfig {
        estimator: Estimator::KalmanSubspace(KalmanSubspace {
            eps,
            m: 4,
            extra: ExtraSample::Fresh,
            ..KalmanSubspace::default()
        }),
        rule: UpdateRule::Sgd { weight_decay: 0.0 },
    };
    assert_eq!(cfg.forwards_per_step(), 5);
    let opt = Optimizer::new(cfg, Schedule::constant(lr)).unwrap();
    let sig2 = n as f64 * 1e-6;
    let oracle = Bszo {
        k: 2,
        m: 4,
        eps,
        alpha: 0.1,
        sp2: sig2,
        se2_init: sig2,
        floor: 0.1,
        jitter: 1e-10,
        fresh: true,
    };
    let mut theta = start(n);
    let mut state = opt.init(&theta, seed);
    let mut s2 = sig2;
    for t in 0..3u64 {
        let f0 = 1.5;
        let tf = t as f64;
        // y₁ small, y₂ large (so σ_e grows at the second observation), then two fresh values.
        let ys = [
            0.005 + 0.001 * tf,
            0.08 - 0.01 * tf,
            0.03 + 0.002 * tf,
            -0.01,
        ];
        let mut losses = vec![f0];
        losses.extend(ys.iter().map(|y| f0 + eps * y));
        let want = bszo_oracle(oracle, &mut s2, &losses);
        assert!(
            want.queried[2][1] > 0.99,
            "step {t}: the script makes e₂ the principal axis"
        );
        let before = theta.clone();
        let mut obj = Script::new(losses);
        let r = opt.step(&mut state, &mut theta, &mut obj).unwrap();
        let kal = r.kalman.unwrap();
        check_report(&format!("step {t}"), &kal, &want, sig2, 1e-9);
        assert_ne!(
            kal.observations[2], kal.observations[1],
            "fresh, not cached"
        );
        let dirs: Vec<Vec<f64>> = (0..2)
            .map(|j| direction(seed, t, j, &vec_tensor(n)))
            .collect();
        // Forward 0 at θ, forward 1 + q at θ + ε Σᵢ dᵢ zᵢ for the q-th queried coordinates d.
        assert_eq!(obj.seen.len(), 5);
        assert_eq!(obj.seen[0], before);
        for (q, d) in want.queried.iter().enumerate() {
            let mut point = Vec::with_capacity(n);
            let mut scale = Vec::with_capacity(n);
            for i in 0..n {
                let dz: f64 = (0..2).map(|a| d[a] * dirs[a][i]).sum();
                point.push(f64::from(before[i]) + eps * dz);
                scale.push(f64::from(before[i]).abs() + eps * dz.abs());
            }
            assert_close_f32(
                &format!("step {t} query {q}"),
                &obj.seen[1 + q],
                &point,
                &scale,
            );
        }
        let (want_theta, scale) = bszo_update(&before, &want.post.mu, &dirs, lr);
        assert_close_f32(&format!("step {t} θ"), &theta, &want_theta, &scale);
    }
}

// ---------------------------------------------------------------------------------------------
// HiZOO
// ---------------------------------------------------------------------------------------------

/// HiZOO over two steps (μ = 1e-2, α = 0.25, η = 1e-3, H₀ = 1): forwards at θ, θ + μu/√H and
/// θ − μu/√H; then Ĥ = |ℓ₊ + ℓ₋ − 2ℓ₀|/(2μ²) · H ⊙ u ⊙ u, H ← (1 − α)H + αĤ, and
/// θ ← θ − η (ℓ₊ − ℓ₋)/(2μ) · u/√H with the *updated* H. The second step perturbs along u′/√H₁.
///
/// Mutations tried, each failing this test: `curv * old * u * u` → `curv * u * u` (Ĥ without its
/// factor H; invisible at step 1 where H = 1, caught at step 2); `(1.0 - a) * old` → `old` (no EMA
/// decay).
#[test]
fn hizoo_curvature_ema_and_preconditioned_step() {
    let n = 12;
    let (mu, alpha, lr, seed) = (1e-2, 0.25, 1e-3, 8u64);
    let cfg = OptimizerConfig {
        estimator: Estimator::Hessian {
            eps: mu,
            alpha,
            log_loss_after_update: false,
        },
        rule: UpdateRule::Sgd { weight_decay: 0.0 },
    };
    let opt = Optimizer::new(cfg, Schedule::constant(lr)).unwrap();
    let mut theta = start(n);
    let mut state = opt.init(&theta, seed);
    let mut h = vec![1.0f64; n];
    // (ℓ₀, ℓ₊, ℓ₋) per step: curvature scalars 3 and 0.5, projected gradients 20 and −35.
    let script = [
        (1.0, 1.0 + 0.2 + 3e-4, 1.0 - 0.2 + 3e-4),
        (0.8, 0.8 - 0.35 + 0.5e-4, 0.8 + 0.35 + 0.5e-4),
    ];
    for (t, &(l0, lp, lm)) in script.iter().enumerate() {
        let u = direction(seed, t as u64, 0, &vec_tensor(n));
        let before = theta.clone();
        let mut obj = Script::new(vec![l0, lp, lm]);
        let r = opt.step(&mut state, &mut theta, &mut obj).unwrap();
        assert_eq!(r.forwards, 3);
        // The query points use the curvature before the update.
        for (q, sign) in [(1usize, 1.0), (2, -1.0)] {
            let point: Vec<f64> = (0..n)
                .map(|i| f64::from(before[i]) + sign * mu * u[i] / h[i].sqrt())
                .collect();
            let scale: Vec<f64> = (0..n).map(|i| point[i].abs() + 1.0).collect();
            assert_close_f32(&format!("step {t} point {q}"), &obj.seen[q], &point, &scale);
        }
        let curv = (lp + lm - 2.0 * l0).abs() / (2.0 * mu * mu);
        for i in 0..n {
            h[i] = (1.0 - alpha) * h[i] + alpha * (curv * h[i] * u[i] * u[i]);
        }
        let g = (lp - lm) / (2.0 * mu);
        assert_rel("projected gradient", r.projected[0], g, 1e-12);
        let EstimatorState::Hessian { h: got_h } = &state.estimator else {
            unreachable!()
        };
        let got_h = got_h.get("params").unwrap();
        assert_close_f32(&format!("step {t} H"), got_h, &h, &h);
        let want: Vec<f64> = (0..n)
            .map(|i| f64::from(before[i]) - lr * g * u[i] / h[i].sqrt())
            .collect();
        let scale: Vec<f64> = (0..n).map(|i| 1.0 + (lr * g * u[i]).abs()).collect();
        assert_close_f32(&format!("step {t} θ"), &theta, &want, &scale);
    }
}

// ---------------------------------------------------------------------------------------------
// FZOO
// ---------------------------------------------------------------------------------------------

/// Direction `j` of step `step` under run seed `seed` on the single tensor of a `Vec<f32>` of `n`
/// elements, drawn as Rademacher signs (FZOO's distribution).
fn rademacher(seed: u64, step: u64, j: u32, n: usize) -> Vec<f64> {
    let mut u = vec![0.0f32; n];
    Stream::new(
        DirectionKey::new(seed, step, j),
        TensorId::from_name("params"),
        Distribution::Rademacher,
    )
    .fill(0, &mut u);
    assert!(u.iter().all(|v| v.abs() == 1.0), "not ±1: {u:?}");
    u.iter().map(|v| f64::from(*v)).collect()
}

/// `½ Σₖ (1 + k)(θₖ − (k/4 − 1))²`, in f64 from the f32 values.
fn fzoo_quadratic(theta: &[f32]) -> f64 {
    theta
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let (d, c) = (1.0 + k as f64, 0.25 * k as f64 - 1.0);
            0.5 * d * (f64::from(*t) - c).powi(2)
        })
        .sum()
}

/// The sample standard deviation (denominator N − 1), written out.
fn sample_std(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
}

/// FZOO over two steps of a real quadratic (N = 4, ε = 2⁻⁵, η = 1e-2): forwards at θ and at
/// θ + εuᵢ for Rademacher uᵢ keyed `(seed, step, i)`; then g = (1/(εN)) Σᵢ (lᵢ − l₀) uᵢ, σ the
/// sample standard deviation of l₁ … l_N (denominator N − 1) and θ ← θ − η g/σ. The parameters
/// sit on a grid of 2⁻⁶ before each step, so every probe point θ ± εuᵢ is exact in f32 and the
/// losses the optimizer saw equal the ones computed here bit for bit.
///
/// Mutations tried, each failing this test: `sigma.max(std_floor)` → `1.0` in `fzoo::estimate`
/// (no normalisation: SPSA's average); `(n - 1) as f64` → `n as f64` in `fzoo::sample_std` (the
/// population deviation); `Distribution::Rademacher` → `Distribution::Normal` for FZOO's
/// directions in `Estimator::estimate`.
#[test]
fn fzoo_normalises_the_one_sided_rademacher_estimate() {
    let n = 10;
    let (eps, samples, lr, seed) = (2f64.powi(-5), 4usize, 1e-2, 21u64);
    let cfg = OptimizerConfig {
        estimator: Estimator::Fzoo {
            eps,
            samples,
            std_floor: 1e-8,
        },
        rule: UpdateRule::Sgd { weight_decay: 0.0 },
    };
    let opt = Optimizer::new(cfg, Schedule::constant(lr)).unwrap();
    assert_eq!(opt.forwards_per_step(), samples + 1);
    let grid = |x: f32| (x * 64.0).round() / 64.0;
    let mut theta: Vec<f32> = (0..n).map(|k| grid(0.3 * k as f32 - 1.1)).collect();
    let mut state = opt.init(&theta, seed);
    for step in 0..2u64 {
        if step > 0 {
            theta.iter_mut().for_each(|x| *x = grid(*x));
        }
        let before = theta.clone();
        let us: Vec<Vec<f64>> = (0..samples)
            .map(|i| rademacher(seed, step, i as u32, n))
            .collect();
        let l0 = fzoo_quadratic(&before);
        let ls: Vec<f64> = us
            .iter()
            .map(|u| {
                let point: Vec<f32> = (0..n)
                    .map(|k| (f64::from(before[k]) + eps * u[k]) as f32)
                    .collect();
                fzoo_quadratic(&point)
            })
            .collect();
        let mut seen = Vec::new();
        let r = opt
            .step(&mut state, &mut theta, &mut |p: &Vec<f32>| {
                seen.push(p.clone());
                fzoo_quadratic(p)
            })
            .unwrap();
        assert_eq!(r.forwards, samples + 1);
        assert_eq!(seen[0], before, "step {step}: the first forward is at θ");
        let mut want_losses = vec![l0];
        want_losses.extend(&ls);
        assert_eq!(r.losses, want_losses, "step {step}: losses");
        assert_eq!(r.loss, l0, "step {step}: the logged loss is L(θ)");
        for i in 0..samples {
            assert_rel(
                &format!("step {step}: projected {i}"),
                r.projected[i],
                (ls[i] - l0) / eps,
                1e-12,
            );
        }
        let sigma = sample_std(&ls);
        assert!(sigma > 1e-2, "step {step}: σ = {sigma} is not the floor");
        assert_rel("σ", r.loss_std.unwrap(), sigma, 1e-12);
        let g: Vec<f64> = (0..n)
            .map(|k| {
                (0..samples).map(|i| (ls[i] - l0) * us[i][k]).sum::<f64>() / (eps * samples as f64)
            })
            .collect();
        let want: Vec<f64> = (0..n)
            .map(|k| f64::from(before[k]) - lr * g[k] / sigma)
            .collect();
        let scale: Vec<f64> = (0..n)
            .map(|k| f64::from(before[k]).abs() + eps + lr * (g[k] / sigma).abs())
            .collect();
        assert_close_f32(&format!("step {step} θ"), &theta, &want, &scale);
        assert!(
            theta.iter().zip(&before).any(|(a, b)| a != b),
            "step {step}: θ did not move"
        );
    }
}

/// σ's floor. A constant objective gives σ = 0 and zero differences: the step is zero (θ unchanged
/// bit for bit, σ reported as 0, no NaN). Equal perturbed losses that differ from L(θ) give σ = 0
/// with non-zero differences: the step divides by `std_floor` (here 0.25, N = 3, ε = 1e-2, so
/// ĝ = (1/(εN · 0.25)) Σᵢ (lᵢ − l₀) uᵢ).
///
/// Mutation tried, failing this test: `sigma.max(std_floor)` → `sigma` in `fzoo::estimate` (a NaN
/// step for the constant objective, an infinite one for the second).
#[test]
fn fzoo_divides_by_the_floor_when_the_perturbed_losses_are_equal() {
    let n = 8;
    let seed = 6u64;
    let theta0: Vec<f32> = (0..n).map(|k| (k as f32 - 3.0) / 16.0).collect();

    // ε = 2⁻¹⁰ on a grid of 2⁻⁴: every probe point and the restore are exact in f32.
    let opt = Optimizer::named(Algorithm::Fzoo, 2f64.powi(-10), 1e-2).unwrap();
    let mut theta = theta0.clone();
    let mut state = opt.init(&theta, seed);
    for _ in 0..3 {
        let r = opt
            .step(&mut state, &mut theta, &mut |_: &Vec<f32>| 1.5)
            .unwrap();
        assert_eq!(r.loss_std, Some(0.0));
        assert!(r.projected.iter().all(|g| *g == 0.0), "{:?}", r.projected);
        assert_eq!(r.forwards, 9);
    }
    assert_eq!(theta, theta0, "a constant objective moved the parameters");

    let (eps, floor, lr, samples) = (1e-2, 0.25, 1e-3, 3usize);
    let opt = Optimizer::new(
        OptimizerConfig {
            estimator: Estimator::Fzoo {
                eps,
                samples,
                std_floor: floor,
            },
            rule: UpdateRule::Sgd { weight_decay: 0.0 },
        },
        Schedule::constant(lr),
    )
    .unwrap();
    let mut theta = theta0.clone();
    let mut state = opt.init(&theta, seed);
    let (l0, l) = (1.0, 1.5);
    let r = opt
        .step(&mut state, &mut theta, &mut Script::new(vec![l0, l, l, l]))
        .unwrap();
    assert_eq!(r.loss_std, Some(0.0));
    let us: Vec<Vec<f64>> = (0..samples)
        .map(|i| rademacher(seed, 0, i as u32, n))
        .collect();
    let want: Vec<f64> = (0..n)
        .map(|k| {
            let g: f64 = us.iter().map(|u| (l - l0) * u[k]).sum::<f64>() / (eps * samples as f64);
            f64::from(theta0[k]) - lr * g / floor
        })
        .collect();
    let scale: Vec<f64> = want.iter().map(|w| w.abs() + 1.0).collect();
    assert!(theta.iter().all(|x| x.is_finite()));
    assert_close_f32("θ", &theta, &want, &scale);
}

// ---------------------------------------------------------------------------------------------
// Update rules (two-point SPSA with scripted losses, so ĝ = g z exactly)
// ---------------------------------------------------------------------------------------------

/// A store with a decayed weight (3 × 4) and an undecayed bias (4), in f32.
fn rule_store() -> ParamStore {
    let mut s = ParamStore::new();
    let w = start(16);
    s.insert(
        TensorInfo::new("lin.weight", vec![3, 4]),
        TensorData::F32(w[..12].to_vec()),
    )
    .unwrap();
    s.insert(
        TensorInfo::new("lin.bias", vec![4]),
        TensorData::F32(w[12..].to_vec()),
    )
    .unwrap();
    s
}

const RULE_TENSORS: [(&str, usize); 2] = [("lin.weight", 12), ("lin.bias", 4)];

/// What [`run_rule`] saw: the parameters before every step and after the last, the directions,
/// the weight-decay mask and the final state.
struct RuleRun {
    thetas: Vec<Vec<f32>>,
    zs: Vec<Vec<f64>>,
    mask: Vec<bool>,
    state: OptimizerState,
}

/// Run SPSA (two-point, one direction, ε = 1e-3) with the rule, the scripted projected gradients
/// `gs` (one step each) and learning rate `lr`.
fn run_rule(rule: UpdateRule, gs: &[f64], lr: f64, seed: u64) -> RuleRun {
    let eps = 1e-3;
    let opt = Optimizer::new(
        OptimizerConfig {
            estimator: spsa(eps, 1),
            rule,
        },
        Schedule::constant(lr),
    )
    .unwrap();
    let mut p = rule_store();
    let mask = decay_mask(&p);
    let mut state = opt.init(&p, seed);
    let mut thetas = vec![flat(&p)];
    let mut zs = Vec::new();
    for (t, &g) in gs.iter().enumerate() {
        // ℓ₊ − ℓ₋ = 2εg
        let losses = vec![1.0 + eps * g, 1.0 - eps * g];
        let r = opt
            .step(&mut state, &mut p, &mut Script::new(losses))
            .unwrap();
        assert_rel("g", r.projected[0], g, 1e-9);
        zs.push(direction(seed, t as u64, 0, &RULE_TENSORS));
        thetas.push(flat(&p));
    }
    RuleRun {
        thetas,
        zs,
        mask,
        state,
    }
}

/// SGD with weight decay: θ ← θ − η (g z + λθ), λ only on the weight (not on the bias). The step
/// runs through the element-wise kernel, which also removes the estimator's last perturbation.
///
/// Mutations tried, each failing this test: `p - lr * (g + wd * p)` → `p - lr * (g - wd * p)` in
/// the SGD kernel; `let wd = if decay { wd } else { 0.0 }` → `let wd = wd` there (decay on the
/// bias); `p - restore` → `p + restore` in `run_kernel` (the perturbation added instead of removed:
/// this also fails the momentum, Adam, sign and bf16 tests).
#[test]
fn sgd_with_weight_decay_one_step() {
    let (lr, wd, g) = (1e-3, 0.5, 125.0);
    let RuleRun {
        thetas: th,
        zs,
        mask,
        ..
    } = run_rule(UpdateRule::Sgd { weight_decay: wd }, &[g], lr, 3);
    let mut want = Vec::new();
    let mut scale = Vec::new();
    for i in 0..th[0].len() {
        let p = f64::from(th[0][i]);
        let l = if mask[i] { wd } else { 0.0 };
        want.push(p - lr * (g * zs[0][i] + l * p));
        scale.push(p.abs() + lr * (g * zs[0][i]).abs());
    }
    assert!(mask.iter().filter(|m| **m).count() == 12 && !mask[12]);
    assert_close_f32("θ", &th[1], &want, &scale);
}

/// n-SPSA (two directions, plain SGD through the fused restore-and-update sweep):
/// θ ← θ − (η/n) Σⱼ gⱼ zⱼ.
///
/// Mutation tried, failing this test: `Term::new((g / n) as f32, *d)` → `Term::new(*g as f32, *d)`
/// in `spsa` (no averaging).
#[test]
fn nspsa_averages_its_directions() {
    let (lr, eps, seed) = (1e-3, 1e-3, 4u64);
    let n = 10;
    let opt = Optimizer::new(
        OptimizerConfig {
            estimator: spsa(eps, 2),
            rule: UpdateRule::Sgd { weight_decay: 0.0 },
        },
        Schedule::constant(lr),
    )
    .unwrap();
    let mut theta = start(n);
    let before = theta.clone();
    let mut state = opt.init(&theta, seed);
    let (g1, g2) = (80.0, -30.0);
    let losses = vec![
        1.0 + eps * g1,
        1.0 - eps * g1,
        2.0 + eps * g2,
        2.0 - eps * g2,
    ];
    opt.step(&mut state, &mut theta, &mut Script::new(losses))
        .unwrap();
    let z1 = direction(seed, 0, 0, &vec_tensor(n));
    let z2 = direction(seed, 0, 1, &vec_tensor(n));
    let step: Vec<f64> = (0..n).map(|i| 0.5 * (g1 * z1[i] + g2 * z2[i])).collect();
    let want: Vec<f64> = (0..n)
        .map(|i| f64::from(before[i]) - lr * step[i])
        .collect();
    let scale: Vec<f64> = (0..n)
        .map(|i| f64::from(before[i]).abs() + lr * (g1 * z1[i]).abs() + lr * (g2 * z2[i]).abs())
        .collect();
    assert_close_f32("θ", &theta, &want, &scale);
}

/// Heavy-ball momentum over two steps: m ← βm + (g z + λθ), θ ← θ − ηm (β = 0.9, λ = 0.2).
///
/// Mutation tried, failing this test: `m[i] = beta * m[i] + (g + wd * p)` → `m[i] = (g + wd * p)`
/// (the buffer forgotten).
#[test]
fn momentum_two_steps() {
    let (lr, wd, beta) = (1e-3, 0.2, 0.9);
    let gs = [125.0, -60.0];
    let RuleRun {
        thetas: th,
        zs,
        mask,
        state,
    } = run_rule(
        UpdateRule::Momentum {
            beta,
            weight_decay: wd,
        },
        &gs,
        lr,
        6,
    );
    let n = th[0].len();
    let mut p: Vec<f64> = th[0].iter().map(|v| f64::from(*v)).collect();
    let mut m = vec![0.0; n];
    for t in 0..gs.len() {
        let mut scale = Vec::new();
        for i in 0..n {
            let l = if mask[i] { wd } else { 0.0 };
            m[i] = beta * m[i] + (gs[t] * zs[t][i] + l * p[i]);
            p[i] -= lr * m[i];
            scale.push(p[i].abs() + lr * m[i].abs() + lr * (gs[t] * zs[t][i]).abs());
        }
        assert_close_f32(&format!("step {t} θ"), &th[t + 1], &p, &scale);
    }
    let RuleState::Momentum { m: got } = &state.rule else {
        unreachable!()
    };
    let got: Vec<f32> = got.iter().flat_map(|(_, v)| v.to_vec()).collect();
    let scale: Vec<f64> = m.iter().map(|v| v.abs() + 1.0).collect();
    assert_close_f32("buffer", &got, &m, &scale);
}

/// Adam with bias correction over two steps (β₁ = 0.9, β₂ = 0.999, ε = 1e-8, λ = 0.1 added to the
/// gradient as `torch.optim.Adam`): m ← β₁m + (1−β₁)ĝ, v ← β₂v + (1−β₂)ĝ², θ ← θ − η m̂/(√v̂ + ε)
/// with m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ). Step 1 moves each coordinate by ≈ η; step 2 tells β₁ from
/// β₂.
///
/// Mutations tried, each failing this test: `c1: (1.0 - beta1.powf(t1 as f64)) as f32` → `c1: 1.0`
/// (no first-moment bias correction); swapping `b1: beta1 as f32` and `b2: beta2 as f32` (it fails
/// at the first step already, since the bias corrections keep their own β).
#[test]
fn adam_two_steps() {
    let (lr, wd, b1, b2, eps) = (1e-2, 0.1, 0.9, 0.999, 1e-8);
    let gs = [125.0, -40.0];
    let RuleRun {
        thetas: th,
        zs,
        mask,
        state,
    } = run_rule(
        UpdateRule::Adam {
            beta1: b1,
            beta2: b2,
            eps,
            weight_decay: wd,
        },
        &gs,
        lr,
        7,
    );
    let n = th[0].len();
    // The element-wise arithmetic runs in f32, with β₁ and β₂ held as f32: 0.999 becomes
    // 0.99900001287, which moves 1 − β₂ by 1.3e-5 relative, far above f32's 6e-8. The moments'
    // recursions use those values; the bias corrections 1 − βᵗ are formed in f64.
    let (f1, f2) = (f64::from(b1 as f32), f64::from(b2 as f32));
    let mut p: Vec<f64> = th[0].iter().map(|v| f64::from(*v)).collect();
    let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
    // Magnitudes of the moments' terms (their f32 rounding is relative to these, not to m or v).
    let (mut sm, mut sv) = (vec![0.0; n], vec![0.0; n]);
    for t in 0..gs.len() {
        let tt = (t + 1) as i32;
        let mut scale = Vec::new();
        for i in 0..n {
            let l = if mask[i] { wd } else { 0.0 };
            let g = gs[t] * zs[t][i] + l * p[i];
            m[i] = f1 * m[i] + (1.0 - f1) * g;
            v[i] = f2 * v[i] + (1.0 - f2) * g * g;
            sm[i] = f1 * sm[i] + (1.0 - f1) * g.abs();
            sv[i] = f2 * sv[i] + (1.0 - f2) * g * g;
            let mh = m[i] / (1.0 - b1.powi(tt));
            let vh = v[i] / (1.0 - b2.powi(tt));
            let step = lr * mh / (vh.sqrt() + eps);
            p[i] -= step;
            // f32 rounding of the moments' arithmetic: relative ~1e-6 of the step, plus θ's own.
            scale.push(p[i].abs() + 50.0 * step.abs());
        }
        assert_close_f32(&format!("step {t} θ"), &th[t + 1], &p, &scale);
    }
    let RuleState::Adam {
        m: gm,
        v: gv,
        t: count,
    } = &state.rule
    else {
        unreachable!()
    };
    assert_eq!(*count, 2);
    for (name, got, want, scale) in [("m", gm, &m, &sm), ("v", gv, &v, &sv)] {
        let got: Vec<f32> = got.iter().flat_map(|(_, x)| x.to_vec()).collect();
        assert_close_f32(name, &got, want, scale);
    }
}

/// Sign descent, both forms, with weight decay λ = 0.3: coefficient sign θ ← θ − η (sign(g) z + λθ)
/// (ZO-SGD-Sign's default here) and element-wise θ ← θ − η (sign(g zᵢ) + λθ) (ZO-Bench's sign-SGD
/// on the full estimate). A negative g is used so that sign(g) = −1 matters.
///
/// Mutations tried, each failing this test: `t.coeff.signum()` → `t.coeff` in the coefficient form
/// (no sign); `let s = if g == 0.0 { 0.0 } else { g.signum() }` → `let s = g` in the element-wise
/// kernel.
#[test]
fn sign_rules_one_step() {
    let (lr, wd, g) = (1e-2, 0.3, -75.0);
    for mode in [SignMode::Coefficient, SignMode::Elementwise] {
        let RuleRun {
            thetas: th,
            zs,
            mask,
            ..
        } = run_rule(
            UpdateRule::Sign {
                mode,
                weight_decay: wd,
            },
            &[g],
            lr,
            9,
        );
        let mut want = Vec::new();
        let mut scale = Vec::new();
        for i in 0..th[0].len() {
            let p = f64::from(th[0][i]);
            let l = if mask[i] { wd } else { 0.0 };
            let s = match mode {
                SignMode::Coefficient => -zs[0][i],
                SignMode::Elementwise => (g * zs[0][i]).signum(),
            };
            want.push(p - lr * (s + l * p));
            scale.push(p.abs() + lr * (zs[0][i].abs() + 1.0));
        }
        assert_close_f32(&format!("{mode:?}"), &th[1], &want, &scale);
    }
}

/// ZO-SGD-Cons: after the two-point estimate ĝ = g z, the candidates θ − ηĝ, θ + ηĝ and θ are
/// evaluated (in that order) and the one with the lowest loss is kept (ties: stay, then descend).
/// Each of the three outcomes is scripted; the evaluation points and the kept parameters are
/// checked.
///
/// Mutation tried, failing this test: `} else if l_minus <= l_plus {` → `} else if l_minus >=
/// l_plus {` (the worse candidate kept).
#[test]
fn conservative_keeps_the_best_candidate() {
    let (lr, eps, g, seed, n) = (1e-2, 1e-3, 40.0, 12u64, 9usize);
    let opt = Optimizer::new(
        OptimizerConfig {
            estimator: spsa(eps, 1),
            rule: UpdateRule::Conservative,
        },
        Schedule::constant(lr),
    )
    .unwrap();
    let z = direction(seed, 0, 0, &vec_tensor(n));
    // (ℓ at θ − ηĝ, ℓ at θ + ηĝ, ℓ at θ) → the expected choice
    for (lm, lp, l0, chosen) in [
        (0.5, 0.9, 0.7, -1i8),
        (0.9, 0.4, 0.7, 1),
        (0.9, 0.8, 0.6, 0),
    ] {
        let mut theta = start(n);
        let before = theta.clone();
        let mut state = opt.init(&theta, seed);
        let mut obj = Script::new(vec![1.0 + eps * g, 1.0 - eps * g, lm, lp, l0]);
        let r = opt.step(&mut state, &mut theta, &mut obj).unwrap();
        assert_eq!(r.chosen, Some(chosen));
        assert_eq!(r.loss, [lm, l0, lp][(chosen + 1) as usize]);
        let at = |s: f64| -> (Vec<f64>, Vec<f64>) {
            let p: Vec<f64> = (0..n)
                .map(|i| f64::from(before[i]) + s * lr * g * z[i])
                .collect();
            let sc = (0..n)
                .map(|i| f64::from(before[i]).abs() + (lr * g * z[i]).abs())
                .collect();
            (p, sc)
        };
        for (q, s) in [(2usize, -1.0), (3, 1.0), (4, 0.0)] {
            let (p, sc) = at(s);
            assert_close_f32(&format!("{chosen}: point {q}"), &obj.seen[q], &p, &sc);
        }
        let (p, sc) = at(f64::from(chosen));
        assert_close_f32(&format!("{chosen}: kept"), &theta, &p, &sc);
    }
}

// ---------------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------------

/// The schedules at their end points, midpoint and a quarter point (where cosine and linear differ),
/// and beyond the end: constant η; linear η₀ + (η_end − η₀)·t/T; cosine
/// η_min + ½(η₀ − η_min)(1 + cos(πt/T)); both constant after T. The optimizer hands step t the
/// schedule's η_t (checked through a MeZO step's report and displacement).
///
/// Mutations tried, each failing this test: `(1.0 + (std::f64::consts::PI * p).cos())` →
/// `(1.0 - (std::f64::consts::PI * p).cos())` in the cosine schedule; `lr + (end_lr - lr) * p` →
/// `lr + (end_lr - lr) * p * p` in the linear schedule; `let lr = self.schedule.lr(step)` →
/// `self.schedule.lr(step + 1)` in `Optimizer::step`.
#[test]
fn schedules_at_end_points_and_midpoint() {
    let (l0, l1, total) = (1e-2, 1e-3, 8u64);
    let c = Schedule::constant(l0);
    for t in [0, 4, 8, 1000] {
        assert_eq!(c.lr(t), l0);
    }
    let lin = Schedule::Linear {
        lr: l0,
        end_lr: l1,
        total_steps: total,
    };
    let cos = Schedule::Cosine {
        lr: l0,
        end_lr: l1,
        total_steps: total,
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-15;
    // end points
    assert!(close(lin.lr(0), l0) && close(lin.lr(total), l1) && close(lin.lr(total + 5), l1));
    assert!(close(cos.lr(0), l0) && close(cos.lr(total), l1) && close(cos.lr(total + 5), l1));
    // midpoint: both (η₀ + η_end)/2
    assert!(close(lin.lr(4), 0.5 * (l0 + l1)), "{}", lin.lr(4));
    assert!(close(cos.lr(4), 0.5 * (l0 + l1)), "{}", cos.lr(4));
    // quarter: linear ¾η₀ + ¼η_end; cosine η_min + (η₀ − η_min)(2 + √2)/4
    assert!(close(lin.lr(2), 0.75 * l0 + 0.25 * l1), "{}", lin.lr(2));
    let q = l1 + (l0 - l1) * (2.0 + 2f64.sqrt()) / 4.0;
    assert!(close(cos.lr(2), q), "{} vs {q}", cos.lr(2));

    // The optimizer uses η_t at step t: MeZO's displacement is −η_t g z.
    let (eps, seed, n, g) = (1e-3, 2u64, 6usize, 10.0);
    let opt = Optimizer::new(
        OptimizerConfig {
            estimator: spsa(eps, 1),
            rule: UpdateRule::Sgd { weight_decay: 0.0 },
        },
        cos,
    )
    .unwrap();
    let mut theta = start(n);
    let mut state = opt.init(&theta, seed);
    for t in 0..3u64 {
        let before = theta.clone();
        let r = opt
            .step(
                &mut state,
                &mut theta,
                &mut Script::new(vec![1.0 + eps * g, 1.0 - eps * g]),
            )
            .unwrap();
        let lr = cos.lr(t);
        assert_eq!(r.lr, lr);
        let z = direction(seed, t, 0, &vec_tensor(n));
        let want: Vec<f64> = (0..n)
            .map(|i| f64::from(before[i]) - lr * g * z[i])
            .collect();
        let scale: Vec<f64> = (0..n).map(|i| 1.0 + (lr * g * z[i]).abs()).collect();
        assert_close_f32(&format!("step {t}"), &theta, &want, &scale);
    }
}

// ---------------------------------------------------------------------------------------------
// bf16 storage
// ---------------------------------------------------------------------------------------------

/// A store with a 4 × 16 weight and a 16-element bias, in bf16 or f32, holding the same values
/// (exactly representable in bf16, in [-1, 1)).
fn twin_store(as_bf16: bool) -> ParamStore {
    let vals: Vec<f32> = start(80)
        .iter()
        .map(|v| bf16::from_f32(*v).to_f32())
        .collect();
    let data = |v: &[f32]| {
        if as_bf16 {
            TensorData::BF16(v.iter().map(|x| bf16::from_f32(*x)).collect())
        } else {
            TensorData::F32(v.to_vec())
        }
    };
    let mut s = ParamStore::new();
    s.insert(
        TensorInfo::new("blk.weight", vec![4, 16]),
        data(&vals[..64]),
    )
    .unwrap();
    s.insert(TensorInfo::new("blk.bias", vec![16]), data(&vals[64..]))
        .unwrap();
    s
}

/// A script of `count` losses that vary with the forward index (the same for both storages).
fn scripted(count: usize) -> Vec<f64> {
    (0..count)
        .map(|i| 1.0 + 0.01 * ((i as f64) * 1.7 + 0.4).sin())
        .collect()
}

/// One step of every algorithm (its default configuration, ε = 1e-3) on bf16 storage equals the
/// same step on f32 storage within a derived tolerance.
///
/// The objective is scripted, so both runs see the same losses, the same estimate and the same
/// update; they differ only in the storage's rounding. bf16 keeps 8 significant bits, so rounding a
/// value x to nearest has |rd(x) − x| ≤ 2⁻⁸|x|. A step writes the parameters once per sweep: at most
/// one sweep before each forward and one after the last (the restore fused with the update; HiZOO:
/// 4 writes for 3 forwards, its restore and its update; the conservative rule: 6 for 5, its final
/// move), so at most F + 1 writes for F forwards. Every sweep adds to the stored value and nothing
/// multiplies an earlier rounding error (the scripted losses make the estimate independent of θ,
/// and weight decay is off), so the bf16 result differs from the exact one by at most
/// Σ_writes 2⁻⁸|written value| ≤ (F + 1)·2⁻⁸·Mᵢ, with Mᵢ the largest magnitude of element i over
/// the points written: θ₀ (HiZOO's restore, up to rounding), the points the forwards saw and the
/// result, all taken from the f32 run; 1% more covers the second-order terms and the f32 run's own
/// rounding (2⁻²⁴ per write, 2⁻¹⁶ of the bf16 bound). The learning rate of each algorithm is set so
/// that its f32 step has rms 0.2, well above the tolerance ((F + 1)·2⁻⁸·Mᵢ ≈ 0.012·Mᵢ for MeZO,
/// 0.035·Mᵢ for n-SPSA's 8 forwards, with Mᵢ ≲ 1.5), and at least 80% of the bf16 weights must
/// have moved.
///
/// There is no separate bf16 optimizer: bf16 is a storage of `ParamStore` (computed in f32), so this
/// exercises the bf16 branches of the sweeps and element-wise kernels.
///
/// Mutations tried, each failing this test: in `ChunkParams::for_each`, the bf16 arm
/// `Self::BF16(s) => go(s, &mut f)` → `Self::BF16(_) => {}` (the element-wise kernels no longer
/// write bf16 storage: fails at MeZO-Adam); in zo-sampler, bf16 rounding by truncation (`let
/// rounded = x >> 16;` in `f32_bits_to_bf16`: fails at HiZOO, whose four writes all round toward
/// zero).
#[test]
fn one_step_on_bf16_storage_matches_f32() {
    let seed = 31u64;
    for alg in Algorithm::ALL {
        let cfg = alg.config(1e-3);
        let fw = cfg.forwards_per_step();
        let losses = scripted(fw);
        let run = |as_bf16: bool, lr: f64| {
            let opt = Optimizer::new(cfg, Schedule::constant(lr)).unwrap();
            let mut p = twin_store(as_bf16);
            let mut state = opt.init(&p, seed);
            let mut obj = Script::new(losses.clone());
            opt.step(&mut state, &mut p, &mut obj).unwrap();
            (flat(&p), obj.seen)
        };
        let theta0 = flat(&twin_store(false));
        let rms = |a: &[f32]| {
            let s: f64 = a
                .iter()
                .zip(&theta0)
                .map(|(x, y)| f64::from(x - y).powi(2))
                .sum();
            (s / a.len() as f64).sqrt()
        };
        let (probe, _) = run(false, 1e-2);
        let lr = 1e-2 * 0.2 / rms(&probe);
        let (want, seen) = run(false, lr);
        let (got, _) = run(true, lr);
        assert!(
            (rms(&want) - 0.2).abs() < 0.01,
            "{alg}: step rms {}",
            rms(&want)
        );
        let u = 2f64.powi(-8);
        let mut moved = 0;
        for i in 0..want.len() {
            let mut m = f64::from(theta0[i].abs()).max(f64::from(want[i].abs()));
            for s in &seen {
                m = m.max(f64::from(s[i].abs()));
            }
            let tol = 1.01 * (fw + 1) as f64 * u * m;
            let err = f64::from(got[i] - want[i]).abs();
            assert!(
                err <= tol,
                "{alg}[{i}]: bf16 {} vs f32 {} (err {err:e}, tol {tol:e})",
                got[i],
                want[i]
            );
            moved += usize::from(got[i] != theta0[i]);
        }
        assert!(
            moved * 10 >= want.len() * 8,
            "{alg}: only {moved} bf16 weights moved"
        );
    }
}
