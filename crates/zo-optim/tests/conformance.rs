//! Conformance table: every algorithm reduces four synthetic losses by a stated factor within a

#![allow(clippy::print_stdout)]
//! stated forward-pass budget, at fixed seeds.

mod problems;

use ndarray::Array2;
use problems::{LinearRegression, LogisticRegression, Quadratic, rosenbrock};
use zo_optim::{
    Algorithm, Estimator, KalmanSubspace, Optimizer, OptimizerConfig, Schedule, Variance,
};

const EPS: f64 = 1e-3;

type Loss = Box<dyn Fn(&[f32]) -> f64>;

#[derive(Clone, Copy, Debug)]
enum Problem {
    Quadratic,
    Rosenbrock,
    LinearRegression,
    LogisticRegression,
}

/// The configuration used in the table: the algorithms' defaults, except that BSZO's prior
/// variance σ_p² = 1e4 and initial noise variance σ_e² = 1 are set for these small problems, whose
/// projected gradients are of order 1–100 (the "auto" value `n·1e-6` is sized for models with
/// millions of parameters and gradients far smaller).
fn config(alg: Algorithm) -> OptimizerConfig {
    let mut c = alg.config(EPS);
    if let Estimator::KalmanSubspace(k) = &mut c.estimator {
        *k = KalmanSubspace {
            prior_variance: Variance::Value(1e4),
            noise_variance: Variance::Value(1.0),
            eps: EPS,
            ..*k
        };
    }
    c
}

/// Run `alg` from the problem's start within `budget` forwards; returns (initial, final) loss.
fn run(alg: Algorithm, problem: Problem, lr: f64, budget: usize, seed: u64) -> (f64, f64) {
    let quad = Quadratic::new(20, 100.0, 7);
    let lin = LinearRegression::new(200, 10, 0.1, 11);
    let log = LogisticRegression::new(400, 10, 13);
    // The parameters are matrices, so that LOZO's directions are genuinely low-rank.
    let (start, shape, f): (Vec<f32>, (usize, usize), Loss) = match problem {
        Problem::Quadratic => (vec![0.0; 20], (5, 4), Box::new(move |t| quad.loss(t))),
        Problem::Rosenbrock => (vec![-1.2, 1.0], (1, 2), Box::new(rosenbrock)),
        Problem::LinearRegression => (vec![0.0; 10], (2, 5), Box::new(move |t| lin.loss(t))),
        Problem::LogisticRegression => (vec![0.0; 10], (2, 5), Box::new(move |t| log.loss(t))),
    };
    let mut theta = Array2::from_shape_vec(shape, start).expect("shape");
    let opt = Optimizer::new(config(alg), Schedule::constant(lr)).expect("valid config");
    let mut state = opt.init(&theta, seed);
    let f = |p: &Array2<f32>| f(p.as_slice().expect("standard layout"));
    let initial = f(&theta);
    let mut objective = f;
    let steps = budget / opt.forwards_per_step();
    for _ in 0..steps {
        opt.step(&mut state, &mut theta, &mut objective)
            .expect("step");
    }
    (initial, f(&theta))
}

