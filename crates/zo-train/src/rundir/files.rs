//! Files of a run folder on disk: atomic writes, the cut-back of append-only logs, and the removal
//! of what a killed process left behind.
//!
//! Whole files are written atomically: to a temporary file `.NAME.tmp-PID` in the same folder,
//! synced, then renamed over the target (and the folder synced), so a crash leaves either the old or
//! the new file. [`remove_temporaries`] removes the temporary files that a process killed between
//! creating and renaming them leaves.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The temporary file that [`write_atomic`] writes `path` through.
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_dir(path).join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Whether `name` is a temporary file of [`write_atomic`] (`.NAME.tmp-PID`).
pub fn is_temporary_name(name: &str) -> bool {
    name.starts_with('.')
        && name.rsplit_once(".tmp-").is_some_and(|(head, pid)| {
            head.len() > 1 && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
        })
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Sync the folder `dir`, making renames and creations in it durable (best effort: not every
/// platform can open a folder).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Write `path` atomically with `write`: to a temporary file in the same folder, synced, renamed
/// over `path`; the folder is then synced. On an error the temporary file is removed.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temporary_path(path);
    let result = (|| {
        write(&tmp)?;
        let f = File::open(&tmp).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_dir(&parent_dir(path));
    Ok(())
}

/// Write `bytes` to `path` atomically (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f = File::create(tmp).map_err(io_err(tmp))?;
        f.write_all(bytes).map_err(io_err(tmp))
    })
}

/// Cut the log at `path` back to `bytes` (its length at a checkpoint) and sync it. A log shorter
/// than that has lost lines that the checkpoint counts on: an error.
pub(crate) fn cut_log(path: &Path, bytes: u64, step: u64) -> Result<()> {
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io_err(path)(e)),
    };
    if len < bytes {
        return Err(TrainError::LostLog {
            path: path.to_path_buf(),
            found: len,
            expected: bytes,
            step,
        });
    }
    if len > bytes {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        f.set_len(bytes).map_err(io_err(path))?;
        f.sync_all().map_err(io_err(path))?;
    }
    Ok(())
}

/// Remove the temporary files (and folders) of atomic writes (`.NAME.tmp-PID`) from `dir`; the
/// names removed.
/// Call it while holding the folder's [`RunLock`](super::RunLock), so that no live writer owns them.
pub fn remove_temporaries(dir: &Path) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_temporary_name(&name) {
            continue;
        }
        // A file of an atomic write, or the private folder of one whose serialiser makes its
        // own temporary file (zo-models' safetensors export).
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_file() => fs::remove_file(&path).map_err(io_err(&path))?,
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path).map_err(io_err(&path))?,
            _ => continue,
        }
        removed.push(name);
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_the_file_and_leave_no_temporary_files() {
        let dir = std::env::temp_dir().join(format!("zo-train-atomic-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        // A folder that does not exist is an error naming a path, not a panic.
        let err = write_atomic(&dir.join("missing").join("x.json"), b"x").unwrap_err();
        assert!(matches!(err, TrainError::Io { .. }), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_files_and_folders_are_removed_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("zo-train-rundir-tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join(".best.safetensors.tmp-7")).unwrap();
        fs::write(dir.join(".best.safetensors.tmp-7/.tmpAbC123"), b"half").unwrap();
        fs::write(dir.join(".checkpoint.json.tmp-8"), b"{").unwrap();
        fs::write(dir.join("checkpoint.json"), b"{}").unwrap();
        fs::create_dir_all(dir.join("notes")).unwrap();
        let removed = remove_temporaries(&dir).unwrap();
        assert_eq!(
            removed,
            [".best.safetensors.tmp-7", ".checkpoint.json.tmp-8"]
        );
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["checkpoint.json", "notes"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_names_are_recognised() {
        assert!(is_temporary_name(".checkpoint.json.tmp-123"));
        assert!(is_temporary_name(".best.safetensors.tmp-9"));
        assert!(!is_temporary_name("checkpoint.json.tmp-123"));
        assert!(!is_temporary_name(".lock"));
        assert!(!is_temporary_name(".notes.tmp-abc"));
        assert!(!is_temporary_name(".tmp-1"));
    }
}
