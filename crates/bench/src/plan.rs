//! What the suite runs: the plan, with tasks, optimizers, models and probe scenarios as types.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};
use zo_data::{Protocol, Task};
use zo_models::Precision;
use zo_optim::Algorithm;

use crate::blackbox::{BlackBoxPlan, Noise, ProblemKind, ProblemSpec};

/// The optimizers compared, in the order they run.
pub const OPTIMIZERS: [Algorithm; 7] = [
    Algorithm::Mezo,
    Algorithm::MezoAdam,
    Algorithm::Hizoo,
    Algorithm::Lozo,
    Algorithm::Bszo,
    Algorithm::BszoB,
    Algorithm::Fzoo,
];

/// The optimizers rerun with half-precision weights (the precision section).
pub const PRECISION_OPTIMIZERS: [Algorithm; 2] = [Algorithm::Mezo, Algorithm::Bszo];

/// The optimizers of the parameter-efficient section.
pub const PEFT_OPTIMIZERS: [Algorithm; 2] = [Algorithm::Mezo, Algorithm::Bszo];

/// The masked LM of the accuracy, ablation and HiZOO sections.
pub const MASKED_MODEL: &str = "splade-tiny";

/// A learning-rate grid for each optimizer.
pub type Grids = Vec<(Algorithm, Vec<f64>)>;

/// The grid of `algorithm` in `grids`.
///
/// # Errors
/// When `grids` has none for it.
pub fn grid(grids: &Grids, algorithm: Algorithm) -> Result<&[f64]> {
    grids
        .iter()
        .find(|(a, _)| *a == algorithm)
        .map(|(_, g)| g.as_slice())
        .ok_or_else(|| anyhow!("the plan has no learning-rate grid for {algorithm}"))
}

fn grids(values: [&[f64]; 7]) -> Grids {
    OPTIMIZERS
        .into_iter()
        .zip(values)
        .map(|(a, v)| (a, v.to_vec()))
        .collect()
}

/// How big the suite is.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// `full` or `quick`.
    pub mode: &'static str,
    /// Masked-LM tasks (SPLADE-tiny) and the forward passes of training per run on each.
    pub tasks: Vec<(Task, u64)>,
    /// Forward passes of training per run of the SST-2 ablations (k, HiZOO's α).
    pub budget: u64,
    /// Validation evaluations per run.
    pub evaluations: u64,
    /// Seeds per configuration (the learning rate is picked on the first).
    pub seeds: Vec<u64>,
    /// Learning-rate grids (SPLADE-tiny).
    pub grids: Grids,
    /// Sampled protocol sizes (train, validation), and a test cap for quick runs.
    pub sizes: (usize, usize, Option<usize>),
    /// The causal-LM section.
    pub causal: Option<CausalPlan>,
    /// BSZO subspace dimensions for the ablation.
    pub ks: Vec<usize>,
    /// HiZOO: α/ε² values, at ε = 1e-3 and 1e-4.
    pub hizoo_ratios: Vec<f64>,
    /// Models of the memory and time probes.
    pub probe_models: Vec<ProbeModel>,
    /// Models probed for memory only (f32 inference; bf16 inference, MeZO and BSZO), one timed
    /// repetition: big enough that the weights dominate the process's fixed footprint.
    pub memory_models: Vec<ProbeModel>,
    /// Half precisions probed besides f32 (inference, MeZO and BSZO only).
    pub half_probes: Vec<Precision>,
    /// The precision section's runs of the default task (`cargo xtask finetune`'s embedded
    /// configuration) in f32 and bf16: `None` at its own step budget, or this many steps.
    pub default_task_steps: Option<u64>,
    /// Half precisions of the precision section's runs (MeZO and BSZO on SST-2, both models).
    pub half_runs: Vec<Precision>,
    /// Repetitions of each timed measurement (medians are reported).
    pub reps: usize,
    /// Elements of the sampler measurements (normals, sweep).
    pub sampler_elems: (usize, usize),
    /// The black-box section.
    pub blackbox: BlackBoxPlan,
    /// The section of several processes.
    pub processes: ProcessesPlan,
    /// The parameter-efficient section.
    pub peft: PeftPlan,
}

