//! Deterministic, platform-independent randomness for sampling data.
//!
//! [`SplitMix64`] (Steele, Lea and Flood 2014; the constants of Vigna's reference `splitmix64.c`)
//! produces 64-bit words from a 64-bit state; [`SplitMix64::below`] draws an unbiased integer in
//! `0..n` by rejection; [`shuffle`] is the Fisher–Yates shuffle (from the last position down, each
//! position swapped with a uniform one at or below it). Only integer arithmetic is used, so
//! the same seed gives the same permutation on every platform and in every build.
//!
//! [`EpochBatches`] yields minibatches of indices: each epoch is a fresh permutation of `0..n`
//! (epoch `e` uses the stream of seed [`derive_seed`]`(seed, e)`), and batches run on across epoch
//! boundaries so that every batch is full.

/// The SplitMix64 generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator with the given seed.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64-bit word.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (`n > 0`), unbiased: words at or above the largest multiple of
    /// `n` are rejected. Returns 0 for `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let zone = u64::MAX - (u64::MAX % n + 1) % n; // the last word of the largest multiple of n
        loop {
            let x = self.next_u64();
            if x <= zone {
                return x % n;
            }
        }
    }
}

/// Mix a seed with a stream index (epoch, split, …) into an independent seed.
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut g = SplitMix64::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
    g.next_u64()
}

/// Shuffle `items` in place with the Fisher–Yates algorithm.
pub fn shuffle<T>(items: &mut [T], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// A seeded permutation of `0..n`.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    shuffle(&mut idx, &mut SplitMix64::new(seed));
    idx
}

/// Seeded minibatches of indices into a training set, shuffled afresh every epoch.
#[derive(Clone, Debug)]
pub struct EpochBatches {
    n: usize,
    batch_size: usize,
    seed: u64,
    epoch: u64,
    order: Vec<usize>,
    pos: usize,
}

impl EpochBatches {
    /// Batches of `batch_size` indices into `0..n`. `n` and `batch_size` must be positive
    /// ([`crate::DataError::Invalid`] otherwise).
    pub fn new(n: usize, batch_size: usize, seed: u64) -> crate::Result<Self> {
        if n == 0 || batch_size == 0 {
            return Err(crate::DataError::Invalid {
                field: if n == 0 { "n" } else { "batch_size" },
                message: "must be positive".into(),
            });
        }
        Ok(Self {
            n,
            batch_size,
            seed,
            epoch: 0,
            order: permutation(n, derive_seed(seed, 0)),
            pos: 0,
        })
    }

    /// The epoch that the next index comes from (0-based).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The next batch: `batch_size` indices, continuing into the next epoch's permutation when the
    /// current one runs out (so a batch may straddle two epochs, and with `batch_size > n` repeat
    /// indices).
    pub fn next_batch(&mut self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.batch_size);
        while out.len() < self.batch_size {
            if self.pos == self.n {
                self.epoch += 1;
                self.order = permutation(self.n, derive_seed(self.seed, self.epoch));
                self.pos = 0;
            }
            let take = (self.batch_size - out.len()).min(self.n - self.pos);
            out.extend_from_slice(&self.order[self.pos..self.pos + take]);
            self.pos += take;
        }
        out
    }
}

impl Iterator for EpochBatches {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        Some(self.next_batch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // Reference outputs of Vigna's splitmix64.c for the seed 1234567.
        let mut g = SplitMix64::new(1_234_567);
        let got: Vec<u64> = (0..5).map(|_| g.next_u64()).collect();
        assert_eq!(
            got,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
                4_593_380_528_125_082_431,
                16_408_922_859_458_223_821,
            ]
        );
    }

    #[test]
    fn permutation_is_pinned() {
        // Generated by `python3 crates/zo-data/tests/golden/permutation.py` (the same algorithm in
        // plain Python, with integers reduced modulo 2^64).
        assert_eq!(permutation(10, 42), [0, 9, 5, 8, 6, 4, 7, 2, 1, 3]);
        let mut p = permutation(1000, 7);
        p.sort_unstable();
        assert_eq!(p, (0..1000).collect::<Vec<_>>());
        assert!(permutation(0, 1).is_empty());
    }

    #[test]
    fn below_is_in_range_and_covers_it() {
        let mut g = SplitMix64::new(3);
        let mut seen = [0usize; 7];
        for _ in 0..7000 {
            seen[g.below(7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800 && c < 1200), "{seen:?}");
        assert_eq!(g.below(1), 0);
        assert_eq!(g.below(0), 0);
        let big = u64::MAX / 2 + 7;
        assert!((0..100).all(|_| g.below(big) < big));
    }

    #[test]
    fn epoch_batches_cover_each_epoch_once() {
        let mut b = EpochBatches::new(10, 4, 5).unwrap();
        let first: Vec<usize> = (0..5).flat_map(|_| b.next_batch()).collect();
        // 20 indices = two full epochs, each a permutation of 0..10.
        for epoch in first.chunks(10) {
            let mut e = epoch.to_vec();
            e.sort_unstable();
            assert_eq!(e, (0..10).collect::<Vec<_>>());
        }
        assert_ne!(first[..10], first[10..]);
        assert_eq!(b.epoch(), 1);
        let again: Vec<usize> = EpochBatches::new(10, 4, 5)
            .unwrap()
            .take(5)
            .flatten()
            .collect();
        assert_eq!(first, again);
        assert!(EpochBatches::new(0, 4, 5).is_err());
        assert!(EpochBatches::new(4, 0, 5).is_err());
    }
}
