//! Evaluating the objective inside a step, and moving the parameters between probe points.

use crate::direction::{Term, negate};
use crate::error::{OptimError, ParamError};
use crate::objective::{Objective, Share};
use crate::params::{ParamSet, Perturbation, ProbeMode};

/// Evaluation of the objective inside a step: counts, checks finiteness, and on failure puts the
/// parameters back before returning the error.
pub(crate) struct Evaluator<'o, O> {
    pub objective: &'o mut O,
    pub step: u64,
    pub forwards: usize,
    pub losses: Vec<f64>,
}

impl<O> Evaluator<'_, O> {
    /// The loss at the parameters as they are; on a non-finite or failed loss `undo` runs before
    /// the error is returned.
    pub(crate) fn eval<P: ParamSet + ?Sized>(
        &mut self,
        params: &mut P,
        undo: &dyn Fn(&mut P) -> Result<(), ParamError>,
    ) -> Result<f64, OptimError>
    where
        O: Objective<P>,
    {
        self.forwards += 1;
        let forward = self.forwards;
        match self.objective.loss(params) {
            Ok(v) if v.is_finite() => {
                self.losses.push(v);
                Ok(v)
            }
            Ok(value) => {
                undo(params)?;
                Err(OptimError::NonFiniteLoss {
                    step: self.step,
                    forward,
                    value,
                })
            }
            Err(source) => {
                undo(params)?;
                Err(OptimError::Objective {
                    step: self.step,
                    forward,
                    source,
                })
            }
        }
    }

    /// This caller's share of a set of independent points, if the objective splits sets.
    pub(crate) fn share<P: ParamSet + ?Sized>(&self) -> Option<Share>
    where
        O: Objective<P>,
    {
        self.objective.share()
    }

    /// The losses at `n` independent points, split as the objective's [`Share`] says: `goto`
    /// shows point `i` (this caller's points only, in order), the objective evaluates it, and
    /// [`Objective::gather`] completes the set. Every point counts as one forward of the step
    /// and its loss is logged in point order, as if they had all been evaluated here. On a failed
    /// or non-finite loss — this caller's or another's — `undo` runs and the first failing point
    /// is reported.
    pub(crate) fn eval_set<P: ParamSet + ?Sized>(
        &mut self,
        params: &mut P,
        share: Share,
        n: usize,
        goto: &mut dyn FnMut(&mut P, usize) -> Result<(), ParamError>,
        undo: &dyn Fn(&mut P) -> Result<(), ParamError>,
    ) -> Result<Vec<f64>, OptimError>
    where
        O: Objective<P>,
    {
        let first = self.forwards;
        let mut local = vec![None; n];
        let mut failed = None;
        for (i, slot) in local.iter_mut().enumerate() {
            if !share.owns(i) {
                continue;
            }
            if failed.is_some() {
                *slot = Some(f64::NAN);
                continue;
            }
            if let Err(e) = goto(params, i) {
                undo(params)?;
                return Err(e.into());
            }
            *slot = Some(match self.objective.loss(params) {
                Ok(v) => v,
                Err(e) => {
                    failed = Some((i, e));
                    f64::NAN
                }
            });
        }
        let gathered = self.objective.gather(&local);
        self.forwards += n;
        if let Some((i, source)) = failed {
            undo(params)?;
            return Err(OptimError::Objective {
                step: self.step,
                forward: first + i + 1,
                source,
            });
        }
        let losses = match gathered {
            Ok(v) if v.len() == n => v,
            Ok(v) => {
                undo(params)?;
                return Err(OptimError::Objective {
                    step: self.step,
                    forward: first + n,
                    source: format!("{} losses gathered for {n} probe points", v.len()).into(),
                });
            }
            Err(source) => {
                undo(params)?;
                return Err(OptimError::Objective {
                    step: self.step,
                    forward: first + n,
                    source,
                });
            }
        };
        if let Some(i) = losses.iter().position(|v| !v.is_finite()) {
            undo(params)?;
            return Err(OptimError::NonFiniteLoss {
                step: self.step,
                forward: first + i + 1,
                value: losses[i],
            });
        }
        self.losses.extend_from_slice(&losses);
        Ok(losses)
    }

    /// The loss at the parameters as they are, with nothing to undo on failure.
    pub(crate) fn eval_here<P: ParamSet + ?Sized>(
        &mut self,
        params: &mut P,
    ) -> Result<f64, OptimError>
    where
        O: Objective<P>,
    {
        self.eval(params, &|_: &mut P| Ok(()))
    }
}

/// The parameters moved away from the step's starting point `θ` by a displacement `Σ terms`
/// (`θ_now = θ + Σ displacement`), and the evaluator that queries the loss there.
///
/// With an in-place parameter set every probe point of the additive estimators is reached from the
/// previous one in one sweep, and a failed evaluation removes the displacement before the error is
/// returned. With a view ([`ProbeMode::View`]) the displacement is only handed to the parameter
/// set's view: the stored values never move, and the way out clears the view.
pub(crate) struct Probe<'a, 'o, P: ?Sized, O> {
    params: &'a mut P,
    ev: &'a mut Evaluator<'o, O>,
    displacement: Vec<Term>,
    view: bool,
}

