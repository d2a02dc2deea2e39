//! What the caller supplies: the loss on a minibatch and the metrics of a split.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use zo_optim::{Objective, ObjectiveError, RowSupport};

/// An evaluation split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// The validation split (model selection, early stopping).
    Validation,
    /// The test split (evaluated once, at the end).
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Validation => "validation",
            Self::Test => "test",
        })
    }
}

/// The result of evaluating a split.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The selection score, higher is better (accuracy or macro-F1, e.g. from zo-data's
    /// `accuracy`); must be finite.
    pub score: f64,
    /// The mean loss on the split, if the model computes it.
    pub loss: Option<f64>,
    /// Forward passes the evaluation used (counted apart from training forwards).
    pub forwards: u64,
    /// Further named values (per-class scores, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, f64>,
}

/// A model of a task, supplied by the caller: the training loss of parameters `P` on a minibatch of
/// training examples, and the metrics of an evaluation split.
///
/// The trainer never looks inside `P`: any [`zo_optim::ParamSet`] trains, from a `Vec<f32>` to a
/// language model's weights.
pub trait TaskModel<P: ?Sized> {
    /// The number of training examples (minibatches are indices into `0..num_train()`).
    fn num_train(&self) -> usize;

    /// The loss of `params` on the training examples with indices `batch`. Called by every forward
    /// pass of an optimizer step, always with the same `batch` within a step.
    fn train_loss(&mut self, params: &P, batch: &[usize]) -> Result<f64, ObjectiveError>;

    /// The metrics of `params` on `split`.
    fn evaluate(&mut self, params: &P, split: Split) -> Result<Metrics, ObjectiveError>;

    /// For row-sparse directions ([`TrainConfig::row_sparse`](crate::TrainConfig::row_sparse)):
    /// the rows of each table (an embedding) that [`train_loss`](TaskModel::train_loss) reads on
    /// `batch`, every other row of those tables having zero gradient on it. The default: the model
    /// cannot tell (an error when row-sparse directions are asked for).
    fn rows_read(&mut self, params: &P, batch: &[usize]) -> Result<RowSupport, ObjectiveError> {
        let _ = (params, batch);
        Err(ObjectiveError::from(
            "this model cannot tell which table rows a minibatch reads (row-sparse directions)"
                .to_string(),
        ))
    }
}

/// The objective of one step: the model's loss on one fixed minibatch.
pub(crate) struct BatchObjective<'m, M> {
    pub(crate) model: &'m mut M,
    pub(crate) batch: &'m [usize],
}

impl<P: ?Sized, M: TaskModel<P>> Objective<P> for BatchObjective<'_, M> {
    fn loss(&mut self, params: &P) -> Result<f64, ObjectiveError> {
        self.model.train_loss(params, self.batch)
    }
}
