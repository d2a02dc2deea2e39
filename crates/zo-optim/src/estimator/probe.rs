//! Evaluating the objective inside a step, and moving the parameters between probe points.

use crate::direction::{Term, negate};
use crate::error::{OptimError, ParamError};
use crate::objective::Objective;
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
