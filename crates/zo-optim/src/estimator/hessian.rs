//! HiZOO: the two-point estimate along `u/√H` with a diagonal curvature estimate `H`, whose
//! preconditioner `1/√H` the update rule applies to the estimate.

use std::sync::Arc;

use rayon::prelude::*;

use super::probe::Evaluator;
use super::{Estimate, Preconditioner};
use crate::direction::{Direction, TensorDirection, Term};
use crate::error::{ConfigError, OptimError, ParamError, positive, unit_interval};
use crate::objective::Objective;
use crate::params::{CHUNK, Chunk, ParamSet, Perturbation, ProbeMode, StateVec, for_each_chunk};

/// Check HiZOO's hyper-parameters.
pub(super) fn validate(eps: f64, alpha: f64) -> Result<(), ConfigError> {
    positive("eps", eps)?;
    unit_interval("alpha", alpha)
}

/// `θ += s · z / √H` over every tensor.
fn add_curved<P: ParamSet + ?Sized>(
    params: &mut P,
    h: &StateVec,
    dir: &Direction,
    s: f32,
) -> Result<(), ParamError> {
    let mut index = 0;
    params.visit_mut(&mut |info, data| {
        let hs = h.tensor(index, info)?;
        index += 1;
        let dirs = [TensorDirection::new(dir, info)];
        let kernel = |c: Chunk<'_>| {
            let Chunk {
                offset, params, z, ..
            } = c;
            let hc = &hs[offset..offset + params.len()];
            params.for_each(|i, p| p + s * (z[0][i] / hc[i].sqrt()));
        };
        for_each_chunk(data, &dirs, None, None, None, &kernel);
        Ok(())
    })
}

/// Three forwards `ℓ₀ = L(θ)`, `ℓ± = L(θ ± μ u/√H)`; the parameters are restored and `H` updated in
/// the same sweep. The estimate is `g u` with `g = (ℓ₊ − ℓ₋)/2μ`, preconditioned by the updated `H`.
pub(super) fn estimate<'s, P: ParamSet + ?Sized, O: Objective<P>>(
    params: &mut P,
    ev: &mut Evaluator<'_, O>,
    h: &'s mut StateVec,
    dir: Direction,
    eps: f64,
    alpha: f64,
) -> Result<Estimate<'s>, OptimError> {
    let mu = eps as f32;
    if params.probe_mode() == ProbeMode::View {
        return estimate_viewed(params, ev, h, dir, eps, alpha);
    }
    let l0 = ev.eval_here(params)?;
    add_curved(params, h, &dir, mu)?;
    let hr: &StateVec = h;
    let lp = ev.eval(params, &|p: &mut P| add_curved(p, hr, &dir, -mu))?;
    add_curved(params, h, &dir, -2.0 * mu)?;
    let hr: &StateVec = h;
    let lm = ev.eval(params, &|p: &mut P| add_curved(p, hr, &dir, mu))?;
    // Restore with the old H and update H in the same sweep:
    // Ĥ = |ℓ₊ + ℓ₋ − 2ℓ₀| / (2μ²) · H ⊙ u ⊙ u ;  H ← (1 − α) H + α Ĥ.
    let curv = curvature(l0, lp, lm, eps);
    let a = alpha as f32;
    let mut index = 0;
    params.visit_mut(&mut |info, data| {
        let hs = h.tensor_mut(index, info)?;
        index += 1;
        let dirs = [TensorDirection::new(&dir, info)];
        let kernel = |c: Chunk<'_>| {
            let Chunk { params, z, s1, .. } = c;
            let hc = s1.expect("curvature slice is passed");
            params.for_each(|i, p| {
                let u = z[0][i];
                let old = hc[i];
                let restored = p + mu * (u / old.sqrt());
                hc[i] = (1.0 - a) * old + a * (curv * old * u * u);
                restored
            });
        };
        for_each_chunk(data, &dirs, Some(hs), None, None, &kernel);
        Ok(())
    })?;
    Ok(finish(h, dir, l0, lp, lm, eps))
}

/// [`estimate`] through a view: the probes `θ ± μ u/√H` are shown to the readers, the stored
/// values never move, and `H` alone is updated afterwards.
fn estimate_viewed<'s, P: ParamSet + ?Sized, O: Objective<P>>(
    params: &mut P,
    ev: &mut Evaluator<'_, O>,
    h: &'s mut StateVec,
    dir: Direction,
    eps: f64,
    alpha: f64,
) -> Result<Estimate<'s>, OptimError> {
    let mu = eps as f32;
    // With a shared objective the three points θ, θ ± μ u/√H are independent: one set.
    let share = ev.share::<P>();
    let l0 = match share {
        Some(_) => f64::NAN,
        None => ev.eval_here(params)?,
    };
    // The view reads H while the probes run: lend it out, and take it back whatever happens.
    let shared = Arc::new(std::mem::take(h));
    let probes = (|| -> Result<(f64, f64, f64), OptimError> {
        let show = |p: &mut P, s: f32| {
            p.set_view(Some(Perturbation::with_curvature(
                vec![Term::new(s, dir)],
                Arc::clone(&shared),
            )))
        };
        if let Some(share) = share {
            let mut goto = |p: &mut P, i: usize| match i {
                0 => p.set_view(None),
                1 => show(p, mu),
                _ => show(p, -mu),
            };
            let losses = ev.eval_set(params, share, 3, &mut goto, &|p: &mut P| p.set_view(None))?;
            params.set_view(None)?;
            return Ok((losses[0], losses[1], losses[2]));
        }
        show(params, mu)?;
        let lp = ev.eval(params, &|p: &mut P| p.set_view(None))?;
        show(params, -mu)?;
        let lm = ev.eval(params, &|p: &mut P| p.set_view(None))?;
        params.set_view(None)?;
        Ok((l0, lp, lm))
    })();
    *h = Arc::try_unwrap(shared).unwrap_or_else(|still_shared| (*still_shared).clone());
    let (l0, lp, lm) = probes?;
    let curv = curvature(l0, lp, lm, eps);
    let a = alpha as f32;
    let infos = params.tensors();
    for (index, info) in infos.iter().enumerate() {
        let hs = h.tensor_mut(index, info)?;
        let d = TensorDirection::new(&dir, info);
        hs.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, hc)| {
            let mut u = vec![0.0f32; hc.len()];
            d.fill(ci * CHUNK, &mut u);
            for (hv, u) in hc.iter_mut().zip(&u) {
                let old = *hv;
                *hv = (1.0 - a) * old + a * (curv * old * u * u);
            }
        });
    }
    Ok(finish(h, dir, l0, lp, lm, eps))
}

/// `|ℓ₊ + ℓ₋ − 2ℓ₀| / (2μ²)`, the curvature along the probe direction.
fn curvature(l0: f64, lp: f64, lm: f64, eps: f64) -> f32 {
    ((lp + lm - 2.0 * l0).abs() / (2.0 * eps * eps)) as f32
}

/// The estimate `g u`, `g = (ℓ₊ − ℓ₋)/2μ`, preconditioned by the updated `H`.
fn finish(h: &StateVec, dir: Direction, l0: f64, lp: f64, lm: f64, eps: f64) -> Estimate<'_> {
    let g = (lp - lm) / (2.0 * eps);
    Estimate {
        terms: vec![Term::new(g as f32, dir)],
        displacement: Vec::new(),
        preconditioner: Some(Preconditioner::inverse_sqrt(h)),
        loss: l0,
        projected: vec![g],
        kalman: None,
        loss_std: None,
    }
}
