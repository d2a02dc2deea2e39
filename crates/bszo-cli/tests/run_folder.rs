//! The run folder's guarantees, one test per failure they prevent: torn logs, a live run's folder,
//! `--overwrite`, changed inputs, sizes beyond the machine, lost history, stale temporary files,
//! half-made folders, checkpoint sizes, and the command line's messages.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{bszo, data_dir, real_assets, scratch, stderr, stdout, tensor_bits, workspace};

fn base_args(dir: &Path, steps: u64) -> Vec<String> {
    let data = data_dir();
    let steps = steps.to_string();
    let mut args = vec!["finetune"];
    args.extend(common::FEW_SHOT_QUICK);
    args.extend([
        "--set",
        "train.batch_size=8",
        "--set",
        "train.eval_every=4",
        "--set",
        "train.checkpoint_every=4",
        "--no-progress",
        "--no-plots",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--steps",
        &steps,
    ]);
    args.iter().map(|s| s.to_string()).collect()
}

fn run(args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    bszo(&args)
}

/// `args` with the flags of `more` added, a flag already there taking its new value (`--set`
/// overrides are always added: the last one of a key wins).
fn with(mut args: Vec<String>, more: &[&str]) -> Vec<String> {
    let mut i = 0;
    while i < more.len() {
        let flag = more[i];
        let value = more
            .get(i + 1)
            .filter(|v| !v.starts_with("--"))
            .map(|v| v.to_string());
        let at = args
            .iter()
            .position(|a| a == flag)
            .filter(|_| flag != "--set");
        match (at, &value) {
            (Some(at), Some(v)) => args[at + 1] = v.clone(),
            _ => {
                args.push(flag.to_string());
                args.extend(value.clone());
            }
        }
        i += 1 + usize::from(value.is_some());
    }
    args
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
}

/// One error line on stderr, exit 1.
fn one_error(o: &Output) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: ") && err.trim_end().lines().count() == 1,
        "one error line: {err}"
    );
    err
}

fn checkpoint_step(dir: &Path) -> u64 {
    let ck: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("checkpoint.json")).unwrap()).unwrap();
    ck["state"]["looping"]["step"].as_u64().unwrap()
}

/// A run killed after its checkpoint at step 8 of 12, having logged steps 8 and 9 after it and
/// half of step 10's line, as a kill −9 leaves it: made from an 8-step run (the same trajectory)
/// and the lines that the uninterrupted run `whole` logged next.
fn killed_run(dir: &Path, whole: &Path) -> Vec<String> {
    ok(&run(&base_args(dir, 8)));
    assert_eq!(checkpoint_step(dir), 8);
    let ck: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("checkpoint.json")).unwrap()).unwrap();
    for file in ["seed_log.jsonl", "metrics.jsonl"] {
        let mark = ck["logs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["file"] == file)
            .unwrap()["bytes"]
            .as_u64()
            .unwrap() as usize;
        let mine = std::fs::read(dir.join(file)).unwrap();
        let theirs = std::fs::read(whole.join(file)).unwrap();
        assert_eq!(
            mine[..mark],
            theirs[..mark],
            "{file}: the same run up to step 8"
        );
        // The next two lines whole, the third torn.
        let mut end = mark;
        for _ in 0..2 {
            end += theirs[end..].iter().position(|&b| b == b'\n').unwrap() + 1;
        }
        let third = theirs[end..].iter().position(|&b| b == b'\n').unwrap();
        let mut killed = theirs[..end].to_vec();
        killed.extend_from_slice(&theirs[end..end + third / 2]);
        std::fs::write(dir.join(file), killed).unwrap();
    }
    std::fs::remove_file(dir.join("report.json")).unwrap();
    base_args(dir, 12)
}

fn export_step(run: &Path, step: u64, out: &Path) -> Output {
    bszo(&[
        "export",
        "--run",
        run.to_str().unwrap(),
        "--step",
        &step.to_string(),
        "--out",
        out.to_str().unwrap(),
        "--overwrite",
    ])
}

