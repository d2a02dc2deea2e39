//! Finding and loading the model named by a run configuration.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use zo_data::{NliTemplate, Task};
use zo_models::gguf::{load_gguf, load_gguf_tokenizer};
use zo_models::{
    CausalLm, HubOptions, Llama2cTokenizer, Load, MaskedLm, MaskedLmClassifier, Peft, Precision,
    Tokenizer, Weights, load_causal_lm,
};

use zo_optim::Rounding;

use crate::config::{ModelKind, ModelSection};
use crate::task_model::{CausalTokenizer, Head};

/// Models that `crates/zo-models/scripts/provision.sh` puts in the models folder, by name.
pub const PROVISIONED: [(&str, &str); 2] = [
    ("splade-tiny", "splade-tiny"),
    (
        "smollm2-135m",
        "smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
];

/// The folder of provisioned models: `$ZO_MODELS_DIR`, else `./.cache/models` (see
/// [`zo_data::models_dir_in`]).
pub fn models_dir() -> PathBuf {
    zo_data::models_dir_in(Path::new(""))
}

/// The data folder: `--data-dir` (or `[task].data_dir`) if given, else `$ZO_DATA_DIR` if set —
/// either must exist — else `./data`.
pub fn data_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    let env = std::env::var_os(zo_data::DATA_DIR_ENV).map(PathBuf::from);
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let dir = zo_data::resolve_data_dir_from(flag, env, &cwd, &[]).map_err(|e| match e {
        zo_data::DataError::DataDirMissing {
            origin: zo_data::DataDirOrigin::Explicit,
            path,
        } => anyhow!(
            "task.data_dir (--data-dir): the data folder {} does not exist",
            path.display()
        ),
        other => anyhow!(other),
    })?;
    Ok(std::fs::canonicalize(&dir).unwrap_or(dir))
}

/// Resolve `[model].name`: an existing path, a provisioned name, or a hub name.
pub fn resolve(name: &str) -> Result<PathBuf> {
    let path = Path::new(name);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if let Some((_, rel)) = PROVISIONED
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        let p = models_dir().join(rel);
        if p.exists() {
            return Ok(p);
        }
        bail!(
            "model.name: `{name}` is not provisioned ({} is missing); run `bash crates/zo-models/scripts/provision.sh` (or `cargo xtask finetune`, which does it)",
            p.display()
        );
    }
    if name.eq_ignore_ascii_case("stories260k") {
        // The tiny llama2.c model that ships with the repository (models/stories260k/): in the
        // current folder's `models/`, else in the models folder.
        let rel = Path::new("stories260k").join("stories260K.bin");
        let candidates = [Path::new("models").join(&rel), models_dir().join(&rel)];
        return candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or_else(|| {
                anyhow!(
                    "model.name: stories260k not found at {} or {} (run from the repository's root, or set {})",
                    candidates[0].display(),
                    candidates[1].display(),
                    zo_data::MODELS_DIR_ENV
                )
            });
    }
    zo_models::resolve_model(name, &HubOptions::from_env()).map_err(|e| anyhow!("model.name: {e}"))
}

/// The head a checkpoint calls for: masked for BERT/RoBERTa folders, causal for OPT/Llama/Mistral
/// folders and `.gguf`/`.bin` files.
pub fn detect_kind(path: &Path) -> Result<ModelKind> {
    if path.is_file() {
        return Ok(ModelKind::Causal);
    }
    #[derive(serde::Deserialize)]
    struct Kind {
        #[serde(default)]
        model_type: Option<String>,
    }
    let config = path.join("config.json");
    let kind: Kind = zo_models::loading::read_json(&config)?;
    match kind.model_type.as_deref() {
        Some("opt" | "llama" | "mistral") => Ok(ModelKind::Causal),
        Some("bert" | "roberta" | "xlm-roberta" | "camembert") | None => Ok(ModelKind::Masked),
        Some(other) => bail!(
            "{}: model_type `{other}` is not supported (bert, roberta, opt, llama, mistral)",
            config.display()
        ),
    }
}

/// The tokenizer of a GGUF checkpoint and the ids put before every context: `tokenizer` if given,
/// else the byte-level BPE of the file's metadata; BOS first when the metadata asks for it
/// (`tokenizer.ggml.add_bos_token`).
pub fn gguf_tokenizer(path: &Path, tokenizer: Option<Tokenizer>) -> Result<(Tokenizer, Vec<u32>)> {
    let meta = load_gguf_tokenizer(path)?;
    let tokenizer = match (tokenizer, meta.tokenizer) {
        (Some(t), _) => t,
        (None, Some(t)) => Tokenizer::from_tokenizer(t, path)?,
        (None, None) => bail!(
            "{}: the GGUF metadata has no byte-level BPE tokenizer; set model.tokenizer",
            path.display()
        ),
    };
    let prefix = match (meta.add_bos_token, meta.bos_token_id) {
        (true, Some(b)) => vec![b],
        _ => Vec::new(),
    };
    Ok((tokenizer, prefix))
}

