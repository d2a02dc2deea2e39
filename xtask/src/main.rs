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
  finetune           the main job: fine-tune a model with a zeroth-order optimizer
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
        Some("finetune") => bail!(
            "`finetune` is not available yet: the training runner is not built; \
             see README.md for what exists today"
        ),
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
        "kalman/serde,zo-models/hub,bszo/lapack"
    } else {
        "kalman/serde,zo-models/hub"
    };
    clippy.extend(["--features", features]);
    test.extend(["--features", features]);
    clippy.extend(["--", "-D", "warnings"]);
    cargo(&clippy)?;
    cargo(&test)?;
    Ok(())
}
