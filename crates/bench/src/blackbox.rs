//! The black-box section: every optimizer on synthetic and real objectives through
//! `zo-optim`'s closure API (no model), at equal forward budgets, over many seeds, with a paired
//! rank test of BSZO against each peer.
//!
//! Each problem's parameters are an `rows × cols` matrix (`ndarray::Array2<f32>`), so that LOZO's
//! low-rank directions have the structure they are designed for. Each optimizer's learning rate
//! is tuned per problem on tuning seeds disjoint from the evaluation seeds: a sweep over decades,
//! then the half decades around the best, scored by the median final objective. The evaluation
//! seeds then run at the picked rate; seed `s` fixes the start (where the problem draws one), the
//! observation noise and the minibatches, so results pair by seed across optimizers.
//!
//! A run whose objective becomes non-finite, or exceeds 10⁶ times its start, has diverged: its
//! final objective is +∞ (the worst rank), and it stops there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow, bail};
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use zo_data::{PoolSplit, SplitMix64, Task};
use zo_optim::{Algorithm, Objective, ObjectiveError, Optimizer, Schedule};
use zo_sampler::shuffle::derive_seed;
use zo_train::write_atomic;

use crate::stats::quantile;

/// Observation noise added to every evaluation of a synthetic objective.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Noise {
    /// Exact evaluations.
    None,
    /// Gaussian noise of standard deviation `level · ε‖∇f(x₀)‖` (the size of a finite
    /// difference's signal at the start).
    Gaussian {
        /// The standard deviation relative to `ε‖∇f(x₀)‖`.
        level: f64,
    },
    /// Student-t noise with `dof` degrees of freedom, scaled by `level · ε‖∇f(x₀)‖`: heavy tails.
    StudentT {
        /// Degrees of freedom ν (an integer from 1 on: the sum of ν squared normals).
        dof: u32,
        /// The scale relative to `ε‖∇f(x₀)‖`.
        level: f64,
    },
}

impl Noise {
    fn describe(&self) -> String {
        match *self {
            Self::None => "no noise".into(),
            Self::Gaussian { level } => format!("Gaussian noise, σ = {level}·ε‖∇f(x₀)‖"),
            Self::StudentT { dof, level } => {
                format!("Student-t noise (ν = {dof}), scale {level}·ε‖∇f(x₀)‖")
            }
        }
    }
}

/// What a problem minimises.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProblemKind {
    /// `f(x) = Σ λᵢ xᵢ² / Σ λᵢ` with `λᵢ = κ^{i/(d−1)}` (log-spaced, condition number κ), started
    /// at a Rademacher point of the seed (so `f(x₀) = 1`).
    Quadratic {
        /// The condition number κ.
        condition: f64,
        /// The observation noise.
        noise: Noise,
    },
    /// The chained Rosenbrock function `Σᵢ [100(xᵢ₊₁ − xᵢ²)² + (1 − xᵢ)²] / (d − 1)`, started at
    /// 0 (`f(x₀) = 1`, minimum 0 at 1).
    Rosenbrock {
        /// The observation noise.
        noise: Noise,
    },
    /// L2-regularised logistic regression on SST-2 (the repository's pool: its training
    /// sentences; accuracy on its development sentences): signed hashed bag of words and bigrams
    /// (`d − 1` buckets plus a bias), each sentence's features scaled to unit norm; the training
    /// objective is the mean logistic loss of a minibatch (drawn per step from the seed); the
    /// reported objective is the mean over the whole training set.
    Logistic {
        /// Sentences per minibatch.
        batch: usize,
        /// The L2 weight λ of `λ/2 ‖w‖²`.
        l2: f64,
    },
}

/// One problem of the section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProblemSpec {
    /// The problem's name (its table and plot).
    pub name: String,
    /// What it minimises.
    pub kind: ProblemKind,
    /// The parameter matrix's shape (rows, columns): `d = rows · cols`.
    pub shape: (usize, usize),
    /// The perturbation scale ε of every optimizer.
    pub eps: f64,
    /// Forward passes per run.
    pub budget: u64,
    /// The learning-rate sweep's decades for this problem, instead of the plan's (e.g. a narrower
    /// range where each run is expensive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decades: Option<(i32, i32)>,
}

