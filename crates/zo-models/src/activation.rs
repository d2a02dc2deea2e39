//! Elementwise activations for f32 tensors on the CPU, written so that the compiler vectorises
//! them (no libm call, no branch per element), and compiled for AVX-512 and AVX2 besides the
//! build's own target (chosen at run time; every path gives the same bits).
//!
//! candle evaluates the exact GELU with a scalar `erff` per element and SiLU with a scalar
//! `expf`; on SPLADE-tiny's forward the GELU took about a fifth of the time, and its f32 form
//! `(1 + erf(x/√2))·x/2` cancels to 0 in the negative tail. Here both go through one branch-free
//! `exp` (Cody–Waite reduction by `ln 2`, a degree-7 polynomial, the exponent written into the
//! bits), and the GELU's normal CDF through the complementary error function
//! `erfc(z) ≈ t·exp(−z² + P(t))`, `t = 1/(1 + z/2)`, for `z ≥ 0` (a polynomial `P` of degree
//! 9): the Chebyshev fit of Press et al., *Numerical Recipes* (2nd ed., §6.2, `erfcc`),
//! fractional error below 1.2·10⁻⁷ everywhere. Taking `Φ(x) = 1 − erfc(x/√2)/2` for `x ≥ 0` and
//! `erfc(−x/√2)/2` below keeps the relative error small in both tails: the result is within 5
//! units in the last place of `x·Φ(x)` wherever it is a normal f32 (the tests compare with an
//! f64 reference). Other dtypes and devices keep candle's own operations.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

/// `e^{a + b}` in f32 without a libm call, on `N` lanes at once (each step is a loop over the
/// lanes, so that the vector instructions of independent lanes interleave instead of waiting on
/// one long dependency chain). `a` is taken as exact and may be large, `b` is a small correction
/// kept apart so that its bits survive: `a + b = k·ln 2 + r` with `r = ((a − k·ln2_hi) + b) −
/// k·ln2_lo`, `|r| ≲ ln 2 / 2` (Cody–Waite: `a − k·ln2_hi` is exact), `e^r` by its Taylor
/// polynomial of degree 7 (truncation below 10⁻⁸ relative), `2^k` written into the exponent.
/// Sums below −87.33 give 0 (the result would be subnormal); above 88.3 they are clamped.
#[inline(always)]
fn exp_sum<const N: usize>(a: &[f32; N], b: &[f32; N]) -> [f32; N] {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that k·LN2_HI is exact for |k| < 2¹⁵.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    const TAYLOR: [f32; 7] = [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ];
    let mut shifted = [0f32; N];
    for i in 0..N {
        shifted[i] = (a[i] + b[i]).clamp(-87.33, 88.3) * LOG2_E + SHIFTER;
    }
    let mut r = [0f32; N];
    for i in 0..N {
        let k = shifted[i] - SHIFTER;
        r[i] = ((a[i] - k * LN2_HI) + b[i]) - k * LN2_LO;
    }
    let mut p = [1.0 / 5040.0; N];
    for c in TAYLOR {
        for i in 0..N {
            p[i] = c + r[i] * p[i];
        }
    }
    let mut out = [0f32; N];
    for i in 0..N {
        // The integer k sits in the low bits of `shifted`, offset by SHIFTER's own bits.
        let k = shifted[i].to_bits().wrapping_sub(SHIFTER.to_bits()) as i32;
        let v = p[i] * f32::from_bits(((k + 127) as u32) << 23);
        out[i] = if a[i] + b[i] < -87.33 { 0.0 } else { v };
    }
    out
}

/// `e^y` on one lane (the tests' reference point for [`exp_sum`]).
#[cfg(test)]
fn exp(y: f32) -> f32 {
    exp_sum(&[y], &[0.0])[0]
}

/// The coefficients of `P` in `erfc(z) ≈ t·e^{−z² + P(t)}`, highest degree first.
const ERFC: [f32; 10] = [
    0.170_872_77,
    -0.822_152_23,
    1.488_515_9,
    -1.135_204,
    0.278_868_07,
    -0.186_288_06,
    0.096_784_18,
    0.374_091_96,
    1.000_023_7,
    -1.265_512_2,
];

