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
use crate::float::KalmanFloat;
use crate::gaussian::UpdateForm;
use crate::kernel::{
    BLOCKED_MIN_DIM, add_assign, axpy_rows, backward_rows, cholesky_in_place, forward_rows, gemm,
    log_density, log_diag_sum, mirror_lower, qr_r_in_place, transpose,
};
use crate::model::{LinearModel, Measurement, Transition};

/// Largest state dimension with a copy of the step compiled for it.
pub const FIXED_MAX_DIM: usize = 8;

/// The entries of `a` in row-major order, borrowed when `a` is in standard layout (every matrix
/// the crate stores is).
pub(crate) fn row_major<T: KalmanFloat>(a: &Array2<T>) -> Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}

/// The transposes of a model's matrices that the kernels read along rows, kept between steps.
#[derive(Debug, Clone, Default)]
pub(crate) struct Prepared<T> {
    /// `Fᵀ`, `n × n`.
    pub(crate) ft: Vec<T>,
    /// `Bᵀ`, `p × n` (empty without control).
    pub(crate) bt: Vec<T>,
    /// `Hᵀ`, `n × m`.
    pub(crate) ht: Vec<T>,
}

impl<T: KalmanFloat> Prepared<T> {
    pub(crate) fn load_transition(&mut self, tr: &Transition<T>) {
        let n = tr.state_dim();
        self.ft.resize(n * n, T::zero());
        transpose(&row_major(tr.f()), &mut self.ft, n, n);
        let p = tr.control_dim();
        self.bt.resize(p * n, T::zero());
        if let Some(b) = tr.b() {
            transpose(&row_major(b), &mut self.bt, n, p);
        }
    }

