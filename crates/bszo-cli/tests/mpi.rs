//! Several processes as one run, through `mpirun` and the real binary: on SPLADE-tiny and SST-2,
//! two processes in either mode write the seed log and the best weights of the one-process run
//! byte for byte, for BSZO and MeZO; a run resumes with any process count (1 → 2 → 1); a process
//! whose weights went astray is caught by the guard. Built only with the `mpi` feature; `mpirun`
//! must be on the PATH (missing, the tests skip — and fail under `BSZO_REQUIRE_MODELS`, as in CI).
#![cfg(feature = "mpi")]
#![allow(clippy::print_stderr)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{FEW_SHOT_QUICK, real_assets, scratch, stderr, stdout, workspace};

/// `mpirun` with what a container's root user needs, or `None` (skip) when it is absent.
fn mpirun(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("mpirun"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("BSZO_REQUIRE_MODELS").is_none(),
            "{test}: mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)"
        );
        eprintln!("skipping {test}: mpirun is not installed");
    }
    found
}

/// The common flags of these runs: 6 BSZO or MeZO steps on SST-2's 16-shot split, an
/// evaluation and a checkpoint every 3 steps, the best weights exported.
fn flags<'a>(optimizer: &'a str, steps: &'a str, dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "finetune",
        "--optimizer",
        optimizer,
        "--steps",
        steps,
        "--out",
        dir.to_str().unwrap(),
        "--no-progress",
        "--no-plots",
        "--export",
        "--set",
        "train.eval_every=3",
        "--set",
        "train.checkpoint_every=3",
    ];
    v.extend_from_slice(&FEW_SHOT_QUICK);
    v.extend_from_slice(extra);
    v
}

/// `bszo ARGS` alone, or under `mpirun -np N` (one thread per process).
fn launch(mpirun: Option<&Path>, np: usize, args: &[&str], env: &[(&str, &str)]) -> Output {
    let bin = env!("CARGO_BIN_EXE_bszo");
    let mut cmd = match mpirun {
        Some(m) => {
            let mut c = Command::new(m);
            c.args([
                "-np",
                &np.to_string(),
                "--oversubscribe",
                "--bind-to",
                "none",
            ]);
            // As root (a CI container), OpenMPI needs both of these.
            c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
                .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
            c.arg("-x").arg("RAYON_NUM_THREADS=1");
            for (k, v) in env {
                c.arg("-x").arg(format!("{k}={v}"));
            }
            c.arg(bin);
            c
        }
        None => {
            let mut c = Command::new(bin);
            c.env("RAYON_NUM_THREADS", "1");
            for (k, v) in env {
                c.env(k, v);
            }
            c
        }
    };
    cmd.args(args)
        .current_dir(workspace())
        .output()
        .expect("the command runs")
}

fn ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what}: {}\n{}", stderr(o), stdout(o));
}

/// The run's seed log and exported weights, byte for byte.
fn outputs(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    (
        std::fs::read(dir.join("seed_log.jsonl")).unwrap(),
        std::fs::read(dir.join("best.safetensors")).unwrap(),
    )
}

