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
    match std::env::var_os("ZO_MODELS_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models"),
    }
}

/// The datasets folder: `ZO_DATA_DIR`, else the repository's `data/`.
pub fn data_dir() -> PathBuf {
    match std::env::var_os("ZO_DATA_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data"),
    }
}

/// SPLADE-tiny's folder, or `None` (with the reason on stderr) when it is not provisioned.
pub fn splade_tiny(test: &str) -> Option<PathBuf> {
    let dir = models_dir().join("splade-tiny");
    let needed = ["config.json", "model.safetensors", "tokenizer.json"];
    if needed.iter().all(|f| dir.join(f).is_file()) {
        Some(dir)
    } else {
        eprintln!(
            "SKIP {test}: SPLADE-tiny is not provisioned in {} (run crates/zo-models/scripts/provision.sh)",
            dir.display()
        );
        None
    }
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

/// An SST-2 file (e.g. `k-shot/16-13/test.tsv`), or `None` (with the reason) when absent.
pub fn sst2(rel: &str, test: &str) -> Option<PathBuf> {
    let path = data_dir().join("sst2").join(rel);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIP {test}: {} not found (set ZO_DATA_DIR)",
            path.display()
        );
        None
    }
}

/// A unique scratch folder under the system temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zo-models-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch folder");
    dir
}
