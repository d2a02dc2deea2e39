//! `bszo bench`: every optimizer at equal forward budgets on real weights, memory and time per
//! step, the k ablation, HiZOO's α sensitivity and the sampler's throughput, written as
//! `RESULTS.md` with plots.
//!
//! Runs go through the same [`finetune`] as the command, each in its own folder under the work
//! folder; a folder whose `report.json` holds the same configuration is reused, so an interrupted
//! suite continues where it stopped. Memory and time are measured in fresh processes
//! (`bszo bench-probe`), one per scenario.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use zo_data::{Protocol, Task};
use zo_optim::params::Visitor;
use zo_optim::{Algorithm, Estimator, Optimizer, ParamError, ParamSet, TensorInfo};
use zo_train::{Event, LinePlot, Series, Split, write_atomic};

use crate::config::{OptimizerSection, RunConfig};
use crate::finetune::{METRICS_FILE, Options, REPORT_FILE, Report, finetune, read_metrics};

/// The optimizers compared.
pub const OPTIMIZERS: [&str; 6] = ["mezo", "mezo_adam", "hizoo", "lozo", "bszo", "bszo_b"];

/// How big the suite is.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// `full` or `quick`.
    pub mode: &'static str,
    /// Masked-LM tasks (SPLADE-tiny) and the forward passes of training per run on each.
    pub tasks: Vec<(&'static str, u64)>,
    /// Forward passes of training per run of the SST-2 ablations (k, HiZOO's α).
    pub budget: u64,
    /// Validation evaluations per run.
    pub evaluations: u64,
    /// Seeds per configuration (the learning rate is picked on the first).
    pub seeds: Vec<u64>,
    /// Learning-rate grids (SPLADE-tiny).
    pub grids: BTreeMap<&'static str, Vec<f64>>,
    /// Sampled protocol sizes (train, validation), and a test cap for quick runs.
    pub sizes: (usize, usize, Option<usize>),
    /// The causal-LM row: model, budget, test cap and grids.
    pub causal: Option<CausalPlan>,
    /// BSZO subspace dimensions for the ablation.
    pub ks: Vec<usize>,
    /// HiZOO: α/ε² values, at ε = 1e-3 and 1e-4.
    pub hizoo_ratios: Vec<f64>,
    /// Models of the memory and time probes.
    pub probe_models: Vec<&'static str>,
    /// Repetitions of each timed measurement (medians are reported).
    pub reps: usize,
    /// Elements of the sampler measurements (normals, sweep).
    pub sampler_elems: (usize, usize),
}

/// The causal-LM part of the accuracy section.
#[derive(Clone, Debug, Serialize)]
pub struct CausalPlan {
    /// The model name.
    pub model: &'static str,
    /// Forward passes of training per run.
    pub budget: u64,
    /// Test examples (the first ones of the split), to fit the machine.
    pub test_size: Option<usize>,
    /// Learning-rate grids.
    pub grids: BTreeMap<&'static str, Vec<f64>>,
}