impl ProblemSpec {
    /// The dimension `d`.
    pub fn dim(&self) -> usize {
        self.shape.0 * self.shape.1
    }

    /// One line describing the problem.
    pub fn describe(&self) -> String {
        let d = self.dim();
        match self.kind {
            ProblemKind::Quadratic { condition, noise } => format!(
                "ill-conditioned quadratic, d = {d}, condition number {condition:e}, {}",
                noise.describe()
            ),
            ProblemKind::Rosenbrock { noise } => {
                format!("chained Rosenbrock, d = {d}, {}", noise.describe())
            }
            ProblemKind::Logistic { batch, l2 } => format!(
                "logistic regression on SST-2 (hashed bag of words and bigrams), d = {d}, minibatch {batch}, L2 {l2:e}"
            ),
        }
    }
}

/// How the section runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlackBoxPlan {
    /// The problems.
    pub problems: Vec<ProblemSpec>,
    /// The optimizers (BSZO is compared against each of the others).
    pub optimizers: Vec<Algorithm>,
    /// Evaluation seeds `0..seeds`.
    pub seeds: u64,
    /// Seeds of the learning-rate sweep (disjoint from the evaluation seeds).
    pub tuning_seeds: Vec<u64>,
    /// The sweep's decades: learning rates `10^lo ..= 10^hi`, then the half decades around the
    /// best.
    pub decades: (i32, i32),
    /// Points of each convergence curve.
    pub points: usize,
}

/// One run: its final objective and its curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The seed.
    pub seed: u64,
    /// The objective (noise-free; for logistic regression the full training loss) at the end;
    /// +∞ when the run diverged (written as `null`: JSON has no infinity).
    #[serde(with = "infinite_as_null")]
    pub last: f64,
    /// (forward passes, objective) along the run, from the start.
    pub curve: Vec<(u64, f64)>,
    /// Development accuracy at the end (logistic regression only).
    pub accuracy: Option<f64>,
}

impl Trace {
    /// Whether the run diverged.
    pub fn diverged(&self) -> bool {
        !self.last.is_finite()
    }
}

/// One learning rate of a sweep, written as the pair `[lr, median]` (`null` for +∞).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SweepPoint {
    /// The learning rate.
    pub lr: f64,
    /// The median final objective over the tuning seeds (+∞ when most diverged).
    pub median: f64,
}

impl Serialize for SweepPoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.lr, self.median.is_finite().then_some(self.median)).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SweepPoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (lr, median) = <(f64, Option<f64>)>::deserialize(d)?;
        Ok(Self {
            lr,
            median: median.unwrap_or(f64::INFINITY),
        })
    }
}

/// Serde for an `f64` that may be infinite: non-finite values are written as `null`, and `null`
/// is read back as +∞ (a diverged run's objective).
mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        if x.is_finite() {
            s.serialize_f64(*x)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

/// One optimizer on one problem.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    /// What the runs were made with (a cell is reused only when this matches).
    pub key: String,
    /// Forward passes per step.
    pub per_step: usize,
    /// Steps per run (`budget / per_step`).
    pub steps: u64,
    /// The sweep: each learning rate tried and the median final objective over the tuning seeds.
    pub sweep: Vec<SweepPoint>,
    /// The picked learning rate.
    pub lr: f64,
    /// Whether the picked rate is at an end of the sweep (the best rate may lie beyond).
    pub at_edge: bool,
    /// The evaluation runs, by seed.
    pub runs: Vec<Trace>,
}

impl Cell {
    /// The final objectives, by seed.
    pub fn finals(&self) -> Vec<f64> {
        self.runs.iter().map(|t| t.last).collect()
    }

    /// Median, first and third quartiles of the final objectives.
    pub fn summary(&self) -> (f64, f64, f64) {
        let f = self.finals();
        (quantile(&f, 0.5), quantile(&f, 0.25), quantile(&f, 0.75))
    }

    /// Runs that diverged.
    pub fn diverged(&self) -> usize {
        self.runs.iter().filter(|t| t.diverged()).count()
    }
}

