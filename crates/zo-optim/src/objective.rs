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
}
