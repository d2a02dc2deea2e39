//! The objective: the loss of the current parameters on the current minibatch.

use crate::error::ObjectiveError;

/// A loss to minimise, evaluated with forward passes only.
///
/// Every evaluation inside one optimizer step must use the same minibatch: the caller (the training
/// loop) chooses the minibatch before the step and the objective keeps it until the next. The loss is
/// returned in f64 so that finite differences keep their digits.
pub trait Objective<P: ?Sized> {
    /// The loss at `params`.
    fn loss(&mut self, params: &P) -> Result<f64, ObjectiveError>;

    /// How this caller takes part in evaluating a set of *independent* probe points (points whose
    /// losses do not depend on one another's, such as BSZO's `k` axis probes or n-SPSA's `±εzⱼ`):
    /// `None` (the default) evaluates every point itself, one after the other. With
    /// `Some(share)` the optimizer evaluates only the points `i` with
    /// `i % share.count == share.index` and hands what it got to [`gather`](Self::gather), which
    /// returns every point's loss — how several processes split a step's probes between them
    /// while every one of them runs the identical step. Points that depend on earlier losses
    /// (BSZO-B's fresh extra samples, the conservative rule's candidates) are still evaluated
    /// with [`loss`](Self::loss) by every caller.
    fn share(&self) -> Option<Share> {
        None
    }

    /// With a [`share`](Self::share): the loss of every point of the set, in order, from this
    /// caller's own evaluations (`Some`; a failed one is `Some(NaN)`) and the others' (`None`).
    /// Called exactly once per set by every caller of the share, also when one of its own
    /// evaluations failed, so that no caller is left waiting. The default needs every value.
    fn gather(&mut self, local: &[Option<f64>]) -> Result<Vec<f64>, ObjectiveError> {
        local
            .iter()
            .enumerate()
            .map(|(i, v)| v.ok_or_else(|| format!("probe point {i} was not evaluated").into()))
            .collect()
    }
}

/// This caller's part of a set of independent evaluations ([`Objective::share`]): the points `i`
/// with `i % count == index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// This caller's index, `0..count`.
    pub index: usize,
    /// How many callers split the set.
    pub count: usize,
}

impl Share {
    /// Whether point `i` is this caller's to evaluate.
    pub fn owns(&self, i: usize) -> bool {
        self.count <= 1 || i % self.count == self.index
    }
}

/// Any closure `FnMut(&P) -> f64` is an infallible objective.
impl<P: ?Sized, F: FnMut(&P) -> f64> Objective<P> for F {
    fn loss(&mut self, params: &P) -> Result<f64, ObjectiveError> {
        Ok(self(params))
    }
}

/// An objective wrapper that counts forward passes (every call to [`Objective::loss`]).
#[derive(Debug, Clone)]
pub struct Counted<O> {
    inner: O,
    forwards: u64,
}

impl<O> Counted<O> {
    /// Wrap `inner` with a zero count.
    pub fn new(inner: O) -> Self {
        Self { inner, forwards: 0 }
    }

    /// The forward passes so far.
    pub fn forwards(&self) -> u64 {
        self.forwards
    }

    /// The wrapped objective.
    pub fn inner(&self) -> &O {
        &self.inner
    }

    /// The wrapped objective, mutably (e.g. to set the next minibatch).
    pub fn inner_mut(&mut self) -> &mut O {
        &mut self.inner
    }

    /// Unwrap.
    pub fn into_inner(self) -> O {
        self.inner
    }
}

impl<P: ?Sized, O: Objective<P>> Objective<P> for Counted<O> {
    fn loss(&mut self, params: &P) -> Result<f64, ObjectiveError> {
        self.forwards += 1;
        self.inner.loss(params)
    }

    fn share(&self) -> Option<Share> {
        self.inner.share()
    }

    /// Counts the points this caller evaluated (not the others').
    fn gather(&mut self, local: &[Option<f64>]) -> Result<Vec<f64>, ObjectiveError> {
        self.inner.gather(local)
    }
}
