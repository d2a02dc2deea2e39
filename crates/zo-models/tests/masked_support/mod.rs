//! Shared helpers of the masked-LM tests: fixture and cache paths, SST-2 files.
#![allow(dead_code, clippy::print_stderr)]

use std::path::{Path, PathBuf};

/// A golden fixture folder.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The folder of provisioned real checkpoints: `ZO_MODELS_DIR`, else `<workspace>/.cache/models`.
pub fn models_dir() -> PathBuf {
    bszo_testkit::models_dir()
}

/// SPLADE-tiny's folder, or `None` (skip, with the reason) when it is not provisioned; missing
/// under `BSZO_REQUIRE_MODELS`, the test fails.
pub fn splade_tiny(test: &str) -> Option<PathBuf> {
    bszo_testkit::splade_tiny(test)
}

/// The rows (sentence, label) of an LM-BFF TSV file with a `sentence\tlabel` header.
pub fn read_tsv(path: &Path) -> anyhow::Result<Vec<(String, usize)>> {
    let text = std::fs::read_to_string(path)?;
    let mut rows = Vec::new();
    for line in text.lines().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let (sentence, label) = line
            .rsplit_once('\t')
            .ok_or_else(|| anyhow::anyhow!("{}: no tab in {line:?}", path.display()))?;
        rows.push((sentence.to_string(), label.trim().parse()?));
    }
    Ok(rows)
}

/// An SST-2 file of the shipped data (e.g. `k-shot/16-13/test.tsv`); missing, the test fails.
pub fn sst2(rel: &str, _test: &str) -> Option<PathBuf> {
    Some(bszo_testkit::data(&format!("sst2/{rel}")))
}

/// A unique scratch folder under the system temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zo-models-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch folder");
    dir
}