/// One problem's results.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProblemResult {
    /// The problem.
    pub spec: ProblemSpec,
    /// Optimizer name → cell.
    pub cells: BTreeMap<String, Cell>,
}

/// The section's results.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlackBox {
    /// The plan it ran.
    pub plan: BlackBoxPlan,
    /// Per problem, in the plan's order.
    pub problems: Vec<ProblemResult>,
}

/// Hashed sparse features of the SST-2 sentences.
#[derive(Debug)]
struct Features {
    /// Per sentence: (bucket, value) pairs, the bias last.
    rows: Vec<Vec<(u32, f32)>>,
    /// Labels ±1.
    labels: Vec<f32>,
}

/// FNV-1a of `bytes` (64 bits).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Features {
    fn new(examples: &[zo_data::Example], buckets: usize) -> Self {
        let mut rows = Vec::with_capacity(examples.len());
        let mut labels = Vec::with_capacity(examples.len());
        let hashed = (buckets - 1) as u64;
        for ex in examples {
            let text = ex.text(0).to_lowercase();
            let words: Vec<&str> = text.split_whitespace().collect();
            let mut acc: BTreeMap<u32, f32> = BTreeMap::new();
            let mut add = |s: &str| {
                let h = fnv1a(s.as_bytes());
                let bucket = (h % hashed) as u32;
                let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
                *acc.entry(bucket).or_insert(0.0) += sign;
            };
            for w in &words {
                add(w);
            }
            for pair in words.windows(2) {
                add(&format!("{} {}", pair[0], pair[1]));
            }
            acc.insert(hashed as u32, 1.0);
            let norm = acc.values().map(|v| v * v).sum::<f32>().sqrt();
            rows.push(acc.into_iter().map(|(k, v)| (k, v / norm)).collect());
            labels.push(if ex.label == 1 { 1.0 } else { -1.0 });
        }
        Self { rows, labels }
    }

    /// Mean logistic loss over `idx` plus `l2/2 ‖w‖²`.
    fn loss(&self, w: &[f32], idx: impl Iterator<Item = usize>, l2: f64) -> f64 {
        let mut sum = 0.0;
        let mut n = 0usize;
        for i in idx {
            let margin = f64::from(self.labels[i]) * self.score(w, i);
            // log(1 + e^{−m}), stable on both sides.
            sum += if margin > 0.0 {
                (-margin).exp().ln_1p()
            } else {
                -margin + margin.exp().ln_1p()
            };
            n += 1;
        }
        let reg = 0.5 * l2 * w.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
        sum / n.max(1) as f64 + reg
    }

    fn score(&self, w: &[f32], i: usize) -> f64 {
        self.rows[i]
            .iter()
            .map(|&(k, v)| f64::from(w[k as usize]) * f64::from(v))
            .sum()
    }

    fn accuracy(&self, w: &[f32]) -> f64 {
        let right = (0..self.rows.len())
            .filter(|&i| self.score(w, i) * f64::from(self.labels[i]) > 0.0)
            .count();
        right as f64 / self.rows.len().max(1) as f64
    }
}

/// A problem ready to evaluate.
#[derive(Debug)]
enum Instance {
    Quadratic {
        weights: Vec<f64>,
        total: f64,
        noise: Noise,
        scale: f64,
    },
    Rosenbrock {
        noise: Noise,
        scale: f64,
    },
    Logistic {
        train: Features,
        dev: Features,
        batch: usize,
        l2: f64,
    },
}

fn rosenbrock(x: &[f32]) -> f64 {
    let n = x.len();
    let s: f64 = x
        .windows(2)
        .map(|w| {
            let (a, b) = (f64::from(w[0]), f64::from(w[1]));
            100.0 * (b - a * a).powi(2) + (1.0 - a).powi(2)
        })
        .sum();
    s / (n.max(2) - 1) as f64
}

fn rosenbrock_grad_norm_at_zero(n: usize) -> f64 {
    // ∂/∂xᵢ at 0: −2(1 − 0) for i < n − 1, 0 for the last; divided by n − 1.
    2.0 * ((n - 1) as f64).sqrt() / (n - 1) as f64
}

