//! Presets, flags and bad input: every mistake is one line naming what is wrong, never a panic.

mod common;

use bszo_cli::RunConfig;
use bszo_cli::cli::{FinetuneArgs, ModelAndTask, Preset, run_config};
use bszo_cli::settings::Override;
use common::{bszo, scratch, stderr, stdout};
use zo_data::Task;
use zo_optim::{Algorithm, Estimator, ExtraSample, Schedule, UpdateRule};

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

/// The embedded preset with `sets` (`KEY=VALUE`) applied, as `bszo finetune --set …` would.
fn with_sets(sets: &[&str]) -> anyhow::Result<RunConfig> {
    let overrides: Vec<Override> = sets.iter().map(|s| s.parse().unwrap()).collect();
    run_config(None, &overrides)
}

#[test]
fn flags_override_the_preset_and_switching_optimizer_drops_its_settings() {
    let args = FinetuneArgs {
        optimizer: Some("mezo".into()),
        lr: Some(3e-5),
        eps: Some(1e-3),
        steps: Some(7),
        data: ModelAndTask {
            task: Some("rte".into()),
            ..ModelAndTask::default()
        },
        ..FinetuneArgs::default()
    };
    let c = args.to_config().unwrap();
    assert_eq!(c.optimizer.name, Algorithm::Mezo);
    assert!(
        matches!(c.optimizer.estimator, Estimator::Spsa { eps, samples: 1, .. } if eps == 1e-3),
        "BSZO's k and m are dropped with the algorithm: {:?}",
        c.optimizer.estimator
    );
    assert_eq!(c.optimizer.schedule, Schedule::constant(3e-5));
    assert_eq!(c.train.steps, 7);
    assert_eq!(c.task.name, Task::Rte);
    let r = c.resolve().unwrap();
    assert_eq!(r.optimizer.forwards_per_step(), 2);

    // The preset's eps survives a change of algorithm.
    let c = with_sets(&["optimizer.name=bszo_b"]).unwrap();
    assert!(
        matches!(c.optimizer.estimator, Estimator::KalmanSubspace(ks) if ks.eps == 1e-4 && ks.extra == ExtraSample::Fresh)
    );
    // FZOO's settings are keys of its own; σ needs at least two perturbed losses.
    let c = with_sets(&["optimizer.name=fzoo", "optimizer.estimator.samples=4"]).unwrap();
    assert_eq!(
        c.optimizer.estimator,
        Estimator::Fzoo {
            eps: 1e-4,
            samples: 4,
            std_floor: 1e-8,
        }
    );
    assert_eq!(c.optimizer.rule, UpdateRule::Sgd { weight_decay: 0.0 });
    assert_eq!(c.resolve().unwrap().optimizer.forwards_per_step(), 5);
    let e = with_sets(&["optimizer.name=fzoo", "optimizer.estimator.samples=1"])
        .unwrap()
        .resolve()
        .unwrap_err()
        .to_string();
    assert!(e.contains("`samples` must be at least 2"), "{e}");

    let r = with_sets(&["optimizer.estimator.k=4", "optimizer.estimator.m=5"])
        .unwrap()
        .resolve()
        .unwrap();
    assert_eq!(r.optimizer.forwards_per_step(), 5, "1 + k forwards");
    // m must be at least k; the error names both.
    let e = with_sets(&["optimizer.estimator.k=4"])
        .unwrap()
        .resolve()
        .unwrap_err()
        .to_string();
    assert!(e.contains("m = 3") && e.contains("k = 4"), "{e}");
}

