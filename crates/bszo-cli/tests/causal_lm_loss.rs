//! `task.train_as_classification = false`: a causal LM trains on the language-model loss of the
//! correct continuation (MeZO's COPA setting), while evaluation still scores the candidates. With
//! SmolLM2-135M (skipped when it is not provisioned; required under `BSZO_REQUIRE_MODELS`).
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};

use bszo_cli::config::{ModelKind, ModelSection};
use bszo_cli::load;
use bszo_cli::task_model::{Head, PromptTask, causal_example};
use zo_data::{Example, NliTemplate, Protocol, Splits, Task};
use zo_models::Precision;
use zo_models::causal::{candidate_lm_loss, candidate_loss};
use zo_train::{Split, TaskModel};

fn smollm2() -> Option<PathBuf> {
    bszo_testkit::smollm2("causal LM loss")
}

/// Two COPA examples (val.jsonl lines 6 and 7 of the FewGLUE files).
fn copa() -> Vec<Example> {
    vec![
        Example::new(
            [
                "I doubted the salesman's pitch.",
                "I turned his offer down.",
                "He persuaded me to buy the product.",
                "effect",
            ],
            0,
        ),
        Example::new(
            [
                "I decided to stay home for the night.",
                "The forecast called for storms.",
                "My friends urged me to go out.",
                "cause",
            ],
            0,
        ),
    ]
}

fn loaded(path: &Path) -> load::Loaded {
    let section = ModelSection {
        name: path.display().to_string(),
        kind: Some(bszo_cli::config::ModelKind::Causal),
        precision: zo_models::Precision::F32,
        rounding: Default::default(),
        max_length: 128,
        tokenizer: None,
    };
    load::load(
        &section,
        Some(ModelKind::Causal),
        Precision::F32,
        Task::Copa,
        NliTemplate::default(),
    )
    .unwrap()
}

/// SPLADE-tiny loaded for SST-2 with its masked head.
fn splade_tiny_sst2(models: &Path) -> load::Loaded {
    let section = ModelSection {
        name: models.display().to_string(),
        kind: Some(ModelKind::Masked),
        precision: Precision::F32,
        rounding: Default::default(),
        max_length: 128,
        tokenizer: None,
    };
    load::load(
        &section,
        Some(ModelKind::Masked),
        Precision::F32,
        Task::Sst2,
        NliTemplate::default(),
    )
    .unwrap()
}

fn task(path: &Path, train_as_classification: bool) -> (PromptTask, zo_models::Weights) {
    let l = loaded(path);
    let splits = Splits {
        task: Task::Copa,
        protocol: Protocol::few_shot(42),
        train: copa(),
        validation: copa(),
        test: copa(),
    };
    let t = PromptTask::new(l.head, splits, 8)
        .unwrap()
        .with_train_as_classification(train_as_classification)
        .unwrap();
    (t, l.weights)
}

#[test]
fn copa_trains_on_the_correct_continuation_and_evaluates_the_candidates() {
    let Some(path) = smollm2() else {
        return;
    };
    // The expected losses, from the same model and the prompts encoded as the task encodes them.
    let reference = loaded(&path);
    let Head::Causal {
        model,
        tokenizer,
        prefix,
        max_length,
    } = &reference.head
    else {
        panic!("not a causal head");
    };
    let rows: Vec<_> = copa()
        .iter()
        .map(|e| causal_example(Task::Copa, e, tokenizer, prefix, Some(*max_length)).unwrap())
        .collect();
    let lm = candidate_lm_loss(model.as_ref(), &rows).unwrap();
    let ce = candidate_loss(model.as_ref(), &rows).unwrap();
    assert!(lm.is_finite() && ce.is_finite() && (lm - ce).abs() > 1e-3);

    let (mut as_lm, w) = task(&path, false);
    let got = as_lm.train_loss(&w, &[0, 1]).unwrap();
    assert!((got - lm).abs() < 1e-9, "{got} vs {lm}");
    let (mut as_ce, w2) = task(&path, true);
    let got = as_ce.train_loss(&w2, &[0, 1]).unwrap();
    assert!((got - ce).abs() < 1e-9, "{got} vs {ce}");
    // Evaluation scores the candidates either way.
    assert_eq!(
        as_lm.evaluate_split(Split::Test).unwrap(),
        as_ce.evaluate_split(Split::Test).unwrap()
    );
}

#[test]
fn a_masked_head_has_no_language_model_loss() {
    let Some(models) = bszo_testkit::splade_tiny("a_masked_head_has_no_language_model_loss") else {
        return;
    };
    let l = splade_tiny_sst2(&models);
    let ex = vec![Example::new(["a fine film ."], 1)];
    let splits = Splits {
        task: Task::Sst2,
        protocol: Protocol::few_shot(42),
        train: ex.clone(),
        validation: ex.clone(),
        test: ex,
    };
    let err = PromptTask::new(l.head, splits, 8)
        .unwrap()
        .with_train_as_classification(false)
        .err()
        .unwrap();
    assert!(err.to_string().contains("train_as_classification"), "{err}");
}

/// `train.shards`: a minibatch's loss assembled from its pieces' terms is the loss of the whole
/// minibatch bit for bit when there is one piece (whatever the loss: the candidates'
/// cross-entropy, the language-model loss, a masked LM's label words), and within float noise of it
/// for several.
#[test]
fn a_minibatch_in_one_piece_gives_its_loss_bit_for_bit() {
    use zo_train::LossTerms;
    let Some(path) = smollm2() else {
        return;
    };
    for classification in [false, true] {
        let (mut t, w) = task(&path, classification);
        let whole = t.train_loss(&w, &[0, 1]).unwrap();
        let one = t.train_terms(&w, &[0, 1]).unwrap();
        assert_eq!(LossTerms::loss([&one]).to_bits(), whole.to_bits());
        let (a, b) = (
            t.train_terms(&w, &[0]).unwrap(),
            t.train_terms(&w, &[1]).unwrap(),
        );
        let two = LossTerms::loss([&a, &b]);
        assert!(
            (two - whole).abs() <= 1e-5 * whole.abs(),
            "{two} vs {whole}"
        );
    }
    let Some(models) =
        bszo_testkit::splade_tiny("a_minibatch_in_one_piece_gives_its_loss_bit_for_bit")
    else {
        return;
    };
    let l = splade_tiny_sst2(&models);
    let ex = vec![
        Example::new(["a fine film ."], 1),
        Example::new(["a dull , tedious mess ."], 0),
        Example::new(["it never finds its footing , but the cast is a joy ."], 1),
    ];
    let splits = Splits {
        task: Task::Sst2,
        protocol: Protocol::few_shot(42),
        train: ex.clone(),
        validation: ex.clone(),
        test: ex,
    };
    let mut t = PromptTask::new(l.head, splits, 8).unwrap();
    let w = l.weights;
    let whole = t.train_loss(&w, &[0, 1, 2]).unwrap();
    let one = t.train_terms(&w, &[0, 1, 2]).unwrap();
    assert_eq!(one.count, 3);
    assert_eq!(LossTerms::loss([&one]).to_bits(), whole.to_bits());
    let (a, b) = (
        t.train_terms(&w, &[0, 1]).unwrap(),
        t.train_terms(&w, &[2]).unwrap(),
    );
    let two = LossTerms::loss([&a, &b]);
    assert!(
        (two - whole).abs() <= 1e-5 * whole.abs(),
        "{two} vs {whole}"
    );
}
