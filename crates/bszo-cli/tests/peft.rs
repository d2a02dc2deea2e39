//! LoRA and prefix tuning end to end on real weights (SPLADE-tiny on SST-2): resume and seed-log
//! replay are bitwise, the checkpoint's weights stay frozen, and `bszo export` writes the adapters
//! in Hugging Face PEFT's layout or the merged weights.

mod common;

use std::path::Path;

use bszo_cli::cli::{FinetuneArgs, ModelAndTask, Preset};
use bszo_cli::finetune::Outcome;
use common::{bszo, data_dir, real_assets, scratch, stderr, tensor_bits};

fn args(peft: &str, optimizer: &str, steps: u64, sets: &[&str]) -> FinetuneArgs {
    let mut all = vec![
        "train.eval_every=10",
        "train.checkpoint_every=10",
        "task.protocol.kind=few_shot",
        "task.protocol.seed=42",
        "task.test_size=64",
    ];
    all.extend_from_slice(sets);
    FinetuneArgs {
        optimizer: Some(optimizer.into()),
        steps: Some(steps),
        peft: Some(peft.into()),
        // Adapters need larger steps than full fine-tuning.
        lr: Some(if peft == "lora" { 3e-3 } else { 3e-2 }),
        eps: Some(1e-2),
        no_progress: true,
        no_plots: true,
        export: true,
        data: ModelAndTask {
            data_dir: Some(data_dir()),
            ..ModelAndTask::default()
        },
        preset: Preset {
            config: None,
            set: all.iter().map(|s| s.parse().unwrap()).collect(),
        },
        ..FinetuneArgs::default()
    }
}

fn run(a: &FinetuneArgs, dir: &Path, resume: bool) -> Outcome {
    common::finetune_into(a.to_config().unwrap(), dir, resume, false)
}

fn export(run: &Path, step: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "export",
        "--run",
        run.to_str().unwrap(),
        "--step",
        step,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    bszo(&args)
}

/// The tensors of a safetensors file with a name prefix removed.
fn unprefixed(path: &Path, prefix: &str) -> Vec<(String, Vec<u32>)> {
    tensor_bits(path)
        .into_iter()
        .map(|(n, b)| (n.trim_start_matches(prefix).to_string(), b))
        .collect()
}

