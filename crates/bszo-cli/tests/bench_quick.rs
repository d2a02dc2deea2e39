//! `bszo bench --quick`: every section of the suite at a tiny budget, so that the harness cannot
//! rot. The numbers are not checked for being good, only for being measured.

mod common;

use bszo_cli::bench::{BenchOptions, OPTIMIZERS, Plan, run};
use common::{data_dir, real_assets, scratch};

#[test]
fn the_quick_suite_measures_every_section_and_writes_the_report() {
    if !real_assets("the_quick_suite") {
        return;
    }
    // The causal row reads the shipped stories260K.
    bszo_testkit::stories260k();
    let dir = scratch("bench-quick");
    let opts = BenchOptions {
        plan: Plan::quick(),
        out: dir.join("docs"),
        work: dir.join("work"),
        data_dir: Some(data_dir()),
        exe: env!("CARGO_BIN_EXE_bszo").into(),
        command: "cargo xtask bench --quick".into(),
    };
    let mut log = Vec::new();
    let first = std::time::Instant::now();
    let r = run(&opts, &mut |m| log.push(m.to_string())).unwrap_or_else(|e| panic!("{e:#}"));

    // Section 1: every optimizer on every task, the causal row too, at the picked rates.
    assert_eq!(r.accuracy["splade-tiny"].len(), 3);
    assert!(r.accuracy.contains_key("stories260k"));
    for tasks in r.accuracy.values() {
        for cells in tasks.values() {
            for opt in OPTIMIZERS {
                let cell = &cells[opt];
                assert_eq!(cell.picked.len(), 2, "{opt}: one run per seed");
                for run in &cell.picked {
                    assert!((0.0..=1.0).contains(&run.test), "{opt}: {}", run.test);
                    assert!(
                        run.steps * run.per_step as u64 <= 24,
                        "{opt}: equal budgets"
                    );
                    assert!(!run.curve.is_empty());
                }
            }
        }
    }
    // The grid picks the best first-seed validation score.
    let mezo = &r.accuracy["splade-tiny"]["sst2"]["mezo"];
    let best = mezo
        .grid
        .iter()
        .map(|g| g.best_validation)
        .fold(f64::MIN, f64::max);
    assert_eq!(mezo.picked[0].best_validation, best);
    // Sections 2 and 3: a probe per scenario; inference is the memory baseline; sweeps counted.
    assert_eq!(r.probes.len(), 1 + OPTIMIZERS.len());
    for p in &r.probes {
        assert!(
            p.peak_kb > 0 && p.step_ms > 0.0 && p.forward_ms > 0.0,
            "{p:?}"
        );
        if p.scenario != "inference" {
            assert!(p.sweeps_per_step >= 2, "{p:?}");
            assert!(p.step_forward_ms <= p.step_ms, "{p:?}");
        }
    }
    let adam = r.probes.iter().find(|p| p.scenario == "mezo_adam").unwrap();
    let mezo = r.probes.iter().find(|p| p.scenario == "mezo").unwrap();
    assert!(
        adam.peak_kb > mezo.peak_kb,
        "Adam's two moment vectors show in the peak"
    );
    // Sections 4, 5 and 6.
    assert_eq!(r.ablation.len(), 2);
    assert_eq!(r.hizoo.len(), 4);
    assert!(r.sampler.normals_m_per_s > 0.0 && r.sampler.sweep_gb_s > 0.0);

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
    ] {
        assert!(md.contains(heading), "RESULTS.md lacks {heading:?}");
    }
    for plot in [
        "bench-splade-tiny-sst2.svg",
        "bench-splade-tiny-rte.png",
        "bench-stories260k-sst2.svg",
    ] {
        assert!(dir.join("docs").join(plot).is_file(), "{plot}");
    }
    assert!(dir.join("docs/results.json").is_file());

    // A second run reuses every finished run instead of training again.
    let started = std::time::Instant::now();
    let again = run(&opts, &mut |_| {}).unwrap();
    assert_eq!(
        again.accuracy["splade-tiny"]["sst2"]["bszo"].picked[0].test,
        r.accuracy["splade-tiny"]["sst2"]["bszo"].picked[0].test
    );
    let (rerun, whole) = (started.elapsed(), started - first);
    assert!(
        rerun < whole,
        "the cached rerun ({rerun:?}) is faster than the first ({whole:?})"
    );
    assert!(log.iter().any(|m| m.contains("k ablation")), "{log:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
