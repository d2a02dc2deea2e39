//! Shared helpers for the integration tests.
#![allow(dead_code, clippy::print_stderr)]

use std::path::PathBuf;

/// The repository's data folder (`ZO_DATA_DIR` when set). It ships with the repository, so a
/// missing folder fails the test.
pub fn data_dir() -> PathBuf {
    assert_eq!(zo_data::DATA_DIR_ENV, bszo_testkit::DATA_ENV);
    bszo_testkit::shipped(bszo_testkit::data_dir().join("sst2"));
    bszo_testkit::data_dir()
}

/// A fresh, empty temporary folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zo-data-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary folder");
    dir
}
