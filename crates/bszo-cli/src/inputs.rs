//! Provenance: content hashes of a run's inputs (base weights, tokenizer, data files), recorded in
//! the run's folder when it starts and checked whenever the run's weights are rebuilt from them
//! (resume, export, and the replay of the best weights at the end of a run).
//!
//! A run's folder stores the trajectory (the seed log), not the weights: the weights are the base
//! weights plus the replayed trajectory. If the base weights change on disk, every rebuild silently
//! yields other weights; the hashes turn that into an error naming the file.
//!
//! The hash is BLAKE3 (the `blake3` crate): a cryptographic hash, so that a match means the same
//! bytes, and fast — several GB/s on one core with its SIMD code — so that hashing a model costs
//! little next to loading it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use zo_data::Task;
pub use zo_train::INPUTS_FILE;
use zo_train::write_atomic;

/// The flag that accepts changed inputs.
pub const ACCEPT_FLAG: &str = "--accept-changed-inputs";

/// What an input is to the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A file of the base model (weights, its configuration, its own tokenizer).
    Model,
    /// A tokenizer file named apart from the model.
    Tokenizer,
    /// A data file of the task.
    Data,
}

/// One hashed file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// What the file is to the run.
    pub role: Role,
    /// Its name relative to its root (the model folder, the task's data folder), which is how a
    /// later check finds it again.
    pub name: String,
    /// Where it was read.
    pub path: PathBuf,
    /// Its length.
    pub bytes: u64,
    /// Its BLAKE3 hash (hex).
    pub blake3: String,
}

/// The contents of `inputs.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// The hash function (`blake3`).
    pub hash: String,
    /// The files.
    pub files: Vec<InputFile>,
}

/// A file to hash: its role, its name relative to its root, its path.
pub type Candidate = (Role, String, PathBuf);

/// The BLAKE3 hash (hex) and length of the file at `path`.
pub fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let bytes = std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok((hasher.finalize().to_hex().to_string(), bytes))
}

fn files_under(
    root: &Path,
    dir: &Path,
    recursive: bool,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        if path.is_dir() {
            if recursive {
                files_under(root, &path, true, out)?;
            }
        } else if path.is_file() {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            out.push((rel, path));
        }
    }
    Ok(())
}

/// The model's files: the file itself (GGUF, llama2.c — with the tokenizer file beside it), or
/// every file of its folder (weights, configuration, tokenizer); and a separately named tokenizer.
pub fn model_files(model: &Path, tokenizer: Option<&Path>) -> Result<Vec<Candidate>> {
    let mut out = Vec::new();
    if model.is_dir() {
        let mut found = Vec::new();
        files_under(model, model, false, &mut found)?;
        out.extend(found.into_iter().map(|(n, p)| (Role::Model, n, p)));
    } else {
        let name = model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((Role::Model, name, model.to_path_buf()));
        let is_llama2c = model.extension().is_some_and(|e| e == "bin");
        if is_llama2c && tokenizer.is_none() {
            for n in ["tok512.bin", "tokenizer.bin"] {
                let p = model.with_file_name(n);
                if p.is_file() {
                    out.push((Role::Tokenizer, n.to_string(), p));
                    break;
                }
            }
        }
    }
    if let Some(t) = tokenizer {
        let name = t
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((Role::Tokenizer, name, t.to_path_buf()));
    }
    Ok(out)
}

/// The task's data files: every file under the task's folder in `data_dir` (the splits the run
/// reads are among them).
pub fn data_files(data_dir: &Path, task: Task) -> Result<Vec<Candidate>> {
    let root = data_dir.join(task.name());
    let mut found = Vec::new();
    if root.is_dir() {
        files_under(&root, &root, true, &mut found)?;
    }
    Ok(found.into_iter().map(|(n, p)| (Role::Data, n, p)).collect())
}

/// Hash the candidates.
pub fn record(candidates: &[Candidate]) -> Result<Inputs> {
    let files = candidates
        .iter()
        .map(|(role, name, path)| {
            let (blake3, bytes) = hash_file(path)?;
            Ok(InputFile {
                role: *role,
                name: name.clone(),
                path: path.clone(),
                bytes,
                blake3,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Inputs {
        hash: "blake3".into(),
        files,
    })
}

impl Inputs {
    /// Read `dir/inputs.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(INPUTS_FILE);
        let text = fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (the run's recorded input hashes; pass {ACCEPT_FLAG} to go on without them)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| anyhow!("{}: bad JSON: {e}", path.display()))
    }

    /// Write `dir/inputs.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(INPUTS_FILE), &serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    /// Check the candidates of the given roles against the recorded hashes: a file whose content
    /// differs, a recorded file that is gone and a file that was not there are errors naming the
    /// file.
    pub fn check(&self, candidates: &[Candidate], roles: &[Role]) -> Result<()> {
        let recorded: BTreeMap<(Role, &str), &InputFile> = self
            .files
            .iter()
            .filter(|f| roles.contains(&f.role))
            .map(|f| ((f.role, f.name.as_str()), f))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for (role, name, path) in candidates.iter().filter(|c| roles.contains(&c.0)) {
            seen.insert((*role, name.as_str()));
            let Some(rec) = recorded.get(&(*role, name.as_str())) else {
                bail!(
                    "{}: this {} file was not among the run's inputs when it started; pass {ACCEPT_FLAG} to go on anyway",
                    path.display(),
                    role_name(*role)
                );
            };
            let (hash, bytes) = hash_file(path)?;
            if hash != rec.blake3 {
                bail!(
                    "{}: the {} file changed since the run started ({bytes} bytes, blake3 {}…; recorded {} bytes, blake3 {}…); the rebuilt weights would differ — restore it, or pass {ACCEPT_FLAG} to go on anyway",
                    path.display(),
                    role_name(*role),
                    &hash[..16],
                    rec.bytes,
                    &rec.blake3[..rec.blake3.len().min(16)]
                );
            }
        }
        if let Some(((role, _), rec)) = recorded.iter().find(|(k, _)| !seen.contains(*k)) {
            bail!(
                "{}: this {} file of the run's inputs is missing now; restore it, or pass {ACCEPT_FLAG} to go on anyway",
                rec.path.display(),
                role_name(*role)
            );
        }
        Ok(())
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Model => "model",
        Role::Tokenizer => "tokenizer",
        Role::Data => "data",
    }
}
