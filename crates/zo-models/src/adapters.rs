//! Parameter-efficient fine-tuning: which weights a run trains.
//!
//! [`Peft::Full`] trains every weight of the checkpoint. The two adapter methods train small
//! added tensors only; the checkpoint's weights are then *frozen*: stored in the run's precision,
//! read by the layers as they are, never perturbed and never updated.
//!
//! - [`Peft::Lora`] (Hu et al. 2021, LoRA; MeZO's `lora.py`): a linear layer named by
//!   [`LoraConfig::targets`] computes `h = W x + b + (α/r)·B (A x)` with trainable
//!   `A` (`r × in`) and `B` (`out × r`). `A` starts Kaiming-uniform as PyTorch initialises a
//!   linear layer (`kaiming_uniform_(a = √5)`, i.e. uniform on `(−1/√in, 1/√in)`), drawn from a
//!   keyed stream (below), and `B` starts at zero, so the adapted model starts as the base model.
//! - [`Peft::Prefix`] (Li and Liang 2021; MeZO's `prefix.py` without reparameterisation): every
//!   attention layer gets `tokens` trainable key and value vectors (`tokens × kv_width`, in the
//!   space after the key/value projections — after the rotary embedding in Llama) that every query
//!   attends to, before the sequence's own keys; the sequence keeps its positions. They start as
//!   the keys and values of `tokens` random vocabulary tokens run through the model
//!   ([`PrefixInit::Real`], MeZO's `--prefix_init_by_real_act`) or as standard normals
//!   ([`PrefixInit::Random`], MeZO's default `torch.randn`).
//!
//! Initial values depend only on the run seed and the tensor's name (never on the order of
//! loading or the platform), so reloading the base weights of a run rebuilds the same adapters:
//! element `i` of a LoRA `A` named `n` is `(2u − 1)/√in` with `u = (w >> 40)·2⁻²⁴` and `w` the
//! `i`-th word of SplitMix64 seeded with `derive_seed(seed, FNV-1a(n))`; prefix normals are
//! elements of the `zo-sampler` stream of key `(seed, PREFIX_STEP, 0)` on the tensor's name; the
//! random tokens of the real-activation init are `below(vocab)` draws of SplitMix64 seeded with
//! `derive_seed(seed, PREFIX_TOKENS_STREAM)`.

use serde::{Deserialize, Serialize};
use zo_sampler::{DirectionKey, Distribution, SplitMix64, TensorId, derive_seed};

use crate::error::{ModelError, Result};
use crate::loading::Precision;

/// The step number of the key whose streams give random prefix initialisations (outside the
/// range of training steps, whose directions use `0..steps`).
pub const PREFIX_STEP: u64 = u64::MAX - 1;

/// The stream index (for `derive_seed`) of the random tokens of a real-activation prefix init.
pub const PREFIX_TOKENS_STREAM: u64 = 0x5052_4546_4958; // "PREFIX"

/// Which weights a fine-tuning trains (`[peft]` in a run configuration; `method` selects).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Peft {
    /// Every weight of the checkpoint (full-parameter fine-tuning).
    #[default]
    Full,
    /// Low-rank adapters on chosen linear layers; everything else frozen.
    Lora(LoraConfig),
    /// Trainable attention prefixes in every layer; everything else frozen.
    Prefix(PrefixConfig),
}

impl Peft {
    /// Whether every weight is trained.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full)
    }

    /// `full`, `lora` or `prefix`.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Lora(_) => "lora",
            Self::Prefix(_) => "prefix",
        }
    }

    /// Check the settings (a zero rank or prefix length, a non-finite α, an empty target name).
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, message: String| ModelError::Config {
            field: format!("peft.{field}"),
            message,
        };
        match self {
            Self::Full => Ok(()),
            Self::Lora(c) => {
                if c.rank == 0 || c.rank > 65_536 {
                    return Err(bad("rank", format!("{} is not in 1..=65536", c.rank)));
                }
                if !c.alpha.is_finite() || c.alpha <= 0.0 {
                    return Err(bad(
                        "alpha",
                        format!("{} is not a positive number", c.alpha),
                    ));
                }
                if let Some(t) = c.targets.iter().find(|t| t.trim().is_empty()) {
                    return Err(bad("targets", format!("`{t}` is not a module name")));
                }
                Ok(())
            }
            Self::Prefix(c) => {
                if c.tokens == 0 || c.tokens > 4096 {
                    return Err(bad("tokens", format!("{} is not in 1..=4096", c.tokens)));
                }
                Ok(())
            }
        }
    }
}

