//! SPSA (MeZO, n-SPSA): finite differences along random directions, averaged.

use zo_sampler::Distribution;

use super::Estimate;
use super::probe::Probe;
use crate::direction::{Direction, DirectionKind, Term};
use crate::error::{ConfigError, OptimError, at_least_one, positive};
use crate::objective::Objective;
use crate::params::ParamSet;

/// Check SPSA's hyper-parameters.
pub(super) fn validate(eps: f64, samples: usize) -> Result<(), ConfigError> {
    positive("eps", eps)?;
    at_least_one("samples", samples as u64)
}

/// Forward passes per step: `1 + samples` one-sided, `2 · samples` two-point.
pub(super) fn forwards(samples: usize, one_sided: bool) -> usize {
    if one_sided { 1 + samples } else { 2 * samples }
}

/// The `samples` full directions of one step: direction `j` is keyed `(seed, step, j)`.
pub(super) fn directions(
    key: impl Fn(usize) -> zo_sampler::DirectionKey,
    samples: usize,
    distribution: Distribution,
) -> Vec<Direction> {
    (0..samples)
        .map(|j| Direction {
            key: key(j),
            kind: DirectionKind::Full(distribution),
        })
        .collect()
}

/// `ĝ = (1/n) Σⱼ gⱼ zⱼ` with `gⱼ = (L(θ+εzⱼ) − L(θ−εzⱼ))/2ε` (two-point; the logged loss is the
/// first `L(θ+εz₀)`) or `gⱼ = (L(θ+εzⱼ) − L(θ))/ε` (one-sided; the logged loss is `L(θ)`).
pub(super) fn estimate<'s, P, O>(
    mut probe: Probe<'_, '_, P, O>,
    dirs: &[Direction],
    eps: f64,
    one_sided: bool,
) -> Result<Estimate<'s>, OptimError>
where
    P: ParamSet + ?Sized,
    O: Objective<P>,
{
    let e = eps as f32;
    let n = dirs.len() as f64;
    let mut projected = Vec::with_capacity(dirs.len());
    let mut loss = f64::NAN;
    let f0 = if one_sided {
        let f0 = probe.loss()?;
        loss = f0;
        Some(f0)
    } else {
        None
    };
    for (j, dir) in dirs.iter().enumerate() {
        let lp = probe.loss_at(vec![Term::new(e, *dir)])?;
        let g = match f0 {
            Some(f0) => (lp - f0) / eps,
            None => {
                if j == 0 {
                    loss = lp;
                }
                probe.reflect()?;
                let lm = probe.loss()?;
                (lp - lm) / (2.0 * eps)
            }
        };
        projected.push(g);
    }
    let terms = dirs
        .iter()
        .zip(&projected)
        .map(|(d, g)| Term::new((g / n) as f32, *d))
        .collect();
    Ok(Estimate {
        terms,
        displacement: probe.finish()?,
        preconditioner: None,
        loss,
        projected,
        kalman: None,
    })
}
