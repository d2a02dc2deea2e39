//! The filter state and its in-place predict and update, shared by every entry point: the
//! allocation-free [`KalmanFilter`](crate::KalmanFilter), the sequence functions and the
//! one-off [`Gaussian`](crate::Gaussian) methods all run this code, so they agree bitwise.
//!
//! State dimensions up to [`FIXED_MAX_DIM`] are dispatched at run time to copies of the step
//! compiled for that dimension as a constant, so that the loops are unrolled and vectorised; the
//! arithmetic (and so the result) is that of the general copy.

use std::borrow::Cow;

use ndarray::Array2;

use crate::KalmanError;
use crate::fixed::{predict_fixed, update_fixed};
use crate::float::KalmanFloat;
use crate::gaussian::UpdateForm;
use crate::kernel::{
    BLOCKED_MIN_DIM, add_assign, axpy_rows, backward_unit_rows, cholesky_in_place, forward_rows,
    forward_unit_rows, gemm, gemm_sym, ldl_in_place, ln_prod, log_density, mirror_lower,
    qr_r_in_place, scale_rows, transpose,
};
use crate::model::{LinearModel, Measurement, Transition};

/// Largest state dimension with a copy of the step compiled for it (on fixed-size arrays, see
/// [`KalmanFilter`](crate::KalmanFilter)); the update has such copies for observation dimensions
/// up to [`FIXED_MAX_OBS_DIM`].
pub const FIXED_MAX_DIM: usize = 8;

/// Largest observation dimension with a copy of the update compiled for it.
pub const FIXED_MAX_OBS_DIM: usize = 4;

/// The entries of `a` in row-major order, borrowed when `a` is in standard layout (every matrix
/// the crate stores is).
pub(crate) fn row_major<T: KalmanFloat>(a: &Array2<T>) -> Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}

/// A model's matrices in the row-major form the kernels read (with the transposes they read
/// along rows), copied once per model and kept between steps.
#[derive(Debug, Clone, Default)]
pub(crate) struct Prepared<T> {
    /// Observation dimension `m`.
    m: usize,
    f: Vec<T>,
    /// `Fᵀ`, `n × n`.
    ft: Vec<T>,
    q: Vec<T>,
    /// The factor `G` of `Q = G Gᵀ`.
    g: Vec<T>,
    /// `Bᵀ`, `p × n` (empty without control).
    bt: Vec<T>,
    h: Vec<T>,
    /// `Hᵀ`, `n × m`.
    ht: Vec<T>,
    r: Vec<T>,
    /// The Cholesky factor of `R`.
    lr: Vec<T>,
}

fn copy_into<T: KalmanFloat>(dst: &mut Vec<T>, a: &Array2<T>) {
    dst.clear();
    dst.extend_from_slice(&row_major(a));
}

impl<T: KalmanFloat> Prepared<T> {
    pub(crate) fn load_transition(&mut self, tr: &Transition<T>) {
        let n = tr.state_dim();
        copy_into(&mut self.f, tr.f());
        copy_into(&mut self.q, tr.q());
        copy_into(&mut self.g, tr.q_factor());
        self.ft.resize(n * n, T::zero());
        transpose(&self.f, &mut self.ft, n, n);
        let p = tr.control_dim();
        self.bt.resize(p * n, T::zero());
        if let Some(b) = tr.b() {
            transpose(&row_major(b), &mut self.bt, n, p);
        }
    }

    pub(crate) fn load_measurement(&mut self, me: &Measurement<T>) {
        let (m, n) = (me.obs_dim(), me.state_dim());
        self.m = m;
        copy_into(&mut self.h, me.h());
        copy_into(&mut self.r, me.r());
        copy_into(&mut self.lr, me.r_cholesky().lower());
        self.ht.resize(n * m, T::zero());
        transpose(&self.h, &mut self.ht, m, n);
    }

    pub(crate) fn load(&mut self, model: &LinearModel<T>) {
        self.load_transition(model.transition());
        self.load_measurement(model.measurement());
    }
}

/// Scratch buffers, grown on demand and reused.
#[derive(Debug, Clone, Default)]
struct Scratch<T> {
    xn: Vec<T>,
    tmp: Vec<T>,
    ap: Vec<T>,
    hp: Vec<T>,
    zm: Vec<T>,
    kt: Vec<T>,
    c: Vec<T>,
    w: Vec<T>,
    pub(crate) s: Vec<T>,
    l: Vec<T>,
    pub(crate) e: Vec<T>,
    z: Vec<T>,
    inv_d: Vec<T>,
    u: Vec<T>,
    pre: Vec<T>,
    v: Vec<T>,
    /// The `(n, m)` the buffers were last checked for.
    sized: (usize, usize),
}

