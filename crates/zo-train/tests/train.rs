//! The training loop on a synthetic logistic-regression task.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{DIM, LogReg, bits, files, temp_dir};
use zo_optim::{Algorithm, Estimator, Optimizer, Schedule, Variance};
use zo_train::{
    CHECKPOINT_FILE, Checkpoint, Event, JsonlWriter, Recorder, SEED_LOG_FILE, Split, StopReason,
    TaskModel, TestWeights, TrainConfig, TrainError, Trainer, json_params, read_seed_log,
};

fn optimizer(algorithm: Algorithm, lr: f64) -> Optimizer {
    let mut config = algorithm.config(1e-3);
    if let Estimator::KalmanSubspace(k) = &mut config.estimator {
        k.prior_variance = Variance::Value(1.0);
        k.noise_variance = Variance::Value(1e-2);
    }
    Optimizer::new(config, Schedule::constant(lr)).unwrap()
}

fn config(max_steps: u64) -> TrainConfig {
    TrainConfig {
        max_steps,
        batch_size: 16,
        data_seed: 7,
        eval_every: 25,
        patience: None,
        checkpoint_every: 0,
        row_sparse: false,
        shards: 1,
    }
}

fn step_losses(events: &[Event]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Step { report, .. } => Some(report.loss),
            _ => None,
        })
        .collect()
}

fn validation_scores(events: &[Event]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Evaluation {
                split: Split::Validation,
                metrics,
                ..
            } => Some(metrics.score),
            _ => None,
        })
        .collect()
}

#[test]
fn bszo_and_mezo_lower_the_loss_and_raise_validation_accuracy() {
    for (algorithm, lr) in [(Algorithm::Mezo, 0.3), (Algorithm::Bszo, 0.3)] {
        let model = LogReg::new(1);
        let train = model.train.clone();
        let mut start = vec![0.0f32; DIM + 1];
        let start_acc = model
            .clone()
            .evaluate(&start, Split::Validation)
            .unwrap()
            .score;
        let recorder = Recorder::new();
        let mut trainer = Trainer::new(optimizer(algorithm, lr), config(400), model)
            .unwrap()
            .observe(recorder.clone());
        let mut state = trainer.start(&start, 3).unwrap();
        let before = LogReg::mean_loss(&start, &train);
        let summary = trainer.run(&mut start, &mut state).unwrap();
        let after = LogReg::mean_loss(&start, &train);
        let events = recorder.events();
        let scores = validation_scores(&events);
        let losses = step_losses(&events);
        let early: f64 = losses[..50].iter().sum::<f64>() / 50.0;
        let late: f64 = losses[losses.len() - 50..].iter().sum::<f64>() / 50.0;
        assert!(
            after < 0.7 * before,
            "{algorithm}: loss {before} -> {after}"
        );
        assert!(
            late < early,
            "{algorithm}: minibatch loss {early} -> {late}"
        );
        let best = summary.best.unwrap().score;
        assert!(
            best >= start_acc + 0.2 && best >= 0.85,
            "{algorithm}: validation accuracy {start_acc} -> {scores:?}"
        );
        assert_eq!(summary.reason, StopReason::MaxSteps);
        assert_eq!(summary.steps, 400);
        let per_step = trainer_forwards(algorithm);
        assert_eq!(summary.train_forwards, 400 * per_step);
        // Step 0 (the starting weights), 16 validation evaluations and one test evaluation, 4
        // forwards each.
        assert_eq!(scores.len(), 17);
        assert_eq!(scores[0], start_acc);
        assert_eq!(summary.eval_forwards, 18 * 4);
        assert!(summary.test.unwrap().score > 0.8);
        assert_eq!(summary.test_weights, Some(TestWeights::Final));
        assert!(matches!(events.last(), Some(Event::Finish { .. })));
    }
}

fn trainer_forwards(algorithm: Algorithm) -> u64 {
    optimizer(algorithm, 0.1).forwards_per_step() as u64
}

