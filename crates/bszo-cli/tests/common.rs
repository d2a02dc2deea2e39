//! Shared helpers: the real model and data, a scratch folder, running the binary.
#![allow(dead_code, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The overrides of a quick run: SST-2's 16-shot split for data seed 42, 16 test sentences.
pub const FEW_SHOT_QUICK: [&str; 6] = [
    "--set",
    "task.protocol.kind=few_shot",
    "--set",
    "task.protocol.seed=42",
    "--set",
    "task.test_size=16",
];

/// Whether SPLADE-tiny and the datasets are present. Missing ones fail the test when
/// `BSZO_REQUIRE_MODELS` is set (CI sets it after provisioning), and skip it otherwise.
///
/// Makes the workspace root the current folder, as it is for the binary run by [`bszo`]: the
/// library, run in this process, finds `models/` and `.cache/models` there.
pub fn real_assets(test: &str) -> bool {
    std::env::set_current_dir(workspace()).expect("the workspace root exists");
    bszo_testkit::shipped(data_dir().join("sst2"));
    bszo_testkit::splade_tiny(test).is_some()
}

/// The datasets folder: `ZO_DATA_DIR`, else the repository's `data/`.
pub fn data_dir() -> PathBuf {
    bszo_testkit::data_dir()
}

/// The workspace root (where the binary finds `data/` and `models/`).
pub fn workspace() -> PathBuf {
    bszo_testkit::workspace()
}

/// An empty scratch folder for `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bszo-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `bszo` binary, run in the workspace root.
pub fn bszo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bszo"))
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("the bszo binary runs")
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The tensors of a safetensors file as (name, f32 bits), sorted by name.
pub fn tensor_bits(path: &Path) -> Vec<(String, Vec<u32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<u32>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let bits = view
                .data()
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, bits)
        })
        .collect();
    out.sort();
    out
}

/// `bszo finetune` of `config` into `dir` through the library (resuming it with `resume`; with
/// `stop`, stopped before the first step as by Ctrl-C), which must succeed.
pub fn finetune_into(
    config: bszo_cli::RunConfig,
    dir: &Path,
    resume: bool,
    stop: bool,
) -> bszo_cli::finetune::Outcome {
    bszo_cli::finetune::finetune(bszo_cli::finetune::Options {
        config,
        out_dir: Some(dir.to_path_buf()),
        resume,
        progress: false,
        stop: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(stop)),
        accept_changed_inputs: false,
        max_memory: None,
        processes: None,
    })
    .unwrap_or_else(|e| panic!("{e:#}"))
}
