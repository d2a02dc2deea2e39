//! The step for small states, on fixed-size arrays that the compiler keeps in registers.
//!
//! [`predict_fixed`] and [`update_fixed`] perform exactly the floating-point operations of the
//! general slice code in [`crate::step`] (`predict_cov`, `update_cov`), in the same order for
//! every entry, only on local `[[T; C]; R]` arrays instead of scratch buffers: their results are
//! bitwise those of the general code (checked by the unit tests of `core`).

// Index loops on purpose: they spell out the order of the operations on every entry, which the
// fixed-size and general copies of the step must share to agree bitwise.
#![allow(clippy::needless_range_loop)]

use crate::KalmanError;
use crate::float::KalmanFloat;
use crate::kernel::{ln_prod, log_density};

/// `C = β·init + α A B` for `A` given entrywise by `a(i, k)` (`R × K`), `B` `K × C`: entry
/// `(i, j)` accumulates `(α a(i, k)) b_kj` for `k = 0, 1, …` onto `init_ij` (or zero), as
/// `kernel::gemm` does.
#[inline(always)]
fn mul<T: KalmanFloat, const R: usize, const K: usize, const C: usize>(
    alpha: T,
    a: impl Fn(usize, usize) -> T,
    b: &[[T; C]; K],
    init: Option<&[[T; C]; R]>,
) -> [[T; C]; R] {
    let mut out = match init {
        Some(init) => *init,
        None => [[T::zero(); C]; R],
    };
    for (i, row) in out.iter_mut().enumerate() {
        for (k, bk) in b.iter().enumerate() {
            let aik = alpha * a(i, k);
            for (o, &bkj) in row.iter_mut().zip(bk) {
                *o += aik * bkj;
            }
        }
    }
    out
}

/// As [`mul`] for a symmetric `N × N` result: the lower triangle only, then mirrored (as
/// `kernel::gemm_sym`).
#[inline(always)]
fn mul_sym<T: KalmanFloat, const N: usize, const K: usize>(
    alpha: T,
    a: impl Fn(usize, usize) -> T,
    b: &[[T; N]; K],
    init: Option<&[[T; N]; N]>,
) -> [[T; N]; N] {
    let mut out = match init {
        Some(init) => *init,
        None => [[T::zero(); N]; N],
    };
    for (i, row) in out.iter_mut().enumerate() {
        for (k, bk) in b.iter().enumerate() {
            let aik = alpha * a(i, k);
            for (o, &bkj) in row[..=i].iter_mut().zip(bk) {
                *o += aik * bkj;
            }
        }
    }
    mirror(&mut out);
    out
}

/// `s` (row-major, at least `R × C` long) viewed as an `R × C` array, without a copy.
#[inline(always)]
fn view<T: KalmanFloat, const R: usize, const C: usize>(s: &[T]) -> &[[T; C]; R] {
    let (rows, _) = s[..R * C].as_chunks::<C>();
    rows.try_into()
        .expect("a slice of R × C entries is R rows of C")
}

#[inline(always)]
fn load<T: KalmanFloat, const R: usize, const C: usize>(s: &[T]) -> [[T; C]; R] {
    let mut a = [[T::zero(); C]; R];
    for (i, row) in a.iter_mut().enumerate() {
        row.copy_from_slice(&s[i * C..(i + 1) * C]);
    }
    a
}

#[inline(always)]
fn store<T: KalmanFloat, const R: usize, const C: usize>(a: &[[T; C]; R], s: &mut [T]) {
    for (i, row) in a.iter().enumerate() {
        s[i * C..(i + 1) * C].copy_from_slice(row);
    }
}

#[inline(always)]
fn mirror<T: KalmanFloat, const N: usize>(a: &mut [[T; N]; N]) {
    for i in 0..N {
        for j in 0..i {
            a[j][i] = a[i][j];
        }
    }
}