fn grids(values: &[(&'static str, &[f64])]) -> BTreeMap<&'static str, Vec<f64>> {
    values.iter().map(|(k, v)| (*k, v.to_vec())).collect()
}

impl Plan {
    /// The full suite (hours on two cores).
    pub fn full() -> Self {
        // BSZO's effective rate is η·γ·k with γ = σ_p²/(σ_p² + σ_e²) well below 1 once σ_e adapts,
        // so the SGD baselines need smaller η than BSZO: each grid covers its own range.
        let bszo: &[f64] = &[1e-4, 3e-4, 1e-3];
        let sgd: &[f64] = &[1e-5, 3e-5, 1e-4];
        Self {
            mode: "full",
            tasks: vec![("sst2", 1800), ("rte", 900), ("trec", 900)],
            budget: 1800,
            evaluations: 10,
            seeds: vec![0, 1, 2],
            grids: grids(&[
                ("mezo", sgd),
                ("mezo_adam", &[1e-5, 1e-4]),
                ("hizoo", sgd),
                ("lozo", sgd),
                ("bszo", bszo),
                ("bszo_b", bszo),
            ]),
            sizes: (1000, 500, None),
            causal: Some(CausalPlan {
                model: "stories260k",
                budget: 300,
                test_size: None,
                grids: grids(&[
                    ("mezo", &[1e-3, 3e-3, 1e-2]),
                    ("mezo_adam", &[1e-4, 1e-3]),
                    ("hizoo", &[1e-3, 3e-3, 1e-2]),
                    ("lozo", &[1e-3, 3e-3, 1e-2]),
                    ("bszo", &[3e-3, 1e-2]),
                    ("bszo_b", &[3e-3, 1e-2]),
                ]),
            }),
            ks: vec![1, 2, 4, 8],
            hizoo_ratios: vec![1e-4, 1e-2, 1.0],
            probe_models: vec!["splade-tiny", "bert-67m"],
            reps: 7,
            sampler_elems: (1 << 24, 64 << 20),
        }
    }

    /// Every section at a tiny budget (minutes): checks the harness, not the methods.
    pub fn quick() -> Self {
        let one: &[f64] = &[1e-4];
        Self {
            mode: "quick",
            tasks: vec![("sst2", 24), ("rte", 24), ("trec", 24)],
            budget: 24,
            evaluations: 2,
            seeds: vec![0, 1],
            grids: grids(&[
                ("mezo", &[1e-4, 3e-4]),
                ("mezo_adam", &[1e-5]),
                ("hizoo", one),
                ("lozo", one),
                ("bszo", &[1e-4, 3e-4]),
                ("bszo_b", one),
            ]),
            sizes: (64, 32, Some(32)),
            causal: Some(CausalPlan {
                model: "stories260k",
                budget: 24,
                test_size: Some(32),
                grids: grids(&[
                    ("mezo", &[1e-3]),
                    ("mezo_adam", &[1e-4]),
                    ("hizoo", &[1e-3]),
                    ("lozo", &[1e-3]),
                    ("bszo", &[1e-3]),
                    ("bszo_b", &[1e-3]),
                ]),
            }),
            ks: vec![1, 2],
            hizoo_ratios: vec![1e-2, 1.0],
            probe_models: vec!["splade-tiny"],
            reps: 2,
            sampler_elems: (1 << 16, 1 << 20),
        }
    }
}

/// Where to write and what to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The plan.
    pub plan: Plan,
    /// Where `RESULTS.md`, `results.json` and the plots go.
    pub out: PathBuf,
    /// Where the runs' folders go (reused when their configuration matches).
    pub work: PathBuf,
    /// The data folder (default: the usual resolution).
    pub data_dir: Option<PathBuf>,
    /// The `bszo` binary, for the memory and time probes.
    pub exe: PathBuf,
    /// The command line that regenerates the results (printed in each section).
    pub command: String,
}

/// One finished run, as the accuracy tables need it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResult {
    /// The learning rate.
    pub lr: f64,
    /// The seed.
    pub seed: u64,
    /// Forward passes per step.
    pub per_step: usize,
    /// Steps run.
    pub steps: u64,
    /// Best validation score.
    pub best_validation: f64,
    /// Test score on the best-validation weights.
    pub test: f64,
    /// Zero-shot test score.
    pub zero_shot: f64,
    /// Validation curve: (training forwards, score).
    pub curve: Vec<(f64, f64)>,
    /// Wall time in seconds.
    pub wall_time_s: f64,
}

fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

/// One benchmark run: the embedded default's model settings and loop with `model`, `task`,
/// `protocol`, `optimizer` and `seed`, `budget` forward passes spread over
/// `plan.evaluations` validation evaluations, no checkpoints, plots or exported weights.
#[allow(clippy::too_many_arguments)]
fn case(
    opts: &BenchOptions,
    model: &str,
    task: Task,
    protocol: Protocol,
    test_size: Option<usize>,
    optimizer: OptimizerSection,
    seed: u64,
    budget: u64,
) -> Result<RunConfig> {
    let mut c = RunConfig::embedded_default();
    c.model.name = model.into();
    c.task.name = task;
    c.task.protocol = protocol;
    c.task.test_size = test_size;
    c.task.data_dir.clone_from(&opts.data_dir);
    let per_step = optimizer.build()?.forwards_per_step() as u64;
    c.optimizer = optimizer;
    let steps = (budget / per_step).max(1);
    c.train.steps = steps;
    c.train.eval_every = (steps / opts.plan.evaluations).max(1);
    c.train.seed = seed;
    c.train.checkpoint_every = 0;
    c.output.plots = false;
    c.output.overwrite = true;
    c.output.export = false;
    Ok(c)
}

/// Run (or reuse) one configuration in `dir`.
fn run_case(dir: &Path, mut config: RunConfig) -> Result<RunResult> {
    config.output.dir = Some(dir.to_path_buf());
    let cached = std::fs::read(dir.join(REPORT_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<Report>(&b).ok())
        .filter(|r| r.config == config);
    let report = match cached {
        Some(r) => r,
        None => {
            finetune(Options::new(config.clone(), Some(dir.to_path_buf())))
                .with_context(|| format!("bench run {}", dir.display()))?
                .report
        }
    };
    let per_step = report.forwards.per_step;
    let curve = read_metrics(&dir.join(METRICS_FILE))?
        .into_iter()
        .filter_map(|e| match e {
            Event::Evaluation {
                step,
                split: Split::Validation,
                metrics,
                ..
            } => Some(((step * per_step as u64) as f64, metrics.score)),
            _ => None,
        })
        .collect();
    Ok(RunResult {
        lr: config.optimizer.schedule.lr(0),
        seed: config.train.seed,
        per_step,
        steps: report.steps,
        best_validation: report.best.map_or(f64::NAN, |b| b.score),
        test: report.test.as_ref().map_or(f64::NAN, |t| t.score),
        zero_shot: report.zero_shot.test.score,
        curve,
        wall_time_s: report.wall_time_s,
    })
}

/// The runs of one optimizer on one task: the grid on the first seed, then the other seeds at the
/// picked learning rate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    /// The grid runs (first seed).
    pub grid: Vec<RunResult>,
    /// The runs at the picked learning rate, one per seed.
    pub picked: Vec<RunResult>,
}

impl Cell {
    fn tests(&self) -> Vec<f64> {
        self.picked.iter().map(|r| r.test).collect()
    }

    fn validations(&self) -> Vec<f64> {
        self.picked.iter().map(|r| r.best_validation).collect()
    }
}

/// Grid search on the first seed and the other seeds at the best learning rate.
fn grid_and_seeds(
    opts: &BenchOptions,
    dir: &Path,
    grid: &[f64],
    base: &dyn Fn(f64, u64) -> Result<RunConfig>,
) -> Result<Cell> {
    let seeds = &opts.plan.seeds;
    let mut runs = Vec::new();
    for &lr in grid {
        let d = dir.join(format!("lr{lr:e}-seed{}", seeds[0]));
        runs.push(run_case(&d, base(lr, seeds[0])?)?);
    }
    let best = runs
        .iter()
        .max_by(|a, b| a.best_validation.total_cmp(&b.best_validation))
        .cloned()
        .ok_or_else(|| anyhow!("empty learning-rate grid"))?;
    let mut picked = vec![best.clone()];
    for &seed in &seeds[1..] {
        let d = dir.join(format!("lr{:e}-seed{seed}", best.lr));
        picked.push(run_case(&d, base(best.lr, seed)?)?);
    }
    Ok(Cell { grid: runs, picked })
}

/// The sampled protocol at the plan's sizes.
fn sampled_protocol(plan: &Plan, seed: u64) -> Protocol {
    Protocol::Sampled {
        seed,
        train: plan.sizes.0,
        validation: plan.sizes.1,
    }
}

/// The masked-LM (and causal-LM) accuracy runs of one task and every optimizer.
fn accuracy_task(
    opts: &BenchOptions,
    task: &str,
    model: &str,
    budget: u64,
    grids: &BTreeMap<&'static str, Vec<f64>>,
    sampled: bool,
    test_size: Option<usize>,
) -> Result<BTreeMap<String, Cell>> {
    let plan = &opts.plan;
    let task: Task = task.parse()?;
    let mut out = BTreeMap::new();
    for opt in OPTIMIZERS {
        let algorithm: Algorithm = opt.parse()?;
        let base = |lr: f64, seed: u64| {
            let protocol = if sampled {
                sampled_protocol(plan, seed)
            } else {
                Protocol::few_shot([42, 13, 21, 87, 100][seed as usize % 5])
            };
            let optimizer = OptimizerSection::named(algorithm, 1e-4, lr);
            let test_size = test_size.or(plan.sizes.2);
            case(
                opts, model, task, protocol, test_size, optimizer, seed, budget,
            )
        };
        let dir = opts
            .work
            .join("accuracy")
            .join(model)
            .join(task.name())
            .join(opt);
        let cell = grid_and_seeds(opts, &dir, &grids[opt], &base)?;
        out.insert(opt.to_string(), cell);
    }
    Ok(out)
}

/// A parameter set that times its sweeps.
struct Timed<'a, P: ?Sized> {
    inner: &'a mut P,
    sweep: Duration,
    sweeps: u64,
}

