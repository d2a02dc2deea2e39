//! Synthetic objectives shared by the integration tests (deterministic, seeded).

#![allow(dead_code, missing_docs)]

/// SplitMix64: a tiny deterministic generator for test data (not for directions).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// `½ Σ λᵢ (θᵢ − θ*ᵢ)²` with λ log-spaced over [1, cond].
#[derive(Clone)]
pub struct Quadratic {
    pub lambda: Vec<f64>,
    pub target: Vec<f64>,
}

impl Quadratic {
    pub fn new(n: usize, cond: f64, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let lambda = (0..n)
            .map(|i| cond.powf(i as f64 / (n.max(2) - 1) as f64))
            .collect();
        let target = (0..n).map(|_| rng.normal()).collect();
        Self { lambda, target }
    }

    pub fn loss(&self, theta: &[f32]) -> f64 {
        theta
            .iter()
            .zip(&self.lambda)
            .zip(&self.target)
            .map(|((t, l), s)| 0.5 * l * (f64::from(*t) - s).powi(2))
            .sum()
    }

    pub fn grad(&self, theta: &[f32]) -> Vec<f64> {
        theta
            .iter()
            .zip(&self.lambda)
            .zip(&self.target)
            .map(|((t, l), s)| l * (f64::from(*t) - s))
            .collect()
    }
}

/// The chained Rosenbrock function `Σ 100 (θᵢ₊₁ − θᵢ²)² + (1 − θᵢ)²`.
pub fn rosenbrock(theta: &[f32]) -> f64 {
    theta
        .windows(2)
        .map(|w| {
            let (a, b) = (f64::from(w[0]), f64::from(w[1]));
            100.0 * (b - a * a).powi(2) + (1.0 - a).powi(2)
        })
        .sum()
}

/// Linear regression with label noise: mean squared error over a fixed synthetic data set.
#[derive(Clone)]
pub struct LinearRegression {
    pub x: Vec<Vec<f64>>,
    pub y: Vec<f64>,
}

impl LinearRegression {
    pub fn new(samples: usize, dim: usize, noise: f64, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let w: Vec<f64> = (0..dim).map(|_| rng.normal()).collect();
        let x: Vec<Vec<f64>> = (0..samples)
            .map(|_| (0..dim).map(|_| rng.normal()).collect())
            .collect();
        let y = x
            .iter()
            .map(|xi| xi.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + noise * rng.normal())
            .collect();
        Self { x, y }
    }

    pub fn loss(&self, theta: &[f32]) -> f64 {
        let n = self.x.len() as f64;
        self.x
            .iter()
            .zip(&self.y)
            .map(|(xi, yi)| {
                let p: f64 = xi.iter().zip(theta).map(|(a, t)| a * f64::from(*t)).sum();
                (p - yi).powi(2)
            })
            .sum::<f64>()
            / n
    }
}

/// Logistic regression on two Gaussian classes: mean log-loss.
#[derive(Clone)]
pub struct LogisticRegression {
    pub x: Vec<Vec<f64>>,
    pub y: Vec<f64>,
}

impl LogisticRegression {
    pub fn new(samples: usize, dim: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let w: Vec<f64> = (0..dim).map(|_| rng.normal()).collect();
        let mut x = Vec::with_capacity(samples);
        let mut y = Vec::with_capacity(samples);
        for _ in 0..samples {
            let xi: Vec<f64> = (0..dim).map(|_| rng.normal()).collect();
            let logit: f64 = xi.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>();
            let p = 1.0 / (1.0 + (-2.0 * logit).exp());
            y.push(if rng.uniform() < p { 1.0 } else { 0.0 });
            x.push(xi);
        }
        Self { x, y }
    }

    pub fn loss(&self, theta: &[f32]) -> f64 {
        let n = self.x.len() as f64;
        self.x
            .iter()
            .zip(&self.y)
            .map(|(xi, yi)| {
                let s: f64 = xi.iter().zip(theta).map(|(a, t)| a * f64::from(*t)).sum();
                // log(1 + e^s) − y s, computed stably.
                let softplus = if s > 0.0 {
                    s + (-s).exp().ln_1p()
                } else {
                    s.exp().ln_1p()
                };
                softplus - yi * s
            })
            .sum::<f64>()
            / n
    }
}
