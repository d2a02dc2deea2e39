//! Forward-pass accounting, unbiasedness, BSZO's closed-form posterior, determinism, resume, error
//! paths and configuration validation.

#![allow(clippy::needless_range_loop)]

mod problems;

use problems::{Quadratic, Rng};
use zo_optim::{
    Algorithm, ConfigError, Counted, Difference, Estimator, ExtraSample, KalmanSubspace,
    NoiseUpdate, Objective, ObjectiveError, OptimError, Optimizer, OptimizerConfig, OptimizerState,
    ParamSet, ParamStore, Schedule, TensorData, TensorInfo, UpdateRule, Variance,
};
use zo_optim::{DirectionKey, Distribution};

fn quad_start(n: usize) -> (Quadratic, Vec<f32>) {
    let q = Quadratic::new(n, 10.0, 3);
    let mut rng = Rng::new(5);
    let theta = (0..n).map(|_| rng.normal() as f32).collect();
    (q, theta)
}

#[test]
fn forwards_per_step_are_as_specified_and_counted() {
    let expected = [
        (Algorithm::Mezo, 2),
        (Algorithm::Nspsa, 8), // two-point, n = 4: 2n (MeZO's medium_models trainer)
        (Algorithm::MezoAdam, 2),
        (Algorithm::ZoSgdMmt, 2),
        (Algorithm::ZoSgdSign, 2),
        (Algorithm::ZoSgdCons, 5),
        (Algorithm::Hizoo, 3),
        (Algorithm::Lozo, 2),
        (Algorithm::Bszo, 3),  // 1 + k, k = 2
        (Algorithm::BszoB, 4), // 1 + m, m = 3
        (Algorithm::Fzoo, 9),  // 1 + N, N = 8
    ];
    let (q, theta0) = quad_start(8);
    for (alg, fw) in expected {
        let opt = Optimizer::named(alg, 1e-3, 1e-4).unwrap();
        assert_eq!(opt.forwards_per_step(), fw, "{alg}");
        let mut theta = theta0.clone();
        let mut state = opt.init(&theta, 1);
        let mut obj = Counted::new(|p: &Vec<f32>| q.loss(p));
        for _ in 0..7 {
            let r = opt.step(&mut state, &mut theta, &mut obj).unwrap();
            assert_eq!(r.forwards, fw, "{alg} report");
            assert_eq!(r.losses.len(), fw, "{alg} losses");
        }
        assert_eq!(obj.forwards(), 7 * fw as u64, "{alg} counted");
        assert_eq!(state.step, 7);
    }
    // One-sided n-SPSA: 1 + n; FZOO with N = 3: 1 + N; the HiZOO logging forward: 4; BSZO with
    // other k, m, extra samples and differences.
    let c = |estimator| OptimizerConfig {
        estimator,
        rule: UpdateRule::Sgd { weight_decay: 0.0 },
    };
    let one_sided = c(Estimator::Spsa {
        eps: 1e-3,
        samples: 3,
        one_sided: true,
        distribution: Default::default(),
    });
    assert_eq!(one_sided.forwards_per_step(), 4);
    let fzoo = c(Estimator::Fzoo {
        eps: 1e-3,
        samples: 3,
        std_floor: 1e-8,
    });
    assert_eq!(fzoo.forwards_per_step(), 4);
    let hizoo_log = c(Estimator::Hessian {
        eps: 1e-3,
        alpha: 1e-8,
        log_loss_after_update: true,
    });
    assert_eq!(hizoo_log.forwards_per_step(), 4);
    let bszo = |extra, difference| {
        c(Estimator::KalmanSubspace(KalmanSubspace {
            k: 4,
            m: 6,
            extra,
            difference,
            ..Default::default()
        }))
    };
    let (one, central) = (Difference::OneSided, Difference::Central);
    assert_eq!(bszo(ExtraSample::Cached, one).forwards_per_step(), 5);
    assert_eq!(bszo(ExtraSample::Fresh, one).forwards_per_step(), 7);
    assert_eq!(bszo(ExtraSample::Requery, one).forwards_per_step(), 7);
    assert_eq!(bszo(ExtraSample::Cached, central).forwards_per_step(), 9);
    assert_eq!(bszo(ExtraSample::Fresh, central).forwards_per_step(), 13);
    assert_eq!(bszo(ExtraSample::Requery, central).forwards_per_step(), 13);
    for cfg in [
        one_sided,
        fzoo,
        hizoo_log,
        bszo(ExtraSample::Cached, one),
        bszo(ExtraSample::Fresh, one),
        bszo(ExtraSample::Requery, one),
        bszo(ExtraSample::Cached, central),
        bszo(ExtraSample::Fresh, central),
        bszo(ExtraSample::Requery, central),
    ] {
        let opt = Optimizer::new(cfg, Schedule::constant(1e-4)).unwrap();
        let mut theta = theta0.clone();
        let mut state = opt.init(&theta, 1);
        let mut obj = Counted::new(|p: &Vec<f32>| q.loss(p));
        opt.step(&mut state, &mut theta, &mut obj).unwrap();
        assert_eq!(obj.forwards() as usize, cfg.forwards_per_step());
    }
}