/// The exact GELU `x·Φ(x)` on `N` lanes, `Φ` the standard normal CDF, from the tail
/// `Φ(−|x|) = erfc(|x|/√2)/2` (Numerical Recipes' Chebyshev fit, see the module documentation).
/// The `e^{−x²/2}` factor is what a rounded `x²` would spoil in the tail (an absolute error of
/// `x²·2⁻²⁴` in the exponent), so `|x|` is split into a high part of 12 significant bits and the
/// rest: `xh²` is exact and goes into [`exp_sum`] as its exact part, `P(t) − xh·xl − xl²/2` as
/// its correction.
#[inline(always)]
fn gelu_erf_n<const N: usize>(x: &[f32; N]) -> [f32; N] {
    let mut a = [0f32; N];
    let mut hi = [0f32; N];
    let mut t = [0f32; N];
    let mut big = [0f32; N];
    for i in 0..N {
        // Φ(−20) underflows; the cap keeps ±∞ (and NaN, which `min` drops) out of the arithmetic.
        a[i] = x[i].abs().min(20.0);
        hi[i] = f32::from_bits(a[i].to_bits() & 0xffff_f000);
        t[i] = 1.0 / (1.0 + 0.5 * (a[i] * std::f32::consts::FRAC_1_SQRT_2));
        big[i] = -0.5 * (hi[i] * hi[i]);
    }
    let mut poly = [ERFC[0]; N];
    for c in &ERFC[1..] {
        for i in 0..N {
            poly[i] = c + t[i] * poly[i];
        }
    }
    let mut small = [0f32; N];
    for i in 0..N {
        let lo = a[i] - hi[i];
        small[i] = poly[i] - (hi[i] * lo + 0.5 * (lo * lo));
    }
    let e = exp_sum(&big, &small);
    let mut out = [0f32; N];
    for i in 0..N {
        let tail = 0.5 * t[i] * e[i];
        let cdf = if x[i] >= 0.0 { 1.0 - tail } else { tail };
        out[i] = x[i] * cdf;
    }
    out
}

/// SiLU `x·σ(x)` on `N` lanes, with `σ(x) = 1/(1 + e^{−x})` for `x ≥ 0` and `e^{x}/(1 + e^{x})`
/// below (so the exponential never overflows).
#[inline(always)]
fn silu_n<const N: usize>(x: &[f32; N]) -> [f32; N] {
    let mut neg = [0f32; N];
    for i in 0..N {
        neg[i] = -x[i].abs();
    }
    let e = exp_sum(&neg, &[0.0; N]);
    let mut out = [0f32; N];
    for i in 0..N {
        let sigmoid = if x[i] >= 0.0 { 1.0 } else { e[i] } / (1.0 + e[i]);
        out[i] = x[i] * sigmoid;
    }
    out
}

/// The exact GELU of one value (the tests' reference point for the block paths).
#[cfg(test)]
fn gelu_erf(x: f32) -> f32 {
    gelu_erf_n(&[x])[0]
}

/// SiLU of one value (the tests' reference point for the block paths).
#[cfg(test)]
fn silu(x: f32) -> f32 {
    silu_n(&[x])[0]
}

/// Which activation a [`Map`] applies.
#[derive(Clone, Copy)]
enum Kind {
    GeluErf,
    Silu,
}

/// The custom op applying an activation elementwise to a contiguous f32 CPU tensor.
struct Map(Kind);

impl CustomOp1 for Map {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::GeluErf => "zo-gelu-erf",
            Kind::Silu => "zo-silu",
        }
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(values) = storage else {
            return Err(candle_core::Error::Msg(format!(
                "{} is for f32 tensors",
                self.name()
            )));
        };
        let (start, end) = layout.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg(format!("{} needs a contiguous tensor", self.name()))
        })?;
        let src = &values[start..end];
        let mut out = vec![0f32; src.len()];
        apply(Isa::best(), src, &mut out, self.0);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Lanes per block: 32 f32 are two AVX-512, four AVX2 or eight SSE registers per step, enough
/// independent chains to keep the vector units busy.
const LANES: usize = 32;

/// `out = f(src)` block by block; the tail is padded with zeros into one last block.
#[inline(always)]
fn apply_blocks(src: &[f32], out: &mut [f32], f: impl Fn(&[f32; LANES]) -> [f32; LANES]) {
    let mut s = src.chunks_exact(LANES);
    let mut o = out.chunks_exact_mut(LANES);
    for (s, o) in (&mut s).zip(&mut o) {
        let block: &[f32; LANES] = s.try_into().expect("a block of LANES values");
        o.copy_from_slice(&f(block));
    }
    let rest = s.remainder();
    if !rest.is_empty() {
        let mut block = [0f32; LANES];
        block[..rest.len()].copy_from_slice(rest);
        let done = f(&block);
        o.into_remainder().copy_from_slice(&done[..rest.len()]);
    }
}