fn grow<T: KalmanFloat>(v: &mut Vec<T>, len: usize) {
    if v.len() < len {
        v.resize(len, T::zero());
    }
}

impl<T: KalmanFloat> Scratch<T> {
    #[inline(always)]
    fn ensure(&mut self, n: usize, m: usize) {
        if self.sized.0 < n || self.sized.1 < m {
            self.grow_to(n, m);
        }
    }

    #[cold]
    fn grow_to(&mut self, n: usize, m: usize) {
        self.sized = (n.max(self.sized.0), m.max(self.sized.1));
        let (n, m) = self.sized;
        let d = n + m;
        for (buf, len) in [
            (&mut self.xn, n),
            (&mut self.tmp, n * n),
            (&mut self.ap, n * n),
            (&mut self.hp, m * n),
            (&mut self.zm, m * n),
            (&mut self.kt, m * n),
            (&mut self.c, n * m),
            (&mut self.w, m * n),
            (&mut self.s, m * m),
            (&mut self.l, m * m),
            (&mut self.e, m),
            (&mut self.z, m),
            (&mut self.inv_d, m),
            (&mut self.u, m),
            (&mut self.pre, (d * d).max(2 * n * n)),
            (&mut self.v, d.max(2 * n)),
        ] {
            grow(buf, len);
        }
    }
}

/// The belief of a filter in flat row-major storage, with its scratch space.
#[derive(Debug, Clone)]
pub(crate) struct Core<T> {
    n: usize,
    form: UpdateForm,
    pub(crate) x: Vec<T>,
    pub(crate) p: Vec<T>,
    /// Lower-triangular `S` with `P = S Sᵀ` ([`UpdateForm::SquareRoot`] only, else empty).
    pub(crate) s: Vec<T>,
    ws: Scratch<T>,
}

impl<T: KalmanFloat> Core<T> {
    /// A core holding `N(mean, cov)`; in square-root form `cov` is factorised (error naming
    /// `"cov"` if it is not numerically positive definite).
    pub(crate) fn new(mean: &[T], cov: &[T], form: UpdateForm) -> Result<Self, KalmanError> {
        let n = mean.len();
        let mut core = Self {
            n,
            form,
            x: mean.to_vec(),
            p: cov.to_vec(),
            s: Vec::new(),
            ws: Scratch::default(),
        };
        if form == UpdateForm::SquareRoot {
            core.s = cov.to_vec();
            if !cholesky_in_place(&mut core.s, n) {
                return Err(KalmanError::NotPositiveDefinite { matrix: "cov" });
            }
        }
        Ok(core)
    }

    pub(crate) fn dim(&self) -> usize {
        self.n
    }

    pub(crate) fn form(&self) -> UpdateForm {
        self.form
    }

    /// The innovation `e` and covariance `S` of the last successful update.
    pub(crate) fn last_innovation(&self, m: usize) -> (&[T], &[T]) {
        (&self.ws.e[..m], &self.ws.s[..m * m])
    }

    /// `μ ← Fμ + Bu`, `Σ ← FΣFᵀ + Q` (in square-root form through the factors). The caller has
    /// checked the dimensions (and `u`, of length `p`, if given).
    pub(crate) fn predict(&mut self, prep: &Prepared<T>, u: Option<&[T]>) {
        let n = self.n;
        let (f, q) = (&prep.f, &prep.q);
        let blocked = n >= BLOCKED_MIN_DIM;
        let control = u.map(|u| (u, prep.bt.as_slice()));
        if self.form == UpdateForm::SquareRoot {
            self.ws.ensure(n, 0);
            predict_mean::<T, 0>(n, &mut self.x, &prep.ft, control, &mut self.ws);
            self.predict_sqrt(f, &prep.g, blocked);
            return;
        }
        macro_rules! go {
            ($($k:literal)*) => {
                match n {
                    $($k => predict_fixed::<T, $k>(&mut self.x, &mut self.p, f, &prep.ft, q, control),)*
                    _ => {
                        self.ws.ensure(n, 0);
                        predict_cov::<T, 0>(n, &mut self.x, &mut self.p, f, &prep.ft, q, control, &mut self.ws, blocked)
                    }
                }
            };
        }
        go!(1 2 3 4 5 6 7 8);
    }