#[test]
fn adapter_runs_resume_and_replay_bitwise() {
    if !real_assets("adapter_runs_resume_and_replay_bitwise") {
        return;
    }
    for (peft, optimizer) in [("lora", "bszo"), ("prefix", "mezo")] {
        let dir = scratch(&format!("peft-{peft}"));
        let (whole, parts) = (dir.join("whole"), dir.join("parts"));
        let a = args(peft, optimizer, 24, &[]);
        let w = run(&a, &whole, false);
        let r = &w.report;
        let (trainable, per_layer) = match peft {
            "lora" => (2 * 2 * (8 * 128 + 128 * 8), 4),
            _ => (2 * 2 * 5 * 128, 2),
        };
        assert_eq!(r.parameters, trainable, "{peft}");
        assert_eq!(
            r.frozen_parameters, 4_416_698,
            "{peft}: SPLADE-tiny stays whole"
        );
        assert!(r.test.as_ref().unwrap().score.is_finite());
        assert_eq!(
            tensor_bits(&whole.join("best.safetensors")).len(),
            2 * per_layer
        );

        // 10 steps, then resumed to 24: the same trajectory, adapters and test metrics.
        run(&args(peft, optimizer, 10, &[]), &parts, false);
        let p = run(&a, &parts, true);
        assert_eq!(
            std::fs::read(whole.join("seed_log.jsonl")).unwrap(),
            std::fs::read(parts.join("seed_log.jsonl")).unwrap(),
            "{peft}"
        );
        assert_eq!(
            tensor_bits(&whole.join("best.safetensors")),
            tensor_bits(&parts.join("best.safetensors")),
            "{peft}"
        );
        assert_eq!(w.report.test, p.report.test, "{peft}");

        // The test split was scored on the best weights rebuilt from the initial adapters (not
        // the last ones), and those equal the seed log replayed over a fresh base below.
        assert!(r.best.unwrap().step < 24, "{peft}: {:?}", r.best);
        // The seed log replays into the best adapters (PEFT's layout: a folder with
        // adapter_model.safetensors and adapter_config.json).
        let best = r.best.unwrap().step.to_string();
        let folder = dir.join("adapters");
        let o = export(&whole, &best, &folder, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        let prefix = if peft == "lora" {
            "base_model.model."
        } else {
            ""
        };
        assert_eq!(
            unprefixed(&folder.join("adapter_model.safetensors"), prefix),
            tensor_bits(&whole.join("best.safetensors")),
            "{peft}"
        );
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(folder.join("adapter_config.json")).unwrap())
                .unwrap();
        match peft {
            "lora" => {
                assert_eq!(config["peft_type"], "LORA");
                assert_eq!(config["r"], 8);
                assert_eq!(
                    config["target_modules"],
                    serde_json::json!(["query", "value"])
                );
            }
            _ => {
                assert_eq!(config["peft_type"], "PREFIX_KV");
                assert_eq!(config["num_virtual_tokens"], 5);
            }
        }
        // Training moved the adapters.
        let start = dir.join("start");
        assert!(export(&whole, "0", &start, &[]).status.success());
        let last = dir.join("last");
        assert!(export(&whole, "24", &last, &[]).status.success());
        assert_ne!(
            tensor_bits(&start.join("adapter_model.safetensors")),
            tensor_bits(&last.join("adapter_model.safetensors")),
            "{peft}"
        );

        // Merged weights: LoRA only; every tensor but the adapted ones is the checkpoint's own.
        let merged = dir.join("merged.safetensors");
        let o = export(&whole, "24", &merged, &["--merged"]);
        if peft == "lora" {
            assert!(o.status.success(), "{}", stderr(&o));
            let base = bszo_testkit::splade_tiny("merged").unwrap();
            let (_, weights) =
                zo_models::MaskedLm::from_folder(&base, zo_models::Precision::F32).unwrap();
            let original: Vec<(String, Vec<u32>)> = weights
                .iter()
                .map(|(i, t)| {
                    let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    (i.name.clone(), v.iter().map(|x| x.to_bits()).collect())
                })
                .collect();
            assert_eq!(original.len(), weights.len());
            let merged = tensor_bits(&merged);
            assert_eq!(merged.len(), original.len());
            let mut changed = Vec::new();
            for (name, bits) in &merged {
                let (_, before) = original
                    .iter()
                    .find(|(n, _)| n == name)
                    .unwrap_or_else(|| panic!("{name} is not in the checkpoint"));
                if before != bits {
                    changed.push(name.clone());
                }
            }
            assert_eq!(changed.len(), 4, "{changed:?}");
            assert!(
                changed
                    .iter()
                    .all(|n| n.ends_with("query.weight") || n.ends_with("value.weight"))
            );
            // The merged best weights beside the base's configuration and tokenizer load as the
            // fine-tuned model: its test accuracy is the run's.
            let model = dir.join("merged-model");
            std::fs::create_dir_all(&model).unwrap();
            let o = export(
                &whole,
                "best",
                &model.join("model.safetensors"),
                &["--merged"],
            );
            assert!(o.status.success(), "{}", stderr(&o));
            for f in ["config.json", "tokenizer.json"] {
                std::fs::copy(base.join(f), model.join(f)).unwrap();
            }
            let json = dir.join("zero-shot.json");
            let o = bszo(&[
                "zero-shot",
                "--model",
                model.to_str().unwrap(),
                "--data-dir",
                data_dir().to_str().unwrap(),
                "--set",
                "task.protocol.kind=few_shot",
                "--set",
                "task.protocol.seed=42",
                "--set",
                "task.test_size=64",
                "--json",
                json.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
            let z: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
            assert_eq!(
                z["test"]["score"].as_f64().unwrap(),
                r.test.as_ref().unwrap().score,
                "the merged model scores as the LoRA run's best weights"
            );
        } else {
            assert!(!o.status.success());
            assert!(stderr(&o).contains("cannot be merged"), "{}", stderr(&o));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn adapters_train_over_a_half_precision_base() {
    if !real_assets("adapters_train_over_a_half_precision_base") {
        return;
    }
    let dir = scratch("peft-bf16");
    let a = FinetuneArgs {
        data: ModelAndTask {
            data_dir: Some(data_dir()),
            precision: Some("bf16".into()),
            ..ModelAndTask::default()
        },
        ..args("lora", "bszo", 10, &[])
    };
    let r = run(&a, &dir.join("run"), false).report;
    assert_eq!(r.parameters, 8192);
    assert!(r.test.as_ref().unwrap().score.is_finite());
    // The run's full-parameter twin is refused with row-sparse probes, as are misspelt settings.
    let err = FinetuneArgs {
        row_sparse: true,
        ..args("lora", "bszo", 10, &[])
    }
    .to_config()
    .and_then(|c| c.resolve().map(|_| ()))
    .unwrap_err();
    assert!(format!("{err:#}").contains("train.row_sparse"), "{err:#}");
    let err = args("prefix", "bszo", 10, &["peft.rank=4"])
        .to_config()
        .unwrap_err();
    assert!(format!("{err:#}").contains("rank"), "{err:#}");
    std::fs::remove_dir_all(&dir).unwrap();
}
