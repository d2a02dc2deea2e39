//! The statistics of the black-box section: quantiles, the Wilcoxon signed-rank test for paired
//! samples and Holm's step-down correction for a family of tests.

use serde::{Deserialize, Serialize};

/// The `q`-quantile of `xs` (linear interpolation between order statistics, as R's type 7 and
/// NumPy's default); NaN for no value. Infinite values sort last, so a diverged run counts as the
/// worst.
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let h = (v.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    if lo == hi || v[lo] == v[hi] {
        return v[lo];
    }
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// The result of a two-sided Wilcoxon signed-rank test of paired samples `(a_i, b_i)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignedRank {
    /// Pairs with a non-zero difference (zero differences are dropped, Wilcoxon's convention).
    pub n: usize,
    /// The sum of the ranks of the positive differences `a − b`.
    pub w_plus: f64,
    /// The two-sided p-value.
    pub p: f64,
    /// Whether `p` is exact (no ties, n ≤ [`EXACT_MAX`]) or the normal approximation (with the
    /// tie correction of the variance and a continuity correction).
    pub exact: bool,
}

/// The largest sample size whose p-value is computed exactly.
pub const EXACT_MAX: usize = 50;

/// The two-sided Wilcoxon signed-rank test of the paired samples `a` and `b` (same length).
/// Pairs whose difference is zero, or not a number, are dropped. Infinite values compare as
/// usual (a pair where only one side diverged is a difference of that sign, ranked largest).
///
/// # Panics
/// When `a` and `b` differ in length.
pub fn signed_rank(a: &[f64], b: &[f64]) -> SignedRank {
    assert_eq!(a.len(), b.len(), "paired samples of different lengths");
    // Differences with their sign; an infinite difference keeps its sign and ranks last.
    let mut d: Vec<(f64, bool)> = a
        .iter()
        .zip(b)
        .filter_map(|(&x, &y)| {
            if x == y || x.is_nan() || y.is_nan() {
                return None;
            }
            let diff = x - y;
            let mag = if diff.is_nan() {
                f64::INFINITY
            } else {
                diff.abs()
            };
            Some((mag, x > y))
        })
        .collect();
    let n = d.len();
    if n == 0 {
        return SignedRank {
            n,
            w_plus: 0.0,
            p: 1.0,
            exact: true,
        };
    }
    d.sort_by(|x, y| x.0.total_cmp(&y.0));
    // Mid-ranks over ties; the tie correction Σ (t³ − t) / 48.
    let mut ranks = vec![0.0; n];
    let mut ties = false;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && d[j + 1].0 == d[i].0 {
            j += 1;
        }
        let t = (j - i + 1) as f64;
        if j > i {
            ties = true;
            tie_term += (t * t * t - t) / 48.0;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        ranks[i..=j].fill(mid);
        i = j + 1;
    }
    let w_plus: f64 = d
        .iter()
        .zip(&ranks)
        .filter(|((_, pos), _)| *pos)
        .map(|(_, r)| r)
        .sum();
    let nf = n as f64;
    let mean = nf * (nf + 1.0) / 4.0;
    if !ties && n <= EXACT_MAX {
        // Exact null distribution of W⁺: the number of subsets of {1..n} with each sum.
        let total = n * (n + 1) / 2;
        let mut counts = vec![0.0f64; total + 1];
        counts[0] = 1.0;
        for k in 1..=n {
            for s in (k..=total).rev() {
                counts[s] += counts[s - k];
            }
        }
        let all = 2f64.powi(n as i32);
        let w = w_plus.round() as usize;
        let lower = w.min(total - w);
        let tail: f64 = counts[..=lower].iter().sum::<f64>() / all;
        return SignedRank {
            n,
            w_plus,
            p: (2.0 * tail).min(1.0),
            exact: true,
        };
    }
    let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_term;
    let z = if var > 0.0 {
        ((w_plus - mean).abs() - 0.5).max(0.0) / var.sqrt()
    } else {
        0.0
    };
    SignedRank {
        n,
        w_plus,
        p: (2.0 * normal_upper_tail(z)).min(1.0),
        exact: false,
    }
}

