use crate::philox::philox4x32_10;

/// Identity of a tensor inside a parameter set, derived from its name (never from map order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TensorId(pub u64);

impl TensorId {
    /// The identity of the tensor called `name`: 64-bit FNV-1a of its UTF-8 bytes.
    pub fn from_name(name: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        TensorId(h)
    }
}

/// Which distribution a stream yields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Distribution {
    /// Standard normal N(0, 1).
    #[default]
    Normal,
    /// Rademacher: +1 or -1 with probability 1/2 each.
    Rademacher,
}

/// The key of one random direction over a whole parameter set.
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
        Self { seed, step, direction }
    }

    /// The stream of this direction restricted to one tensor.
    pub fn stream(&self, tensor: TensorId, dist: Distribution) -> Stream {
        Stream::new(*self, tensor, dist)
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seekable stream of random numbers for one (direction, tensor) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stream {
    key: [u32; 2],
    ctr_hi: [u32; 2],
    dist: Distribution,
}

impl Stream {
    /// The stream of direction `dir` on tensor `tensor`.
    pub fn new(dir: DirectionKey, tensor: TensorId, dist: Distribution) -> Self {
        let k = splitmix64(splitmix64(dir.seed ^ splitmix64(tensor.0)) ^ (dir.step >> 32));
        Self {
            key: [k as u32, (k >> 32) as u32],
            ctr_hi: [dir.direction, dir.step as u32],
            dist,
        }
    }

    /// The distribution of this stream.
    pub fn distribution(&self) -> Distribution {
        self.dist
    }

    /// The raw Philox block with index `block` (elements `4*block .. 4*block+4`).
    #[inline(always)]
    pub fn block_bits(&self, block: u64) -> [u32; 4] {
        philox4x32_10([block as u32, (block >> 32) as u32, self.ctr_hi[0], self.ctr_hi[1]], self.key)
    }

    /// The four values of block `block`.
    #[inline(always)]
    pub fn block(&self, block: u64) -> [f32; 4] {
        let x = self.block_bits(block);
        match self.dist {
            Distribution::Normal => {
                let (a, b) = box_muller(x[0], x[1]);
                let (c, d) = box_muller(x[2], x[3]);
                [a, b, c, d]
            }
            Distribution::Rademacher => x.map(|v| if v >> 31 == 0 { 1.0 } else { -1.0 }),
        }
    }

    /// Element `index` of the stream.
    pub fn at(&self, index: u64) -> f32 {
        self.block(index / 4)[(index % 4) as usize]
    }

    /// Fill `out` with elements `offset .. offset + out.len()`.
    pub fn fill(&self, offset: u64, out: &mut [f32]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.at(offset + i as u64);
        }
    }
}

#[inline(always)]
fn box_muller(a: u32, b: u32) -> (f32, f32) {
    const INV24: f32 = 1.0 / 16_777_216.0;
    let u1 = ((a >> 8) as f32 + 0.5) * INV24;
    let u2 = (b >> 8) as f32 * INV24;
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f32::consts::TAU * u2).sin_cos();
    (r * c, r * s)
}
