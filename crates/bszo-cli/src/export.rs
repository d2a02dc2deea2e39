//! Rebuilding a run's weights at any logged step and writing them to safetensors.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use zo_train::{Checkpoint, SEED_LOG_FILE, read_seed_log, replay};

use crate::config::RunConfig;
use crate::finetune::CONFIG_FILE;
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
/// log) and write them to `out`. Returns the step.
pub fn export(run: &Path, step: StepChoice, out: &Path, overwrite: bool) -> Result<u64> {
    if out.exists() && !overwrite {
        bail!("{} exists; pass --overwrite to replace it", out.display());
    }
    let config = RunConfig::load(&run.join(CONFIG_FILE))?;
    let resolved = config.resolve()?;
    let ck = Checkpoint::load(run)?;
    let steps = match step {
        StepChoice::Best => {
            ck.state
                .looping
                .best
                .ok_or_else(|| anyhow!("{}: the run has no validation score yet", run.display()))?
                .step
        }
        StepChoice::Last => ck.state.looping.step,
        StepChoice::At(n) => n,
    };
    let log = read_seed_log(&run.join(SEED_LOG_FILE))?;
    if steps > log.len() as u64 {
        bail!(
            "--step {steps}: {} logs {} steps",
            run.join(SEED_LOG_FILE).display(),
            log.len()
        );
    }
    let path: PathBuf = load::resolve(&config.model.name)?;
    let kind = match resolved.kind {
        Some(k) => k,
        None => load::detect_kind(&path)?,
    };
    let mut weights = load::load_weights(&path, kind, resolved.precision)?;
    replay(&resolved.optimizer, &mut weights, &log, steps)?;
    weights.save_safetensors(out)?;
    Ok(steps)
}
