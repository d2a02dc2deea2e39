//! Statistical tests of the streams with fixed keys.
//!
//! Every tolerance is a number of standard errors of the tested statistic under the null
//! hypothesis (exact N(0, 1) or fair ±1 draws, all independent). With `K = 5` sigmas a single
//! check fails by chance with probability below 6·10⁻⁷ (two-sided normal tail); the keys are
//! fixed, so the outcome is deterministic, and a failure means a real defect rather than bad luck.
//! Checks repeated over many pairs state their family-wise false-alarm rate.

use zo_sampler::{DirectionKey, Distribution, Stream, TensorId};

/// Sigmas of every tolerance.
const K: f64 = 5.0;
/// Samples per distributional test.
const N: usize = 1 << 22;

fn normal(seed: u64, step: u64, direction: u32, name: &str) -> Stream {
    DirectionKey::new(seed, step, direction).stream(TensorId::from_name(name), Distribution::Normal)
}

fn sample(s: &Stream, offset: u64, n: usize) -> Vec<f64> {
    let mut v = vec![0f32; n];
    s.fill(offset, &mut v);
    v.into_iter().map(f64::from).collect()
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Pearson correlation of `x[i]` and `y[i]`.
fn correlation(x: &[f64], y: &[f64]) -> f64 {
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (a, b) = (a - mx, b - my);
        sxy += a * b;
        sxx += a * a;
        syy += b * b;
    }
    sxy / (sxx * syy).sqrt()
}