/// The parameter-efficient section: MeZO and BSZO training LoRA adapters or attention prefixes
/// instead of every weight, on SPLADE-tiny's SST-2 cell of the accuracy section and on the causal
/// section's model, at the same protocol, forward budget and seeds as the full-parameter cells.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeftPlan {
    /// The methods, with their settings (MeZO's defaults: LoRA rank 8, α 16 on the query and
    /// value projections; 5 prefix tokens initialised from real activations).
    pub methods: Vec<zo_models::Peft>,
    /// Per method (`lora`, `prefix`): the perturbation scale ε and the learning-rate grids of
    /// the masked model and of the causal model.
    pub settings: Vec<PeftSettings>,
    /// Whether the causal model runs too (after the causal section).
    pub causal: bool,
    /// Seeds of the causal runs (the grid on the first). The full-parameter rows take the causal
    /// section's runs of these seeds and run the seeds it lacks at its picked rate (the
    /// two-core causal section runs two seeds; this section three).
    pub causal_seeds: Vec<u64>,
}

/// One method's ε and grids.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeftSettings {
    /// `lora` or `prefix`.
    pub method: String,
    /// The perturbation scale ε of every optimizer.
    pub eps: f64,
    /// Learning-rate grids on the masked model.
    pub grids: Grids,
    /// Learning-rate grids on the causal model.
    pub causal_grids: Grids,
}

impl PeftPlan {
    /// MeZO's adapter settings and ε (1e-3 for LoRA, 1e-1 for prefixes, as MeZO's runs); grids
    /// around the best rate of a pilot on SPLADE-tiny's SST-2 at this budget (one seed, 400 test
    /// sentences: MeZO's LoRA peaked at 1e-3, BSZO's at 3e-1, both optimizers' prefixes at 1;
    /// prefix rates are large because the prefixes are activations of order one). The causal
    /// grids are two rates each around the masked model's best (MeZO's LoRA at 1e-4 left
    /// SmolLM2-135M at its starting validation score after 320 forwards, so its grid starts at
    /// 1e-3), and BSZO's LoRA grid reaches down to ten times MeZO's best rate, the ratio of the
    /// causal section's full-parameter cells (at 1e-1 and 1 its validation loss rose above the
    /// start).
    pub fn full() -> Self {
        let grids = |mezo: &[f64], bszo: &[f64]| -> Grids {
            vec![
                (Algorithm::Mezo, mezo.to_vec()),
                (Algorithm::Bszo, bszo.to_vec()),
            ]
        };
        Self {
            methods: vec![
                zo_models::Peft::Lora(zo_models::LoraConfig::default()),
                zo_models::Peft::Prefix(zo_models::PrefixConfig::default()),
            ],
            settings: vec![
                PeftSettings {
                    method: "lora".into(),
                    eps: 1e-3,
                    grids: grids(&[3e-4, 1e-3, 3e-3], &[1e-1, 3e-1, 1.0]),
                    causal_grids: grids(&[1e-3, 1e-2], &[1e-2, 1e-1, 1.0]),
                },
                PeftSettings {
                    method: "prefix".into(),
                    eps: 1e-1,
                    grids: grids(&[0.3, 1.0, 3.0], &[0.3, 1.0, 3.0]),
                    causal_grids: grids(&[0.3, 1.0], &[0.3, 1.0]),
                },
            ],
            causal: true,
            causal_seeds: vec![0, 1, 2],
        }
    }

    /// One rate per cell, every method; causal seeds 0 and 2, so that the quick causal
    /// section (seeds 0 and 1) lacks one and the full-parameter row runs it.
    pub fn quick() -> Self {
        let one = |m: f64, b: f64| -> Grids {
            vec![(Algorithm::Mezo, vec![m]), (Algorithm::Bszo, vec![b])]
        };
        let mut plan = Self::full();
        for s in &mut plan.settings {
            s.grids = one(s.grids[0].1[0], s.grids[1].1[0]);
            s.causal_grids = one(s.causal_grids[0].1[0], s.causal_grids[1].1[0]);
        }
        plan.causal_seeds = vec![0, 2];
        plan
    }

