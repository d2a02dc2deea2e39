//! Platform-independent transforms from Philox words to numbers: the uniform grid, `−2·ln u`,
//! sine and cosine of a fraction of a turn, Box–Muller and Rademacher signs.
//!
//! Every function here uses only IEEE-754 single-precision `+ − × ÷ √` (each correctly rounded,
//! no fused multiply–add), integer and bit operations, evaluated in the exact order written. The
//! results are therefore the same on every platform and can be reproduced bit for bit by a GPU
//! kernel (`__fadd_rn`, `__fsub_rn`, `__fmul_rn`, `__fdiv_rn`, `__fsqrt_rn`); the crate
//! documentation gives the full specification. The math library's `ln`, `sin` and `cos` are not
//! used: their last bits differ between C libraries.
//!
//! Accuracy, measured exhaustively on the inputs the sampler uses (`tests/accuracy.rs`):
//! [`minus_two_ln`] ≤ 1.7 ulp, [`sin_cos_turn`] ≤ 2.3 ulp, [`box_muller`] ≤ 4.5 ulp.

/// `2^-24`.
const TWO_M24: f32 = 1.0 / 16_777_216.0;
/// `2^-21`.
const TWO_M21: f32 = 1.0 / 2_097_152.0;

/// Bits of (roughly) √½: the reduction puts the mantissa in `[√½, √2)`.
const SQRT_HALF_BITS: u32 = 0x3F35_04F3;
/// High part of `−2·ln 2` (16 significant bits, so `e · L_HI` is exact for `|e| < 2^8`).
const L_HI: f32 = f32::from_bits(0xBFB1_7200);
/// `−2·ln 2 − L_HI`, rounded to f32.
const L_LO: f32 = f32::from_bits(0xB63F_BE8E);
/// `−2·P(z)`, where `P(z) = P0 + z·(P1 + z·P2)` is the minimax fit of
/// `(ln((1+s)/(1−s)) − 2s)/(s·z)`, `z = s² ∈ [0, 0.02944]`.
const Q0: f32 = f32::from_bits(0xBFAA_AAAE);
const Q1: f32 = f32::from_bits(0xBF4C_BE18);
const Q2: f32 = f32::from_bits(0xBF17_7308);

/// Minimax coefficients of `sin(π/4 · y) ≈ y·(S0 + w·(S1 + w·(S2 + w·S3)))`, `w = y²`,
/// `y ∈ [0, 1]`.
const S0: f32 = f32::from_bits(0x3F49_0FDB);
const S1: f32 = f32::from_bits(0xBDA5_5DDD);
const S2: f32 = f32::from_bits(0x3B23_2F62);
const S3: f32 = f32::from_bits(0xB816_CDA0);

/// The uniform in `(0, 1]` made from the top 24 bits of `x`: `((x >> 8) + 1) · 2^-24` (exact).
#[inline(always)]
pub fn uniform_open_closed(x: u32) -> f32 {
    // `(x >> 8) + 1 ≤ 2^24` converts exactly; going through i32 keeps the conversion vectorisable.
    ((x >> 8) + 1) as i32 as f32 * TWO_M24
}

/// `−2·ln x` for a positive, normal, finite `x`, to about 1.7 ulp.
///
/// Reduction `x = 2^e · f`, `f ∈ [√½, √2)`, by bit manipulation; then, with `d = f − 1` (exact),
/// `s = d / (2 + d)` and `z = s²`,
///
/// ```text
/// −2·ln x = e·(−2 ln 2) + (−4s + s·z·Q(z)),   Q(z) = Q0 + z·(Q1 + z·Q2) ≈ −4/3 − 4z/5 − …
/// ```
///
/// evaluated as `e·L_HI + (e·L_LO + (s·(−4) + (s·z)·Q(z)))` with `−2 ln 2 = L_HI + L_LO`.
///
/// Exhaustively tested against `f64::ln` on the uniform grid `k · 2^-24`, `k = 1 ..= 2^24` (the
/// only inputs the sampler uses). Zero, negative, subnormal and non-finite inputs give
/// unspecified (but deterministic) results.
#[inline(always)]
pub fn minus_two_ln(x: f32) -> f32 {
    minus_two_ln_reduced(x.to_bits().wrapping_sub(SQRT_HALF_BITS))
}

