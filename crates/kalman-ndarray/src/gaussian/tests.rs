//! Unit tests of the Gaussian belief's updates, worked by hand.

use super::*;
use approx::assert_abs_diff_eq;
use ndarray::array;

#[test]
fn scalar_update_by_hand() {
    // Prior N(0, 4); h = 1, r = 1, y = 2.
    // s = 4 + 1 = 5, e = 2, gain 4/5: μ = 0.8·2 = 1.6, Σ = 4 − 16/5 = 0.8.
    // ln L = −½ (ln 2π + ln 5 + 4/5).
    let mut g = Gaussian::<f64>::isotropic(1, 4.0).unwrap();
    let out = g.scalar_update(array![1.0].view(), 1.0, 2.0).unwrap();
    assert_abs_diff_eq!(out.innovation, 2.0);
    assert_abs_diff_eq!(out.innovation_variance, 5.0);
    let ll = -0.5 * ((2.0 * std::f64::consts::PI).ln() + 5f64.ln() + 0.8);
    assert_abs_diff_eq!(out.log_likelihood, ll, epsilon = 1e-14);
    assert_abs_diff_eq!(g.mean()[0], 1.6, epsilon = 1e-14);
    assert_abs_diff_eq!(g.cov()[[0, 0]], 0.8, epsilon = 1e-14);
}

#[test]
fn scalar_update_two_dims_by_hand() {
    // Prior μ = [1, 0], Σ = [[2, 1], [1, 2]]; observe x₀ + x₁ (h = [1, 1]) = 4, r = 2.
    // g = Σh = [3, 3]; s = hᵀg + r = 6 + 2 = 8; e = 4 − 1 = 3.
    // μ = [1, 0] + [3, 3]·3/8 = [2.125, 1.125];
    // Σ = Σ − ggᵀ/8 = [[2 − 9/8, 1 − 9/8], …] = [[0.875, −0.125], [−0.125, 0.875]].
    let mut g = Gaussian::new(array![1.0, 0.0], array![[2.0, 1.0], [1.0, 2.0]]).unwrap();
    let out = g.scalar_update(array![1.0, 1.0].view(), 2.0, 4.0).unwrap();
    assert_abs_diff_eq!(out.innovation, 3.0);
    assert_abs_diff_eq!(out.innovation_variance, 8.0);
    assert_abs_diff_eq!(g.mean(), &array![2.125, 1.125], epsilon = 1e-14);
    assert_abs_diff_eq!(
        g.cov(),
        &array![[0.875, -0.125], [-0.125, 0.875]],
        epsilon = 1e-14
    );
}

#[test]
fn exact_scalar_observation() {
    // r = 0: the observed coordinate becomes certain. Prior N(0, I₂), observe x₀ = 3.
    let mut g = Gaussian::<f64>::isotropic(2, 1.0).unwrap();
    g.scalar_update(array![1.0, 0.0].view(), 0.0, 3.0).unwrap();
    assert_abs_diff_eq!(g.mean(), &array![3.0, 0.0], epsilon = 1e-15);
    assert_abs_diff_eq!(g.cov(), &array![[0.0, 0.0], [0.0, 1.0]], epsilon = 1e-15);
}

#[test]
fn predict_constant_velocity_by_hand() {
    // F = [[1, 1], [0, 1]], Σ = I, Q = 0.1 I, μ = [0, 1], B = [[0.5], [1]], u = [2].
    // Fμ + Bu = [1, 1] + [1, 2] = [2, 3].
    // FΣFᵀ = FFᵀ = [[2, 1], [1, 1]]; + Q = [[2.1, 1], [1, 1.1]].
    let t = Transition::new(array![[1.0, 1.0], [0.0, 1.0]], Array2::eye(2) * 0.1)
        .unwrap()
        .with_control(array![[0.5], [1.0]])
        .unwrap();
    let mut g = Gaussian::new(array![0.0, 1.0], Array2::eye(2)).unwrap();
    g.predict_with_control(&t, array![2.0].view()).unwrap();
    assert_abs_diff_eq!(g.mean(), &array![2.0, 3.0], epsilon = 1e-15);
    assert_abs_diff_eq!(g.cov(), &array![[2.1, 1.0], [1.0, 1.1]], epsilon = 1e-15);
    // Without control the B u term is absent: F[0, 1] = [1, 1].
    let mut g = Gaussian::new(array![0.0, 1.0], Array2::eye(2)).unwrap();
    g.predict(&t).unwrap();
    assert_abs_diff_eq!(g.mean(), &array![1.0, 1.0], epsilon = 1e-15);
}