/// The mean step of MeZO over many seeds approaches −η ∇L.
///
/// For a quadratic the central difference is exact, so each step is Δθ = −η (zᵀa) z with a = ∇L.
/// Component i has mean −η aᵢ and variance η² (‖a‖² + aᵢ²) (Gaussian fourth moments), so the mean of
/// N steps has standard error η √((‖a‖² + aᵢ²)/N) ≤ η ‖a‖ √(2/N). We allow 5 standard errors, plus
/// f32 rounding of the perturbed parameters (relative 1e-3 of ‖a‖ at ε = 1e-2, far below).
#[test]
fn two_point_estimate_is_unbiased() {
    let n = 6;
    let (q, theta0) = quad_start(n);
    let grad = q.grad(&theta0);
    let norm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
    let lr = 1e-3;
    let opt = Optimizer::named(Algorithm::Mezo, 1e-2, lr).unwrap();
    let trials = 6000;
    let mut mean = vec![0.0f64; n];
    for seed in 0..trials {
        let mut theta = theta0.clone();
        let mut state = opt.init(&theta, seed);
        opt.step(&mut state, &mut theta, &mut |p: &Vec<f32>| q.loss(p))
            .unwrap();
        for i in 0..n {
            mean[i] += (f64::from(theta[i]) - f64::from(theta0[i])) / trials as f64;
        }
    }
    let tol = 5.0 * lr * norm * (2.0 / trials as f64).sqrt();
    for i in 0..n {
        let err = (mean[i] + lr * grad[i]).abs();
        assert!(
            err < tol,
            "component {i}: mean step {} vs -lr*grad {} (tol {tol})",
            mean[i],
            -lr * grad[i]
        );
    }
}

/// BSZO with m = k axis samples and a fixed noise level has E[Δθ] = −η γ k ∇L.
///
/// α = 1e-12 keeps σ_e at its initial value; with σ_p² = σ_e² = 1, γ = ½. Each step is
/// Δθ = −η γ Σⱼ yⱼ zⱼ with yⱼ = zⱼᵀa + (ε/2) zⱼᵀAzⱼ (one-sided); the ε term has zero mean against zⱼ
/// (odd moments vanish). The mean of N steps has standard error ≤ η γ ‖a‖ √(2k/N) + the ε term's
/// spread η γ (ε/2) ‖A‖_F √(3k/N); we allow 5 standard errors.
#[test]
fn bszo_expected_step_is_lr_gamma_k_gradient() {
    let n = 6;
    let (q, theta0) = quad_start(n);
    let grad = q.grad(&theta0);
    let norm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
    let (k, lr, gamma, eps) = (3usize, 1e-3, 0.5, 1e-3);
    let cfg = OptimizerConfig {
        estimator: Estimator::KalmanSubspace(KalmanSubspace {
            k,
            m: k,
            eps,
            alpha: 1e-12,
            prior_variance: Variance::Value(1.0),
            noise_variance: Variance::Value(1.0),
            jitter: 0.0,
            ..Default::default()
        }),
        rule: UpdateRule::Sgd { weight_decay: 0.0 },
    };
    let opt = Optimizer::new(cfg, Schedule::constant(lr)).unwrap();
    let trials = 4000;
    let mut mean = vec![0.0f64; n];
    for seed in 0..trials {
        let mut theta = theta0.clone();
        let mut state = opt.init(&theta, seed);
        let r = opt
            .step(&mut state, &mut theta, &mut |p: &Vec<f32>| q.loss(p))
            .unwrap();
        let kal = r.kalman.unwrap();
        assert!((kal.gamma - gamma).abs() < 1e-6, "gamma {}", kal.gamma);
        for i in 0..n {
            mean[i] += (f64::from(theta[i]) - f64::from(theta0[i])) / trials as f64;
        }
    }
    let fro = q.lambda.iter().map(|l| l * l).sum::<f64>().sqrt();
    let se = lr
        * gamma
        * (norm * (2.0 * k as f64 / trials as f64).sqrt()
            + eps / 2.0 * fro * (3.0 * k as f64 / trials as f64).sqrt());
    for i in 0..n {
        let expect = -lr * gamma * k as f64 * grad[i];
        assert!(
            (mean[i] - expect).abs() < 5.0 * se,
            "component {i}: {} vs {expect} (se {se})",
            mean[i]
        );
    }
}

