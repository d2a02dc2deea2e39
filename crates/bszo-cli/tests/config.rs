//! Presets, flags and bad input: every mistake is one line naming what is wrong, never a panic.

mod common;

use bszo_cli::RunConfig;
use bszo_cli::cli::FinetuneArgs;
use common::{bszo, scratch, stderr, stdout};

#[test]
fn every_preset_parses_and_resolves_and_the_default_is_embedded() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let c = RunConfig::load(&path).unwrap();
            c.resolve()
                .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(names.contains(&"default.toml".to_string()), "{names:?}");
    assert!(names.len() >= 3, "{names:?}");
    let default = RunConfig::embedded_default();
    assert_eq!(default, RunConfig::load(&dir.join("default.toml")).unwrap());
    let r = default.resolve().unwrap();
    assert_eq!(r.task, zo_data::Task::Sst2);
    assert_eq!(r.optimizer.forwards_per_step(), 3, "BSZO k = 2, m = 3");
    // Round trip through the TOML the run folder keeps.
    assert_eq!(
        RunConfig::from_toml(&default.to_toml(), "x").unwrap(),
        default
    );
}

#[test]
fn flags_override_the_preset_and_switching_optimizer_drops_its_settings() {
    let args = FinetuneArgs {
        optimizer: Some("mezo".into()),
        lr: Some(3e-5),
        steps: Some(7),
        task: Some("rte".into()),
        ..FinetuneArgs::default()
    };
    let c = args.to_config().unwrap();
    assert_eq!(c.optimizer.name, "mezo");
    assert_eq!(
        c.optimizer.k, None,
        "BSZO's k is dropped with the algorithm"
    );
    assert_eq!(c.optimizer.lr, 3e-5);
    assert_eq!(c.train.steps, 7);
    let r = c.resolve().unwrap();
    assert_eq!(r.optimizer.forwards_per_step(), 2);

    let args = FinetuneArgs {
        k: Some(4),
        ..FinetuneArgs::default()
    };
    let r = args.to_config().unwrap().resolve().unwrap();
    assert_eq!(
        r.optimizer.forwards_per_step(),
        5,
        "k = 4 gives m = 5 unless m is set"
    );
}

#[test]
fn prompt_settings_default_to_lm_bff_and_candidate_training() {
    let r = RunConfig::embedded_default().resolve().unwrap();
    assert_eq!(r.nli_template, zo_data::NliTemplate::LmBff);
    assert!(r.train_as_classification);
    let args = FinetuneArgs {
        task: Some("copa".into()),
        model: Some("smollm2-135m".into()),
        model_kind: Some("causal".into()),
        nli_template: Some("spaced".into()),
        train_as_classification: Some(false),
        ..FinetuneArgs::default()
    };
    let c = args.to_config().unwrap();
    assert_eq!(c.task.nli_template, "spaced");
    assert!(!c.task.train_as_classification);
    let r = c.resolve().unwrap();
    assert_eq!(r.nli_template, zo_data::NliTemplate::Spaced);
    assert!(!r.train_as_classification);
    // The settings round-trip through the run folder's TOML.
    assert_eq!(RunConfig::from_toml(&c.to_toml(), "x").unwrap(), c);
}

/// Run `bszo` with `args`; it must fail with exactly one line on stderr containing `needle`.
fn fails_with(args: &[&str], needle: &str) {
    let out = bszo(args);
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "{args:?} succeeded: {}",
        stdout(&out)
    );
    assert_ne!(out.status.code(), Some(101), "{args:?} panicked: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: not one line:\n{err}"
    );
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
}

