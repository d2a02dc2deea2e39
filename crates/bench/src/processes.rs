//! Several processes as one run (`mpirun -np 2 bszo finetune --parallel …`): byte-for-byte
//! equality with one process, the traffic, the speed on this machine and the latency of one
//! all-gather. The runs are the `bszo` command next to `bszo-bench` (built with the `mpi` feature,
//! as `cargo xtask bench` builds it when MPI is installed), started by `mpirun`; without either
//! the section says so and measures nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::plan::ProcessesPlan;

/// One comparison of a one-process run with a two-process run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EqualityRow {
    /// The optimizer.
    pub optimizer: String,
    /// `data` or `directions`.
    pub mode: String,
    /// `train.shards` of both runs.
    pub shards: usize,
    /// Steps run.
    pub steps: u64,
    /// Whether the seed logs are byte-identical.
    pub seed_log_identical: bool,
    /// Whether the exported best weights are byte-identical.
    pub weights_identical: bool,
    /// The seed log's size in bytes.
    pub seed_log_bytes: u64,
    /// Test accuracy of the one-process and the two-process run.
    pub test: (f64, f64),
    /// Bytes each process sent per step.
    pub bytes_per_step: Vec<f64>,
}

/// The step time of one way of running the default task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeedRow {
    /// Processes.
    pub processes: usize,
    /// Threads per process.
    pub threads: usize,
    /// `one`, `data` or `directions`.
    pub mode: String,
    /// `train.shards`.
    pub shards: usize,
    /// Wall time of the short and the long run, in seconds.
    pub wall_s: (f64, f64),
    /// Their step counts.
    pub steps: (u64, u64),
}

impl SpeedRow {
    /// Milliseconds per step: the difference of the two runs' wall times over the difference of
    /// their step counts (loading, zero-shot and final evaluations cancel out).
    pub fn step_ms(&self) -> f64 {
        1e3 * (self.wall_s.1 - self.wall_s.0) / (self.steps.1 - self.steps.0) as f64
    }
}

/// What the section measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessesResult {
    /// Why nothing was measured (no `mpirun`, a `bszo` without MPI), if so.
    pub skipped: Option<String>,
    /// One process against two, byte for byte.
    pub equality: Vec<EqualityRow>,
    /// Step times.
    pub speed: Vec<SpeedRow>,
    /// Mean time of one all-gather of one f64 between two processes (µs), by run.
    pub latency_us: Vec<f64>,
    /// Forward passes per BSZO step (1 + k).
    pub forwards_per_step: usize,
    /// The minibatch size of the default task.
    pub batch: usize,
    /// SPLADE-tiny's parameter count.
    pub parameters: usize,
}

/// `mpirun` on the PATH.
fn find_mpirun() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|p| p.join("mpirun"))
        .find(|p| p.is_file())
}

struct Launcher {
    mpirun: PathBuf,
    bszo: PathBuf,
    data_dir: Option<PathBuf>,
}

