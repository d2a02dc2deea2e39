//! Crash consistency of run folders, on the real SPLADE-tiny and SST-2: runs killed with SIGKILL or
//! SIGTERM at random moments, or stopped by a full disk (a file-size limit, `ulimit -f`), are
//! resumed and must end byte for byte like an uninterrupted run; two runs started at the same
//! moment get two folders.
//!
//! `BSZO_CRASH_TRIALS` sets the number of killed runs (default 21), `BSZO_CRASH_SEED` their seed.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{data_dir, real_assets, scratch, workspace};
use rand::{Rng, SeedableRng};

/// The small real configuration every run here uses: SST-2 sampled down to 16 training, 8
/// validation and 8 test sentences, 12 steps with evaluations every 4 and checkpoints every 3.
/// `optimizer` may name the weights' precision after an `@` (`bszo@bf16`) and end in `+rows`
/// for row-sparse embedding probes.
fn run_args(optimizer: &str, dir: &Path) -> Vec<String> {
    let data = data_dir();
    let (optimizer, rows) = optimizer
        .strip_suffix("+rows")
        .map_or((optimizer, false), |o| (o, true));
    let (optimizer, precision) = optimizer.split_once('@').unwrap_or((optimizer, "f32"));
    let rows = format!("train.row_sparse={rows}");
    [
        "finetune",
        "--optimizer",
        optimizer,
        "--precision",
        precision,
        "--lr",
        "1e-4",
        "--set",
        "task.protocol.kind=sampled",
        "--set",
        "task.protocol.seed=0",
        "--set",
        "task.protocol.train=16",
        "--set",
        "task.protocol.validation=8",
        "--set",
        "task.test_size=8",
        "--steps",
        "12",
        "--set",
        "train.batch_size=4",
        "--set",
        "train.eval_every=4",
        "--set",
        "train.checkpoint_every=3",
        "--set",
        rows.as_str(),
        "--no-progress",
        "--no-plots",
        "--export",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn spawn(args: &[String], limit_kb: Option<u64>) -> Child {
    let exe = env!("CARGO_BIN_EXE_bszo");
    let mut cmd = match limit_kb {
        None => {
            let mut c = Command::new(exe);
            c.args(args);
            c
        }
        Some(kb) => {
            // A full disk without root: a file-size limit makes writes past it fail with EFBIG
            // (SIGXFSZ, which would kill the process instead, is ignored across the exec).
            let mut c = Command::new("bash");
            c.arg("-c")
                .arg(format!("ulimit -f {kb}; trap '' XFSZ; exec \"$0\" \"$@\""))
                .arg(exe)
                .args(args);
            c
        }
    };
    cmd.current_dir(workspace())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the bszo binary runs")
}

fn finish(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The folder's files by name, with the folder's own path and the timings made neutral (they are
/// the only things that may differ between two runs of one configuration).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut bytes = std::fs::read(entry.path()).unwrap();
        if name == "config.toml" {
            // The [output] dir line names the folder itself.
            bytes = String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(|l| {
                    if l.starts_with("dir = ") {
                        "dir = RUN\n".to_string()
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect::<String>()
                .into_bytes();
        }
        if name == "report.json" {
            let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            v["wall_time_s"] = serde_json::Value::Null;
            v["peak_rss_bytes"] = serde_json::Value::Null;
            v["config"]["output"]["dir"] = serde_json::Value::Null;
            bytes = serde_json::to_vec_pretty(&v).unwrap();
        }
        out.insert(name, bytes);
    }
    out
}

fn compare(reference: &BTreeMap<String, Vec<u8>>, got: &BTreeMap<String, Vec<u8>>, what: &str) {
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(reference),
        names(got),
        "{what}: the files of the folder"
    );
    for (name, bytes) in reference {
        assert!(
            got[name] == *bytes,
            "{what}: {name} differs from the uninterrupted run's ({} vs {} bytes)",
            got[name].len(),
            bytes.len()
        );
    }
}

/// Resume the run of `args` in `dir` to its end. A process that died before creating its folder
/// (or that failed before training, which removes what it wrote) left nothing to resume: `--resume`
/// says so, and the run is started again.
fn resume_to_end(args: &[String], dir: &Path, what: &str) {
    let mut resume = args.to_vec();
    resume.push("--resume".into());
    let (code, err) = finish(spawn(&resume, None));
    if !dir.exists() {
        assert_eq!(code, Some(1), "{what}: {err}");
        assert!(err.contains("does not exist"), "{what}: {err}");
        let (code, err) = finish(spawn(args, None));
        assert_eq!(code, Some(0), "{what}: the new start failed: {err}");
        return;
    }
    assert_eq!(code, Some(0), "{what}: the resume failed: {err}");
}

struct Reference {
    files: BTreeMap<String, Vec<u8>>,
    wall: Duration,
}

/// The optimizers of the runs here: BSZO (no per-parameter state), MeZO-Adam (its moments in
/// the checkpoint's sidecar) and BSZO with bf16 weights (updates written with stochastic rounding,
/// which resume and export replay from the seed log), and the same with row-sparse embedding
/// probes (each step's rows in the seed log).
const OPTIMIZERS: [&str; 4] = ["bszo", "mezo_adam", "bszo@bf16", "bszo@bf16+rows"];

/// The uninterrupted runs, made once for all the tests of this file.
fn reference(optimizer: &str) -> &'static Reference {
    static REFS: OnceLock<Vec<Reference>> = OnceLock::new();
    let refs = REFS.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("bszo-cli-crash-refs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let refs = OPTIMIZERS
            .iter()
            .map(|o| {
                // Not named after the optimizer: the snapshot neutralises the folder name.
                let dir = root.join(format!("reference-{o}"));
                let started = Instant::now();
                let (code, err) = finish(spawn(&run_args(o, &dir), None));
                assert_eq!(code, Some(0), "the reference run failed: {err}");
                let files = snapshot(&dir);
                for f in [
                    "checkpoint.json",
                    "seed_log.jsonl",
                    "metrics.jsonl",
                    "best.safetensors",
                    "report.json",
                    "inputs.json",
                ] {
                    assert!(files.contains_key(f), "{f} missing from the reference run");
                }
                Reference {
                    files,
                    wall: started.elapsed(),
                }
            })
            .collect();
        let _ = std::fs::remove_dir_all(&root);
        refs
    });
    &refs[OPTIMIZERS.iter().position(|o| *o == optimizer).unwrap()]
}

#[test]
fn killed_runs_resume_to_the_bytes_of_an_uninterrupted_run() {
    if !real_assets("killed_runs_resume") {
        return;
    }
    let trials: usize = std::env::var("BSZO_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(21);
    let seed: u64 = std::env::var("BSZO_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_130);
    let root = scratch("crash");
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let mut killed_mid_run = 0;
    for trial in 0..trials {
        // The configurations in turn: BSZO, MeZO-Adam (its sidecar makes checkpoints slower),
        // BSZO with bf16 weights, and with row-sparse probes too.
        let optimizer = OPTIMIZERS[trial % OPTIMIZERS.len()];
        let reference = reference(optimizer);
        let dir = root.join(format!("trial-{trial}"));
        let args = run_args(optimizer, &dir);
        let signal = if rng.random_bool(0.5) { "KILL" } else { "TERM" };
        // Anywhere from the start of the process to a little past the reference's end.
        let delay = reference.wall.mul_f64(rng.random_range(0.0..1.1));
        let what = format!("trial {trial} ({optimizer}, SIG{signal} after {delay:?}, seed {seed})");
        let child = spawn(&args, None);
        std::thread::sleep(delay);
        let pid = child.id().to_string();
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status();
        let (code, err) = finish(child);
        // SIGKILL: killed by the signal (no code) unless it had ended; SIGTERM: a clean stop (130)
        // or the signal's default action before the handler was installed.
        assert!(
            matches!(code, None | Some(0) | Some(130)),
            "{what}: exit {code:?}: {err}"
        );
        if code != Some(0) {
            killed_mid_run += 1;
        }
        // Sometimes the resumed run is killed too, before it is resumed again.
        if rng.random_bool(0.25) {
            let mut resume = args.clone();
            if dir.exists() {
                resume.push("--resume".into());
            }
            let child = spawn(&resume, None);
            std::thread::sleep(reference.wall.mul_f64(rng.random_range(0.0..0.8)));
            let _ = Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status();
            let (code, err) = finish(child);
            assert!(
                matches!(code, None | Some(0)),
                "{what}, second kill: exit {code:?}: {err}"
            );
        }
        resume_to_end(&args, &dir, &what);
        compare(&reference.files, &snapshot(&dir), &what);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(
        killed_mid_run * 2 >= trials,
        "only {killed_mid_run} of {trials} kills landed before the run's end"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_full_disk_at_any_file_stops_the_run_and_resume_completes_it() {
    if !real_assets("full_disk") {
        return;
    }
    let root = scratch("full-disk");
    // Limits that fall in the run's first files (inputs.json), in its logs during training, in a
    // checkpoint's sidecar and in the exported weights.
    for (optimizer, kb) in [
        ("bszo", 1u64),
        ("bszo", 2),
        ("bszo", 3),
        ("mezo_adam", 10_000),
        ("bszo", 10_000),
        ("bszo@bf16", 5_000),
        ("bszo@bf16+rows", 5_000),
    ] {
        let reference = reference(optimizer);
        let dir = root.join(format!("{optimizer}-{kb}"));
        let args = run_args(optimizer, &dir);
        let (code, err) = finish(spawn(&args, Some(kb)));
        let what = format!("{optimizer}, file-size limit {kb} KiB");
        assert_eq!(
            code,
            Some(1),
            "{what}: a write error is an error exit: {err}"
        );
        assert!(
            err.starts_with("error: ") && err.trim_end().lines().count() == 1,
            "{what}: one error line: {err}"
        );
        assert!(err.contains("File too large"), "{what}: {err}");
        resume_to_end(&args, &dir, &what);
        compare(&reference.files, &snapshot(&dir), &what);
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn two_runs_started_at_once_without_out_get_two_folders() {
    if !real_assets("two_runs_at_once") {
        return;
    }
    let root = scratch("same-second");
    let data = data_dir();
    let mut args = vec!["finetune", "--optimizer", "mezo"];
    args.extend(common::FEW_SHOT_QUICK);
    args.extend([
        "--steps",
        "6",
        "--set",
        "train.eval_every=3",
        "--no-progress",
        "--no-plots",
        "--no-export",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let children: Vec<Child> = (0..2)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_bszo"))
                .args(&args)
                .current_dir(&root)
                // The provisioned models are not below `root`.
                .env("ZO_MODELS_DIR", bszo_testkit::models_dir())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let (code, err) = finish(child);
        assert_eq!(code, Some(0), "{err}");
    }
    let runs: Vec<PathBuf> = std::fs::read_dir(root.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 2, "two folders: {runs:?}");
    let a = snapshot(&runs[0]);
    let b = snapshot(&runs[1]);
    for run in [&a, &b] {
        let metrics = String::from_utf8(run["metrics.jsonl"].clone()).unwrap();
        for line in metrics.lines() {
            serde_json::from_str::<serde_json::Value>(line).expect("whole metrics lines");
        }
    }
    compare(&a, &b, "two runs of one configuration");
    std::fs::remove_dir_all(&root).unwrap();
}
