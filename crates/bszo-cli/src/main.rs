//! `bszo`: fine-tune language models with zeroth-order optimizers.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use bszo_cli::cli::{Cli, Command};
use bszo_cli::export::{ExportOptions, StepChoice, export};
use bszo_cli::finetune::{Options, Processes, finetune};
use bszo_cli::report::calibrated_note;
use bszo_cli::resources::parse_size;
use bszo_cli::zero_shot::zero_shot;
use zo_train::ParallelMode;

fn main() -> ExitCode {
    let parsed = bszo_cli::cli::command()
        .try_get_matches()
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let _ = e.print();
                return ExitCode::from(2);
            }
            // One line: clap's first line, without its usage block.
            let text = e.to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("bad arguments");
            eprintln!("{} (see --help)", first.trim_end());
            return ExitCode::from(2);
        }
    };
    let processes = match &cli.command {
        Command::Finetune(a) => match a.parallel {
            Some(mode) => match processes(mode, a.guard_every) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("error: {}", error_line(&e));
                    return ExitCode::FAILURE;
                }
            },
            None => {
                if let Some(n) = launched_processes().filter(|n| *n > 1) {
                    eprintln!(
                        "error: started as one of {n} processes (mpirun) without --parallel: each \
                         would run a fine-tuning of its own; add --parallel data or --parallel \
                         directions to share one run between them"
                    );
                    return ExitCode::FAILURE;
                }
                None
            }
        },
        _ => None,
    };
    match run(cli, processes.clone()) {
        Ok(code) => code,
        Err(e) => match processes.filter(|p| p.comm.size() > 1) {
            Some(p) => {
                eprintln!("error (process {}): {}", p.comm.rank(), error_line(&e));
                // The other processes may wait in a collective for this one: end the job.
                p.comm.abort(1);
                ExitCode::FAILURE
            }
            None => {
                eprintln!("error: {}", error_line(&e));
                ExitCode::FAILURE
            }
        },
    }
}

/// The size of the job a launcher started this process in (`mpirun` sets `OMPI_COMM_WORLD_SIZE`
/// for Open MPI, `PMI_SIZE` for MPICH's Hydra), if any.
fn launched_processes() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.trim().parse().ok())
}

/// The processes of an MPI job (`mpirun -np N bszo finetune --parallel MODE`).
#[cfg(feature = "mpi")]
fn processes(mode: ParallelMode, guard_every: u64) -> Result<Processes> {
    let comm = zo_train::comm::Mpi::init()?;
    Ok(Processes {
        comm: std::rc::Rc::new(comm),
        mode,
        guard_every,
    })
}

#[cfg(not(feature = "mpi"))]
fn processes(_mode: ParallelMode, _guard_every: u64) -> Result<Processes> {
    anyhow::bail!(
        "--parallel: this bszo was built without MPI; build it with `cargo build --release -p \
         bszo-cli --features mpi` (needs an MPI library and libclang: apt-get install \
         libopenmpi-dev openmpi-bin libclang-dev) and start it with `mpirun -np N \
         target/release/bszo finetune --parallel data|directions …`"
    )
}

/// An error and its causes on one line: a cause whose text its parent already shows (an OS error
/// that a library put in its own message, say) is not repeated, and a backtrace that an error
/// carries in its text (candle's, under `RUST_BACKTRACE=1`) is left out.
fn error_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = without_backtrace(&cause.to_string());
        if text.is_empty() || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