    /// The settings of `method`.
    ///
    /// # Errors
    /// When the plan has none for it.
    pub fn settings(&self, method: &str) -> Result<&PeftSettings> {
        self.settings
            .iter()
            .find(|s| s.method == method)
            .ok_or_else(|| anyhow!("the plan has no settings for peft method `{method}`"))
    }
}

/// The section of several processes: the runs of the default task it makes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessesPlan {
    /// Steps of the equality runs (validation every half of them).
    pub equality_steps: u64,
    /// Steps of the short and the long speed run (the step time is their difference).
    pub speed_steps: (u64, u64),
    /// `--set` overrides of every run (none: the default task as it is).
    pub sets: Vec<String>,
}

/// The optimizers of the causal-LM section.
pub const CAUSAL_OPTIMIZERS: [Algorithm; 4] = [
    Algorithm::Mezo,
    Algorithm::Hizoo,
    Algorithm::Bszo,
    Algorithm::Fzoo,
];

/// The causal-LM section: a pretrained causal LM on SST-2 with MeZO's prompt (`<S> It was` and
/// the candidates ` terrible` / ` great`), calibrated scores reported beside the plain ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CausalPlan {
    /// The model name.
    pub model: String,
    /// `two-cores` (the suite's default) or `paper` (MeZO's protocol and budget, for a bigger
    /// machine).
    pub scale: String,
    /// The optimizers compared.
    pub optimizers: Vec<Algorithm>,
    /// Forward passes of training per run.
    pub budget: u64,
    /// Seeds (the learning rate is picked on the first).
    pub seeds: Vec<u64>,
    /// Sampled protocol sizes (train, validation).
    pub sizes: (usize, usize),
    /// Test examples (the first ones of the split), or all.
    pub test_size: Option<usize>,
    /// Training batch size.
    pub batch_size: usize,
    /// Tokens per prompt (a longer sentence is cut; the candidate slot is kept).
    pub max_length: usize,
    /// Validation evaluations per run.
    pub evaluations: u64,
    /// The perturbation scale ε of every optimizer.
    pub eps: f64,
    /// Learning-rate grids.
    pub grids: Grids,
}

/// `grids` for `optimizers`, in order.
fn grids_of(optimizers: &[Algorithm], values: &[&[f64]]) -> Grids {
    optimizers
        .iter()
        .zip(values)
        .map(|(a, v)| (*a, v.to_vec()))
        .collect()
}

impl CausalPlan {
    /// SmolLM2-135M sized to finish in about an hour and a half on two cores: batch 8, 64
    /// tokens, 1000 training / 128 validation examples, the first 500 test sentences, 320
    /// training forwards per run, two learning rates per optimizer on seed 0 and seed 1 at the
    /// picked one.
    pub fn two_cores() -> Self {
        let optimizers = CAUSAL_OPTIMIZERS.to_vec();
        // MeZO's OPT grid is 1e-7..1e-6 at ε = 1e-3 for 20k steps; a few hundred steps at a
        // hundred times fewer parameters need the upper end and above. BSZO's effective rate is
        // η·γ·k with γ = σ_p²/(σ_p² + σ_e²) ≈ 0.05 here, so ten times MeZO's. FZOO's normalised
        // step: at η = 3e-8 its validation loss fell about 50 times more slowly per forward than
        // MeZO's at 1e-5 (and no step beat the start at 3e-9 or 3e-8), so its grid starts at the
        // rate that matches MeZO's progress.
        let grids = grids_of(
            &optimizers,
            &[&[1e-6, 1e-5], &[1e-6, 1e-5], &[1e-5, 1e-4], &[1e-6, 1e-5]],
        );
        Self {
            model: "smollm2-135m".into(),
            scale: "two-cores".into(),
            optimizers,
            budget: 320,
            seeds: vec![0, 1],
            sizes: (1000, 128),
            test_size: Some(500),
            batch_size: 8,
            max_length: 64,
            evaluations: 4,
            eps: 1e-3,
            grids,
        }
    }