    fn predict_sqrt(&mut self, f: &[T], g: &[T], blocked: bool) {
        let (n, nn) = (self.n, self.n * self.n);
        let ws = &mut self.ws;
        // Pre-array [(F S)ᵀ; Gᵀ] (2n × n): its Gram matrix is F S Sᵀ Fᵀ + G Gᵀ = F P Fᵀ + Q.
        gemm(
            T::one(),
            f,
            false,
            &self.s,
            T::zero(),
            &mut ws.tmp,
            (n, n, n),
            blocked,
        );
        transpose(&ws.tmp[..nn], &mut ws.pre[..nn], n, n);
        transpose(g, &mut ws.pre[nn..2 * nn], n, n);
        qr_r_in_place(&mut ws.pre[..2 * nn], 2 * n, n, &mut ws.v);
        // S ← Rᵀ, P ← Rᵀ R.
        transpose(&ws.pre[..nn], &mut self.s, n, n);
        gemm(
            T::one(),
            &ws.pre[..nn],
            true,
            &ws.pre[..nn],
            T::zero(),
            &mut self.p,
            (n, n, n),
            blocked,
        );
        mirror_lower(&mut self.p, n);
    }

    /// The measurement update with `y` (checked by the caller for length; checked here for
    /// finiteness); returns `ln N(y; Hμ, S)` when `likelihood`, else `None` (the new mean and
    /// covariance are bitwise the same either way). On error nothing is changed.
    pub(crate) fn update(
        &mut self,
        prep: &Prepared<T>,
        y: &[T],
        likelihood: bool,
    ) -> Result<Option<T>, KalmanError> {
        let (n, m) = (self.n, prep.m);
        // Exactly the cases dispatched to `update_fixed` below.
        let fixed = (1..=FIXED_MAX_DIM).contains(&n)
            && (1..=FIXED_MAX_OBS_DIM).contains(&m)
            && self.form != UpdateForm::SquareRoot;
        // The fixed-size copies check `y` themselves, only when the innovation is not finite.
        if !fixed && y.iter().any(|v| !v.is_finite()) {
            return Err(KalmanError::NonFinite { argument: "y" });
        }
        self.ws.ensure(n, m);
        let blocked = n >= BLOCKED_MIN_DIM;
        let meas = MeasRef {
            m,
            h: &prep.h,
            ht: &prep.ht,
            r: &prep.r,
            lr: &prep.lr,
        };
        if self.form == UpdateForm::SquareRoot {
            return self.update_sqrt(&meas, y, likelihood, blocked);
        }
        let joseph = self.form == UpdateForm::Joseph;
        let (x, p, ws) = (&mut self.x, &mut self.p, &mut self.ws);
        let mats = (meas.h, meas.ht, meas.r, meas.lr);
        macro_rules! call {
            ($n:literal, $m:literal) => {
                update_fixed::<T, $n, $m>(x, p, mats, y, joseph, likelihood, &mut ws.e, &mut ws.s)
            };
        }
        macro_rules! with_m {
            ($n:literal) => {
                match m {
                    1 => call!($n, 1),
                    2 => call!($n, 2),
                    3 => call!($n, 3),
                    4 => call!($n, 4),
                    _ => update_cov::<T, 0, 0>(n, x, p, &meas, y, joseph, likelihood, ws, blocked),
                }
            };
        }
        match n {
            1 => with_m!(1),
            2 => with_m!(2),
            3 => with_m!(3),
            4 => with_m!(4),
            5 => with_m!(5),
            6 => with_m!(6),
            7 => with_m!(7),
            8 => with_m!(8),
            _ => update_cov::<T, 0, 0>(n, x, p, &meas, y, joseph, likelihood, ws, blocked),
        }
    }

    /// [`update`](Self::update) with the log-likelihood, which is then always computed.
    pub(crate) fn update_with_likelihood(
        &mut self,
        prep: &Prepared<T>,
        y: &[T],
    ) -> Result<T, KalmanError> {
        self.update(prep, y, true)
            .map(|ll| ll.unwrap_or_else(T::nan))
    }