impl<'a, 'o, P, O> Probe<'a, 'o, P, O>
where
    P: ParamSet + ?Sized,
    O: Objective<P>,
{
    /// Probing from the parameters as they are (no displacement yet).
    pub(crate) fn new(params: &'a mut P, ev: &'a mut Evaluator<'o, O>) -> Self {
        let view = params.probe_mode() == ProbeMode::View;
        Self {
            params,
            ev,
            displacement: Vec::new(),
            view,
        }
    }

    /// Show `terms` through the view (none: the stored values).
    fn show(&mut self, terms: &[Term]) -> Result<(), OptimError> {
        let view = (!terms.is_empty()).then(|| Perturbation::new(terms.to_vec()));
        self.params.set_view(view)?;
        Ok(())
    }

    /// The displacement currently applied.
    pub(crate) fn displacement(&self) -> &[Term] {
        &self.displacement
    }

    /// The loss at the current point; on failure the displacement is removed first.
    pub(crate) fn loss(&mut self) -> Result<f64, OptimError> {
        if self.displacement.is_empty() {
            return self.ev.eval_here(self.params);
        }
        if self.view {
            return self.ev.eval(self.params, &|p: &mut P| p.set_view(None));
        }
        let back = negate(&self.displacement);
        self.ev.eval(self.params, &|p: &mut P| p.add(&back, None))
    }

    /// Move to displacement `to` in one sweep (`−Σ displacement + Σ to`).
    pub(crate) fn move_to(&mut self, to: Vec<Term>) -> Result<(), OptimError> {
        if self.view {
            self.show(&to)?;
            self.displacement = to;
            return Ok(());
        }
        let mut terms = negate(&self.displacement);
        terms.extend_from_slice(&to);
        self.params.add(&terms, None)?;
        self.displacement = to;
        Ok(())
    }

    /// This caller's share of a set of independent points ([`Objective::share`]).
    pub(crate) fn share(&self) -> Option<Share> {
        self.ev.share::<P>()
    }

    /// The losses at the independent displacements `points` (an empty one is `θ`), split between
    /// the callers of `share` ([`Evaluator::eval_set`]). Afterwards the displacement is the last
    /// point this caller showed; a failure removes it first.
    pub(crate) fn losses_at(
        &mut self,
        share: Share,
        points: &[Vec<Term>],
    ) -> Result<Vec<f64>, OptimError> {
        let view = self.view;
        let mut at = std::mem::take(&mut self.displacement);
        let result = {
            let at = &mut at;
            let mut goto = |p: &mut P, i: usize| -> Result<(), ParamError> {
                let to = &points[i];
                if view {
                    p.set_view((!to.is_empty()).then(|| Perturbation::new(to.clone())))?;
                } else {
                    let mut terms = negate(at);
                    terms.extend_from_slice(to);
                    p.add(&terms, None)?;
                }
                at.clone_from(to);
                Ok(())
            };
            // Nothing to undo before the first move; afterwards `abort` below removes `at`.
            self.ev
                .eval_set(self.params, share, points.len(), &mut goto, &|_: &mut P| {
                    Ok(())
                })
        };
        self.displacement = at;
        match result {
            Ok(losses) => Ok(losses),
            Err(err) => {
                let undone = if self.view {
                    self.params.set_view(None)
                } else {
                    self.params.add(&negate(&self.displacement), None)
                };
                self.displacement.clear();
                match undone {
                    Ok(()) => Err(err),
                    Err(restore) => Err(restore.into()),
                }
            }
        }
    }

    /// Move to displacement `to`, then evaluate the loss there.
    pub(crate) fn loss_at(&mut self, to: Vec<Term>) -> Result<f64, OptimError> {
        self.move_to(to)?;
        self.loss()
    }

    /// Reflect the displacement through `θ` (`Σ cᵢ zᵢ → −Σ cᵢ zᵢ`) with one term `−2cᵢ zᵢ` per
    /// direction.
    pub(crate) fn reflect(&mut self) -> Result<(), OptimError> {
        if self.view {
            let back = negate(&self.displacement);
            self.show(&back)?;
            self.displacement = back;
            return Ok(());
        }
        let step: Vec<Term> = self
            .displacement
            .iter()
            .map(|t| Term::new(-2.0 * t.coeff, t.direction))
            .collect();
        self.params.add(&step, None)?;
        self.displacement = negate(&self.displacement);
        Ok(())
    }

    /// Remove the displacement and return `err`: the way out when a step fails between probes.
    pub(crate) fn abort(self, err: OptimError) -> OptimError {
        let undone = if self.view {
            self.params.set_view(None)
        } else {
            self.params.add(&negate(&self.displacement), None)
        };
        match undone {
            Ok(()) => err,
            Err(restore) => restore.into(),
        }
    }

    /// The displacement still applied to the stored values, for the update rule to remove: none
    /// with a view, which is cleared here.
    pub(crate) fn finish(mut self) -> Result<Vec<Term>, OptimError> {
        if self.view {
            self.show(&[])?;
            return Ok(Vec::new());
        }
        Ok(self.displacement)
    }
}