/// Solve a small SPD system by Gauss–Jordan (test oracle).
fn inverse(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = a.len();
    let mut m: Vec<Vec<f64>> = a
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut row = r.clone();
            row.extend((0..n).map(|j| if i == j { 1.0 } else { 0.0 }));
            row
        })
        .collect();
    for c in 0..n {
        let piv = (c..n)
            .max_by(|&x, &y| m[x][c].abs().total_cmp(&m[y][c].abs()))
            .unwrap();
        m.swap(c, piv);
        let p = m[c][c];
        for v in &mut m[c] {
            *v /= p;
        }
        for r in 0..n {
            if r != c {
                let f = m[r][c];
                let row_c = m[c].clone();
                for (v, w) in m[r].iter_mut().zip(row_c) {
                    *v -= f * w;
                }
            }
        }
    }
    m.into_iter().map(|r| r[n..].to_vec()).collect()
}

/// BSZO (k = 2, m = 3, cached extra sample) equals the batch posterior of the paper, step
/// by step, with the noise sequence recomputed by hand from the EMA rule:
/// Σ = (σ_p⁻² I + Dᵀ R⁻¹ D)⁻¹, μ = Σ Dᵀ R⁻¹ Y, rows of D = e₁, e₂, e_j (j = argmax Σᵢᵢ after two updates),
/// R = diag(σ₁², σ₂², σ₃²).
#[test]
fn bszo_posterior_matches_the_closed_form_step_by_step() {
    for placement in [NoiseUpdate::EveryObservation, NoiseUpdate::ExtraSamplesOnly] {
        let n = 10;
        let (q, mut theta) = quad_start(n);
        let (sp2, se2_init, alpha, floor) = (0.7, 0.3, 0.1, 0.1);
        let cfg = OptimizerConfig {
            estimator: Estimator::KalmanSubspace(KalmanSubspace {
                k: 2,
                m: 3,
                eps: 1e-3,
                alpha,
                prior_variance: Variance::Value(sp2),
                noise_variance: Variance::Value(se2_init),
                noise_floor: floor,
                noise_update: placement,
                extra: ExtraSample::Cached,
                difference: Difference::OneSided,
                jitter: 0.0,
            }),
            rule: UpdateRule::Sgd { weight_decay: 0.0 },
        };
        let opt = Optimizer::new(cfg, Schedule::constant(1e-3)).unwrap();
        let mut state = opt.init(&theta, 9);
        let mut s2 = se2_init;
        let noise = |s2: f64| (s2.sqrt().max(floor * se2_init.sqrt())).powi(2);
        for _ in 0..6 {
            let r = opt
                .step(&mut state, &mut theta, &mut |p: &Vec<f32>| q.loss(p))
                .unwrap();
            let kal = r.kalman.unwrap();
            let y = &kal.observations;
            assert_eq!(y.len(), 3);
            // Sequential residuals: axis updates on an isotropic prior keep Σ diagonal and leave the
            // other coordinate's mean at 0, so r₁ = y₁ and r₂ = y₂.
            let mut sig = [0.0; 3];
            let mut cur = noise(s2);
            for (t, yt) in y.iter().take(2).enumerate() {
                if placement == NoiseUpdate::EveryObservation {
                    s2 = (1.0 - alpha) * s2 + alpha * yt * yt;
                    cur = noise(s2);
                }
                sig[t] = cur;
            }
            let post_var = |s: f64| sp2 * s / (sp2 + s);
            let j = if post_var(sig[1]) > post_var(sig[0]) {
                1
            } else {
                0
            };
            assert_eq!(
                y[2], y[j],
                "the extra sample re-uses the cached value of the widest axis"
            );
            let mu_j = sp2 / (sp2 + sig[j]) * y[j];
            let r3 = y[2] - mu_j;
            s2 = (1.0 - alpha) * s2 + alpha * r3 * r3;
            sig[2] = noise(s2);
            // Batch posterior.
            let rows = [
                [1.0, 0.0],
                [0.0, 1.0],
                if j == 0 { [1.0, 0.0] } else { [0.0, 1.0] },
            ];
            let mut prec = vec![vec![1.0 / sp2, 0.0], vec![0.0, 1.0 / sp2]];
            let mut rhs = [0.0; 2];
            for (t, d) in rows.iter().enumerate() {
                for a in 0..2 {
                    rhs[a] += d[a] * y[t] / sig[t];
                    for b in 0..2 {
                        prec[a][b] += d[a] * d[b] / sig[t];
                    }
                }
            }
            let cov = inverse(&prec);
            let mu: Vec<f64> = (0..2)
                .map(|a| cov[a][0] * rhs[0] + cov[a][1] * rhs[1])
                .collect();
            for a in 0..2 {
                let tol = 1e-9 * (1.0 + mu[a].abs());
                assert!(
                    (kal.posterior_mean[a] - mu[a]).abs() < tol,
                    "{placement:?} μ[{a}] {} vs {}",
                    kal.posterior_mean[a],
                    mu[a]
                );
                for b in 0..2 {
                    let got = kal.posterior_cov[a * 2 + b];
                    assert!(
                        (got - cov[a][b]).abs() < 1e-12,
                        "{placement:?} Σ[{a}{b}] {got} vs {}",
                        cov[a][b]
                    );
                }
            }
            assert!((kal.noise_variance - sig[2]).abs() < 1e-12 * sig[2].max(1.0));
            assert!((kal.gamma - sp2 / (sp2 + sig[2])).abs() < 1e-12);
        }
    }
}

