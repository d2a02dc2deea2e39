//! In-place kernels over row-major slices: the arithmetic of every predict and update.
//!
//! Each kernel writes into caller-provided buffers, so a step allocates nothing. The products
//! are plain loops in `i-k-j` order (the innermost loop runs along a contiguous row, which the
//! compiler vectorises, and which it unrolls completely when the dimensions are compile-time
//! constants, see [`crate::filter`]), or, from [`BLOCKED_MIN_DIM`] up, `ndarray`'s
//! `general_mat_mul` (the cache-blocked `matrixmultiply` kernels). The loops never reassociate a
//! sum, so the same loop gives bitwise the same result whether its bounds are constants or not.

// Index loops on purpose: they spell out the order of the operations on every entry, which the
// fixed-size and general copies of the step must share to agree bitwise.
#![allow(clippy::needless_range_loop)]

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

use crate::float::{KalmanFloat, lit};

/// State dimension from which matrix products go through `general_mat_mul` (blocked, packed,
/// SIMD microkernels) instead of the plain loops.
///
/// Below it the loops win (no packing, no dispatch); above it the blocked kernels do. Results of
/// the two differ by rounding only (a few ulps of the entries' magnitudes).
pub const BLOCKED_MIN_DIM: usize = 12;

/// Widest product rows accumulated in a local array by [`gemm`].
const SMALL_COLS: usize = 8;

/// `ln(2π)`.
pub(crate) const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// `C ← β C + α A B` with `A` of logical shape `r × k` (stored `k × r` and read transposed when
/// `a_t`), `B` stored `k × c`, `C` stored `r × c`; `α = ±1`, `β ∈ {0, 1}`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<T: KalmanFloat>(
    alpha: T,
    a: &[T],
    a_t: bool,
    b: &[T],
    beta: T,
    c: &mut [T],
    (r, k, cols): (usize, usize, usize),
    blocked: bool,
) {
    let (a, b, c) = (&a[..r * k], &b[..k * cols], &mut c[..r * cols]);
    if r == 0 || cols == 0 {
        return;
    }
    if blocked && gemm_blocked(alpha, a, a_t, b, beta, c, (r, k, cols)) {
        return;
    }
    if cols <= SMALL_COLS {
        // Each row of C accumulated in a local array (registers, when the dimensions are
        // constants), added to in the same order as below: bitwise the same result.
        for (i, ci) in c.chunks_exact_mut(cols).enumerate().take(r) {
            let mut acc = [T::zero(); SMALL_COLS];
            let acc = &mut acc[..cols];
            if beta != T::zero() {
                acc.copy_from_slice(ci);
            }
            for (kk, bk) in b.chunks_exact(cols).enumerate().take(k) {
                let aik = if a_t { a[kk * r + i] } else { a[i * k + kk] };
                let aik = alpha * aik;
                for (cij, &bkj) in acc.iter_mut().zip(bk) {
                    *cij += aik * bkj;
                }
            }
            ci.copy_from_slice(acc);
        }
        return;
    }
    for (i, ci) in c.chunks_exact_mut(cols).enumerate().take(r) {
        if beta == T::zero() {
            ci.fill(T::zero());
        }
        for (kk, bk) in b.chunks_exact(cols).enumerate().take(k) {
            let aik = if a_t { a[kk * r + i] } else { a[i * k + kk] };
            let aik = alpha * aik;
            for (cij, &bkj) in ci.iter_mut().zip(bk) {
                *cij += aik * bkj;
            }
        }
    }
}

