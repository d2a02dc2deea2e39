//! Rebuilding weights from the base weights and the seed log.

mod common;

use common::{DIM, LogReg, bits, temp_dir};
use zo_optim::{Algorithm, Estimator, Optimizer, Schedule, Variance};
use zo_train::{
    SEED_LOG_FILE, Split, TaskModel, TestWeights, TrainConfig, TrainError, Trainer, read_seed_log,
    replay,
};

fn optimizer(algorithm: Algorithm, lr: f64) -> Optimizer {
    let mut config = algorithm.config(1e-3);
    if let Estimator::KalmanSubspace(k) = &mut config.estimator {
        k.prior_variance = Variance::Value(1.0);
        k.noise_variance = Variance::Value(1e-2);
    }
    Optimizer::new(config, Schedule::constant(lr)).unwrap()
}

fn lr(algorithm: Algorithm) -> f64 {
    match algorithm {
        Algorithm::MezoAdam | Algorithm::ZoSgdSign => 0.01,
        _ => 0.2,
    }
}

fn config() -> TrainConfig {
    TrainConfig {
        max_steps: 60,
        batch_size: 16,
        data_seed: 3,
        eval_every: 10,
        patience: None,
        checkpoint_every: 0,
        row_sparse: false,
        shards: 1,
    }
}

#[test]
fn replaying_the_whole_log_rebuilds_the_final_weights_and_state_bit_for_bit() {
    for algorithm in Algorithm::ALL {
        let dir = temp_dir(&format!("replay-final-{}", algorithm.name()));
        let opt = optimizer(algorithm, lr(algorithm));
        let mut trainer = Trainer::new(opt.clone(), config(), LogReg::new(4))
            .unwrap()
            .output_dir(&dir, false);
        let base = vec![0.01f32; DIM + 1];
        let mut params = base.clone();
        let mut state = trainer.start(&params, 11).unwrap();
        trainer.run(&mut params, &mut state).unwrap();

        let log = read_seed_log(&dir.join(SEED_LOG_FILE)).unwrap();
        assert_eq!(log.len(), 60);
        let mut rebuilt = base.clone();
        let replayed = replay(&opt, &mut rebuilt, &log, 60).unwrap();
        assert_eq!(bits(&rebuilt), bits(&params), "{algorithm}");
        assert_eq!(replayed, state.optimizer, "{algorithm}");
        assert_ne!(
            bits(&rebuilt),
            bits(&base),
            "{algorithm}: the run moved the weights"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn replay_best_tests_the_same_weights_as_keeping_a_copy() {
    for algorithm in [
        Algorithm::Bszo,
        Algorithm::Mezo,
        Algorithm::MezoAdam,
        Algorithm::Hizoo,
    ] {
        let dir = temp_dir(&format!("replay-best-{}", algorithm.name()));
        let opt = optimizer(algorithm, lr(algorithm));
        let base = vec![0.0f32; DIM + 1];

        let mut kept = base.clone();
        let mut t1 = Trainer::new(opt.clone(), config(), LogReg::new(2)).unwrap();
        let mut s1 = t1.start(&kept, 5).unwrap();
        let sum1 = t1.run_keep_best(&mut kept, &mut s1).unwrap();

        let mut rebuilt = base.clone();
        let mut t2 = Trainer::new(opt, config(), LogReg::new(2))
            .unwrap()
            .output_dir(&dir, false);
        let mut s2 = t2.start(&rebuilt, 5).unwrap();
        let sum2 = t2
            .run_replay_best(&mut rebuilt, &mut s2, |p: &mut Vec<f32>| {
                p.clone_from(&base);
                Ok(())
            })
            .unwrap();
        assert_eq!(sum2.test_weights, Some(TestWeights::Best));
        assert_eq!(sum1.best, sum2.best, "{algorithm}");
        assert_eq!(bits(&kept), bits(&rebuilt), "{algorithm}");
        assert_eq!(sum1.test, sum2.test, "{algorithm}");
        let val = LogReg::new(2)
            .evaluate(&rebuilt, Split::Validation)
            .unwrap();
        assert_eq!(val.score, sum2.best.unwrap().score);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_log_from_another_optimizer_setting_is_refused() {
    let dir = temp_dir("replay-mismatch");
    let opt = optimizer(Algorithm::Mezo, 0.2);
    let mut trainer = Trainer::new(opt, config(), LogReg::new(1))
        .unwrap()
        .output_dir(&dir, false);
    let mut params = vec![0.0f32; DIM + 1];
    let mut state = trainer.start(&params, 1).unwrap();
    trainer.run(&mut params, &mut state).unwrap();
    let log = read_seed_log(&dir.join(SEED_LOG_FILE)).unwrap();

    // Another learning rate, another estimator, a log too short.
    let mut p = vec![0.0f32; DIM + 1];
    let err = replay(&optimizer(Algorithm::Mezo, 0.1), &mut p, &log, 5).unwrap_err();
    assert!(matches!(err, TrainError::Replay { step: 0, .. }), "{err}");
    let err = replay(&optimizer(Algorithm::Bszo, 0.2), &mut p, &log, 5).unwrap_err();
    assert!(matches!(err, TrainError::Replay { step: 0, .. }), "{err}");
    let err = replay(&optimizer(Algorithm::Mezo, 0.2), &mut p, &log, 61).unwrap_err();
    assert!(err.to_string().contains("holds 60 steps"), "{err}");

    // No output folder: refused before training.
    let mut t = Trainer::new(optimizer(Algorithm::Mezo, 0.2), config(), LogReg::new(1)).unwrap();
    let mut s = t.start(&params, 1).unwrap();
    let err = t
        .run_replay_best(&mut params, &mut s, |_| Ok(()))
        .unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::Config {
                field: "output_dir",
                ..
            }
        ),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
