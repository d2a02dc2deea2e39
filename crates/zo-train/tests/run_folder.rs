//! Crash consistency of the output folder at the library level: torn log lines, logs cut back to
//! their checkpoint, lost history, the binary sidecar, the folder lock and unique folder names.

mod common;

use std::path::Path;

use common::{DIM, LogReg, temp_dir};
use zo_optim::{Algorithm, Optimizer, Schedule};
use zo_train::{
    CHECKPOINT_FILE, Checkpoint, JsonlWriter, RunLock, SEED_LOG_FILE, TrainConfig, TrainError,
    Trainer, create_unique_dir, read_jsonl, read_seed_log, remove_temporaries,
};

fn config(max_steps: u64) -> TrainConfig {
    TrainConfig {
        max_steps,
        batch_size: 8,
        data_seed: 3,
        eval_every: 5,
        patience: None,
        checkpoint_every: 5,
        row_sparse: false,
        shards: 1,
    }
}

fn trainer(algorithm: Algorithm, dir: &Path, steps: u64) -> Trainer<Vec<f32>, LogReg> {
    let optimizer = Optimizer::new(algorithm.config(1e-3), Schedule::constant(0.1)).unwrap();
    Trainer::new(optimizer, config(steps), LogReg::new(2))
        .unwrap()
        .output_dir(dir, false)
}