/// The authors' switches (AeonianQuill/BSZO `bszo_optimizer_v3.py`): central differences
/// (`bayesian_one_sided = False`), fresh re-queries along axis τ mod k (`bayesian_adaptive_sampling =
/// False`) and a fixed noise level (α = 0, i.e. `bayesian_adaptive_noise = False`). Every
/// observation is checked against the losses the objective returned at the points it was asked
/// for, and the posterior against the batch formula with R = σ_e,init² I.
#[test]
fn bszo_central_requery_fixed_noise_match_their_definitions() {
    let n = 12;
    let (q, mut theta) = quad_start(n);
    let (sp2, se2, eps, k, m) = (0.7, 0.3, 1e-3, 2, 5);
    let cfg = OptimizerConfig {
        estimator: Estimator::KalmanSubspace(KalmanSubspace {
            k,
            m,
            eps,
            alpha: 0.0,
            prior_variance: Variance::Value(sp2),
            noise_variance: Variance::Value(se2),
            noise_floor: 0.1,
            noise_update: NoiseUpdate::EveryObservation,
            extra: ExtraSample::Requery,
            difference: Difference::Central,
            jitter: 0.0,
        }),
        rule: UpdateRule::Sgd { weight_decay: 0.0 },
    };
    let opt = Optimizer::new(cfg, Schedule::constant(1e-3)).unwrap();
    assert_eq!(opt.forwards_per_step(), 1 + 2 * m);
    let mut state = opt.init(&theta, 4);
    for _ in 0..3 {
        let start = theta.clone();
        let mut seen: Vec<(Vec<f32>, f64)> = Vec::new();
        let r = opt
            .step(&mut state, &mut theta, &mut |p: &Vec<f32>| {
                let l = q.loss(p);
                seen.push((p.clone(), l));
                l
            })
            .unwrap();
        assert_eq!(seen.len(), 1 + 2 * m);
        assert_eq!(seen[0].0, start, "f0 at the unperturbed point");
        let kal = r.kalman.unwrap();
        let y = &kal.observations;
        assert_eq!(y.len(), m);
        // Observation τ is (L(θ + εz_j) − L(θ − εz_j)) / 2ε with j = τ mod k: the two points are
        // symmetric about θ, and re-queries of an axis visit the same points.
        let mut dirs: Vec<Vec<f64>> = Vec::new();
        for tau in 0..m {
            let (plus, lp) = &seen[1 + 2 * tau];
            let (minus, lm) = &seen[2 + 2 * tau];
            assert_eq!(y[tau], (lp - lm) / (2.0 * eps), "y[{tau}]");
            let d: Vec<f64> = plus
                .iter()
                .zip(&start)
                .map(|(p, s)| f64::from(p - s) / eps)
                .collect();
            for i in 0..n {
                let mid = 0.5 * (f64::from(plus[i]) + f64::from(minus[i]));
                assert!((mid - f64::from(start[i])).abs() < 1e-6, "symmetric");
            }
            if tau < k {
                dirs.push(d);
            } else {
                let same = &dirs[tau % k];
                for i in 0..n {
                    assert!((d[i] - same[i]).abs() < 1e-2, "axis {} re-queried", tau % k);
                }
            }
        }
        // Central differences of a quadratic are exact: two queries of one axis agree closely.
        for tau in k..m {
            let a = y[tau % k];
            assert!(
                (y[tau] - a).abs() < 1e-3 * (1.0 + a.abs()),
                "{} vs {a}",
                y[tau]
            );
        }
        // Batch posterior with rows e_(τ mod k) and R = σ_e² I (no adaptation).
        assert!(
            (kal.noise_variance - se2).abs() < 1e-15,
            "{}",
            kal.noise_variance
        );
        for a in 0..k {
            let count = (0..m).filter(|t| t % k == a).count() as f64;
            let sum: f64 = (0..m).filter(|t| t % k == a).map(|t| y[t]).sum();
            let se2 = kal.noise_variance;
            let var = 1.0 / (1.0 / sp2 + count / se2);
            let mu = var * sum / se2;
            assert!((kal.posterior_cov[a * k + a] - var).abs() < 1e-12);
            assert!(
                (kal.posterior_mean[a] - mu).abs() < 1e-9 * (1.0 + mu.abs()),
                "μ[{a}] {} vs {mu}",
                kal.posterior_mean[a]
            );
        }
    }
    // α = 0 keeps the noise state at its initial value across steps.
    let saved = serde_json::to_value(&state).unwrap().to_string();
    assert!(saved.contains("\"residual_ema\":0.3"), "{saved}");
}

