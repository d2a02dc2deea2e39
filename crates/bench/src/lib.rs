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
//! - [`blackbox`]: every optimizer on synthetic and real objectives through the closure API (no
//!   model), over many seeds, with [`stats`]' paired rank test of BSZO against each peer;
//! - [`render`]: `RESULTS.md` and the plots.
//!
//! The suite is made of [`Section`]s. `bszo-bench run --section NAME` runs one (or several) and
//! merges them into the existing `results.json`, so that a long suite can be completed over
//! several invocations; each section records the command, machine, date and commit that measured
//! it.
//!
//! The sampler's throughput is `zo_sampler::throughput::measure`, the workloads of zo-sampler's
//! criterion benchmark timed once.

pub mod blackbox;
pub mod plan;
pub mod probe;
pub mod processes;
pub mod render;
pub mod run;
pub mod stats;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use zo_data::Task;
use zo_optim::Algorithm;
use zo_sampler::throughput::Summary;
use zo_train::write_atomic;

use crate::blackbox::BlackBox;
use crate::plan::{MASKED_MODEL, Plan, Scenario};
use crate::probe::Probe;
use crate::run::{Accuracy, Cell, RunResult, Runner, cell};

/// A part of the suite that runs, and is stored and rendered, on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// Every optimizer on the masked-LM tasks (SPLADE-tiny).
    Accuracy,
    /// MeZO, HiZOO, BSZO and FZOO fine-tuning a pretrained causal LM (SmolLM2-135M) on SST-2.
    Causal,
    /// MeZO and BSZO with weights stored in bf16 and f16 on SPLADE-tiny (needs the accuracy
    /// section's picked learning rates).
    Precision,
    /// Memory and time of each scenario (fresh processes).
    Probes,
    /// BSZO's subspace dimension k (needs the accuracy section's SST-2 cells).
    Ablation,
    /// HiZOO's curvature smoothing α (needs the accuracy section's SST-2 cells).
    Hizoo,
    /// The sampler's throughput.
    Sampler,
    /// The black-box problems.
    Blackbox,
    /// Row-sparse embedding probes against the paper's dense ones (needs the accuracy section's
    /// SST-2 cells).
    Sparse,
    /// Several processes as one run (`mpirun`): equality, traffic, speed, latency.
    Processes,
    /// LoRA and prefix tuning against full fine-tuning (needs the accuracy section's SST-2
    /// cells; the causal model's cells when the causal section has run).
    Peft,
}

impl Section {
    /// Every section, in the order the suite runs them.
    pub const ALL: [Section; 11] = [
        Self::Accuracy,
        Self::Causal,
        Self::Precision,
        Self::Probes,
        Self::Ablation,
        Self::Hizoo,
        Self::Sampler,
        Self::Blackbox,
        Self::Sparse,
        Self::Processes,
        Self::Peft,
    ];

