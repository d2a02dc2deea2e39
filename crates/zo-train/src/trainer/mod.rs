//! The training loop.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use zo_optim::{ObjectiveError, OptimError, Optimizer, ParamSet, ProbeMode};

use crate::batches::EpochBatches;
use crate::checkpoint::{Best, LoopState, RunState, SeedLogEntry};
use crate::comm::{self, Communicator, ParallelMode};
pub use crate::config::{ParamEncoder, StopReason, Summary, TestWeights, TrainConfig, json_params};
use crate::error::{Result, TrainError};
use crate::keep::{BestKeeper, CopyKeep, DeepCopy, NoKeep, ReplayKeep, RestoreCtx};
use crate::model::{BatchObjective, Metrics, Parallel, Split, TaskModel};
use crate::observer::{Event, Observer};
use crate::rundir::RunDir;

mod persist;

/// The training loop: one optimizer step per seeded minibatch, validation every `eval_every` steps,
/// early stopping, best-on-validation tracking, a final test evaluation, observers, checkpoints and
/// a stop flag.
///
/// **The best weights.** With evaluations (`eval_every` > 0) the starting weights are evaluated on
/// validation before the first step (or their metrics are given by
/// [`start_validation`](Self::start_validation)) and are the step-0 candidate: a step becomes the
/// best only with a strictly higher score than every earlier evaluation, the start included. If no
/// step beats the starting weights, [`Summary::best`] is at step 0 and the best weights handed back
/// by [`run_keep_best`](Self::run_keep_best) and [`run_replay_best`](Self::run_replay_best) are
/// the starting weights themselves; the training never returns a model that scored worse on
/// validation than the one it started from.
///
/// Generic over the parameter set `P` and the caller's [`TaskModel`] `M`; it never prints.
pub struct Trainer<P: ?Sized, M> {
    optimizer: Optimizer,
    config: TrainConfig,
    model: M,
    observers: Vec<Box<dyn Observer>>,
    out_dir: Option<RunDir>,
    overwrite: bool,
    stop: Option<Arc<AtomicBool>>,
    encoder: Option<ParamEncoder<P>>,
    last_checkpoint: Option<PathBuf>,
    start_validation: Option<Metrics>,
    parallel: Option<Parallel>,
    guard: Option<Guard<P>>,
    traffic: StepTraffic,
}

/// What this process sent to the others during the optimizer steps it ran (not counting the
/// evaluations and the guard).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepTraffic {
    /// Payload bytes ([`Communicator::bytes_sent`]).
    pub bytes: u64,
    /// Steps run by this trainer.
    pub steps: u64,
}

/// A failure of the caller's code at `step` outside any forward of the optimizer (the rows a
/// minibatch reads, the weights' fingerprint), reported as the step's error.
fn outside_forward(step: u64, source: ObjectiveError) -> TrainError {
    TrainError::Step {
        step,
        source: OptimError::Objective {
            step,
            forward: 0,
            source,
        },
    }
}

/// A hash of the parameters, compared between processes by the consistency guard
/// ([`Trainer::processes`]).
pub type Fingerprint<P> = Box<dyn FnMut(&P) -> std::result::Result<u64, ObjectiveError>>;

/// The consistency guard of a run of several processes: every `every` steps (and before the
/// first) the processes compare `fingerprint` of their parameters.
pub struct Guard<P: ?Sized> {
    /// Compare every this many steps (0: only before the first step).
    pub every: u64,
    /// The hash of the parameters.
    pub fingerprint: Fingerprint<P>,
}

