//! Events of a run and the observers that receive them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use zo_optim::{ObjectiveError, StepReport};

use crate::checkpoint::LogMark;
use crate::error::{Result, TrainError};
use crate::model::{Metrics, Split};
use crate::trainer::Summary;

/// Something that happened in a run. Serialised with an `event` tag
/// (`{"event":"step",…}`, `{"event":"evaluation",…}`, …).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An optimizer step finished.
    Step {
        /// The optimizer's report (`report.step` is the 0-based step).
        report: StepReport,
        /// Training forwards so far, this step included.
        train_forwards: u64,
    },
    /// A split was evaluated.
    Evaluation {
        /// Steps completed.
        step: u64,
        /// The split.
        split: Split,
        /// The metrics.
        metrics: Metrics,
        /// Whether this is the best validation score so far.
        best: bool,
        /// Evaluation forwards so far, this evaluation included.
        eval_forwards: u64,
    },
    /// The validation score has not improved for `patience` evaluations.
    EarlyStop {
        /// Steps completed.
        step: u64,
        /// The step of the best validation score.
        best_step: u64,
        /// The best validation score.
        best_score: f64,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Steps completed.
        step: u64,
        /// The checkpoint file.
        path: PathBuf,
    },
    /// The stop flag was seen; a resumable checkpoint is on disk (when there is an output folder).
    Stopped {
        /// Steps completed.
        step: u64,
    },
    /// The run ended (step budget reached or early stop) and the test split was evaluated.
    Finish {
        /// The run's summary.
        summary: Summary,
    },
}

impl Event {
    /// Whether the event belongs to the metrics stream (steps, evaluations, early stop), as opposed
    /// to the bookkeeping of one process (checkpoints, stops, the end).
    pub fn is_metric(&self) -> bool {
        matches!(
            self,
            Self::Step { .. } | Self::Evaluation { .. } | Self::EarlyStop { .. }
        )
    }
}

/// Receives the events of a run, in order. An error stops the run.
pub trait Observer {
    /// One event.
    fn on_event(&mut self, event: &Event) -> std::result::Result<(), ObjectiveError>;

    /// Called just before a checkpoint is committed: make what was written durable and, for an
    /// append-only log in the output folder, return its file name and length, which the checkpoint
    /// records so that a resume cuts the log back to them. The default does nothing.
    fn sync(&mut self) -> std::result::Result<Option<LogMark>, ObjectiveError> {
        Ok(None)
    }
}

/// Any closure `FnMut(&Event) -> Result<(), ObjectiveError>` is an observer.
impl<F> Observer for F
where
    F: FnMut(&Event) -> std::result::Result<(), ObjectiveError>,
{
    fn on_event(&mut self, event: &Event) -> std::result::Result<(), ObjectiveError> {
        self(event)
    }
}

/// Writes every event as one JSON object per line (JSONL), each line flushed to the writer as a
/// whole (one `write` per line), so that a kill tears at most the line being written.
///
/// Opened on a file ([`create`](JsonlWriter::create), [`append`](JsonlWriter::append)), it is an
/// append-only log of the run: at a checkpoint ([`Observer::sync`]) the file is synced and its
/// length recorded in the checkpoint.
#[derive(Debug)]
pub struct JsonlWriter<W: Write> {
    out: W,
    metrics_only: bool,
    line: Vec<u8>,
    file: Option<(String, File)>,
    bytes: u64,
}

impl<W: Write> JsonlWriter<W> {
    /// Write to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            metrics_only: false,
            line: Vec::new(),
            file: None,
            bytes: 0,
        }
    }

    /// Write only the metrics stream (see [`Event::is_metric`]).
    pub fn metrics_only(mut self) -> Self {
        self.metrics_only = true;
        self
    }

    /// The writer.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// The writer, unwrapped.
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Bytes written (for a file opened to append: its length).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl JsonlWriter<File> {
    fn on_file(path: &Path, file: File, bytes: u64) -> Result<Self> {
        let handle = file.try_clone().map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut me = Self::new(file);
        me.file = Some((name, handle));
        me.bytes = bytes;
        Ok(me)
    }

    /// Create (or truncate) the file at `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::on_file(path, file, 0)
    }

    /// Append to the file at `path` (created if absent), e.g. when a run resumes.
    pub fn append(path: &Path) -> Result<Self> {
        let io = |source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let bytes = file.metadata().map_err(io)?.len();
        Self::on_file(path, file, bytes)
    }
}

impl<W: Write> Observer for JsonlWriter<W> {
    fn on_event(&mut self, event: &Event) -> std::result::Result<(), ObjectiveError> {
        if !self.metrics_only || event.is_metric() {
            self.line.clear();
            serde_json::to_writer(&mut self.line, event)?;
            self.line.push(b'\n');
            self.out.write_all(&self.line)?;
            self.out.flush()?;
            self.bytes += self.line.len() as u64;
        }
        Ok(())
    }

    fn sync(&mut self) -> std::result::Result<Option<LogMark>, ObjectiveError> {
        self.out.flush()?;
        Ok(match &self.file {
            Some((name, handle)) => {
                handle.sync_data()?;
                Some(LogMark {
                    file: name.clone(),
                    bytes: self.bytes,
                })
            }
            None => None,
        })
    }
}

/// Keeps every event in memory; clones share the same list (hand one clone to the trainer, read
/// the other).
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The events of the metrics stream so far (see [`Event::is_metric`]).
    pub fn metric_events(&self) -> Vec<Event> {
        self.events().into_iter().filter(Event::is_metric).collect()
    }
}

impl Observer for Recorder {
    fn on_event(&mut self, event: &Event) -> std::result::Result<(), ObjectiveError> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event.clone());
        Ok(())
    }
}