/// [`minus_two_ln`] of the float whose bits are `ix + SQRT_HALF_BITS`.
#[inline(always)]
fn minus_two_ln_reduced(ix: u32) -> f32 {
    let e = (ix as i32) >> 23;
    let f = f32::from_bits((ix & 0x007F_FFFF) + SQRT_HALF_BITS);
    let d = f - 1.0;
    let s = d / (2.0 + d);
    let z = s * s;
    let q = (s * z) * (Q0 + z * (Q1 + z * Q2));
    let ef = e as f32;
    ef * L_HI + (ef * L_LO + (s * -4.0 + q))
}

/// `(sin θ, cos θ)` of the angle `θ = 2π · k / 2^24`, for the low 24 bits of `k`, to about 2.3
/// ulp.
///
/// The reduction is exact integer arithmetic: the octant `o = k >> 21` and the position inside
/// it, reflected in odd octants, give `y ∈ [0, 1]` with `θ = o·π/4 ± y·π/4`. Then
/// `s = sin(y·π/4)` by an odd polynomial and `c = cos(y·π/4) = √(1 − s²)` (`c ≥ √½`, so the
/// square root loses nothing); the octant swaps and negates them.
#[inline(always)]
pub fn sin_cos_turn(k: u32) -> (f32, f32) {
    let k = k & 0x00FF_FFFF;
    let o = k >> 21;
    let r = k & 0x001F_FFFF;
    let j = if o & 1 != 0 { 0x0020_0000 - r } else { r };
    let y = j as i32 as f32 * TWO_M21;
    let w = y * y;
    let s = y * (S0 + w * (S1 + w * (S2 + w * S3)));
    let c = (1.0 - s * s).sqrt();
    // Octants 1, 2, 5, 6 swap sine and cosine; the sine is negative in octants 4–7, the cosine in
    // octants 2–5 (sign bit flipped, also of zero).
    let swap = (o + 1) & 2 != 0;
    let (sn, cs) = if swap { (c, s) } else { (s, c) };
    let sn = f32::from_bits(sn.to_bits() ^ ((o & 4) << 29));
    let cs = f32::from_bits(cs.to_bits() ^ (((o + 2) & 4) << 29));
    (sn, cs)
}

/// The Box–Muller pair of standard normals made from two Philox words:
/// `r = √(`[`minus_two_ln`]`(u))`, `u = `[`uniform_open_closed`]`(a)`,
/// `(s, c) = `[`sin_cos_turn`]`(b >> 8)`, result `[r · c, r · s]`.
///
/// `|z| ≤ √(48 ln 2) ≈ 5.77`.
#[inline(always)]
pub fn box_muller(a: u32, b: u32) -> [f32; 2] {
    // `minus_two_ln(uniform_open_closed(a))`, with the exact scaling by 2^-24 done on the
    // exponent bits (the product is a normal number, so the bits are the same).
    let m = ((a >> 8) + 1) as i32 as f32;
    let r = minus_two_ln_reduced(m.to_bits().wrapping_sub(SQRT_HALF_BITS + (24 << 23))).sqrt();
    let (s, c) = sin_cos_turn(b >> 8);
    [r * c, r * s]
}

/// The Rademacher sign of bit `bit` (0 = least significant, taken mod 32) of `word`: `+1` when
/// the bit is 0, `−1` when it is 1.
#[inline(always)]
pub fn rademacher(word: u32, bit: u32) -> f32 {
    f32::from_bits(0x3F80_0000 | (((word >> (bit & 31)) & 1) << 31))
}