    /// MeZO's protocol and budget for OPT (1000 training / 500 validation examples, the whole
    /// test set, batch 16, 20 000 MeZO steps' worth of forwards, ε = 1e-3, its learning-rate
    /// grid), three seeds: days on two cores, hours on a GPU-class machine.
    pub fn paper() -> Self {
        let optimizers = CAUSAL_OPTIMIZERS.to_vec();
        let grid: &[f64] = &[1e-7, 1e-6, 1e-5];
        let grids = grids_of(
            &optimizers,
            &[grid, grid, &[1e-6, 1e-5, 1e-4], &[1e-7, 1e-6, 1e-5]],
        );
        Self {
            model: "smollm2-135m".into(),
            scale: "paper".into(),
            optimizers,
            budget: 40_000,
            seeds: vec![0, 1, 2],
            sizes: (1000, 500),
            test_size: None,
            batch_size: 16,
            max_length: 128,
            evaluations: 20,
            eps: 1e-3,
            grids,
        }
    }

    /// A tiny run of every optimizer: checks the harness, not the methods.
    pub fn quick() -> Self {
        let optimizers = CAUSAL_OPTIMIZERS.to_vec();
        let one: &[f64] = &[1e-6];
        Self {
            model: "smollm2-135m".into(),
            scale: "quick".into(),
            grids: grids_of(&optimizers, &[&[1e-6, 1e-5], one, one, &[1e-8]]),
            optimizers,
            budget: 9,
            seeds: vec![0, 1],
            sizes: (16, 4),
            test_size: Some(4),
            batch_size: 2,
            max_length: 32,
            evaluations: 1,
            eps: 1e-3,
        }
    }

    /// The plan of `scale` (`two-cores`, `paper`).
    ///
    /// # Errors
    /// For another name, listing the valid ones.
    pub fn of_scale(scale: &str) -> Result<Self> {
        match scale {
            "two-cores" => Ok(Self::two_cores()),
            "paper" => Ok(Self::paper()),
            other => Err(anyhow!(
                "unknown causal scale `{other}` (expected two-cores or paper)"
            )),
        }
    }
}

impl Plan {
    /// The full suite (hours on two cores).
    pub fn full() -> Self {
        // BSZO's effective rate is η·γ·k with γ = σ_p²/(σ_p² + σ_e²) well below 1 once σ_e adapts,
        // so the SGD baselines need smaller η than BSZO: each grid covers its own range.
        let bszo: &[f64] = &[1e-4, 3e-4, 1e-3];
        let sgd: &[f64] = &[1e-5, 3e-5, 1e-4];
        // FZOO's step is η·g/σ with σ ≈ ε‖∇L‖: about η/(ε√N) per coordinate, so at ε = 1e-4 and
        // N = 8 its η sits near 3·10⁻⁴ times an element-wise step (Adam's rate).
        let fzoo: &[f64] = &[1e-9, 1e-8, 1e-7];
        Self {
            mode: "full",
            tasks: vec![(Task::Sst2, 1800), (Task::Rte, 900), (Task::Trec, 900)],
            budget: 1800,
            evaluations: 10,
            seeds: vec![0, 1, 2],
            grids: grids([sgd, &[1e-5, 1e-4], sgd, sgd, bszo, bszo, fzoo]),
            sizes: (1000, 500, None),
            causal: Some(CausalPlan::two_cores()),
            ks: vec![1, 2, 4, 8],
            hizoo_ratios: vec![1e-4, 1e-2, 1.0],
            probe_models: vec![ProbeModel::SpladeTiny, ProbeModel::Bert67m],
            memory_models: vec![ProbeModel::Bert335m],
            half_probes: vec![Precision::BF16, Precision::F16],
            half_runs: vec![Precision::BF16, Precision::F16],
            default_task_steps: None,
            reps: 7,
            sampler_elems: (1 << 24, 64 << 20),
            blackbox: blackbox_full(),
            processes: ProcessesPlan {
                equality_steps: 40,
                speed_steps: (40, 240),
                sets: Vec::new(),
            },
            peft: PeftPlan::full(),
        }
    }

