//! Black-box optimisation with a closure: tune the 20 control pushes of a cart simulator with
//! Coulomb friction (a non-differentiable objective) using BSZO and MeZO at equal forward budgets,
//! and print both loss curves side by side.
//!
//! Run with `cargo run --release --example blackbox`.

#![allow(clippy::print_stdout)]

use bszo::optim::{
    Algorithm, Estimator, KalmanSubspace, Optimizer, OptimizerConfig, Schedule, StepReport,
    Variance,
};

const STEPS: usize = 20;
const DT: f64 = 0.1;

/// Push a unit-mass cart with forces `u` against Coulomb friction; the goal is to stop at x = 1
/// while spending little force. `signum` and `abs` make the loss non-differentiable.
fn simulate(u: &[f32]) -> f64 {
    let (mut x, mut v) = (0.0f64, 0.0f64);
    for &f in u {
        let friction = if v.abs() > 1e-9 {
            -0.3 * v.signum()
        } else {
            0.0
        };
        v += (f64::from(f) + friction) * DT;
        x += v * DT;
    }
    let effort: f64 = u.iter().map(|f| f64::from(f.abs())).sum::<f64>() / u.len() as f64;
    10.0 * (x - 1.0).powi(2) + 5.0 * v * v + 0.05 * effort
}

/// Run `opt` for `budget` forward passes; return the loss after every `every` forwards.
fn curve(opt: &Optimizer, budget: usize, every: usize) -> anyhow::Result<Vec<f64>> {
    let mut u = vec![0.0f32; STEPS];
    let mut state = opt.init(&u, 7);
    let mut out = vec![simulate(&u)];
    let mut used = 0;
    let mut objective = |p: &Vec<f32>| simulate(p);
    while used < budget {
        let report: StepReport = opt.step(&mut state, &mut u, &mut objective)?;
        let before = used / every;
        used += report.forwards;
        if used / every > before {
            out.push(simulate(&u));
        }
    }
    Ok(out)
}

/// The curve of the learning rate (from `grid`) that ends lowest, and that rate.
fn best(
    make: &dyn Fn(f64) -> anyhow::Result<Optimizer>,
    grid: &[f64],
    budget: usize,
    every: usize,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let mut out: Option<(f64, Vec<f64>)> = None;
    for &lr in grid {
        let c = curve(&make(lr)?, budget, every)?;
        let end = *c.last().unwrap_or(&f64::INFINITY);
        if out
            .as_ref()
            .is_none_or(|(_, b)| end < *b.last().unwrap_or(&f64::INFINITY))
        {
            out = Some((lr, c));
        }
    }
    out.ok_or_else(|| anyhow::anyhow!("empty learning-rate grid"))
}

fn main() -> anyhow::Result<()> {
    let (budget, every) = (3000, 300);
    let grid = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05];
    // BSZO: k = 2, m = 3 (3 forwards a step). Its prior variance is set to the scale of this
    // problem's projected gradients (the default `auto`, n·1e-6, is sized for models with millions
    // of weights).
    let bszo = |lr| {
        Ok(Optimizer::new(
            OptimizerConfig {
                estimator: Estimator::KalmanSubspace(KalmanSubspace {
                    eps: 1e-3,
                    prior_variance: Variance::Value(100.0),
                    noise_variance: Variance::Value(1.0),
                    ..KalmanSubspace::default()
                }),
                ..Algorithm::Bszo.config(1e-3)
            },
            Schedule::constant(lr),
        )?)
    };
    let mezo = |lr| Ok(Optimizer::named(Algorithm::Mezo, 1e-3, lr)?);
    let (lr_a, a) = best(&bszo, &grid, budget, every)?;
    let (lr_b, b) = best(&mezo, &grid, budget, every)?;
    println!("cart simulator, {STEPS} controls, equal budget of {budget} forward passes");
    println!("learning rate of each picked from {grid:?} by final loss");
    println!(
        "{:>9}  {:>14}  {:>14}",
        "forwards",
        format!("BSZO (lr {lr_a})"),
        format!("MeZO (lr {lr_b})")
    );
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        println!("{:>9}  {:>14.5}  {:>14.5}", i * every, x, y);
    }
    Ok(())
}
