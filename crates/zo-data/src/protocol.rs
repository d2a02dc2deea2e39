//! Evaluation protocols: which examples form the train, validation and test sets.
//!
//! **Few-shot** ([`Protocol::FewShot`], MeZO's RoBERTa setting, LM-BFF): data seed `s` ∈ {13, 21,
//! 42, 87, 100}; train = `k-shot/16-s/train`, validation = `k-shot/16-s/dev` (`dev_matched` for
//! MNLI), test = the task's test file (`k-shot/16-s/test`: SST-2 872, SST-5 2210, TREC 500, RTE 277).
//! SNLI and MNLI have no test file in the data folder: their test set is `pool/dev.json` (1000)
//! without the pairs that occur in the seed's train or validation split. Tasks with FewGLUE files
//! only (CB, BoolQ, COPA, WSC, WiC) use `train.jsonl` / `dev32.jsonl` / `val.jsonl`, whatever the seed.
//!
//! **Sampled** ([`Protocol::Sampled`], the BSZO paper's setting, following HiZOO): up to `train`
//! training and the next `validation` validation examples, drawn from the task's pool with a fixed
//! seed; test = the task's original test file as above (for SNLI/MNLI `pool/dev.json`, which does
//! not overlap `pool/train.json`). The pool (`pool/train`) is first cleared of duplicate examples
//! (same texts; the first occurrence is kept) and of examples whose texts occur in the test set,
//! then permuted with [`crate::sample::permutation`]; train is the permutation's first `train`
//! items and validation the next `validation`, so the two never overlap. Default sizes
//! ([`Protocol::sampled`]): 1000/500, COPA 300/100, WSC 450/100, CB 200/50. For the FewGLUE tasks
//! the pool is `train.jsonl` (32) for train and `dev32.jsonl` (32, less any example also in train)
//! for validation, each permuted with its own derived seed and cut to the size: the data is smaller
//! than the sizes, so all of it is used.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dataset::{FewGlueSplit, KShotSplit, PoolSplit, load_fewglue, load_kshot, load_pool};
use crate::error::{DataError, Result};
use crate::sample::{derive_seed, permutation};
use crate::task::{Example, Source, Task};

/// LM-BFF's five data seeds.
pub const FEW_SHOT_SEEDS: [u64; 5] = [13, 21, 42, 87, 100];

/// How the splits are formed.
///
/// Serialises as `{"kind": "few_shot", "seed": 13}` or
/// `{"kind": "sampled", "seed": 0, "train": 1000, "validation": 500}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Protocol {
    /// LM-BFF few-shot splits for data seed `seed` (one of [`FEW_SHOT_SEEDS`]).
    FewShot {
        /// The data seed (names the folder `k-shot/16-SEED`).
        seed: u64,
    },
    /// Train/validation sampled from the pool with a seed; original test set.
    Sampled {
        /// The sampling seed.
        seed: u64,
        /// At most this many training examples.
        train: usize,
        /// At most this many validation examples.
        validation: usize,
    },
}

impl Protocol {
    /// The names of the kinds, as serialised (the `kind` tag).
    pub const KINDS: [&'static str; 2] = ["few_shot", "sampled"];

    /// The protocol of kind `kind` (one of [`Protocol::KINDS`]) for `task` with data seed `seed`
    /// at its defaults (the sampled sizes of [`sampled_sizes`]). `None` for an unknown kind.
    pub fn of_kind(kind: &str, task: Task, seed: u64) -> Option<Self> {
        match kind {
            "few_shot" => Some(Self::few_shot(seed)),
            "sampled" => Some(Self::sampled(task, seed)),
            _ => None,
        }
    }

    /// The few-shot protocol with data seed `seed`.
    pub fn few_shot(seed: u64) -> Self {
        Protocol::FewShot { seed }
    }

    /// The sampled protocol with the BSZO paper's sizes for `task` ([`sampled_sizes`]).
    pub fn sampled(task: Task, seed: u64) -> Self {
        let (train, validation) = sampled_sizes(task);
        Protocol::Sampled {
            seed,
            train,
            validation,
        }
    }
}

/// The BSZO paper's (train, validation) sizes for the sampled protocol.
pub fn sampled_sizes(task: Task) -> (usize, usize) {
    match task {
        Task::Copa => (300, 100),
        Task::Wsc => (450, 100),
        Task::Cb => (200, 50),
        _ => (1000, 500),
    }
}

/// The three splits of a task under a protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splits {
    /// The task.
    pub task: Task,
    /// The protocol that formed the splits.
    pub protocol: Protocol,
    /// Training examples.
    pub train: Vec<Example>,
    /// Validation examples (model selection, early stopping).
    pub validation: Vec<Example>,
    /// Test examples.
    pub test: Vec<Example>,
}

