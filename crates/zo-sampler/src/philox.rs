//! The Philox4x32-10 counter-based block function (Salmon, Moraes, Dror and Shaw, *Parallel
//! random numbers: as easy as 1, 2, 3*, SC'11).
//!
//! A 128-bit counter and a 64-bit key are mapped to 128 pseudo-random bits by ten rounds of
//!
//! ```text
//! (hi0, lo0) = mulhilo(M0, c0)        // the 64-bit product M0·c0, split in halves
//! (hi1, lo1) = mulhilo(M1, c2)
//! c = [hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0]
//! k = [k0 + W0, k1 + W1]              // wrapping; the key is bumped between rounds
//! ```
//!
//! This is the reference Philox4x32-10 (it reproduces the Random123 known-answer vectors), so a
//! CUDA kernel can use `curand`'s or Random123's implementation unchanged.

/// Multiplier of the first lane pair.
pub const M0: u32 = 0xD251_1F53;
/// Multiplier of the second lane pair.
pub const M1: u32 = 0xCD9E_8D57;
/// Key schedule increment of the first key word (golden ratio).
pub const W0: u32 = 0x9E37_79B9;
/// Key schedule increment of the second key word (√3 − 1).
pub const W1: u32 = 0xBB67_AE85;
/// Number of rounds.
pub const ROUNDS: usize = 10;

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = u64::from(a) * u64::from(b);
    ((p >> 32) as u32, p as u32)
}

/// Ten rounds of Philox4x32 on `ctr` under `key`.
///
/// ```
/// use zo_sampler::philox::philox4x32_10;
/// assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
/// ```
#[inline(always)]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = ctr;
    let [mut k0, mut k1] = key;
    for _ in 0..ROUNDS {
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0];
        k0 = k0.wrapping_add(W0);
        k1 = k1.wrapping_add(W1);
    }
    c
}

/// The high half of the 64-bit product `a·b`.
#[inline(always)]
fn mulhi(a: u32, b: u32) -> u32 {
    ((u64::from(a) * u64::from(b)) >> 32) as u32
}

/// Philox4x32-10 on `N` counters at once, laid out as lanes: counter `j` is
/// `[c0[j], c1, c2, c3]`. Returns the four output words as arrays of lanes.
///
/// Written as straight-line loops over lanes so that LLVM vectorises it (the low half of each
/// product is a wrapping 32-bit multiplication, the high half a widening one); bit-identical to
/// calling [`philox4x32_10`] on each counter.
#[inline(always)]
pub(crate) fn philox4x32_10_lanes<const N: usize>(
    c0: [u32; N],
    c1: u32,
    c2: u32,
    c3: u32,
    key: [u32; 2],
) -> [[u32; N]; 4] {
    // Round 1 by hand: c1, c2 and c3 are shared by all lanes, so M1·c2 is a scalar.
    let [mut k0, mut k1] = key;
    let mut x0 = [mulhi(M1, c2) ^ c1 ^ k0; N];
    let mut x1 = [c2.wrapping_mul(M1); N];
    let mut x2 = [0u32; N];
    let mut x3 = [0u32; N];
    for j in 0..N {
        x2[j] = mulhi(M0, c0[j]) ^ c3 ^ k1;
        x3[j] = c0[j].wrapping_mul(M0);
    }
    for _ in 1..ROUNDS {
        k0 = k0.wrapping_add(W0);
        k1 = k1.wrapping_add(W1);
        for j in 0..N {
            let (a, b) = (x0[j], x2[j]);
            x0[j] = mulhi(M1, b) ^ x1[j] ^ k0;
            x2[j] = mulhi(M0, a) ^ x3[j] ^ k1;
            x1[j] = b.wrapping_mul(M1);
            x3[j] = a.wrapping_mul(M0);
        }
    }
    [x0, x1, x2, x3]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_match_scalar() {
        let key = [0x1234_5678, 0x9abc_def0];
        let c0: [u32; 16] = core::array::from_fn(|j| 0xffff_fff8u32.wrapping_add(j as u32));
        let x = philox4x32_10_lanes(c0, 7, 0xdead_beef, 0x0bad_f00d, key);
        for j in 0..16 {
            let s = philox4x32_10([c0[j], 7, 0xdead_beef, 0x0bad_f00d], key);
            assert_eq!(s, [x[0][j], x[1][j], x[2][j], x[3][j]]);
        }
    }
}