/// Standard normal CDF by Marsaglia's series `Φ(x) = ½ + φ(x)·(x + x³/3 + x⁵/(3·5) + …)`,
/// accurate to ~1e-15 for |x| ≤ 8 (the sampler never exceeds 5.8).
fn phi(x: f64) -> f64 {
    if x.abs() > 8.0 {
        return if x > 0.0 { 1.0 } else { 0.0 };
    }
    let (mut term, mut sum) = (x, x);
    let mut k = 1.0;
    while term.abs() > 1e-17 * sum.abs().max(1e-300) {
        k += 2.0;
        term *= x * x / k;
        sum += term;
    }
    0.5 + sum * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

#[test]
fn phi_is_accurate() {
    assert!((phi(0.0) - 0.5).abs() < 1e-15);
    assert!((phi(1.0) - 0.841_344_746_068_543).abs() < 1e-13);
    assert!((phi(-2.5) - 0.006_209_665_325_776_132).abs() < 1e-14);
    assert!((phi(5.0) - 0.999_999_713_348_428).abs() < 1e-13);
}

#[test]
fn normal_moments() {
    let x = sample(&normal(2024, 1, 0, "model.embed_tokens.weight"), 0, N);
    let n = N as f64;
    let m = mean(&x);
    let (mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0);
    for v in &x {
        let d = v - m;
        m2 += d * d;
        m3 += d * d * d;
        m4 += d * d * d * d;
    }
    let (var, skew, kurt) = (
        m2 / n,
        m3 / n / (m2 / n).powf(1.5),
        m4 / n / (m2 / n).powi(2) - 3.0,
    );
    // Standard errors for N(0, 1) samples: mean 1/√n, variance √(2/n), skewness √(6/n), excess
    // kurtosis √(24/n).
    assert!(m.abs() < K / n.sqrt(), "mean {m}");
    assert!((var - 1.0).abs() < K * (2.0 / n).sqrt(), "variance {var}");
    assert!(skew.abs() < K * (6.0 / n).sqrt(), "skewness {skew}");
    assert!(kurt.abs() < K * (24.0 / n).sqrt(), "excess kurtosis {kurt}");
}

#[test]
fn normal_tails() {
    // Counts beyond 2, 3 and 4 sigmas are binomial(n, p) with p = 2·Φ(−t): tolerance K·√(np(1−p)).
    let x = sample(&normal(7, 0, 0, "tails"), 1 << 40, N);
    for t in [2.0, 3.0, 4.0] {
        let p = 2.0 * phi(-t);
        let expected = N as f64 * p;
        let count = x.iter().filter(|v| v.abs() > t).count() as f64;
        let sd = (expected * (1.0 - p)).sqrt();
        assert!(
            (count - expected).abs() < K * sd,
            "|z| > {t}: {count} vs {expected:.0}"
        );
    }
    // Box–Muller from 24-bit uniforms never exceeds √(48 ln 2).
    assert!(
        x.iter()
            .all(|v| v.abs() <= (48.0 * std::f64::consts::LN_2).sqrt() + 1e-6)
    );
}

#[test]
fn kolmogorov_smirnov_against_the_standard_normal() {
    // Under the null hypothesis √n·D converges to the Kolmogorov distribution, whose tail is
    // P(√n·D > λ) ≈ 2·exp(−2λ²); λ = 2.69 gives 1.0e-6.
    let n = 1 << 20;
    for (seed, offset) in [(1u64, 0u64), (99, 12_345_678_901)] {
        let mut x = sample(&normal(seed, 5, 2, "ks"), offset, n);
        x.sort_unstable_by(f64::total_cmp);
        let mut d: f64 = 0.0;
        for (i, v) in x.iter().enumerate() {
            let f = phi(*v);
            d = d
                .max((i + 1) as f64 / n as f64 - f)
                .max(f - i as f64 / n as f64);
        }
        let lambda = 2.69;
        assert!(
            d < lambda / (n as f64).sqrt(),
            "KS distance {d} (seed {seed})"
        );
    }
}

#[test]
fn lag_correlations_within_a_stream() {
    // Lags cover neighbours, the partner of a Box–Muller pair (32: same block and radius, the
    // other of cos/sin; 64 and 96: the other pair of the block), group boundaries and far lags.
    // Under independence a correlation of n pairs has standard error 1/√n. Squares are tested as
    // well, since the two outputs of a Box–Muller pair share their radius (uncorrelated, but a
    // faulty angle would correlate their squares). 2 × 14 checks: family-wise false alarm ≈ 2e-5.
    let n = 1 << 20;
    let max_lag = 4096;
    let x = sample(&normal(3, 9, 1, "lags"), 77, n + max_lag);
    let sq: Vec<f64> = x.iter().map(|v| v * v).collect();
    for lag in [1, 2, 3, 4, 16, 31, 32, 33, 64, 96, 127, 128, 129, max_lag] {
        let r = correlation(&x[..n], &x[lag..lag + n]);
        assert!(r.abs() < K / (n as f64).sqrt(), "lag {lag}: {r}");
        let r = correlation(&sq[..n], &sq[lag..lag + n]);
        assert!(r.abs() < K / (n as f64).sqrt(), "lag {lag}, squares: {r}");
    }
}

#[test]
fn different_keys_are_independent() {
    // Streams differing in exactly one component of the key (seed, step, direction, tensor), by
    // the smallest change, must be uncorrelated: |r| < K/√n per pair.
    let n = 1 << 18;
    let base = normal(42, 100, 0, "layers.0.weight");
    let neighbours = [
        normal(43, 100, 0, "layers.0.weight"),
        normal(42, 101, 0, "layers.0.weight"),
        normal(42, 100, 1, "layers.0.weight"),
        normal(42, 100, 0, "layers.1.weight"),
        normal(42, 100, 0, "layers.0.weighu"),
        // Swapped roles of seed and step.
        normal(100, 42, 0, "layers.0.weight"),
    ];
    let x = sample(&base, 0, n);
    for (k, s) in neighbours.iter().enumerate() {
        let y = sample(s, 0, n);
        let r = correlation(&x, &y);
        assert!(r.abs() < K / (n as f64).sqrt(), "neighbour {k}: {r}");
        // Also element i of one against element i + 1 of the other.
        let y1 = sample(s, 1, n);
        let r = correlation(&x, &y1);
        assert!(
            r.abs() < K / (n as f64).sqrt(),
            "neighbour {k}, shifted: {r}"
        );
    }
}

#[test]
fn many_directions_of_one_step_are_pairwise_independent() {
    // 48 directions of one step on one tensor (what an n-SPSA / BSZO step draws): all 1128
    // pairwise correlations within K/√n. Family-wise false-alarm probability ≈ 1128 × 5.7e-7
    // ≈ 6e-4.
    let n = 1 << 15;
    let xs: Vec<Vec<f64>> = (0..48)
        .map(|d| sample(&normal(5, 17, d, "q_proj"), 0, n))
        .collect();
    for i in 0..xs.len() {
        for j in 0..i {
            let r = correlation(&xs[i], &xs[j]);
            assert!(
                r.abs() < K / (n as f64).sqrt(),
                "directions {i} and {j}: {r}"
            );
        }
    }
}

fn rademacher(seed: u64, direction: u32, name: &str) -> Stream {
    DirectionKey::new(seed, 1, direction)
        .stream(TensorId::from_name(name), Distribution::Rademacher)
}

#[test]
fn rademacher_values_balance_and_lags() {
    let n = 1 << 22;
    let x = sample(&rademacher(8, 0, "r"), 3, n + 256);
    assert!(x.iter().all(|v| *v == 1.0 || *v == -1.0));
    // Mean of n fair signs: standard error 1/√n.
    let m = mean(&x[..n]);
    assert!(m.abs() < K / (n as f64).sqrt(), "mean {m}");
    // Lags within a word (1, 31), across words (32) and blocks (128): correlation s.e. 1/√n.
    for lag in [1, 2, 7, 31, 32, 33, 64, 127, 128, 256] {
        let r = correlation(&x[..n], &x[lag..lag + n]);
        assert!(r.abs() < K / (n as f64).sqrt(), "lag {lag}: {r}");
    }
    // Every bit position of the word is fair: each of the 32 positions sees n/32 signs, mean
    // s.e. √(32/n); 32 checks, family-wise false alarm ≈ 2e-5.
    for bit in 0..32 {
        let m = x[..n].iter().skip(bit).step_by(32).sum::<f64>() / (n / 32) as f64;
        assert!(
            m.abs() < K * (32.0 / n as f64).sqrt(),
            "bit {bit}: mean {m}"
        );
    }
}

#[test]
fn rademacher_keys_are_independent() {
    let n = 1 << 18;
    let x = sample(&rademacher(8, 0, "r"), 0, n);
    for s in [
        rademacher(9, 0, "r"),
        rademacher(8, 1, "r"),
        rademacher(8, 0, "s"),
    ] {
        let y = sample(&s, 0, n);
        let r = correlation(&x, &y);
        assert!(r.abs() < K / (n as f64).sqrt(), "{r}");
    }
}
