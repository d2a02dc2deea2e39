//! Test helpers: dense reference linear algebra written independently of the crate (Gaussian
//! elimination, generic Gaussian conditioning), and proptest strategies.

#![allow(dead_code)]

use ndarray::{Array1, Array2, s};
use proptest::prelude::*;

/// Solves `A X = B` by Gaussian elimination with partial pivoting.
pub fn solve(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
    let n = a.nrows();
    assert_eq!(a.ncols(), n);
    assert_eq!(b.nrows(), n);
    let mut a = a.clone();
    let mut x = b.clone();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[[i, col]].abs().total_cmp(&a[[j, col]].abs()))
            .unwrap();
        if pivot != col {
            for j in 0..n {
                a.swap([col, j], [pivot, j]);
            }
            for j in 0..x.ncols() {
                x.swap([col, j], [pivot, j]);
            }
        }
        let p = a[[col, col]];
        assert!(p.abs() > 1e-300, "singular matrix in reference solve");
        for i in 0..n {
            if i != col {
                let factor = a[[i, col]] / p;
                if factor != 0.0 {
                    for j in col..n {
                        a[[i, j]] -= factor * a[[col, j]];
                    }
                    for j in 0..x.ncols() {
                        x[[i, j]] -= factor * x[[col, j]];
                    }
                }
            }
        }
    }
    for i in 0..n {
        let p = a[[i, i]];
        x.row_mut(i).mapv_inplace(|v| v / p);
    }
    x
}

/// `A⁻¹` by Gaussian elimination.
pub fn inv(a: &Array2<f64>) -> Array2<f64> {
    solve(a, &Array2::eye(a.nrows()))
}

/// `A⁻¹ b`.
pub fn solve_vec(a: &Array2<f64>, b: &Array1<f64>) -> Array1<f64> {
    let b2 = b.clone().insert_axis(ndarray::Axis(1));
    solve(a, &b2).column(0).to_owned()
}

/// `ln |det A|` by LU elimination with partial pivoting.
pub fn log_abs_det(a: &Array2<f64>) -> f64 {
    let n = a.nrows();
    let mut a = a.clone();
    let mut acc = 0.0;
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[[i, col]].abs().total_cmp(&a[[j, col]].abs()))
            .unwrap();
        for j in 0..n {
            a.swap([col, j], [pivot, j]);
        }
        let p = a[[col, col]];
        acc += p.abs().ln();
        for i in col + 1..n {
            let factor = a[[i, col]] / p;
            for j in col..n {
                a[[i, j]] -= factor * a[[col, j]];
            }
        }
    }
    acc
}

/// `ln N(x; m, C)`.
pub fn log_normal_density(x: &Array1<f64>, m: &Array1<f64>, c: &Array2<f64>) -> f64 {
    let d = x - m;
    let k = x.len() as f64;
    -0.5 * (k * (2.0 * std::f64::consts::PI).ln() + log_abs_det(c) + d.dot(&solve_vec(c, &d)))
}

/// Whether a symmetric matrix is positive definite (all pivots of an unpivoted elimination
/// positive, i.e. Sylvester's criterion).
pub fn is_positive_definite(a: &Array2<f64>) -> bool {
    let n = a.nrows();
    let mut a = a.clone();
    for col in 0..n {
        let p = a[[col, col]];
        if p.is_nan() || p <= 0.0 {
            return false;
        }
        for i in col + 1..n {
            let factor = a[[i, col]] / p;
            for j in col..n {
                a[[i, j]] -= factor * a[[col, j]];
            }
        }
    }
    true
}

/// Generic Gaussian conditioning: for `z ~ N(m, C)`, the distribution of `z` given
/// `z[observed] = values`, as `(m + C_{:,O} C_{O,O}⁻¹ (v − m_O), C − C_{:,O} C_{O,O}⁻¹ C_{O,:})`.
pub fn condition(
    m: &Array1<f64>,
    c: &Array2<f64>,
    observed: &[usize],
    values: &Array1<f64>,
) -> (Array1<f64>, Array2<f64>) {
    if observed.is_empty() {
        return (m.clone(), c.clone());
    }
    let n = m.len();
    let k = observed.len();
    let mut c_all_o = Array2::zeros((n, k));
    let mut c_oo = Array2::zeros((k, k));
    let mut m_o = Array1::zeros(k);
    for (a, &i) in observed.iter().enumerate() {
        m_o[a] = m[i];
        for r in 0..n {
            c_all_o[[r, a]] = c[[r, i]];
        }
        for (b, &j) in observed.iter().enumerate() {
            c_oo[[a, b]] = c[[i, j]];
        }
    }
    let resid = values - &m_o;
    let mean = m + &c_all_o.dot(&solve_vec(&c_oo, &resid));
    let cov = c - &c_all_o.dot(&solve(&c_oo, &c_all_o.t().to_owned()));
    (mean, cov)
}

