//! The trainer's run folder: starting a fresh run, resuming from a checkpoint, writing checkpoints.

use std::fs;

use zo_optim::ParamSet;

use super::Trainer;
use crate::checkpoint::{Checkpoint, FORMAT_VERSION, LogMark, LoopState, RunState};
use crate::error::{Result, TrainError};
use crate::model::TaskModel;
use crate::observer::Event;
use crate::rundir::{
    CHECKPOINT_FILE, PARAMS_FILE_PREFIX, SEED_LOG_FILE, SeedLogWriter, io_err, write_atomic,
};

impl<P: ParamSet + ?Sized, M: TaskModel<P>> Trainer<P, M> {
    /// The state of a fresh run from `params` with run seed `seed`. With an output folder: creates
    /// it, refuses an existing checkpoint unless overwriting was allowed, and starts an empty seed
    /// log. On a process other than 0 of a run of several ([`processes`](Self::processes)),
    /// nothing is written.
    pub fn start(&mut self, params: &P, seed: u64) -> Result<RunState> {
        if let Some(dir) = self.out_dir.as_ref().filter(|_| self.writes()) {
            fs::create_dir_all(dir.path()).map_err(io_err(dir.path()))?;
            let ck = dir.file(CHECKPOINT_FILE);
            if ck.exists() {
                if !self.overwrite {
                    return Err(TrainError::OutputExists { path: ck });
                }
                fs::remove_file(&ck).map_err(io_err(&ck))?;
            }
            // The old run's sidecars and parameter files (and any a kill left behind).
            dir.remove_unreferenced(&[])?;
            dir.write(SEED_LOG_FILE, b"")?;
            self.last_checkpoint = None;
        }
        Ok(RunState {
            optimizer: self.optimizer.init(params, seed),
            looping: LoopState::default(),
        })
    }

    /// Load the output folder's checkpoint to resume from: checks that it was made under the same
    /// data settings and cuts the seed log back to the checkpoint's step. Returns the checkpoint;
    /// restore the parameters from it ([`Checkpoint::params_bytes`], [`Checkpoint::params_json`])
    /// or from your own copy, then call [`run`](Self::run) with `checkpoint.state`. On a process
    /// other than 0 of a run of several, the checkpoint is only read: process 0 cuts the logs.
    pub fn resume(&mut self) -> Result<Checkpoint> {
        let Some(dir) = self.out_dir.clone() else {
            return Err(TrainError::Config {
                field: "output_dir",
                message: "resuming needs an output folder".into(),
            });
        };
        let ck = Checkpoint::load(dir.path())?;
        let path = dir.file(CHECKPOINT_FILE);
        ck.check_resumable(&self.config, &path)?;
        if !self.writes() {
            // Another process owns the folder (and has cut its logs back already).
            self.last_checkpoint = Some(path);
            return Ok(ck);
        }
        dir.cut_logs(&ck)?;
        let mut keep: Vec<&str> = Vec::new();
        keep.extend(ck.state_file.as_deref());
        keep.extend(ck.params_file.as_deref());
        dir.remove_unreferenced(&keep)?;
        self.last_checkpoint = Some(path);
        Ok(ck)
    }
}

impl<P: ParamSet + ?Sized, M: TaskModel<P>> Trainer<P, M> {
    pub(super) fn checkpoint(
        &mut self,
        params: &P,
        state: &RunState,
        seed_log: &mut Option<SeedLogWriter>,
    ) -> Result<()> {
        let Some(dir) = self.out_dir.clone() else {
            return Ok(());
        };
        if !self.writes() {
            return Ok(());
        }
        // Make the logs durable and record their lengths: the checkpoint owns exactly these bytes.
        let mut logs = Vec::new();
        if let Some(log) = seed_log {
            log.file.sync_data().map_err(io_err(&log.path))?;
            logs.push(LogMark {
                file: SEED_LOG_FILE.into(),
                bytes: log.bytes,
            });
        }
        for o in &mut self.observers {
            if let Some(mark) = o.sync().map_err(TrainError::Observer)? {
                logs.push(mark);
            }
        }
        let step = state.looping.step;
        let previous = match &self.last_checkpoint {
            Some(p) if p.exists() => Checkpoint::load_names(dir.path()).ok(),
            _ => None,
        };
        let params_file = match &mut self.encoder {
            None => None,
            Some(encode) => {
                let name = format!("{PARAMS_FILE_PREFIX}{step:08}.bin");
                let path = dir.file(&name);
                let bytes = encode(params).map_err(|source| TrainError::SaveParams {
                    path: path.clone(),
                    source,
                })?;
                write_atomic(&path, &bytes)?;
                Some(name)
            }
        };
        let ck = Checkpoint {
            version: FORMAT_VERSION,
            config: self.config.clone(),
            state: state.clone(),
            params_file: params_file.clone(),
            state_file: None,
            logs,
        };
        let path = ck.save(dir.path())?;
        // The earlier checkpoint's files, now that this one is committed.
        if let Some(old) = previous {
            let now = [params_file, Some(Checkpoint::state_file_name(step))];
            for name in old.into_iter().flatten() {
                if !now.iter().flatten().any(|n| *n == name) {
                    let _ = fs::remove_file(dir.file(&name));
                }
            }
        }
        self.last_checkpoint = Some(path.clone());
        self.emit(Event::Checkpoint { step, path })
    }
}