#[test]
fn bad_input_is_one_line_naming_what_is_wrong() {
    let dir = scratch("bad-input");
    let out = dir.join("run");
    let o = out.to_str().unwrap();
    fails_with(&["finetune", "--task", "sst3", "--out", o], "sst3");
    fails_with(&["finetune", "--optimizer", "adamw", "--out", o], "adamw");
    fails_with(
        &["finetune", "--protocol", "zero", "--out", o],
        "task.protocol",
    );
    fails_with(
        &[
            "finetune",
            "--protocol",
            "few-shot",
            "--data-seed",
            "7",
            "--out",
            o,
        ],
        "task.data_seed",
    );
    fails_with(&["finetune", "--precision", "f8", "--out", o], "precision");
    fails_with(&["finetune", "--lr=-1", "--out", o], "lr");
    fails_with(&["finetune", "--batch-size", "0", "--out", o], "batch_size");
    fails_with(
        &["finetune", "--optimizer", "mezo", "--k", "3", "--out", o],
        "optimizer.k does not apply to mezo",
    );
    fails_with(
        &["finetune", "--rank", "2", "--out", o],
        "optimizer.rank does not apply to bszo",
    );
    fails_with(&["finetune", "--prior-variance", "big", "--out", o], "big");
    fails_with(&["finetune", "--steps", "ten"], "ten");
    fails_with(
        &["finetune", "--nli-template", "gpt3", "--out", o],
        "task.nli_template",
    );
    fails_with(
        &[
            "finetune",
            "--model-kind",
            "masked",
            "--train-as-classification",
            "false",
            "--out",
            o,
        ],
        "task.train_as_classification",
    );
    fails_with(
        &["finetune", "--train-as-classification", "maybe", "--out", o],
        "maybe",
    );
    fails_with(&["zero-shot", "--task", "sst3"], "sst3");
    fails_with(
        &["zero-shot", "--nli-template", "gpt3"],
        "task.nli_template",
    );
    fails_with(&["finetune", "--no-such-flag"], "--no-such-flag");
    fails_with(
        &["finetune", "--model", "/nonexistent/model", "--out", o],
        "/nonexistent/model",
    );
    fails_with(
        &["finetune", "--config", "no-such-preset"],
        "no-such-preset",
    );
    fails_with(&["finetune", "--resume", "--out", o], "no checkpoint");
    fails_with(
        &["export", "--run", o, "--out", "x.safetensors"],
        "config.toml",
    );

    // Malformed presets name the file and the field.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[model]\nname = \"splade-tiny\"\n[task\n").unwrap();
    fails_with(&["finetune", "--config", bad.to_str().unwrap()], "bad.toml");
    let unknown = dir.join("unknown.toml");
    let text = bszo_cli::DEFAULT_TOML.replace("[train]", "[train]\nlearning_rate = 1.0");
    std::fs::write(&unknown, text).unwrap();
    fails_with(
        &["finetune", "--config", unknown.to_str().unwrap()],
        "learning_rate",
    );
    let missing = dir.join("missing.toml");
    std::fs::write(&missing, "[model]\nname = \"x\"\n").unwrap();
    fails_with(
        &["finetune", "--config", missing.to_str().unwrap()],
        "missing.toml",
    );
    assert!(!out.exists(), "nothing was created for rejected runs");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_explains_every_group_of_flags() {
    let out = bszo(&["finetune", "--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    for needle in [
        "--model",
        "--task",
        "--protocol",
        "--optimizer",
        "--lr",
        "--eps",
        "--k",
        "--m",
        "--noise-ema",
        "--hizoo-alpha",
        "--rank",
        "--precision",
        "--steps",
        "--batch-size",
        "--eval-every",
        "--seed",
        "--out",
        "--resume",
        "--overwrite",
        "--config",
        "--nli-template",
        "--train-as-classification",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
    let out = bszo(&["zero-shot", "--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    for needle in [
        "--model",
        "--task",
        "--test-size",
        "--nli-template",
        "--json",
    ] {
        assert!(help.contains(needle), "zero-shot --help lacks {needle}");
    }
}

#[test]
fn print_config_shows_the_resolved_toml() {
    let out = bszo(&[
        "finetune",
        "--print-config",
        "--optimizer",
        "hizoo",
        "--lr",
        "1e-5",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let c = RunConfig::from_toml(&stdout(&out), "stdout").unwrap();
    assert_eq!(c.optimizer.name, "hizoo");
    assert_eq!(c.optimizer.lr, 1e-5);
}

/// The BSZO authors' switches and the BSZO paper's HiZOO setting are expressible as flags and
/// presets, with the right forward counts; they are refused for algorithms that lack them.
#[test]
fn official_switches_and_the_paper_hizoo_rerun() {
    use zo_optim::{Difference, Estimator, ExtraSample};
    let args = FinetuneArgs {
        difference: Some("central".into()),
        extra_sample: Some("requery".into()),
        noise_ema: Some(0.0),
        ..FinetuneArgs::default()
    };
    let r = args.to_config().unwrap().resolve().unwrap();
    assert_eq!(
        r.optimizer.forwards_per_step(),
        1 + 2 * 3,
        "f0 + 2 per query, m = 3"
    );
    match r.optimizer.config().estimator {
        Estimator::KalmanSubspace(ks) => {
            assert_eq!(ks.difference, Difference::Central);
            assert_eq!(ks.extra, ExtraSample::Requery);
            assert_eq!(ks.alpha, 0.0);
        }
        other => panic!("{other:?}"),
    }
    // n-SPSA is two-point by default (2n forwards); one-sided on request (1 + n).
    let nspsa = |one_sided| FinetuneArgs {
        optimizer: Some("nspsa".into()),
        one_sided,
        ..FinetuneArgs::default()
    };
    let fw = |a: FinetuneArgs| {
        a.to_config()
            .unwrap()
            .resolve()
            .unwrap()
            .optimizer
            .forwards_per_step()
    };
    assert_eq!(fw(nspsa(None)), 8);
    assert_eq!(fw(nspsa(Some(true))), 5);

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let alpha = |preset: &str| {
        let c = RunConfig::load(&dir.join(preset))
            .unwrap()
            .resolve()
            .unwrap();
        match c.optimizer.config().estimator {
            Estimator::Hessian { eps, alpha, .. } => (eps, alpha),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(alpha("paper-hizoo-rerun.toml"), (1e-4, 1e-8));
    assert_eq!(alpha("paper-hizoo.toml"), (1e-4, 1e-10));

    let dir = scratch("switches");
    let out = dir.join("run");
    let o = out.to_str().unwrap();
    fails_with(
        &[
            "finetune",
            "--optimizer",
            "mezo",
            "--difference",
            "central",
            "--out",
            o,
        ],
        "difference",
    );
    fails_with(
        &["finetune", "--difference", "sideways", "--out", o],
        "sideways",
    );
    fails_with(
        &["finetune", "--extra-sample", "often", "--out", o],
        "often",
    );
    fails_with(&["finetune", "--noise-ema", "1", "--out", o], "alpha");
    assert!(!out.exists());
}