impl<P: ParamSet + ?Sized, M: TaskModel<P>> Trainer<P, M> {
    /// A trainer with no observers, no output folder and no stop flag.
    pub fn new(optimizer: Optimizer, config: TrainConfig, model: M) -> Result<Self> {
        config.validate()?;
        if config.row_sparse
            && let Err(e) = optimizer.config().validate_row_sparse()
        {
            return Err(TrainError::Config {
                field: "row_sparse",
                message: e.to_string(),
            });
        }
        if model.num_train() == 0 {
            return Err(TrainError::Config {
                field: "num_train",
                message: "the model has no training examples".into(),
            });
        }
        Ok(Self {
            optimizer,
            config,
            model,
            observers: Vec::new(),
            out_dir: None,
            overwrite: false,
            stop: None,
            encoder: None,
            last_checkpoint: None,
            start_validation: None,
            parallel: None,
            guard: None,
            traffic: StepTraffic::default(),
        })
    }

    /// Run as one of the processes of `comm` (see [`crate::comm`]): the steps are split as
    /// `mode` says (the model must implement [`TaskModel::train_terms`] for
    /// [`ParallelMode::Data`]), every process runs the identical step, the processes agree on
    /// stopping (a stop flag on any of them stops all after the same step), and `guard`
    /// compares their parameters. Only process 0 writes: on the others the output folder, if
    /// any, is only read (the seed log for the best weights) and observers should not be added.
    /// The model's evaluations must be collective too when they are split (the trainer calls
    /// [`TaskModel::evaluate`] on every process at the same points).
    pub fn processes(
        mut self,
        comm: std::rc::Rc<dyn Communicator>,
        mode: ParallelMode,
        guard: Guard<P>,
    ) -> Self {
        self.parallel = Some(Parallel { comm, mode });
        self.guard = Some(guard);
        self
    }

    /// What this process sent to the others during the steps it ran.
    pub fn step_traffic(&self) -> StepTraffic {
        self.traffic
    }

    /// Whether this process writes the output folder (process 0, or a run of one process).
    pub fn writes(&self) -> bool {
        self.parallel.as_ref().is_none_or(|p| p.comm.rank() == 0)
    }