/// `P(Z > z)` for a standard normal `Z`: `erfc(z/√2)/2`, with the complementary error function
/// of Numerical Recipes' Chebyshev fit (relative error below 1.2e-7 everywhere).
pub fn normal_upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Holm's step-down adjustment of a family of p-values: the adjusted p-values, in the input order
/// (each at most 1, and monotone in the sorted order). Rejecting where the adjusted value is below
/// α controls the family-wise error rate at α.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        let a = ((m - rank) as f64 * p[i]).min(1.0);
        running = running.max(a);
        adjusted[i] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_and_sort_divergence_last() {
        let xs = [3.0, 1.0, 2.0, 4.0];
        assert_eq!(quantile(&xs, 0.5), 2.5);
        assert_eq!(quantile(&xs, 0.25), 1.75);
        assert_eq!(quantile(&xs, 0.0), 1.0);
        assert_eq!(quantile(&xs, 1.0), 4.0);
        assert_eq!(quantile(&[1.0, f64::INFINITY, 2.0], 0.5), 2.0);
        assert_eq!(quantile(&[1.0, f64::INFINITY], 1.0), f64::INFINITY);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn the_exact_null_distribution_matches_the_table() {
        // n = 10: P(W⁺ ≤ 8) = 25/1024, the two-sided 5% critical value of the standard tables.
        let b = vec![0.0; 10];
        // Ranks 1, 2, 5 positive: W⁺ = 8.
        let a: Vec<f64> = (1..=10)
            .map(|r| {
                if [1, 2, 5].contains(&r) {
                    r as f64
                } else {
                    -(r as f64)
                }
            })
            .collect();
        let t = signed_rank(&a, &b);
        assert!(t.exact);
        assert_eq!(t.n, 10);
        assert_eq!(t.w_plus, 8.0);
        assert!((t.p - 2.0 * 25.0 / 1024.0).abs() < 1e-15, "{}", t.p);
        // W⁺ = 9 is no longer significant: P(W⁺ ≤ 9) = 33/1024.
        let a: Vec<f64> = (1..=10)
            .map(|r| {
                if [1, 3, 5].contains(&r) {
                    r as f64
                } else {
                    -(r as f64)
                }
            })
            .collect();
        let t = signed_rank(&a, &b);
        assert_eq!(t.w_plus, 9.0);
        assert!((t.p - 2.0 * 33.0 / 1024.0).abs() < 1e-15, "{}", t.p);
        // All differences of one sign: p = 2/2ⁿ, whichever sign.
        let a: Vec<f64> = (1..=10).map(f64::from).collect();
        assert!((signed_rank(&a, &b).p - 2.0 / 1024.0).abs() < 1e-15);
        let neg: Vec<f64> = a.iter().map(|x| -x).collect();
        assert!((signed_rank(&neg, &b).p - 2.0 / 1024.0).abs() < 1e-15);
    }

    #[test]
    fn zero_differences_are_dropped_and_identical_samples_are_not_significant() {
        let a = [1.0, 2.0, 3.0];
        let t = signed_rank(&a, &a);
        assert_eq!((t.n, t.p), (0, 1.0));
        let t = signed_rank(&[1.0, 2.0, 5.0], &[1.0, 1.0, 1.0]);
        assert_eq!(t.n, 2);
        assert_eq!(t.w_plus, 3.0);
        assert!((t.p - 0.5).abs() < 1e-15);
    }

    #[test]
    fn the_normal_approximation_handles_ties_and_large_samples() {
        // 60 pairs, all positive and tied: z = (W⁺ − μ − ½)/σ with the tie-corrected σ.
        let a = vec![2.0; 60];
        let b = vec![1.0; 60];
        let t = signed_rank(&a, &b);
        assert!(!t.exact);
        assert_eq!(t.w_plus, 60.0 * 61.0 / 2.0);
        assert!(t.p < 1e-10, "{}", t.p);
        // A balanced sample is not significant.
        let a: Vec<f64> = (1..=60)
            .map(|i| if i % 2 == 0 { i as f64 } else { -(i as f64) })
            .collect();
        let t = signed_rank(&a, &vec![0.0; 60]);
        assert!(t.p > 0.5, "{}", t.p);
        // Diverged runs (infinite) on one side count as the largest differences.
        let mut a = vec![1.0; 40];
        a.iter_mut().enumerate().for_each(|(i, x)| *x += i as f64);
        let mut b = a.clone();
        b.iter_mut().for_each(|x| *x = f64::INFINITY);
        assert!(signed_rank(&a, &b).p < 1e-6);
    }

    #[test]
    fn the_normal_tail_is_accurate() {
        for (z, expected) in [
            (0.0, 0.5),
            (1.0, 0.158_655_253_931_457_05),
            (1.959_963_984_540_054, 0.025),
            (3.0, 0.001_349_898_031_630_094_6),
        ] {
            let got = normal_upper_tail(z);
            assert!((got - expected).abs() / expected < 2e-7, "{z}: {got}");
        }
        assert!((normal_upper_tail(-1.0) - (1.0 - 0.158_655_253_931_457_05)).abs() < 1e-7);
    }

    #[test]
    fn holm_adjusts_step_down_and_stays_monotone() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.5]);
        // Sorted 0.01, 0.03, 0.04, 0.5 → 0.04, 0.09, 0.09 (monotone), 0.5.
        let expected = [0.04, 0.09, 0.09, 0.5];
        for (a, e) in adj.iter().zip(expected) {
            assert!((a - e).abs() < 1e-12, "{adj:?}");
        }
        assert_eq!(holm(&[0.9, 0.8]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }
}
