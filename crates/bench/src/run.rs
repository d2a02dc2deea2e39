//! The fine-tuning runs: each a [`RunConfig`] built here and run by the command's own
//! [`finetune`] in its own folder, or reused when the folder's `report.json` holds the same
//! configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use bszo_cli::RunConfig;
use bszo_cli::config::{Calibration, OptimizerSection};
use bszo_cli::finetune::{METRICS_FILE, Options, REPORT_FILE, Report, finetune, read_metrics};
use bszo_cli::report::calibrated_accuracy;
use serde::{Deserialize, Serialize};
use zo_data::{Protocol, Task};
use zo_optim::{Algorithm, Estimator};
use zo_train::{Event, Split};

use crate::plan::{CausalPlan, Grids, MASKED_MODEL, OPTIMIZERS, Plan, grid};

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
    /// Calibrated test accuracy on the best-validation weights (runs with `task.calibrate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated_test: Option<f64>,
    /// Calibrated zero-shot test accuracy (runs with `task.calibrate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibrated_zero_shot: Option<f64>,
    /// Trainable parameters.
    #[serde(default)]
    pub parameters: usize,
    /// The run's peak resident memory (bytes), when the platform reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
}

/// The runs of one optimizer on one task: the grid on the first seed, then the other seeds at the
/// picked learning rate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    /// The grid runs (first seed).
    pub grid: Vec<RunResult>,
    /// The runs at the picked learning rate, one per seed (the first is the grid's best).
    pub picked: Vec<RunResult>,
}

impl Cell {
    /// The grid's best run (first seed, picked learning rate).
    ///
    /// # Errors
    /// When the cell holds no run.
    pub fn best(&self) -> Result<&RunResult> {
        self.picked
            .first()
            .ok_or_else(|| anyhow!("a cell of the results holds no run"))
    }

    /// Test scores of the picked runs.
    pub fn tests(&self) -> Vec<f64> {
        self.picked.iter().map(|r| r.test).collect()
    }

    /// Calibrated test scores of the picked runs, when every one has them.
    pub fn calibrated_tests(&self) -> Option<Vec<f64>> {
        self.picked.iter().map(|r| r.calibrated_test).collect()
    }

    /// Best validation scores of the picked runs.
    pub fn validations(&self) -> Vec<f64> {
        self.picked.iter().map(|r| r.best_validation).collect()
    }
}

/// Accuracy cells: model → task → optimizer, keyed by their names as `results.json` writes them.
pub type Accuracy = BTreeMap<String, BTreeMap<String, BTreeMap<String, Cell>>>;

/// The cell of `algorithm` on `task` with `model`.
///
/// # Errors
/// When `accuracy` holds no such cell, naming what is missing.
pub fn cell<'a>(
    accuracy: &'a Accuracy,
    model: &str,
    task: Task,
    algorithm: Algorithm,
) -> Result<&'a Cell> {
    let tasks = accuracy
        .get(model)
        .ok_or_else(|| anyhow!("no accuracy results for the model {model}"))?;
    let cells = tasks
        .get(task.name())
        .ok_or_else(|| anyhow!("no accuracy results for {} with {model}", task.name()))?;
    cells.get(algorithm.name()).ok_or_else(|| {
        anyhow!(
            "no accuracy results for {algorithm} on {} with {model}",
            task.name()
        )
    })
}

/// Where runs go and what they read.
#[derive(Clone, Debug)]
pub struct Runner<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// Where the runs' folders go.
    pub work: PathBuf,
    /// The data folder (default: the usual resolution).
    pub data_dir: Option<PathBuf>,
}

/// One run's settings besides its optimizer and seed.
#[derive(Clone, Copy, Debug)]
struct Setting<'m> {
    model: &'m str,
    task: Task,
    test_size: Option<usize>,
    budget: u64,
    evaluations: u64,
}