fn default_rank() -> usize {
    8
}

fn default_alpha() -> f64 {
    16.0
}

fn default_tokens() -> usize {
    5
}

/// LoRA's settings (defaults: MeZO's, rank 8, α 16, on the query and value projections).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// The rank `r` of `B A`.
    #[serde(default = "default_rank")]
    pub rank: usize,
    /// `α`: the adapter's output is scaled by `α / r`.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// The linear layers that get adapters: a module matches a target equal to its name or to a
    /// dot-separated tail of it (`value` matches `bert.encoder.layer.0.attention.self.value`).
    /// Empty: the attention's query and value projections (`query`/`value` in BERT and RoBERTa,
    /// `q_proj`/`v_proj` in OPT, Llama and Mistral). Each named target must match a layer.
    #[serde(default)]
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: default_rank(),
            alpha: default_alpha(),
            targets: Vec::new(),
        }
    }
}

/// The query and value projections' names, the default LoRA targets.
pub const DEFAULT_LORA_TARGETS: [&str; 4] = ["query", "value", "q_proj", "v_proj"];

impl LoraConfig {
    /// `α / r`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// The target that module `name` matches, if any.
    pub fn target_of(&self, name: &str) -> Option<String> {
        let matches = |t: &str| name == t || name.ends_with(&format!(".{t}"));
        if self.targets.is_empty() {
            DEFAULT_LORA_TARGETS
                .iter()
                .find(|t| matches(t))
                .map(|t| t.to_string())
        } else {
            self.targets.iter().find(|t| matches(t)).cloned()
        }
    }
}

/// How prefixes start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrefixInit {
    /// The keys and values of random vocabulary tokens run through the base model (MeZO's
    /// `--prefix_init_by_real_act`).
    #[default]
    Real,
    /// Standard normals.
    Random,
}

/// Prefix tuning's settings (defaults: MeZO's, 5 tokens initialised from real activations).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixConfig {
    /// Prefix vectors per attention layer.
    #[serde(default = "default_tokens")]
    pub tokens: usize,
    /// How they start.
    #[serde(default)]
    pub init: PrefixInit,
}

impl Default for PrefixConfig {
    fn default() -> Self {
        Self {
            tokens: default_tokens(),
            init: PrefixInit::default(),
        }
    }
}

/// How to load a checkpoint: the precision of its weights and which of them are trained. A
/// [`Precision`] converts into a full-parameter `Load`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Load {
    /// The precision the checkpoint's weights are stored in (adapters are always f32).
    pub precision: Precision,
    /// What is trained.
    pub peft: Peft,
    /// The seed of the adapters' initial values (a run's seed).
    pub seed: u64,
}

impl From<Precision> for Load {
    fn from(precision: Precision) -> Self {
        Self {
            precision,
            ..Self::default()
        }
    }
}

impl Load {
    /// Load in `precision`, training what `peft` says, adapters seeded by `seed`.
    pub fn new(precision: Precision, peft: Peft, seed: u64) -> Self {
        Self {
            precision,
            peft,
            seed,
        }
    }
}

/// LoRA's `A` for tensor `name`: `rank × inp` uniform on `(−1/√inp, 1/√inp)` (see the module
/// documentation for the stream).
pub(crate) fn lora_a_values(seed: u64, name: &str, rank: usize, inp: usize) -> Vec<f32> {
    let bound = 1.0 / (inp.max(1) as f32).sqrt();
    let mut rng = SplitMix64::new(derive_seed(seed, TensorId::from_name(name).0));
    (0..rank * inp)
        .map(|_| {
            let u = (rng.next_u64() >> 40) as f32 * (1.0 / 16_777_216.0);
            (2.0 * u - 1.0) * bound
        })
        .collect()
}