/// Where a run's model comes from: the resolved checkpoint, its head kind and the precision. The
/// one reader of a checkpoint: the first load ([`load`](Self::load)) and every reload of the base
/// weights ([`load_weights`](Self::load_weights)) go through [`read`](Self::read).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSource {
    /// The resolved path.
    pub path: PathBuf,
    /// The head kind.
    pub kind: ModelKind,
    /// The precision the weights are loaded in.
    pub precision: Precision,
    /// How updates are written into bf16/f16 weights (`model.rounding`).
    pub rounding: Rounding,
    /// What is trained (`[peft]`).
    pub peft: Peft,
    /// The seed of the adapters' initial values (`train.seed`).
    pub seed: u64,
}

/// A model as read from its checkpoint, before a head is put on it.
pub enum Model {
    /// A masked LM.
    Masked(Box<MaskedLm>),
    /// A causal LM from a GGUF file.
    Gguf(Box<dyn CausalLm + Send + Sync>),
    /// A causal LM from a Hugging Face folder or a llama2.c file.
    Causal(Box<dyn CausalLm + Send + Sync>),
}

impl ModelSource {
    /// Resolve `[model].name` ([`resolve`]); the kind is `kind`, else detected ([`detect_kind`]).
    pub fn resolve(name: &str, kind: Option<ModelKind>, precision: Precision) -> Result<Self> {
        let path = resolve(name)?;
        let kind = match kind {
            Some(k) => k,
            None => detect_kind(&path)?,
        };
        Ok(Self {
            path,
            kind,
            precision,
            rounding: Rounding::default(),
            peft: Peft::Full,
            seed: 0,
        })
    }

    /// The same source training what `peft` says, adapters seeded by `seed`.
    pub fn with_adapters(mut self, peft: Peft, seed: u64) -> Self {
        self.peft = peft;
        self.seed = seed;
        self
    }

    /// How the checkpoint is loaded.
    fn load_options(&self) -> Load {
        Load::new(self.precision, self.peft.clone(), self.seed)
    }

    /// The same source whose weights are updated with `rounding`.
    pub fn with_rounding(mut self, rounding: Rounding) -> Self {
        self.rounding = rounding;
        self
    }

    /// Whether the checkpoint is a GGUF file.
    fn is_gguf(&self) -> bool {
        self.path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    }

    /// A masked LM loads from a folder.
    fn check_masked_folder(&self) -> Result<()> {
        if self.path.is_file() {
            bail!(
                "model.kind: {} is a file; masked LMs load from a Hugging Face folder",
                self.path.display()
            );
        }
        Ok(())
    }

    /// Read the checkpoint: the model and its trainable weights (shared with the model), updated
    /// with the source's rounding.
    pub fn read(&self) -> Result<(Model, Weights)> {
        let (model, mut weights) = self.read_checkpoint()?;
        weights.set_rounding(self.rounding);
        Ok((model, weights))
    }

    fn read_checkpoint(&self) -> Result<(Model, Weights)> {
        let path = &self.path;
        Ok(match self.kind {
            ModelKind::Masked => {
                self.check_masked_folder()?;
                let (model, weights) = MaskedLm::from_folder(path, self.load_options())?;
                (Model::Masked(Box::new(model)), weights)
            }
            ModelKind::Causal if self.is_gguf() => {
                let m = load_gguf(path, self.load_options())?;
                (Model::Gguf(Box::new(m.model)), m.weights)
            }
            ModelKind::Causal => {
                let (model, weights) = load_causal_lm(path, self.load_options())?;
                (Model::Causal(model), weights)
            }
        })
    }

    /// The base weights alone, read again (e.g. to put them back before a replay).
    pub fn load_weights(&self) -> Result<Weights> {
        Ok(self.read()?.1)
    }

