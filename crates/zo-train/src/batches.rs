//! Seeded minibatches of indices into a training set, shuffled afresh every epoch.
//!
//! [`EpochBatches`] yields minibatches of indices: each epoch is a fresh permutation of `0..n`
//! (epoch `e` uses the [`permutation`] of seed [`derive_seed`]`(seed, e)`, both from
//! [`zo_sampler::shuffle`](mod@zo_sampler::shuffle): SplitMix64 and Fisher–Yates, integer
//! arithmetic only, so the same seed gives the same batches on every platform), and batches run
//! on across epoch boundaries so that every batch is full. A run's seed log and its resume depend
//! on this sequence.

use zo_sampler::{derive_seed, permutation};

use crate::error::{Result, TrainError};

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
    /// ([`TrainError::Config`] naming `num_train` or `batch_size` otherwise).
    pub fn new(n: usize, batch_size: usize, seed: u64) -> Result<Self> {
        if n == 0 || batch_size == 0 {
            return Err(TrainError::Config {
                field: if n == 0 { "num_train" } else { "batch_size" },
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

    #[test]
    fn epoch_batches_are_pinned() {
        // The batch sequence that seed logs and resumes depend on; any change breaks old runs.
        let b: Vec<Vec<usize>> = EpochBatches::new(10, 4, 5).unwrap().take(6).collect();
        assert_eq!(
            b,
            [
                [6, 1, 0, 2],
                [4, 3, 8, 5],
                [7, 9, 5, 2],
                [4, 9, 7, 1],
                [3, 6, 0, 8],
                [6, 0, 8, 2],
            ]
        );
        let b: Vec<Vec<usize>> = EpochBatches::new(7, 3, 20_260_101)
            .unwrap()
            .take(6)
            .collect();
        assert_eq!(
            b,
            [
                [5, 4, 2],
                [3, 1, 6],
                [0, 5, 2],
                [1, 0, 4],
                [3, 6, 2],
                [4, 1, 6],
            ]
        );
        // A batch larger than the set repeats indices across epochs.
        let mut b = EpochBatches::new(3, 5, 0).unwrap();
        assert_eq!(b.next_batch(), [1, 2, 0, 0, 1]);
        assert_eq!(b.next_batch(), [2, 1, 0, 2, 1]);
        assert_eq!(b.next_batch(), [2, 0, 2, 1, 0]);
        assert_eq!(b.epoch(), 4);
    }

    #[test]
    fn zero_sizes_are_config_errors() {
        for (n, batch_size, field) in [
            (0, 4, "num_train"),
            (4, 0, "batch_size"),
            (0, 0, "num_train"),
        ] {
            match EpochBatches::new(n, batch_size, 1) {
                Err(TrainError::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{other:?}"),
            }
        }
    }
}
