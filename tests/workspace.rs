//! Workspace-level integration: the crates composed through the `bszo` facade.

use bszo::kalman::Gaussian;
use bszo::models::{MaskedLm, Precision};
use bszo::optim::{Algorithm, Counted, Optimizer, ParamSet};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/zo-models/tests/fixtures")
        .join(name)
}

/// BSZO's posterior, computed by the optimizer in a real step, is the Kalman crate's: the prior
/// `N(0, σ_p² I)` updated with each of the step's observations `yᵢ = (L(θ + ε zᵢ) − L(θ)) / ε`
/// along the axis `eᵢ` with noise `σ_e²` (fixed noise, α = 0; no jitter; m = k, one observation
/// per direction). Checked: the observations against the step's own losses, the posterior mean
/// and covariance against `Gaussian::scalar_update`, and the update `θ − η Σ μᵢ zᵢ` against the
/// directions recovered from the probes.
#[test]
fn kalman_crate_is_the_bszo_posterior() -> anyhow::Result<()> {
    use bszo::optim::{Estimator, ExtraSample, Schedule, Variance};
    let (k, eps, lr, prior, noise) = (3usize, 0.1, 0.05, 0.5, 0.25);
    let mut config = Algorithm::Bszo.config(eps);
    let Estimator::KalmanSubspace(ks) = &mut config.estimator else {
        anyhow::bail!("BSZO's estimator is the Kalman subspace one");
    };
    ks.k = k;
    ks.m = k;
    ks.alpha = 0.0;
    ks.jitter = 0.0;
    ks.prior_variance = Variance::Value(prior);
    ks.noise_variance = Variance::Value(noise);
    ks.extra = ExtraSample::Cached;
    let opt = Optimizer::new(config, Schedule::constant(lr))?;
    // An ill-conditioned quadratic; the probes are recorded to read the directions back.
    let scales: Vec<f64> = (0..16).map(|i| 1.0 + i as f64).collect();
    let start: Vec<f32> = (0..16).map(|i| 0.3 * (i as f32 - 7.5)).collect();
    let mut theta = ndarray::Array1::from(start.clone());
    let probes = std::cell::RefCell::new(Vec::<Vec<f32>>::new());
    let loss = |p: &ndarray::Array1<f32>| -> f64 {
        probes.borrow_mut().push(p.to_vec());
        p.iter()
            .zip(&scales)
            .map(|(&x, s)| 0.5 * s * f64::from(x) * f64::from(x))
            .sum()
    };
    let mut state = opt.init(&theta, 7);
    let mut objective = Counted::new(loss);
    let report = opt.step(&mut state, &mut theta, &mut objective)?;
    let kr = report.kalman.as_ref().expect("BSZO reports its posterior");
    assert_eq!(report.losses.len(), k + 1);
    // The observations are the one-sided differences of the step's losses.
    for i in 0..k {
        let y = (report.losses[i + 1] - report.losses[0]) / eps;
        approx::assert_relative_eq!(kr.observations[i], y, max_relative = 1e-12);
    }
    // The Kalman crate from the same prior and observations.
    let mut g = Gaussian::<f64>::isotropic(k, prior)?;
    for (i, &y) in kr.observations.iter().enumerate() {
        let mut h = ndarray::Array1::zeros(k);
        h[i] = 1.0;
        g.scalar_update(h.view(), noise, y)?;
    }
    for i in 0..k {
        approx::assert_relative_eq!(kr.posterior_mean[i], g.mean()[i], max_relative = 1e-12);
        for j in 0..k {
            approx::assert_abs_diff_eq!(
                kr.posterior_cov[i * k + j],
                g.cov()[[i, j]],
                epsilon = 1e-15
            );
        }
    }
    assert_eq!(report.projected, kr.posterior_mean);
    // The directions, read back from the probes (θ + ε zᵢ, rounded to f32: zᵢ to within
    // ulp(2.25)/ε ≈ 2.4e-6), and the update along them.
    let probes = probes.into_inner();
    assert_eq!(probes[0], start);
    let mut expected: Vec<f64> = start.iter().map(|&x| f64::from(x)).collect();
    for i in 0..k {
        for (j, e) in expected.iter_mut().enumerate() {
            let z = f64::from(probes[i + 1][j] - start[j]) / eps;
            *e -= lr * g.mean()[i] * z;
        }
    }
    let moved = expected
        .iter()
        .zip(&start)
        .map(|(e, &s)| (e - f64::from(s)).abs())
        .fold(0.0, f64::max);
    assert!(moved > 0.1, "the step moves θ: {moved}");
    for (got, want) in theta.iter().zip(&expected) {
        approx::assert_abs_diff_eq!(f64::from(*got), *want, epsilon = 1e-4);
    }
    Ok(())
}

/// A real (tiny, fixture) BERT checkpoint trained with every optimizer of the family through the
/// facade: each step uses exactly its documented forwards and moves the weights.
#[test]
fn every_optimizer_steps_a_candle_model() -> anyhow::Result<()> {
    let dir = fixture("bert");
    let (model, mut w) = MaskedLm::from_folder(&dir, Precision::F32)?;
    let ids = candle_core::Tensor::new(&[[2u32, 17, 33, 41, 3]], &candle_core::Device::Cpu)?;
    let mask =
        candle_core::Tensor::ones((1, 5), candle_core::DType::U32, &candle_core::Device::Cpu)?;
    let loss = |_: &bszo::models::Weights| -> f64 {
        let logits = model
            .forward(&ids, &mask)
            .and_then(|l| Ok(l.sqr()?.mean_all()?.to_scalar::<f32>()?));
        logits.map(f64::from).unwrap_or(f64::NAN)
    };
    // The weights share storage with the model: each algorithm steps from where the last one left
    // it.
    for alg in Algorithm::ALL {
        let before: f64 = loss(&w);
        let opt = Optimizer::named(alg, 1e-3, 1e-3)?;
        let mut state = opt.init(&w, 1);
        let mut obj = Counted::new(loss);
        let report = opt.step(&mut state, &mut w, &mut obj)?;
        assert_eq!(report.forwards, opt.forwards_per_step(), "{alg}");
        assert_eq!(obj.forwards() as usize, opt.forwards_per_step(), "{alg}");
        assert!(w.num_params() > 0);
        assert_ne!(loss(&w), before, "{alg}: the step did not change the model");
    }
    Ok(())
}