/// Max-abs closeness with a relative scale: `|a − b| ≤ tol · (1 + |b|)` elementwise.
pub fn close_arr<D: ndarray::Dimension>(
    a: &ndarray::Array<f64, D>,
    b: &ndarray::Array<f64, D>,
    tol: f64,
) -> Result<(), String> {
    if a.shape() != b.shape() {
        return Err(format!("shapes differ: {:?} vs {:?}", a.shape(), b.shape()));
    }
    for (x, y) in a.iter().zip(b.iter()) {
        let within = (x - y).abs() <= tol * (1.0 + y.abs());
        if !within {
            return Err(format!("{x} vs {y} (tol {tol})\nleft:\n{a}\nright:\n{b}"));
        }
    }
    Ok(())
}

/// `|a − b| ≤ tol · (1 + |b|)`.
pub fn close(a: f64, b: f64, tol: f64) -> Result<(), String> {
    if (a - b).abs() <= tol * (1.0 + b.abs()) {
        Ok(())
    } else {
        Err(format!("{a} vs {b} (tol {tol})"))
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// A vector of length `n` with entries in `[-scale, scale]`.
pub fn vector(n: usize, scale: f64) -> impl Strategy<Value = Array1<f64>> {
    prop::collection::vec(-scale..=scale, n).prop_map(Array1::from)
}

/// An `r × c` matrix with entries in `[-scale, scale]`.
pub fn matrix(r: usize, c: usize, scale: f64) -> impl Strategy<Value = Array2<f64>> {
    prop::collection::vec(-scale..=scale, r * c)
        .prop_map(move |v| Array2::from_shape_vec((r, c), v).unwrap())
}

/// A well-conditioned SPD matrix `A Aᵀ · scale + δ I`, `δ ∈ [0.1, 1]`.
pub fn spd(n: usize, scale: f64) -> impl Strategy<Value = Array2<f64>> {
    (matrix(n, n, 1.0), 0.1..=1.0f64).prop_map(move |(a, d)| {
        let mut c = a.dot(&a.t()) * scale;
        for i in 0..n {
            c[[i, i]] += d;
        }
        // Exactly symmetric.
        let ct = c.t().to_owned();
        (c + ct) * 0.5
    })
}

/// Positive variances in `[0.05, 2]`.
pub fn variances(n: usize) -> impl Strategy<Value = Array1<f64>> {
    prop::collection::vec(0.05..=2.0f64, n).prop_map(Array1::from)
}

/// A prior `N(μ₀, Σ₀)` of dimension `k`.
pub fn prior(k: usize) -> impl Strategy<Value = (Array1<f64>, Array2<f64>)> {
    (vector(k, 2.0), spd(k, 1.0))
}

/// One step of a random linear-Gaussian state-space model with its data.
#[derive(Debug, Clone)]
pub struct StepSpec {
    pub f: Array2<f64>,
    pub q: Array2<f64>,
    pub b: Array2<f64>,
    pub u: Array1<f64>,
    pub h: Array2<f64>,
    pub r: Array2<f64>,
    pub y: Array1<f64>,
    pub observed: bool,
}

/// A random time-varying model: state dim `n`, observation dim `m`, control dim `p`,
/// `steps` steps, prior `N(m0, p0)` on the state before the first step.
#[derive(Debug, Clone)]
pub struct SsmSpec {
    pub n: usize,
    pub m: usize,
    pub p: usize,
    pub m0: Array1<f64>,
    pub p0: Array2<f64>,
    pub steps: Vec<StepSpec>,
}

fn step_spec(n: usize, m: usize, p: usize) -> impl Strategy<Value = StepSpec> {
    (
        matrix(n, n, 1.0),
        spd(n, 0.3),
        matrix(n, p, 1.0),
        vector(p, 1.0),
        matrix(m, n, 1.0),
        spd(m, 0.5),
        vector(m, 3.0),
        prop::bool::weighted(0.75),
    )
        .prop_map(|(f, q, b, u, h, r, y, observed)| StepSpec {
            f,
            q,
            b,
            u,
            h,
            r,
            y,
            observed,
        })
}

/// Random state-space models with `n ≤ 3`, `m ≤ 2`, `p ≤ 1`, `1 ≤ steps ≤ 5`.
pub fn ssm() -> impl Strategy<Value = SsmSpec> {
    (1usize..=3, 1usize..=2, 0usize..=1, 1usize..=5).prop_flat_map(|(n, m, p, t)| {
        (prior(n), prop::collection::vec(step_spec(n, m, p), t)).prop_map(
            move |((m0, p0), steps)| SsmSpec {
                n,
                m,
                p,
                m0,
                p0,
                steps,
            },
        )
    })
}

/// The joint Gaussian of `(x_0, …, x_{T−1}, y_0, …, y_{T−1})`, built as the linear image of the
/// independent sources `(x_{−1}, w_0, …, w_{T−1}, v_0, …, v_{T−1})` plus the control offsets.
pub fn joint(spec: &SsmSpec) -> (Array1<f64>, Array2<f64>) {
    let (n, m, t) = (spec.n, spec.m, spec.steps.len());
    let dz = n + t * n + t * m;
    let dout = t * n + t * m;
    // Source mean and block-diagonal covariance.
    let mut z_mean = Array1::zeros(dz);
    z_mean.slice_mut(s![..n]).assign(&spec.m0);
    let mut z_cov = Array2::zeros((dz, dz));
    z_cov.slice_mut(s![..n, ..n]).assign(&spec.p0);
    for (k, st) in spec.steps.iter().enumerate() {
        let o = n + k * n;
        z_cov.slice_mut(s![o..o + n, o..o + n]).assign(&st.q);
        let o = n + t * n + k * m;
        z_cov.slice_mut(s![o..o + m, o..o + m]).assign(&st.r);
    }
    // Linear map and offset.
    let mut map = Array2::zeros((dout, dz));
    let mut offset = Array1::zeros(dout);
    let mut x_coef = Array2::zeros((n, dz));
    x_coef.slice_mut(s![.., ..n]).assign(&Array2::<f64>::eye(n));
    let mut x_off = Array1::<f64>::zeros(n);
    for (k, st) in spec.steps.iter().enumerate() {
        x_coef = st.f.dot(&x_coef);
        let o = n + k * n;
        for i in 0..n {
            x_coef[[i, o + i]] += 1.0;
        }
        x_off = st.f.dot(&x_off) + st.b.dot(&st.u);
        map.slice_mut(s![k * n..(k + 1) * n, ..]).assign(&x_coef);
        offset.slice_mut(s![k * n..(k + 1) * n]).assign(&x_off);
        let y_coef = {
            let mut c = st.h.dot(&x_coef);
            let o = n + t * n + k * m;
            for i in 0..m {
                c[[i, o + i]] += 1.0;
            }
            c
        };
        let r0 = t * n + k * m;
        map.slice_mut(s![r0..r0 + m, ..]).assign(&y_coef);
        offset.slice_mut(s![r0..r0 + m]).assign(&st.h.dot(&x_off));
    }
    let mean = map.dot(&z_mean) + offset;
    let cov = map.dot(&z_cov).dot(&map.t());
    (mean, cov)
}

/// Indices (into the joint vector) and values of the observations at steps `< upto`.
pub fn observed_before(spec: &SsmSpec, upto: usize) -> (Vec<usize>, Array1<f64>) {
    let (n, m, t) = (spec.n, spec.m, spec.steps.len());
    let mut idx = Vec::new();
    let mut vals = Vec::new();
    for (k, st) in spec.steps.iter().enumerate().take(upto) {
        if st.observed {
            for i in 0..m {
                idx.push(t * n + k * m + i);
                vals.push(st.y[i]);
            }
        }
    }
    (idx, Array1::from(vals))
}

/// Mean and covariance of the block `x_k` of a joint (or conditioned joint) Gaussian.
pub fn state_block(
    mean: &Array1<f64>,
    cov: &Array2<f64>,
    n: usize,
    k: usize,
) -> (Array1<f64>, Array2<f64>) {
    (
        mean.slice(s![k * n..(k + 1) * n]).to_owned(),
        cov.slice(s![k * n..(k + 1) * n, k * n..(k + 1) * n])
            .to_owned(),
    )
}
