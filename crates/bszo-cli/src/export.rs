//! Rebuilding a run's weights at any logged step and writing them to safetensors.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use zo_models::{Peft, Weights};
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

/// How [`export`] writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// Replace an existing file or folder.
    pub overwrite: bool,
    /// Rebuild even if the base weights or tokenizer differ from those the run recorded.
    pub accept_changed_inputs: bool,
    /// LoRA runs: the base weights with the adapters merged in, instead of the adapters.
    pub merged: bool,
}

/// Rebuild the weights of the run in `run` after `step` steps (from the base weights and the seed
/// log) and write them to `out`. Returns the step. The base weights and tokenizer must be those the
/// run recorded in `inputs.json`, unless `accept_changed_inputs`.
///
/// A full fine-tuning run writes its weights to the safetensors file `out`. A LoRA or prefix run
/// writes its adapters into the folder `out` (`adapter_model.safetensors`, `adapter_config.json`),
/// or with `merged` (LoRA only) the merged weights to the file `out`.
///
/// Every step the seed log holds completely can be rebuilt, also past the last checkpoint of a run
/// that was killed (a torn last line is left out); `best` and `last` read the checkpoint.
pub fn export(run: &Path, step: StepChoice, out: &Path, options: ExportOptions) -> Result<u64> {
    let ExportOptions {
        overwrite,
        accept_changed_inputs,
        merged,
    } = options;
    if out.exists() && !overwrite {
        bail!("{} exists; pass --overwrite to replace it", out.display());
    }
    let config = RunConfig::load(&run.join(CONFIG_FILE))?;
    let resolved = config.resolve()?;
    match (&config.peft, merged) {
        (Peft::Full, true) => bail!(
            "--merged: the run trained every weight (no adapters to merge); export without --merged"
        ),
        (Peft::Prefix(_), true) => bail!(
            "--merged: prefixes are not weights of the base model and cannot be merged; export without --merged"
        ),
        _ => {}
    }
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
                .with_rounding(config.model.rounding)
                .with_adapters(config.peft.clone(), config.train.seed);
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
    match (weights.peft().is_full(), merged) {
        (true, _) => weights.save_safetensors(out)?,
        (false, true) => weights.merged()?.save_safetensors(out)?,
        (false, false) => {
            if out.is_file() {
                std::fs::remove_file(out)
                    .with_context(|| format!("cannot replace {}", out.display()))?;
            }
            weights.save_adapters(out, &config.model.name)?
        }
    }
    Ok(steps)
}