/// `C ← β C + α A B` for a square `n × n` result known to be symmetric: only the lower triangle
/// is computed (each entry as [`gemm`] computes it) and then mirrored onto the upper one, so the
/// result is exactly symmetric. Blocked, the full product is computed and its lower triangle
/// mirrored.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_sym<T: KalmanFloat>(
    alpha: T,
    a: &[T],
    a_t: bool,
    b: &[T],
    beta: T,
    c: &mut [T],
    (n, k): (usize, usize),
    blocked: bool,
) {
    let (a, b, c) = (&a[..n * k], &b[..k * n], &mut c[..n * n]);
    if n == 0 {
        return;
    }
    if !(blocked && gemm_blocked(alpha, a, a_t, b, beta, c, (n, k, n))) {
        for (i, ci) in c.chunks_exact_mut(n).enumerate() {
            let ci = &mut ci[..=i];
            if beta == T::zero() {
                ci.fill(T::zero());
            }
            for (kk, bk) in b.chunks_exact(n).enumerate().take(k) {
                let aik = if a_t { a[kk * n + i] } else { a[i * k + kk] };
                let aik = alpha * aik;
                for (cij, &bkj) in ci.iter_mut().zip(bk) {
                    *cij += aik * bkj;
                }
            }
        }
    }
    mirror_lower(c, n);
}

/// [`gemm`] through `general_mat_mul`; `false` if the slices did not form views (never with the
/// lengths [`gemm`] passes).
fn gemm_blocked<T: KalmanFloat>(
    alpha: T,
    a: &[T],
    a_t: bool,
    b: &[T],
    beta: T,
    c: &mut [T],
    (r, k, cols): (usize, usize, usize),
) -> bool {
    let a = if a_t {
        ArrayView2::from_shape((k, r), a).map(|v| v.reversed_axes())
    } else {
        ArrayView2::from_shape((r, k), a)
    };
    let (Ok(a), Ok(b), Ok(mut c)) = (
        a,
        ArrayView2::from_shape((k, cols), b),
        ArrayViewMut2::from_shape((r, cols), c),
    ) else {
        return false;
    };
    general_mat_mul(alpha, &a, &b, beta, &mut c);
    true
}

/// `Aᵀ` of the `r × c` matrix `a` into `out` (`c × r`).
#[inline(always)]
pub(crate) fn transpose<T: KalmanFloat>(a: &[T], out: &mut [T], r: usize, c: usize) {
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = a[i * c + j];
        }
    }
}

/// Copies the lower triangle of the `n × n` matrix `a` onto its upper triangle: exactly
/// symmetric afterwards.
#[inline(always)]
pub(crate) fn mirror_lower<T: KalmanFloat>(a: &mut [T], n: usize) {
    for i in 0..n {
        for j in 0..i {
            a[j * n + i] = a[i * n + j];
        }
    }
}

