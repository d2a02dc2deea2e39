//! Shared helpers for the integration tests.
#![allow(dead_code, clippy::print_stderr)]

use std::path::PathBuf;

/// The shared data folder, or `None` (with the reason printed) when it is absent.
pub fn data_dir() -> Option<PathBuf> {
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if beside.is_dir() {
        return Some(beside);
    }
    match zo_data::resolve_data_dir(None) {
        Ok(dir) => Some(dir),
        Err(e) => {
            eprintln!("skipping: the shared data folder is absent ({e})");
            None
        }
    }
}

/// A fresh, empty temporary folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zo-data-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary folder");
    dir
}