/// (algorithm, problem, learning rate, forward budget, required reduction factor initial/final).
const TABLE: &[(Algorithm, Problem, f64, usize, f64)] = &[
    // ill-conditioned quadratic (n = 20, condition number 100), start 0
    (Algorithm::Mezo, Problem::Quadratic, 4e-4, 6000, 10.0),
    (Algorithm::Nspsa, Problem::Quadratic, 2e-4, 6000, 10.0),
    (Algorithm::MezoAdam, Problem::Quadratic, 3e-2, 6000, 10.0),
    (Algorithm::ZoSgdMmt, Problem::Quadratic, 4e-5, 6000, 10.0),
    (Algorithm::ZoSgdSign, Problem::Quadratic, 3e-3, 6000, 10.0),
    (Algorithm::ZoSgdCons, Problem::Quadratic, 8e-4, 6000, 10.0),
    (Algorithm::Hizoo, Problem::Quadratic, 4e-4, 6000, 10.0),
    (Algorithm::Lozo, Problem::Quadratic, 4e-4, 6000, 10.0),
    (Algorithm::Bszo, Problem::Quadratic, 3e-4, 6000, 10.0),
    (Algorithm::BszoB, Problem::Quadratic, 3e-4, 6000, 10.0),
    (Algorithm::Fzoo, Problem::Quadratic, 1e-4, 6000, 10.0),
    // Rosenbrock in 2-D from (-1.2, 1)
    (Algorithm::Mezo, Problem::Rosenbrock, 5e-4, 6000, 5.0),
    (Algorithm::Nspsa, Problem::Rosenbrock, 5e-4, 6000, 5.0),
    (Algorithm::MezoAdam, Problem::Rosenbrock, 1e-2, 6000, 5.0),
    (Algorithm::ZoSgdMmt, Problem::Rosenbrock, 5e-5, 6000, 5.0),
    (Algorithm::ZoSgdSign, Problem::Rosenbrock, 2e-3, 6000, 5.0),
    (Algorithm::ZoSgdCons, Problem::Rosenbrock, 5e-4, 6000, 5.0),
    (Algorithm::Hizoo, Problem::Rosenbrock, 5e-4, 6000, 5.0),
    (Algorithm::Lozo, Problem::Rosenbrock, 2e-4, 6000, 5.0),
    (Algorithm::Bszo, Problem::Rosenbrock, 3e-4, 6000, 5.0),
    (Algorithm::BszoB, Problem::Rosenbrock, 3e-4, 6000, 5.0),
    (Algorithm::Fzoo, Problem::Rosenbrock, 1e-4, 6000, 5.0),
    // noisy linear regression (200 × 10, label noise 0.1), start 0
    (Algorithm::Mezo, Problem::LinearRegression, 2e-2, 4000, 20.0),
    (
        Algorithm::Nspsa,
        Problem::LinearRegression,
        1e-2,
        4000,
        20.0,
    ),
    (
        Algorithm::MezoAdam,
        Problem::LinearRegression,
        3e-2,
        4000,
        20.0,
    ),
    (
        Algorithm::ZoSgdMmt,
        Problem::LinearRegression,
        2e-3,
        4000,
        20.0,
    ),
    (
        Algorithm::ZoSgdSign,
        Problem::LinearRegression,
        1e-2,
        4000,
        20.0,
    ),
    (
        Algorithm::ZoSgdCons,
        Problem::LinearRegression,
        3e-2,
        4000,
        20.0,
    ),
    (
        Algorithm::Hizoo,
        Problem::LinearRegression,
        2e-2,
        4000,
        20.0,
    ),
    (Algorithm::Lozo, Problem::LinearRegression, 2e-2, 4000, 20.0),
    (Algorithm::Bszo, Problem::LinearRegression, 1e-2, 4000, 20.0),
    (
        Algorithm::BszoB,
        Problem::LinearRegression,
        1e-2,
        4000,
        20.0,
    ),
    (Algorithm::Fzoo, Problem::LinearRegression, 1e-4, 4000, 20.0),
    // logistic regression (400 × 10), start 0 (loss ln 2)
    (
        Algorithm::Mezo,
        Problem::LogisticRegression,
        1e-1,
        4000,
        1.5,
    ),
    (
        Algorithm::Nspsa,
        Problem::LogisticRegression,
        5e-2,
        4000,
        1.5,
    ),
    (
        Algorithm::MezoAdam,
        Problem::LogisticRegression,
        3e-2,
        4000,
        1.5,
    ),
    (
        Algorithm::ZoSgdMmt,
        Problem::LogisticRegression,
        1e-2,
        4000,
        1.5,
    ),
    (
        Algorithm::ZoSgdSign,
        Problem::LogisticRegression,
        1e-2,
        4000,
        1.5,
    ),
    (
        Algorithm::ZoSgdCons,
        Problem::LogisticRegression,
        1e-1,
        4000,
        1.5,
    ),
    (
        Algorithm::Hizoo,
        Problem::LogisticRegression,
        1e-1,
        4000,
        1.5,
    ),
    (
        Algorithm::Lozo,
        Problem::LogisticRegression,
        1e-1,
        4000,
        1.5,
    ),
    (
        Algorithm::Bszo,
        Problem::LogisticRegression,
        5e-2,
        4000,
        1.5,
    ),
    (
        Algorithm::BszoB,
        Problem::LogisticRegression,
        5e-2,
        4000,
        1.5,
    ),
    (
        Algorithm::Fzoo,
        Problem::LogisticRegression,
        1e-4,
        4000,
        1.5,
    ),
];

#[test]
fn every_algorithm_reduces_every_problem() {
    let mut failures = Vec::new();
    for &(alg, problem, lr, budget, factor) in TABLE {
        let (initial, last) = run(alg, problem, lr, budget, 42);
        let achieved = initial / last;
        println!(
            "{:<12} {:<20} lr {lr:<8e} {budget:>5} forwards: {initial:>9.4} -> {last:>9.4} (x{achieved:.1}, need x{factor})",
            alg.name(),
            format!("{problem:?}")
        );
        if !(last.is_finite() && achieved >= factor) {
            failures.push(format!(
                "{alg} on {problem:?} (lr {lr}, {budget} forwards): {initial:.4} -> {last:.4}, factor {achieved:.2} < {factor}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn table_covers_every_algorithm_on_every_problem() {
    for alg in Algorithm::ALL {
        let rows = TABLE.iter().filter(|r| r.0 == alg).count();
        assert_eq!(rows, 4, "{alg} must appear once per problem");
    }
}
