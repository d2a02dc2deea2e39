//! Workspace-level integration: the crates composed through the `bszo` facade.

use bszo::kalman::Gaussian;
use bszo::models::{MaskedLm, Precision};
use bszo::optim::{Algorithm, Counted, Optimizer, ParamSet};
use ndarray::array;

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/zo-models/tests/fixtures")
        .join(name)
}

/// BSZO's posterior (through the optimizer) and the Kalman crate's scalar update agree: both see
/// the same isotropic prior and axis observations.
#[test]
fn kalman_crate_is_the_bszo_posterior() -> anyhow::Result<()> {
    let mut g = Gaussian::<f64>::isotropic(2, 0.5)?;
    g.scalar_update(array![1.0, 0.0].view(), 0.25, 3.0)?;
    // γ = 0.5 / (0.5 + 0.25) = 2/3: μ₁ = γ y = 2, Σ₁₁ = γ σ_e² = 1/6.
    approx::assert_abs_diff_eq!(g.mean()[0], 2.0, epsilon = 1e-12);
    approx::assert_abs_diff_eq!(g.cov()[[0, 0]], 1.0 / 6.0, epsilon = 1e-12);
    Ok(())
}

/// A real (tiny, fixture) BERT checkpoint trained with every optimizer of the family through the
/// facade: each step uses exactly its documented forwards and moves the weights.
#[test]
fn every_optimizer_steps_a_candle_model() -> anyhow::Result<()> {
    let dir = fixture("bert");
    let (model, weights) = MaskedLm::from_folder(&dir, Precision::F32)?;
    let ids = candle_core::Tensor::new(&[[2u32, 17, 33, 41, 3]], &candle_core::Device::Cpu)?;
    let mask =
        candle_core::Tensor::ones((1, 5), candle_core::DType::U32, &candle_core::Device::Cpu)?;
    let loss = |_: &bszo::models::Weights| -> f64 {
        let logits = model
            .forward(&ids, &mask)
            .and_then(|l| Ok(l.sqr()?.mean_all()?.to_scalar::<f32>()?));
        logits.map(f64::from).unwrap_or(f64::NAN)
    };
    // The clones share storage with the model: each algorithm steps from where the last one left it.
    for alg in Algorithm::ALL {
        let mut w = weights.clone();
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
