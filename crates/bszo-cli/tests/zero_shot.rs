//! `bszo zero-shot` measures what `bszo finetune` records as the zero-shot metrics, without training.

mod common;

use common::{bszo, real_assets, scratch, stderr, stdout};

#[test]
fn zero_shot_matches_the_zero_shot_metrics_of_a_fine_tuning_run() {
    if !real_assets("zero_shot_matches_the_zero_shot_metrics_of_a_fine_tuning_run") {
        return;
    }
    let dir = scratch("zero-shot");
    let json = dir.join("zero.json");
    let data = common::data_dir();
    let shared = [
        "--task",
        "rte",
        "--set",
        "task.test_size=24",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let mut args = vec![
        "zero-shot",
        "--validation",
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend(shared);
    let out = bszo(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("zero-shot test accuracy:"), "{text}");
    assert!(text.contains("NLI template lm-bff"), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["task"], "rte");
    assert_eq!(report["test_size"], 24);
    assert_eq!(report["nli_template"], "lm-bff");

    let run = dir.join("run");
    let mut args = vec![
        "finetune",
        "--steps",
        "1",
        "--no-plots",
        "--no-progress",
        "--out",
        run.to_str().unwrap(),
    ];
    args.extend(shared);
    let out = bszo(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let zero: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("zero_shot.json")).unwrap())
            .unwrap();
    assert_eq!(zero["test"], report["test"]);
    assert_eq!(zero["validation"], report["validation"]);

    // The `spaced` NLI template is another prompt (the premise keeps its final character, the
    // hypothesis its capital): another loss.
    let spaced = dir.join("spaced.json");
    let mut args = vec![
        "zero-shot",
        "--set",
        "task.nli_template=spaced",
        "--json",
        spaced.to_str().unwrap(),
    ];
    args.extend(shared);
    let out = bszo(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let spaced: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&spaced).unwrap()).unwrap();
    assert_eq!(spaced["nli_template"], "spaced");
    assert_ne!(spaced["test"]["loss"], report["test"]["loss"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