impl Instance {
    fn new(spec: &ProblemSpec, data_dir: &Path) -> Result<Self> {
        let d = spec.dim();
        if d < 2 {
            bail!("black-box problem {}: d = {d} is too small", spec.name);
        }
        Ok(match spec.kind {
            ProblemKind::Quadratic { condition, noise } => {
                let weights: Vec<f64> = (0..d)
                    .map(|i| condition.powf(i as f64 / (d - 1) as f64))
                    .collect();
                let total: f64 = weights.iter().sum();
                // ‖∇f‖ at a ±1 point: 2 √(Σ λᵢ²) / Σ λᵢ, the same for every sign pattern.
                let grad = 2.0 * weights.iter().map(|w| w * w).sum::<f64>().sqrt() / total;
                Self::Quadratic {
                    weights,
                    total,
                    noise,
                    scale: spec.eps * grad,
                }
            }
            ProblemKind::Rosenbrock { noise } => Self::Rosenbrock {
                noise,
                scale: spec.eps * rosenbrock_grad_norm_at_zero(d),
            },
            ProblemKind::Logistic { batch, l2 } => {
                let read = |split| {
                    zo_data::load_pool(data_dir, Task::Sst2, split).with_context(|| {
                        format!(
                            "black-box problem {}: reading SST-2 from {}",
                            spec.name,
                            data_dir.display()
                        )
                    })
                };
                let train = Features::new(&read(PoolSplit::Train)?, d);
                let dev = Features::new(&read(PoolSplit::Dev)?, d);
                if train.rows.is_empty() || dev.rows.is_empty() {
                    bail!("black-box problem {}: SST-2's pool is empty", spec.name);
                }
                Self::Logistic {
                    train,
                    dev,
                    batch: batch.max(1),
                    l2,
                }
            }
        })
    }

    /// The start of seed `seed`.
    fn start(&self, shape: (usize, usize), seed: u64) -> Array2<f32> {
        match self {
            Self::Quadratic { .. } => {
                let mut rng = SplitMix64::new(derive_seed(seed, 1));
                Array2::from_shape_fn(
                    shape,
                    |_| {
                        if rng.next_u64() >> 63 == 0 { 1.0 } else { -1.0 }
                    },
                )
            }
            Self::Rosenbrock { .. } | Self::Logistic { .. } => Array2::zeros(shape),
        }
    }

    /// The noise-free objective (logistic regression: over the whole training set).
    fn exact(&self, x: &[f32]) -> f64 {
        match self {
            Self::Quadratic { weights, total, .. } => {
                x.iter()
                    .zip(weights)
                    .map(|(&v, w)| w * f64::from(v).powi(2))
                    .sum::<f64>()
                    / total
            }
            Self::Rosenbrock { .. } => rosenbrock(x),
            Self::Logistic { train, l2, .. } => train.loss(x, 0..train.rows.len(), *l2),
        }
    }
}

/// The objective a run's optimizer sees: the exact value plus the noise of evaluation `count`,
/// or the logistic loss of the current minibatch.
struct Observed<'a> {
    instance: &'a Instance,
    noise: SplitMix64,
    batch: Vec<usize>,
}

/// A uniform draw in (0, 1).
fn uniform(rng: &mut SplitMix64) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut SplitMix64) -> f64 {
    let (u, v) = (uniform(rng), uniform(rng));
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn draw(noise: Noise, scale: f64, rng: &mut SplitMix64) -> f64 {
    match noise {
        Noise::None => 0.0,
        Noise::Gaussian { level } => level * scale * normal(rng),
        Noise::StudentT { dof, level } => {
            let z = normal(rng);
            let chi2: f64 = (0..dof.max(1)).map(|_| normal(rng).powi(2)).sum();
            level * scale * z / (chi2 / f64::from(dof.max(1))).sqrt()
        }
    }
}

impl Objective<Array2<f32>> for Observed<'_> {
    fn loss(&mut self, params: &Array2<f32>) -> Result<f64, ObjectiveError> {
        let x = params
            .as_slice()
            .ok_or_else(|| ObjectiveError::from("the parameters are not contiguous"))?;
        Ok(match self.instance {
            Instance::Quadratic { noise, scale, .. } | Instance::Rosenbrock { noise, scale } => {
                self.instance.exact(x) + draw(*noise, *scale, &mut self.noise)
            }
            Instance::Logistic { train, l2, .. } => train.loss(x, self.batch.iter().copied(), *l2),
        })
    }
}

