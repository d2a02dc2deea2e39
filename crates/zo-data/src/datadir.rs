//! Finding the data folder.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// The environment variable naming the data folder.
pub const DATA_DIR_ENV: &str = "ZO_DATA_DIR";

/// The data folder: the first existing folder among `flag`, `$ZO_DATA_DIR`, `./data` and
/// `../shared/data` (relative to the current directory).
/// [`DataError::DataDirNotFound`] lists every candidate otherwise.
pub fn resolve_data_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    let env = std::env::var_os(DATA_DIR_ENV).map(PathBuf::from);
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    resolve_data_dir_from(flag, env, &cwd)
}

/// [`resolve_data_dir`] with the environment value and current directory given explicitly.
pub fn resolve_data_dir_from(
    flag: Option<PathBuf>,
    env: Option<PathBuf>,
    cwd: &Path,
) -> Result<PathBuf> {
    let mut tried = Vec::new();
    let candidates = flag
        .into_iter()
        .chain(env)
        .map(|p| if p.is_absolute() { p } else { cwd.join(p) })
        .chain([cwd.join("data"), cwd.join("..").join("shared").join("data")]);
    for c in candidates {
        if c.is_dir() {
            return Ok(c);
        }
        tried.push(c);
    }
    Err(DataError::DataDirNotFound { tried })
}