/// The instruction sets [`apply`] is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    /// The build's own target (SSE2 on a default x86-64 build).
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The paths this CPU can run, best first.
    fn available() -> Vec<Isa> {
        let mut paths = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                paths.push(Isa::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                paths.push(Isa::Avx2);
            }
        }
        paths.push(Isa::Portable);
        paths
    }

    /// The best path this CPU can run (detected once).
    fn best() -> Isa {
        static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| Isa::available()[0])
    }
}

/// [`apply_blocks`] compiled for `isa`, which the CPU must have ([`Isa::available`]). No path
/// contracts a multiply and an add into one rounding, so every path gives the same bits.
fn apply(isa: Isa, src: &[f32], out: &mut [f32], kind: Kind) {
    fn portable(src: &[f32], out: &mut [f32], kind: Kind) {
        match kind {
            Kind::GeluErf => apply_blocks(src, out, gelu_erf_n),
            Kind::Silu => apply_blocks(src, out, silu_n),
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn avx512(src: &[f32], out: &mut [f32], kind: Kind) {
        match kind {
            Kind::GeluErf => apply_blocks(src, out, gelu_erf_n),
            Kind::Silu => apply_blocks(src, out, silu_n),
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn avx2(src: &[f32], out: &mut [f32], kind: Kind) {
        match kind {
            Kind::GeluErf => apply_blocks(src, out, gelu_erf_n),
            Kind::Silu => apply_blocks(src, out, silu_n),
        }
    }
    match isa {
        Isa::Portable => portable(src, out, kind),
        // SAFETY: `isa` comes from `Isa::available`, which checked the CPU's features.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512(src, out, kind) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2(src, out, kind) },
    }
}

/// Whether `x` takes the vectorised path: f32 on the CPU.
fn vectorised(x: &Tensor) -> bool {
    x.dtype() == DType::F32 && matches!(x.device(), Device::Cpu)
}

/// The exact GELU of `x` (vectorised for f32 on the CPU, candle's `gelu_erf` otherwise).
pub(crate) fn gelu_erf_tensor(x: &Tensor) -> candle_core::Result<Tensor> {
    if vectorised(x) {
        x.contiguous()?.apply_op1_no_bwd(&Map(Kind::GeluErf))
    } else {
        x.gelu_erf()
    }
}

/// SiLU of `x` (vectorised for f32 on the CPU, candle's `silu` otherwise).
pub(crate) fn silu_tensor(x: &Tensor) -> candle_core::Result<Tensor> {
    if vectorised(x) {
        x.contiguous()?.apply_op1_no_bwd(&Map(Kind::Silu))
    } else {
        x.silu()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The distance between `a` and `b` in units of the last place of `b` (f32).
    fn ulps(a: f32, b: f32) -> f64 {
        if a == b {
            return 0.0;
        }
        let ulp = (f64::from(b.abs()).max(f64::from(f32::MIN_POSITIVE)) * f64::from(f32::EPSILON))
            .max(f64::from(f32::from_bits(1)));
        (f64::from(a) - f64::from(b)).abs() / ulp
    }

    /// Every f32 in `[lo, hi]` at a stride that visits about `n` values, plus the ends.
    fn grid(lo: f32, hi: f32, n: usize) -> Vec<f32> {
        let step = (hi - lo) / n as f32;
        (0..=n)
            .map(|i| lo + step * i as f32)
            .chain([lo, hi])
            .collect()
    }

    /// `erfc(z)` in f64 for `z ≥ 0`, accurate to about 10⁻¹² relative: the Maclaurin series of
    /// `erf` below 2, the continued fraction `e^{−z²}/√π · 1/(z + ½/(z + 1/(z + 3⁄2/(z + …))))`
    /// from 2 on. (An `1 + erf(x)` in f64, as candle's f64 GELU takes it, loses every digit in
    /// the negative tail, so it cannot be the reference there.)
    fn erfc(z: f64) -> f64 {
        if z < 2.0 {
            let (mut term, mut sum) = (z, z);
            for n in 1..200 {
                term *= -z * z / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            1.0 - sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let mut f = z;
            for n in (1..400).rev() {
                f = z + (n as f64 / 2.0) / f;
            }
            (-z * z).exp() / std::f64::consts::PI.sqrt() / f
        }
    }

    fn gelu_reference(x: f32) -> f32 {
        let x = f64::from(x);
        let tail = 0.5 * erfc(x.abs() / std::f64::consts::SQRT_2);
        (x * if x >= 0.0 { 1.0 - tail } else { tail }) as f32
    }

    #[test]
    fn the_reference_erfc_is_continuous_where_its_methods_meet_and_known_values_hold() {
        let below = erfc(2.0 - 1e-12);
        let above = erfc(2.0);
        assert!((below / above - 1.0).abs() < 1e-11, "{below} vs {above}");
        // erfc(1) and erfc(3) to 15 digits.
        assert!((erfc(1.0) - 0.157_299_207_050_285_1).abs() < 1e-15);
        assert!((erfc(3.0) / 2.209_049_699_858_544e-5 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn exp_is_within_two_ulps_of_f64_over_its_whole_range() {
        let mut worst: f64 = 0.0;
        for y in grid(-87.0, 88.0, 400_000) {
            let want = f64::from(y).exp() as f32;
            worst = worst.max(ulps(exp(y), want));
        }
        assert!(worst <= 2.0, "exp is {worst} ulps off");
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn gelu_agrees_with_an_f64_reference() {
        // Units in the last place, over the whole range where GELU is a normal f32 (below
        // x ≈ −13 it underflows).
        let mut worst = (0.0, 0.0);
        for x in grid(-13.0, 13.0, 400_000) {
            let e = ulps(gelu_erf(x), gelu_reference(x));
            if e > worst.0 {
                worst = (e, x);
            }
        }
        assert!(
            worst.0 <= 5.0,
            "gelu is {} ulps off at x = {}",
            worst.0,
            worst.1
        );
        assert_eq!(gelu_erf(0.0), 0.0);
        assert_eq!(gelu_erf(f32::INFINITY), f32::INFINITY);
        assert!(gelu_erf(f32::NAN).is_nan());
    }

    #[test]
    fn silu_agrees_with_an_f64_reference() {
        for x in grid(-90.0, 90.0, 200_000) {
            let w = (f64::from(x) / (1.0 + (-f64::from(x)).exp())) as f32;
            let got = silu(x);
            let err = (f64::from(got) - f64::from(w)).abs();
            // Below −87.33 the exponential is flushed to 0 (|silu| < 10⁻³⁵ there).
            assert!(
                err <= 4e-7 * f64::from(w.abs()) + 1e-35,
                "silu({x}) = {got}, f64 reference {w}"
            );
        }
    }

    #[test]
    fn every_instruction_set_path_gives_the_scalar_bits() {
        // 1000 values: whole blocks and a padded tail.
        let xs: Vec<f32> = grid(-15.0, 15.0, 997);
        assert_eq!(xs.len(), 1000);
        for isa in Isa::available() {
            for kind in [Kind::GeluErf, Kind::Silu] {
                let mut out = vec![f32::NAN; xs.len()];
                apply(isa, &xs, &mut out, kind);
                for (x, y) in xs.iter().zip(&out) {
                    let want = match kind {
                        Kind::GeluErf => gelu_erf(*x),
                        Kind::Silu => silu(*x),
                    };
                    assert_eq!(y.to_bits(), want.to_bits(), "{isa:?} at x = {x}");
                }
            }
        }
    }

    #[test]
    fn the_tensor_ops_match_the_scalar_functions_on_any_layout() {
        let xs: Vec<f32> = grid(-6.0, 6.0, 1022);
        let t = Tensor::new(xs.as_slice(), &Device::Cpu)
            .unwrap()
            .reshape((25, 41))
            .unwrap();
        // A transposed (non-contiguous) input goes through `contiguous` first.
        let tt = t.t().unwrap();
        let g = gelu_erf_tensor(&tt).unwrap();
        let want = tt
            .contiguous()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let got = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(g.dims(), &[41, 25]);
        for (a, b) in got.iter().zip(&want) {
            assert_eq!(a.to_bits(), gelu_erf(*b).to_bits());
        }
        let s = silu_tensor(&t)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (a, b) in s.iter().zip(&xs) {
            assert_eq!(a.to_bits(), silu(*b).to_bits());
        }
        // Other dtypes keep candle's ops.
        let d = t.to_dtype(DType::F64).unwrap();
        assert_eq!(gelu_erf_tensor(&d).unwrap().dtype(), DType::F64);
    }
}