#[test]
fn one_name_per_knob_the_libraries_own() {
    // Every estimator and rule field of every algorithm is a key, under the library's name,
    // and the completed section round-trips through TOML to the same optimizer.
    for algorithm in Algorithm::ALL {
        let c = with_sets(&[&format!("optimizer.name={algorithm}")]).unwrap();
        let config = algorithm.config(1e-4);
        assert_eq!(c.optimizer.estimator, config.estimator, "{algorithm}");
        assert_eq!(c.optimizer.rule, config.rule, "{algorithm}");
        assert_eq!(RunConfig::from_toml(&c.to_toml(), "x").unwrap(), c);
        let keys = bszo_cli::settings::algorithm_settings(algorithm, 1e-4);
        assert!(!keys.is_empty(), "{algorithm}");
        // Each listed key is settable (to its own default) through --set.
        for (key, value) in keys {
            let set = format!("optimizer.{key}={value}");
            let again = with_sets(&[&format!("optimizer.name={algorithm}"), &set])
                .unwrap_or_else(|e| panic!("{set}: {e:#}"));
            assert_eq!(again, c, "{set}");
        }
    }
    // A typed change through the library's own names.
    let c = with_sets(&[
        "optimizer.name=mezo_adam",
        "optimizer.rule.beta1=0.8",
        "optimizer.rule.eps=1e-6",
        "optimizer.schedule.kind=cosine",
        "optimizer.schedule.end_lr=1e-6",
    ])
    .unwrap();
    assert!(
        matches!(c.optimizer.rule, UpdateRule::Adam { beta1, eps, .. } if beta1 == 0.8 && eps == 1e-6)
    );
    assert_eq!(
        c.optimizer.schedule,
        Schedule::Cosine {
            lr: 3e-4,
            end_lr: 1e-6,
            total_steps: 4000
        },
        "a decaying schedule runs over train.steps"
    );
}

