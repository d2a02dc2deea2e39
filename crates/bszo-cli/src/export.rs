//! Rebuilding a run's weights at any logged step and writing them to safetensors.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use zo_models::Weights;
use zo_train::{CONFIG_FILE, Checkpoint, RunDir};

use crate::config::RunConfig;
use crate::inputs::{self, Inputs, Role};
use crate::load;

/// Which step to rebuild.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepChoice {
    /// The best validation score's step.
    Best,
    /// The checkpoint's step.
    Last,
    /// A given number of completed steps.
    At(u64),
}

impl std::str::FromStr for StepChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "best" => Ok(Self::Best),
            "last" => Ok(Self::Last),
            n => n
                .parse()
                .map(Self::At)
                .map_err(|_| anyhow!("--step: `{n}` is not a number, `best` or `last`")),
        }
    }
}

/// Rebuild the weights of the run in `run` after `step` steps (from the base weights and the seed
/// log) and write them to `out`. Returns the step. The base weights and tokenizer must be those the
/// run recorded in `inputs.json`, unless `accept_changed_inputs`.
///
/// Every step the seed log holds completely can be rebuilt, also past the last checkpoint of a run
/// that was killed (a torn last line is left out); `best` and `last` read the checkpoint.
pub fn export(
    run: &Path,
    step: StepChoice,
    out: &Path,
    overwrite: bool,
    accept_changed_inputs: bool,
) -> Result<u64> {
    if out.exists() && !overwrite {
        bail!("{} exists; pass --overwrite to replace it", out.display());
    }
    let config = RunConfig::load(&run.join(CONFIG_FILE))?;
    let resolved = config.resolve()?;
    let looping = || -> Result<serde_json::Value> {
        let path = Checkpoint::path(run);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (no checkpoint yet: name a step)",
                path.display()
            )
        })?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow!("{}: bad JSON: {e}", path.display()))?;
        Ok(v["state"]["looping"].clone())
    };
    let steps = match step {
        StepChoice::Best => looping()?["best"]["step"]
            .as_u64()
            .ok_or_else(|| anyhow!("{}: the run has no validation score yet", run.display()))?,
        StepChoice::Last => looping()?["step"]
            .as_u64()
            .ok_or_else(|| anyhow!("{}: no step in the checkpoint", run.display()))?,
        StepChoice::At(n) => n,
    };
    // The base weights, once the seed log is known to hold the steps.
    let base = || -> Result<Weights> {
        let source =
            load::ModelSource::resolve(&config.model.name, resolved.kind, resolved.precision)?
                .with_rounding(config.model.rounding);
        if !accept_changed_inputs {
            let candidates = inputs::model_files(&source.path, config.model.tokenizer.as_deref())?;
            Inputs::load(run)?.check(&candidates, &[Role::Model, Role::Tokenizer])?;
        }
        source.load_weights()
    };
    let (weights, _) = RunDir::new(run)
        .weights_at(&resolved.optimizer, steps, || {
            base().map_err(|e| format!("{e:#}").into())
        })
        .with_context(|| format!("--step {steps}"))?;
    weights.save_safetensors(out)?;
    Ok(steps)
}
