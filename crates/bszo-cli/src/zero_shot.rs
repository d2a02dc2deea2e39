//! `bszo zero-shot`: the base weights' metrics on a task's test split (and, if asked, its
//! validation split), with the prompts a fine-tuning run would use; no training, no run folder.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use zo_data::Protocol;
use zo_train::{Metrics, Split};

use crate::config::{ModelKind, RunConfig};
use crate::load;
use crate::task_model::PromptTask;

/// What `bszo zero-shot` measures (also its `--json` output).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZeroShotReport {
    /// The task's short name.
    pub task: String,
    /// The model as named in the configuration.
    pub model: String,
    /// The resolved model path.
    pub model_path: PathBuf,
    /// The head.
    pub model_kind: ModelKind,
    /// The masked-LM template of the entailment tasks.
    pub nli_template: String,
    /// Longest prompt in tokens.
    pub max_length: usize,
    /// The data protocol.
    pub protocol: Protocol,
    /// Test examples evaluated.
    pub test_size: usize,
    /// The test metrics.
    pub test: Metrics,
    /// The validation metrics, when asked for.
    pub validation: Option<Metrics>,
    /// Wall-clock seconds (loading included).
    pub wall_time_s: f64,
}

/// Load the data and model of `config` and evaluate the base weights.
pub fn zero_shot(config: &RunConfig, validation: bool) -> Result<ZeroShotReport> {
    let started = Instant::now();
    let resolved = config.resolve()?;
    let (_, splits, loaded) = load::data_and_model(config, &resolved)?;
    let test_size = splits.test.len();
    let (model_path, kind) = (loaded.source.path.clone(), loaded.source.kind);
    let task = PromptTask::with_calibration(
        loaded.head,
        splits,
        config.task.eval_batch_size,
        resolved.calibrate,
    )?;
    let test = task.evaluate_split(Split::Test)?;
    let validation = if validation {
        Some(task.evaluate_split(Split::Validation)?)
    } else {
        None
    };
    Ok(ZeroShotReport {
        task: resolved.task.name().to_string(),
        model: config.model.name.clone(),
        model_path,
        model_kind: kind,
        nli_template: resolved.nli_template.name().to_string(),
        max_length: config.model.max_length,
        protocol: resolved.protocol,
        test_size,
        test,
        validation,
        wall_time_s: started.elapsed().as_secs_f64(),
    })
}