impl<P: ParamSet + ?Sized> ParamSet for Timed<'_, P> {
    fn tensors(&self) -> Vec<TensorInfo> {
        self.inner.tensors()
    }
    fn visit_mut(&mut self, f: &mut Visitor<'_>) -> std::result::Result<(), ParamError> {
        let t = Instant::now();
        let r = self.inner.visit_mut(f);
        self.sweep += t.elapsed();
        self.sweeps += 1;
        r
    }
}

/// One probe's measurements (a line of `bszo bench-probe`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Probe {
    /// `splade-tiny` or `bert-67m` (random weights).
    pub model: String,
    /// `inference` or an optimizer.
    pub scenario: String,
    /// Trainable parameters.
    pub params: usize,
    /// Peak RSS after loading (kB).
    pub load_kb: u64,
    /// Peak RSS of the scenario, counted from after loading (kB).
    pub peak_kb: u64,
    /// Forward passes per step (1 for inference).
    pub forwards_per_step: usize,
    /// Median time of one forward (ms).
    pub forward_ms: f64,
    /// Median time of one step (ms).
    pub step_ms: f64,
    /// Median time of the forwards of one step (ms).
    pub step_forward_ms: f64,
    /// Median time of the sweeps of one step (ms).
    pub sweep_ms: f64,
    /// Sweeps over the parameters per step.
    pub sweeps_per_step: u64,
    /// Median time to write a checkpoint of the optimizer state (sidecar included, synced) into a
    /// scratch folder (ms; 0 for inference).
    #[serde(default)]
    pub checkpoint_ms: f64,
    /// The checkpoint's size on disk (`checkpoint.json` and the sidecar, bytes).
    #[serde(default)]
    pub checkpoint_bytes: u64,
}

fn status_kb(field: &str) -> Result<u64> {
    crate::finetune::status_kb(field).ok_or_else(|| anyhow!("no {field} in /proc/self/status"))
}