#[test]
fn vector_update_by_hand() {
    // Prior N([0, 0], diag(1, 2)); H = [[1, 1]], R = [[1]], y = [3].
    // S = 1 + 2 + 1 = 4; K = ΣHᵀ/S = [1, 2]/4 = [0.25, 0.5]; μ = 3K = [0.75, 1.5].
    // Σ − K(HΣ) = diag(1, 2) − [[0.25, 0.5], [0.5, 1.0]] = [[0.75, −0.5], [−0.5, 1.0]].
    // ln L = −½ (ln 2π + ln 4 + 9/4).
    for form in [UpdateForm::Joseph, UpdateForm::Standard] {
        let mut g = Gaussian::from_diagonal(array![0.0, 0.0], array![1.0, 2.0]).unwrap();
        let meas = Measurement::new(array![[1.0, 1.0]], array![[1.0]]).unwrap();
        let out = g.update(&meas, array![3.0].view(), form).unwrap();
        assert_abs_diff_eq!(out.innovation, array![3.0]);
        assert_abs_diff_eq!(out.innovation_cov, array![[4.0]]);
        let ll = -0.5 * ((2.0 * std::f64::consts::PI).ln() + 4f64.ln() + 2.25);
        assert_abs_diff_eq!(out.log_likelihood, ll, epsilon = 1e-14);
        assert_abs_diff_eq!(g.mean(), &array![0.75, 1.5], epsilon = 1e-14);
        assert_abs_diff_eq!(g.cov(), &array![[0.75, -0.5], [-0.5, 1.0]], epsilon = 1e-14);
    }
}

#[test]
fn joseph_is_the_default() {
    assert_eq!(UpdateForm::default(), UpdateForm::Joseph);
}

#[test]
fn add_diagonal_and_accessors() {
    let mut g = Gaussian::new(array![1.0f32, 2.0], array![[1.0, 0.5], [0.5, 1.0]]).unwrap();
    g.add_diagonal(0.25).unwrap();
    assert_eq!(g.cov(), &array![[1.25, 0.5], [0.5, 1.25]]);
    assert_eq!(g.dim(), 2);
    let (m, c) = g.into_parts();
    assert_eq!(m, array![1.0, 2.0]);
    assert_eq!(c[[0, 1]], 0.5);
}

#[test]
fn log_density_by_hand() {
    // N(x; 1, 4) at x = 3: −½ (ln 2π + ln 4 + (2²)/4) = −½ (ln 2π + ln 4 + 1).
    let g = Gaussian::from_diagonal(array![1.0], array![4.0]).unwrap();
    let ld = g.log_density(array![3.0].view()).unwrap();
    let expected = -0.5 * ((2.0 * std::f64::consts::PI).ln() + 4f64.ln() + 1.0);
    assert_abs_diff_eq!(ld, expected, epsilon = 1e-14);
}

#[test]
fn new_symmetrises_within_tolerance() {
    // An asymmetry of 1e-12 (below √ε ≈ 1.5e-8) is accepted and averaged away.
    let g = Gaussian::new(array![0.0, 0.0], array![[1.0, 0.5 + 1e-12], [0.5, 1.0]]).unwrap();
    assert_eq!(g.cov()[[0, 1]], g.cov()[[1, 0]]);
}

#[test]
fn fortran_layout_input_is_accepted() {
    let cov = array![[2.0, 1.0], [1.0, 3.0]].reversed_axes();
    let mut g = Gaussian::new(array![0.0, 0.0], cov).unwrap();
    g.scalar_update(array![1.0, 0.0].view(), 1.0, 1.0).unwrap();
    assert_eq!(g.cov(), &g.cov().t().to_owned());
}
