//! `task.calibrate`: the setting, and evaluation with calibration on the real tiny models —
//! the uncalibrated metrics bitwise those of a run without it, the calibrated ones beside them,
//! the calibration forwards counted.

mod common;

use bszo_cli::cli::run_config;
use bszo_cli::config::{Calibration, RunConfig};
use bszo_cli::report::{CALIBRATED_ACCURACY, CALIBRATED_MACRO_F1};
use bszo_cli::settings::Override;
use bszo_cli::zero_shot::{ZeroShotReport, zero_shot};
use common::{bszo, data_dir, real_assets, scratch, stderr, stdout};
use zo_train::Metrics;

/// The shipped stories260K and SST-2 data (never skipped), with the workspace root as the
/// current folder (where `stories260k` resolves).
fn shipped_assets() {
    std::env::set_current_dir(common::workspace()).unwrap();
    bszo_testkit::stories260k();
    bszo_testkit::shipped(data_dir().join("sst2"));
}

fn config(sets: &[&str]) -> anyhow::Result<RunConfig> {
    let overrides: Vec<Override> = sets.iter().map(|s| s.parse().unwrap()).collect();
    run_config(None, &overrides)
}

#[test]
fn the_setting_defaults_to_none_parses_and_names_itself_on_a_bad_value() {
    let c = RunConfig::embedded_default();
    assert_eq!(c.task.calibrate, Calibration::None);
    assert_eq!(c.resolve().unwrap().calibrate, Calibration::None);
    // Off, the run folder's configuration is what it was before the setting existed.
    assert!(!c.to_toml().contains("calibrate"), "{}", c.to_toml());

    let c = config(&["task.calibrate=content_free"]).unwrap();
    assert_eq!(c.task.calibrate, Calibration::ContentFree);
    assert_eq!(c.resolve().unwrap().calibrate, Calibration::ContentFree);
    assert!(c.to_toml().contains("calibrate = \"content_free\""));
    assert_eq!(RunConfig::from_toml(&c.to_toml(), "x").unwrap(), c);
    assert_eq!(
        config(&["task.calibrate=none"]).unwrap().task.calibrate,
        Calibration::None
    );
    for (c, name) in Calibration::ALL.into_iter().zip(["none", "content_free"]) {
        assert_eq!(c.name(), name);
        assert_eq!(c.to_string(), name);
    }

    let err = format!("{:#}", config(&["task.calibrate=sfc_please"]).unwrap_err());
    assert!(err.starts_with("task.calibrate: "), "{err}");
    assert!(
        err.contains("sfc_please") && err.contains("content_free"),
        "{err}"
    );
    let err = format!("{:#}", config(&["task.calibrate=1"]).unwrap_err());
    assert!(err.starts_with("task.calibrate: "), "{err}");

    // The binary: one line naming the field; `--calibrate` sets it.
    let out = bszo(&["zero-shot", "--set", "task.calibrate=yes"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("task.calibrate"), "{err}");
    let out = bszo(&["finetune", "--calibrate", "--print-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("calibrate = \"content_free\""));
    let out = bszo(&["finetune", "--help"]);
    assert!(stdout(&out).contains("--calibrate"));
    assert!(stdout(&out).contains("task.calibrate"));
}

/// `zero-shot` of `model` on SST-2's first `n` test sentences, with and without calibration.
fn both(model: &str, n: usize) -> (ZeroShotReport, ZeroShotReport) {
    let data = data_dir().display().to_string();
    let test_size = format!("task.test_size={n}");
    let base = [
        format!("model.name={model}"),
        "task.name=sst2".into(),
        format!("task.data_dir={data}"),
        "task.protocol.kind=few_shot".into(),
        "task.protocol.seed=42".into(),
        "task.eval_batch_size=8".into(),
        test_size,
    ];
    let sets: Vec<&str> = base.iter().map(String::as_str).collect();
    let plain = zero_shot(&config(&sets).unwrap(), true).unwrap();
    let mut on = sets.clone();
    on.push("task.calibrate=content_free");
    let calibrated = zero_shot(&config(&on).unwrap(), true).unwrap();
    (plain, calibrated)
}

/// The uncalibrated metrics bitwise those of the plain run, the calibrated ones present, and
/// `extra` forwards for the references.
fn check(plain: &Metrics, calibrated: &Metrics, extra: u64) {
    assert_eq!(calibrated.score.to_bits(), plain.score.to_bits());
    assert_eq!(
        calibrated.loss.unwrap().to_bits(),
        plain.loss.unwrap().to_bits()
    );
    assert_eq!(calibrated.extra["macro_f1"], plain.extra["macro_f1"]);
    assert!(!plain.extra.contains_key(CALIBRATED_ACCURACY));
    let acc = calibrated.extra[CALIBRATED_ACCURACY];
    let f1 = calibrated.extra[CALIBRATED_MACRO_F1];
    assert!((0.0..=1.0).contains(&acc), "{acc}");
    assert!((0.0..=1.0).contains(&f1), "{f1}");
    assert_eq!(calibrated.forwards, plain.forwards + extra);
}

#[test]
fn a_causal_lm_reports_sfc_calibrated_metrics_beside_the_unchanged_ones() {
    shipped_assets();
    // 20 sentences in 3 batches of 8; SST-2's SFC prompt is the same for all: one forward.
    let (plain, calibrated) = both("stories260k", 20);
    assert_eq!(plain.test.forwards, 3);
    check(&plain.test, &calibrated.test, 1);
    check(
        plain.validation.as_ref().unwrap(),
        calibrated.validation.as_ref().unwrap(),
        1,
    );
}

#[test]
fn a_masked_lm_reports_content_free_calibrated_metrics_beside_the_unchanged_ones() {
    if !real_assets("a_masked_lm_reports_content_free_calibrated_metrics") {
        return;
    }
    let model = bszo_testkit::splade_tiny("a_masked_lm_reports_content_free_calibrated_metrics")
        .unwrap()
        .display()
        .to_string();
    let (plain, calibrated) = both(&model, 20);
    check(&plain.test, &calibrated.test, 1);
    check(
        plain.validation.as_ref().unwrap(),
        calibrated.validation.as_ref().unwrap(),
        1,
    );
}

#[test]
fn a_calibrated_fine_tune_trains_the_same_and_reports_both() {
    shipped_assets();
    let dir = scratch("calib-finetune");
    let data = data_dir().display().to_string();
    let run = |name: &str, calibrate: bool| {
        let out_dir = dir.join(name);
        let mut args = vec![
            "finetune",
            "--model",
            "stories260k",
            "--task",
            "sst2",
            "--data-dir",
            &data,
            "--optimizer",
            "mezo",
            "--lr",
            "1e-3",
            "--eps",
            "1e-3",
            "--steps",
            "4",
            "--no-plots",
            "--no-progress",
            "--no-export",
            "--set",
            "train.eval_every=2",
        ];
        args.extend(common::FEW_SHOT_QUICK);
        args.push("--out");
        let out_str = out_dir.display().to_string();
        args.push(&out_str);
        if calibrate {
            args.push("--calibrate");
        }
        let out = bszo(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
                .unwrap();
        (stdout(&out), report)
    };
    let (plain_text, plain) = run("plain", false);
    let (text, calibrated) = run("calibrated", true);
    assert!(!plain_text.contains("(calibrated: "), "{plain_text}");
    assert!(text.contains("zero-shot test accuracy:"), "{text}");
    assert!(text.contains("(calibrated: "), "{text}");
    // Training saw the same losses: the same best step and the same tested weights.
    assert_eq!(calibrated["best"], plain["best"]);
    assert_eq!(calibrated["steps"], plain["steps"]);
    assert_eq!(calibrated["forwards"]["train"], plain["forwards"]["train"]);
    for part in [&calibrated["test"], &calibrated["zero_shot"]["test"]] {
        let acc = part["extra"][CALIBRATED_ACCURACY].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{acc}");
    }
    assert_eq!(calibrated["test"]["score"], plain["test"]["score"]);
    assert_eq!(calibrated["test"]["loss"], plain["test"]["loss"]);
    assert_eq!(
        calibrated["zero_shot"]["test"]["score"],
        plain["zero_shot"]["test"]["score"]
    );
    // One SFC forward per evaluation: zero-shot validation and test, 2 validations, the test.
    let zero = |r: &serde_json::Value| r["forwards"]["zero_shot"].as_u64().unwrap();
    assert_eq!(zero(&calibrated), zero(&plain) + 2);
    let eval = |r: &serde_json::Value| r["forwards"]["eval"].as_u64().unwrap();
    assert!(eval(&calibrated) > eval(&plain), "{calibrated:#}");
    assert!(
        plain["zero_shot"]["test"]["extra"]
            .get(CALIBRATED_ACCURACY)
            .is_none()
    );
    assert!(plain["config"]["task"].get("calibrate").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}