#[test]
fn a_torn_last_line_neither_breaks_resume_nor_export() {
    if !real_assets("torn_last_line") {
        return;
    }
    let root = scratch("torn");
    let whole = root.join("whole");
    ok(&run(&base_args(&whole, 12)));
    let dir = root.join("killed");
    let args = killed_run(&dir, &whole);
    // Export rebuilds every step logged completely, past the checkpoint too (the torn line is
    // left out).
    for step in [8, 10] {
        let (mine, theirs) = (
            root.join("mine.safetensors"),
            root.join("theirs.safetensors"),
        );
        ok(&export_step(&dir, step, &mine));
        ok(&export_step(&whole, step, &theirs));
        assert_eq!(tensor_bits(&mine), tensor_bits(&theirs), "step {step}");
    }
    let err = one_error(&export_step(&dir, 11, &root.join("x.safetensors")));
    assert!(err.contains("logs 10 steps"), "{err}");
    // Resume cuts both logs back to the checkpoint and ends like the uninterrupted run.
    ok(&run(&with(args, &["--resume"])));
    for f in ["seed_log.jsonl", "metrics.jsonl", "checkpoint.json"] {
        assert_eq!(
            std::fs::read(dir.join(f)).unwrap(),
            std::fs::read(whole.join(f)).unwrap(),
            "{f}"
        );
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn sigterm_stops_like_ctrl_c_with_a_resumable_checkpoint() {
    if !real_assets("sigterm") {
        return;
    }
    let root = scratch("sigterm");
    let dir = root.join("run");
    let args = with(
        base_args(&dir, 100_000),
        &["--set", "train.checkpoint_every=0"],
    );
    let child = Command::new(env!("CARGO_BIN_EXE_bszo"))
        .args(&args)
        .current_dir(workspace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let child = KillOnDrop(Some(child));
    wait_for_training(&dir, child.0.as_ref().unwrap());
    // While it runs, the folder is locked: a second process cannot write it.
    let second = run(&with(base_args(&dir, 100_000), &["--resume"]));
    let err = one_error(&second);
    assert!(err.contains("in use") && err.contains(".lock"), "{err}");
    let child = child.take();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stdout(&out).contains("--resume"), "{}", stdout(&out));
    let step = checkpoint_step(&dir);
    assert!(step > 0, "stopped at step {step}");
    let log = std::fs::read_to_string(dir.join("seed_log.jsonl")).unwrap();
    assert_eq!(log.lines().count() as u64, step);
    std::fs::remove_dir_all(&root).unwrap();
}

/// Kills the child if the test fails before it is taken back.
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn take(mut self) -> std::process::Child {
        self.0.take().unwrap()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_for_training(dir: &Path, child: &std::process::Child) {
    let started = std::time::Instant::now();
    loop {
        let lines = std::fs::read_to_string(dir.join("metrics.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines > 0 {
            return;
        }
        assert!(
            started.elapsed().as_secs() < 120,
            "training never started (pid {})",
            child.id()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn overwrite_removes_the_earlier_runs_files_and_keeps_the_users() {
    if !real_assets("overwrite") {
        return;
    }
    let root = scratch("overwrite");
    let dir = root.join("run");
    ok(&run(&with(base_args(&dir, 4), &["--export"])));
    assert!(dir.join("best.safetensors").is_file());
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    // Without --overwrite: refused, naming a file of the earlier run.
    let err = one_error(&run(&base_args(&dir, 4)));
    assert!(err.contains("--overwrite"), "{err}");
    // With it: the earlier run's files go (no stale weights), the user's stay.
    ok(&run(&with(
        base_args(&dir, 4),
        &["--overwrite", "--no-export"],
    )));
    assert!(!dir.join("best.safetensors").exists(), "stale weights left");
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "mine"
    );
    // A folder holding a file of a run's name is refused, not silently overwritten.
    let user = root.join("user");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("metrics.jsonl"), "my own metrics\n").unwrap();
    std::fs::write(user.join("other.txt"), "x").unwrap();
    let err = one_error(&run(&base_args(&user, 4)));
    assert!(err.contains("metrics.jsonl"), "{err}");
    assert_eq!(
        std::fs::read_to_string(user.join("metrics.jsonl")).unwrap(),
        "my own metrics\n"
    );
    // A folder with only other files is fine.
    let other = root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("other.txt"), "x").unwrap();
    ok(&run(&base_args(&other, 4)));
    std::fs::remove_dir_all(&root).unwrap();
}

fn copy_model(to: &Path) -> PathBuf {
    let from = workspace().join(".cache/models/splade-tiny");
    let dest = to.join("splade-copy");
    std::fs::create_dir_all(&dest).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dest.join(e.file_name())).unwrap();
    }
    dest
}

#[test]
fn changed_base_weights_are_an_error_naming_the_file_unless_accepted() {
    if !real_assets("changed_inputs") {
        return;
    }
    let root = scratch("provenance");
    let model = copy_model(&root);
    let dir = root.join("run");
    let args = with(base_args(&dir, 8), &["--model", model.to_str().unwrap()]);
    ok(&run(&args));
    let inputs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("inputs.json")).unwrap()).unwrap();
    let files = inputs["files"].as_array().unwrap();
    assert!(
        files
            .iter()
            .any(|f| f["name"] == "model.safetensors" && f["role"] == "model")
    );
    assert!(files.iter().any(|f| f["role"] == "data"));
    assert_eq!(inputs["hash"], "blake3");
    // Change one weight's bytes (the end of the file is tensor data).
    let weights = model.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    std::fs::write(&weights, &bytes).unwrap();
    let out = root.join("w.safetensors");
    let export = |extra: &[&str]| {
        let mut a = vec![
            "export",
            "--run",
            dir.to_str().unwrap(),
            "--step",
            "4",
            "--out",
            out.to_str().unwrap(),
            "--overwrite",
        ];
        a.extend(extra);
        bszo(&a)
    };
    let err = one_error(&export(&[]));
    assert!(
        err.contains("model.safetensors") && err.contains("--accept-changed-inputs"),
        "{err}"
    );
    ok(&export(&["--accept-changed-inputs"]));
    // Resume checks them too.
    let err = one_error(&run(&with(args.clone(), &["--resume", "--steps", "12"])));
    assert!(err.contains("model.safetensors"), "{err}");
    ok(&run(&with(
        args,
        &["--resume", "--steps", "12", "--accept-changed-inputs"],
    )));
    // The report names the data folder that was read.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        std::fs::canonicalize(report["data_dir"].as_str().unwrap()).unwrap(),
        std::fs::canonicalize(data_dir()).unwrap()
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn absurd_sizes_are_refused_before_any_work() {
    if !real_assets("absurd_sizes") {
        return;
    }
    let root = scratch("sizes");
    for (name, sets) in [
        (
            "k",
            &[
                "optimizer.estimator.k=100000",
                "optimizer.estimator.m=100001",
            ][..],
        ),
        ("batch", &["train.batch_size=1000000"][..]),
    ] {
        let dir = root.join(name);
        let started = std::time::Instant::now();
        let flags: Vec<&str> = sets.iter().flat_map(|s| ["--set", s]).collect();
        let err = one_error(&run(&with(base_args(&dir, 4), &flags)));
        assert!(err.contains("memory"), "{err}");
        assert!(started.elapsed().as_secs() < 60);
        assert!(!dir.exists(), "{name}: a refused run leaves no folder");
    }
    // An explicit limit below what a small run needs.
    let dir = root.join("limit");
    let err = one_error(&run(&with(base_args(&dir, 4), &["--max-memory", "1M"])));
    assert!(err.contains("--max-memory"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn resuming_without_the_metrics_before_the_checkpoint_is_an_error() {
    if !real_assets("lost_history") {
        return;
    }
    let root = scratch("lost");
    let dir = root.join("run");
    ok(&run(&base_args(&dir, 8)));
    std::fs::remove_file(dir.join("metrics.jsonl")).unwrap();
    let err = one_error(&run(&with(base_args(&dir, 12), &["--resume"])));
    assert!(
        err.contains("metrics.jsonl") && err.contains("lost"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn stale_temporary_files_are_removed_by_the_next_start() {
    if !real_assets("stale_temporaries") {
        return;
    }
    let root = scratch("stale");
    let dir = root.join("run");
    ok(&run(&base_args(&dir, 4)));
    let stale = [
        ".checkpoint.json.tmp-999999",
        ".best.safetensors.tmp-999999",
    ];
    for s in stale {
        std::fs::write(dir.join(s), "x").unwrap();
    }
    ok(&run(&with(base_args(&dir, 8), &["--resume"])));
    for s in stale {
        assert!(!dir.join(s).exists(), "{s} left behind");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_run_that_fails_before_training_leaves_no_folder() {
    if !real_assets("no_half_made_folder") {
        return;
    }
    let root = scratch("half-made");
    let bad = root.join("bad-model");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
    let dir = root.join("run");
    one_error(&run(&with(
        base_args(&dir, 4),
        &["--model", bad.to_str().unwrap()],
    )));
    assert!(!dir.exists(), "a failed run left {}", dir.display());
    // A failure to write the run's files (a disk that is full from the start: a file-size limit
    // of 0, without root) leaves no empty folder either.
    let args = base_args(&dir, 4);
    let o = Command::new("bash")
        .arg("-c")
        .arg("ulimit -f 0; trap '' XFSZ; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_bszo"))
        .args(&args)
        .current_dir(workspace())
        .output()
        .unwrap();
    let err = one_error(&o);
    assert!(err.contains("File too large"), "{err}");
    assert!(!dir.exists(), "a failed run left {}", dir.display());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn an_os_error_is_said_once() {
    if !real_assets("os_error_once") {
        return;
    }
    let root = scratch("os-error");
    let dir = root.join("run");
    ok(&run(&base_args(&dir, 4)));
    std::fs::remove_file(dir.join("seed_log.jsonl")).unwrap();
    let o = export_step(&dir, 2, &root.join("x.safetensors"));
    let err = one_error(&o);
    assert!(err.contains("seed_log.jsonl"), "{err}");
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_mezo_adam_checkpoint_keeps_its_moments_in_a_binary_sidecar() {
    if !real_assets("binary_sidecar") {
        return;
    }
    let root = scratch("sidecar");
    let dir = root.join("run");
    ok(&run(&with(
        base_args(&dir, 4),
        &["--optimizer", "mezo_adam"],
    )));
    let json = std::fs::metadata(dir.join("checkpoint.json"))
        .unwrap()
        .len();
    assert!(json < 64 << 10, "checkpoint.json is {json} bytes");
    let sidecars: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("optimizer-state-"))
        .collect();
    assert_eq!(sidecars, ["optimizer-state-00000004.safetensors"]);
    let bytes = std::fs::read(dir.join(&sidecars[0])).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let params: usize = st
        .tensors()
        .iter()
        .filter(|(n, _)| n.starts_with("rule.m/"))
        .map(|(_, v)| v.shape().iter().product::<usize>())
        .sum();
    assert!(params > 4_000_000, "the first moment covers every weight");
    assert!(
        (bytes.len() as f64) < 1.01 * (2 * 4 * params) as f64,
        "two f32 moments: {} bytes for {params} parameters",
        bytes.len()
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn command_line_errors_are_single_clear_lines() {
    let root = scratch("messages");
    // An OS error is said once.
    let o = bszo(&[
        "export",
        "--run",
        root.join("missing").to_str().unwrap(),
        "--out",
        root.join("x.safetensors").to_str().unwrap(),
    ]);
    let err = one_error(&o);
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    // A missing preset given as a path is named as that path.
    let missing = root.join("missing.toml");
    let err = one_error(&bszo(&["finetune", "--config", missing.to_str().unwrap()]));
    assert!(!err.contains("configs//"), "{err}");
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    // A negative number is a value, refused by the setting's own check.
    let err = one_error(&bszo(&["finetune", "--lr", "-1", "--print-config"]));
    assert!(
        err.contains("lr") && !err.contains("unexpected argument"),
        "{err}"
    );
    // Resume and overwrite contradict each other.
    let o = bszo(&["finetune", "--resume", "--overwrite", "--out", "x"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--overwrite"), "{}", stderr(&o));
    // A broken GGUF file: one line even with backtraces on.
    let gguf = root.join("broken.gguf");
    std::fs::write(&gguf, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_bszo"))
        .args([
            "finetune",
            "--model",
            gguf.to_str().unwrap(),
            "--out",
            root.join("gguf-run").to_str().unwrap(),
            "--data-dir",
            data_dir().to_str().unwrap(),
            "--set",
            "task.protocol.kind=few_shot",
            "--set",
            "task.protocol.seed=42",
        ])
        .env("RUST_BACKTRACE", "1")
        .current_dir(workspace())
        .output()
        .unwrap();
    let err = stderr(&o);
    if data_dir().join("sst2").is_dir() {
        assert!(!o.status.success());
        assert!(
            err.trim_end().lines().count() == 1 && err.len() < 600,
            "{} bytes: {err}",
            err.len()
        );
        assert!(err.contains("broken.gguf"), "{err}");
    }
    // --help shows every setting with the embedded preset's value.
    let help = stdout(&bszo(&["finetune", "--help"]));
    for expected in [
        "optimizer.schedule.lr = 3e-4",
        "train.steps = 4000",
        "optimizer.name = \"bszo\"",
        "--no-export",
        "--set",
    ] {
        assert!(
            help.contains(expected),
            "--help lacks `{expected}`:\n{help}"
        );
    }
    std::fs::remove_dir_all(&root).unwrap();
}