#[test]
fn early_stopping_triggers_after_patience_evaluations() {
    // A negligible learning rate never changes the validation score.
    let recorder = Recorder::new();
    let cfg = TrainConfig {
        patience: Some(3),
        eval_every: 10,
        ..config(1000)
    };
    let mut trainer = Trainer::new(optimizer(Algorithm::Mezo, 1e-9), cfg, LogReg::new(1))
        .unwrap()
        .observe(recorder.clone());
    let mut params = vec![0.5f32; DIM + 1];
    let mut state = trainer.start(&params, 3).unwrap();
    let summary = trainer.run(&mut params, &mut state).unwrap();
    assert_eq!(summary.reason, StopReason::EarlyStop);
    // The starting weights (step 0) are the best; patience counts from them: three evaluations
    // without a strictly better score.
    assert_eq!(summary.steps, 30);
    assert_eq!(summary.best.unwrap().step, 0);
    let stops: Vec<Event> = recorder
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::EarlyStop { .. }))
        .collect();
    assert_eq!(stops.len(), 1);
    assert!(matches!(
        &stops[0],
        Event::EarlyStop {
            step: 30,
            best_step: 0,
            ..
        }
    ));
}

#[test]
fn keep_best_tests_the_best_validation_weights() {
    let mut model = LogReg::new(2);
    let cfg = TrainConfig {
        eval_every: 20,
        ..config(300)
    };
    let mut trainer = Trainer::new(optimizer(Algorithm::Mezo, 0.5), cfg, model.clone()).unwrap();
    let mut params = vec![0.0f32; DIM + 1];
    let mut state = trainer.start(&params, 5).unwrap();
    let summary = trainer.run_keep_best(&mut params, &mut state).unwrap();
    assert_eq!(summary.test_weights, Some(TestWeights::Best));
    // `params` now holds the best weights: they reproduce the best validation score.
    let val = model.evaluate(&params, Split::Validation).unwrap();
    assert_eq!(val.score, summary.best.unwrap().score);
    let test = model.evaluate(&params, Split::Test).unwrap();
    assert_eq!(Some(test), summary.test);
}

/// Train `max_steps` steps in `dir`, optionally stopping after step `stop_after` (1-based count),
/// returning the recorder.
fn run_in(
    dir: &std::path::Path,
    algorithm: Algorithm,
    max_steps: u64,
    stop_after: Option<u64>,
    resume: bool,
) -> (Recorder, Vec<f32>, zo_train::Summary) {
    let recorder = Recorder::new();
    let flag = Arc::new(AtomicBool::new(false));
    let setter = flag.clone();
    let metrics = dir.join("metrics.jsonl");
    let writer = if resume {
        JsonlWriter::append(&metrics).unwrap()
    } else {
        JsonlWriter::create(&metrics).unwrap()
    };
    let cfg = TrainConfig {
        eval_every: 10,
        checkpoint_every: 10,
        patience: Some(100),
        ..config(max_steps)
    };
    let mut trainer = Trainer::new(optimizer(algorithm, 0.2), cfg, LogReg::new(4))
        .unwrap()
        .observe(recorder.clone())
        .observe(writer.metrics_only())
        .observe(move |e: &Event| {
            if let (Event::Step { report, .. }, Some(k)) = (e, stop_after)
                && report.step + 1 == k
            {
                setter.store(true, Ordering::SeqCst);
            }
            Ok(())
        })
        .output_dir(dir, false)
        .stop_flag(flag)
        .save_params_with(json_params());
    let (mut params, mut state) = if resume {
        let ck = trainer.resume().unwrap();
        let params: Vec<f32> = ck.params_json(dir).unwrap().unwrap();
        (params, ck.state)
    } else {
        let params = vec![0.0f32; DIM + 1];
        let state = trainer.start(&params, 11).unwrap();
        (params, state)
    };
    let summary = trainer.run(&mut params, &mut state).unwrap();
    (recorder, params, summary)
}

