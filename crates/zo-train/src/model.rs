//! What the caller supplies: the loss on a minibatch and the metrics of a split.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use zo_optim::{Objective, ObjectiveError, RowSupport, Share};

use crate::comm::{self, Communicator, ParallelMode};

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

    /// The loss on the training examples `piece` (a contiguous piece of a minibatch) as
    /// [`LossTerms`], for [`TrainConfig::shards`](crate::TrainConfig::shards) > 1 and
    /// data-parallel runs: the minibatch's loss is [`LossTerms::loss`] of its pieces in order,
    /// and for a single piece it must equal [`train_loss`](TaskModel::train_loss) bit for bit.
    /// The default: the model cannot split a minibatch (an error when it is asked to).
    fn train_terms(&mut self, params: &P, piece: &[usize]) -> Result<LossTerms, ObjectiveError> {
        let _ = (params, piece);
        Err(ObjectiveError::from(
            "this model cannot evaluate a minibatch in pieces (train.shards > 1 or data-parallel \
             processes)"
                .to_string(),
        ))
    }

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

/// The terms of a training loss on some examples, from which the loss of a minibatch is
/// assembled: `loss = (Σ terms, summed in order from 0) / count`, the terms of the whole
/// minibatch being those of its pieces one after the other
/// ([`TaskModel::train_terms`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LossTerms {
    /// The additive terms, in example order (one per example for a mean over examples; one per
    /// token for a mean over tokens).
    pub terms: Vec<f64>,
    /// What their sum is divided by over the whole minibatch: this piece's share of it (the
    /// examples or tokens it holds).
    pub count: u64,
}

impl LossTerms {
    /// The loss of pieces given in order: the sum of all their terms, from 0 in order, divided by
    /// the sum of their counts.
    pub fn loss<'a>(pieces: impl IntoIterator<Item = &'a LossTerms>) -> f64 {
        let mut total = 0.0;
        let mut count = 0u64;
        for p in pieces {
            for t in &p.terms {
                total += *t;
            }
            count += p.count;
        }
        total / count as f64
    }

    /// The terms as one flat message: `[count, number of terms, terms…]`.
    fn encode_into(&self, out: &mut Vec<f64>) {
        out.push(self.count as f64);
        out.push(self.terms.len() as f64);
        out.extend_from_slice(&self.terms);
    }

    /// Read one [`encode_into`](Self::encode_into) message from the front of `values`.
    fn decode(values: &mut &[f64]) -> Option<LossTerms> {
        let (&count, rest) = values.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let len = len as usize;
        let terms = rest.get(..len)?.to_vec();
        *values = &rest[len..];
        Some(LossTerms {
            terms,
            count: count as u64,
        })
    }
}

/// The objective of one step: the model's loss on one fixed minibatch, evaluated in pieces and
/// split between processes as the step's [`Parallel`] settings say.
pub(crate) struct BatchObjective<'m, M> {
    pub(crate) model: &'m mut M,
    pub(crate) batch: &'m [usize],
    pub(crate) shards: usize,
    pub(crate) parallel: Option<&'m Parallel>,
}

/// How the processes of a run share its steps.
pub(crate) struct Parallel {
    pub(crate) comm: std::rc::Rc<dyn Communicator>,
    pub(crate) mode: ParallelMode,
}

impl<M> BatchObjective<'_, M> {
    /// The loss from every piece of the minibatch, this process evaluating the pieces `owns`
    /// says and gathering the others.
    fn pieces_loss<P: ?Sized>(&mut self, params: &P) -> Result<f64, ObjectiveError>
    where
        M: TaskModel<P>,
    {
        let pieces = comm::pieces(self.batch.len(), self.shards);
        let (rank, size, comm) = match self.parallel {
            Some(p) if p.mode == ParallelMode::Data => {
                (p.comm.rank(), p.comm.size(), Some(&p.comm))
            }
            _ => (0, 1, None),
        };
        let mut mine = Vec::new();
        let mut failure = None;
        let mut local = Vec::new();
        for (i, range) in pieces.iter().enumerate() {
            if i % size != rank {
                continue;
            }
            match self.model.train_terms(params, &self.batch[range.clone()]) {
                Ok(t) => mine.push(t),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let Some(comm) = comm else {
            return match failure {
                Some(e) => Err(e),
                None => Ok(LossTerms::loss(&mine)),
            };
        };
        // A process whose piece failed still takes part (with a NaN term), so no process waits.
        if failure.is_some() {
            mine = vec![LossTerms {
                terms: vec![f64::NAN],
                count: 1,
            }];
        }
        for t in &mine {
            t.encode_into(&mut local);
        }
        let parts = comm.all_gather(&local)?;
        if let Some(e) = failure {
            return Err(e);
        }
        let mut readers: Vec<&[f64]> = parts.iter().map(Vec::as_slice).collect();
        let mut all = Vec::with_capacity(pieces.len());
        for i in 0..pieces.len() {
            let r = i % size;
            let t = readers
                .get_mut(r)
                .and_then(LossTerms::decode)
                .ok_or_else(|| format!("process {r} sent no loss terms for piece {i}"))?;
            all.push(t);
        }
        Ok(LossTerms::loss(&all))
    }
}

impl<P: ?Sized, M: TaskModel<P>> Objective<P> for BatchObjective<'_, M> {
    fn loss(&mut self, params: &P) -> Result<f64, ObjectiveError> {
        let data = self.parallel.is_some_and(|p| p.mode == ParallelMode::Data);
        if self.shards == 1 && !data {
            return self.model.train_loss(params, self.batch);
        }
        self.pieces_loss(params)
    }

    fn share(&self) -> Option<Share> {
        let p = self.parallel?;
        (p.mode == ParallelMode::Directions).then(|| Share {
            index: p.comm.rank(),
            count: p.comm.size(),
        })
    }

    fn gather(&mut self, local: &[Option<f64>]) -> Result<Vec<f64>, ObjectiveError> {
        let Some(p) = self.parallel else {
            return Err("no processes to gather probe losses from".into());
        };
        let mine: Vec<f64> = local.iter().filter_map(|v| *v).collect();
        Ok(comm::gather_round_robin(
            p.comm.as_ref(),
            &mine,
            local.len(),
        )?)
    }
}
