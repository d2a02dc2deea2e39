//! The loop's settings and what a run reports.

use serde::{Deserialize, Serialize};
use zo_optim::ObjectiveError;

use crate::checkpoint::Best;
use crate::error::{Result, TrainError};
use crate::model::Metrics;

/// The loop's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The step budget.
    pub max_steps: u64,
    /// Training examples per minibatch (every forward of a step sees the same minibatch).
    pub batch_size: usize,
    /// The seed of the minibatch order (a fresh permutation per epoch, see
    /// [`EpochBatches`](crate::EpochBatches)).
    pub data_seed: u64,
    /// Evaluate on validation every this many steps (and after the last step); 0: never.
    pub eval_every: u64,
    /// Stop after this many validation evaluations without a strictly better score; `None`: never.
    /// The evaluation of the starting weights (step 0) counts: patience runs from it.
    pub patience: Option<u64>,
    /// Write a checkpoint every this many steps (also at the end and on a stop); 0: only then.
    /// Needs an output folder.
    pub checkpoint_every: u64,
    /// Row-sparse directions: each step's directions are restricted to the table rows its
    /// minibatch reads ([`TaskModel::rows_read`](crate::TaskModel::rows_read)), so the update
    /// moves only those rows. Off by default (the published algorithms perturb every row).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub row_sparse: bool,
    /// The number of contiguous pieces a minibatch is evaluated in, one forward each (at most one
    /// piece per example); the loss sums the per-example terms of all pieces in example order
    /// ([`TaskModel::train_terms`](crate::TaskModel::train_terms)). Part of the computation, not
    /// of the machine: with [`ParallelMode::Data`](crate::ParallelMode::Data) the pieces are
    /// shared out between the processes, and a run with `N` processes equals the one-process run
    /// with the same `shards` bit for bit. 1 (the default): the whole minibatch in one forward.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub shards: usize,
}

fn one() -> usize {
    1
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            max_steps: 1000,
            batch_size: 16,
            data_seed: 0,
            eval_every: 100,
            patience: None,
            checkpoint_every: 0,
            row_sparse: false,
            shards: 1,
        }
    }
}

impl TrainConfig {
    /// Check the settings.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(TrainError::Config {
                field: "batch_size",
                message: "must be at least 1".into(),
            });
        }
        if self.shards == 0 {
            return Err(TrainError::Config {
                field: "shards",
                message: "must be at least 1 piece".into(),
            });
        }
        if self.patience == Some(0) {
            return Err(TrainError::Config {
                field: "patience",
                message: "must be at least 1 evaluation (or None)".into(),
            });
        }
        if self.patience.is_some() && self.eval_every == 0 {
            return Err(TrainError::Config {
                field: "patience",
                message: "early stopping needs evaluations (`eval_every` > 0)".into(),
            });
        }
        Ok(())
    }
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The step budget was spent.
    MaxSteps,
    /// The validation score stopped improving.
    EarlyStop,
    /// The stop flag was set; the run can be resumed.
    StopFlag,
}

/// Which weights the test split was evaluated on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestWeights {
    /// The best-on-validation weights (kept in memory by [`Trainer::run_keep_best`](crate::Trainer::run_keep_best)).
    Best,
    /// The weights after the last step.
    Final,
}

/// The outcome of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Why the run ended.
    pub reason: StopReason,
    /// Steps completed.
    pub steps: u64,
    /// Forward passes of the optimizer steps.
    pub train_forwards: u64,
    /// Forward passes of the evaluations (test included).
    pub eval_forwards: u64,
    /// The best validation score (at step 0 when no step beat the starting weights; `None`
    /// without evaluations).
    pub best: Option<Best>,
    /// The test metrics (`None` after a stop flag).
    pub test: Option<Metrics>,
    /// The weights the test metrics belong to (`None` after a stop flag).
    pub test_weights: Option<TestWeights>,
}

/// Encodes the parameters for a checkpoint (see [`Trainer::save_params_with`](crate::Trainer::save_params_with)).
pub type ParamEncoder<P> = Box<dyn FnMut(&P) -> std::result::Result<Vec<u8>, ObjectiveError>>;

/// An encoder that writes parameters as JSON (fine for small parameter sets and tests).
pub fn json_params<P: Serialize + ?Sized>() -> ParamEncoder<P> {
    Box::new(|p: &P| Ok(serde_json::to_vec(p)?))
}