    fn update_sqrt(
        &mut self,
        me: &MeasRef<'_, T>,
        y: &[T],
        likelihood: bool,
        blocked: bool,
    ) -> Result<Option<T>, KalmanError> {
        let (n, m) = (self.n, me.m);
        let (d, mm, nn) = (n + m, m * m, n * n);
        let ws = &mut self.ws;
        // Pre-array (transposed) [[Lrᵀ, 0], [(H S)ᵀ, Sᵀ]]: after QR, its triangular factor's
        // transpose is [[Se, 0], [K̄, S⁺]] with Se Seᵀ = S, K̄ = K Se and S⁺ S⁺ᵀ = P⁺.
        let pre = &mut ws.pre[..d * d];
        pre.fill(T::zero());
        gemm(
            T::one(),
            me.h,
            false,
            &self.s,
            T::zero(),
            &mut ws.hp,
            (m, n, n),
            blocked,
        );
        for i in 0..m {
            for j in 0..=i {
                pre[j * d + i] = me.lr[i * m + j];
            }
        }
        for i in 0..n {
            for j in 0..m {
                pre[(m + i) * d + j] = ws.hp[j * n + i];
            }
            for j in 0..=i {
                pre[(m + j) * d + m + i] = self.s[i * n + j];
            }
        }
        qr_r_in_place(pre, d, d, &mut ws.v);
        let l = &mut ws.l[..mm];
        for i in 0..m {
            for j in 0..m {
                l[i * m + j] = if j <= i { pre[j * d + i] } else { T::zero() };
            }
            if !(l[i * m + i] > T::zero() && l[i * m + i].is_finite()) {
                return Err(KalmanError::NotPositiveDefinite {
                    matrix: "innovation covariance",
                });
            }
        }
        innovation(&mut ws.e[..m], &mut ws.z[..m], y, &self.x, me.ht)?;
        ws.z[..m].copy_from_slice(&ws.e[..m]);
        forward_rows(l, &mut ws.z[..m], m, 1);
        let ll = likelihood.then(|| {
            let log_det = ln_prod((0..m).map(|i| l[i * m + i]));
            let maha = ws.z[..m].iter().fold(T::zero(), |acc, &v| acc + v * v);
            log_density(m, log_det + log_det, maha)
        });
        // S = Se Seᵀ, reported by the one-off update.
        for i in 0..m {
            for j in 0..=i {
                let v = (0..=j).fold(T::zero(), |acc, k| acc + l[i * m + k] * l[j * m + k]);
                ws.s[i * m + j] = v;
                ws.s[j * m + i] = v;
            }
        }
        // Commit: μ += K̄ z, S ← S⁺, P ← S⁺ S⁺ᵀ.
        for (lz, &zl) in ws.z[..m].iter().enumerate() {
            let row = &pre[lz * d + m..lz * d + m + n];
            for (xi, &k) in self.x.iter_mut().zip(row) {
                *xi += zl * k;
            }
        }
        let u22 = &mut ws.tmp[..nn];
        for i in 0..n {
            u22[i * n..(i + 1) * n].copy_from_slice(&pre[(m + i) * d + m..(m + i) * d + m + n]);
        }
        transpose(u22, &mut self.s, n, n);
        gemm(
            T::one(),
            u22,
            true,
            u22,
            T::zero(),
            &mut self.p,
            (n, n, n),
            blocked,
        );
        mirror_lower(&mut self.p, n);
        Ok(ll)
    }
}

/// A measurement model's matrices as row-major slices.
struct MeasRef<'a, T> {
    m: usize,
    h: &'a [T],
    ht: &'a [T],
    r: &'a [T],
    lr: &'a [T],
}

/// `e = y − Hμ` (with `Hμ` accumulated in `hx`); error if it overflowed.
#[inline(always)]
fn innovation<T: KalmanFloat>(
    e: &mut [T],
    hx: &mut [T],
    y: &[T],
    x: &[T],
    ht: &[T],
) -> Result<(), KalmanError> {
    hx.fill(T::zero());
    axpy_rows(hx, x, ht, e.len());
    for ((ei, &yi), &hi) in e.iter_mut().zip(y).zip(hx.iter()) {
        *ei = yi - hi;
    }
    if e.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(KalmanError::NonFinite {
            argument: "innovation",
        })
    }
}

#[inline(always)]
const fn dim<const N: usize>(n: usize) -> usize {
    if N == 0 { n } else { N }
}

