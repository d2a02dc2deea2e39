//! SPSA (MeZO, n-SPSA): finite differences along random directions, averaged.

use zo_sampler::Distribution;

use super::Estimate;
use super::probe::Probe;
use crate::direction::{Direction, DirectionKind, Term};
use crate::error::{ConfigError, OptimError, at_least_one, positive};
use crate::objective::{Objective, Share};
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
    let diffs = differences(&mut probe, dirs, eps, one_sided)?;
    assemble(probe, dirs, diffs, dirs.len() as f64, None)
}

/// What the probes of one SPSA step saw.
pub(super) struct Differences {
    /// The finite differences `gⱼ`, one per direction.
    pub projected: Vec<f64>,
    /// The losses at the `+εzⱼ` points, one per direction.
    pub perturbed: Vec<f64>,
    /// The loss to log: `L(θ)` one-sided, the first `L(θ+εz₀)` two-point.
    pub loss: f64,
}

/// Evaluate the probe points of every direction and form the finite differences `gⱼ`: one-sided
/// `(L(θ+εzⱼ) − L(θ))/ε` after one forward at `θ`, or two-point `(L(θ+εzⱼ) − L(θ−εzⱼ))/2ε`.
pub(super) fn differences<P, O>(
    probe: &mut Probe<'_, '_, P, O>,
    dirs: &[Direction],
    eps: f64,
    one_sided: bool,
) -> Result<Differences, OptimError>
where
    P: ParamSet + ?Sized,
    O: Objective<P>,
{
    let e = eps as f32;
    if let Some(share) = probe.share() {
        return shared_differences(probe, share, dirs, eps, one_sided);
    }
    let mut projected = Vec::with_capacity(dirs.len());
    let mut perturbed = Vec::with_capacity(dirs.len());
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
        perturbed.push(lp);
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
    Ok(Differences {
        projected,
        perturbed,
        loss,
    })
}

/// [`differences`] with the points split between the callers of `share`: every point is
/// independent (`θ` when one-sided, then `+εzⱼ` and, two-point, `−εzⱼ` for each direction), so
/// they are evaluated as one set and the differences formed from the gathered losses with the
/// same arithmetic, in the same order.
fn shared_differences<P, O>(
    probe: &mut Probe<'_, '_, P, O>,
    share: Share,
    dirs: &[Direction],
    eps: f64,
    one_sided: bool,
) -> Result<Differences, OptimError>
where
    P: ParamSet + ?Sized,
    O: Objective<P>,
{
    let e = eps as f32;
    let mut points = Vec::with_capacity(2 * dirs.len() + 1);
    if one_sided {
        points.push(Vec::new());
    }
    for dir in dirs {
        points.push(vec![Term::new(e, *dir)]);
        if !one_sided {
            points.push(vec![Term::new(-e, *dir)]);
        }
    }
    let losses = probe.losses_at(share, &points)?;
    let mut projected = Vec::with_capacity(dirs.len());
    let mut perturbed = Vec::with_capacity(dirs.len());
    let loss;
    if one_sided {
        let f0 = losses[0];
        loss = f0;
        for &lp in &losses[1..] {
            perturbed.push(lp);
            projected.push((lp - f0) / eps);
        }
    } else {
        loss = losses[0];
        for pair in losses.chunks_exact(2) {
            perturbed.push(pair[0]);
            projected.push((pair[0] - pair[1]) / (2.0 * eps));
        }
    }
    Ok(Differences {
        projected,
        perturbed,
        loss,
    })
}

/// The estimate `Σⱼ (gⱼ / divisor) zⱼ` (SPSA's average: `divisor = n`), with the probe's remaining
/// displacement and the differences as the projected gradients; `loss_std` is reported as is.
pub(super) fn assemble<'s, P, O>(
    probe: Probe<'_, '_, P, O>,
    dirs: &[Direction],
    diffs: Differences,
    divisor: f64,
    loss_std: Option<f64>,
) -> Result<Estimate<'s>, OptimError>
where
    P: ParamSet + ?Sized,
    O: Objective<P>,
{
    let Differences {
        projected, loss, ..
    } = diffs;
    let terms = dirs
        .iter()
        .zip(&projected)
        .map(|(d, g)| Term::new((g / divisor) as f32, *d))
        .collect();
    Ok(Estimate {
        terms,
        displacement: probe.finish()?,
        preconditioner: None,
        loss,
        projected,
        kalman: None,
        loss_std,
    })
}
