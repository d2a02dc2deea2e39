//! Throughput of the direction streams and the fused sweep, each next to its baseline (feature
//! `throughput`): the workloads that the criterion benchmark (`benches/sampler.rs`) times at
//! several sizes, and [`measure`], which times them once with medians for a report.
//!
//! The baselines: normals from `rand_distr::StandardNormal` sampled one by one from a
//! `rand_pcg::Pcg64`, and a plain copy of a buffer of the sweep's size (both the copy and the
//! sweep read and write 8 bytes per `f32`).

use std::hint::black_box;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_pcg::Pcg64;

use crate::sweep::{self, SweepError, Term};
use crate::{DirectionKey, Distribution, Stream, TensorId};

/// The stream every workload draws from: tensor `w` of step 1 under seed 7.
pub fn stream(distribution: Distribution) -> Stream {
    DirectionKey::new(7, 1, 0).stream(TensorId::from_name("w"), distribution)
}

/// The baseline generator: `Pcg64` with `StandardNormal`, one normal at a time.
#[derive(Clone, Debug)]
pub struct Baseline(Pcg64);

impl Baseline {
    /// The generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Pcg64::seed_from_u64(seed))
    }

    /// Fill `out` with normals, one by one.
    pub fn fill(&mut self, out: &mut [f32]) {
        for o in out.iter_mut() {
            *o = self.0.sample(StandardNormal);
        }
        black_box(out);
    }
}

/// `stream`'s normals from index 0 into `out`.
pub fn fill(stream: &Stream, out: &mut [f32]) {
    stream.fill(black_box(0), out);
    black_box(out);
}

/// The sweep's baseline: copy `src` into `dst`.
pub fn memcpy(dst: &mut [f32], src: &[f32]) {
    dst.copy_from_slice(black_box(src));
    black_box(dst);
}

/// Medians of [`measure`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Summary {
    /// The instruction set the sampler dispatched to.
    pub isa: String,
    /// zo-sampler normals per second (millions).
    pub normals_m_per_s: f64,
    /// `rand_pcg::Pcg64` + `rand_distr::StandardNormal` per second (millions).
    pub baseline_m_per_s: f64,
    /// Fused sweep θ += s·z over the buffer, GB/s (read + write).
    pub sweep_gb_s: f64,
    /// memcpy of the same buffer, GB/s (read + write).
    pub memcpy_gb_s: f64,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => 0.5 * (xs[n / 2 - 1] + xs[n / 2]),
    }
}

fn seconds(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// Time `reps` fills of `normals` elements (zo-sampler, then the baseline) and `reps` sweeps
/// θ += s·z over `sweep` elements on the current rayon pool (then a copy of the same buffer);
/// medians, in the current process.
///
/// # Errors
/// None in practice: the sweep takes no scale vector.
pub fn measure(reps: usize, normals: usize, sweep: usize) -> Result<Summary, SweepError> {
    let z = stream(Distribution::Normal);
    let mut out = vec![0f32; normals];
    let mut baseline = Baseline::new(7);
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        ours.push(seconds(|| fill(&z, &mut out)));
        base.push(seconds(|| baseline.fill(&mut out)));
    }
    let mut params = vec![0.5f32; sweep];
    let mut copy = vec![0f32; sweep];
    let terms = [Term::new(1e-3, z)];
    let (mut sweeps, mut copies) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let t = Instant::now();
        sweep::apply(&mut params, 0, &terms, None)?;
        sweeps.push(t.elapsed().as_secs_f64());
        copies.push(seconds(|| memcpy(&mut copy, &params)));
    }
    let bytes = (sweep * 8) as f64;
    Ok(Summary {
        isa: crate::instruction_set().to_string(),
        normals_m_per_s: normals as f64 / median(ours) / 1e6,
        baseline_m_per_s: normals as f64 / median(base) / 1e6,
        sweep_gb_s: bytes / median(sweeps) / 1e9,
        memcpy_gb_s: bytes / median(copies) / 1e9,
    })
}