/// `μ ← F μ + B u` (as `Σ_k μ_k (Fᵀ)_k + Σ_l u_l (Bᵀ)_l`, along contiguous rows).
#[inline(always)]
fn predict_mean<T: KalmanFloat, const N: usize>(
    n: usize,
    x: &mut [T],
    ft: &[T],
    control: Option<(&[T], &[T])>,
    ws: &mut Scratch<T>,
) {
    let n = dim::<N>(n);
    let (x, xn) = (&mut x[..n], &mut ws.xn[..n]);
    xn.fill(T::zero());
    axpy_rows(xn, x, &ft[..n * n], n);
    if let Some((u, bt)) = control {
        axpy_rows(xn, u, bt, n);
    }
    x.copy_from_slice(xn);
}

/// `μ ← F μ + B u`, `P ← F P Fᵀ + Q` (lower triangle mirrored: exactly symmetric).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn predict_cov<T: KalmanFloat, const N: usize>(
    n: usize,
    x: &mut [T],
    p: &mut [T],
    f: &[T],
    ft: &[T],
    q: &[T],
    control: Option<(&[T], &[T])>,
    ws: &mut Scratch<T>,
    blocked: bool,
) {
    predict_mean::<T, N>(n, x, ft, control, ws);
    let n = dim::<N>(n);
    let nn = n * n;
    let (p, tmp) = (&mut p[..nn], &mut ws.tmp[..nn]);
    gemm(T::one(), f, false, p, T::zero(), tmp, (n, n, n), blocked);
    gemm_sym(T::one(), tmp, false, ft, T::zero(), p, (n, n), blocked);
    for i in 0..n {
        add_assign(&mut p[i * n..i * n + i + 1], &q[i * n..i * n + i + 1]);
    }
    mirror_lower(p, n);
}