    /// The model for `task` with its prompt head (masked LMs: with the entailment tasks' template
    /// `nli`), and its weights.
    pub fn load(&self, section: &ModelSection, task: Task, nli: NliTemplate) -> Result<Loaded> {
        let path = &self.path;
        let tokenizer_override = section
            .tokenizer
            .as_ref()
            .filter(|p| p.extension().is_none_or(|e| e != "bin"))
            .map(|p| Tokenizer::from_file(p).map_err(|e| anyhow!("model.tokenizer: {e}")))
            .transpose()?;
        if self.kind == ModelKind::Masked {
            // The folder and the prompt are checked before the model is read.
            self.check_masked_folder()?;
            task.masked_prompt_with(nli)?;
        }
        let (model, weights) = self.read()?;
        let head = match model {
            Model::Masked(model) => {
                let prompt = task.masked_prompt_with(nli)?;
                let tokenizer = match tokenizer_override {
                    Some(t) => t,
                    None => Tokenizer::from_folder(path)?,
                };
                let max_length = section.max_length.min(model.max_sequence_length());
                let clf =
                    MaskedLmClassifier::new(*model, tokenizer, prompt.template, prompt.label_words)
                        .and_then(|c| c.with_max_length(max_length))
                        .with_context(|| {
                            format!("{} as a {} classifier", path.display(), task.display_name())
                        })?;
                Head::Masked(clf)
            }
            Model::Gguf(model) => {
                let (tokenizer, prefix) = gguf_tokenizer(path, tokenizer_override)?;
                Head::Causal {
                    model,
                    tokenizer: CausalTokenizer::Hf(tokenizer),
                    prefix,
                    max_length: section.max_length,
                }
            }
            Model::Causal(model) => {
                let (tokenizer, prefix) = causal_tokenizer(path, section, tokenizer_override)?;
                Head::Causal {
                    model,
                    tokenizer,
                    prefix,
                    max_length: section.max_length,
                }
            }
        };
        Ok(Loaded {
            head,
            weights,
            source: self.clone(),
        })
    }
}

/// The tokenizer of a causal LM from a Hugging Face folder (its own, or `tokenizer`) or a llama2.c
/// file (the file beside it, or the one `[model].tokenizer` names), and the ids put before every
/// context.
fn causal_tokenizer(
    path: &Path,
    section: &ModelSection,
    tokenizer: Option<Tokenizer>,
) -> Result<(CausalTokenizer, Vec<u32>)> {
    if path.is_dir() {
        let t = match tokenizer {
            Some(t) => t,
            None => Tokenizer::from_folder(path)?,
        };
        let prefix = t.prefix().to_vec();
        return Ok((CausalTokenizer::Hf(t), prefix));
    }
    // A llama2.c checkpoint: its tokenizer file sits beside it (or is named).
    let file = match &section.tokenizer {
        Some(p) => p.clone(),
        None => ["tok512.bin", "tokenizer.bin"]
            .iter()
            .map(|n| path.with_file_name(n))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                anyhow!(
                    "{}: no tok512.bin or tokenizer.bin beside the llama2.c checkpoint; set model.tokenizer",
                    path.display()
                )
            })?,
    };
    if file.extension().is_some_and(|e| e == "json") {
        let t = Tokenizer::from_file(&file)?;
        let prefix = t.prefix().to_vec();
        Ok((CausalTokenizer::Hf(t), prefix))
    } else {
        let t = Llama2cTokenizer::from_file(&file)?;
        Ok((
            CausalTokenizer::Llama2c(t),
            vec![zo_models::llama2c::LLAMA2C_BOS],
        ))
    }
}

/// A loaded model: its head and its trainable weights.
pub struct Loaded {
    /// The head.
    pub head: Head,
    /// The weights (shared with the head's model).
    pub weights: Weights,
    /// Where it was loaded from (to reload its base weights).
    pub source: ModelSource,
}

/// Load the model of `section` for `task` (masked LMs: with the entailment tasks' template `nli`).
pub fn load(
    section: &ModelSection,
    kind: Option<ModelKind>,
    precision: Precision,
    task: Task,
    nli: NliTemplate,
) -> Result<Loaded> {
    ModelSource::resolve(&section.name, kind, precision)?
        .with_rounding(section.rounding)
        .load(section, task, nli)
}

/// The data and the model of a run: the data folder that was read, the splits (the test split cut
/// to `task.test_size`), and the loaded model with its prompt head.
pub fn data_and_model(
    config: &crate::config::RunConfig,
    resolved: &crate::config::Resolved,
) -> Result<(PathBuf, zo_data::Splits, Loaded)> {
    let data_dir = data_dir(config.task.data_dir.clone())?;
    let mut splits = zo_data::load_splits(&data_dir, resolved.task, resolved.protocol)?;
    if let Some(n) = config.task.test_size {
        splits.test.truncate(n);
    }
    let loaded = ModelSource::resolve(&config.model.name, resolved.kind, resolved.precision)?
        .with_rounding(config.model.rounding)
        .with_adapters(resolved.peft.clone(), config.train.seed)
        .load(&config.model, resolved.task, resolved.nli_template)?;
    Ok((data_dir, splits, loaded))
}
