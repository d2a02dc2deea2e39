//! Finding the data folder and the folder of provisioned models.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// The environment variable naming the data folder.
pub const DATA_DIR_ENV: &str = "ZO_DATA_DIR";

/// The environment variable naming the folder of provisioned models.
pub const MODELS_DIR_ENV: &str = "ZO_MODELS_DIR";

/// The folder of provisioned models (as `crates/zo-models/scripts/provision.sh` fills it):
/// `$ZO_MODELS_DIR` if set and not empty, else `root/.cache/models` (with `root` empty: the
/// relative path `.cache/models`, taken against the current folder).
pub fn models_dir_in(root: &Path) -> PathBuf {
    match std::env::var_os(MODELS_DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => root.join(".cache").join("models"),
    }
}

/// Who named a data folder that must exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataDirOrigin {
    /// The caller (a command-line flag or a configuration field).
    Explicit,
    /// The environment variable [`DATA_DIR_ENV`].
    Environment,
}

impl fmt::Display for DataDirOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Explicit => f.write_str("data_dir"),
            Self::Environment => f.write_str(DATA_DIR_ENV),
        }
    }
}

/// The data folder.
///
/// A folder named explicitly (`flag`) or by `$ZO_DATA_DIR` is used as it is and must exist: a
/// missing one is [`DataError::DataDirMissing`], never a silent fall-back to another folder.
/// With neither, the first existing folder among `./data` (relative to the current directory) is
/// used, else [`DataError::DataDirNotFound`].
pub fn resolve_data_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    let env = std::env::var_os(DATA_DIR_ENV).map(PathBuf::from);
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    resolve_data_dir_from(flag, env, &cwd, &[])
}

/// [`resolve_data_dir`] with the environment value, the current directory and further default
/// folders (tried after `cwd/data`, in order; e.g. an application's installation folder) given
/// explicitly. Relative paths are taken against `cwd`.
pub fn resolve_data_dir_from(
    flag: Option<PathBuf>,
    env: Option<PathBuf>,
    cwd: &Path,
    defaults: &[PathBuf],
) -> Result<PathBuf> {
    let absolute = |p: PathBuf| if p.is_absolute() { p } else { cwd.join(p) };
    let named = match (flag, env.filter(|p| !p.as_os_str().is_empty())) {
        (Some(p), _) => Some((absolute(p), DataDirOrigin::Explicit)),
        (None, Some(p)) => Some((absolute(p), DataDirOrigin::Environment)),
        (None, None) => None,
    };
    if let Some((path, origin)) = named {
        return if path.is_dir() {
            Ok(path)
        } else {
            Err(DataError::DataDirMissing { origin, path })
        };
    }
    let mut tried = Vec::new();
    for c in std::iter::once(cwd.join("data")).chain(defaults.iter().cloned().map(absolute)) {
        if c.is_dir() {
            return Ok(c);
        }
        tried.push(c);
    }
    Err(DataError::DataDirNotFound { tried })
}