    /// Every section at a tiny budget (minutes): checks the harness, not the methods.
    pub fn quick() -> Self {
        let one: &[f64] = &[1e-4];
        Self {
            mode: "quick",
            tasks: vec![(Task::Sst2, 24), (Task::Rte, 24), (Task::Trec, 24)],
            budget: 24,
            evaluations: 2,
            seeds: vec![0, 1],
            grids: grids([
                &[1e-4, 3e-4],
                &[1e-5],
                one,
                one,
                &[1e-4, 3e-4],
                one,
                &[1e-8],
            ]),
            sizes: (64, 32, Some(32)),
            causal: Some(CausalPlan::quick()),
            ks: vec![1, 2],
            hizoo_ratios: vec![1e-2, 1.0],
            probe_models: vec![ProbeModel::SpladeTiny],
            memory_models: Vec::new(),
            half_probes: vec![Precision::BF16],
            half_runs: vec![Precision::BF16],
            default_task_steps: Some(4),
            reps: 2,
            sampler_elems: (1 << 16, 1 << 20),
            blackbox: blackbox_quick(),
            // SST-2's 16-shot split and 16 test sentences keep the runs to seconds.
            processes: ProcessesPlan {
                equality_steps: 4,
                speed_steps: (2, 6),
                sets: [
                    "task.protocol.kind=few_shot",
                    "task.protocol.seed=42",
                    "task.test_size=16",
                ]
                .map(str::to_string)
                .to_vec(),
            },
            peft: PeftPlan::quick(),
        }
    }

    /// The first seed (the one the learning rate is picked on) and the others.
    ///
    /// # Errors
    /// When the plan has no seed.
    pub fn split_seeds(&self) -> Result<(u64, &[u64])> {
        self.seeds
            .split_first()
            .map(|(first, rest)| (*first, rest))
            .ok_or_else(|| anyhow!("the plan has no seeds"))
    }

    /// The sampled protocol at the plan's sizes.
    pub fn sampled_protocol(&self, seed: u64) -> Protocol {
        Protocol::Sampled {
            seed,
            train: self.sizes.0,
            validation: self.sizes.1,
        }
    }
}

/// A quadratic problem of the black-box section.
fn quadratic(name: &str, shape: (usize, usize), noise: Noise, budget: u64) -> ProblemSpec {
    ProblemSpec {
        name: name.into(),
        kind: ProblemKind::Quadratic {
            condition: 1e3,
            noise,
        },
        shape,
        eps: 1e-3,
        budget,
        decades: None,
    }
}

/// The black-box section of the full suite: quadratics at d = 10⁴ without noise, with Gaussian
/// and with heavy-tailed noise; Rosenbrock at d = 10³; logistic regression on SST-2 at d = 2¹⁴;
/// a noisy quadratic at d = 10⁶. Every optimizer, 30 evaluation seeds.
fn blackbox_full() -> BlackBoxPlan {
    let gauss = Noise::Gaussian { level: 1.0 };
    BlackBoxPlan {
        problems: vec![
            quadratic("quadratic", (100, 100), Noise::None, 10_000),
            quadratic("quadratic-gaussian", (100, 100), gauss, 10_000),
            quadratic(
                "quadratic-student-t",
                (100, 100),
                Noise::StudentT { dof: 3, level: 1.0 },
                10_000,
            ),
            ProblemSpec {
                name: "rosenbrock".into(),
                kind: ProblemKind::Rosenbrock { noise: Noise::None },
                shape: (25, 40),
                eps: 1e-4,
                budget: 10_000,
                decades: None,
            },
            ProblemSpec {
                name: "logistic-sst2".into(),
                kind: ProblemKind::Logistic {
                    batch: 32,
                    l2: 1e-4,
                },
                shape: (128, 128),
                eps: 1e-3,
                budget: 10_000,
                decades: None,
            },
            // d = 10⁶: each run costs ~100× a d = 10⁴ run, so a smaller budget and a narrower
            // sweep (the d = 10⁴ quadratic's best rates, scaled down for the larger d, lie inside).
            ProblemSpec {
                decades: Some((-4, 0)),
                ..quadratic("quadratic-1m", (1000, 1000), gauss, 500)
            },
        ],
        optimizers: Algorithm::ALL.to_vec(),
        seeds: 30,
        tuning_seeds: vec![1000, 1001],
        decades: (-6, 2),
        points: 25,
    }
}