    /// The section's name (`accuracy`, `causal`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Accuracy => "accuracy",
            Self::Causal => "causal",
            Self::Precision => "precision",
            Self::Probes => "probes",
            Self::Ablation => "ablation",
            Self::Hizoo => "hizoo",
            Self::Sampler => "sampler",
            Self::Blackbox => "blackbox",
            Self::Sparse => "sparse",
            Self::Processes => "processes",
            Self::Peft => "peft",
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Section {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|x| x.name()).collect();
                format!(
                    "unknown section `{s}` (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// Who measured a section: the command, machine, date, commit and plan mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The command line that regenerates it.
    pub command: String,
    /// Cores, CPU and memory.
    pub machine: String,
    /// The date (UTC).
    pub date: String,
    /// The commit.
    pub commit: String,
    /// `full` or `quick`.
    pub mode: String,
    /// What a reader must know about these numbers (e.g. a fix made after they were measured);
    /// dropped when the section is measured again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Where to write and what to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The plan.
    pub plan: Plan,
    /// The sections to run (every section when empty); the others keep what `results.json`
    /// in `out` holds for them.
    pub sections: Vec<Section>,
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

/// The method key of [`Results::peft`] holding full-parameter cells.
pub const FULL: &str = "full";

/// Everything the suite measured (`results.json`); a section not measured yet is empty.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Results {
    /// Accuracy cells: model → task → optimizer (the accuracy and causal sections).
    #[serde(default)]
    pub accuracy: Accuracy,
    /// Half-precision weights: model → optimizer → precision → runs (one per seed).
    #[serde(default)]
    pub precision: BTreeMap<String, BTreeMap<String, BTreeMap<String, Vec<RunResult>>>>,
    /// Memory and time probes.
    #[serde(default)]
    pub probes: Vec<Probe>,
    /// The k ablation: k → cell.
    #[serde(default)]
    pub ablation: BTreeMap<usize, Cell>,
    /// HiZOO: (ε, α/ε²) → run.
    #[serde(default)]
    pub hizoo: Vec<(f64, f64, RunResult)>,
    /// Sampler throughput.
    #[serde(default)]
    pub sampler: Option<Summary>,
    /// The black-box problems.
    #[serde(default)]
    pub blackbox: Option<BlackBox>,
    /// The default task in f32 and bf16: precision → run (the precision section).
    #[serde(default)]
    pub default_task: BTreeMap<String, RunResult>,
    /// Row-sparse embedding probes: optimizer → runs (one per seed) on the masked model's SST-2.
    #[serde(default)]
    pub sparse: BTreeMap<String, Vec<RunResult>>,
    /// The plan of the causal-LM section that measured the causal cells.
    #[serde(default)]
    pub causal: Option<plan::CausalPlan>,
    /// Several processes as one run.
    #[serde(default)]
    pub processes: Option<processes::ProcessesResult>,
    /// Parameter-efficient cells: model → method → optimizer. For the causal model the method
    /// [`FULL`] holds the causal section's full-parameter cells over the section's seeds (the
    /// masked model's full-parameter cells are section 1's).
    #[serde(default)]
    pub peft: BTreeMap<String, BTreeMap<String, BTreeMap<String, Cell>>>,
    /// The probes of the parameter-efficient section (SPLADE-tiny, f32; full, LoRA, prefix).
    #[serde(default)]
    pub peft_probes: Vec<Probe>,
    /// Who measured each section.
    #[serde(default)]
    pub measured: BTreeMap<Section, Provenance>,
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
        self.probes.iter().find(|p| {
            p.model == model
                && p.precision == precision
                && p.scenario == scenario
                && !p.row_sparse
                && p.peft.is_none()
        })
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

/// Run the suite's sections (`opts.sections`, or all) and write `RESULTS.md`, `results.json` and
/// the plots into `opts.out`. When only some sections run, the others keep what the existing
/// `results.json` holds.
///
/// # Errors
/// When a run, a probe or a write fails, or a section needs another that was not measured.
pub fn suite(opts: &BenchOptions, log: &mut dyn FnMut(&str)) -> Result<Results> {
    let plan = &opts.plan;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let json = opts.out.join("results.json");
    let all = opts.sections.is_empty();
    let mut results = if all {
        Results::default()
    } else {
        match std::fs::read(&json) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} cannot be read as the suite's results (move it away to start afresh)",
                    json.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Results::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", json.display())),
        }
    };
    let runner = Runner {
        plan,
        work: opts.work.clone(),
        data_dir: opts.data_dir.clone(),
    };
    let provenance = render::provenance(&opts.command, plan.mode);
    for section in Section::ALL {
        if !all && !opts.sections.contains(&section) {
            continue;
        }
        log(&format!("section {section}"));
        run_section(section, opts, &runner, &mut results, log)?;
        results.measured.insert(section, provenance.clone());
        // Each finished section is on disk before the next starts.
        write_atomic(&json, &serde_json::to_vec_pretty(&results)?)?;
    }
    let plots = render::plot_curves(opts, &results)?;
    let bb_plots = render::plot_blackbox(opts, &results)?;
    let path = opts.out.join("RESULTS.md");
    let mut md = render::render(opts, &results, &plots, &bb_plots)?;
    md.push_str(&render::kept_sections(&path));
    write_atomic(&path, md.as_bytes())?;
    Ok(results)
}

