//! Model resolution: local paths, hub names through the hub cache, offline errors.

#[cfg(feature = "hub")]
use std::path::Path;
use std::path::PathBuf;

use zo_models::hub::is_hub_name;
use zo_models::{HubOptions, ModelError, resolve_model};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zo-models-hub-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn hub_names_are_recognised() {
    for yes in [
        "prajjwal1/bert-tiny",
        "HuggingFaceTB/SmolLM2-135M",
        "a/b.c_d-e",
    ] {
        assert!(is_hub_name(yes), "{yes}");
    }
    for no in [
        "bert",
        "/abs/path",
        "./rel/path",
        "a/b/c",
        "../x",
        "a/",
        "/b",
        "a b/c",
        ".hidden/x",
    ] {
        assert!(!is_hub_name(no), "{no}");
    }
}

#[test]
fn local_paths_resolve_to_themselves_and_missing_ones_are_named() {
    let dir = temp("local");
    let opts = HubOptions {
        cache_dir: dir.join("hub"),
        offline: true,
    };
    assert_eq!(resolve_model(dir.to_str().unwrap(), &opts).unwrap(), dir);
    let missing = dir.join("no/such/model");
    let err = resolve_model(missing.to_str().unwrap(), &opts).unwrap_err();
    assert!(matches!(err, ModelError::Io { .. }), "{err}");
    assert!(err.to_string().contains("no/such/model"), "{err}");
}

#[cfg(not(feature = "hub"))]
#[test]
fn hub_names_need_the_feature() {
    let opts = HubOptions {
        cache_dir: temp("nofeature"),
        offline: false,
    };
    let err = resolve_model("org/model", &opts).unwrap_err();
    assert!(err.to_string().contains("`hub` feature"), "{err}");
}

#[cfg(feature = "hub")]
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A model already in the hub cache resolves offline to its snapshot folder, which loads.
#[cfg(feature = "hub")]
#[test]
fn cached_models_resolve_offline_and_load() {
    let cache = temp("cache");
    let repo = cache.join("models--org--tiny-bert");
    let snapshot = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("bert").join(f), snapshot.join(f)).unwrap();
    }
    let opts = HubOptions {
        cache_dir: cache.clone(),
        offline: true,
    };
    let dir = resolve_model("org/tiny-bert", &opts).unwrap();
    assert_eq!(dir, snapshot);
    let (_model, weights) =
        zo_models::MaskedLm::from_folder(&dir, zo_models::Precision::F32).unwrap();
    assert!(!weights.is_empty());
}

/// Offline with nothing cached: a one-line error that says so, without touching the network.
#[cfg(feature = "hub")]
#[test]
fn uncached_models_fail_clearly_offline() {
    let opts = HubOptions {
        cache_dir: temp("empty"),
        offline: true,
    };
    let err = resolve_model("org/not-cached", &opts).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::Hub { .. }), "{msg}");
    assert!(
        msg.contains("org/not-cached") && msg.contains("offline"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}