/// `y += Σ_k x_k rows_k`.
#[inline(always)]
fn axpy_rows<T: KalmanFloat, const K: usize, const C: usize>(
    y: &mut [T; C],
    x: &[T; K],
    rows: &[[T; C]; K],
) {
    for (&xk, row) in x.iter().zip(rows) {
        for (yi, &r) in y.iter_mut().zip(row) {
            *yi += xk * r;
        }
    }
}

/// `L Z = B` in place for unit lower `L` (as `kernel::forward_unit_rows`).
#[inline(always)]
fn forward_unit<T: KalmanFloat, const M: usize, const C: usize>(
    l: &[[T; M]; M],
    b: &mut [[T; C]; M],
) {
    for i in 1..M {
        for k in 0..i {
            let lik = l[i][k];
            let bk = b[k];
            for (x, &z) in b[i].iter_mut().zip(&bk) {
                *x -= lik * z;
            }
        }
    }
}

/// `Lᵀ X = Z` in place for unit lower `L` (as `kernel::backward_unit_rows`).
#[inline(always)]
fn backward_unit<T: KalmanFloat, const M: usize, const C: usize>(
    l: &[[T; M]; M],
    b: &mut [[T; C]; M],
) {
    for i in (0..M).rev() {
        for k in i + 1..M {
            let lki = l[k][i];
            let bk = b[k];
            for (x, &z) in b[i].iter_mut().zip(&bk) {
                *x -= lki * z;
            }
        }
    }
}

/// `L D Lᵀ` in place (as `kernel::ldl_in_place`).
#[inline(always)]
fn ldl<T: KalmanFloat, const M: usize>(a: &mut [[T; M]; M], inv_d: &mut [T; M]) -> bool {
    let mut u = [T::zero(); M];
    for i in 0..M {
        for j in 0..i {
            let mut s = a[i][j];
            for k in 0..j {
                s -= u[k] * a[j][k];
            }
            u[j] = s;
        }
        let mut d = a[i][i];
        for j in 0..i {
            let l = u[j] * inv_d[j];
            a[i][j] = l;
            d -= u[j] * l;
        }
        if !(d > T::zero() && d.is_finite()) {
            return false;
        }
        a[i][i] = d;
        inv_d[i] = d.recip();
        for j in i + 1..M {
            a[i][j] = T::zero();
        }
    }
    true
}

/// `μ ← F μ + B u`, `P ← F P Fᵀ + Q` for `n = N`.
#[inline(never)]
pub(crate) fn predict_fixed<T: KalmanFloat, const N: usize>(
    x: &mut [T],
    p: &mut [T],
    f: &[T],
    ft: &[T],
    q: &[T],
    control: Option<(&[T], &[T])>,
) {
    let ftm: &[[T; N]; N] = view(ft);
    let mut xn = [T::zero(); N];
    let xv: [[T; N]; 1] = load(x);
    axpy_rows(&mut xn, &xv[0], ftm);
    if let Some((u, bt)) = control {
        for (l, &ul) in u.iter().enumerate() {
            for (xi, &b) in xn.iter_mut().zip(&bt[l * N..(l + 1) * N]) {
                *xi += ul * b;
            }
        }
    }
    x[..N].copy_from_slice(&xn);
    let fm: &[[T; N]; N] = view(f);
    let pm: &[[T; N]; N] = view(p);
    let tmp: [[T; N]; N] = mul(T::one(), |i, k| fm[i][k], pm, None);
    let mut out: [[T; N]; N] = mul_sym(T::one(), |i, k| tmp[i][k], ftm, None);
    let qm: &[[T; N]; N] = view(q);
    for (i, (row, qrow)) in out.iter_mut().zip(qm).enumerate() {
        for (o, &qv) in row[..=i].iter_mut().zip(qrow) {
            *o += qv;
        }
    }
    mirror(&mut out);
    store(&out, p);
}

