//! Resolution of a model argument to a local folder: a path, or (with the `hub` feature) a Hugging
//! Face hub name `org/name` looked up in the local hub cache and downloaded when online.

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// Where and how hub names are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubOptions {
    /// The hub cache folder (`$HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    pub cache_dir: PathBuf,
    /// Never touch the network (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
}

impl HubOptions {
    /// The options the Hugging Face tools use: `HF_HOME` and `HF_HUB_OFFLINE`.
    pub fn from_env() -> Self {
        let cache_dir = match std::env::var_os("HF_HOME") {
            Some(home) => PathBuf::from(home).join("hub"),
            None => std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".cache/huggingface/hub"),
        };
        let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0");
        Self { cache_dir, offline }
    }
}

/// Whether `spec` has the shape of a hub model name (`org/name`, no path syntax).
pub fn is_hub_name(spec: &str) -> bool {
    let mut parts = spec.split('/');
    let (Some(org), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    ok(org) && ok(name)
}

/// Resolve a model argument: an existing path is returned as is; a hub name `org/name` is looked up
/// in the hub cache and, unless offline, downloaded (`hub` feature); anything else is a
/// not-found error naming it.
pub fn resolve_model(spec: &str, options: &HubOptions) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if !is_hub_name(spec) {
        return Err(ModelError::not_found(path, "model path not found"));
    }
    fetch(spec, options)
}

#[cfg(not(feature = "hub"))]
fn fetch(spec: &str, _options: &HubOptions) -> Result<PathBuf> {
    Err(ModelError::Hub {
        name: spec.to_string(),
        message: "no such local path, and hub names need zo-models' `hub` feature".into(),
    })
}

/// The files a model folder needs, in the order they are fetched.
#[cfg(feature = "hub")]
const REQUIRED: &[&str] = &["config.json"];
#[cfg(feature = "hub")]
const OPTIONAL: &[&str] = &["tokenizer.json", "tokenizer_config.json"];

#[cfg(feature = "hub")]
fn fetch(spec: &str, options: &HubOptions) -> Result<PathBuf> {
    use hf_hub::{Cache, api::sync::ApiBuilder};

    let hub_error = |message: String| ModelError::Hub {
        name: spec.to_string(),
        message,
    };
    let cache = Cache::new(options.cache_dir.clone()).model(spec.to_string());
    let cached = |file: &str| cache.get(file);
    let weights_cached = cached("model.safetensors").or_else(|| {
        let index = cached("model.safetensors.index.json")?;
        let shards = shard_names(&index).ok()?;
        shards.iter().all(|s| cached(s).is_some()).then_some(index)
    });
    if let (Some(config), Some(_)) = (cached("config.json"), weights_cached) {
        return folder_of(&config, spec);
    }
    if options.offline {
        return Err(hub_error(format!(
            "not in the hub cache {} and offline (HF_HUB_OFFLINE is set)",
            options.cache_dir.display()
        )));
    }
    let api = ApiBuilder::new()
        .with_cache_dir(options.cache_dir.clone())
        .with_progress(false)
        .build()
        .map_err(|e| hub_error(format!("cannot use the hub: {e}")))?;
    let repo = api.model(spec.to_string());
    let get = |file: &str| {
        repo.get(file).map_err(|e| {
            hub_error(format!(
                "cannot download `{file}` (offline, or no such model?): {e}"
            ))
        })
    };
    let config = REQUIRED
        .iter()
        .map(|f| get(f))
        .collect::<Result<Vec<_>>>()?;
    match get("model.safetensors") {
        Ok(_) => {}
        Err(single) => {
            let index = get("model.safetensors.index.json").map_err(|_| single)?;
            for shard in shard_names(&index)? {
                get(&shard)?;
            }
        }
    }
    for f in OPTIONAL {
        // Optional files: a model without a tokenizer.json still loads.
        let _ = repo.get(f);
    }
    folder_of(&config[0], spec)
}

#[cfg(feature = "hub")]
fn shard_names(index: &Path) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::HashMap<String, String>,
    }
    let idx: Index = crate::loading::read_json(index)?;
    let mut shards: Vec<String> = idx.weight_map.into_values().collect();
    shards.sort();
    shards.dedup();
    Ok(shards)
}

#[cfg(feature = "hub")]
fn folder_of(file: &Path, spec: &str) -> Result<PathBuf> {
    file.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| ModelError::Hub {
            name: spec.to_string(),
            message: format!("unexpected cache path {}", file.display()),
        })
}
