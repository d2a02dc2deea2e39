//! Memory and time of inference and of each optimizer's steps, each scenario measured in a fresh
//! process (`bszo-bench probe`), and the sampler's throughput (zo-sampler's own workloads).
//!
//! A probe loads the model, encodes 16 SST-2 prompts (`<S> It was [MASK] .`, label words
//! terrible/great), resets the kernel's peak-RSS counter (`/proc/self/clear_refs`), runs the
//! scenario and reads `VmHWM` from `/proc/self/status`; then it times the scenario's steps split
//! into their forwards and their sweeps over the parameters, and the checkpoint writes of the
//! optimizer's state.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use zo_models::{MaskedLm, MaskedLmClassifier, Peft, Precision, Tokenizer, Weights};
use zo_optim::params::Visitor;
use zo_optim::{Optimizer, ParamError, ParamSet, Perturbation, ProbeMode, Rounding, TensorInfo};

use crate::median;
use crate::plan::{ProbeModel, Scenario};

/// The line prefix under which a probe process prints its [`Probe`] as JSON.
pub const PROBE_LINE: &str = "PROBE ";

/// One probe's measurements (a line of `bszo-bench probe`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Probe {
    /// The model (SPLADE-tiny, or a 67M-parameter BERT with random weights).
    pub model: ProbeModel,
    /// Inference or an optimizer.
    pub scenario: Scenario,
    /// The weights' storage precision (every forward computes in f32).
    #[serde(default)]
    pub precision: Precision,
    /// Row-sparse embedding probes: each step restricted to the table rows the batch reads.
    #[serde(default)]
    pub row_sparse: bool,
    /// Adapters trained instead of every weight (`lora`, `prefix`; MeZO's settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peft: Option<String>,
    /// Trainable parameters.
    pub params: usize,
    /// Peak RSS after loading (kB).
    pub load_kb: u64,
    /// Peak RSS of the scenario, counted from after loading (kB).
    pub peak_kb: u64,
    /// Forward passes per step (1 for inference).
    pub forwards_per_step: usize,
    /// Median time of one forward (ms).
    pub forward_ms: f64,
    /// Median time of one step (ms).
    pub step_ms: f64,
    /// Median time of the forwards of one step (ms).
    pub step_forward_ms: f64,
    /// Median time of the sweeps of one step (ms).
    pub sweep_ms: f64,
    /// Sweeps over the parameters per step.
    pub sweeps_per_step: u64,
    /// Median time to write a checkpoint of the optimizer state (sidecar included, synced) into a
    /// scratch folder (ms; 0 for inference).
    #[serde(default)]
    pub checkpoint_ms: f64,
    /// The checkpoint's size on disk (`checkpoint.json` and the sidecar, bytes).
    #[serde(default)]
    pub checkpoint_bytes: u64,
}

/// A parameter set that times its sweeps.
struct Timed<'a, P: ?Sized> {
    inner: &'a mut P,
    sweep: Duration,
    sweeps: u64,
}

impl<P: ParamSet + ?Sized> ParamSet for Timed<'_, P> {
    fn tensors(&self) -> Vec<TensorInfo> {
        self.inner.tensors()
    }
    fn visit_mut(&mut self, f: &mut Visitor<'_>) -> std::result::Result<(), ParamError> {
        let t = Instant::now();
        let r = self.inner.visit_mut(f);
        self.sweep += t.elapsed();
        self.sweeps += 1;
        r
    }
    fn probe_mode(&self) -> ProbeMode {
        self.inner.probe_mode()
    }
    fn set_view(&mut self, view: Option<Perturbation>) -> std::result::Result<(), ParamError> {
        self.inner.set_view(view)
    }
    fn set_row_support(
        &mut self,
        support: Option<&zo_optim::RowSupport>,
    ) -> std::result::Result<(), ParamError> {
        self.inner.set_row_support(support)
    }
    fn rounding(&self) -> Rounding {
        self.inner.rounding()
    }
}

