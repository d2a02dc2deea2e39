#![doc = include_str!("../README.md")]
#![allow(clippy::print_stderr)]

use std::fmt::Display;
use std::path::{Path, PathBuf};

/// Set (to anything) to make a missing provisioned or system asset fail the test instead of
/// skipping it. `.ci/run` sets it after provisioning.
pub const REQUIRE_ENV: &str = "BSZO_REQUIRE_MODELS";

/// The folder of provisioned models: `$ZO_MODELS_DIR`, else `<workspace>/.cache/models`.
pub const MODELS_ENV: &str = zo_data::MODELS_DIR_ENV;

/// The task data folder: `$ZO_DATA_DIR`, else `<workspace>/data`.
pub const DATA_ENV: &str = "ZO_DATA_DIR";

/// SmolLM2-135M-Instruct's GGUF file under [`models_dir`].
pub const SMOLLM2_GGUF: &str = "smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf";

/// How a missing provisioned model is provisioned.
const PROVISION: &str = "run crates/zo-models/scripts/provision.sh";

/// The workspace root.
pub fn workspace() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(Path::parent)
        .map_or_else(|| here.to_path_buf(), Path::to_path_buf)
}

/// The folder of provisioned models: `$ZO_MODELS_DIR`, else `<workspace>/.cache/models`.
pub fn models_dir() -> PathBuf {
    zo_data::models_dir_in(&workspace())
}

/// The task data folder: `$ZO_DATA_DIR`, else the repository's `data/`.
pub fn data_dir() -> PathBuf {
    match std::env::var_os(DATA_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => workspace().join("data"),
    }
}

/// Whether missing provisioned or system assets fail tests ([`REQUIRE_ENV`] is set).
pub fn required() -> bool {
    std::env::var_os(REQUIRE_ENV).is_some()
}

/// The one rule for a test whose provisioned or system asset may be missing: `present` is
/// returned; when false, the test `test` is skipped (the reason `what` on stderr) or, under
/// [`REQUIRE_ENV`], fails naming `what`.
///
/// # Panics
/// When the asset is missing and [`REQUIRE_ENV`] is set.
pub fn require(test: &str, present: bool, what: impl Display) -> bool {
    if !present {
        let msg = format!("{test}: needs {what}");
        assert!(
            !required(),
            "{msg} ({REQUIRE_ENV} is set: nothing may be skipped)"
        );
        eprintln!("SKIP {msg}");
    }
    present
}

/// `path` if it exists; otherwise [`require`]'s rule, with `how` telling how to get it.
pub fn asset(test: &str, path: PathBuf, how: &str) -> Option<PathBuf> {
    let present = path.exists();
    require(test, present, format_args!("{} ({how})", path.display())).then_some(path)
}

/// A file or folder that ships with the repository: `path`, which must exist.
///
/// # Panics
/// When it does not exist (whatever [`REQUIRE_ENV`] says: the checkout is incomplete).
pub fn shipped(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: it ships with the repository (or $ZO_DATA_DIR names a folder without it)",
        path.display()
    );
    path
}

/// SPLADE-tiny's provisioned folder (`config.json`, `model.safetensors`, `tokenizer.json`), by
/// [`require`]'s rule.
pub fn splade_tiny(test: &str) -> Option<PathBuf> {
    let dir = models_dir().join("splade-tiny");
    let present = ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .all(|f| dir.join(f).is_file());
    require(
        test,
        present,
        format_args!("SPLADE-tiny in {} ({PROVISION})", dir.display()),
    )
    .then_some(dir)
}

/// SmolLM2-135M-Instruct's provisioned GGUF file, by [`require`]'s rule.
pub fn smollm2(test: &str) -> Option<PathBuf> {
    asset(test, models_dir().join(SMOLLM2_GGUF), PROVISION)
}

/// The shipped stories260K folder (`stories260K.bin`, `tok512.bin`).
pub fn stories260k() -> PathBuf {
    let dir = workspace().join("models/stories260k");
    shipped(dir.join("stories260K.bin"));
    shipped(dir.join("tok512.bin"));
    dir
}

/// A file of the task data folder (e.g. `sst2/k-shot/16-13/test.tsv`), which must exist.
pub fn data(rel: &str) -> PathBuf {
    shipped(data_dir().join(rel))
}

/// The pinned configuration of the workspace's property tests: `cases` cases drawn by proptest's
/// ChaCha generator from the fixed `seed` (unless `PROPTEST_RNG_SEED` names another), failures
/// saved to — and replayed first from — the committed file `regressions` (an absolute path, e.g.
/// `concat!(env!("CARGO_MANIFEST_DIR"), "/proptest-regressions/properties.txt")`).
pub fn proptest_config(
    cases: u32,
    seed: u64,
    regressions: &'static str,
) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, FileFailurePersistence, RngAlgorithm, RngSeed};
    let base = Config::default();
    Config {
        cases,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: match base.rng_seed {
            RngSeed::Random => RngSeed::Fixed(seed),
            chosen => chosen,
        },
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..base
    }
}