#[test]
fn prompt_settings_default_to_lm_bff_and_candidate_training() {
    let r = RunConfig::embedded_default().resolve().unwrap();
    assert_eq!(r.nli_template, zo_data::NliTemplate::LmBff);
    assert!(r.train_as_classification);
    let c = with_sets(&[
        "task.name=copa",
        "model.name=smollm2-135m",
        "model.kind=causal",
        "task.nli_template=spaced",
        "task.train_as_classification=false",
    ])
    .unwrap();
    assert_eq!(c.task.nli_template, zo_data::NliTemplate::Spaced);
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
        &["finetune", "--set", "task.protocol.kind=zero", "--out", o],
        "task.protocol",
    );
    fails_with(
        &[
            "finetune",
            "--set",
            "task.protocol.kind=few_shot",
            "--set",
            "task.protocol.seed=7",
            "--out",
            o,
        ],
        "task.protocol.seed",
    );
    fails_with(
        &["finetune", "--set", "model.precision=f8", "--out", o],
        "precision",
    );
    // The key is named once, at the start.
    for (args, key) in [
        (["--set", "model.precision=f8"], "model.precision"),
        (["--peft", "lorax"], "peft.method"),
    ] {
        let err = stderr(&bszo(&["finetune", args[0], args[1], "--out", o]));
        assert!(err.contains(&format!("{key}: unknown variant")), "{err}");
        assert_eq!(err.matches(key).count(), 1, "{err}");
    }
    fails_with(&["finetune", "--lr=-1", "--out", o], "lr");
    fails_with(
        &["finetune", "--set", "train.batch_size=0", "--out", o],
        "batch_size",
    );
    fails_with(
        &[
            "finetune",
            "--optimizer",
            "mezo",
            "--set",
            "optimizer.estimator.k=3",
            "--out",
            o,
        ],
        "optimizer.estimator.k: mezo's estimator has no setting `k`",
    );
    fails_with(
        &[
            "finetune",
            "--set",
            "optimizer.estimator.rank=2",
            "--out",
            o,
        ],
        "optimizer.estimator.rank: bszo's estimator has no setting `rank`",
    );
    fails_with(
        &[
            "finetune",
            "--set",
            "optimizer.estimator.k=four",
            "--out",
            o,
        ],
        "optimizer.estimator.k: invalid type",
    );
    fails_with(
        &["finetune", "--set", "optimizer.rule.kind=adam", "--out", o],
        "optimizer.rule.kind",
    );
    fails_with(&["finetune", "--set", "train.stepz=3", "--out", o], "stepz");
    fails_with(
        &[
            "finetune",
            "--optimizer",
            "mezo_adam",
            "--set",
            "optimizer.rule.eps=-1",
            "--out",
            o,
        ],
        "optimizer.rule: `eps` must be a finite number > 0",
    );
    fails_with(&["finetune", "--set", "optimizer", "--out", o], "KEY=VALUE");
    fails_with(
        &[
            "finetune",
            "--set",
            "optimizer.estimator.prior_variance=big",
            "--out",
            o,
        ],
        "big",
    );
    fails_with(&["finetune", "--steps", "ten"], "ten");
    fails_with(
        &["finetune", "--set", "task.nli_template=gpt3", "--out", o],
        "task.nli_template",
    );
    fails_with(
        &[
            "finetune",
            "--set",
            "model.kind=masked",
            "--set",
            "task.train_as_classification=false",
            "--out",
            o,
        ],
        "task.train_as_classification",
    );
    fails_with(
        &[
            "finetune",
            "--set",
            "task.train_as_classification=maybe",
            "--out",
            o,
        ],
        "maybe",
    );
    fails_with(&["zero-shot", "--task", "sst3"], "sst3");
    fails_with(
        &["zero-shot", "--set", "task.nli_template=gpt3"],
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
        "--optimizer",
        "--lr",
        "--eps",
        "--steps",
        "--seed",
        "--set",
        "--out",
        "--resume",
        "--overwrite",
        "--config",
        // Every setting is listed with its default, the optimizer's per algorithm.
        "model.max_length = 64",
        "task.protocol.kind = \"sampled\"",
        "task.nli_template = \"lm-bff\"",
        "task.train_as_classification = true",
        "optimizer.schedule.lr = 3e-4",
        "train.eval_every = 200",
        "estimator.k = 2",
        "estimator.rank = 2",
        "rule.beta1 = 0.9",
        "lozo:",
        "hizoo:",
        "fzoo:",
        "estimator.std_floor",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
    let out = bszo(&["zero-shot", "--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    for needle in ["--model", "--task", "--set", "--config", "--json"] {
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
    assert_eq!(c.optimizer.name, Algorithm::Hizoo);
    assert_eq!(c.optimizer.schedule, Schedule::constant(1e-5));
    assert!(
        matches!(c.optimizer.estimator, Estimator::Hessian { eps, alpha, .. } if eps == 1e-4 && (alpha / 1e-10 - 1.0).abs() < 1e-12),
        "HiZOO's alpha follows the preset's eps: {:?}",
        c.optimizer.estimator
    );
}

/// The BSZO authors' switches and the BSZO paper's HiZOO setting are expressible as flags and
/// presets, with the right forward counts; they are refused for algorithms that lack them.
#[test]
fn official_switches_and_the_paper_hizoo_rerun() {
    use zo_optim::{Difference, Estimator, ExtraSample};
    let args = FinetuneArgs {
        preset: Preset {
            config: None,
            set: ["difference=central", "extra=requery", "alpha=0.0"]
                .iter()
                .map(|s| format!("optimizer.estimator.{s}").parse().unwrap())
                .collect(),
        },
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
    let fw = |sets: &[&str]| {
        with_sets(sets)
            .unwrap()
            .resolve()
            .unwrap()
            .optimizer
            .forwards_per_step()
    };
    assert_eq!(fw(&["optimizer.name=nspsa"]), 8);
    assert_eq!(
        fw(&["optimizer.name=nspsa", "optimizer.estimator.one_sided=true"]),
        5
    );

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
            "--set",
            "optimizer.estimator.difference=central",
            "--out",
            o,
        ],
        "difference",
    );
    fails_with(
        &[
            "finetune",
            "--set",
            "optimizer.estimator.difference=sideways",
            "--out",
            o,
        ],
        "sideways",
    );
    fails_with(
        &[
            "finetune",
            "--set",
            "optimizer.estimator.extra=often",
            "--out",
            o,
        ],
        "often",
    );
    fails_with(
        &[
            "finetune",
            "--set",
            "optimizer.estimator.alpha=1",
            "--out",
            o,
        ],
        "alpha",
    );
    assert!(!out.exists());
}
