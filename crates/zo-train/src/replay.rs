//! Rebuilding weights from the base weights and the seed log, without a forward pass.
//!
//! A step's update depends on its data only through the losses it evaluated; everything else —
//! directions, perturbation sweeps, Kalman fusion, curvature and moment estimates — is a function of
//! the run seed, the step and those losses. Replaying a step therefore runs the optimizer's own step
//! on an objective that hands back the logged losses in order: the same sweeps, in the same order,
//! with the same rounding, so the rebuilt weights equal the trained weights bit for bit. The cost is
//! the sweeps of the steps (memory-bound passes over the parameters), not their forwards.

use zo_optim::{Objective, ObjectiveError, OptimError, Optimizer, OptimizerState, ParamSet};

use crate::checkpoint::SeedLogEntry;
use crate::error::{Result, TrainError};

/// An objective that returns the losses of a logged step, in the order they were evaluated.
#[derive(Debug)]
struct LoggedLosses<'a> {
    losses: std::slice::Iter<'a, f64>,
    step: u64,
}

impl<P: ?Sized> Objective<P> for LoggedLosses<'_> {
    fn loss(&mut self, _params: &P) -> std::result::Result<f64, ObjectiveError> {
        self.losses.next().copied().ok_or_else(|| {
            ObjectiveError::from(format!(
                "step {} asked for more losses than the seed log holds",
                self.step
            ))
        })
    }
}

/// Replay the first `steps` entries of `log` on `params` (the run's initial weights) with the run's
/// `optimizer`, and return the optimizer state after them.
///
/// Each replayed step is checked against its log entry (learning rate, forwards, projected
/// gradients or posterior mean, every loss consumed): a log made by another optimizer setting is an
/// error, not silently wrong weights. Initial weights other than the run's cannot be detected this
/// way (the logged losses are replayed, not recomputed); keep the base weights the run started from.
pub fn replay<P: ParamSet + ?Sized>(
    optimizer: &Optimizer,
    params: &mut P,
    log: &[SeedLogEntry],
    steps: u64,
) -> Result<OptimizerState> {
    let mismatch = |step: u64, message: String| TrainError::Replay { step, message };
    if (log.len() as u64) < steps {
        return Err(mismatch(
            log.len() as u64,
            format!("the seed log holds {} steps, {steps} requested", log.len()),
        ));
    }
    let seed = log.first().map_or(0, |e| e.seed);
    let mut state = optimizer.init(params, seed);
    for (t, entry) in log.iter().take(steps as usize).enumerate() {
        let t = t as u64;
        if entry.report.step != t {
            return Err(mismatch(
                t,
                format!("line {} is step {}", t + 1, entry.report.step),
            ));
        }
        if entry.seed != seed {
            return Err(mismatch(
                t,
                format!(
                    "run seed {} differs from the first step's {seed}",
                    entry.seed
                ),
            ));
        }
        let mut objective = LoggedLosses {
            losses: entry.report.losses.iter(),
            step: t,
        };
        // A row-sparse step replays on the rows it was restricted to.
        if let Some(rows) = &entry.rows {
            params
                .set_row_support(Some(rows))
                .map_err(|e| mismatch(t, e.to_string()))?;
        }
        let stepped = optimizer.step(&mut state, params, &mut objective);
        if entry.rows.is_some() {
            params
                .set_row_support(None)
                .map_err(|e| mismatch(t, e.to_string()))?;
        }
        let report = match stepped {
            Ok(r) => r,
            Err(OptimError::Objective { source, .. }) => {
                return Err(mismatch(t, source.to_string()));
            }
            Err(e) => return Err(mismatch(t, e.to_string())),
        };
        if objective.losses.len() != 0 {
            return Err(mismatch(
                t,
                format!(
                    "the step used {} of {} logged losses (another optimizer setting?)",
                    report.losses.len(),
                    entry.report.losses.len()
                ),
            ));
        }
        let same = report.lr.to_bits() == entry.report.lr.to_bits()
            && report.forwards == entry.report.forwards
            && report.projected.len() == entry.report.projected.len()
            && report
                .projected
                .iter()
                .zip(&entry.report.projected)
                .all(|(a, b)| a.to_bits() == b.to_bits());
        if !same {
            return Err(mismatch(
                t,
                format!(
                    "replayed lr {} / projected {:?} differ from the logged lr {} / projected {:?} \
                     (another optimizer setting?)",
                    report.lr, report.projected, entry.report.lr, entry.report.projected
                ),
            ));
        }
    }
    Ok(state)
}