fn big_store(n: usize) -> ParamStore {
    let mut rng = Rng::new(77);
    let mut store = ParamStore::new();
    let w: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    store
        .insert(
            TensorInfo::new("layer.weight", vec![n / 100, 100]),
            TensorData::F32(w),
        )
        .unwrap();
    let b: Vec<f32> = (0..100).map(|_| rng.normal() as f32).collect();
    store
        .insert(TensorInfo::new("layer.bias", vec![100]), TensorData::F32(b))
        .unwrap();
    store
}

fn store_loss(p: &ParamStore) -> f64 {
    let w = p.get("layer.weight").unwrap().to_f32();
    let b = p.get("layer.bias").unwrap().to_f32();
    let sw: f64 = w
        .iter()
        .enumerate()
        .map(|(i, x)| (1.0 + (i % 7) as f64) * f64::from(*x - 0.5).powi(2))
        .sum();
    let sb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum();
    (sw + sb) / w.len() as f64
}

fn bits(p: &ParamStore) -> Vec<u32> {
    let mut out: Vec<u32> = p
        .get("layer.weight")
        .unwrap()
        .to_f32()
        .iter()
        .map(|x| x.to_bits())
        .collect();
    out.extend(
        p.get("layer.bias")
            .unwrap()
            .to_f32()
            .iter()
            .map(|x| x.to_bits()),
    );
    out
}

fn optimizer_for(alg: Algorithm) -> Optimizer {
    let mut c = alg.config(1e-3);
    // Exercise weight decay and the general kernels where the rule has them.
    if alg != Algorithm::Mezo
        && let UpdateRule::Sgd { weight_decay }
        | UpdateRule::Adam { weight_decay, .. }
        | UpdateRule::Momentum { weight_decay, .. } = &mut c.rule
    {
        *weight_decay = 0.01;
    }
    let sched = Schedule::Cosine {
        lr: 1e-3,
        end_lr: 1e-4,
        total_steps: 8,
    };
    Optimizer::new(c, sched).unwrap()
}

fn run_steps(opt: &Optimizer, params: &mut ParamStore, state: &mut OptimizerState, steps: usize) {
    for _ in 0..steps {
        opt.step(state, params, &mut store_loss).unwrap();
    }
}

/// Same seed ⇒ bitwise-identical parameters with 1 or 2 threads; saving the state at N/2 and
/// resuming matches the uninterrupted run bit for bit. The tensor spans several parallel chunks.
#[test]
fn deterministic_across_threads_and_resume() {
    let n = 300_000;
    let steps = 8;
    for alg in Algorithm::ALL {
        let opt = optimizer_for(alg);
        let run_in = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut p = big_store(n);
                let mut s = opt.init(&p, 2024);
                run_steps(&opt, &mut p, &mut s, steps);
                (bits(&p), s)
            })
        };
        let (one, s1) = run_in(1);
        let (two, s2) = run_in(2);
        assert!(one == two, "{alg}: 1 vs 2 threads differ");
        assert_eq!(s1, s2);
        assert_ne!(one, bits(&big_store(n)), "{alg}: parameters did not move");

        // Resume through a serialised state and serialised parameters.
        let mut p = big_store(n);
        let mut s = opt.init(&p, 2024);
        run_steps(&opt, &mut p, &mut s, steps / 2);
        let saved_state = serde_json::to_string(&s).unwrap();
        let saved_params = serde_json::to_string(&p).unwrap();
        drop((p, s));
        let mut p: ParamStore = serde_json::from_str(&saved_params).unwrap();
        let mut s: OptimizerState = serde_json::from_str(&saved_state).unwrap();
        run_steps(&opt, &mut p, &mut s, steps - steps / 2);
        assert!(bits(&p) == one, "{alg}: resumed run differs");
        assert_eq!(s, s1, "{alg}: resumed state differs");
    }
}