/// The black-box section at a tiny size: checks the harness, not the methods.
fn blackbox_quick() -> BlackBoxPlan {
    BlackBoxPlan {
        problems: vec![
            quadratic(
                "quadratic-gaussian",
                (10, 10),
                Noise::Gaussian { level: 1.0 },
                120,
            ),
            ProblemSpec {
                name: "logistic-sst2".into(),
                kind: ProblemKind::Logistic {
                    batch: 16,
                    l2: 1e-4,
                },
                shape: (32, 32),
                eps: 1e-3,
                budget: 120,
                decades: None,
            },
        ],
        optimizers: Algorithm::ALL.to_vec(),
        seeds: 6,
        tuning_seeds: vec![1000],
        decades: (-2, 0),
        points: 4,
    }
}

/// A model of the memory and time probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeModel {
    /// The provisioned SPLADE-tiny checkpoint (4.4M parameters).
    #[serde(rename = "splade-tiny")]
    SpladeTiny,
    /// A BERT with hidden 768, 6 layers, 12 heads and SPLADE-tiny's vocabulary, random weights
    /// (67M parameters), so that the weights dominate the binary's own footprint.
    #[serde(rename = "bert-67m")]
    Bert67m,
    /// BERT-large's shape (hidden 1024, 24 layers, 16 heads, intermediate 4096) with
    /// SPLADE-tiny's vocabulary, random weights (335M parameters): probed for memory only.
    #[serde(rename = "bert-335m")]
    Bert335m,
}

impl ProbeModel {
    /// Every probe model.
    pub const ALL: [ProbeModel; 3] = [Self::SpladeTiny, Self::Bert67m, Self::Bert335m];

    /// The model's name (`splade-tiny`, `bert-67m`, `bert-335m`).
    pub fn name(self) -> &'static str {
        match self {
            Self::SpladeTiny => "splade-tiny",
            Self::Bert67m => "bert-67m",
            Self::Bert335m => "bert-335m",
        }
    }
}

impl fmt::Display for ProbeModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ProbeModel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown probe model `{s}` (splade-tiny, bert-67m, bert-335m)"))
    }
}

/// What a probe runs after loading the model: forward passes alone, or an optimizer's steps.
///
/// Written as `inference` or the optimizer's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Scenario {
    /// Forward passes of the loss.
    Inference,
    /// Steps of an optimizer at its default settings.
    Optimizer(Algorithm),
}

impl Scenario {
    /// Inference, then every compared optimizer: the scenarios of each probe model.
    pub fn all() -> impl Iterator<Item = Scenario> {
        std::iter::once(Self::Inference).chain(OPTIMIZERS.into_iter().map(Self::Optimizer))
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inference => f.write_str("inference"),
            Self::Optimizer(a) => f.write_str(a.name()),
        }
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "inference" {
            return Ok(Self::Inference);
        }
        s.parse::<Algorithm>()
            .map(Self::Optimizer)
            .map_err(|e| format!("unknown scenario `{s}` (inference or an optimizer): {e}"))
    }
}

impl From<Scenario> for String {
    fn from(s: Scenario) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Scenario {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}