/// Standard normals for the prefix tensor `name` (`n` elements).
pub(crate) fn prefix_random_values(seed: u64, name: &str, n: usize) -> Vec<f32> {
    let stream = DirectionKey::new(seed, PREFIX_STEP, 0)
        .stream(TensorId::from_name(name), Distribution::Normal);
    let mut v = vec![0.0f32; n];
    stream.fill(0, &mut v);
    v
}

/// The random tokens whose activations start the prefixes (`tokens` ids below `vocab`).
pub fn prefix_tokens(seed: u64, tokens: usize, vocab: usize) -> Vec<u32> {
    let mut rng = SplitMix64::new(derive_seed(seed, PREFIX_TOKENS_STREAM));
    (0..tokens)
        .map(|_| rng.below(vocab as u64) as u32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_a_is_uniform_in_the_kaiming_bound_and_keyed() {
        let a = lora_a_values(7, "m.lora_A.weight", 8, 64);
        let bound = 1.0 / 8.0;
        assert!(a.iter().all(|x| x.abs() < bound));
        let mean = a.iter().map(|&x| f64::from(x)).sum::<f64>() / a.len() as f64;
        // Uniform on (−b, b): variance b²/3; 512 draws, mean within 5 standard errors.
        let se = (f64::from(bound) * f64::from(bound) / 3.0 / 512.0).sqrt();
        assert!(mean.abs() < 5.0 * se, "{mean}");
        assert_eq!(a, lora_a_values(7, "m.lora_A.weight", 8, 64));
        assert_ne!(a, lora_a_values(8, "m.lora_A.weight", 8, 64));
        assert_ne!(a, lora_a_values(7, "n.lora_A.weight", 8, 64));
    }

    #[test]
    fn targets_match_whole_name_parts() {
        let c = LoraConfig::default();
        assert_eq!(
            c.target_of("bert.encoder.layer.0.attention.self.value")
                .as_deref(),
            Some("value")
        );
        assert_eq!(
            c.target_of("model.layers.3.self_attn.q_proj").as_deref(),
            Some("q_proj")
        );
        assert_eq!(c.target_of("model.layers.3.self_attn.k_proj"), None);
        let c = LoraConfig {
            targets: vec!["attention.output.dense".into()],
            ..LoraConfig::default()
        };
        assert!(
            c.target_of("bert.encoder.layer.1.attention.output.dense")
                .is_some()
        );
        assert!(c.target_of("bert.encoder.layer.1.output.dense").is_none());
        assert!(
            c.target_of("bert.encoder.layer.1.xattention.output.dense")
                .is_none()
        );
    }

    #[test]
    fn configurations_round_trip_and_refuse_unknown_keys() {
        let lora: Peft = serde_json::from_str(r#"{"method":"lora","rank":4}"#).unwrap();
        assert_eq!(
            lora,
            Peft::Lora(LoraConfig {
                rank: 4,
                ..LoraConfig::default()
            })
        );
        let back: Peft = serde_json::from_str(&serde_json::to_string(&lora).unwrap()).unwrap();
        assert_eq!(back, lora);
        assert!(serde_json::from_str::<Peft>(r#"{"method":"lora","rnak":4}"#).is_err());
        assert!(serde_json::from_str::<Peft>(r#"{"method":"prefix","rank":4}"#).is_err());
        let prefix: Peft = serde_json::from_str(r#"{"method":"prefix"}"#).unwrap();
        assert_eq!(prefix, Peft::Prefix(PrefixConfig::default()));
        assert_eq!(
            serde_json::from_str::<Peft>(r#"{"method":"full"}"#).unwrap(),
            Peft::Full
        );
        assert!(
            Peft::Lora(LoraConfig {
                rank: 0,
                ..LoraConfig::default()
            })
            .validate()
            .is_err()
        );
        assert!(
            Peft::Prefix(PrefixConfig {
                tokens: 0,
                ..PrefixConfig::default()
            })
            .validate()
            .is_err()
        );
    }

    #[test]
    fn prefix_tokens_are_keyed_and_in_range() {
        let t = prefix_tokens(3, 5, 100);
        assert_eq!(t.len(), 5);
        assert!(t.iter().all(|&i| i < 100));
        assert_eq!(t, prefix_tokens(3, 5, 100));
        assert_ne!(t, prefix_tokens(4, 5, 100));
    }
}