fn status_kb(field: &str) -> Result<u64> {
    bszo_cli::finetune::status_kb(field).ok_or_else(|| anyhow!("no {field} in /proc/self/status"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The adapters of a probe: `lora` or `prefix` with MeZO's settings, or every weight.
pub fn peft_of(method: Option<&str>) -> Result<Peft> {
    Ok(match method {
        None | Some("full") => Peft::Full,
        Some("lora") => Peft::Lora(zo_models::LoraConfig::default()),
        Some("prefix") => Peft::Prefix(zo_models::PrefixConfig::default()),
        Some(other) => return Err(anyhow!("unknown peft method `{other}` (lora, prefix)")),
    })
}

/// The probe model's weights (SPLADE-tiny's tokenizer and configuration in either case).
fn load(
    model: ProbeModel,
    precision: Precision,
    peft: Peft,
) -> Result<(MaskedLm, Weights, Tokenizer)> {
    let splade = bszo_cli::load::resolve("splade-tiny")?;
    let tokenizer = Tokenizer::from_folder(&splade)?;
    let load = zo_models::Load::new(precision, peft, 0);
    let (m, weights) = match model {
        ProbeModel::SpladeTiny => MaskedLm::from_folder(&splade, load)?,
        ProbeModel::Bert67m | ProbeModel::Bert335m => {
            let (hidden, layers, heads) = match model {
                ProbeModel::Bert67m => (768, 6, 12),
                _ => (1024, 24, 16),
            };
            let mut cfg = zo_models::BertConfig::from_file(splade.join("config.json"))?;
            cfg.hidden_size = hidden;
            cfg.num_hidden_layers = layers;
            cfg.num_attention_heads = heads;
            cfg.intermediate_size = 4 * hidden;
            MaskedLm::random(&cfg, load, 1)?
        }
    };
    Ok((m, weights, tokenizer))
}

/// Run one memory/time scenario in this process (the `probe` subcommand).
pub fn probe(
    model: ProbeModel,
    precision: Precision,
    scenario: Scenario,
    row_sparse: bool,
    peft: Option<&str>,
    reps: usize,
    data_dir: Option<PathBuf>,
) -> Result<Probe> {
    let (m, mut weights, tokenizer) = load(model, precision, peft_of(peft)?)?;
    let params = weights.num_params();
    let clf = MaskedLmClassifier::new(m, tokenizer, "<S> It was [MASK] .", &["terrible", "great"])?;
    let data = bszo_cli::load::data_dir(data_dir)?;
    let train =
        zo_data::load_splits(&data, zo_data::Task::Sst2, zo_data::Protocol::few_shot(13))?.train;
    let texts: Vec<&str> = train.iter().take(16).map(|e| e.texts[0].as_str()).collect();
    let labels: Vec<usize> = train.iter().take(16).map(|e| e.label).collect();
    let batch = clf.encode_batch(&texts)?;
    let load_kb = status_kb("VmHWM:")?;
    std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS")?;

    let mut forward_times = Vec::new();
    let mut result = Probe {
        model,
        scenario,
        precision,
        row_sparse,
        peft: peft.filter(|m| *m != "full").map(str::to_string),
        params,
        load_kb,
        peak_kb: 0,
        forwards_per_step: 1,
        forward_ms: 0.0,
        step_ms: 0.0,
        step_forward_ms: 0.0,
        sweep_ms: 0.0,
        sweeps_per_step: 0,
        checkpoint_ms: 0.0,
        checkpoint_bytes: 0,
    };
    let algorithm = match scenario {
        Scenario::Optimizer(a) => a,
        Scenario::Inference => {
            let forward = |times: &mut Vec<f64>| -> Result<()> {
                let t = Instant::now();
                std::hint::black_box(clf.loss(&batch, &labels)?);
                times.push(ms(t.elapsed()));
                Ok(())
            };
            for _ in 0..12 {
                forward(&mut forward_times)?;
            }
            result.peak_kb = status_kb("VmHWM:")?;
            for _ in 0..reps {
                forward(&mut forward_times)?;
            }
            result.forward_ms = median(forward_times);
            result.step_ms = result.forward_ms;
            result.step_forward_ms = result.forward_ms;
            return Ok(result);
        }
    };
    let opt = Optimizer::named(algorithm, 1e-4, 1e-6)?;
    if row_sparse {
        opt.config().validate_row_sparse()?;
        // Every step reads the same batch: its rows stay the support throughout.
        weights.set_row_support(Some(&clf.rows_read(&batch)?))?;
    }
    let per_step = opt.forwards_per_step();
    result.forwards_per_step = per_step;
    let mut state = opt.init(&weights, 7);
    // Memory: steps worth 12 forwards (the inference scenario's count).
    for _ in 0..(12 / per_step).max(1) {
        let mut objective = clf.objective(&batch, &labels);
        opt.step(&mut state, &mut weights, &mut objective)?;
    }
    result.peak_kb = status_kb("VmHWM:")?;
    // Time: each step split into its forwards, its sweeps and the rest.
    let (mut steps, mut fwds, mut sweeps) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let mut timed = Timed {
            inner: &mut weights,
            sweep: Duration::ZERO,
            sweeps: 0,
        };
        let mut fwd = Duration::ZERO;
        let mut objective = |_: &Timed<'_, Weights>| {
            let t = Instant::now();
            let l = clf.loss(&batch, &labels).unwrap_or(f64::NAN);
            fwd += t.elapsed();
            l
        };
        let t = Instant::now();
        opt.step(&mut state, &mut timed, &mut objective)?;
        steps.push(ms(t.elapsed()));
        fwds.push(ms(fwd));
        sweeps.push(ms(timed.sweep));
        result.sweeps_per_step = timed.sweeps;
        forward_times.push(ms(fwd) / per_step as f64);
    }
    result.step_ms = median(steps);
    result.step_forward_ms = median(fwds);
    result.sweep_ms = median(sweeps);
    result.forward_ms = median(forward_times);
    (result.checkpoint_ms, result.checkpoint_bytes) = checkpoint_writes(state, reps)?;
    Ok(result)
}

/// Checkpoint writes of `state`, as the trainer does them (sidecar, then `checkpoint.json`;
/// synced) into a scratch folder: the median time (ms) of `reps` writes and the size on disk.
fn checkpoint_writes(state: zo_optim::OptimizerState, reps: usize) -> Result<(f64, u64)> {
    let scratch = std::env::temp_dir().join(format!("bszo-probe-ck-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let ck = zo_train::Checkpoint {
        version: zo_train::checkpoint::FORMAT_VERSION,
        config: zo_train::TrainConfig::default(),
        state: zo_train::RunState {
            optimizer: state,
            looping: zo_train::LoopState::default(),
        },
        params_file: None,
        state_file: None,
        logs: Vec::new(),
    };
    let mut times = Vec::new();
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        ck.save(&scratch)?;
        times.push(ms(t.elapsed()));
    }
    let bytes = std::fs::read_dir(&scratch)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    std::fs::remove_dir_all(&scratch)?;
    Ok((median(times), bytes))
}

/// The name of a precision on the command line.
pub fn precision_name(precision: Precision) -> &'static str {
    match precision {
        Precision::F32 => "f32",
        Precision::BF16 => "bf16",
        Precision::F16 => "f16",
    }
}