fn without_backtrace(text: &str) -> String {
    let mut kept = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("stack backtrace:")
            || t.starts_with("Stack backtrace:")
            || (t
                .split(':')
                .next()
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                && line.starts_with(' '))
        {
            break;
        }
        kept.push(line);
    }
    kept.join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn percent(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn run(cli: Cli, processes: Option<Processes>) -> Result<ExitCode> {
    let quiet = processes.as_ref().is_some_and(|p| p.comm.rank() != 0);
    match cli.command {
        Command::ZeroShot(a) => {
            let config = a.to_config()?;
            let r = zero_shot(&config, a.validation)?;
            println!(
                "{} ({}) on {}: {} test examples, max length {}{}",
                r.model,
                r.model_kind,
                r.task,
                r.test_size,
                r.max_length,
                if r.model_kind == bszo_cli::config::ModelKind::Masked {
                    format!(", NLI template {}", r.nli_template)
                } else {
                    String::new()
                }
            );
            if let Some(v) = &r.validation {
                println!(
                    "zero-shot validation accuracy: {}{}",
                    percent(v.score),
                    calibrated_note(v)
                );
            }
            println!(
                "zero-shot test accuracy:  {}{}",
                percent(r.test.score),
                calibrated_note(&r.test)
            );
            if let Some(path) = &a.json {
                std::fs::write(path, serde_json::to_vec_pretty(&r)?)
                    .map_err(|e| anyhow::anyhow!("--json: cannot write {}: {e}", path.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(a) => {
            let step: StepChoice = a.step.parse()?;
            let options = ExportOptions {
                overwrite: a.overwrite,
                accept_changed_inputs: a.accept_changed_inputs,
                merged: a.merged,
            };
            let at = export(&a.run, step, &a.out, options)?;
            let what = match (a.out.is_dir(), a.merged) {
                (true, _) => "adapters",
                (false, true) => "merged weights",
                (false, false) => "weights",
            };
            let place = if a.out.is_dir() {
                format!(
                    "{} (adapter_model.safetensors, adapter_config.json)",
                    a.out.display()
                )
            } else {
                a.out.display().to_string()
            };
            if at == 0 {
                println!("wrote the starting {what} (step 0) to {place}");
            } else {
                println!("wrote the {what} after step {at} to {place}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Finetune(args) => {
            let config = args.to_config()?;
            if args.print_config {
                config.resolve()?;
                print!("{}", config.to_toml());
                return Ok(ExitCode::SUCCESS);
            }
            let max_memory = args
                .max_memory
                .as_deref()
                .map(|m| parse_size(m).map_err(|e| anyhow::anyhow!("--max-memory: {e}")))
                .transpose()?;
            // Ctrl-C (SIGINT), SIGTERM and SIGHUP: stop after the current step with a checkpoint.
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            ctrlc::set_handler(move || {
                if flag.swap(true, Ordering::SeqCst) {
                    // A second signal: leave now (the last checkpoint is intact).
                    std::process::exit(130);
                }
            })?;
            let outcome = finetune(Options {
                config,
                out_dir: args.out.clone(),
                resume: args.resume,
                progress: !args.no_progress,
                stop,
                accept_changed_inputs: args.accept_changed_inputs,
                max_memory,
                processes,
            })?;
            if quiet {
                // Process 0 prints the results.
                return Ok(match outcome.report.test {
                    Some(_) => ExitCode::SUCCESS,
                    None => ExitCode::from(130),
                });
            }
            let r = &outcome.report;
            let dir = outcome.dir.display();
            if outcome.started_over {
                eprintln!(
                    "note: {dir} held no checkpoint to resume from; the run started from step 0"
                );
            }
            let trained = match &r.config.peft {
                zo_models::Peft::Full => format!("{} parameters", r.parameters),
                peft => format!(
                    "{} {} parameters beside {} frozen",
                    r.parameters,
                    peft.method(),
                    r.frozen_parameters
                ),
            };
            println!(
                "{} on {} with {} ({trained}, {} train / {} validation / {} test examples)",
                r.config.model.name,
                r.config.task.name,
                r.config.optimizer.name,
                r.sizes[0],
                r.sizes[1],
                r.sizes[2]
            );
            println!(
                "zero-shot test accuracy:  {}{}",
                percent(r.zero_shot.test.score),
                calibrated_note(&r.zero_shot.test)
            );
            match &r.test {
                Some(test) => {
                    let best = r
                        .best
                        .map(|b| {
                            format!(", best validation {} at step {}", percent(b.score), b.step)
                        })
                        .unwrap_or_default();
                    println!(
                        "fine-tuned test accuracy: {} ({:+.2} points; {} steps, {} training forwards{best}){}",
                        percent(test.score),
                        100.0 * (test.score - r.zero_shot.test.score),
                        r.steps,
                        r.forwards.train,
                        calibrated_note(test)
                    );
                    if r.best_is_start {
                        println!(
                            "no step beat the starting model on validation: the tested{} weights are the starting weights",
                            if r.config.output.export {
                                " and exported (best.safetensors)"
                            } else {
                                ""
                            }
                        );
                    }
                    println!(
                        "wall time {:.1} s, peak RSS {}; results in {dir} (report.json)",
                        r.wall_time_s,
                        r.peak_rss_bytes
                            .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
                            .unwrap_or_else(|| "unknown".into())
                    );
                    if let Some(p) = &r.processes {
                        let bytes: Vec<String> =
                            p.bytes_per_step.iter().map(|b| format!("{b:.0}")).collect();
                        println!(
                            "{} processes ({} parallel, train.shards = {}); bytes sent per step by each: {}; one all-gather {:.1} µs",
                            p.count,
                            p.mode,
                            p.shards,
                            bytes.join(", "),
                            p.allgather_latency_us
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    println!(
                        "stopped after step {}; a checkpoint is in {dir}: continue with `--resume --out {dir}`",
                        r.steps
                    );
                    Ok(ExitCode::from(130))
                }
            }
        }
    }
}