/// Train `steps` steps from scratch in `dir` with a metrics log; the final parameters.
fn train(algorithm: Algorithm, dir: &Path, steps: u64) -> Vec<f32> {
    let metrics = JsonlWriter::create(&dir.join("metrics.jsonl")).unwrap();
    let mut t = trainer(algorithm, dir, steps).observe(metrics.metrics_only());
    let mut params = vec![0.0f32; DIM + 1];
    let mut state = t.start(&params, 5).unwrap();
    t.run(&mut params, &mut state).unwrap();
    params
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn a_torn_last_line_is_left_out_and_a_damaged_middle_line_is_an_error() {
    let dir = temp_dir("torn-lines");
    train(Algorithm::Mezo, &dir, 10);
    let path = dir.join(SEED_LOG_FILE);
    let whole = std::fs::read(&path).unwrap();
    assert_eq!(read_seed_log(&path).unwrap().len(), 10);
    // Half a line, as a kill or a full disk leaves it.
    let first_line = whole.split(|&b| b == b'\n').next().unwrap().to_vec();
    append(&path, &first_line[..first_line.len() / 2]);
    assert_eq!(read_seed_log(&path).unwrap().len(), 10);
    let (_, bytes) = read_jsonl::<serde_json::Value>(&path).unwrap();
    assert_eq!(bytes, whole.len() as u64, "the complete lines' length");
    // A complete line that does not parse, followed by others, is damage: an error naming it.
    let mut damaged = whole.clone();
    damaged[0] = b'x';
    std::fs::write(&path, &damaged).unwrap();
    let err = read_seed_log(&path).unwrap_err().to_string();
    assert!(
        err.contains(SEED_LOG_FILE) && err.contains("line 1"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_cuts_every_log_back_to_its_checkpoint_and_refuses_lost_history() {
    let dir = temp_dir("cut-logs");
    train(Algorithm::Bszo, &dir, 10);
    let ck = Checkpoint::load(&dir).unwrap();
    let seed_bytes = ck.log_bytes(SEED_LOG_FILE).unwrap();
    let metric_bytes = ck.log_bytes("metrics.jsonl").unwrap();
    assert_eq!(
        seed_bytes,
        std::fs::metadata(dir.join(SEED_LOG_FILE)).unwrap().len()
    );
    // A later process logged more and was killed mid-line.
    append(&dir.join(SEED_LOG_FILE), b"{\"seed\":5,\"step\":10,\"lr\"");
    append(&dir.join("metrics.jsonl"), b"{\"event\":\"step\"}\n{\"ev");
    trainer(Algorithm::Bszo, &dir, 20).resume().unwrap();
    assert_eq!(
        std::fs::metadata(dir.join(SEED_LOG_FILE)).unwrap().len(),
        seed_bytes
    );
    assert_eq!(
        std::fs::metadata(dir.join("metrics.jsonl")).unwrap().len(),
        metric_bytes
    );
    // A log shorter than its checkpoint recorded lost lines the checkpoint counts on.
    std::fs::remove_file(dir.join("metrics.jsonl")).unwrap();
    let err = trainer(Algorithm::Bszo, &dir, 20).resume().unwrap_err();
    assert!(
        matches!(&err, TrainError::LostLog { path, found: 0, .. } if path.ends_with("metrics.jsonl")),
        "{err}"
    );
    assert!(err.to_string().contains("lost"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn per_parameter_optimizer_state_goes_to_a_binary_sidecar() {
    let dir = temp_dir("sidecar");
    let params = train(Algorithm::MezoAdam, &dir, 10);
    let json = std::fs::read_to_string(dir.join(CHECKPOINT_FILE)).unwrap();
    let ck = Checkpoint::load(&dir).unwrap();
    assert_eq!(
        ck.state_file.as_deref(),
        Some("optimizer-state-00000010.safetensors")
    );
    // Only the latest sidecar is kept; the JSON holds no moment values.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("optimizer-state-"))
        .collect();
    assert_eq!(names, ["optimizer-state-00000010.safetensors"]);
    assert!(json.len() < 4096, "checkpoint.json is {} bytes", json.len());
    // The moments come back exactly: a resumed run continues bit for bit.
    let state = &ck.state.optimizer;
    let zo_optim::RuleState::Adam { m, v, t } = &state.rule else {
        panic!("MeZO-Adam's state: {:?}", state.rule)
    };
    assert_eq!(*t, 10);
    assert_eq!(m.len(), DIM + 1);
    assert_eq!(v.len(), DIM + 1);
    assert!(v.iter().all(|(_, x)| x.iter().all(|x| *x > 0.0)));
    let mut whole_params = params.clone();
    let mut whole = trainer(Algorithm::MezoAdam, &temp_dir("sidecar-whole"), 20);
    let mut p = vec![0.0f32; DIM + 1];
    let mut s = whole.start(&p, 5).unwrap();
    whole.run(&mut p, &mut s).unwrap();
    let mut resumed = trainer(Algorithm::MezoAdam, &dir, 20);
    let ck = resumed.resume().unwrap();
    let mut state = ck.state;
    resumed.run(&mut whole_params, &mut state).unwrap();
    assert_eq!(state.optimizer, s.optimizer);
    assert_eq!(
        whole_params.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        p.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_locked_folder_is_refused_until_its_holder_ends() {
    let dir = temp_dir("lock");
    let held = RunLock::acquire(&dir).unwrap();
    let err = RunLock::acquire(&dir).unwrap_err();
    assert!(matches!(err, TrainError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(held);
    RunLock::acquire(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unique_folders_never_collide_and_temporaries_are_cleaned() {
    let parent = temp_dir("unique");
    let dirs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| create_unique_dir(&parent, "sst2-bszo").unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut names: Vec<_> = dirs.iter().map(|d| d.file_name().unwrap()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 8, "{dirs:?}");
    let name = dirs[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("sst2-bszo-"), "{name}");
    assert!(
        name.contains(&format!("-p{}", std::process::id())),
        "{name}"
    );
    let d = &dirs[0];
    std::fs::write(d.join(".checkpoint.json.tmp-4242"), "x").unwrap();
    std::fs::write(d.join("keep.txt"), "x").unwrap();
    assert_eq!(
        remove_temporaries(d).unwrap(),
        [".checkpoint.json.tmp-4242"]
    );
    assert!(d.join("keep.txt").exists());
    std::fs::remove_dir_all(&parent).unwrap();
}
