//! Keeping the best-on-validation weights: not at all, as an in-memory deep copy, or as the means to
//! rebuild them from the base weights and the seed log.

use zo_optim::{ObjectiveError, Optimizer, ParamSet, ParamStore};

use crate::checkpoint::Best;
use crate::error::{Result, TrainError};
use crate::rundir::RunDir;

/// A copy of parameters that shares no storage with them: perturbing or updating the original
/// afterwards leaves the copy as it was.
///
/// A parameter set whose `Clone` shares storage (a tensor handle, an `Arc`) must not implement it
/// through that clone (see the aliasing rule of [`ParamSet`]). Implemented here for `Vec<f32>`,
/// ndarray arrays and [`ParamStore`]; for other types (a model's weights), pass the copy as a
/// closure to [`Trainer::run_keep_best_with`](crate::Trainer::run_keep_best_with).
pub trait DeepCopy: Sized {
    /// A copy of `self` with storage of its own.
    fn deep_copy(&self) -> std::result::Result<Self, ObjectiveError>;
}

impl DeepCopy for Vec<f32> {
    fn deep_copy(&self) -> std::result::Result<Self, ObjectiveError> {
        Ok(self.clone())
    }
}

impl<D: ndarray::Dimension> DeepCopy for ndarray::Array<f32, D> {
    fn deep_copy(&self) -> std::result::Result<Self, ObjectiveError> {
        Ok(self.clone())
    }
}

impl DeepCopy for ParamStore {
    fn deep_copy(&self) -> std::result::Result<Self, ObjectiveError> {
        Ok(self.clone())
    }
}

/// Where the test split's best weights come from.
pub(crate) struct RestoreCtx<'a> {
    pub(crate) optimizer: &'a Optimizer,
    pub(crate) out_dir: Option<&'a RunDir>,
    pub(crate) best: Option<Best>,
    pub(crate) steps: u64,
}

/// Keeps (or not) the means to recover the best weights.
pub(crate) trait BestKeeper<P: ?Sized> {
    /// The weights after `step` steps are the best so far.
    fn record(&mut self, params: &P, step: u64) -> Result<()>;
    /// Put the best weights into `params`; false when they cannot be had.
    fn restore(&mut self, params: &mut P, ctx: RestoreCtx<'_>) -> Result<bool>;
}

/// Keeps nothing: the test split sees the final weights.
pub(crate) struct NoKeep;

impl<P: ?Sized> BestKeeper<P> for NoKeep {
    fn record(&mut self, _: &P, _: u64) -> Result<()> {
        Ok(())
    }
    fn restore(&mut self, _: &mut P, _: RestoreCtx<'_>) -> Result<bool> {
        Ok(false)
    }
}

/// Keeps a deep copy of the best weights, made by `copy`.
pub(crate) struct CopyKeep<P, F> {
    pub(crate) best: Option<P>,
    pub(crate) copy: F,
}

impl<P, F> BestKeeper<P> for CopyKeep<P, F>
where
    F: FnMut(&P) -> std::result::Result<P, ObjectiveError>,
{
    fn record(&mut self, params: &P, step: u64) -> Result<()> {
        // The previous copy goes first: at most one copy besides the live weights.
        self.best = None;
        self.best =
            Some((self.copy)(params).map_err(|source| TrainError::CopyWeights { step, source })?);
        Ok(())
    }
    fn restore(&mut self, params: &mut P, _: RestoreCtx<'_>) -> Result<bool> {
        Ok(match self.best.take() {
            Some(best) => {
                *params = best;
                true
            }
            None => false,
        })
    }
}

/// Rebuilds the best weights from the base weights and the seed log.
pub(crate) struct ReplayKeep<F>(pub(crate) F);

impl<P, F> BestKeeper<P> for ReplayKeep<F>
where
    P: ParamSet + ?Sized,
    F: FnMut(&mut P) -> std::result::Result<(), ObjectiveError>,
{
    fn record(&mut self, _: &P, _: u64) -> Result<()> {
        Ok(())
    }
    fn restore(&mut self, params: &mut P, ctx: RestoreCtx<'_>) -> Result<bool> {
        let Some(best) = ctx.best else {
            return Ok(false);
        };
        if best.step == ctx.steps {
            return Ok(true);
        }
        let Some(dir) = ctx.out_dir else {
            return Ok(false);
        };
        dir.replay_into(ctx.optimizer, params, best.step, &mut self.0)?;
        Ok(true)
    }
}