impl Launcher {
    /// Run `bszo finetune ARGS` in `np` processes (`np = 1`: without `mpirun`) of `threads`
    /// threads each; the report.
    fn finetune(
        &self,
        np: usize,
        threads: usize,
        dir: &Path,
        args: &[String],
    ) -> Result<serde_json::Value> {
        let _ = std::fs::remove_dir_all(dir);
        let mut cmd = if np == 1 {
            let mut c = Command::new(&self.bszo);
            c.env("RAYON_NUM_THREADS", threads.to_string());
            c
        } else {
            let mut c = Command::new(&self.mpirun);
            c.args([
                "-np",
                &np.to_string(),
                "--oversubscribe",
                "--bind-to",
                "none",
            ])
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .arg("-x")
            .arg(format!("RAYON_NUM_THREADS={threads}"))
            .arg(&self.bszo);
            c
        };
        cmd.args([
            "finetune",
            "--no-progress",
            "--no-plots",
            "--export",
            "--out",
        ])
        .arg(dir)
        .args(args);
        if let Some(d) = &self.data_dir {
            cmd.arg("--data-dir").arg(d);
        }
        let out = cmd
            .output()
            .with_context(|| format!("could not start {}", self.bszo.display()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err
                .lines()
                .find(|l| l.contains("error"))
                .unwrap_or("no error line")
                .to_string();
            bail!("bszo finetune in {np} process(es) failed: {line}");
        }
        let report = dir.join("report.json");
        let text =
            std::fs::read(&report).with_context(|| format!("cannot read {}", report.display()))?;
        serde_json::from_slice(&text).map_err(|e| anyhow!("{}: {e}", report.display()))
    }
}

fn wall(report: &serde_json::Value) -> Result<f64> {
    report["wall_time_s"]
        .as_f64()
        .ok_or_else(|| anyhow!("a report without wall_time_s"))
}

fn test_score(report: &serde_json::Value) -> f64 {
    report["test"]["score"].as_f64().unwrap_or(f64::NAN)
}

/// Run the section in `work`.
///
/// # Errors
/// When a run fails for another reason than a missing MPI.
pub fn run(
    plan: &ProcessesPlan,
    bszo: &Path,
    work: &Path,
    data_dir: Option<&Path>,
    log: &mut dyn FnMut(&str),
) -> Result<ProcessesResult> {
    let mut result = ProcessesResult {
        forwards_per_step: 3,
        batch: 16,
        parameters: 4_416_698,
        ..ProcessesResult::default()
    };
    let Some(mpirun) = find_mpirun() else {
        result.skipped = Some(
            "mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev libclang-dev)"
                .into(),
        );
        return Ok(result);
    };
    let bszo = bszo.to_path_buf();
    if !bszo.is_file() {
        result.skipped = Some(format!(
            "no bszo command next to the benchmark ({}); build it with `cargo build --release -p bszo-cli --features mpi`",
            bszo.display()
        ));
        return Ok(result);
    }
    let launcher = Launcher {
        mpirun,
        bszo,
        data_dir: data_dir.map(Path::to_path_buf),
    };
    let root = work.join("processes");
    std::fs::create_dir_all(&root)?;

    let sets: Vec<String> = plan
        .sets
        .iter()
        .flat_map(|s| ["--set".to_string(), s.clone()])
        .collect();
    // Equality: the default task, validation every half of the steps.
    let steps = plan.equality_steps;
    let half = (steps / 2).max(1);
    for optimizer in ["bszo", "mezo"] {
        for (mode, shards) in [("data", 2usize), ("directions", 1)] {
            log(&format!(
                "processes: {optimizer} / {mode}, one process and two"
            ));
            let mut args: Vec<String> = [
                "--optimizer",
                optimizer,
                "--steps",
                &steps.to_string(),
                "--set",
                &format!("train.eval_every={half}"),
                "--set",
                &format!("train.checkpoint_every={half}"),
                "--set",
                &format!("train.shards={shards}"),
            ]
            .map(str::to_string)
            .to_vec();
            args.extend(sets.iter().cloned());
            let one_dir = root.join(format!("{optimizer}-{mode}-one"));
            let one = launcher.finetune(1, 1, &one_dir, &args)?;
            let two_dir = root.join(format!("{optimizer}-{mode}-two"));
            let mut two_args = args.clone();
            two_args.extend(["--parallel".to_string(), mode.to_string()]);
            let two = match launcher.finetune(2, 1, &two_dir, &two_args) {
                Ok(r) => r,
                Err(e) if e.to_string().contains("built without MPI") => {
                    result.skipped = Some(format!("{e}"));
                    return Ok(result);
                }
                Err(e) => return Err(e),
            };
            let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap_or_default();
            let log_one = read(&one_dir, zo_train::SEED_LOG_FILE);
            let log_two = read(&two_dir, zo_train::SEED_LOG_FILE);
            let processes = &two["processes"];
            result.latency_us.push(
                processes["allgather_latency_us"]
                    .as_f64()
                    .unwrap_or(f64::NAN),
            );
            result.equality.push(EqualityRow {
                optimizer: optimizer.into(),
                mode: mode.into(),
                shards,
                steps,
                seed_log_identical: !log_one.is_empty() && log_one == log_two,
                weights_identical: read(&one_dir, zo_train::WEIGHTS_FILE)
                    == read(&two_dir, zo_train::WEIGHTS_FILE),
                seed_log_bytes: log_one.len() as u64,
                test: (test_score(&one), test_score(&two)),
                bytes_per_step: processes["bytes_per_step"]
                    .as_array()
                    .map(|v| v.iter().filter_map(serde_json::Value::as_f64).collect())
                    .unwrap_or_default(),
            });
        }
    }

    // Speed: BSZO on the default task, validation only at the end, a short and a long run.
    let (short, long) = plan.speed_steps;
    for (np, threads, mode, shards) in [
        (1usize, 1usize, "one", 1usize),
        (1, 2, "one", 1),
        (1, 1, "one", 2),
        (2, 1, "data", 2),
        (2, 1, "directions", 1),
    ] {
        log(&format!(
            "processes: speed, {np} process(es) × {threads} thread(s), {mode}, shards {shards}"
        ));
        let mut walls = Vec::new();
        for steps in [short, long] {
            let mut args: Vec<String> = [
                "--steps",
                &steps.to_string(),
                "--set",
                "train.eval_every=0",
                "--set",
                &format!("train.shards={shards}"),
            ]
            .map(str::to_string)
            .to_vec();
            args.extend(sets.iter().cloned());
            if np > 1 {
                args.extend(["--parallel".to_string(), mode.to_string()]);
            }
            let dir = root.join(format!("speed-{np}x{threads}-{mode}-{shards}-{steps}"));
            walls.push(wall(&launcher.finetune(np, threads, &dir, &args)?)?);
        }
        result.speed.push(SpeedRow {
            processes: np,
            threads,
            mode: mode.into(),
            shards,
            wall_s: (walls[0], walls[1]),
            steps: (short, long),
        });
    }
    Ok(result)
}