/// Run one memory/time scenario in this process (the `bench-probe` subcommand).
pub fn probe(model: &str, scenario: &str, reps: usize, data_dir: Option<PathBuf>) -> Result<Probe> {
    use zo_models::{MaskedLm, MaskedLmClassifier, Precision, Tokenizer};
    let splade = crate::load::resolve("splade-tiny")?;
    let tokenizer = Tokenizer::from_folder(&splade)?;
    let (m, mut weights) = match model {
        "splade-tiny" => MaskedLm::from_folder(&splade, Precision::F32)?,
        "bert-67m" => {
            let mut cfg = zo_models::BertConfig::from_file(splade.join("config.json"))?;
            cfg.hidden_size = 768;
            cfg.num_hidden_layers = 6;
            cfg.num_attention_heads = 12;
            cfg.intermediate_size = 3072;
            MaskedLm::random(&cfg, Precision::F32, 1)?
        }
        other => bail!("unknown probe model `{other}` (splade-tiny, bert-67m)"),
    };
    let params = weights.num_params();
    let clf = MaskedLmClassifier::new(m, tokenizer, "<S> It was [MASK] .", &["terrible", "great"])?;
    let data = crate::load::data_dir(data_dir)?;
    let train =
        zo_data::load_splits(&data, zo_data::Task::Sst2, zo_data::Protocol::few_shot(13))?.train;
    let texts: Vec<&str> = train.iter().take(16).map(|e| e.texts[0].as_str()).collect();
    let labels: Vec<usize> = train.iter().take(16).map(|e| e.label).collect();
    let batch = clf.encode_batch(&texts)?;
    let load_kb = status_kb("VmHWM:")?;
    std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS")?;

    let mut forward_times = Vec::new();
    let mut result = Probe {
        model: model.into(),
        scenario: scenario.into(),
        params,
        load_kb,
        peak_kb: 0,
        forwards_per_step: 1,
        forward_ms: 0.0,
        step_ms: 0.0,
        step_forward_ms: 0.0,
        sweep_ms: 0.0,
        sweeps_per_step: 0,
        checkpoint_ms: 0.0,
        checkpoint_bytes: 0,
    };
    if scenario == "inference" {
        for _ in 0..12 {
            let t = Instant::now();
            std::hint::black_box(clf.loss(&batch, &labels)?);
            forward_times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        result.peak_kb = status_kb("VmHWM:")?;
        for _ in 0..reps {
            let t = Instant::now();
            std::hint::black_box(clf.loss(&batch, &labels)?);
            forward_times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        result.forward_ms = median(forward_times);
        result.step_ms = result.forward_ms;
        result.step_forward_ms = result.forward_ms;
        return Ok(result);
    }
    let algorithm: Algorithm = scenario.parse()?;
    let opt = Optimizer::named(algorithm, 1e-4, 1e-6)?;
    let per_step = opt.forwards_per_step();
    result.forwards_per_step = per_step;
    let mut state = opt.init(&weights, 7);
    // Memory: steps worth 12 forwards (the inference scenario's count).
    for _ in 0..(12 / per_step).max(1) {
        let mut objective = clf.objective(&batch, &labels);
        opt.step(&mut state, &mut weights, &mut objective)?;
    }
    result.peak_kb = status_kb("VmHWM:")?;
    // Time: each step split into its forwards, its sweeps and the rest.
    let (mut steps, mut fwds, mut sweeps) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let mut timed = Timed {
            inner: &mut weights,
            sweep: Duration::ZERO,
            sweeps: 0,
        };
        let mut fwd = Duration::ZERO;
        let mut objective = |_: &Timed<'_, zo_models::Weights>| {
            let t = Instant::now();
            let l = clf.loss(&batch, &labels).unwrap_or(f64::NAN);
            fwd += t.elapsed();
            l
        };
        let t = Instant::now();
        opt.step(&mut state, &mut timed, &mut objective)?;
        steps.push(t.elapsed().as_secs_f64() * 1e3);
        fwds.push(fwd.as_secs_f64() * 1e3);
        sweeps.push(timed.sweep.as_secs_f64() * 1e3);
        result.sweeps_per_step = timed.sweeps;
        forward_times.push(fwd.as_secs_f64() * 1e3 / per_step as f64);
    }
    result.step_ms = median(steps);
    result.step_forward_ms = median(fwds);
    result.sweep_ms = median(sweeps);
    result.forward_ms = median(forward_times);
    // Checkpoint writes, as the trainer does them (sidecar, then checkpoint.json; synced).
    let scratch = std::env::temp_dir().join(format!("bszo-probe-ck-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let ck = zo_train::Checkpoint {
        version: zo_train::checkpoint::FORMAT_VERSION,
        config: zo_train::TrainConfig::default(),
        state: zo_train::RunState {
            optimizer: state,
            looping: zo_train::LoopState::default(),
        },
        params_file: None,
        state_file: None,
        logs: Vec::new(),
    };
    let mut times = Vec::new();
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        ck.save(&scratch)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    result.checkpoint_ms = median(times);
    result.checkpoint_bytes = std::fs::read_dir(&scratch)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    std::fs::remove_dir_all(&scratch)?;
    Ok(result)
}

/// Run a probe in a fresh process.
fn spawn_probe(opts: &BenchOptions, model: &str, scenario: &str) -> Result<Probe> {
    let mut cmd = Command::new(&opts.exe);
    cmd.args([
        "bench-probe",
        "--model",
        model,
        "--scenario",
        scenario,
        "--reps",
        &opts.plan.reps.to_string(),
    ]);
    if let Some(d) = &opts.data_dir {
        cmd.arg("--data-dir").arg(d);
    }
    // A small mmap threshold returns freed activation buffers to the system, so that peaks
    // measure tensors, not the allocator's retention.
    cmd.env("MALLOC_MMAP_THRESHOLD_", "65536");
    let out = cmd
        .output()
        .with_context(|| format!("running {}", opts.exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("PROBE "))
        .ok_or_else(|| {
            anyhow!(
                "probe {model}/{scenario} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
    Ok(serde_json::from_str(line)?)
}

/// Sampler throughput: normals per second against a Pcg64 + Box–Muller-free baseline, and the
/// fused sweep's bandwidth against a memcpy of the same buffer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SamplerResult {
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

fn sampler(plan: &Plan) -> Result<SamplerResult> {
    use rand::{Rng, SeedableRng};
    use zo_sampler::sweep::{self, Term};
    use zo_sampler::{DirectionKey, Distribution, TensorId};
    let (n, big) = plan.sampler_elems;
    let stream = DirectionKey::new(7, 1, 0).stream(TensorId::from_name("w"), Distribution::Normal);
    let mut out = vec![0f32; n];
    let mut ours = Vec::new();
    let mut base = Vec::new();
    let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
    for _ in 0..plan.reps {
        let t = Instant::now();
        stream.fill(0, &mut out);
        std::hint::black_box(&mut out);
        ours.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for o in out.iter_mut() {
            *o = rng.sample(rand_distr::StandardNormal);
        }
        std::hint::black_box(&mut out);
        base.push(t.elapsed().as_secs_f64());
    }
    let mut params = vec![0.5f32; big];
    let mut copy = vec![0f32; big];
    let terms = [Term::new(1e-3, stream)];
    let (mut sweeps, mut copies) = (Vec::new(), Vec::new());
    for _ in 0..plan.reps {
        let t = Instant::now();
        sweep::apply(&mut params, 0, &terms, None)?;
        sweeps.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        copy.copy_from_slice(&params);
        std::hint::black_box(&mut copy);
        copies.push(t.elapsed().as_secs_f64());
    }
    let bytes = (big * 8) as f64;
    Ok(SamplerResult {
        isa: zo_sampler::instruction_set().to_string(),
        normals_m_per_s: n as f64 / median(ours) / 1e6,
        baseline_m_per_s: n as f64 / median(base) / 1e6,
        sweep_gb_s: bytes / median(sweeps) / 1e9,
        memcpy_gb_s: bytes / median(copies) / 1e9,
    })
}

/// Everything the suite measured (`results.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    /// Accuracy cells: model → task → optimizer.
    pub accuracy: BTreeMap<String, BTreeMap<String, BTreeMap<String, Cell>>>,
    /// Memory and time probes.
    pub probes: Vec<Probe>,
    /// The k ablation: k → cell.
    pub ablation: BTreeMap<usize, Cell>,
    /// HiZOO: (ε, α/ε²) → run.
    pub hizoo: Vec<(f64, f64, RunResult)>,
    /// Sampler throughput.
    pub sampler: SamplerResult,
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or("unknown".into(), |kb| format!("{:.0} GiB", kb / 1048576.0));
    format!("{cores} cores ({cpu}), {mem} memory")
}

fn commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Run the suite and write `RESULTS.md`, `results.json` and the plots into `opts.out`.
pub fn run(opts: &BenchOptions, log: &mut dyn FnMut(&str)) -> Result<Results> {
    let plan = &opts.plan;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let mut accuracy = BTreeMap::new();
    let mut masked = BTreeMap::new();
    for &(task, budget) in &plan.tasks {
        log(&format!("accuracy: splade-tiny / {task}"));
        let cells = accuracy_task(opts, task, "splade-tiny", budget, &plan.grids, true, None)?;
        masked.insert(task.to_string(), cells);
    }
    accuracy.insert("splade-tiny".to_string(), masked);
    if let Some(c) = &plan.causal {
        log(&format!("accuracy: {} / sst2", c.model));
        let cells = accuracy_task(
            opts,
            "sst2",
            c.model,
            c.budget,
            &c.grids,
            false,
            c.test_size,
        )?;
        accuracy.insert(
            c.model.to_string(),
            BTreeMap::from([("sst2".to_string(), cells)]),
        );
    }

    log("memory and time probes");
    let mut probes = Vec::new();
    for model in &plan.probe_models {
        for scenario in std::iter::once("inference").chain(OPTIMIZERS) {
            probes.push(spawn_probe(opts, model, scenario)?);
        }
    }

    log("k ablation");
    let bszo_lr = accuracy["splade-tiny"]["sst2"]["bszo"].picked[0].lr;
    let mut ablation = BTreeMap::new();
    for &k in &plan.ks {
        let base = |lr: f64, seed: u64| {
            let mut optimizer = OptimizerSection::named(Algorithm::Bszo, 1e-4, lr);
            if let Estimator::KalmanSubspace(ks) = &mut optimizer.estimator {
                ks.k = k;
                ks.m = k + 1;
            }
            let protocol = sampled_protocol(plan, seed);
            let budget = plan.budget;
            case(
                opts,
                "splade-tiny",
                Task::Sst2,
                protocol,
                plan.sizes.2,
                optimizer,
                seed,
                budget,
            )
        };
        let dir = opts.work.join("ablation").join(format!("k{k}"));
        ablation.insert(k, grid_and_seeds(opts, &dir, &[bszo_lr], &base)?);
    }

    log("HiZOO α sensitivity");
    let hizoo_lr = accuracy["splade-tiny"]["sst2"]["hizoo"].picked[0].lr;
    let mut hizoo = Vec::new();
    for eps in [1e-3, 1e-4] {
        for &ratio in &plan.hizoo_ratios {
            let mut optimizer = OptimizerSection::named(Algorithm::Hizoo, eps, hizoo_lr);
            if let Estimator::Hessian { alpha, .. } = &mut optimizer.estimator {
                *alpha = ratio * eps * eps;
            }
            let protocol = sampled_protocol(plan, 0);
            let a = case(
                opts,
                "splade-tiny",
                Task::Sst2,
                protocol,
                plan.sizes.2,
                optimizer,
                0,
                plan.budget,
            )?;
            let dir = opts
                .work
                .join("hizoo")
                .join(format!("eps{eps:e}-ratio{ratio:e}"));
            hizoo.push((eps, ratio, run_case(&dir, a)?));
        }
    }

    log("sampler throughput");
    let sampler = sampler(plan)?;

    let results = Results {
        accuracy,
        probes,
        ablation,
        hizoo,
        sampler,
    };
    write_atomic(
        &opts.out.join("results.json"),
        &serde_json::to_vec_pretty(&results)?,
    )?;
    let plots = plot_curves(opts, &results)?;
    let path = opts.out.join("RESULTS.md");
    let mut md = render(opts, &results, &plots);
    md.push_str(&kept_sections(&path));
    write_atomic(&path, md.as_bytes())?;
    Ok(results)
}

/// The line from which `RESULTS.md` holds sections measured by other commands (each says its
/// own command); the suite keeps them when it rewrites the file.
pub const KEPT_MARKER: &str =
    "<!-- Sections below are not measured by cargo xtask bench, which keeps them. -->";

/// The kept sections of an existing `RESULTS.md` (from [`KEPT_MARKER`] on), after a blank line;
/// empty when there are none.
pub fn kept_sections(path: &std::path::Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    match text.find(KEPT_MARKER) {
        Some(at) => format!("\n{}", &text[at..]),
        None => String::new(),
    }
}

/// Validation accuracy against forward passes, one series per optimizer (mean over seeds at the
/// picked learning rate), one figure per task.
fn plot_curves(opts: &BenchOptions, r: &Results) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for (model, tasks) in &r.accuracy {
        for (task, cells) in tasks {
            let mut plot = LinePlot::new(
                format!("{task} with {model}: validation accuracy at equal forward budgets"),
                "training forward passes",
                "validation accuracy",
            );
            for (opt, cell) in cells {
                let n = cell.picked.iter().map(|p| p.curve.len()).min().unwrap_or(0);
                let points = (0..n)
                    .map(|i| {
                        let x = cell.picked[0].curve[i].0;
                        let ys: Vec<f64> = cell.picked.iter().map(|p| p.curve[i].1).collect();
                        (x, mean_std(&ys).0)
                    })
                    .collect();
                plot = plot.with_series(Series::new(opt.clone(), points));
            }
            let stem = format!("bench-{model}-{task}");
            plot.write(&opts.out.join(&stem))?;
            names.push(stem);
        }
    }
    Ok(names)
}

/// Win, tie or loss of BSZO against a baseline: a difference of means larger than the larger of
/// the two standard deviations counts.
fn verdict(bszo: (f64, f64), other: (f64, f64)) -> &'static str {
    let margin = bszo.1.max(other.1);
    let d = bszo.0 - other.0;
    if d > margin {
        "win"
    } else if d < -margin {
        "loss"
    } else {
        "tie"
    }
}

fn render(opts: &BenchOptions, r: &Results, plots: &[String]) -> String {
    let plan = &opts.plan;
    let mut s = String::new();
    let header = format!(
        "Command: `{}` · machine: {} · date: {} · commit: `{}` · mode: {}",
        opts.command,
        machine(),
        today(),
        commit(),
        plan.mode
    );
    let _ = writeln!(s, "# Results\n");
    let _ = writeln!(
        s,
        "Every figure below was measured by `{}` ({} mode) and is rewritten by it; the raw numbers are in \
         `results.json`, the runs' folders under the work folder. Ratios are measured side by side in one run.\n",
        opts.command, plan.mode
    );
    let _ = writeln!(s, "{header}\n");

    // 1. Accuracy.
    let _ = writeln!(s, "## 1. Accuracy at equal forward-pass budgets\n");
    let _ = writeln!(
        s,
        "SPLADE-tiny (4.4M-parameter BERT masked LM, prompts and label words of the specification), sampled \
         protocol: {} training / {} validation examples drawn with the seed, the task's original test set{}; \
         training forward passes per run as given per task below (steps = budget / forwards per step; \
         the same budget for every optimizer of a task), ε = 1e-4, batch 16, validation {} times per run, test accuracy on the best-validation weights (rebuilt from the seed \
         log). The learning rate is picked on seed {}'s best validation accuracy from the grid shown; the \
         other seeds ({:?}) rerun the picked rate with their own data sample and directions. Mean ± \
         standard deviation over the {} seeds.\n",
        plan.sizes.0,
        plan.sizes.1,
        plan.sizes
            .2
            .map(|n| format!(" (first {n} examples)"))
            .unwrap_or_default(),
        plan.evaluations,
        plan.seeds[0],
        &plan.seeds[1..],
        plan.seeds.len()
    );
    if let Some(c) = &plan.causal {
        let _ = writeln!(
            s,
            "Causal LM: {} (the 260K-parameter llama2.c TinyStories model, `tok512.bin` tokenizer) on \
             SST-2, scoring the candidates \" terrible\" / \" great\" after \"<S> It was\"; LM-BFF \
             16-shot splits (data seeds 42, 13, 21 for seeds 0, 1, 2), {} training forwards per run, \
             test on {} sentences of the test set. A 135M model (SmolLM2) does not fit this suite's \
             budget on two cores.\n",
            c.model,
            c.budget,
            c.test_size
                .map_or("all".to_string(), |n| format!("the first {n}"))
        );
    }
    let mut verdicts: Vec<String> = Vec::new();
    for (model, tasks) in &r.accuracy {
        for (task, cells) in tasks {
            let zero = cells
                .values()
                .next()
                .and_then(|c| c.picked.first())
                .map_or(f64::NAN, |p| p.zero_shot);
            let budget = cells
                .values()
                .next()
                .and_then(|c| c.picked.first())
                .map_or(0, |p| p.steps * p.per_step as u64);
            let _ = writeln!(
                s,
                "### {task} — {model} ({budget} training forwards per run)\n"
            );
            let _ = writeln!(
                s,
                "| optimizer | forwards/step | steps | lr grid | picked lr | test accuracy % | best validation % | seconds/run (wall, indicative) |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
            let _ = writeln!(s, "| zero-shot | — | 0 | — | — | {} | — | — |", pct(zero));
            for (opt, cell) in cells {
                let (m, sd) = mean_std(&cell.tests());
                let (vm, _) = mean_std(&cell.validations());
                let p0 = &cell.picked[0];
                let grid: Vec<String> = cell.grid.iter().map(|g| format!("{:e}", g.lr)).collect();
                let secs = median(cell.picked.iter().map(|p| p.wall_time_s).collect());
                let _ = writeln!(
                    s,
                    "| {opt} | {} | {} | {} | {:e} | {} ± {} | {} | {:.0} |",
                    p0.per_step,
                    p0.steps,
                    grid.join(", "),
                    p0.lr,
                    pct(m),
                    pct(sd),
                    pct(vm),
                    secs
                );
            }
            let _ = writeln!(s);
            if let Some(b) = cells.get("bszo") {
                let bs = mean_std(&b.tests());
                let mut parts = Vec::new();
                for (opt, cell) in cells {
                    if opt == "bszo" {
                        continue;
                    }
                    let os = mean_std(&cell.tests());
                    parts.push(format!(
                        "{} vs {opt} ({:+.2} points)",
                        verdict(bs, os),
                        100.0 * (bs.0 - os.0)
                    ));
                }
                verdicts.push(format!("- {task} ({model}): BSZO {}", parts.join(", ")));
            }
        }
    }
    let _ = writeln!(
        s,
        "**Where BSZO wins, ties or loses** (a difference of means larger than the larger standard \
         deviation counts as a win or a loss, anything smaller as a tie):\n"
    );
    for v in &verdicts {
        let _ = writeln!(s, "{v}");
    }
    let _ = writeln!(s);
    for p in plots {
        let _ = writeln!(s, "![{p}]({p}.svg)\n");
    }

    // 2. Memory.
    let _ = writeln!(s, "## 2. Memory\n");
    let _ = writeln!(
        s,
        "Peak resident set size of a fresh process (`bszo bench-probe`, `MALLOC_MMAP_THRESHOLD_=65536`) \
         after loading the model, counted from the reset of the kernel's high-water mark: inference runs 12 \
         forwards of a 16-sentence SST-2 batch, each optimizer runs steps worth 12 forwards on the same batch \
         (its state allocated after the reset). `bert-67m` is a BERT with hidden 768, 6 layers and \
         SPLADE-tiny's vocabulary, random weights (so that weights dominate the binary's own footprint). \
         Paper (OPT-13B on an H200): BSZO 1.00–1.08× MeZO, HiZOO 1.73–1.96×, MeZO-Adam 2.16–2.74×.\n"
    );
    let _ = writeln!(
        s,
        "| model | scenario | parameters | peak RSS (MiB) | ratio to inference | ratio to MeZO |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for model in &plan.probe_models {
        let model = *model;
        let get = |sc: &str| {
            r.probes
                .iter()
                .find(|p| p.model == model && p.scenario == sc)
        };
        let inf = get("inference").map_or(f64::NAN, |p| p.peak_kb as f64);
        let mezo = get("mezo").map_or(f64::NAN, |p| p.peak_kb as f64);
        for p in r.probes.iter().filter(|p| p.model == model) {
            let _ = writeln!(
                s,
                "| {model} | {} | {} | {:.1} | {:.3} | {:.3} |",
                p.scenario,
                p.params,
                p.peak_kb as f64 / 1024.0,
                p.peak_kb as f64 / inf,
                p.peak_kb as f64 / mezo
            );
        }
    }
    let _ = writeln!(s);

    // 3. Time.
    let _ = writeln!(s, "## 3. Time per step\n");
    let _ = writeln!(
        s,
        "Median over {} steps of each optimizer on the same batch (same probes as above): the step's \
         wall time split into its forward passes, its perturbation sweeps (every pass over the \
         parameters) and the rest; the last column is step time / time of its forwards alone (target \
         ≤ 1.05 for BSZO). \"Rest\" is what the two timers leave (Kalman fusion, bookkeeping); timer \
         noise can make it slightly negative.\n",
        plan.reps
    );
    let _ = writeln!(
        s,
        "| model | optimizer | forwards/step | sweeps/step | step ms | forwards ms | sweeps ms | rest ms | step / forwards |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for p in r.probes.iter().filter(|p| p.scenario != "inference") {
        let rest = p.step_ms - p.step_forward_ms - p.sweep_ms;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.3} |",
            p.model,
            p.scenario,
            p.forwards_per_step,
            p.sweeps_per_step,
            p.step_ms,
            p.step_forward_ms,
            p.sweep_ms,
            rest,
            p.step_ms / p.step_forward_ms
        );
    }
    let _ = writeln!(s);

    // 4. Ablation.
    let _ = writeln!(s, "## 4. BSZO's subspace dimension k (m = k + 1)\n");
    let _ = writeln!(
        s,
        "SST-2, SPLADE-tiny, same protocol and {} training forwards per run as section 1 (a step costs \
         1 + k forwards, so larger k takes fewer steps), at the learning rate section 1 picked for BSZO \
         on SST-2 (the effective rate η·γ·k grows with k), {} seeds. Paper (OPT-1.3B, SST-2): \
         k = 1/2/4/8 → 91.74/92.43/93.58/93.23.\n",
        plan.budget,
        plan.seeds.len()
    );
    let _ = writeln!(
        s,
        "| k | m | steps | picked lr | test accuracy % | best validation % |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for (k, cell) in &r.ablation {
        let (m, sd) = mean_std(&cell.tests());
        let (vm, _) = mean_std(&cell.validations());
        let _ = writeln!(
            s,
            "| {k} | {} | {} | {:e} | {} ± {} | {} |",
            k + 1,
            cell.picked[0].steps,
            cell.picked[0].lr,
            pct(m),
            pct(sd),
            pct(vm)
        );
    }
    let _ = writeln!(s);

    // 5. HiZOO.
    let _ = writeln!(s, "## 5. HiZOO's curvature smoothing α\n");
    let _ = writeln!(
        s,
        "SST-2, SPLADE-tiny, seed {}, HiZOO at its picked learning rate from section 1, {} training forwards; \
         α set from α/ε² at each ε. If α/ε² is what matters, rows with the same α/ε² agree across ε.\n",
        plan.seeds[0], plan.budget
    );
    let _ = writeln!(s, "| ε | α/ε² | α | test accuracy % | best validation % |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for (eps, ratio, run) in &r.hizoo {
        let _ = writeln!(
            s,
            "| {eps:.0e} | {ratio:.0e} | {:.0e} | {} | {} |",
            ratio * eps * eps,
            pct(run.test),
            pct(run.best_validation)
        );
    }
    let _ = writeln!(s);

    // 6. Sampler.
    let sm = &r.sampler;
    let _ = writeln!(s, "## 6. Sampler throughput and sweep bandwidth\n");
    let _ = writeln!(
        s,
        "Medians of {} repetitions, measured in the same process ({} instruction set): {} normals filled \
         by zo-sampler vs `rand_pcg::Pcg64` + `rand_distr::StandardNormal` one by one; the fused sweep \
         θ += s·z over {} f32 (all threads) vs a memcpy of the same buffer (both read and write 8 bytes \
         per element). The criterion benchmarks (`cargo bench -p zo-sampler`) measure the same at more \
         sizes.\n",
        plan.reps, sm.isa, plan.sampler_elems.0, plan.sampler_elems.1
    );
    let _ = writeln!(s, "| measure | value | baseline | ratio |");
    let _ = writeln!(s, "|---|---|---|---|");
    let _ = writeln!(
        s,
        "| normals (M/s) | {:.0} | {:.0} (Pcg64) | {:.2}× |",
        sm.normals_m_per_s,
        sm.baseline_m_per_s,
        sm.normals_m_per_s / sm.baseline_m_per_s
    );
    let _ = writeln!(
        s,
        "| sweep (GB/s) | {:.1} | {:.1} (memcpy) | {:.0}% |",
        sm.sweep_gb_s,
        sm.memcpy_gb_s,
        100.0 * sm.sweep_gb_s / sm.memcpy_gb_s
    );
    s
}