/// `a += b` elementwise.
#[inline(always)]
pub(crate) fn add_assign<T: KalmanFloat>(a: &mut [T], b: &[T]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// `y += Σ_k x_k · rows_k` for the `k × c` matrix `rows` (a matrix-vector product `rowsᵀ x`
/// along contiguous rows).
#[inline(always)]
pub(crate) fn axpy_rows<T: KalmanFloat>(y: &mut [T], x: &[T], rows: &[T], c: usize) {
    for (&xk, row) in x.iter().zip(rows.chunks_exact(c.max(1))) {
        for (yi, &r) in y.iter_mut().zip(row) {
            *yi += xk * r;
        }
    }
}

/// Cholesky factorisation of the `m × m` matrix in `a`, in place (lower triangle; the strict upper
/// triangle is zeroed). `false` when a pivot is not positive or not finite.
#[inline(always)]
pub(crate) fn cholesky_in_place<T: KalmanFloat>(a: &mut [T], m: usize) -> bool {
    for i in 0..m {
        for j in 0..=i {
            let mut s = a[i * m + j];
            for k in 0..j {
                s -= a[i * m + k] * a[j * m + k];
            }
            if i == j {
                if !(s > T::zero() && s.is_finite()) {
                    return false;
                }
                a[i * m + i] = s.sqrt();
            } else {
                a[i * m + j] = s / a[j * m + j];
            }
        }
        for j in i + 1..m {
            a[i * m + j] = T::zero();
        }
    }
    true
}

/// Solves `L Z = B` in place for the `m × m` lower-triangular `l` and `B` of `m` rows of length
/// `c` (row operations along contiguous rows).
#[inline(always)]
pub(crate) fn forward_rows<T: KalmanFloat>(l: &[T], b: &mut [T], m: usize, c: usize) {
    for i in 0..m {
        let (done, rest) = b.split_at_mut(i * c);
        let bi = &mut rest[..c];
        for k in 0..i {
            let lik = l[i * m + k];
            for (x, &z) in bi.iter_mut().zip(&done[k * c..k * c + c]) {
                *x -= lik * z;
            }
        }
        let inv = l[i * m + i].recip();
        for x in bi.iter_mut() {
            *x *= inv;
        }
    }
}

/// Square-root-free Cholesky `A = L D Lᵀ` of the `m × m` matrix in `a`, in place: the unit
/// lower-triangular `L` below the diagonal, `D` on it, zeros above; `inv_d` receives `1 / d_i`
/// and `u` is scratch of length `m`. `false` when a pivot `d_i` is not positive or not finite
/// (`A` not numerically positive definite). One division per pivot and no square root, which
/// keeps the dependency chain of a small factorisation short.
#[inline(always)]
pub(crate) fn ldl_in_place<T: KalmanFloat>(
    a: &mut [T],
    inv_d: &mut [T],
    u: &mut [T],
    m: usize,
) -> bool {
    for i in 0..m {
        // u_ij = a_ij − Σ_{k<j} u_ik l_jk (= l_ij d_j), then l_ij = u_ij / d_j.
        for j in 0..i {
            let mut s = a[i * m + j];
            for k in 0..j {
                s -= u[k] * a[j * m + k];
            }
            u[j] = s;
        }
        let mut d = a[i * m + i];
        for j in 0..i {
            let l = u[j] * inv_d[j];
            a[i * m + j] = l;
            d -= u[j] * l;
        }
        if !(d > T::zero() && d.is_finite()) {
            return false;
        }
        a[i * m + i] = d;
        inv_d[i] = d.recip();
        for j in i + 1..m {
            a[i * m + j] = T::zero();
        }
    }
    true
}

/// Solves `L Z = B` in place for the unit lower-triangular `L` of an [`ldl_in_place`]
/// factorisation and `B` of `m` rows of length `c`.
#[inline(always)]
pub(crate) fn forward_unit_rows<T: KalmanFloat>(l: &[T], b: &mut [T], m: usize, c: usize) {
    for i in 1..m {
        let (done, rest) = b.split_at_mut(i * c);
        let bi = &mut rest[..c];
        for k in 0..i {
            let lik = l[i * m + k];
            for (x, &z) in bi.iter_mut().zip(&done[k * c..k * c + c]) {
                *x -= lik * z;
            }
        }
    }
}

/// Solves `Lᵀ X = Z` in place for the unit lower-triangular `L` of an [`ldl_in_place`]
/// factorisation, from the bottom row up.
#[inline(always)]
pub(crate) fn backward_unit_rows<T: KalmanFloat>(l: &[T], b: &mut [T], m: usize, c: usize) {
    for i in (0..m).rev() {
        let (head, tail) = b.split_at_mut((i + 1) * c);
        let bi = &mut head[i * c..];
        for k in i + 1..m {
            let lki = l[k * m + i];
            let off = (k - i - 1) * c;
            for (x, &z) in bi.iter_mut().zip(&tail[off..off + c]) {
                *x -= lki * z;
            }
        }
    }
}

/// Scales row `i` of the `m × c` matrix `b` by `s_i`.
#[inline(always)]
pub(crate) fn scale_rows<T: KalmanFloat>(b: &mut [T], s: &[T], c: usize) {
    for (row, &si) in b.chunks_exact_mut(c.max(1)).zip(s) {
        for x in row.iter_mut() {
            *x *= si;
        }
    }
}

/// `ln Π_i d_i`: one logarithm of the product when it is a normal number, one per factor
/// otherwise.
#[inline(always)]
pub(crate) fn ln_prod<T: KalmanFloat>(d: impl Iterator<Item = T> + Clone) -> T {
    let prod = d.clone().fold(T::one(), |p, x| p * x);
    if prod.is_normal() {
        prod.ln()
    } else {
        d.map(|x| x.ln()).sum()
    }
}

/// `ln N(e; 0, S)` for an `m`-dimensional `e` from `ln det S` and the Mahalanobis term
/// `eᵀ S⁻¹ e`.
#[inline(always)]
pub(crate) fn log_density<T: KalmanFloat>(m: usize, log_det: T, mahalanobis: T) -> T {
    lit::<T>(-0.5) * (lit::<T>(m as f64) * lit::<T>(LN_2PI) + log_det + mahalanobis)
}

/// Householder QR of the `rows × cols` matrix `a` (`rows ≥ cols`), in place: afterwards the upper
/// triangle of its first `cols` rows is `R` (with `Aᵀ A = Rᵀ R`), its rows scaled by ±1 so that
/// the diagonal of `R` is non-negative; everything below is zeroed. `v` is scratch of length
/// `rows`.
pub(crate) fn qr_r_in_place<T: KalmanFloat>(a: &mut [T], rows: usize, cols: usize, v: &mut [T]) {
    for k in 0..cols {
        // v = a[k.., k]; the reflector maps it onto −sign(v₀)‖v‖ e₀.
        let mut norm2 = T::zero();
        for i in k..rows {
            let x = a[i * cols + k];
            v[i] = x;
            norm2 += x * x;
        }
        let norm = norm2.sqrt();
        if norm == T::zero() {
            continue;
        }
        let alpha = if v[k] >= T::zero() { -norm } else { norm };
        v[k] -= alpha;
        let mut vtv = T::zero();
        for &vi in &v[k..rows] {
            vtv += vi * vi;
        }
        if vtv == T::zero() {
            continue;
        }
        let scale = lit::<T>(2.0) / vtv;
        a[k * cols + k] = alpha;
        for i in k + 1..rows {
            a[i * cols + k] = T::zero();
        }
        for j in k + 1..cols {
            let mut d = T::zero();
            for i in k..rows {
                d += v[i] * a[i * cols + j];
            }
            let f = d * scale;
            for i in k..rows {
                a[i * cols + j] -= f * v[i];
            }
        }
    }
    for k in 0..cols {
        if a[k * cols + k] < T::zero() {
            for j in k..cols {
                a[k * cols + j] = -a[k * cols + j];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_and_blocked_products_agree() {
        let (r, k, c) = (5, 7, 3);
        let a: Vec<f64> = (0..r * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * c).map(|i| (i as f64 * 0.91).cos()).collect();
        let mut at = vec![0.0; r * k];
        transpose(&a, &mut at, r, k);
        for (alpha, beta) in [(1.0, 0.0), (-1.0, 1.0)] {
            let mut loops = vec![0.5; r * c];
            let mut blocked = loops.clone();
            let mut from_t = loops.clone();
            gemm(alpha, &a, false, &b, beta, &mut loops, (r, k, c), false);
            gemm(alpha, &a, false, &b, beta, &mut blocked, (r, k, c), true);
            gemm(alpha, &at, true, &b, beta, &mut from_t, (r, k, c), true);
            for ((x, y), z) in loops.iter().zip(&blocked).zip(&from_t) {
                assert!((x - y).abs() < 1e-14 && (x - z).abs() < 1e-14);
            }
        }
    }

    #[test]
    fn qr_gives_a_triangular_factor_of_the_gram_matrix() {
        let (rows, cols) = (6, 4);
        let a: Vec<f64> = (0..rows * cols).map(|i| (i as f64 * 1.3).sin()).collect();
        let mut r = a.clone();
        let mut v = vec![0.0; rows];
        qr_r_in_place(&mut r, rows, cols, &mut v);
        for i in 0..cols {
            assert!(r[i * cols + i] >= 0.0);
            for j in 0..cols {
                let ata: f64 = (0..rows).map(|k| a[k * cols + i] * a[k * cols + j]).sum();
                let rtr: f64 = (0..cols).map(|k| r[k * cols + i] * r[k * cols + j]).sum();
                assert!((ata - rtr).abs() < 1e-13, "{ata} vs {rtr}");
                if j < i {
                    assert_eq!(r[i * cols + j], 0.0);
                }
            }
        }
    }
}