/// Tensor identity is by name: two stores holding the same tensors in different orders end up equal.
#[test]
fn insertion_order_does_not_matter() {
    let mut a = ParamStore::new();
    let mut b = ParamStore::new();
    let t1 = (
        TensorInfo::new("a.weight", vec![30, 4]),
        TensorData::F32(vec![0.5; 120]),
    );
    let t2 = (
        TensorInfo::new("b.bias", vec![7]),
        TensorData::F32(vec![-0.5; 7]),
    );
    a.insert(t1.0.clone(), t1.1.clone()).unwrap();
    a.insert(t2.0.clone(), t2.1.clone()).unwrap();
    b.insert(t2.0, t2.1).unwrap();
    b.insert(t1.0, t1.1).unwrap();
    let loss = |p: &ParamStore| {
        let w = p.get("a.weight").unwrap().to_f32();
        let v = p.get("b.bias").unwrap().to_f32();
        w.iter()
            .chain(&v)
            .map(|x| f64::from(*x).powi(2))
            .sum::<f64>()
    };
    for alg in Algorithm::ALL {
        let opt = Optimizer::named(alg, 1e-3, 1e-3).unwrap();
        let (mut pa, mut pb) = (a.clone(), b.clone());
        let (mut sa, mut sb) = (opt.init(&pa, 5), opt.init(&pb, 5));
        for _ in 0..3 {
            opt.step(&mut sa, &mut pa, &mut |p: &ParamStore| loss(p))
                .unwrap();
            opt.step(&mut sb, &mut pb, &mut |p: &ParamStore| loss(p))
                .unwrap();
        }
        for name in ["a.weight", "b.bias"] {
            assert_eq!(pa.get(name), pb.get(name), "{alg}: {name}");
        }
    }
}

struct FailAt {
    call: usize,
    at: usize,
    value: Option<f64>,
    q: Quadratic,
}

impl Objective<Vec<f32>> for FailAt {
    fn loss(&mut self, p: &Vec<f32>) -> Result<f64, ObjectiveError> {
        self.call += 1;
        if self.call == self.at {
            return match self.value {
                Some(v) => Ok(v),
                None => Err("the batch could not be read".into()),
            };
        }
        Ok(self.q.loss(p))
    }
}

/// A NaN, infinite or failed loss at any forward stops the step with a typed error, puts the
/// parameters back (within 2 ulp) and leaves the state untouched.
#[test]
fn bad_losses_restore_parameters_and_state() {
    let (q, theta0) = quad_start(12);
    let mut optimizers: Vec<(String, Optimizer)> = Algorithm::ALL
        .iter()
        .map(|&alg| (alg.to_string(), Optimizer::named(alg, 1e-3, 1e-3).unwrap()))
        .collect();
    for (extra, difference) in [
        (ExtraSample::Requery, Difference::Central),
        (ExtraSample::Fresh, Difference::Central),
        (ExtraSample::Cached, Difference::Central),
        (ExtraSample::Requery, Difference::OneSided),
    ] {
        let cfg = OptimizerConfig {
            estimator: Estimator::KalmanSubspace(KalmanSubspace {
                k: 2,
                m: 3,
                eps: 1e-3,
                extra,
                difference,
                ..Default::default()
            }),
            rule: UpdateRule::Sgd { weight_decay: 0.0 },
        };
        let name = format!("bszo {extra:?} {difference:?}");
        optimizers.push((name, Optimizer::new(cfg, Schedule::constant(1e-3)).unwrap()));
    }
    for (alg, opt) in &optimizers {
        for at in 1..=opt.forwards_per_step() {
            for value in [Some(f64::NAN), Some(f64::INFINITY), None] {
                let mut theta = theta0.clone();
                let mut state = opt.init(&theta, 3);
                let before = state.clone();
                let mut obj = FailAt {
                    call: 0,
                    at,
                    value,
                    q: q.clone(),
                };
                let err = opt.step(&mut state, &mut theta, &mut obj).unwrap_err();
                match (&err, value) {
                    (OptimError::NonFiniteLoss { forward, step, .. }, Some(_)) => {
                        assert_eq!((*forward, *step), (at, 0), "{alg}");
                    }
                    (OptimError::Objective { forward, .. }, None) => {
                        assert_eq!(*forward, at, "{alg}")
                    }
                    other => panic!("{alg}: unexpected {other:?}"),
                }
                assert_eq!(state, before, "{alg}: state changed");
                for (a, b) in theta.iter().zip(&theta0) {
                    let ulp = f32::EPSILON * b.abs().max(f32::MIN_POSITIVE);
                    assert!(
                        (a - b).abs() <= 2.0 * ulp,
                        "{alg} at forward {at}: {a} vs {b}"
                    );
                }
            }
        }
    }
}

