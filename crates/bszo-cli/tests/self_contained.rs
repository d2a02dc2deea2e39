//! A fresh clone runs the default job: every file the embedded default run, the tests and the
//! benchmark read lives inside the repository (or is provisioned into it), and a named data
//! folder that does not exist is an error rather than a silent fall-back.
//!
//! One test in this file: it changes the process's current directory and environment, which
//! must not race with other tests of the same process.

mod common;

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use bszo_cli::RunConfig;
use bszo_cli::load;
use common::{scratch, stderr, workspace};

/// `p` made absolute against `cwd` and with `.`/`..` removed, without following links (a
/// provisioned `.cache` may be a link; what matters is where the program looks).
fn lexical(cwd: &Path, p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in cwd.join(p).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Every file below `dir` (not following links); a link anywhere is a failure (it could point
/// outside the repository).
fn files_below(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        assert!(!kind.is_symlink(), "{} is a link", entry.path().display());
        if kind.is_dir() {
            files_below(&entry.path(), out);
        } else {
            out.push(entry.path());
        }
    }
}

/// Source files that could name a path outside the repository.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            if !matches!(
                name.as_str(),
                "target" | ".git" | ".cache" | "data" | "runs"
            ) && !name.starts_with("target-")
            {
                sources(&path, out);
            }
        } else if [".rs", ".toml", ".sh", ".py"]
            .iter()
            .any(|e| name.ends_with(e))
            || name == "run"
        {
            out.push(path);
        }
    }
}

#[test]
fn the_default_run_reads_only_files_inside_the_repository() {
    let ws = lexical(Path::new("/"), &workspace());
    // SAFETY: the only test of this process, so no other thread reads the environment.
    unsafe {
        std::env::remove_var("ZO_DATA_DIR");
        std::env::remove_var("ZO_MODELS_DIR");
    }
    std::env::set_current_dir(&ws).unwrap();

    // The data folder: the repository's own.
    let config = RunConfig::embedded_default();
    let resolved = config.resolve().unwrap();
    let data = load::data_dir(config.task.data_dir.clone()).unwrap();
    assert_eq!(
        std::fs::canonicalize(&data).unwrap(),
        std::fs::canonicalize(ws.join("data")).unwrap()
    );
    let splits = zo_data::load_splits(&data, resolved.task, resolved.protocol).unwrap();
    assert_eq!(
        (
            splits.train.len(),
            splits.validation.len(),
            splits.test.len()
        ),
        (1000, 500, 872)
    );

    // Every data file is inside the repository (no links out), and every task names its source
    // and license.
    let mut files = Vec::new();
    files_below(&ws.join("data"), &mut files);
    files_below(&ws.join("models"), &mut files);
    assert!(files.len() > 100, "{} files", files.len());
    for task in zo_data::Task::ALL {
        let readme = std::fs::read_to_string(ws.join("data").join(task.name()).join("README.md"))
            .unwrap_or_else(|e| panic!("data/{}/README.md: {e}", task.name()));
        assert!(readme.contains("License"), "data/{}/README.md", task.name());
        assert!(readme.contains("commit"), "data/{}/README.md", task.name());
    }
    let wic = std::fs::read_to_string(ws.join("data/wic/README.md")).unwrap();
    assert!(wic.contains("CC BY-NC"));

    // The model: provisioned into the repository's `.cache/models`, or shipped in `models/`.
    let model = load::resolve(&config.model.name);
    match model {
        Ok(path) => assert!(
            lexical(&ws, &path).starts_with(&ws),
            "{} is outside {}",
            path.display(),
            ws.display()
        ),
        Err(e) => {
            bszo_testkit::require(
                "the default model",
                false,
                format_args!("the default model provisioned: {e}"),
            );
        }
    }
    let stories = load::resolve("stories260k").unwrap();
    assert_eq!(
        lexical(&ws, &stories),
        ws.join("models/stories260k/stories260K.bin")
    );
    assert!(ws.join("models/stories260k/tok512.bin").is_file());

    // From any other folder nothing of the repository is found by default: the binary looks in
    // the current folder and in the folders that the environment names, never in its source tree.
    let elsewhere = scratch("self-contained");
    std::env::set_current_dir(&elsewhere).unwrap();
    let err = load::data_dir(None).unwrap_err().to_string();
    assert!(err.contains("data"), "{err}");
    let err = load::resolve("stories260k").unwrap_err().to_string();
    assert!(err.contains("stories260k not found"), "{err}");
    // A sibling folder `shared` holding a data folder is never looked at.
    std::fs::create_dir_all(elsewhere.join("inner")).unwrap();
    std::fs::create_dir_all(elsewhere.join("shared").join("data").join("sst2")).unwrap();
    std::env::set_current_dir(elsewhere.join("inner")).unwrap();
    assert!(load::data_dir(None).is_err());
    // The environment names the data and models folders.
    let models = elsewhere.join("models");
    std::fs::create_dir_all(models.join("stories260k")).unwrap();
    std::fs::copy(
        ws.join("models/stories260k/stories260K.bin"),
        models.join("stories260k").join("stories260K.bin"),
    )
    .unwrap();
    // SAFETY: the only test of this process, so no other thread reads the environment.
    unsafe {
        std::env::set_var("ZO_DATA_DIR", ws.join("data"));
        std::env::set_var("ZO_MODELS_DIR", &models);
    }
    assert_eq!(
        std::fs::canonicalize(load::data_dir(None).unwrap()).unwrap(),
        std::fs::canonicalize(ws.join("data")).unwrap()
    );
    assert_eq!(
        load::resolve("stories260k").unwrap(),
        models.join("stories260k").join("stories260K.bin")
    );
    assert_eq!(load::models_dir(), models);
    // SAFETY: as above.
    unsafe {
        std::env::remove_var("ZO_DATA_DIR");
        std::env::remove_var("ZO_MODELS_DIR");
    }
    std::env::set_current_dir(&ws).unwrap();

    // No source file names a folder beside the repository.
    let mut srcs = Vec::new();
    sources(&ws, &mut srcs);
    assert!(srcs.len() > 50);
    for f in &srcs {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        // Spelt in pieces, so that this file does not contain the paths it looks for.
        for bad in [
            concat!("shared", "/data"),
            concat!("shared", "/models"),
            concat!("..", "/shared"),
        ] {
            assert!(!text.contains(bad), "{} names `{bad}`", f.display());
        }
    }

    // A named data folder that does not exist is a one-line error naming it, and nothing is
    // created; likewise through the environment.
    let out = elsewhere.join("run");
    let missing = elsewhere.join("no-such-data");
    let o = Command::new(env!("CARGO_BIN_EXE_bszo"))
        .args(["finetune", "--data-dir"])
        .arg(&missing)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("data_dir") && err.contains("no-such-data"),
        "{err}"
    );
    assert!(!out.exists());
    let o = Command::new(env!("CARGO_BIN_EXE_bszo"))
        .args(["finetune", "--out"])
        .arg(&out)
        .env("ZO_DATA_DIR", &missing)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("ZO_DATA_DIR") && err.contains("no-such-data"),
        "{err}"
    );
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&elsewhere);
}