/// One run of `algorithm` at `lr` on `instance` with `seed`, recording `points` curve points.
fn run_one(
    spec: &ProblemSpec,
    instance: &Instance,
    algorithm: Algorithm,
    lr: f64,
    seed: u64,
    points: usize,
) -> Result<Trace> {
    let optimizer = Optimizer::new(algorithm.config(spec.eps), Schedule::constant(lr))
        .map_err(|e| anyhow!("{algorithm} at lr {lr:e}: {e}"))?;
    let per_step = optimizer.forwards_per_step() as u64;
    let steps = spec.budget / per_step;
    let mut x = instance.start(spec.shape, seed);
    let mut state = optimizer.init(&x, seed);
    let mut obj = Observed {
        instance,
        noise: SplitMix64::new(derive_seed(seed, 2)),
        batch: Vec::new(),
    };
    let slice = |x: &Array2<f32>| x.as_slice().map(<[f32]>::to_vec).unwrap_or_default();
    let f0 = instance.exact(&slice(&x));
    let mut curve = vec![(0, f0)];
    let every = (steps / points.max(1) as u64).max(1);
    let mut batch_rng = SplitMix64::new(derive_seed(seed, 3));
    let mut last = f0;
    let mut diverged = false;
    for step in 0..steps {
        if let Instance::Logistic { train, batch, .. } = instance {
            obj.batch.clear();
            let n = train.rows.len() as u64;
            obj.batch
                .extend((0..*batch).map(|_| batch_rng.below(n) as usize));
        }
        if optimizer.step(&mut state, &mut x, &mut obj).is_err() {
            diverged = true;
            break;
        }
        if (step + 1) % every == 0 || step + 1 == steps {
            last = instance.exact(x.as_slice().unwrap_or(&[]));
            if !last.is_finite() || last > 1e6 * f0.max(f64::MIN_POSITIVE) {
                diverged = true;
                break;
            }
            curve.push(((step + 1) * per_step, last));
        }
    }
    if diverged {
        last = f64::INFINITY;
    }
    let accuracy = match instance {
        Instance::Logistic { dev, .. } if !diverged => {
            Some(dev.accuracy(x.as_slice().unwrap_or(&[])))
        }
        _ => None,
    };
    Ok(Trace {
        seed,
        last,
        curve,
        accuracy,
    })
}

/// Run `seeds` in parallel (one worker per core), in seed order.
fn run_seeds(
    spec: &ProblemSpec,
    instance: &Instance,
    algorithm: Algorithm,
    lr: f64,
    seeds: &[u64],
    points: usize,
) -> Result<Vec<Trace>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(seeds.len().max(1));
    let next = Mutex::new(0usize);
    let out: Mutex<Vec<Option<Result<Trace>>>> =
        Mutex::new((0..seeds.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(&seed) = seeds.get(i) else { break };
                    let r = run_one(spec, instance, algorithm, lr, seed, points);
                    out.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    out.into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow!("a black-box run did not finish"))))
        .collect()
}

/// The decades of `algorithm`'s learning-rate sweep on `spec`: the problem's own, else the plan's;
/// shifted by `round(log₁₀ ε)` for FZOO, whose normalised step moves each coordinate by about
/// `η/(ε√N)` (its rates sit a factor ε below the others').
pub fn sweep_decades(plan: &BlackBoxPlan, spec: &ProblemSpec, algorithm: Algorithm) -> (i32, i32) {
    let (lo, hi) = spec.decades.unwrap_or(plan.decades);
    match algorithm {
        Algorithm::Fzoo => {
            let shift = spec.eps.log10().round() as i32;
            (lo + shift, hi + shift)
        }
        _ => (lo, hi),
    }
}