/// Run a probe in a fresh process of `exe` (this binary).
pub fn spawn(
    exe: &Path,
    model: ProbeModel,
    precision: Precision,
    scenario: Scenario,
    reps: usize,
    data_dir: Option<&Path>,
) -> Result<Probe> {
    let variant = Variant {
        precision,
        ..Variant::default()
    };
    spawn_with(exe, model, scenario, variant, reps, data_dir)
}

/// How a probe's model is set up besides its scenario.
#[derive(Clone, Copy, Debug, Default)]
struct Variant<'a> {
    precision: Precision,
    row_sparse: bool,
    peft: Option<&'a str>,
}

/// [`spawn`] an f32 probe of `scenario` training the adapters of `method` (`lora`, `prefix`).
pub fn spawn_peft(
    exe: &Path,
    model: ProbeModel,
    scenario: Scenario,
    method: &str,
    reps: usize,
    data_dir: Option<&Path>,
) -> Result<Probe> {
    let variant = Variant {
        peft: Some(method),
        ..Variant::default()
    };
    spawn_with(exe, model, scenario, variant, reps, data_dir)
}

/// [`spawn`] an f32 probe of `scenario` with row-sparse embedding probes.
pub fn spawn_row_sparse(
    exe: &Path,
    model: ProbeModel,
    scenario: Scenario,
    reps: usize,
    data_dir: Option<&Path>,
) -> Result<Probe> {
    let variant = Variant {
        row_sparse: true,
        ..Variant::default()
    };
    spawn_with(exe, model, scenario, variant, reps, data_dir)
}

fn spawn_with(
    exe: &Path,
    model: ProbeModel,
    scenario: Scenario,
    Variant {
        precision,
        row_sparse,
        peft,
    }: Variant<'_>,
    reps: usize,
    data_dir: Option<&Path>,
) -> Result<Probe> {
    // Memory and time come from two processes. The memory one runs with a small mmap threshold,
    // which returns freed activation buffers to the system so that peaks measure tensors, not
    // the allocator's retention; but it also makes every large allocation fault its pages in
    // afresh (SPLADE-tiny's forward took 2.2× as long under it), so the times come from a
    // second process under the allocator's defaults, as a user runs.
    let run = |reps: usize, small_mmap_threshold: bool| -> Result<Probe> {
        let mut cmd = Command::new(exe);
        cmd.arg("probe")
            .args(["--model", model.name()])
            .args(["--scenario", &scenario.to_string()])
            .args(["--precision", precision_name(precision)])
            .args(["--reps", &reps.to_string()]);
        if row_sparse {
            cmd.arg("--row-sparse");
        }
        if let Some(method) = peft {
            cmd.args(["--peft", method]);
        }
        if let Some(d) = data_dir {
            cmd.arg("--data-dir").arg(d);
        }
        if small_mmap_threshold {
            cmd.env("MALLOC_MMAP_THRESHOLD_", "65536");
        } else {
            cmd.env_remove("MALLOC_MMAP_THRESHOLD_");
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {}", exe.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix(PROBE_LINE))
            .ok_or_else(|| {
                anyhow!(
                    "probe {model}/{scenario} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            })?;
        Ok(serde_json::from_str(line)?)
    };
    let memory = run(1, true)?;
    let mut timed = run(reps, false)?;
    timed.load_kb = memory.load_kb;
    timed.peak_kb = memory.peak_kb;
    Ok(timed)
}
