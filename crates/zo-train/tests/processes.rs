//! Several processes as one run, simulated by threads that exchange through a shared board: the
//! data-parallel split equals the one-process run with the same pieces bit for bit, a process
//! whose weights differ is caught by the guard, and a stop on one process stops all at the same
//! step.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Barrier, Mutex};

use common::{DIM, LogReg, bits, temp_dir};
use zo_optim::{Algorithm, Optimizer};
use zo_train::comm::{CommError, Communicator};
use zo_train::{Guard, ParallelMode, SEED_LOG_FILE, StopReason, Summary, TrainConfig, Trainer};

/// The shared board of `size` simulated processes.
struct Board {
    slots: Mutex<Vec<Vec<f64>>>,
    barrier: Barrier,
}

struct ThreadComm {
    board: Arc<Board>,
    rank: usize,
    size: usize,
    sent: Cell<u64>,
}

impl Communicator for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_gather(&self, local: &[f64]) -> Result<Vec<Vec<f64>>, CommError> {
        self.board.slots.lock().unwrap()[self.rank] = local.to_vec();
        self.board.barrier.wait();
        let all = self.board.slots.lock().unwrap().clone();
        self.board.barrier.wait();
        self.sent
            .set(self.sent.get() + 8 * (local.len() as u64 + 1));
        Ok(all)
    }
    fn broadcast(&self, _root: usize, _buf: &mut Vec<u8>) -> Result<(), CommError> {
        Err(CommError("not used here".into()))
    }
    fn bytes_sent(&self) -> u64 {
        self.sent.get()
    }
}

fn config(shards: usize) -> TrainConfig {
    TrainConfig {
        max_steps: 40,
        batch_size: 16,
        data_seed: 7,
        eval_every: 10,
        patience: None,
        checkpoint_every: 15,
        row_sparse: false,
        shards,
    }
}

fn fingerprint() -> Guard<Vec<f32>> {
    Guard {
        every: 5,
        fingerprint: Box::new(|p: &Vec<f32>| {
            Ok(p.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, v| {
                (h ^ u64::from(v.to_bits())).wrapping_mul(0x100_0000_01b3)
            }))
        }),
    }
}

struct Outcome {
    params: Vec<u32>,
    summary: Result<Summary, String>,
    bytes_per_step: f64,
}

/// `size` simulated processes; `tweak` changes process 1's starting weights, `stop` sets process
/// 1's stop flag before the first step.
fn run_processes(
    size: usize,
    mode: ParallelMode,
    shards: usize,
    dir: &std::path::Path,
    tweak: bool,
    stop: bool,
) -> Vec<Outcome> {
    let board = Arc::new(Board {
        slots: Mutex::new(vec![Vec::new(); size]),
        barrier: Barrier::new(size),
    });
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..size)
            .map(|rank| {
                let board = Arc::clone(&board);
                scope.spawn(move || {
                    let comm: Rc<dyn Communicator> = Rc::new(ThreadComm {
                        board,
                        rank,
                        size,
                        sent: Cell::new(0),
                    });
                    let flag = Arc::new(AtomicBool::new(stop && rank == 1));
                    let opt = Optimizer::named(Algorithm::Bszo, 1e-3, 0.05).unwrap();
                    let mut trainer = Trainer::new(opt, config(shards), LogReg::new(3))
                        .unwrap()
                        .output_dir(dir, true)
                        .stop_flag(flag)
                        .processes(comm, mode, fingerprint());
                    let mut params = vec![0.1f32; DIM + 1];
                    if tweak && rank == 1 {
                        params[2] += 1e-3;
                    }
                    let summary = trainer
                        .start(&params, 5)
                        .and_then(|mut state| trainer.run(&mut params, &mut state))
                        .map_err(|e| e.to_string());
                    let t = trainer.step_traffic();
                    Outcome {
                        params: bits(&params),
                        summary,
                        bytes_per_step: t.bytes as f64 / t.steps.max(1) as f64,
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn data_parallel_processes_equal_the_one_process_run_with_the_same_pieces() {
    let one_dir = temp_dir("processes-one");
    let opt = Optimizer::named(Algorithm::Bszo, 1e-3, 0.05).unwrap();
    let mut trainer = Trainer::new(opt, config(2), LogReg::new(3))
        .unwrap()
        .output_dir(&one_dir, true);
    let mut params = vec![0.1f32; DIM + 1];
    let mut state = trainer.start(&params, 5).unwrap();
    let one = trainer.run(&mut params, &mut state).unwrap();
    let one_log = std::fs::read(one_dir.join(SEED_LOG_FILE)).unwrap();

    for size in [2, 3] {
        let dir = temp_dir(&format!("processes-{size}"));
        let runs = run_processes(size, ParallelMode::Data, 2, &dir, false, false);
        for (rank, r) in runs.iter().enumerate() {
            assert_eq!(
                r.summary.as_ref().unwrap(),
                &one,
                "process {rank} of {size}"
            );
            assert_eq!(r.params, bits(&params), "process {rank} of {size}");
        }
        // Process 0 wrote the folder, byte for byte the one-process run's seed log.
        assert_eq!(std::fs::read(dir.join(SEED_LOG_FILE)).unwrap(), one_log);
        // BSZO (1 + k = 3 forwards) with 2 pieces: process 0 sends one piece of 8 terms per
        // forward with its 2-value header and the length word: 3 · 8 · (8 + 2 + 1) bytes.
        assert_eq!(runs[0].bytes_per_step, 3.0 * 8.0 * 11.0);
    }
    // Pieces are part of the computation: one piece gives another (close) trajectory.
    let dir = temp_dir("processes-whole");
    let opt = Optimizer::named(Algorithm::Bszo, 1e-3, 0.05).unwrap();
    let mut trainer = Trainer::new(opt, config(1), LogReg::new(3))
        .unwrap()
        .output_dir(&dir, true);
    let mut whole = vec![0.1f32; DIM + 1];
    let mut state = trainer.start(&whole, 5).unwrap();
    trainer.run(&mut whole, &mut state).unwrap();
    let close = whole
        .iter()
        .zip(&params)
        .all(|(a, b)| (a - b).abs() <= 1e-4 * a.abs().max(1.0));
    assert!(close, "{whole:?} vs {params:?}");
}

#[test]
fn a_process_with_other_weights_is_caught_by_the_guard() {
    let dir = temp_dir("processes-desync");
    let runs = run_processes(2, ParallelMode::Data, 2, &dir, true, false);
    for r in &runs {
        let err = r.summary.as_ref().unwrap_err();
        assert!(err.contains("weights differ after step 0"), "{err}");
    }
}

#[test]
fn a_stop_on_one_process_stops_every_process_at_the_same_step() {
    let dir = temp_dir("processes-stop");
    let runs = run_processes(2, ParallelMode::Data, 2, &dir, false, true);
    for r in &runs {
        let s = r.summary.as_ref().unwrap();
        assert_eq!(s.reason, StopReason::StopFlag);
        assert_eq!(s.steps, 0);
    }
    assert_eq!(runs[0].params, runs[1].params);
}

#[test]
fn probe_points_are_not_split_over_a_parameter_set_perturbed_in_place() {
    let dir = temp_dir("processes-inplace");
    let runs = run_processes(2, ParallelMode::Directions, 1, &dir, false, false);
    for r in &runs {
        let err = r.summary.as_ref().unwrap_err();
        assert!(err.contains("through a view"), "{err}");
    }
}
