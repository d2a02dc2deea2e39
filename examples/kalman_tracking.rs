//! Constant-velocity tracking of a noisy 2-D trajectory with the `kalman-ndarray` crate.
//!
//! A target moves in the plane with a randomly wandering velocity; a sensor reports its position
//! with noise, and drops some reports. The example runs the Kalman filter and the
//! Rauch–Tung–Striebel smoother over the reports and prints the position RMSE of the raw
//! reports, the filtered estimates and the smoothed estimates.
//!
//! ```sh
//! cargo run --release --example kalman_tracking
//! ```
//!
//! The noise comes from a small deterministic generator written below (splitmix64 and
//! Box–Muller), so every run prints the same numbers.

#![allow(clippy::print_stdout)]

use anyhow::{Result, ensure};
use kalman_ndarray::{
    Gaussian, LinearModel, Measurement, Transition, UpdateForm, filter, rts_smooth,
};
use ndarray::{Array1, Array2, array, s};

/// Time between reports (seconds).
const DT: f64 = 0.1;
/// Number of reports.
const STEPS: usize = 300;
/// Spectral density of the random acceleration (m²/s³).
const ACCEL_DENSITY: f64 = 0.5;
/// Standard deviation of a position report (m).
const SENSOR_SD: f64 = 1.5;
/// One report in this many is lost.
const DROP_EVERY: usize = 17;

/// splitmix64 with a Box–Muller transform: a tiny deterministic standard-normal generator.
struct Normal {
    state: u64,
    spare: Option<f64>,
}

impl Normal {
    fn new(seed: u64) -> Self {
        Self {
            state: seed,
            spare: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    fn sample(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let radius = (-2.0 * self.uniform().ln()).sqrt();
        let angle = 2.0 * std::f64::consts::PI * self.uniform();
        self.spare = Some(radius * angle.sin());
        radius * angle.cos()
    }
}

/// The nearly-constant-velocity model for the state `[x, y, vx, vy]`, observing `[x, y]`.
fn model() -> Result<LinearModel<f64>> {
    let mut f = Array2::eye(4);
    f[[0, 2]] = DT;
    f[[1, 3]] = DT;
    // Continuous white-noise acceleration, discretised: per axis
    // q·[[dt³/3, dt²/2], [dt²/2, dt]].
    let (a, b, c) = (DT.powi(3) / 3.0, DT.powi(2) / 2.0, DT);
    let q = array![
        [a, 0.0, b, 0.0],
        [0.0, a, 0.0, b],
        [b, 0.0, c, 0.0],
        [0.0, b, 0.0, c]
    ] * ACCEL_DENSITY;
    let h = array![[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]];
    let r = Array2::eye(2) * SENSOR_SD.powi(2);
    Ok(LinearModel::new(
        Transition::new(f, q)?,
        Measurement::new(h, r)?,
    )?)
}

/// Simulates the true states (from the same model) and the reports.
type Simulation = (Vec<Array1<f64>>, Vec<Option<Array1<f64>>>);

fn simulate(model: &LinearModel<f64>, rng: &mut Normal) -> Result<Simulation> {
    // Draw process noise through the Cholesky factor of Q.
    let q_chol = kalman_ndarray::linalg::Cholesky::new(model.transition().q().view())?;
    let mut state = array![0.0, 0.0, 3.0, 1.0];
    let mut truth = Vec::with_capacity(STEPS);
    let mut reports = Vec::with_capacity(STEPS);
    for t in 0..STEPS {
        let w = Array1::from_shape_fn(4, |_| rng.sample());
        state = model.transition().f().dot(&state) + q_chol.lower().dot(&w);
        let noise = Array1::from_shape_fn(2, |_| SENSOR_SD * rng.sample());
        let report = &state.slice(s![..2]) + &noise;
        reports.push((t % DROP_EVERY != DROP_EVERY - 1).then_some(report));
        truth.push(state.clone());
    }
    Ok((truth, reports))
}

/// Position RMSEs over the steps with a report.
#[derive(Debug)]
struct Rmse {
    raw: f64,
    filtered: f64,
    smoothed: f64,
    reports: usize,
}

fn position_rmse<'a>(
    truth: &[Array1<f64>],
    estimates: impl Iterator<Item = &'a Array1<f64>>,
    reported: &[bool],
) -> f64 {
    let (sum, count) = truth
        .iter()
        .zip(estimates)
        .zip(reported)
        .filter(|(_, seen)| **seen)
        .fold((0.0, 0usize), |(sum, count), ((x, e), _)| {
            let d = &x.slice(s![..2]) - &e.slice(s![..2]);
            (sum + d.dot(&d), count + 1)
        });
    (sum / count as f64).sqrt()
}

fn run() -> Result<Rmse> {
    let model = model()?;
    let mut rng = Normal::new(2024);
    let (truth, reports) = simulate(&model, &mut rng)?;

    // A vague prior around the first report.
    let first = reports[0].clone().unwrap_or_else(|| Array1::zeros(2));
    let mut mean = Array1::zeros(4);
    mean.slice_mut(s![..2]).assign(&first);
    let prior = Gaussian::from_diagonal(mean, array![10.0, 10.0, 25.0, 25.0])?;

    let out = filter(&prior, &model, &reports, UpdateForm::Joseph)?;
    let smoothed = rts_smooth(&model, &out)?;

    let reported: Vec<bool> = reports.iter().map(Option::is_some).collect();
    let raw: Vec<Array1<f64>> = reports
        .iter()
        .map(|r| r.clone().unwrap_or_else(|| Array1::zeros(2)))
        .collect();
    Ok(Rmse {
        raw: position_rmse(&truth, raw.iter(), &reported),
        filtered: position_rmse(&truth, out.filtered.iter().map(Gaussian::mean), &reported),
        smoothed: position_rmse(&truth, smoothed.iter().map(Gaussian::mean), &reported),
        reports: reported.iter().filter(|r| **r).count(),
    })
}

fn main() -> Result<()> {
    let rmse = run()?;
    println!(
        "constant-velocity tracker: {STEPS} steps of {DT} s, {} reports (sensor sd {SENSOR_SD} m)",
        rmse.reports
    );
    println!("position RMSE over the reported steps:");
    println!("  raw reports  {:.3} m", rmse.raw);
    println!("  filtered     {:.3} m", rmse.filtered);
    println!("  smoothed     {:.3} m", rmse.smoothed);
    ensure!(
        rmse.smoothed < rmse.filtered && rmse.filtered < rmse.raw,
        "expected smoothed < filtered < raw, got {rmse:?}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn smoothed_beats_filtered_beats_raw() {
        let rmse = super::run().unwrap();
        assert!(rmse.smoothed < rmse.filtered, "{rmse:?}");
        assert!(rmse.filtered < rmse.raw, "{rmse:?}");
    }
}
