//! The benchmark suite of the repository: every optimizer at equal forward budgets on real
//! weights, memory and time per step, BSZO's subspace dimension k, HiZOO's curvature smoothing α
//! and the sampler's throughput, written as `RESULTS.md`, `results.json` and plots.
//!
//! - [`plan`]: what runs — tasks, optimizers, models and probe scenarios as types;
//! - [`run`]: the fine-tuning runs, each a `RunConfig` run by the `bszo` command's own
//!   `finetune` in its own folder under the work folder; a folder whose `report.json` holds the
//!   same configuration is reused, so an interrupted suite continues where it stopped;
//! - [`probe`]: memory and time of each scenario, measured in a fresh process
//!   (`bszo-bench probe`);
//! - [`render`]: `RESULTS.md` and the plots.
//!
//! The sampler's throughput is `zo_sampler::throughput::measure`, the workloads of zo-sampler's
//! criterion benchmark timed once.

pub mod plan;
pub mod probe;
pub mod render;
pub mod run;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use zo_data::Task;
use zo_optim::Algorithm;
use zo_sampler::throughput::Summary;
use zo_train::write_atomic;

use crate::plan::{MASKED_MODEL, Plan, Scenario};
use crate::probe::Probe;
use crate::run::{Accuracy, Cell, RunResult, Runner, cell};

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
    /// The `bszo-bench` binary, for the memory and time probes.
    pub exe: PathBuf,
    /// The command line that regenerates the results (printed in each section).
    pub command: String,
}

/// Everything the suite measured (`results.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    /// Accuracy cells: model → task → optimizer.
    pub accuracy: Accuracy,
    /// Memory and time probes.
    pub probes: Vec<Probe>,
    /// The k ablation: k → cell.
    pub ablation: BTreeMap<usize, Cell>,
    /// HiZOO: (ε, α/ε²) → run.
    pub hizoo: Vec<(f64, f64, RunResult)>,
    /// Sampler throughput.
    pub sampler: Summary,
}

impl Results {
    /// The accuracy cell of `algorithm` on `task` with `model`.
    ///
    /// # Errors
    /// When the results hold no such cell, naming what is missing.
    pub fn cell(&self, model: &str, task: Task, algorithm: Algorithm) -> Result<&Cell> {
        cell(&self.accuracy, model, task, algorithm)
    }

    /// The f32 probe of `scenario` on `model`, if measured.
    pub fn probe(&self, model: plan::ProbeModel, scenario: Scenario) -> Option<&Probe> {
        self.probe_in(model, zo_models::Precision::F32, scenario)
    }

    /// The probe of `scenario` on `model` with weights in `precision`, if measured.
    pub fn probe_in(
        &self,
        model: plan::ProbeModel,
        precision: zo_models::Precision,
        scenario: Scenario,
    ) -> Option<&Probe> {
        self.probes
            .iter()
            .find(|p| p.model == model && p.precision == precision && p.scenario == scenario)
    }
}

/// Mean and sample standard deviation (0 for a single value).
pub(crate) fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The median (NaN for no value).
pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => 0.5 * (xs[n / 2 - 1] + xs[n / 2]),
    }
}

/// Run the suite and write `RESULTS.md`, `results.json` and the plots into `opts.out`.
///
/// # Errors
/// When a run, a probe or a write fails.
pub fn suite(opts: &BenchOptions, log: &mut dyn FnMut(&str)) -> Result<Results> {
    let plan = &opts.plan;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let runner = Runner {
        plan,
        work: opts.work.clone(),
        data_dir: opts.data_dir.clone(),
    };
    let mut accuracy = Accuracy::new();
    let mut masked = BTreeMap::new();
    for &(task, budget) in &plan.tasks {
        log(&format!("accuracy: {MASKED_MODEL} / {}", task.name()));
        let cells = runner.accuracy(task, MASKED_MODEL, budget, &plan.grids, true, None)?;
        masked.insert(task.name().to_string(), cells);
    }
    accuracy.insert(MASKED_MODEL.to_string(), masked);
    if let Some(c) = &plan.causal {
        log(&format!("accuracy: {} / sst2", c.model));
        let cells = runner.accuracy(Task::Sst2, c.model, c.budget, &c.grids, false, c.test_size)?;
        accuracy.insert(
            c.model.to_string(),
            BTreeMap::from([(Task::Sst2.name().to_string(), cells)]),
        );
    }

    log("memory and time probes");
    let mut probes = Vec::new();
    let half_scenarios = [
        Scenario::Inference,
        Scenario::Optimizer(Algorithm::Mezo),
        Scenario::Optimizer(Algorithm::Bszo),
    ];
    for &model in &plan.probe_models {
        let data_dir = opts.data_dir.as_deref();
        for scenario in Scenario::all() {
            probes.push(probe::spawn(
                &opts.exe,
                model,
                zo_models::Precision::F32,
                scenario,
                plan.reps,
                data_dir,
            )?);
        }
        for &precision in &plan.half_probes {
            for scenario in half_scenarios {
                probes.push(probe::spawn(
                    &opts.exe, model, precision, scenario, plan.reps, data_dir,
                )?);
            }
        }
    }

    log("k ablation");
    let bszo_lr = cell(&accuracy, MASKED_MODEL, Task::Sst2, Algorithm::Bszo)?
        .best()?
        .lr;
    let ablation = runner.ablation(bszo_lr)?;

    log("HiZOO α sensitivity");
    let hizoo_lr = cell(&accuracy, MASKED_MODEL, Task::Sst2, Algorithm::Hizoo)?
        .best()?
        .lr;
    let hizoo = runner.hizoo(hizoo_lr)?;

    log("sampler throughput");
    let (normals, sweep) = plan.sampler_elems;
    let sampler = zo_sampler::throughput::measure(plan.reps, normals, sweep)?;

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
    let plots = render::plot_curves(opts, &results)?;
    let path = opts.out.join("RESULTS.md");
    let mut md = render::render(opts, &results, &plots)?;
    md.push_str(&render::kept_sections(&path));
    write_atomic(&path, md.as_bytes())?;
    Ok(results)
}
