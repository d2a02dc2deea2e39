//! What a fine-tuning run reports: the zero-shot metrics, the final report (`report.json`) and the
//! outcome handed back to the caller.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use zo_data::Protocol;
use zo_train::{Best, Metrics, StopReason, TestWeights};

use crate::config::{ModelKind, RunConfig};

/// The key of the calibrated accuracy in [`Metrics::extra`] (with `task.calibrate` on).
pub const CALIBRATED_ACCURACY: &str = "calibrated_accuracy";

/// The key of the calibrated macro-F1 in [`Metrics::extra`] (with `task.calibrate` on).
pub const CALIBRATED_MACRO_F1: &str = "calibrated_macro_f1";

/// The calibrated accuracy of an evaluation, when it was computed.
pub fn calibrated_accuracy(metrics: &Metrics) -> Option<f64> {
    metrics.extra.get(CALIBRATED_ACCURACY).copied()
}

/// `" (calibrated: 61.00%, macro-F1 58.20%)"` beside an accuracy, or nothing for an evaluation
/// without calibration.
pub fn calibrated_note(metrics: &Metrics) -> String {
    match calibrated_accuracy(metrics) {
        None => String::new(),
        Some(acc) => {
            let f1 = metrics
                .extra
                .get(CALIBRATED_MACRO_F1)
                .map(|f| format!(", macro-F1 {:.2}%", 100.0 * f))
                .unwrap_or_default();
            format!(" (calibrated: {:.2}%{f1})", 100.0 * acc)
        }
    }
}

/// The zero-shot metrics of the base weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZeroShot {
    /// On the validation split.
    pub validation: Metrics,
    /// On the test split.
    pub test: Metrics,
}

/// Forward-pass counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Forwards {
    /// Of the optimizer steps.
    pub train: u64,
    /// Of the evaluations (zero-shot excluded).
    pub eval: u64,
    /// Of the zero-shot evaluation.
    pub zero_shot: u64,
    /// Per optimizer step.
    pub per_step: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The final report (`report.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The run's configuration.
    pub config: RunConfig,
    /// The resolved model path.
    pub model_path: PathBuf,
    /// The head.
    pub model_kind: ModelKind,
    /// The data folder that was read (as resolved from `task.data_dir`, `ZO_DATA_DIR` and the
    /// default locations).
    #[serde(default)]
    pub data_dir: PathBuf,
    /// Trainable parameters.
    pub parameters: usize,
    /// The checkpoint's weights held frozen beside the adapters (0 for full fine-tuning).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub frozen_parameters: usize,
    /// The data protocol.
    pub protocol: Protocol,
    /// Examples in train / validation / test.
    pub sizes: [usize; 3],
    /// The base weights' metrics.
    pub zero_shot: ZeroShot,
    /// The best validation score and its step; step 0 is the starting (base) weights, whose
    /// zero-shot validation score every later evaluation must strictly beat.
    pub best: Option<Best>,
    /// No step beat the starting weights on validation: the best step is 0, and the tested and
    /// exported weights are the starting weights.
    #[serde(default)]
    pub best_is_start: bool,
    /// The test metrics.
    pub test: Option<Metrics>,
    /// Which weights were tested.
    pub test_weights: Option<TestWeights>,
    /// Steps completed.
    pub steps: u64,
    /// Why the run ended.
    pub stop_reason: StopReason,
    /// Forward passes.
    pub forwards: Forwards,
    /// Wall-clock seconds of this process (a resumed run counts only its own time).
    pub wall_time_s: f64,
    /// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
    pub peak_rss_bytes: Option<u64>,
    /// Files written in the output folder.
    pub files: Vec<String>,
    /// The processes that ran the session that wrote this report (`bszo finetune --parallel`);
    /// absent for one process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<ProcessesReport>,
}

/// How several processes ran a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcessesReport {
    /// The number of processes.
    pub count: usize,
    /// How they split a step.
    pub mode: zo_train::ParallelMode,
    /// The pieces a minibatch was cut into (`train.shards`).
    pub shards: usize,
    /// Payload bytes each process sent to the others per optimizer step, by process (the
    /// losses of its probes or minibatch pieces; evaluations and the guard not counted).
    pub bytes_per_step: Vec<f64>,
    /// The mean time of one all-gather of one `f64` between the processes, in microseconds,
    /// measured at the end of the session over 1000 of them (0 for one process).
    #[serde(default)]
    pub allgather_latency_us: f64,
}

/// What a run returns.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The output folder.
    pub dir: PathBuf,
    /// The report (also in `dir/report.json` unless the run was stopped).
    pub report: Report,
    /// A resume that found no checkpoint (a run stopped before its first one, or none at all)
    /// and started the run from step 0.
    pub started_over: bool,
}

/// A `kB` field of this process's `/proc/self/status` (Linux), e.g. `VmHWM:`.
pub fn status_kb(field: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident set size of this process (Linux `VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kb("VmHWM:").map(|kb| kb * 1024)
}