#[test]
fn resume_from_disk_is_bitwise_identical() {
    for algorithm in [Algorithm::Bszo, Algorithm::MezoAdam, Algorithm::Hizoo] {
        let whole = temp_dir(&format!("whole-{algorithm}"));
        let split = temp_dir(&format!("split-{algorithm}"));
        let (rec_a, params_a, sum_a) = run_in(&whole, algorithm, 60, None, false);
        let (rec_b1, _, sum_b1) = run_in(&split, algorithm, 60, Some(35), false);
        assert_eq!(sum_b1.reason, StopReason::StopFlag);
        assert_eq!(sum_b1.steps, 35);
        // Everything comes back from disk: parameters, optimizer and loop state.
        let (rec_b2, params_b, sum_b) = run_in(&split, algorithm, 60, None, true);

        assert_eq!(bits(&params_a), bits(&params_b), "{algorithm}: parameters");
        let ck_a = Checkpoint::load(&whole).unwrap();
        let ck_b = Checkpoint::load(&split).unwrap();
        assert_eq!(
            ck_a.state, ck_b.state,
            "{algorithm}: optimizer and loop state"
        );
        assert_eq!(
            serde_json::to_string(&ck_a.state.optimizer).unwrap(),
            serde_json::to_string(&ck_b.state.optimizer).unwrap()
        );
        let mut joined = rec_b1.metric_events();
        joined.extend(rec_b2.metric_events());
        assert_eq!(rec_a.metric_events(), joined, "{algorithm}: metrics stream");
        assert_eq!(sum_a, sum_b);
        for file in ["metrics.jsonl", SEED_LOG_FILE] {
            assert_eq!(
                std::fs::read(whole.join(file)).unwrap(),
                std::fs::read(split.join(file)).unwrap(),
                "{algorithm}: {file}"
            );
        }
        let log = read_seed_log(&whole.join(SEED_LOG_FILE)).unwrap();
        assert_eq!(log.len(), 60);
        assert!(
            log.iter()
                .enumerate()
                .all(|(i, e)| e.report.step == i as u64 && e.seed == 11)
        );
        // Only the latest parameter file (and, for optimizers with per-parameter state, the
        // latest state sidecar) is kept; no temporary files are left behind.
        let mut expected = vec![CHECKPOINT_FILE, "metrics.jsonl"];
        if algorithm != Algorithm::Bszo {
            expected.push("optimizer-state-00000060.safetensors");
        }
        expected.extend(["params-00000060.bin", SEED_LOG_FILE]);
        for dir in [&whole, &split] {
            assert_eq!(files(dir), expected);
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}

#[test]
fn a_nan_loss_names_the_step_and_keeps_the_last_checkpoint() {
    let dir = temp_dir("nan");
    let mut model = LogReg::new(1);
    // MeZO makes 2 forwards per step: call 24 is the first forward of step 12.
    model.nan_from_call = Some(24);
    let snapshot = Arc::new(std::sync::Mutex::new(Vec::new()));
    let snap = snapshot.clone();
    let ck_path = dir.join(CHECKPOINT_FILE);
    let watched = ck_path.clone();
    let cfg = TrainConfig {
        checkpoint_every: 5,
        ..config(100)
    };
    let mut trainer = Trainer::new(optimizer(Algorithm::Mezo, 0.1), cfg, model)
        .unwrap()
        .observe(move |e: &Event| {
            if let Event::Checkpoint { path, .. } = e {
                assert_eq!(path, &watched);
                *snap.lock().unwrap() = std::fs::read(path)?;
            }
            Ok(())
        })
        .output_dir(&dir, false)
        .save_params_with(json_params());
    let mut params = vec![0.0f32; DIM + 1];
    let mut state = trainer.start(&params, 3).unwrap();
    let err = trainer.run(&mut params, &mut state).unwrap_err();
    match &err {
        TrainError::NonFiniteLoss {
            step,
            forward,
            value,
            checkpoint,
        } => {
            assert_eq!((*step, *forward), (12, 1));
            assert!(value.is_nan());
            assert_eq!(checkpoint.as_deref(), Some(ck_path.as_path()));
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("step 12"), "{err}");
    // The checkpoint on disk is the one written after step 10, byte for byte.
    assert_eq!(std::fs::read(&ck_path).unwrap(), *snapshot.lock().unwrap());
    let ck = Checkpoint::load(&dir).unwrap();
    assert_eq!(ck.state.looping.step, 10);
    assert_eq!(ck.state.optimizer.step, 10);
    assert_eq!(
        files(&dir),
        [CHECKPOINT_FILE, "params-00000010.bin", SEED_LOG_FILE]
    );
    // The optimizer state in memory was not advanced by the failed step.
    assert_eq!(state.optimizer.step, 12);
    // Resuming cuts the seed log back to the checkpoint.
    let mut resumed = Trainer::new(optimizer(Algorithm::Mezo, 0.1), config(20), LogReg::new(1))
        .unwrap()
        .output_dir(&dir, false);
    let ck = resumed.resume().unwrap();
    assert_eq!(read_seed_log(&dir.join(SEED_LOG_FILE)).unwrap().len(), 10);
    let mut params: Vec<f32> = ck.params_json(&dir).unwrap().unwrap();
    let mut state = ck.state;
    let summary = resumed.run(&mut params, &mut state).unwrap();
    assert_eq!(summary.steps, 20);
    assert_eq!(read_seed_log(&dir.join(SEED_LOG_FILE)).unwrap().len(), 20);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_stop_flag_stops_after_the_current_step_with_a_resumable_checkpoint() {
    let dir = temp_dir("stop");
    let (recorder, params, summary) = run_in(&dir, Algorithm::Mezo, 60, Some(7), false);
    assert_eq!(summary.reason, StopReason::StopFlag);
    assert_eq!(summary.steps, 7);
    assert_eq!(summary.test, None);
    let events = recorder.events();
    assert!(matches!(events.last(), Some(Event::Stopped { step: 7 })));
    assert!(matches!(
        events[events.len() - 2],
        Event::Checkpoint { step: 7, .. }
    ));
    let ck = Checkpoint::load(&dir).unwrap();
    assert_eq!(ck.state.looping.step, 7);
    let saved: Vec<f32> = ck.params_json(&dir).unwrap().unwrap();
    assert_eq!(bits(&saved), bits(&params));
    let (_, _, summary) = run_in(&dir, Algorithm::Mezo, 60, None, true);
    assert_eq!(summary.reason, StopReason::MaxSteps);
    assert_eq!(summary.steps, 60);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_existing_checkpoint_is_not_overwritten_unless_asked() {
    let dir = temp_dir("overwrite");
    let make = |overwrite| {
        Trainer::new(optimizer(Algorithm::Mezo, 0.1), config(5), LogReg::new(1))
            .unwrap()
            .output_dir(&dir, overwrite)
    };
    let mut params = vec![0.0f32; DIM + 1];
    let mut t = make(false);
    let mut state = t.start(&params, 1).unwrap();
    t.run(&mut params, &mut state).unwrap();
    let before = std::fs::read(dir.join(CHECKPOINT_FILE)).unwrap();
    let err = make(false).start(&params, 1).unwrap_err();
    match &err {
        TrainError::OutputExists { path } => assert_eq!(path, &dir.join(CHECKPOINT_FILE)),
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains(CHECKPOINT_FILE));
    assert_eq!(std::fs::read(dir.join(CHECKPOINT_FILE)).unwrap(), before);
    // Allowed: the old checkpoint goes, a fresh run starts.
    let mut t = make(true);
    let mut params = vec![0.0f32; DIM + 1];
    let state = t.start(&params, 1).unwrap();
    assert_eq!(state.looping.step, 0);
    assert!(!dir.join(CHECKPOINT_FILE).exists());
    let mut state = state;
    t.run(&mut params, &mut state).unwrap();
    assert!(dir.join(CHECKPOINT_FILE).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_checkpoints_are_typed_errors_naming_the_file() {
    let dir = temp_dir("bad");
    let make = |cfg| {
        Trainer::new(optimizer(Algorithm::Mezo, 0.1), cfg, LogReg::new(1))
            .unwrap()
            .output_dir(&dir, false)
    };
    let path = dir.join(CHECKPOINT_FILE);
    assert!(matches!(
        make(config(5)).resume(),
        Err(TrainError::NoCheckpoint { path: p }) if p == path
    ));
    std::fs::write(&path, "{ not json").unwrap();
    let err = make(config(5)).resume().unwrap_err();
    assert!(matches!(&err, TrainError::BadFile { path: p, .. } if p == &path));
    assert!(err.to_string().contains(CHECKPOINT_FILE), "{err}");
    std::fs::remove_file(&path).unwrap();

    let mut params = vec![0.0f32; DIM + 1];
    let mut t = make(config(5));
    let mut state = t.start(&params, 1).unwrap();
    t.run(&mut params, &mut state).unwrap();
    let other_seed = TrainConfig {
        data_seed: 8,
        ..config(5)
    };
    let err = make(other_seed).resume().unwrap_err();
    assert!(
        matches!(
            &err,
            TrainError::Mismatch {
                field: "data_seed",
                ..
            }
        ),
        "{err}"
    );
    // A damaged seed log names its file and line.
    let mut log = std::fs::read(dir.join(SEED_LOG_FILE)).unwrap();
    log[..4].copy_from_slice(b"{x}\n");
    std::fs::write(dir.join(SEED_LOG_FILE), &log).unwrap();
    let err = make(config(5)).resume().unwrap_err();
    assert!(
        matches!(&err, TrainError::BadFile { path: p, .. } if p == &dir.join(SEED_LOG_FILE)),
        "{err}"
    );
    assert!(err.to_string().contains("line 1"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invalid_settings_are_rejected() {
    let bad = [
        TrainConfig {
            batch_size: 0,
            ..config(5)
        },
        TrainConfig {
            patience: Some(0),
            ..config(5)
        },
        TrainConfig {
            patience: Some(2),
            eval_every: 0,
            ..config(5)
        },
    ];
    for cfg in bad {
        assert!(matches!(
            Trainer::new(optimizer(Algorithm::Mezo, 0.1), cfg, LogReg::new(1)),
            Err(TrainError::Config { .. })
        ));
    }
}

#[test]
fn the_jsonl_writer_writes_one_object_per_line() {
    let recorder = Recorder::new();
    let out = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink = out.clone();
    let mut writer = JsonlWriter::new(Vec::new());
    let mut trainer = Trainer::new(optimizer(Algorithm::Bszo, 0.1), config(30), LogReg::new(1))
        .unwrap()
        .observe(recorder.clone())
        .observe(move |e: &Event| {
            use zo_train::Observer;
            writer.on_event(e)?;
            *sink.lock().unwrap() = writer_bytes(&writer);
            Ok(())
        });
    let mut params = vec![0.0f32; DIM + 1];
    let mut state = trainer.start(&params, 1).unwrap();
    trainer.run(&mut params, &mut state).unwrap();
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    let parsed: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed, recorder.events());
    // The starting weights' validation first, then the steps.
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with(r#"{"event":"evaluation","step":0,"split":"validation""#),
        "{text}"
    );
    assert!(lines.next().unwrap().starts_with(r#"{"event":"step""#));
}

fn writer_bytes(w: &JsonlWriter<Vec<u8>>) -> Vec<u8> {
    w.get_ref().clone()
}

/// Weights that a short MeZO run has made good on the task.
fn trained(model: &LogReg) -> Vec<f32> {
    let cfg = TrainConfig {
        eval_every: 0,
        ..config(300)
    };
    let mut trainer = Trainer::new(optimizer(Algorithm::Mezo, 0.5), cfg, model.clone()).unwrap();
    let mut params = vec![0.0f32; DIM + 1];
    let mut state = trainer.start(&params, 11).unwrap();
    trainer.run(&mut params, &mut state).unwrap();
    params
}

#[test]
fn when_no_step_beats_the_start_the_starting_weights_are_handed_back_bitwise() {
    let mut model = LogReg::new(2);
    let start = trained(&model);
    let start_val = model.evaluate(&start, Split::Validation).unwrap();
    let start_test = model.evaluate(&start, Split::Test).unwrap();
    assert!(start_val.score > 0.85, "{start_val:?}");
    // A learning rate this large throws the weights far away at every step.
    let cfg = TrainConfig {
        eval_every: 5,
        ..config(20)
    };
    for keep in ["memory", "replay"] {
        let dir = temp_dir(&format!("no-better-{keep}"));
        let recorder = Recorder::new();
        let mut trainer = Trainer::new(optimizer(Algorithm::Mezo, 1e4), cfg.clone(), model.clone())
            .unwrap()
            .output_dir(&dir, false)
            .observe(recorder.clone());
        let mut params = start.clone();
        let mut state = trainer.start(&params, 5).unwrap();
        let summary = match keep {
            "memory" => trainer.run_keep_best(&mut params, &mut state).unwrap(),
            _ => {
                let base = start.clone();
                trainer
                    .run_replay_best(&mut params, &mut state, |p| {
                        p.copy_from_slice(&base);
                        Ok(())
                    })
                    .unwrap()
            }
        };
        let scores = validation_scores(&recorder.events());
        assert_eq!(scores.len(), 5, "{keep}: step 0 and 4 evaluations");
        assert_eq!(scores[0], start_val.score);
        assert!(
            scores[1..].iter().all(|&s| s < start_val.score),
            "{keep}: every evaluation is worse than the start: {scores:?}"
        );
        let best = summary.best.unwrap();
        assert_eq!((best.step, best.score), (0, start_val.score), "{keep}");
        assert_eq!(summary.steps, 20);
        assert_eq!(summary.test_weights, Some(TestWeights::Best));
        assert_eq!(
            bits(&params),
            bits(&start),
            "{keep}: the starting weights, bitwise"
        );
        assert_eq!(summary.test.as_ref(), Some(&start_test), "{keep}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn given_starting_metrics_are_not_evaluated_again() {
    let model = LogReg::new(3);
    let mut counting = model.clone();
    let start = vec![0.0f32; DIM + 1];
    let given = counting.evaluate(&start, Split::Validation).unwrap();
    let recorder = Recorder::new();
    let cfg = TrainConfig {
        eval_every: 10,
        ..config(20)
    };
    let mut trainer = Trainer::new(optimizer(Algorithm::Mezo, 0.3), cfg.clone(), model.clone())
        .unwrap()
        .observe(recorder.clone())
        .start_validation(given.clone());
    let mut params = start.clone();
    let mut state = trainer.start(&params, 1).unwrap();
    let summary = trainer.run(&mut params, &mut state).unwrap();
    // Two evaluations and the test: the given step-0 metrics cost nothing.
    assert_eq!(summary.eval_forwards, 3 * given.forwards);
    let events = recorder.events();
    let first = events
        .iter()
        .find(|e| matches!(e, Event::Evaluation { .. }))
        .unwrap();
    assert!(matches!(
        first,
        Event::Evaluation {
            step: 0,
            split: Split::Validation,
            best: true,
            ..
        }
    ));
    assert_eq!(validation_scores(&events)[0], given.score);

    // The same run evaluating the start itself trains identically and counts one more evaluation.
    let mut other =
        Trainer::new(optimizer(Algorithm::Mezo, 0.3), cfg.clone(), model.clone()).unwrap();
    let mut params2 = start.clone();
    let mut state2 = other.start(&params2, 1).unwrap();
    let summary2 = other.run(&mut params2, &mut state2).unwrap();
    assert_eq!(bits(&params), bits(&params2));
    assert_eq!(summary2.eval_forwards, 4 * given.forwards);
    assert_eq!(summary.best, summary2.best);

    // Non-finite given metrics are refused, naming step 0.
    let mut bad = Trainer::new(optimizer(Algorithm::Mezo, 0.3), cfg, model)
        .unwrap()
        .start_validation(zo_train::Metrics {
            score: f64::NAN,
            ..given
        });
    let mut params3 = start.clone();
    let mut state3 = bad.start(&params3, 1).unwrap();
    let err = bad.run(&mut params3, &mut state3).unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::NonFiniteScore {
                step: 0,
                split: Split::Validation,
                ..
            }
        ),
        "{err}"
    );
}