/// The cache key of a cell: everything its runs depend on.
fn cell_key(plan: &BlackBoxPlan, spec: &ProblemSpec, algorithm: Algorithm) -> Result<String> {
    // Bump when a run's arithmetic changes, so that old cells are rerun.
    const VERSION: u32 = 1;
    Ok(serde_json::to_string(&(
        VERSION,
        spec,
        algorithm.config(spec.eps),
        plan.seeds,
        &plan.tuning_seeds,
        sweep_decades(plan, spec, algorithm),
        plan.points,
    ))?)
}

/// Tune and run `algorithm` on `spec` (or reuse the cell in `path` when its key matches).
fn cell(
    plan: &BlackBoxPlan,
    spec: &ProblemSpec,
    instance: &Instance,
    algorithm: Algorithm,
    path: &Path,
) -> Result<Cell> {
    let key = cell_key(plan, spec, algorithm)?;
    if let Some(c) = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Cell>(&b).ok())
        .filter(|c| c.key == key)
    {
        return Ok(c);
    }
    let score = |lr: f64| -> Result<f64> {
        let runs = run_seeds(spec, instance, algorithm, lr, &plan.tuning_seeds, 1)?;
        Ok(quantile(
            &runs.iter().map(|t| t.last).collect::<Vec<_>>(),
            0.5,
        ))
    };
    let (lo, hi) = sweep_decades(plan, spec, algorithm);
    if lo > hi {
        bail!("the black-box plan's decades are empty ({lo} > {hi})");
    }
    let mut sweep = Vec::new();
    for e in lo..=hi {
        let lr = 10f64.powi(e);
        sweep.push(SweepPoint {
            lr,
            median: score(lr)?,
        });
    }
    let best = |sweep: &[SweepPoint]| {
        sweep
            .iter()
            .min_by(|a, b| a.median.total_cmp(&b.median))
            .map(|p| p.lr)
            .ok_or_else(|| anyhow!("empty learning-rate sweep"))
    };
    let decade = best(&sweep)?;
    for f in [10f64.powf(-0.5), 10f64.powf(0.5)] {
        let lr = decade * f;
        sweep.push(SweepPoint {
            lr,
            median: score(lr)?,
        });
    }
    sweep.sort_by(|a, b| a.lr.total_cmp(&b.lr));
    let lr = best(&sweep)?;
    let at_edge =
        sweep.first().is_some_and(|s| s.lr == lr) || sweep.last().is_some_and(|s| s.lr == lr);
    let seeds: Vec<u64> = (0..plan.seeds).collect();
    let runs = run_seeds(spec, instance, algorithm, lr, &seeds, plan.points)?;
    let per_step = algorithm.config(spec.eps).forwards_per_step();
    let c = Cell {
        key,
        per_step,
        steps: spec.budget / per_step as u64,
        sweep,
        lr,
        at_edge,
        runs,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_atomic(path, &serde_json::to_vec(&c)?)?;
    Ok(c)
}

