//! Keys, tensor identities and seekable streams.

use crate::kernel::{self, Isa};
use crate::philox::philox4x32_10;
use crate::transform;

/// Identity of a tensor inside a parameter set, derived from its name (never from map order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TensorId(pub u64);

impl TensorId {
    /// The identity of the tensor called `name`: the 64-bit FNV-1a hash of its UTF-8 bytes
    /// (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`).
    ///
    /// ```
    /// use zo_sampler::TensorId;
    /// assert_eq!(TensorId::from_name(""), TensorId(0xcbf2_9ce4_8422_2325));
    /// assert_eq!(TensorId::from_name("a"), TensorId(0xaf63_dc4c_8601_ec8c));
    /// ```
    pub const fn from_name(name: &str) -> Self {
        let bytes = name.as_bytes();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut i = 0;
        while i < bytes.len() {
            h ^= bytes[i] as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
            i += 1;
        }
        TensorId(h)
    }
}

/// Which distribution a stream yields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Distribution {
    /// Standard normal N(0, 1) (Box–Muller, see the crate documentation).
    #[default]
    Normal,
    /// Rademacher: +1 or −1 with probability 1/2 each (one Philox bit per element).
    Rademacher,
}

/// The key of one random direction over a whole parameter set: (run seed, step, direction index).
///
/// Combined with a [`TensorId`] it selects the [`Stream`] of that direction on one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DirectionKey {
    /// The run seed.
    pub seed: u64,
    /// The optimisation step.
    pub step: u64,
    /// The index of the direction within the step.
    pub direction: u32,
}

impl DirectionKey {
    /// A new key.
    pub const fn new(seed: u64, step: u64, direction: u32) -> Self {
        Self {
            seed,
            step,
            direction,
        }
    }

    /// The stream of this direction restricted to one tensor.
    pub fn stream(&self, tensor: TensorId, dist: Distribution) -> Stream {
        Stream::new(*self, tensor, dist)
    }
}

/// Stafford's "Mix13" 64-bit finaliser (the one of SplitMix64), a bijection.
const fn mix_a(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// MurmurHash3's `fmix64` finaliser, a bijection.
const fn mix_b(mut z: u64) -> u64 {
    z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    z = (z ^ (z >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    z ^ (z >> 33)
}

/// Initial value of the hash that gives the Philox key (first 64 bits of π's fraction).
const IV_A: u64 = 0x243F_6A88_85A3_08D3;
/// Initial value of the hash that gives the high counter words (next 64 bits of π's fraction).
const IV_B: u64 = 0x1319_8A2E_0370_7344;

/// A seekable stream of random numbers for one (direction, tensor) pair.
///
/// Element `i` depends only on the key, the tensor, the distribution and `i`. Element indices are
/// taken modulo 2^64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Stream {
    key: [u32; 2],
    ctr_hi: [u32; 2],
    dist: Distribution,
}

impl Stream {
    /// The stream of direction `dir` on tensor `tensor`.
    ///
    /// The words `(seed, step, direction, tensor)` are absorbed by two 64-bit hash chains,
    /// `h ← mix(h ^ word)`, one with [SplitMix64's finaliser](https://prng.di.unimi.it/splitmix64.c)
    /// from `0x243F6A8885A308D3`, giving the Philox key, one with MurmurHash3's `fmix64` from
    /// `0x13198A2E03707344`, giving the two high counter words.
    pub const fn new(dir: DirectionKey, tensor: TensorId, dist: Distribution) -> Self {
        let words = [dir.seed, dir.step, dir.direction as u64, tensor.0];
        let mut a = IV_A;
        let mut b = IV_B;
        let mut i = 0;
        while i < words.len() {
            a = mix_a(a ^ words[i]);
            b = mix_b(b ^ words[i]);
            i += 1;
        }
        Self {
            key: [a as u32, (a >> 32) as u32],
            ctr_hi: [b as u32, (b >> 32) as u32],
            dist,
        }
    }

    /// The distribution of this stream.
    pub const fn distribution(&self) -> Distribution {
        self.dist
    }

    /// The same stream of Philox words, read as `dist`.
    pub const fn with_distribution(self, dist: Distribution) -> Self {
        Self { dist, ..self }
    }

    /// The Philox key `[k0, k1]` of this stream.
    pub const fn philox_key(&self) -> [u32; 2] {
        self.key
    }

    /// The two high counter words `[c2, c3]` of this stream; block `b` uses the counter
    /// `[b mod 2^32, b >> 32, c2, c3]`.
    pub const fn counter_high(&self) -> [u32; 2] {
        self.ctr_hi
    }

    /// The raw Philox block with index `block`: Philox4x32-10 of the counter
    /// `[block mod 2^32, block >> 32, c2, c3]` under the stream's key.
    ///
    /// For [`Distribution::Normal`] block `b` yields the four elements
    /// `128·(b >> 5) + 32·q + (b mod 32)`, `q = 0 .. 4`; for [`Distribution::Rademacher`] the 128
    /// elements `128·b .. 128·b + 128`.
    #[inline(always)]
    pub fn block_bits(&self, block: u64) -> [u32; 4] {
        philox4x32_10(
            [
                block as u32,
                (block >> 32) as u32,
                self.ctr_hi[0],
                self.ctr_hi[1],
            ],
            self.key,
        )
    }

    /// Element `index` of the stream.
    pub fn at(&self, index: u64) -> f32 {
        match self.dist {
            Distribution::Normal => {
                // Group of 128 elements, output q of block j of the group.
                let q = ((index >> 5) & 3) as usize;
                let block = ((index >> 7) << 5) | (index & 31);
                let x = self.block_bits(block);
                let pair = q & 2;
                transform::box_muller(x[pair], x[pair + 1])[q & 1]
            }
            Distribution::Rademacher => {
                let x = self.block_bits(index >> 7);
                transform::rademacher(x[((index >> 5) & 3) as usize], (index & 31) as u32)
            }
        }
    }

    /// Fill `out` with elements `offset .. offset + out.len()` (indices modulo 2^64).
    ///
    /// Single-threaded; any split of a range into several fills gives the same values.
    pub fn fill(&self, offset: u64, out: &mut [f32]) {
        kernel::fill(Isa::detect(), self, offset, out);
    }
}
