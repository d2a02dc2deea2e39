//! `bszo-bench`: the benchmark suite (`run`) and its memory/time probe (`probe`, hidden).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use bszo_bench::plan::{CausalPlan, Plan, ProbeModel, Scenario};
use bszo_bench::probe::{PROBE_LINE, probe};
use bszo_bench::{BenchOptions, Section, suite};
use clap::{Args, Parser, Subcommand};

/// The benchmark suite of bszo: every optimizer at equal forward budgets on real weights, memory,
/// time per step, the k ablation, HiZOO's α, sampler throughput and black-box problems →
/// RESULTS.md with plots.
#[derive(Debug, Parser)]
#[command(name = "bszo-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the suite (reusing finished runs) and write RESULTS.md, results.json and the plots.
    Run(RunArgs),
    /// One memory/time measurement in this process (used by `run`, one fresh process each).
    #[command(hide = true)]
    Probe(ProbeArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Every section at a tiny budget (minutes): checks the harness, not the methods.
    #[arg(long)]
    quick: bool,
    /// Run only this section (repeatable): accuracy, causal, precision, probes, ablation, hizoo,
    /// sampler, blackbox, sparse, processes, peft. The other sections keep what results.json in --out holds; finished runs are
    /// reused, so a long suite can be completed over several invocations.
    #[arg(long, value_name = "NAME")]
    section: Vec<Section>,
    /// The causal-LM section's size: two-cores (about an hour and a half on two cores) or paper
    /// (MeZO's protocol and budget, for a bigger machine).
    #[arg(long, value_name = "SCALE", conflicts_with = "quick")]
    causal_scale: Option<String>,
    /// The peft section on the masked model only (its causal-model cells take about an hour and
    /// a half on two cores).
    #[arg(long)]
    peft_masked_only: bool,
    /// Where RESULTS.md, results.json and the plots go.
    #[arg(long, value_name = "DIR", default_value = "docs")]
    out: PathBuf,
    /// Where the runs' folders go (a run whose configuration matches is reused).
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    work: PathBuf,
    /// The data folder; it must exist (default: $ZO_DATA_DIR if set, else ./data, else the repository's data/).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// splade-tiny or bert-67m.
    #[arg(long)]
    model: ProbeModel,
    /// inference or an optimizer name.
    #[arg(long)]
    scenario: Scenario,
    /// The weights' precision: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    precision: zo_models::Precision,
    /// Row-sparse embedding probes (each step restricted to the table rows the batch reads).
    #[arg(long)]
    row_sparse: bool,
    /// Train adapters instead of every weight: `lora` or `prefix` (MeZO's default settings).
    #[arg(long)]
    peft: Option<String>,
    /// Timed repetitions.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// The data folder.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Probe(a) => {
            let p = probe(
                a.model,
                a.precision,
                a.scenario,
                a.row_sparse,
                a.peft.as_deref(),
                a.reps,
                a.data_dir,
            )?;
            println!("{PROBE_LINE}{}", serde_json::to_string(&p)?);
        }
        Command::Run(a) => {
            let (mut plan, mut command) = if a.quick {
                (Plan::quick(), "cargo xtask bench --quick".to_string())
            } else {
                (Plan::full(), "cargo xtask bench".to_string())
            };
            if let Some(scale) = &a.causal_scale {
                plan.causal = Some(CausalPlan::of_scale(scale)?);
                command.push_str(&format!(" --causal-scale {scale}"));
            }
            if a.peft_masked_only {
                plan.peft.causal = false;
                command.push_str(" --peft-masked-only");
            }
            let opts = BenchOptions {
                plan,
                sections: a.section,
                out: a.out,
                work: a.work,
                data_dir: a.data_dir,
                exe: std::env::current_exe()?,
                command,
            };
            let started = std::time::Instant::now();
            suite(&opts, &mut |msg| {
                eprintln!("[{:>6.0} s] {msg}", started.elapsed().as_secs_f64());
            })?;
            println!("wrote {}", opts.out.join("RESULTS.md").display());
        }
    }
    Ok(())
}