/// The covariance-form update (standard or Joseph).
///
/// With `S = H P Hᵀ + R = L D Lᵀ` (unit lower `L`, diagonal `D`), `Z = L⁻¹ H P` and
/// `z = L⁻¹ e`: the gain times the innovation is `Zᵀ D⁻¹ z`, the standard form is
/// `P − Zᵀ D⁻¹ Z`, and the Joseph form is `(I − KH) P (I − KH)ᵀ + K R Kᵀ` with
/// `Kᵀ = L⁻ᵀ D⁻¹ Z`, evaluated as `A P = P − K (H P)`, `A P Aᵀ = A P − (A P Hᵀ) Kᵀ`, and
/// `K R Kᵀ = Wᵀ W` with `W = L_Rᵀ Kᵀ`. The log-likelihood uses `ln det S = Σ ln d_i` and
/// `eᵀ S⁻¹ e = Σ z_i² / d_i`.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn update_cov<T: KalmanFloat, const N: usize, const M: usize>(
    n: usize,
    x: &mut [T],
    p: &mut [T],
    me: &MeasRef<'_, T>,
    y: &[T],
    joseph: bool,
    likelihood: bool,
    ws: &mut Scratch<T>,
    blocked: bool,
) -> Result<Option<T>, KalmanError> {
    let n = dim::<N>(n);
    let m = dim::<M>(me.m);
    let (nn, mn, mm) = (n * n, m * n, m * m);
    let (x, p) = (&mut x[..n], &mut p[..nn]);
    let (hp, zm, s, l) = (
        &mut ws.hp[..mn],
        &mut ws.zm[..mn],
        &mut ws.s[..mm],
        &mut ws.l[..mm],
    );
    let (inv_d, u) = (&mut ws.inv_d[..m], &mut ws.u[..m]);
    let (h, ht) = (&me.h[..mn], &me.ht[..mn]);
    let y = &y[..m];
    gemm(T::one(), h, false, p, T::zero(), hp, (m, n, n), blocked);
    gemm(T::one(), hp, false, ht, T::zero(), s, (m, n, m), blocked);
    add_assign(s, &me.r[..mm]);
    mirror_lower(s, m);
    l.copy_from_slice(s);
    if !ldl_in_place(l, inv_d, u, m) {
        return Err(KalmanError::NotPositiveDefinite {
            matrix: "innovation covariance",
        });
    }
    let (e, z) = (&mut ws.e[..m], &mut ws.z[..m]);
    innovation(e, z, y, x, ht)?;
    z.copy_from_slice(e);
    forward_unit_rows(l, z, m, 1);
    zm.copy_from_slice(hp);
    forward_unit_rows(l, zm, m, n);
    // z ← D⁻¹ z, accumulating zᵀ D⁻¹ z when the likelihood is wanted.
    let mut maha = T::zero();
    for (zi, &di) in z.iter_mut().zip(inv_d.iter()) {
        let zd = *zi * di;
        if likelihood {
            maha += *zi * zd;
        }
        *zi = zd;
    }
    let ll = likelihood.then(|| log_density(m, ln_prod((0..m).map(|i| l[i * m + i])), maha));
    axpy_rows(x, z, zm, n);
    let kt = &mut ws.kt[..mn];
    kt.copy_from_slice(zm);
    scale_rows(kt, inv_d, n);
    if !joseph {
        gemm_sym(-T::one(), zm, true, kt, T::one(), p, (n, m), blocked);
        return Ok(ll);
    }
    let (ap, c, w) = (&mut ws.ap[..nn], &mut ws.c[..mn], &mut ws.w[..mn]);
    backward_unit_rows(l, kt, m, n);
    ap.copy_from_slice(p);
    gemm(-T::one(), kt, true, hp, T::one(), ap, (n, m, n), blocked);
    gemm(T::one(), ap, false, ht, T::zero(), c, (n, n, m), blocked);
    p.copy_from_slice(ap);
    gemm_sym(-T::one(), c, false, kt, T::one(), p, (n, m), blocked);
    gemm(
        T::one(),
        &me.lr[..mm],
        true,
        kt,
        T::zero(),
        w,
        (m, m, n),
        blocked,
    );
    gemm_sym(T::one(), w, true, w, T::one(), p, (n, m), blocked);
    Ok(ll)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic numbers in [-1, 1).
    fn numbers(seed: u64, len: usize) -> Vec<f64> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    /// `A Aᵀ + I` for a random `A`, row-major.
    fn spd(seed: u64, n: usize) -> Vec<f64> {
        let a = numbers(seed, n * n);
        let mut out = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                out[i * n + j] = (0..n).map(|k| a[i * n + k] * a[j * n + k]).sum::<f64>()
                    + f64::from(u8::from(i == j));
            }
        }
        out
    }

    /// The copies of the step compiled for a constant dimension give bitwise the results of the
    /// general copy.
    #[test]
    fn fixed_size_copies_equal_the_general_copy_bitwise() {
        fn check<const N: usize>() {
            let (n, m) = (N, 2);
            let f = numbers(1, n * n);
            let mut ft = vec![0.0; n * n];
            transpose(&f, &mut ft, n, n);
            let q = spd(2, n);
            let h = numbers(3, m * n);
            let mut ht = vec![0.0; n * m];
            transpose(&h, &mut ht, m, n);
            let r = spd(4, m);
            let mut lr = r.clone();
            assert!(cholesky_in_place(&mut lr, m));
            let me = MeasRef {
                m,
                h: &h,
                ht: &ht,
                r: &r,
                lr: &lr,
            };
            let y = numbers(5, m);
            for joseph in [false, true] {
                let mut results = Vec::new();
                for fixed in [false, true] {
                    let mut ws = Scratch::default();
                    ws.ensure(n, m);
                    let mut x = numbers(6, n);
                    let mut p = spd(7, n);
                    let ll = if fixed {
                        let (mut e, mut s) = (vec![0.0; m], vec![0.0; m * m]);
                        predict_fixed::<f64, N>(&mut x, &mut p, &f, &ft, &q, None);
                        update_fixed::<f64, N, 2>(
                            &mut x,
                            &mut p,
                            (&h, &ht, &r, &lr),
                            &y,
                            joseph,
                            true,
                            &mut e,
                            &mut s,
                        )
                    } else {
                        predict_cov::<f64, 0>(n, &mut x, &mut p, &f, &ft, &q, None, &mut ws, false);
                        update_cov::<f64, 0, 0>(
                            n, &mut x, &mut p, &me, &y, joseph, true, &mut ws, false,
                        )
                    };
                    results.push((x, p, ll.unwrap().unwrap()));
                }
                let bits = |(x, p, ll): &(Vec<f64>, Vec<f64>, f64)| {
                    (
                        x.iter().chain(p).map(|v| v.to_bits()).collect::<Vec<_>>(),
                        ll.to_bits(),
                    )
                };
                assert_eq!(
                    bits(&results[0]),
                    bits(&results[1]),
                    "n = {n}, joseph = {joseph}"
                );
            }
        }
        check::<1>();
        check::<2>();
        check::<3>();
        check::<4>();
        check::<5>();
        check::<6>();
        check::<7>();
        check::<8>();
    }
}