/// Load `task`'s splits from `data_dir` under `protocol`.
pub fn load_splits(data_dir: &Path, task: Task, protocol: Protocol) -> Result<Splits> {
    let (train, validation, test) = match (protocol, task.source()) {
        (Protocol::FewShot { .. }, Source::FewGlue) => fewglue_splits(data_dir, task)?,
        (Protocol::FewShot { seed }, Source::LmBff) => {
            let train = load_kshot(data_dir, task, seed, KShotSplit::Train)?;
            let validation = load_kshot(data_dir, task, seed, KShotSplit::Dev)?;
            let test = test_set(data_dir, task, seed, &[&train, &validation])?;
            (train, validation, test)
        }
        (
            Protocol::Sampled {
                seed,
                train: n_train,
                validation: n_val,
            },
            Source::FewGlue,
        ) => {
            let (train, validation, test) = fewglue_splits(data_dir, task)?;
            let train = pick(train, n_train, derive_seed(seed, 1));
            let seen = keys(&train);
            let validation: Vec<_> = validation
                .into_iter()
                .filter(|e| !seen.contains(&e.texts))
                .collect();
            let validation = pick(validation, n_val, derive_seed(seed, 2));
            (train, validation, test)
        }
        (
            Protocol::Sampled {
                seed,
                train: n_train,
                validation: n_val,
            },
            Source::LmBff,
        ) => {
            let test = test_set(data_dir, task, FEW_SHOT_SEEDS[0], &[])?;
            let test_keys = keys(&test);
            let mut seen = HashSet::new();
            let pool: Vec<Example> = load_pool(data_dir, task, PoolSplit::Train)?
                .into_iter()
                .filter(|e| !test_keys.contains(&e.texts) && seen.insert(e.texts.clone()))
                .collect();
            let order = permutation(pool.len(), seed);
            let n_train = n_train.min(pool.len());
            let n_val = n_val.min(pool.len() - n_train);
            let train = order[..n_train].iter().map(|&i| pool[i].clone()).collect();
            let validation = order[n_train..n_train + n_val]
                .iter()
                .map(|&i| pool[i].clone())
                .collect();
            (train, validation, test)
        }
    };
    if train.is_empty() {
        return Err(DataError::Invalid {
            field: "protocol",
            message: format!("{task}: the training split is empty"),
        });
    }
    Ok(Splits {
        task,
        protocol,
        train,
        validation,
        test,
    })
}

fn fewglue_splits(
    data_dir: &Path,
    task: Task,
) -> Result<(Vec<Example>, Vec<Example>, Vec<Example>)> {
    Ok((
        load_fewglue(data_dir, task, FewGlueSplit::Train)?,
        load_fewglue(data_dir, task, FewGlueSplit::Dev32)?,
        load_fewglue(data_dir, task, FewGlueSplit::Val)?,
    ))
}

/// The task's test set: the k-shot test file, or for SNLI/MNLI `pool/dev.json` minus the pairs in
/// `exclude`.
fn test_set(
    data_dir: &Path,
    task: Task,
    seed: u64,
    exclude: &[&[Example]],
) -> Result<Vec<Example>> {
    match task {
        Task::Snli | Task::Mnli => {
            let seen: HashSet<&Vec<String>> = exclude
                .iter()
                .flat_map(|s| s.iter().map(|e| &e.texts))
                .collect();
            Ok(load_pool(data_dir, task, PoolSplit::Dev)?
                .into_iter()
                .filter(|e| !seen.contains(&e.texts))
                .collect())
        }
        _ => load_kshot(data_dir, task, seed, KShotSplit::Test),
    }
}

fn keys(examples: &[Example]) -> HashSet<Vec<String>> {
    examples.iter().map(|e| e.texts.clone()).collect()
}

/// A seeded selection of at most `n` examples, in permuted order.
fn pick(examples: Vec<Example>, n: usize, seed: u64) -> Vec<Example> {
    let order = permutation(examples.len(), seed);
    let mut slots: Vec<Option<Example>> = examples.into_iter().map(Some).collect();
    order
        .into_iter()
        .take(n)
        .filter_map(|i| slots[i].take())
        .collect()
}