/// Run the section: every problem, every optimizer; cells are cached under `work/blackbox`.
///
/// # Errors
/// When the data cannot be read, a configuration is invalid or a cell cannot be written.
pub fn run(
    plan: &BlackBoxPlan,
    work: &Path,
    data_dir: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<BlackBox> {
    let mut problems = Vec::new();
    for spec in &plan.problems {
        let instance = Instance::new(spec, data_dir)?;
        let mut cells = BTreeMap::new();
        for &algorithm in &plan.optimizers {
            log(&format!("black box: {} / {algorithm}", spec.name));
            let path: PathBuf = work
                .join("blackbox")
                .join(&spec.name)
                .join(format!("{}.json", algorithm.name()));
            cells.insert(
                algorithm.name().to_string(),
                cell(plan, spec, &instance, algorithm, &path)?,
            );
        }
        problems.push(ProblemResult {
            spec: spec.clone(),
            cells,
        });
    }
    Ok(BlackBox {
        plan: plan.clone(),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quad(noise: Noise) -> ProblemSpec {
        ProblemSpec {
            name: "q".into(),
            kind: ProblemKind::Quadratic {
                condition: 10.0,
                noise,
            },
            shape: (4, 5),
            eps: 1e-3,
            budget: 60,
            decades: None,
        }
    }

    #[test]
    fn the_quadratic_starts_at_one_and_mezo_decreases_it() {
        let spec = quad(Noise::None);
        let inst = Instance::new(&spec, Path::new("/nonexistent")).unwrap();
        let x = inst.start(spec.shape, 7);
        assert!((inst.exact(x.as_slice().unwrap()) - 1.0).abs() < 1e-12);
        let t = run_one(&spec, &inst, Algorithm::Mezo, 0.5, 7, 5).unwrap();
        assert!(t.last < 1.0, "{t:?}");
        assert_eq!(t.curve.first().map(|p| p.0), Some(0));
        assert_eq!(t.curve.last().map(|p| p.0), Some(60));
        // Deterministic per seed.
        assert_eq!(
            t,
            run_one(&spec, &inst, Algorithm::Mezo, 0.5, 7, 5).unwrap()
        );
    }

    #[test]
    fn a_huge_rate_diverges_to_infinity() {
        let spec = quad(Noise::Gaussian { level: 1.0 });
        let inst = Instance::new(&spec, Path::new("/nonexistent")).unwrap();
        let t = run_one(&spec, &inst, Algorithm::Mezo, 1e9, 0, 5).unwrap();
        assert!(t.diverged());
    }

    #[test]
    fn a_diverged_run_survives_json() {
        let t = Trace {
            seed: 3,
            last: f64::INFINITY,
            curve: vec![(0, 1.0)],
            accuracy: None,
        };
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains("null"), "{json}");
        let back: Trace = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        assert!(back.diverged());
        let p = SweepPoint {
            lr: 0.1,
            median: f64::INFINITY,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, "[0.1,null]");
        assert_eq!(serde_json::from_str::<SweepPoint>(&json).unwrap(), p);
    }

    #[test]
    fn noise_has_the_stated_scale() {
        let mut rng = SplitMix64::new(1);
        let n = 20_000;
        let xs: Vec<f64> = (0..n)
            .map(|_| draw(Noise::Gaussian { level: 2.0 }, 0.5, &mut rng))
            .collect();
        let var = xs.iter().map(|x| x * x).sum::<f64>() / n as f64;
        assert!((var.sqrt() - 1.0).abs() < 0.03, "{}", var.sqrt());
        // Student-t with ν = 3: variance ν/(ν − 2) = 3 times the squared scale.
        let xs: Vec<f64> = (0..n)
            .map(|_| draw(Noise::StudentT { dof: 3, level: 1.0 }, 1.0, &mut rng))
            .collect();
        let iqr = quantile(&xs, 0.75) - quantile(&xs, 0.25);
        // The t₃ quartiles are ±0.7649.
        assert!((iqr - 2.0 * 0.7649).abs() < 0.06, "{iqr}");
    }

    #[test]
    fn rosenbrock_is_normalised_and_minimal_at_one() {
        assert!((rosenbrock(&[0.0; 10]) - 1.0).abs() < 1e-12);
        assert_eq!(rosenbrock(&[1.0; 10]), 0.0);
        // The gradient norm at 0 used for the noise scale.
        let n = 10;
        let h = 1e-6f32;
        let mut g2 = 0.0;
        for i in 0..n {
            let mut x = vec![0.0f32; n];
            x[i] = h;
            let up = rosenbrock(&x);
            x[i] = -h;
            let down = rosenbrock(&x);
            g2 += ((up - down) / (2.0 * f64::from(h))).powi(2);
        }
        assert!((g2.sqrt() - rosenbrock_grad_norm_at_zero(n)).abs() < 1e-3);
    }

    #[test]
    fn hashed_features_have_unit_norm_and_a_bias() {
        let ex = [
            zo_data::Example::new(["a fine film"], 1),
            zo_data::Example::new(["dull"], 0),
        ];
        let f = Features::new(&ex, 64);
        for row in &f.rows {
            let norm: f32 = row.iter().map(|(_, v)| v * v).sum();
            assert!((norm - 1.0).abs() < 1e-6);
            assert!(row.iter().any(|&(k, _)| k == 63));
        }
        assert_eq!(f.labels, vec![1.0, -1.0]);
        let w = vec![0.0; 64];
        assert!((f.loss(&w, 0..2, 0.0) - std::f64::consts::LN_2).abs() < 1e-12);
    }
}
