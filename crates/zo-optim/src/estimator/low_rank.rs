//! LOZO: the two-point SPSA estimate along a low-rank direction `U Vᵀ` per matrix.

use zo_sampler::DirectionKey;

use super::Estimate;
use super::probe::Probe;
use crate::direction::{Direction, DirectionKind};
use crate::error::{ConfigError, OptimError, at_least_one, positive};
use crate::objective::Objective;
use crate::params::ParamSet;

/// Check LOZO's hyper-parameters.
pub(super) fn validate(eps: f64, rank: u32, interval: u64) -> Result<(), ConfigError> {
    positive("eps", eps)?;
    at_least_one("rank", u64::from(rank))?;
    at_least_one("interval", interval)
}

/// The step's low-rank direction: `U` keyed by `key`, `V` by the last step that is a multiple of
/// `interval` (so `V` is redrawn every `interval` steps).
pub(super) fn direction(key: DirectionKey, step: u64, rank: u32, interval: u64) -> Direction {
    let v_step = step - step % interval;
    Direction {
        key,
        kind: DirectionKind::LowRank { rank, v_step },
    }
}

/// The two-point estimate `ĝ = (L(θ+εUVᵀ) − L(θ−εUVᵀ))/2ε · UVᵀ`.
pub(super) fn estimate<'s, P, O>(
    probe: Probe<'_, '_, P, O>,
    dir: Direction,
    eps: f64,
) -> Result<Estimate<'s>, OptimError>
where
    P: ParamSet + ?Sized,
    O: Objective<P>,
{
    super::spsa::estimate(probe, &[dir], eps, false)
}