#[test]
fn invalid_configurations_are_typed_errors() {
    let sgd = UpdateRule::Sgd { weight_decay: 0.0 };
    let mk = |e| {
        Optimizer::new(
            OptimizerConfig {
                estimator: e,
                rule: sgd,
            },
            Schedule::constant(1e-3),
        )
    };
    let ks = KalmanSubspace::default();
    let cases: Vec<(Estimator, ConfigError)> = vec![
        (
            Estimator::Spsa {
                eps: 0.0,
                samples: 1,
                one_sided: false,
                distribution: Default::default(),
            },
            ConfigError::NotPositive {
                field: "eps",
                value: 0.0,
            },
        ),
        (
            Estimator::Spsa {
                eps: 1e-3,
                samples: 0,
                one_sided: false,
                distribution: Default::default(),
            },
            ConfigError::TooSmall {
                field: "samples",
                min: 1,
                value: 0,
            },
        ),
        (
            Estimator::KalmanSubspace(KalmanSubspace { k: 0, ..ks }),
            ConfigError::TooSmall {
                field: "k",
                min: 1,
                value: 0,
            },
        ),
        (
            Estimator::KalmanSubspace(KalmanSubspace { m: 1, ..ks }),
            ConfigError::SamplesBelowSubspace { m: 1, k: 2 },
        ),
        (
            Estimator::KalmanSubspace(KalmanSubspace { alpha: 1.0, ..ks }),
            ConfigError::OutOfRange {
                field: "alpha",
                interval: "[0, 1)",
                value: 1.0,
            },
        ),
        (
            Estimator::KalmanSubspace(KalmanSubspace { alpha: -0.1, ..ks }),
            ConfigError::OutOfRange {
                field: "alpha",
                interval: "[0, 1)",
                value: -0.1,
            },
        ),
        (
            Estimator::KalmanSubspace(KalmanSubspace { eps: -1e-4, ..ks }),
            ConfigError::NotPositive {
                field: "eps",
                value: -1e-4,
            },
        ),
        (
            Estimator::KalmanSubspace(KalmanSubspace {
                prior_variance: Variance::Value(0.0),
                ..ks
            }),
            ConfigError::NotPositive {
                field: "prior_variance",
                value: 0.0,
            },
        ),
        (
            Estimator::LowRank {
                eps: 1e-3,
                rank: 0,
                interval: 50,
            },
            ConfigError::TooSmall {
                field: "rank",
                min: 1,
                value: 0,
            },
        ),
        (
            Estimator::Hessian {
                eps: 1e-3,
                alpha: 1.5,
                log_loss_after_update: false,
            },
            ConfigError::OutOfRange {
                field: "alpha",
                interval: "[0, 1)",
                value: 1.5,
            },
        ),
    ];
    for (e, want) in cases {
        assert_eq!(mk(e).unwrap_err(), want);
    }
    // FZOO: σ needs two perturbed losses, ε and σ's floor are finite and positive; each error
    // names its field.
    let fzoo = |eps, samples, std_floor| Estimator::Fzoo {
        eps,
        samples,
        std_floor,
    };
    assert!(mk(fzoo(1e-3, 2, 1e-8)).is_ok());
    for samples in [0, 1] {
        assert_eq!(
            mk(fzoo(1e-3, samples, 1e-8)).unwrap_err(),
            ConfigError::TooSmall {
                field: "samples",
                min: 2,
                value: samples as u64,
            }
        );
    }
    let fzoo_cases = [
        (fzoo(0.0, 8, 1e-8), "eps"),
        (fzoo(-1e-3, 8, 1e-8), "eps"),
        (fzoo(f64::NAN, 8, 1e-8), "eps"),
        (fzoo(1e-3, 8, 0.0), "std_floor"),
        (fzoo(1e-3, 8, -1e-8), "std_floor"),
        (fzoo(1e-3, 8, f64::NAN), "std_floor"),
        (fzoo(1e-3, 8, f64::INFINITY), "std_floor"),
    ];
    for (e, name) in fzoo_cases {
        let err = mk(e).unwrap_err();
        assert!(
            matches!(err, ConfigError::NotPositive { field, .. } if field == name),
            "{e:?}: {err:?}"
        );
        assert!(err.to_string().contains(&format!("`{name}`")), "{err}");
    }
    assert!(
        mk(fzoo(1e-3, 1, 1e-8))
            .unwrap_err()
            .to_string()
            .contains("`samples` must be at least 2")
    );
    assert_eq!("fzoo".parse::<Algorithm>().unwrap(), Algorithm::Fzoo);
    let bad_rule = OptimizerConfig {
        estimator: Algorithm::Mezo.config(1e-3).estimator,
        rule: UpdateRule::Adam {
            beta1: 1.0,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
    };
    assert!(matches!(
        Optimizer::new(bad_rule, Schedule::constant(1e-3)),
        Err(ConfigError::OutOfRange { field: "beta1", .. })
    ));
    assert!(matches!(
        Optimizer::new(Algorithm::Mezo.config(1e-3), Schedule::constant(f64::NAN)),
        Err(ConfigError::Negative { field: "lr", .. })
    ));
    let hizoo_adam = OptimizerConfig {
        rule: UpdateRule::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
        ..Algorithm::Hizoo.config(1e-3)
    };
    assert!(matches!(
        Optimizer::new(hizoo_adam, Schedule::constant(1e-3)),
        Err(ConfigError::Unsupported(_))
    ));
    assert_eq!("bszo-b".parse::<Algorithm>().unwrap(), Algorithm::BszoB);
    assert!(
        "adamw"
            .parse::<Algorithm>()
            .unwrap_err()
            .to_string()
            .contains("adamw")
    );
}

#[test]
fn state_of_another_parameter_set_is_rejected() {
    let opt = Optimizer::named(Algorithm::MezoAdam, 1e-3, 1e-3).unwrap();
    let small = vec![0.0f32; 4];
    let mut big = vec![0.0f32; 5];
    let mut state = opt.init(&small, 1);
    let err = opt
        .step(&mut state, &mut big, &mut |p: &Vec<f32>| {
            p.iter().map(|x| f64::from(*x)).sum()
        })
        .unwrap_err();
    assert!(matches!(err, OptimError::StateMismatch(_)), "{err}");
    assert_eq!(big.num_params(), 5);
}

/// LOZO's step on a matrix is exactly −η g U Vᵀ, with U drawn from the step's key and V from the key
/// of the last refresh step (every ν steps), both regenerated here from zo-sampler's streams.
#[test]
fn lozo_step_is_the_low_rank_direction() {
    use zo_sampler::{Stream, TensorId};
    let (rows, cols, r, nu, lr, seed) = (6usize, 5usize, 2usize, 3u64, 1e-3, 17u64);
    let q = Quadratic::new(rows * cols, 10.0, 3);
    let mut theta = ndarray::Array2::<f32>::from_shape_fn((rows, cols), |(i, j)| {
        ((i * cols + j) as f32 * 0.1).sin()
    });
    let cfg = OptimizerConfig {
        estimator: Estimator::LowRank {
            eps: 1e-3,
            rank: r as u32,
            interval: nu,
        },
        rule: UpdateRule::Sgd { weight_decay: 0.0 },
    };
    let opt = Optimizer::new(cfg, Schedule::constant(lr)).unwrap();
    let mut state = opt.init(&theta, seed);
    let id = TensorId::from_name("params");
    for step in 0..7u64 {
        let before = theta.clone();
        let rep = opt
            .step(&mut state, &mut theta, &mut |p: &ndarray::Array2<f32>| {
                q.loss(p.as_slice().unwrap())
            })
            .unwrap();
        let g = rep.projected[0];
        let mut u = vec![0.0f32; rows * r];
        Stream::new(DirectionKey::new(seed, step, 0), id, Distribution::Normal).fill(0, &mut u);
        let mut v = vec![0.0f32; cols * r];
        let v_step = step - step % nu;
        Stream::new(
            DirectionKey::new(seed, v_step, u32::MAX),
            id,
            Distribution::Normal,
        )
        .fill(0, &mut v);
        for a in 0..rows {
            for b in 0..cols {
                let z: f64 = (0..r)
                    .map(|k| f64::from(u[a * r + k]) * f64::from(v[b * r + k]))
                    .sum();
                let expect = -lr * g * z;
                let got = f64::from(theta[[a, b]]) - f64::from(before[[a, b]]);
                assert!(
                    (got - expect).abs() < 1e-6 + 1e-3 * expect.abs(),
                    "step {step} [{a},{b}]: {got} vs {expect}"
                );
            }
        }
    }
}