#[test]
fn two_processes_in_either_mode_write_the_one_process_run_byte_for_byte() {
    let test = "two_processes_in_either_mode_write_the_one_process_run_byte_for_byte";
    if !real_assets(test) {
        return;
    }
    let Some(mpi) = mpirun(test) else { return };
    let root = scratch("mpi-equal");
    for optimizer in ["bszo", "mezo"] {
        for (mode, shards) in [("data", "2"), ("directions", "1")] {
            let set_shards = format!("train.shards={shards}");
            let extra = ["--set", set_shards.as_str()];
            let one = root.join(format!("{optimizer}-{mode}-one"));
            ok(
                &launch(None, 1, &flags(optimizer, "6", &one, &extra), &[]),
                "one process",
            );
            let two = root.join(format!("{optimizer}-{mode}-two"));
            let mut args = flags(optimizer, "6", &two, &extra);
            args.extend_from_slice(&["--parallel", mode, "--guard-every", "2"]);
            let o = launch(Some(&mpi), 2, &args, &[]);
            ok(&o, &format!("{optimizer}, two processes, {mode}"));
            assert!(
                stdout(&o).contains("2 processes"),
                "{optimizer} {mode}: {}",
                stdout(&o)
            );
            assert!(
                outputs(&one) == outputs(&two),
                "{optimizer}, {mode}: the seed logs or weights differ"
            );
            let report: serde_json::Value =
                serde_json::from_slice(&std::fs::read(two.join("report.json")).unwrap()).unwrap();
            let one_report: serde_json::Value =
                serde_json::from_slice(&std::fs::read(one.join("report.json")).unwrap()).unwrap();
            assert_eq!(report["test"], one_report["test"], "{optimizer} {mode}");
            assert_eq!(report["processes"]["count"], 2);
            let bytes = report["processes"]["bytes_per_step"].as_array().unwrap();
            assert_eq!(bytes.len(), 2);
            assert!(bytes.iter().all(|b| b.as_f64().unwrap() > 0.0), "{bytes:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_run_resumes_with_any_process_count_bit_for_bit() {
    let test = "a_run_resumes_with_any_process_count_bit_for_bit";
    if !real_assets(test) {
        return;
    }
    let Some(mpi) = mpirun(test) else { return };
    let root = scratch("mpi-resume");
    let extra = ["--set", "train.shards=2"];
    let whole = root.join("whole");
    ok(
        &launch(None, 1, &flags("bszo", "9", &whole, &extra), &[]),
        "one process",
    );
    // Steps 1–3 alone, 4–6 in two processes (process 1 reads the checkpoint and replays the
    // seed log process 0 cut back), 7–9 alone again.
    let split = root.join("split");
    ok(
        &launch(None, 1, &flags("bszo", "3", &split, &extra), &[]),
        "steps 1 to 3, one process",
    );
    let mut middle = flags("bszo", "6", &split, &extra);
    middle.extend_from_slice(&["--resume", "--parallel", "data"]);
    ok(
        &launch(Some(&mpi), 2, &middle, &[]),
        "steps 4 to 6, two processes",
    );
    let mut last = flags("bszo", "9", &split, &extra);
    last.push("--resume");
    ok(&launch(None, 1, &last, &[]), "steps 7 to 9, one process");
    assert!(
        outputs(&whole) == outputs(&split),
        "the resumed run differs"
    );
    for file in ["metrics.jsonl", "checkpoint.json"] {
        assert!(
            std::fs::read(whole.join(file)).unwrap() == std::fs::read(split.join(file)).unwrap(),
            "{file} differs"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_process_whose_weights_went_astray_stops_the_run_naming_the_step() {
    let test = "a_process_whose_weights_went_astray_stops_the_run_naming_the_step";
    if !real_assets(test) {
        return;
    }
    let Some(mpi) = mpirun(test) else { return };
    let root = scratch("mpi-desync");
    let dir = root.join("run");
    let mut args = flags("bszo", "6", &dir, &["--set", "train.shards=2"]);
    args.extend_from_slice(&["--parallel", "data"]);
    let o = launch(Some(&mpi), 2, &args, &[("BSZO_TEST_DESYNC_RANK", "1")]);
    assert!(!o.status.success(), "the run went on: {}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("weights differ after step 0"), "{err}");
    // Data mode with fewer pieces than processes is refused before anything runs.
    let few = root.join("few");
    let mut args = flags("bszo", "6", &few, &[]);
    args.extend_from_slice(&["--parallel", "data"]);
    let o = launch(Some(&mpi), 2, &args, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("train.shards is 1"), "{}", stderr(&o));
    // Under mpirun without --parallel each process would run a fine-tuning of its own.
    let alone = root.join("alone");
    let o = launch(Some(&mpi), 2, &flags("bszo", "6", &alone, &[]), &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("without --parallel"), "{}", stderr(&o));
    assert!(!alone.exists(), "a run folder was made");
    let _ = std::fs::remove_dir_all(&root);
}
