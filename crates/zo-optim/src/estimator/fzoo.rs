//! FZOO (Dang et al. 2025, arXiv 2506.09034): the one-sided SPSA estimate over N Rademacher
//! directions, divided by the sample standard deviation σ of the N perturbed losses.
//!
//! The probes and the differences are SPSA's (`spsa.rs`); only the coefficients differ: SPSA
//! divides each `gᵢ` by N, FZOO by `N · max(σ, std_floor)`. With plain SGD the step is
//! `θ ← θ − η g / σ`, a zeroth-order normalised SGD.

use super::Estimate;
use super::probe::Probe;
use super::spsa;
use crate::direction::Direction;
use crate::error::{ConfigError, OptimError, at_least, positive};
use crate::objective::Objective;
use crate::params::ParamSet;

/// Check FZOO's hyper-parameters: `eps > 0`, at least two samples (σ needs two losses) and a
/// finite `std_floor > 0`.
pub(super) fn validate(eps: f64, samples: usize, std_floor: f64) -> Result<(), ConfigError> {
    positive("eps", eps)?;
    at_least("samples", 2, samples as u64)?;
    positive("std_floor", std_floor)
}

/// Forward passes per step: `L(θ)` and one per direction.
pub(super) fn forwards(samples: usize) -> usize {
    spsa::forwards(samples, true)
}

/// The sample standard deviation of `losses` (denominator `n − 1`; 0 for fewer than two).
pub(super) fn sample_std(losses: &[f64]) -> f64 {
    let n = losses.len();
    if n < 2 {
        return 0.0;
    }
    let mean = losses.iter().sum::<f64>() / n as f64;
    let ss: f64 = losses.iter().map(|l| (l - mean) * (l - mean)).sum();
    (ss / (n - 1) as f64).sqrt()
}

/// `ĝ = (1/(N · max(σ, std_floor))) Σᵢ gᵢ uᵢ` with `gᵢ = (L(θ+εuᵢ) − L(θ))/ε` and σ the sample
/// standard deviation of the `L(θ+εuᵢ)`; the logged loss is `L(θ)` and the reported σ the one
/// computed, before the floor.
pub(super) fn estimate<'s, P, O>(
    mut probe: Probe<'_, '_, P, O>,
    dirs: &[Direction],
    eps: f64,
    std_floor: f64,
) -> Result<Estimate<'s>, OptimError>
where
    P: ParamSet + ?Sized,
    O: Objective<P>,
{
    let diffs = spsa::differences(&mut probe, dirs, eps, true)?;
    let sigma = sample_std(&diffs.perturbed);
    let divisor = dirs.len() as f64 * sigma.max(std_floor);
    spsa::assemble(probe, dirs, diffs, divisor, Some(sigma))
}
