//! One writer at a time, and names that cannot collide.
//!
//! - [`RunLock`]: an exclusive advisory lock (`flock(2)`) on `DIR/.lock`, held for as long as the
//!   value lives. The kernel releases it when the process ends, however it ends (a kill −9
//!   included), so a crashed run never leaves a folder locked; a second process that tries to lock
//!   the folder of a live run gets [`TrainError::Locked`].
//! - [`create_unique_dir`]: a new folder whose name carries the time to the millisecond and the
//!   process id, created with `mkdir` (which fails when the name exists) and retried with a counter,
//!   so that two runs started at the same moment never share a folder.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use super::LOCK_FILE;
use super::files::{io_err, sync_dir};
use crate::error::{Result, TrainError};

/// An exclusive lock on a run folder (see the [module](crate::rundir) documentation). Unlocked on drop.
#[derive(Debug)]
pub struct RunLock {
    dir: PathBuf,
    _file: File,
}

impl RunLock {
    /// Lock `dir` (which must exist) without waiting: [`TrainError::Locked`] when another process
    /// holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Self {
                dir: dir.to_path_buf(),
                _file: file,
            }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(TrainError::Locked {
                dir: dir.to_path_buf(),
                lock: path,
            }),
            Err(e) => Err(TrainError::Io {
                path,
                source: e.into(),
            }),
        }
    }

    /// The locked folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Create a new folder `parent/STEM-YYYYMMDD-HHMMSS.mmm-pPID` (UTC), or with `-2`, `-3`, … appended
/// when that name exists; `parent` is created if absent. The creation itself is the test of
/// uniqueness (`mkdir` fails on an existing name), so concurrent callers never get the same folder.
pub fn create_unique_dir(parent: &Path, stem: &str) -> Result<PathBuf> {
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let base = format!(
        "{stem}-{}-p{}",
        utc_timestamp(now.as_secs(), now.subsec_millis()),
        std::process::id()
    );
    for n in 1u32.. {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = parent.join(name);
        match fs::create_dir(&dir) {
            Ok(()) => {
                sync_dir(parent);
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 10_000 => continue,
            Err(e) => return Err(io_err(&dir)(e)),
        }
    }
    unreachable!("the loop returns")
}

/// `YYYYMMDD-HHMMSS.mmm` of a Unix time (UTC, proleptic Gregorian calendar).
pub fn utc_timestamp(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (H. Hinnant's algorithm, "chrono-compatible low-level date algorithms").
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}.{millis:03}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(0, 0), "19700101-000000.000");
        // 2000-02-29 12:34:56 UTC (a leap day).
        assert_eq!(utc_timestamp(951_827_696, 7), "20000229-123456.007");
        // 2026-11-30 11:06:14 UTC.
        assert_eq!(utc_timestamp(1_796_036_774, 999), "20261130-110614.999");
    }
}