fn run_section(
    section: Section,
    opts: &BenchOptions,
    runner: &Runner<'_>,
    results: &mut Results,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let plan = &opts.plan;
    let sst2_lr = |results: &Results, algorithm: Algorithm| -> Result<f64> {
        Ok(results
            .cell(MASKED_MODEL, Task::Sst2, algorithm)
            .context("run the accuracy section first (--section accuracy)")?
            .best()?
            .lr)
    };
    match section {
        Section::Accuracy => {
            let mut masked = BTreeMap::new();
            for &(task, budget) in &plan.tasks {
                log(&format!("accuracy: {MASKED_MODEL} / {}", task.name()));
                let cells = runner.accuracy(task, MASKED_MODEL, budget, &plan.grids, None)?;
                masked.insert(task.name().to_string(), cells);
            }
            results.accuracy.insert(MASKED_MODEL.to_string(), masked);
        }
        Section::Causal => {
            let c = plan
                .causal
                .as_ref()
                .ok_or_else(|| anyhow!("the plan has no causal-LM section"))?;
            log(&format!("causal: {} / sst2 ({})", c.model, c.scale));
            let cells = runner.causal(c)?;
            // The section has one causal model: cells of another (an earlier plan's) and the
            // half-precision runs that compared against them go.
            results.accuracy.retain(|model, _| model == MASKED_MODEL);
            results.accuracy.insert(
                c.model.to_string(),
                BTreeMap::from([(Task::Sst2.name().to_string(), cells)]),
            );
            let accuracy = &results.accuracy;
            results
                .precision
                .retain(|model, _| accuracy.contains_key(model));
            results.causal = Some(c.clone());
        }
        Section::Precision => {
            let budget = plan
                .tasks
                .iter()
                .find(|t| t.0 == Task::Sst2)
                .map_or(plan.budget, |t| t.1);
            let mut by_optimizer = BTreeMap::new();
            for algorithm in plan::PRECISION_OPTIMIZERS {
                let lr = sst2_lr(results, algorithm)?;
                let mut by_precision = BTreeMap::new();
                for &precision in &plan.half_runs {
                    log(&format!(
                        "precision: {MASKED_MODEL} / {algorithm} / {}",
                        probe::precision_name(precision)
                    ));
                    let runs = runner.precision(
                        Task::Sst2,
                        MASKED_MODEL,
                        budget,
                        None,
                        algorithm,
                        lr,
                        precision,
                    )?;
                    by_precision.insert(probe::precision_name(precision).to_string(), runs);
                }
                by_optimizer.insert(algorithm.name().to_string(), by_precision);
            }
            results
                .precision
                .insert(MASKED_MODEL.to_string(), by_optimizer);
            results.default_task.clear();
            for precision in [zo_models::Precision::F32, zo_models::Precision::BF16] {
                let name = probe::precision_name(precision);
                log(&format!("precision: the default task / {name}"));
                let run = runner.default_task(precision, plan.default_task_steps)?;
                results.default_task.insert(name.to_string(), run);
            }
            // The causal section's model, when that section has run: its cells' rates, protocol,
            // budget and seeds.
            if let Some(c) = results.causal.clone() {
                let mut by_optimizer = BTreeMap::new();
                for algorithm in plan::PRECISION_OPTIMIZERS {
                    let Ok(cell) = results.cell(&c.model, Task::Sst2, algorithm) else {
                        continue;
                    };
                    let lr = cell.best()?.lr;
                    let mut by_precision = BTreeMap::new();
                    for &precision in &plan.half_runs {
                        log(&format!(
                            "precision: {} / {algorithm} / {}",
                            c.model,
                            probe::precision_name(precision)
                        ));
                        let runs = runner.causal_precision(&c, algorithm, lr, precision)?;
                        by_precision.insert(probe::precision_name(precision).to_string(), runs);
                    }
                    by_optimizer.insert(algorithm.name().to_string(), by_precision);
                }
                if !by_optimizer.is_empty() {
                    results.precision.insert(c.model.clone(), by_optimizer);
                }
            }
        }
        Section::Probes => {
            let mut probes = Vec::new();
            let half_scenarios = [
                Scenario::Inference,
                Scenario::Optimizer(Algorithm::Mezo),
                Scenario::Optimizer(Algorithm::Bszo),
            ];
            let data_dir = opts.data_dir.as_deref();
            for &model in &plan.probe_models {
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
                for scenario in &half_scenarios[1..] {
                    probes.push(probe::spawn_row_sparse(
                        &opts.exe, model, *scenario, plan.reps, data_dir,
                    )?);
                }
            }
            for &model in &plan.memory_models {
                probes.push(probe::spawn(
                    &opts.exe,
                    model,
                    zo_models::Precision::F32,
                    Scenario::Inference,
                    1,
                    data_dir,
                )?);
                for scenario in half_scenarios {
                    probes.push(probe::spawn(
                        &opts.exe,
                        model,
                        zo_models::Precision::BF16,
                        scenario,
                        1,
                        data_dir,
                    )?);
                }
            }
            results.probes = probes;
        }
        Section::Ablation => {
            let lr = sst2_lr(results, Algorithm::Bszo)?;
            results.ablation = runner.ablation(lr)?;
        }
        Section::Hizoo => {
            let lr = sst2_lr(results, Algorithm::Hizoo)?;
            results.hizoo = runner.hizoo(lr)?;
        }
        Section::Sampler => {
            let (normals, sweep) = plan.sampler_elems;
            results.sampler = Some(zo_sampler::throughput::measure(plan.reps, normals, sweep)?);
        }
        Section::Sparse => {
            let mut by_optimizer = BTreeMap::new();
            for algorithm in plan::PRECISION_OPTIMIZERS {
                let lr = sst2_lr(results, algorithm)?;
                log(&format!("sparse: {MASKED_MODEL} / {algorithm}"));
                by_optimizer.insert(
                    algorithm.name().to_string(),
                    runner.row_sparse(algorithm, lr)?,
                );
            }
            results.sparse = by_optimizer;
        }
        Section::Processes => {
            // The `bszo` command next to the benchmark's (built with MPI by `cargo xtask bench`).
            let bszo = opts.exe.with_file_name("bszo");
            results.processes = Some(processes::run(
                &plan.processes,
                &bszo,
                &opts.work,
                opts.data_dir.as_deref(),
                log,
            )?);
        }
        Section::Peft => {
            let p = &plan.peft;
            // The probes first: timed while nothing else runs.
            let mut probes = Vec::new();
            for algorithm in plan::PEFT_OPTIMIZERS {
                for method in ["full", "lora", "prefix"] {
                    log(&format!(
                        "peft: probe {MASKED_MODEL} / {method} / {algorithm}"
                    ));
                    probes.push(probe::spawn_peft(
                        &opts.exe,
                        plan::ProbeModel::SpladeTiny,
                        Scenario::Optimizer(algorithm),
                        method,
                        plan.reps,
                        opts.data_dir.as_deref(),
                    )?);
                }
            }
            results.peft_probes = probes;
            let mut masked = BTreeMap::new();
            for peft in &p.methods {
                let settings = p.settings(peft.method())?;
                let mut by_optimizer = BTreeMap::new();
                for algorithm in plan::PEFT_OPTIMIZERS {
                    // The full-parameter cell it is compared with must exist.
                    sst2_lr(results, algorithm)?;
                    log(&format!(
                        "peft: {MASKED_MODEL} / {} / {algorithm}",
                        peft.method()
                    ));
                    let grid = plan::grid(&settings.grids, algorithm)?;
                    let cell = runner.peft(algorithm, peft, settings.eps, grid)?;
                    by_optimizer.insert(algorithm.name().to_string(), cell);
                }
                masked.insert(peft.method().to_string(), by_optimizer);
            }
            results.peft.clear();
            results.peft.insert(MASKED_MODEL.to_string(), masked);
            if let (true, Some(c)) = (p.causal, results.causal.clone()) {
                let mut causal = BTreeMap::new();
                // The causal section's full-parameter cells over the section's seeds.
                let mut full_causal = BTreeMap::new();
                for peft in &p.methods {
                    let settings = p.settings(peft.method())?;
                    let mut by_optimizer = BTreeMap::new();
                    for algorithm in plan::PEFT_OPTIMIZERS {
                        let Ok(full) = results.cell(&c.model, Task::Sst2, algorithm) else {
                            continue;
                        };
                        if !full_causal.contains_key(algorithm.name()) {
                            log(&format!("peft: {} / full / {algorithm}", c.model));
                            let cell = runner.causal_full(&c, algorithm, full, &p.causal_seeds)?;
                            full_causal.insert(algorithm.name().to_string(), cell);
                        }
                        log(&format!(
                            "peft: {} / {} / {algorithm}",
                            c.model,
                            peft.method()
                        ));
                        let grid = plan::grid(&settings.causal_grids, algorithm)?;
                        let cell = runner.causal_peft(
                            &c,
                            algorithm,
                            peft,
                            settings.eps,
                            grid,
                            &p.causal_seeds,
                        )?;
                        by_optimizer.insert(algorithm.name().to_string(), cell);
                    }
                    causal.insert(peft.method().to_string(), by_optimizer);
                }
                causal.insert(FULL.to_string(), full_causal);
                results.peft.insert(c.model.clone(), causal);
            }
        }
        Section::Blackbox => {
            let data_dir = match &opts.data_dir {
                Some(d) => d.clone(),
                None => zo_data::resolve_data_dir(None)?,
            };
            results.blackbox = Some(blackbox::run(&plan.blackbox, &opts.work, &data_dir, log)?);
        }
    }
    Ok(())
}