impl Runner<'_> {
    /// One benchmark run: the embedded default's model settings and loop with the setting's
    /// model, task, test size and `budget` forward passes spread over the plan's validation
    /// evaluations, calibrated scores reported too, no checkpoints, plots or exported weights.
    fn config(
        &self,
        at: Setting<'_>,
        protocol: Protocol,
        optimizer: OptimizerSection,
        seed: u64,
    ) -> Result<RunConfig> {
        let mut c = RunConfig::embedded_default();
        c.model.name = at.model.into();
        c.task.name = at.task;
        c.task.protocol = protocol;
        c.task.test_size = at.test_size;
        c.task.data_dir.clone_from(&self.data_dir);
        // Calibrated scores beside the plain ones (evaluation only; training is unchanged).
        c.task.calibrate = Calibration::ContentFree;
        let per_step = optimizer.build()?.forwards_per_step() as u64;
        c.optimizer = optimizer;
        let steps = (at.budget / per_step).max(1);
        c.train.steps = steps;
        c.train.eval_every = (steps / at.evaluations.max(1)).max(1);
        c.train.seed = seed;
        c.train.checkpoint_every = 0;
        c.output.plots = false;
        c.output.overwrite = true;
        c.output.export = false;
        Ok(c)
    }

    /// Grid search on the first seed and the other seeds at the best learning rate, each run in
    /// `dir/lr<lr>-seed<seed>`.
    fn grid_and_seeds(
        &self,
        dir: &Path,
        grid: &[f64],
        base: &dyn Fn(f64, u64) -> Result<RunConfig>,
    ) -> Result<Cell> {
        self.grid_and_seeds_over(dir, grid, &self.plan.seeds, base)
    }

    /// As [`Self::grid_and_seeds`] over `seeds` (the grid on the first).
    fn grid_and_seeds_over(
        &self,
        dir: &Path,
        grid: &[f64],
        seeds: &[u64],
        base: &dyn Fn(f64, u64) -> Result<RunConfig>,
    ) -> Result<Cell> {
        let (first, others) = seeds
            .split_first()
            .map(|(f, o)| (*f, o))
            .ok_or_else(|| anyhow!("the plan has no seeds"))?;
        let mut runs = Vec::new();
        for &lr in grid {
            let d = dir.join(format!("lr{lr:e}-seed{first}"));
            runs.push(run(&d, base(lr, first)?)?);
        }
        let best = runs
            .iter()
            .max_by(|a, b| a.best_validation.total_cmp(&b.best_validation))
            .cloned()
            .ok_or_else(|| anyhow!("empty learning-rate grid"))?;
        let mut picked = vec![best.clone()];
        for &seed in others {
            let d = dir.join(format!("lr{:e}-seed{seed}", best.lr));
            picked.push(run(&d, base(best.lr, seed)?)?);
        }
        Ok(Cell { grid: runs, picked })
    }

    /// The accuracy runs of `model` on `task` for every optimizer: the sampled protocol at the
    /// plan's sizes.
    pub fn accuracy(
        &self,
        task: Task,
        model: &str,
        budget: u64,
        grids: &Grids,
        test_size: Option<usize>,
    ) -> Result<BTreeMap<String, Cell>> {
        let plan = self.plan;
        let at = Setting {
            model,
            task,
            test_size: test_size.or(plan.sizes.2),
            budget,
            evaluations: plan.evaluations,
        };
        let mut out = BTreeMap::new();
        for algorithm in OPTIMIZERS {
            let base = |lr: f64, seed: u64| self.cell_config(at, algorithm, lr, seed);
            let dir = self
                .work
                .join("accuracy")
                .join(model)
                .join(task.name())
                .join(algorithm.name());
            let cell = self.grid_and_seeds(&dir, grid(grids, algorithm)?, &base)?;
            out.insert(algorithm.name().to_string(), cell);
        }
        Ok(out)
    }

    /// The causal-LM section: every optimizer of `c` on SST-2 with MeZO's prompt, the grid on
    /// the first seed and the other seeds at the picked rate, calibrated scores reported too.
    /// Each run in `causal/<model>-<scale>/<optimizer>/lr<lr>-seed<seed>`.
    pub fn causal(&self, c: &CausalPlan) -> Result<BTreeMap<String, Cell>> {
        let mut out = BTreeMap::new();
        for &algorithm in &c.optimizers {
            let base = |lr: f64, seed: u64| self.causal_config(c, algorithm, lr, seed);
            let dir = self
                .work
                .join("causal")
                .join(format!("{}-{}", c.model, c.scale))
                .join(algorithm.name());
            let cell =
                self.grid_and_seeds_over(&dir, grid(&c.grids, algorithm)?, &c.seeds, &base)?;
            out.insert(algorithm.name().to_string(), cell);
        }
        Ok(out)
    }

    /// The runs of a causal-section cell again with the weights stored in `precision`:
    /// `algorithm` at `lr`, every seed of `c`, the causal section's protocol and budget.
    /// Each run in `precision/<model>-<scale>/sst2/<optimizer>/<precision>/lr<lr>-seed<seed>`.
    pub fn causal_precision(
        &self,
        c: &CausalPlan,
        algorithm: Algorithm,
        lr: f64,
        precision: zo_models::Precision,
    ) -> Result<Vec<RunResult>> {
        let name = crate::probe::precision_name(precision);
        let mut runs = Vec::new();
        for &seed in &c.seeds {
            let mut config = self.causal_config(c, algorithm, lr, seed)?;
            config.model.precision = precision;
            let dir = self
                .work
                .join("precision")
                .join(format!("{}-{}", c.model, c.scale))
                .join(Task::Sst2.name())
                .join(algorithm.name())
                .join(name)
                .join(format!("lr{lr:e}-seed{seed}"));
            runs.push(run(&dir, config)?);
        }
        Ok(runs)
    }

    /// The configuration of one causal-section run.
    fn causal_config(
        &self,
        c: &CausalPlan,
        algorithm: Algorithm,
        lr: f64,
        seed: u64,
    ) -> Result<RunConfig> {
        let at = Setting {
            model: &c.model,
            task: Task::Sst2,
            test_size: c.test_size,
            budget: c.budget,
            evaluations: c.evaluations,
        };
        let protocol = Protocol::Sampled {
            seed,
            train: c.sizes.0,
            validation: c.sizes.1,
        };
        let optimizer = OptimizerSection::named(algorithm, c.eps, lr);
        let mut config = self.config(at, protocol, optimizer, seed)?;
        config.model.max_length = c.max_length;
        config.task.eval_batch_size = 32;
        config.train.batch_size = c.batch_size;
        Ok(config)
    }

    /// The configuration of one accuracy run: the sampled protocol at the plan's sizes.
    fn cell_config(
        &self,
        at: Setting<'_>,
        algorithm: Algorithm,
        lr: f64,
        seed: u64,
    ) -> Result<RunConfig> {
        let protocol = self.plan.sampled_protocol(seed);
        let optimizer = OptimizerSection::named(algorithm, 1e-4, lr);
        self.config(at, protocol, optimizer, seed)
    }

    /// The runs of an accuracy cell again with the weights stored in `precision`: `algorithm` at
    /// `lr` on `task` with `model`, every seed of the plan, the same protocol and budget as the
    /// accuracy section (so the f32 cell is the comparison at equal forward budgets).
    #[allow(clippy::too_many_arguments)]
    pub fn precision(
        &self,
        task: Task,
        model: &str,
        budget: u64,
        test_size: Option<usize>,
        algorithm: Algorithm,
        lr: f64,
        precision: zo_models::Precision,
    ) -> Result<Vec<RunResult>> {
        let at = Setting {
            model,
            task,
            test_size: test_size.or(self.plan.sizes.2),
            budget,
            evaluations: self.plan.evaluations,
        };
        let name = crate::probe::precision_name(precision);
        let mut runs = Vec::new();
        for &seed in &self.plan.seeds {
            let mut config = self.cell_config(at, algorithm, lr, seed)?;
            config.model.precision = precision;
            let dir = self
                .work
                .join("precision")
                .join(model)
                .join(task.name())
                .join(algorithm.name())
                .join(name)
                .join(format!("lr{lr:e}-seed{seed}"));
            runs.push(run(&dir, config)?);
        }
        Ok(runs)
    }

    /// The runs of an accuracy cell (the masked model on SST-2) again with row-sparse embedding
    /// probes: `algorithm` at `lr`, every seed of the plan, the same protocol and budget.
    /// Each run in `sparse/<model>/sst2/<optimizer>/lr<lr>-seed<seed>`.
    pub fn row_sparse(&self, algorithm: Algorithm, lr: f64) -> Result<Vec<RunResult>> {
        let at = self.sst2_cell();
        let mut runs = Vec::new();
        for &seed in &self.plan.seeds {
            let mut config = self.cell_config(at, algorithm, lr, seed)?;
            config.train.row_sparse = true;
            let dir = self
                .work
                .join("sparse")
                .join(MASKED_MODEL)
                .join(Task::Sst2.name())
                .join(algorithm.name())
                .join(format!("lr{lr:e}-seed{seed}"));
            runs.push(run(&dir, config)?);
        }
        Ok(runs)
    }

    /// The default task (the embedded configuration of `cargo xtask finetune`, `steps` steps if
    /// given) with the weights stored in `precision`, in `default/<precision>`.
    pub fn default_task(
        &self,
        precision: zo_models::Precision,
        steps: Option<u64>,
    ) -> Result<RunResult> {
        let mut c = RunConfig::embedded_default();
        c.task.data_dir.clone_from(&self.data_dir);
        c.model.precision = precision;
        if let Some(steps) = steps {
            c.train.steps = steps;
            c.train.eval_every = c.train.eval_every.min(steps);
        }
        c.output.plots = false;
        c.output.overwrite = true;
        c.output.export = false;
        let dir = self
            .work
            .join("default")
            .join(crate::probe::precision_name(precision));
        run(&dir, c)
    }

    /// The parameter-efficient cell of `algorithm` training `peft` (ε `eps`) on the masked model's
    /// SST-2 at the accuracy section's protocol, budget and seeds: `grid` on the first seed, the
    /// other seeds at the picked rate. Each run in
    /// `peft/<model>/sst2/<method>/<optimizer>/lr<lr>-seed<seed>`.
    pub fn peft(
        &self,
        algorithm: Algorithm,
        peft: &zo_models::Peft,
        eps: f64,
        grid: &[f64],
    ) -> Result<Cell> {
        let at = self.sst2_cell();
        let base = |lr: f64, seed: u64| {
            let protocol = self.plan.sampled_protocol(seed);
            let optimizer = OptimizerSection::named(algorithm, eps, lr);
            let mut config = self.config(at, protocol, optimizer, seed)?;
            config.peft = peft.clone();
            Ok(config)
        };
        let dir = self
            .work
            .join("peft")
            .join(MASKED_MODEL)
            .join(Task::Sst2.name())
            .join(peft.method())
            .join(algorithm.name());
        self.grid_and_seeds(&dir, grid, &base)
    }

    /// The parameter-efficient cell of `algorithm` training `peft` (ε `eps`) on the causal
    /// section's model, protocol and budget: `grid` on the first of `seeds`, the others at the
    /// picked rate. Each run in `peft/<model>-<scale>/sst2/<method>/<optimizer>/lr<lr>-seed<seed>`.
    pub fn causal_peft(
        &self,
        c: &CausalPlan,
        algorithm: Algorithm,
        peft: &zo_models::Peft,
        eps: f64,
        grid: &[f64],
        seeds: &[u64],
    ) -> Result<Cell> {
        let base = |lr: f64, seed: u64| {
            let mut config = self.causal_config(c, algorithm, lr, seed)?;
            config.optimizer = OptimizerSection::named(algorithm, eps, lr);
            config.peft = peft.clone();
            Ok(config)
        };
        let dir = self.causal_peft_dir(c, peft.method(), algorithm);
        self.grid_and_seeds_over(&dir, grid, seeds, &base)
    }

    /// `peft/<model>-<scale>/sst2/<method>/<optimizer>`: the runs of one causal cell of the
    /// parameter-efficient section.
    fn causal_peft_dir(&self, c: &CausalPlan, method: &str, algorithm: Algorithm) -> PathBuf {
        self.work
            .join("peft")
            .join(format!("{}-{}", c.model, c.scale))
            .join(Task::Sst2.name())
            .join(method)
            .join(algorithm.name())
    }

    /// The causal section's full-parameter cell of `algorithm` (`full`) over `seeds`: its runs
    /// of those seeds, and a run at its picked learning rate for each seed it lacks (in
    /// `peft/<model>-<scale>/sst2/full/<optimizer>/lr<lr>-seed<seed>`), so that the adapter cells
    /// are compared with full fine-tuning on the same seeds.
    pub fn causal_full(
        &self,
        c: &CausalPlan,
        algorithm: Algorithm,
        full: &Cell,
        seeds: &[u64],
    ) -> Result<Cell> {
        let lr = full.best()?.lr;
        let dir = self.causal_peft_dir(c, crate::FULL, algorithm);
        let mut picked = Vec::with_capacity(seeds.len());
        for &seed in seeds {
            match full.picked.iter().find(|r| r.seed == seed) {
                Some(r) => picked.push(r.clone()),
                None => picked.push(run(
                    &dir.join(format!("lr{lr:e}-seed{seed}")),
                    self.causal_config(c, algorithm, lr, seed)?,
                )?),
            }
        }
        Ok(Cell {
            grid: full.grid.clone(),
            picked,
        })
    }

    /// SST-2 with the masked model as its accuracy cells run it (the plan's SST-2 budget and test
    /// cap): the setting of the runs compared with those cells.
    fn sst2_cell(&self) -> Setting<'static> {
        let budget = self
            .plan
            .tasks
            .iter()
            .find(|t| t.0 == Task::Sst2)
            .map_or(self.plan.budget, |t| t.1);
        Setting {
            budget,
            ..self.sst2()
        }
    }

    /// SST-2 with the masked model at the ablations' budget and test cap.
    fn sst2(&self) -> Setting<'static> {
        Setting {
            model: MASKED_MODEL,
            task: Task::Sst2,
            test_size: self.plan.sizes.2,
            budget: self.plan.budget,
            evaluations: self.plan.evaluations,
        }
    }

    /// BSZO's subspace dimension: each k of the plan (m = k + 1) at `lr`, every seed.
    pub fn ablation(&self, lr: f64) -> Result<BTreeMap<usize, Cell>> {
        let mut ablation = BTreeMap::new();
        for &k in &self.plan.ks {
            let base = |lr: f64, seed: u64| {
                let mut optimizer = OptimizerSection::named(Algorithm::Bszo, 1e-4, lr);
                if let Estimator::KalmanSubspace(ks) = &mut optimizer.estimator {
                    ks.k = k;
                    ks.m = k + 1;
                }
                let protocol = self.plan.sampled_protocol(seed);
                self.config(self.sst2(), protocol, optimizer, seed)
            };
            let dir = self.work.join("ablation").join(format!("k{k}"));
            ablation.insert(k, self.grid_and_seeds(&dir, &[lr], &base)?);
        }
        Ok(ablation)
    }

    /// HiZOO's curvature smoothing: α = ratio·ε² for each ratio of the plan at ε = 1e-3 and
    /// 1e-4, at `lr`, seed 0.
    pub fn hizoo(&self, lr: f64) -> Result<Vec<(f64, f64, RunResult)>> {
        let mut hizoo = Vec::new();
        for eps in [1e-3, 1e-4] {
            for &ratio in &self.plan.hizoo_ratios {
                let mut optimizer = OptimizerSection::named(Algorithm::Hizoo, eps, lr);
                if let Estimator::Hessian { alpha, .. } = &mut optimizer.estimator {
                    *alpha = ratio * eps * eps;
                }
                let protocol = self.plan.sampled_protocol(0);
                let config = self.config(self.sst2(), protocol, optimizer, 0)?;
                let dir = self
                    .work
                    .join("hizoo")
                    .join(format!("eps{eps:e}-ratio{ratio:e}"));
                hizoo.push((eps, ratio, run(&dir, config)?));
            }
        }
        Ok(hizoo)
    }
}

/// Run (or reuse) one configuration in `dir`: a folder whose report holds the same
/// configuration is not run again.
pub fn run(dir: &Path, mut config: RunConfig) -> Result<RunResult> {
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
        calibrated_test: report.test.as_ref().and_then(calibrated_accuracy),
        calibrated_zero_shot: calibrated_accuracy(&report.zero_shot.test),
        parameters: report.parameters,
        peak_rss_bytes: report.peak_rss_bytes,
    })
}