/// The covariance-form update for `n = N`, `m = M` (standard, or Joseph when `joseph`); the
/// innovation and its covariance go to `e_out`, `s_out`. Checks `y` (of length `M`) for
/// finiteness as the general code does. Returns the log-likelihood when
/// `likelihood` (the mean and covariance do not depend on it). Nothing is written on error.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn update_fixed<T: KalmanFloat, const N: usize, const M: usize>(
    x: &mut [T],
    p: &mut [T],
    (h, ht, r, lr): (&[T], &[T], &[T], &[T]),
    y: &[T],
    joseph: bool,
    likelihood: bool,
    e_out: &mut [T],
    s_out: &mut [T],
) -> Result<Option<T>, KalmanError> {
    let pm: [[T; N]; N] = load(p);
    let hm: &[[T; N]; M] = view(h);
    let htm: &[[T; M]; N] = view(ht);
    let hp: [[T; N]; M] = mul(T::one(), |i, k| hm[i][k], &pm, None);
    let mut s: [[T; M]; M] = mul(T::one(), |i, k| hp[i][k], htm, None);
    let rm: &[[T; M]; M] = view(r);
    for (row, rrow) in s.iter_mut().zip(rm) {
        for (o, &rv) in row.iter_mut().zip(rrow) {
            *o += rv;
        }
    }
    mirror(&mut s);
    // The innovation first: a non-finite `y` makes it non-finite, so `y` is checked only then,
    // and the errors come in the order of the general code (`y`, then `S`, then innovation).
    let xv: [[T; N]; 1] = load(x);
    let mut hx = [T::zero(); M];
    axpy_rows(&mut hx, &xv[0], htm);
    let mut e = [[T::zero(); 1]; M];
    for ((ei, &yi), &hi) in e.iter_mut().zip(y).zip(&hx) {
        ei[0] = yi - hi;
    }
    let e_finite = e.iter().all(|v| v[0].is_finite());
    if !e_finite && y.iter().any(|v| !v.is_finite()) {
        return Err(KalmanError::NonFinite { argument: "y" });
    }
    let mut l = s;
    let mut inv_d = [T::zero(); M];
    if !ldl(&mut l, &mut inv_d) {
        return Err(KalmanError::NotPositiveDefinite {
            matrix: "innovation covariance",
        });
    }
    if !e_finite {
        return Err(KalmanError::NonFinite {
            argument: "innovation",
        });
    }
    let mut z = e;
    forward_unit(&l, &mut z);
    let mut zm = hp;
    forward_unit(&l, &mut zm);
    let mut zd = [T::zero(); M];
    for ((o, zi), &di) in zd.iter_mut().zip(&z).zip(&inv_d) {
        *o = zi[0] * di;
    }
    let ll = likelihood.then(|| {
        let maha = z
            .iter()
            .zip(&zd)
            .fold(T::zero(), |acc, (zi, &v)| acc + zi[0] * v);
        log_density(M, ln_prod((0..M).map(|i| l[i][i])), maha)
    });
    let mut xn = xv[0];
    axpy_rows(&mut xn, &zd, &zm);
    let mut kt = zm;
    for (row, &di) in kt.iter_mut().zip(&inv_d) {
        for v in row.iter_mut() {
            *v *= di;
        }
    }
    let out = if joseph {
        backward_unit(&l, &mut kt);
        let ap = mul(-T::one(), |i, k| kt[k][i], &hp, Some(&pm));
        let c: [[T; M]; N] = mul(T::one(), |i, k| ap[i][k], htm, None);
        let pj = mul_sym(-T::one(), |i, k| c[i][k], &kt, Some(&ap));
        let lrm: &[[T; M]; M] = view(lr);
        let w: [[T; N]; M] = mul(T::one(), |i, k| lrm[k][i], &kt, None);
        mul_sym(T::one(), |i, k| w[k][i], &w, Some(&pj))
    } else {
        mul_sym(-T::one(), |i, k| zm[k][i], &kt, Some(&pm))
    };
    store(&out, p);
    x[..N].copy_from_slice(&xn);
    for (o, v) in e_out.iter_mut().zip(&e) {
        *o = v[0];
    }
    store(&s, s_out);
    Ok(ll)
}