    /// The comparison of the guard: an error naming `step` when the processes' fingerprints
    /// differ.
    fn check_guard(&mut self, params: &P, step: u64) -> Result<()> {
        let (Some(parallel), Some(guard)) = (&self.parallel, &mut self.guard) else {
            return Ok(());
        };
        if parallel.comm.size() == 1 {
            return Ok(());
        }
        let h = (guard.fingerprint)(params).map_err(|e| outside_forward(step, e))?;
        // Two exact halves: an f64 holds 32 bits exactly.
        let halves = [(h >> 32) as f64, (h & 0xffff_ffff) as f64];
        let all = parallel
            .comm
            .all_gather(&halves)
            .map_err(TrainError::Comm)?;
        let differ: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, v)| v.as_slice() != halves.as_slice())
            .map(|(r, _)| r)
            .collect();
        if differ.is_empty() {
            Ok(())
        } else {
            Err(TrainError::Desync {
                step,
                rank: parallel.comm.rank(),
                differ,
            })
        }
    }

    /// Add an observer (events go to observers in the order they were added).
    pub fn observe(mut self, observer: impl Observer + 'static) -> Self {
        self.observers.push(Box::new(observer));
        self
    }

    /// Write checkpoints and the seed log to `dir` (created if absent). A fresh run
    /// ([`start`](Self::start)) refuses a folder that already holds a checkpoint unless `overwrite`.
    pub fn output_dir(mut self, dir: impl Into<PathBuf>, overwrite: bool) -> Self {
        self.out_dir = Some(RunDir::new(dir));
        self.overwrite = overwrite;
        self
    }

    /// Stop cleanly after the current step once `flag` is set (checked between steps).
    pub fn stop_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Save the parameters with every checkpoint, as the bytes `encoder` returns (e.g.
    /// [`json_params`]), to `params-STEP.bin` next to `checkpoint.json`.
    pub fn save_params_with(mut self, encoder: ParamEncoder<P>) -> Self {
        self.encoder = Some(encoder);
        self
    }

    /// The starting weights' validation metrics, already computed by the caller (e.g. by a
    /// zero-shot evaluation on the same validation split): a fresh run takes them as its step-0
    /// evaluation instead of evaluating the starting weights again (their forwards are then not
    /// counted in [`Summary::eval_forwards`]). Only read when a fresh run starts and
    /// `eval_every` > 0.
    pub fn start_validation(mut self, metrics: Metrics) -> Self {
        self.start_validation = Some(metrics);
        self
    }

    /// The settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The model, mutably.
    pub fn model_mut(&mut self) -> &mut M {
        &mut self.model
    }

    /// Train `params` from `state` (fresh or resumed) until the step budget, early stopping or the
    /// stop flag. The test split is evaluated on the final weights.
    pub fn run(&mut self, params: &mut P, state: &mut RunState) -> Result<Summary> {
        self.run_inner(params, state, &mut NoKeep)
    }

    /// Like [`run`](Self::run), but keeps a deep copy ([`DeepCopy`]) of the best-on-validation
    /// weights in memory (one more full copy of the parameters: for a model, as much memory again as
    /// its weights) and evaluates the test split on them; `params` holds the best weights
    /// afterwards. After a resume, only a best score reached in this process has its copy; an
    /// earlier one is tested on the final weights (reported as [`TestWeights::Final`]);
    /// [`run_replay_best`](Self::run_replay_best) has no such gap and needs no second copy.
    pub fn run_keep_best(&mut self, params: &mut P, state: &mut RunState) -> Result<Summary>
    where
        P: DeepCopy,
    {
        self.run_keep_best_with(params, state, P::deep_copy)
    }

    /// Like [`run_keep_best`](Self::run_keep_best), with the copy made by `copy`, which must share
    /// no storage with its argument (e.g. a model's weights copied tensor by tensor).
    pub fn run_keep_best_with<F>(
        &mut self,
        params: &mut P,
        state: &mut RunState,
        copy: F,
    ) -> Result<Summary>
    where
        P: Sized,
        F: FnMut(&P) -> std::result::Result<P, ObjectiveError>,
    {
        self.run_inner(params, state, &mut CopyKeep { best: None, copy })
    }

    /// Like [`run`](Self::run), but evaluates the test split on the best-on-validation weights,
    /// rebuilt without a second copy of the parameters: `reset` puts the run's initial (base)
    /// weights back into `params` (e.g. by reloading them from disk), and the seed log in the output
    /// folder is replayed up to the best step (see [`RunDir::replay_into`]). Works across resumes, since the
    /// whole trajectory is on disk. Needs an output folder; `params` holds the best weights
    /// afterwards.
    pub fn run_replay_best<F>(
        &mut self,
        params: &mut P,
        state: &mut RunState,
        reset: F,
    ) -> Result<Summary>
    where
        F: FnMut(&mut P) -> std::result::Result<(), ObjectiveError>,
    {
        if self.out_dir.is_none() {
            return Err(TrainError::Config {
                field: "output_dir",
                message: "rebuilding the best weights from the seed log needs an output folder"
                    .into(),
            });
        }
        self.run_inner(params, state, &mut ReplayKeep(reset))
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    fn emit(&mut self, event: Event) -> Result<()> {
        for o in &mut self.observers {
            o.on_event(&event).map_err(TrainError::Observer)?;
        }
        Ok(())
    }

    fn evaluate(&mut self, params: &P, split: Split, looping: &mut LoopState) -> Result<Metrics> {
        let step = looping.step;
        let metrics =
            self.model
                .evaluate(params, split)
                .map_err(|source| TrainError::Evaluation {
                    step,
                    split,
                    source,
                })?;
        if !metrics.score.is_finite() {
            return Err(TrainError::NonFiniteScore {
                step,
                split,
                value: metrics.score,
            });
        }
        looping.eval_forwards += metrics.forwards;
        Ok(metrics)
    }

    /// Book a validation evaluation of the weights after `state.looping.step` steps: best tracking,
    /// patience, the event.
    fn record_validation<K: BestKeeper<P>>(
        &mut self,
        params: &P,
        state: &mut RunState,
        keeper: &mut K,
        metrics: Metrics,
    ) -> Result<()> {
        let looping = &mut state.looping;
        let done = looping.step;
        looping.evaluations += 1;
        let better = looping.best.is_none_or(|b| metrics.score > b.score);
        if better {
            looping.best = Some(Best {
                step: done,
                score: metrics.score,
            });
            looping.evals_since_best = 0;
            keeper.record(params, done)?;
        } else {
            looping.evals_since_best += 1;
        }
        let eval_forwards = looping.eval_forwards;
        self.emit(Event::Evaluation {
            step: done,
            split: Split::Validation,
            metrics,
            best: better,
            eval_forwards,
        })?;
        if let (Some(patience), Some(best)) = (self.config.patience, state.looping.best)
            && state.looping.evals_since_best >= patience
        {
            state.looping.early_stopped = true;
            self.emit(Event::EarlyStop {
                step: done,
                best_step: best.step,
                best_score: best.score,
            })?;
        }
        Ok(())
    }

    fn run_inner<K: BestKeeper<P>>(
        &mut self,
        params: &mut P,
        state: &mut RunState,
        keeper: &mut K,
    ) -> Result<Summary> {
        if let Some(p) = &self.parallel
            && p.mode == ParallelMode::Directions
            && p.comm.size() > 1
            && params.probe_mode() == ProbeMode::InPlace
        {
            // Each process would reach its own probe points by its own in-place sweeps, and
            // their roundings would set the processes' weights apart.
            return Err(TrainError::Config {
                field: "parallel",
                message: "splitting the probe points between processes needs a parameter set read \
                          through a view (a model's weights); this one is perturbed in place: use \
                          data-parallel processes"
                    .into(),
            });
        }
        let n = self.model.num_train();
        let mut batches = EpochBatches::new(n, self.config.batch_size, self.config.data_seed)?;
        for _ in 0..state.looping.batches_drawn {
            batches.next_batch();
        }
        let mut seed_log = if self.writes() {
            self.out_dir
                .as_ref()
                .map(RunDir::append_seed_log)
                .transpose()?
        } else {
            None
        };

        let seed = state.optimizer.seed;
        let mut checkpointed_at = None;
        // The starting weights: the step-0 candidate for the best weights.
        if self.config.eval_every > 0 && state.looping.step == 0 && state.looping.evaluations == 0 {
            let metrics = match self.start_validation.take() {
                Some(m) if m.score.is_finite() => m,
                Some(m) => {
                    return Err(TrainError::NonFiniteScore {
                        step: 0,
                        split: Split::Validation,
                        value: m.score,
                    });
                }
                None => self.evaluate(params, Split::Validation, &mut state.looping)?,
            };
            self.record_validation(params, state, keeper, metrics)?;
        }
        self.check_guard(params, state.looping.step)?;
        let reason = loop {
            if state.looping.early_stopped {
                break StopReason::EarlyStop;
            }
            if state.looping.step >= self.config.max_steps {
                break StopReason::MaxSteps;
            }
            let stop = self.stop.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
            let stop = match &self.parallel {
                Some(p) => comm::any(p.comm.as_ref(), stop).map_err(TrainError::Comm)?,
                None => stop,
            };
            if stop {
                if checkpointed_at != Some(state.looping.step) {
                    self.checkpoint(params, state, &mut seed_log)?;
                }
                let step = state.looping.step;
                self.emit(Event::Stopped { step })?;
                return Ok(Summary {
                    reason: StopReason::StopFlag,
                    steps: step,
                    train_forwards: state.looping.train_forwards,
                    eval_forwards: state.looping.eval_forwards,
                    best: state.looping.best,
                    test: None,
                    test_weights: None,
                });
            }

            // One step on one minibatch.
            let batch = batches.next_batch();
            let step = state.looping.step;
            let rows = if self.config.row_sparse {
                let mut rows = self
                    .model
                    .rows_read(params, &batch)
                    .map_err(|e| outside_forward(step, e))?;
                // Logged as the step used them: sorted, each row once.
                for r in rows.values_mut() {
                    r.sort_unstable();
                    r.dedup();
                }
                params
                    .set_row_support(Some(&rows))
                    .map_err(|e| TrainError::Step {
                        step,
                        source: e.into(),
                    })?;
                Some(rows)
            } else {
                None
            };
            let bytes_before = self.parallel.as_ref().map_or(0, |p| p.comm.bytes_sent());
            let mut objective = BatchObjective {
                model: &mut self.model,
                batch: &batch,
                shards: self.config.shards,
                parallel: self.parallel.as_ref(),
            };
            let stepped = self
                .optimizer
                .step(&mut state.optimizer, params, &mut objective);
            self.traffic.bytes += self
                .parallel
                .as_ref()
                .map_or(0, |p| p.comm.bytes_sent() - bytes_before);
            if rows.is_some() {
                params.set_row_support(None).map_err(|e| TrainError::Step {
                    step,
                    source: e.into(),
                })?;
            }
            let report = match stepped {
                Ok(r) => r,
                Err(OptimError::NonFiniteLoss {
                    step,
                    forward,
                    value,
                }) => {
                    return Err(TrainError::NonFiniteLoss {
                        step,
                        forward,
                        value,
                        checkpoint: self.last_checkpoint.clone(),
                    });
                }
                Err(source) => return Err(TrainError::Step { step, source }),
            };
            let looping = &mut state.looping;
            looping.batches_drawn += 1;
            looping.step += 1;
            looping.train_forwards += report.forwards as u64;
            self.traffic.steps += 1;
            if let Some(log) = &mut seed_log {
                log.append(&SeedLogEntry {
                    seed,
                    report: report.clone(),
                    rows,
                })?;
            }
            let train_forwards = looping.train_forwards;
            self.emit(Event::Step {
                report,
                train_forwards,
            })?;

            // Validation, best tracking, patience.
            let done = state.looping.step;
            let eval_every = self.config.eval_every;
            if eval_every > 0 && (done.is_multiple_of(eval_every) || done == self.config.max_steps)
            {
                let metrics = self.evaluate(params, Split::Validation, &mut state.looping)?;
                self.record_validation(params, state, keeper, metrics)?;
            }
            let every = self.config.checkpoint_every;
            if every > 0 && done.is_multiple_of(every) {
                self.checkpoint(params, state, &mut seed_log)?;
                checkpointed_at = Some(done);
            }
            if let Some(g) = &self.guard
                && g.every > 0
                && done.is_multiple_of(g.every)
            {
                self.check_guard(params, done)?;
            }
        };

        if checkpointed_at != Some(state.looping.step) {
            self.checkpoint(params, state, &mut seed_log)?;
        }
        // The other processes read the seed log that process 0 has just made durable.
        if let Some(p) = &self.parallel {
            comm::barrier(p.comm.as_ref()).map_err(TrainError::Comm)?;
        }
        let ctx = RestoreCtx {
            optimizer: &self.optimizer,
            out_dir: self.out_dir.as_ref(),
            best: state.looping.best,
            steps: state.looping.step,
        };
        let test_weights = if keeper.restore(params, ctx)? {
            TestWeights::Best
        } else {
            TestWeights::Final
        };
        let test = self.evaluate(params, Split::Test, &mut state.looping)?;
        let eval_forwards = state.looping.eval_forwards;
        self.emit(Event::Evaluation {
            step: state.looping.step,
            split: Split::Test,
            metrics: test.clone(),
            best: false,
            eval_forwards,
        })?;
        let summary = Summary {
            reason,
            steps: state.looping.step,
            train_forwards: state.looping.train_forwards,
            eval_forwards,
            best: state.looping.best,
            test: Some(test),
            test_weights: Some(test_weights),
        };
        self.emit(Event::Finish {
            summary: summary.clone(),
        })?;
        Ok(summary)
    }
}
