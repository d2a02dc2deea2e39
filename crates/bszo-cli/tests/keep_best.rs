//! `Trainer::run_keep_best_with` on a real model's `Weights`: the test split sees the best step's
//! weights, not the final ones. A copy that shares the tensors' storage (what a candle `Tensor`
//! clone does) would keep an alias of the live weights, and the test would see the final weights
//! while they are reported as the best.

use std::path::Path;

use candle_core::DType;
use zo_models::{Precision, Weights, load_causal_lm};
use zo_optim::{Algorithm, ObjectiveError, Optimizer, ParamSet, Schedule};
use zo_train::{Metrics, RunDir, Split, TaskModel, TestWeights, TrainConfig, Trainer};

/// The tensor whose values make the loss and the test score.
const PROBE: &str = "model.norm.weight";

/// A fingerprint of the weights: the sum of squares of the probe tensor, as the model would read
/// it (through the optimizer's probe view).
fn fingerprint(w: &Weights) -> Result<f64, ObjectiveError> {
    let t = w.current(PROBE)?.ok_or("no probe tensor")?;
    Ok(f64::from(
        t.to_dtype(DType::F32)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f32>()?,
    ))
}

/// Every weight's bits, in order.
fn bits(w: &Weights) -> Vec<Vec<u32>> {
    w.iter()
        .map(|(_, t)| {
            t.flatten_all()
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect()
        })
        .collect()
}

/// The loss is the fingerprint (so steps move the weights); validation scores are scripted so that
/// the first evaluation after step 0 is the best; the test score is the fingerprint of the weights
/// it is given.
struct Scripted {
    validations: usize,
}

const VALIDATION: [f64; 4] = [0.1, 0.9, 0.2, 0.3];

impl TaskModel<Weights> for Scripted {
    fn num_train(&self) -> usize {
        4
    }
    fn train_loss(&mut self, params: &Weights, _batch: &[usize]) -> Result<f64, ObjectiveError> {
        fingerprint(params)
    }
    fn evaluate(&mut self, params: &Weights, split: Split) -> Result<Metrics, ObjectiveError> {
        let score = match split {
            Split::Validation => {
                self.validations += 1;
                VALIDATION[(self.validations - 1).min(VALIDATION.len() - 1)]
            }
            Split::Test => fingerprint(params)?,
        };
        Ok(Metrics {
            score,
            ..Metrics::default()
        })
    }
}

fn base(model: &Path) -> Weights {
    load_causal_lm(model, Precision::F32).unwrap().1
}

/// Train 6 steps (validation every 2) with the given copy; the summary, the weights afterwards and
/// the run folder.
fn train(
    model: &Path,
    tag: &str,
    copy: impl FnMut(&Weights) -> Result<Weights, ObjectiveError>,
) -> (zo_train::Summary, Weights, RunDir, Optimizer) {
    let dir = std::env::temp_dir().join(format!("bszo-keep-best-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let optimizer = Optimizer::new(Algorithm::Mezo.config(1e-3), Schedule::constant(1e-2)).unwrap();
    let config = TrainConfig {
        max_steps: 6,
        batch_size: 2,
        eval_every: 2,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(optimizer.clone(), config, Scripted { validations: 0 })
        .unwrap()
        .output_dir(&dir, false);
    let mut weights = base(model);
    let mut state = trainer.start(&weights, 3).unwrap();
    let summary = trainer
        .run_keep_best_with(&mut weights, &mut state, copy)
        .unwrap();
    (summary, weights, RunDir::new(dir), optimizer)
}

#[test]
fn keep_best_on_weights_tests_the_best_step_not_the_final_one() {
    let model = bszo_testkit::stories260k().join("stories260K.bin");
    let (summary, kept, run, optimizer) = train(&model, "deep", |w| Ok(w.deep_copy()?));
    let best = summary.best.unwrap();
    assert_eq!((best.step, best.score), (2, 0.9));
    assert_eq!(summary.steps, 6);
    assert_eq!(summary.test_weights, Some(TestWeights::Best));

    // The weights of the best step and of the last, rebuilt from the seed log.
    let at = |steps| {
        run.weights_at(&optimizer, steps, || Ok(base(&model)))
            .unwrap()
            .0
    };
    let (best_weights, final_weights) = (at(best.step), at(summary.steps));
    assert_ne!(bits(&best_weights), bits(&final_weights), "the steps moved");
    assert_eq!(bits(&kept), bits(&best_weights));
    let test = summary.test.unwrap().score;
    assert_eq!(test, fingerprint(&best_weights).unwrap());
    assert_ne!(test, fingerprint(&final_weights).unwrap());

    // A "copy" that shares the storage follows the live weights to the end: the final weights
    // are tested while reported as the best. The deep copy above is what tells them apart.
    let (aliased, _, _, _) = train(&model, "alias", |w| {
        let mut alias = Weights::new();
        for (info, t) in w.iter() {
            alias.insert_with_decay(info.name.clone(), t.clone(), info.decay)?;
        }
        Ok(alias)
    });
    assert_eq!(aliased.best, summary.best);
    assert_eq!(
        aliased.test.unwrap().score,
        fingerprint(&final_weights).unwrap()
    );
    assert_eq!(kept.num_params(), best_weights.num_params());
    let _ = std::fs::remove_dir_all(run.path());
}