    pub(crate) fn load_measurement(&mut self, me: &Measurement<T>) {
        let (m, n) = (me.obs_dim(), me.state_dim());
        self.ht.resize(n * m, T::zero());
        transpose(&row_major(me.h()), &mut self.ht, m, n);
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
    pre: Vec<T>,
    v: Vec<T>,
}

fn grow<T: KalmanFloat>(v: &mut Vec<T>, len: usize) {
    if v.len() < len {
        v.resize(len, T::zero());
    }
}

impl<T: KalmanFloat> Scratch<T> {
    fn ensure(&mut self, n: usize, m: usize) {
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
    pub(crate) fn new(
        mean: &[T],
        cov: &[T],
        form: UpdateForm,
    ) -> Result<Self, KalmanError> {
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
    pub(crate) fn predict(&mut self, tr: &Transition<T>, prep: &Prepared<T>, u: Option<&[T]>) {
        let n = self.n;
        self.ws.ensure(n, 0);
        let f = row_major(tr.f());
        let q = row_major(tr.q());
        let blocked = n >= BLOCKED_MIN_DIM;
        let xn = &mut self.ws.xn[..n];
        xn.fill(T::zero());
        axpy_rows(xn, &self.x, &prep.ft, n);
        if let Some(u) = u {
            axpy_rows(xn, u, &prep.bt, n);
        }
        self.x.copy_from_slice(xn);
        if self.form == UpdateForm::SquareRoot {
            let g = row_major(tr.q_factor());
            self.predict_sqrt(&f, &g, blocked);
            return;
        }
        macro_rules! go {
            ($($k:literal)*) => {
                match n {
                    $($k => predict_cov::<T, $k>(n, &mut self.p, &f, &prep.ft, &q, &mut self.ws, blocked),)*
                    _ => predict_cov::<T, 0>(n, &mut self.p, &f, &prep.ft, &q, &mut self.ws, blocked),
                }
            };
        }
        go!(1 2 3 4 5 6 7 8);
    }

    fn predict_sqrt(&mut self, f: &[T], g: &[T], blocked: bool) {
        let (n, nn) = (self.n, self.n * self.n);
        let ws = &mut self.ws;
        // Pre-array [(F S)ᵀ; Gᵀ] (2n × n): its Gram matrix is F S Sᵀ Fᵀ + G Gᵀ = F P Fᵀ + Q.
        gemm(T::one(), f, false, &self.s, T::zero(), &mut ws.tmp, (n, n, n), blocked);
        transpose(&ws.tmp[..nn], &mut ws.pre[..nn], n, n);
        transpose(g, &mut ws.pre[nn..2 * nn], n, n);
        qr_r_in_place(&mut ws.pre[..2 * nn], 2 * n, n, &mut ws.v);
        // S ← Rᵀ, P ← Rᵀ R.
        transpose(&ws.pre[..nn], &mut self.s, n, n);
        gemm(T::one(), &ws.pre[..nn], true, &ws.pre[..nn], T::zero(), &mut self.p, (n, n, n), blocked);
        mirror_lower(&mut self.p, n);
    }

    /// The measurement update with `y` (checked by the caller for length; checked here for
    /// finiteness); returns `ln N(y; Hμ, S)`. On error nothing is changed.
    pub(crate) fn update(
        &mut self,
        me: &Measurement<T>,
        prep: &Prepared<T>,
        y: &[T],
    ) -> Result<T, KalmanError> {
        if y.iter().any(|v| !v.is_finite()) {
            return Err(KalmanError::NonFinite { argument: "y" });
        }
        let (n, m) = (self.n, me.obs_dim());
        self.ws.ensure(n, m);
        let h = row_major(me.h());
        let r = row_major(me.r());
        let lr = row_major(me.r_cholesky().lower());
        let blocked = n >= BLOCKED_MIN_DIM;
        let meas = MeasRef {
            m,
            h: &h,
            ht: &prep.ht,
            r: &r,
            lr: &lr,
        };
        if self.form == UpdateForm::SquareRoot {
            return self.update_sqrt(&meas, y, blocked);
        }
        let joseph = self.form == UpdateForm::Joseph;
        macro_rules! go {
            ($($k:literal)*) => {
                match n {
                    $($k => update_cov::<T, $k>(n, &mut self.x, &mut self.p, &meas, y, joseph, &mut self.ws, blocked),)*
                    _ => update_cov::<T, 0>(n, &mut self.x, &mut self.p, &meas, y, joseph, &mut self.ws, blocked),
                }
            };
        }
        go!(1 2 3 4 5 6 7 8)
    }

    fn update_sqrt(&mut self, me: &MeasRef<'_, T>, y: &[T], blocked: bool) -> Result<T, KalmanError> {
        let (n, m) = (self.n, me.m);
        let (d, mm, nn) = (n + m, m * m, n * n);
        let ws = &mut self.ws;
        // Pre-array (transposed) [[Lrᵀ, 0], [(H S)ᵀ, Sᵀ]]: after QR, its triangular factor's
        // transpose is [[Se, 0], [K̄, S⁺]] with Se Seᵀ = S, K̄ = K Se and S⁺ S⁺ᵀ = P⁺.
        let pre = &mut ws.pre[..d * d];
        pre.fill(T::zero());
        gemm(T::one(), me.h, false, &self.s, T::zero(), &mut ws.hp, (m, n, n), blocked);
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
        let ll = log_density(log_diag_sum(l, m), &ws.z[..m]);
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
        gemm(T::one(), u22, true, u22, T::zero(), &mut self.p, (n, n, n), blocked);
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

/// `P ← F P Fᵀ + Q` (lower triangle mirrored: exactly symmetric).
#[inline(never)]
fn predict_cov<T: KalmanFloat, const N: usize>(
    n: usize,
    p: &mut [T],
    f: &[T],
    ft: &[T],
    q: &[T],
    ws: &mut Scratch<T>,
    blocked: bool,
) {
    let n = dim::<N>(n);
    let nn = n * n;
    let (p, tmp) = (&mut p[..nn], &mut ws.tmp[..nn]);
    gemm(T::one(), f, false, p, T::zero(), tmp, (n, n, n), blocked);
    gemm(T::one(), tmp, false, ft, T::zero(), p, (n, n, n), blocked);
    add_assign(p, &q[..nn]);
    mirror_lower(p, n);
}

/// The covariance-form update (standard or Joseph).
///
/// With `S = H P Hᵀ + R = L Lᵀ`, `Z = L⁻¹ H P` and `z = L⁻¹ e`: the gain times the innovation is
/// `Zᵀ z`, the standard form is `P − Zᵀ Z`, and the Joseph form is
/// `(I − KH) P (I − KH)ᵀ + K R Kᵀ` with `Kᵀ = L⁻ᵀ Z`, evaluated as `A P = P − K (H P)`,
/// `A P Aᵀ = A P − (A P Hᵀ) Kᵀ`, and `K R Kᵀ = Wᵀ W` with `W = L_Rᵀ Kᵀ`.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn update_cov<T: KalmanFloat, const N: usize>(
    n: usize,
    x: &mut [T],
    p: &mut [T],
    me: &MeasRef<'_, T>,
    y: &[T],
    joseph: bool,
    ws: &mut Scratch<T>,
    blocked: bool,
) -> Result<T, KalmanError> {
    let n = dim::<N>(n);
    let m = me.m;
    let (nn, mn, mm) = (n * n, m * n, m * m);
    let (x, p) = (&mut x[..n], &mut p[..nn]);
    let (hp, zm, s, l) = (
        &mut ws.hp[..mn],
        &mut ws.zm[..mn],
        &mut ws.s[..mm],
        &mut ws.l[..mm],
    );
    gemm(T::one(), me.h, false, p, T::zero(), hp, (m, n, n), blocked);
    gemm(T::one(), hp, false, me.ht, T::zero(), s, (m, n, m), blocked);
    add_assign(s, &me.r[..mm]);
    mirror_lower(s, m);
    l.copy_from_slice(s);
    if !cholesky_in_place(l, m) {
        return Err(KalmanError::NotPositiveDefinite {
            matrix: "innovation covariance",
        });
    }
    let (e, z) = (&mut ws.e[..m], &mut ws.z[..m]);
    innovation(e, z, y, x, me.ht)?;
    z.copy_from_slice(e);
    forward_rows(l, z, m, 1);
    zm.copy_from_slice(hp);
    forward_rows(l, zm, m, n);
    let ll = log_density(log_diag_sum(l, m), z);
    axpy_rows(x, z, zm, n);
    if !joseph {
        gemm(-T::one(), zm, true, zm, T::one(), p, (n, m, n), blocked);
        mirror_lower(p, n);
        return Ok(ll);
    }
    let (kt, ap, c, w) = (
        &mut ws.kt[..mn],
        &mut ws.ap[..nn],
        &mut ws.c[..mn],
        &mut ws.w[..mn],
    );
    kt.copy_from_slice(zm);
    backward_rows(l, kt, m, n);
    ap.copy_from_slice(p);
    gemm(-T::one(), kt, true, hp, T::one(), ap, (n, m, n), blocked);
    gemm(T::one(), ap, false, me.ht, T::zero(), c, (n, n, m), blocked);
    p.copy_from_slice(ap);
    gemm(-T::one(), c, false, kt, T::one(), p, (n, m, n), blocked);
    gemm(T::one(), me.lr, true, kt, T::zero(), w, (m, m, n), blocked);
    gemm(T::one(), w, true, w, T::one(), p, (n, m, n), blocked);
    mirror_lower(p, n);
    Ok(ll)
}
