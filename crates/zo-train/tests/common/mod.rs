//! A synthetic task: logistic regression over a `Vec<f32>` (8 features and a bias) with 600
//! generated examples split 400 / 100 / 100.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use zo_optim::ObjectiveError;
use zo_sampler::SplitMix64;
use zo_train::{LossTerms, Metrics, Split, TaskModel};

pub const DIM: usize = 8;

#[derive(Clone, Debug)]
pub struct Data {
    pub x: Vec<[f32; DIM]>,
    pub y: Vec<usize>,
}

fn uniform(g: &mut SplitMix64) -> f32 {
    ((g.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn generate(n: usize, g: &mut SplitMix64) -> Data {
    let w = [1.5f32, -2.0, 1.0, 0.5, -1.0, 2.0, -0.5, 1.0];
    let mut x = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let mut row = [0.0f32; DIM];
        for v in &mut row {
            *v = uniform(g);
        }
        let logit: f32 = row.iter().zip(&w).map(|(a, b)| a * b).sum::<f32>() + 0.3;
        y.push(usize::from(logit + 0.3 * uniform(g) > 0.0));
        x.push(row);
    }
    Data { x, y }
}

/// The logistic-regression task model. `nan_from_call`: train losses from this call on (0-based)
/// are NaN; `calls` counts train-loss calls (shared, so tests can read it).
#[derive(Clone, Debug)]
pub struct LogReg {
    pub train: Data,
    pub validation: Data,
    pub test: Data,
    pub calls: Arc<AtomicU64>,
    pub nan_from_call: Option<u64>,
}

impl LogReg {
    pub fn new(seed: u64) -> Self {
        let mut g = SplitMix64::new(seed);
        Self {
            train: generate(400, &mut g),
            validation: generate(100, &mut g),
            test: generate(100, &mut g),
            calls: Arc::new(AtomicU64::new(0)),
            nan_from_call: None,
        }
    }

    fn logit(params: &[f32], x: &[f32; DIM]) -> f64 {
        let mut z = f64::from(params[DIM]);
        for (w, v) in params.iter().zip(x) {
            z += f64::from(*w) * f64::from(*v);
        }
        z
    }

    fn example_loss(params: &[f32], x: &[f32; DIM], y: usize) -> f64 {
        let z = Self::logit(params, x);
        let s = if y == 1 { -z } else { z };
        // log(1 + e^s), stable
        if s > 0.0 {
            s + (-s).exp().ln_1p()
        } else {
            s.exp().ln_1p()
        }
    }

    pub fn mean_loss(params: &[f32], data: &Data) -> f64 {
        data.x
            .iter()
            .zip(&data.y)
            .map(|(x, &y)| Self::example_loss(params, x, y))
            .sum::<f64>()
            / data.x.len() as f64
    }

    pub fn split(&self, split: Split) -> &Data {
        match split {
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        }
    }
}

impl TaskModel<Vec<f32>> for LogReg {
    fn num_train(&self) -> usize {
        self.train.x.len()
    }

    fn train_loss(&mut self, params: &Vec<f32>, batch: &[usize]) -> Result<f64, ObjectiveError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.nan_from_call.is_some_and(|k| call >= k) {
            return Ok(f64::NAN);
        }
        Ok(batch
            .iter()
            .map(|&i| Self::example_loss(params, &self.train.x[i], self.train.y[i]))
            .sum::<f64>()
            / batch.len() as f64)
    }

    fn train_terms(
        &mut self,
        params: &Vec<f32>,
        piece: &[usize],
    ) -> Result<LossTerms, ObjectiveError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.nan_from_call.is_some_and(|k| call >= k) {
            return Ok(LossTerms {
                terms: vec![f64::NAN],
                count: piece.len() as u64,
            });
        }
        Ok(LossTerms {
            terms: piece
                .iter()
                .map(|&i| Self::example_loss(params, &self.train.x[i], self.train.y[i]))
                .collect(),
            count: piece.len() as u64,
        })
    }

    fn evaluate(&mut self, params: &Vec<f32>, split: Split) -> Result<Metrics, ObjectiveError> {
        let data = self.split(split);
        let predictions: Vec<usize> = data
            .x
            .iter()
            .map(|x| usize::from(Self::logit(params, x) > 0.0))
            .collect();
        Ok(Metrics {
            score: zo_data::accuracy(&predictions, &data.y)?,
            loss: Some(Self::mean_loss(params, data)),
            // One forward per batch of 32 examples.
            forwards: data.x.len().div_ceil(32) as u64,
            extra: Default::default(),
        })
    }
}

/// A fresh, empty folder under the system temporary folder.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zo-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The names of the files in `dir`, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn bits(p: &[f32]) -> Vec<u32> {
    p.iter().map(|v| v.to_bits()).collect()
}
