//! `bszo-bench run --quick`: every section of the suite at a tiny budget, so that the harness
//! cannot rot. The numbers are not checked for being good, only for being measured.

use std::path::PathBuf;

use bszo_bench::plan::{CausalPlan, OPTIMIZERS, Plan, Scenario};
use bszo_bench::render::{KEPT_MARKER, kept_sections};
use bszo_bench::{BenchOptions, Section, suite};
use zo_data::Task;
use zo_optim::Algorithm;

/// An empty folder of this test process under the system's temporary folder.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bszo-bench-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_quick_suite_measures_every_section_and_writes_the_report() {
    // The suite finds models in the current folder, as `cargo xtask bench` runs it: the
    // workspace root.
    std::env::set_current_dir(bszo_testkit::workspace()).expect("the workspace root exists");
    let data_dir = bszo_testkit::data_dir();
    bszo_testkit::shipped(data_dir.join("sst2"));
    if bszo_testkit::splade_tiny("the_quick_suite").is_none() {
        return;
    }
    // The causal-LM section reads SmolLM2-135M.
    if bszo_testkit::smollm2("the_quick_suite").is_none() {
        return;
    }
    let dir = scratch("quick");
    let opts = BenchOptions {
        plan: Plan::quick(),
        sections: Vec::new(),
        out: dir.join("docs"),
        work: dir.join("work"),
        data_dir: Some(data_dir),
        exe: env!("CARGO_BIN_EXE_bszo-bench").into(),
        command: "cargo xtask bench --quick".into(),
    };
    let mut log = Vec::new();
    let first = std::time::Instant::now();
    let r = suite(&opts, &mut |m| log.push(m.to_string())).unwrap_or_else(|e| panic!("{e:#}"));

    // Section 1: every optimizer on every task at the picked rates, and the causal-LM section's
    // optimizers on SmolLM2-135M, with calibrated scores beside the plain ones.
    assert_eq!(r.accuracy.len(), 2);
    assert_eq!(r.accuracy["splade-tiny"].len(), 3);
    let causal = CausalPlan::quick();
    assert_eq!(r.causal.as_ref(), Some(&causal));
    for (model, tasks) in &r.accuracy {
        let (optimizers, budget) = if model == "splade-tiny" {
            (OPTIMIZERS.to_vec(), 24)
        } else {
            assert_eq!(model, &causal.model);
            (causal.optimizers.clone(), causal.budget)
        };
        for task in tasks.keys() {
            let task: Task = task.parse().unwrap();
            for &opt in &optimizers {
                let cell = r.cell(model, task, opt).unwrap();
                assert_eq!(cell.picked.len(), 2, "{opt}: one run per seed");
                for run in &cell.picked {
                    assert!((0.0..=1.0).contains(&run.test), "{opt}: {}", run.test);
                    assert!(
                        run.steps * run.per_step as u64 <= budget.max(run.per_step as u64),
                        "{opt}: equal budgets"
                    );
                    assert!(!run.curve.is_empty());
                }
                let calibrated = cell.calibrated_tests().expect("calibrated scores");
                assert!(calibrated.iter().all(|c| (0.0..=1.0).contains(c)));
                assert!(cell.picked[0].calibrated_zero_shot.is_some());
            }
        }
    }
    // The grid picks the best first-seed validation score.
    let mezo = r.cell("splade-tiny", Task::Sst2, Algorithm::Mezo).unwrap();
    let best = mezo
        .grid
        .iter()
        .map(|g| g.best_validation)
        .fold(f64::MIN, f64::max);
    assert_eq!(mezo.best().unwrap().best_validation, best);
    // Sections 2 and 3: a probe per scenario (and inference, MeZO and BSZO with half-precision
    // weights); inference is the memory baseline; sweeps counted (through the view, the update
    // is a step's one write of the weights).
    // Plus MeZO and BSZO with row-sparse embedding probes.
    assert_eq!(
        r.probes.len(),
        1 + OPTIMIZERS.len() + 3 * Plan::quick().half_probes.len() + 2
    );
    assert_eq!(r.probes.iter().filter(|p| p.row_sparse).count(), 2);
    for p in &r.probes {
        assert!(
            p.peak_kb > 0 && p.step_ms > 0.0 && p.forward_ms > 0.0,
            "{p:?}"
        );
        if p.scenario != Scenario::Inference {
            assert!(p.sweeps_per_step >= 1, "{p:?}");
            assert!(p.step_forward_ms <= p.step_ms, "{p:?}");
        }
    }
    let model = Plan::quick().probe_models[0];
    let probe = |a| r.probe(model, Scenario::Optimizer(a)).unwrap();
    assert!(
        probe(Algorithm::MezoAdam).peak_kb > probe(Algorithm::Mezo).peak_kb,
        "Adam's two moment vectors show in the peak"
    );
    // Sections 4, 5 and 6.
    assert_eq!(r.ablation.len(), 2);
    assert_eq!(r.hizoo.len(), 4);
    let sampler = r.sampler.as_ref().unwrap();
    assert!(sampler.normals_m_per_s > 0.0 && sampler.sweep_gb_s > 0.0);
    // Section 7: every optimizer on every black-box problem, a run per evaluation seed, each
    // within the budget, and BSZO compared with each peer.
    let bb = r.blackbox.as_ref().unwrap();
    let plan = &Plan::quick().blackbox;
    assert_eq!(bb.problems.len(), plan.problems.len());
    for p in &bb.problems {
        assert_eq!(p.cells.len(), plan.optimizers.len());
        for (name, c) in &p.cells {
            assert_eq!(c.runs.len() as u64, plan.seeds, "{name}");
            assert!(c.steps * c.per_step as u64 <= p.spec.budget, "{name}");
            assert!(
                c.sweep.iter().any(|s| s.lr == c.lr),
                "{name}: picked from the sweep"
            );
            for t in &c.runs {
                assert!(t.diverged() || t.curve.last().unwrap().0 <= p.spec.budget);
            }
        }
        let verdicts = bszo_bench::render::blackbox_verdicts(&p.cells);
        assert_eq!(verdicts.len(), plan.optimizers.len() - 1);
        assert!(verdicts.iter().all(|v| (0.0..=1.0).contains(&v.1)));
    }
    assert_eq!(r.measured.len(), Section::ALL.len());
    // Section 9: MeZO and BSZO with row-sparse embedding probes, a run per seed at the dense
    // cell's learning rate.
    assert_eq!(r.sparse.len(), 2);
    for (opt, runs) in &r.sparse {
        let dense = r
            .cell("splade-tiny", Task::Sst2, opt.parse().unwrap())
            .unwrap();
        assert_eq!(runs.len(), 2, "{opt}");
        assert!(runs.iter().all(|x| x.lr == dense.best().unwrap().lr));
        assert!(runs.iter().all(|x| (0.0..=1.0).contains(&x.test)));
    }
    // Section 10: with MPI and a `bszo` built with it beside the benchmark (a workspace test
    // run builds one), one process against two, byte for byte; otherwise the reason.
    let p = r.processes.as_ref().unwrap();
    match &p.skipped {
        Some(why) => {
            assert!(!why.is_empty());
            assert!(
                std::env::var_os("BSZO_REQUIRE_MODELS").is_none() || !cfg!(feature = "mpi"),
                "the section of several processes did not run: {why}"
            );
        }
        None => {
            assert_eq!(p.equality.len(), 4);
            for e in &p.equality {
                assert!(e.seed_log_identical && e.weights_identical, "{e:?}");
                assert_eq!(e.test.0, e.test.1, "{e:?}");
            }
            assert_eq!(p.speed.len(), 5);
            assert_eq!(p.latency_us.len(), 4);
        }
    }
    // Section 8: MeZO and BSZO with bf16 weights on the masked and on the causal model, a run
    // per seed at the f32 cell's learning rate.
    assert_eq!(r.precision.len(), 2);
    // And the default task in f32 and bf16 (4 steps in the quick plan).
    assert_eq!(r.default_task.len(), 2);
    assert!(r.default_task.values().all(|x| x.steps == 4));
    assert!(r.precision.contains_key("smollm2-135m"));
    for (model, by_opt) in &r.precision {
        assert_eq!(by_opt.len(), 2, "{model}");
        for (opt, by_prec) in by_opt {
            let runs = &by_prec["bf16"];
            assert_eq!(runs.len(), 2, "{model} {opt}");
            let f32_lr = r
                .cell(model, Task::Sst2, opt.parse().unwrap())
                .unwrap()
                .best()
                .unwrap()
                .lr;
            assert!(
                runs.iter()
                    .all(|x| x.lr == f32_lr && (0.0..=1.0).contains(&x.test))
            );
        }
    }

    // Section 11: LoRA and prefix cells of MeZO and BSZO on both models (a run per seed), and a
    // probe of each optimizer training every weight, LoRA adapters and prefixes.
    assert_eq!(r.peft.len(), 2);
    for (model, methods) in &r.peft {
        if model == &causal.model {
            // The causal model's full-parameter rows: the causal section's seed 0 and a run of
            // seed 2 (which the section lacks) at the section's picked rate.
            let full = &methods[bszo_bench::FULL];
            assert_eq!(full.len(), 2, "{model}");
            for (name, cell) in full {
                let section = &r.accuracy[model]["sst2"][name];
                let seeds: Vec<u64> = cell.picked.iter().map(|x| x.seed).collect();
                assert_eq!(seeds, [0, 2], "{model} {name}");
                assert_eq!(cell.picked[0].test, section.picked[0].test, "{name}");
                assert!(cell.picked[1].lr == section.picked[0].lr, "{name}");
                assert!((0.0..=1.0).contains(&cell.picked[1].test), "{name}");
            }
        }
        let adapters: Vec<_> = methods
            .iter()
            .filter(|(m, _)| m.as_str() != bszo_bench::FULL)
            .collect();
        assert_eq!(adapters.len(), 2, "{model}");
        for (method, cells) in adapters {
            assert_eq!(cells.len(), 2, "{model} {method}");
            for cell in cells.values() {
                assert_eq!(cell.picked.len(), 2);
                for run in &cell.picked {
                    assert!((0.0..=1.0).contains(&run.test), "{model} {method}");
                    // Adapters: under 1% of the model (8192 LoRA parameters of SPLADE-tiny's
                    // 4.4M, 460 800 of SmolLM2-135M's).
                    assert!(
                        run.parameters > 0 && run.parameters < 1_000_000,
                        "{model} {method}: {}",
                        run.parameters
                    );
                }
            }
        }
    }
    assert_eq!(r.peft_probes.len(), 6);
    let full_params = r
        .peft_probes
        .iter()
        .find(|p| p.peft.is_none())
        .unwrap()
        .params;
    for p in r.peft_probes.iter().filter(|p| p.peft.is_some()) {
        assert!(p.params * 100 < full_params, "{p:?}");
        assert!(p.step_ms > 0.0 && p.sweeps_per_step >= 1, "{p:?}");
    }

    let md = std::fs::read_to_string(dir.join("docs/RESULTS.md")).unwrap();
    for heading in [
        "## 1. Accuracy",
        "## 2. Memory",
        "## 3. Time",
        "## 4.",
        "## 5.",
        "## 6.",
        "cargo xtask bench --quick",
        "zero-shot",
        "Where BSZO wins",
        "calibrated test %",
        "sst2 (smollm2-135m), calibrated: BSZO",
        "rte (splade-tiny), calibrated: BSZO",
        "--causal-scale paper",
        "## 7. Black-box problems",
        "**Verdict (quadratic-gaussian)**",
        "Wilcoxon signed-rank",
        "## 8. Accuracy with half-precision weights",
        "## 9. Row-sparse embedding probes (off by default)",
        "## 11. Parameter-efficient fine-tuning",
        "| bszo | lora |",
        "Does MeZO degrade in half precision",
    ] {
        assert!(md.contains(heading), "RESULTS.md lacks {heading:?}");
    }
    for plot in [
        "bench-splade-tiny-sst2.svg",
        "bench-splade-tiny-rte.png",
        "bench-smollm2-135m-sst2.svg",
        "blackbox-logistic-sst2.svg",
    ] {
        assert!(dir.join("docs").join(plot).is_file(), "{plot}");
    }
    assert!(dir.join("docs/results.json").is_file());

    // A second run reuses every finished run instead of training again.
    let started = std::time::Instant::now();
    let again = suite(&opts, &mut |_| {}).unwrap();
    let bszo = |r: &bszo_bench::Results| {
        r.cell("splade-tiny", Task::Sst2, Algorithm::Bszo)
            .unwrap()
            .best()
            .unwrap()
            .test
    };
    assert_eq!(bszo(&again), bszo(&r));
    let (rerun, whole) = (started.elapsed(), started - first);
    assert!(
        rerun < whole,
        "the cached rerun ({rerun:?}) is faster than the first ({whole:?})"
    );
    assert!(
        log.iter().any(|m| m.contains("section ablation")),
        "{log:?}"
    );

    // One section alone: the others keep what results.json holds (and their provenance).
    let json = dir.join("docs/results.json");
    let before: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let one = BenchOptions {
        sections: vec![Section::Sampler],
        ..opts.clone()
    };
    let mut log = Vec::new();
    let merged = suite(&one, &mut |m| log.push(m.to_string())).unwrap();
    assert_eq!(log, vec!["section sampler".to_string()]);
    let after: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for key in [
        "accuracy",
        "precision",
        "probes",
        "ablation",
        "hizoo",
        "blackbox",
    ] {
        assert_eq!(before[key], after[key], "{key} kept");
    }
    assert_eq!(merged.measured.len(), Section::ALL.len());
    // A section that needs another reports which.
    let empty = scratch("quick-needs");
    let needs = BenchOptions {
        sections: vec![Section::Ablation],
        out: empty.join("docs"),
        ..opts.clone()
    };
    let e = suite(&needs, &mut |_| {}).unwrap_err();
    assert!(format!("{e:#}").contains("--section accuracy"), "{e:#}");
    std::fs::remove_dir_all(&empty).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_cell_is_an_error_naming_it() {
    let r = bszo_bench::Results::default();
    let e = r
        .cell("splade-tiny", Task::Sst2, Algorithm::Bszo)
        .unwrap_err();
    assert!(e.to_string().contains("splade-tiny"), "{e}");
}

#[test]
fn the_suite_keeps_the_sections_it_does_not_measure() {
    let dir = scratch("kept-sections");
    let path = dir.join("RESULTS.md");
    assert_eq!(kept_sections(&path), "", "no file");
    std::fs::write(&path, "# Results\n\n## 1. Bench\n").unwrap();
    assert_eq!(kept_sections(&path), "", "no marker");
    let tail = format!("{KEPT_MARKER}\n\n## 7. Zero-shot\n\n| a |\n");
    std::fs::write(&path, format!("# Results\n\n## 1. Bench\n\n{tail}")).unwrap();
    assert_eq!(kept_sections(&path), format!("\n{tail}"));
    // The repository's RESULTS.md has its zero-shot section behind the marker.
    let results = bszo_testkit::workspace().join("docs/RESULTS.md");
    assert!(kept_sections(&results).contains("Zero-shot accuracy of the prompts"));
    std::fs::remove_dir_all(&dir).unwrap();
}
