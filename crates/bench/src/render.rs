//! `RESULTS.md` and the plots: the suite's [`Results`] as tables, verdicts and curves, with the
//! command, machine, date and commit that produced them.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::Result;
use zo_optim::Algorithm;
use zo_train::{LinePlot, Series};

use crate::plan::{MASKED_MODEL, Scenario};
use crate::stats::{holm, signed_rank};
use crate::{BenchOptions, Provenance, Results, Section, mean_std, median};

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or("unknown".into(), |kb| format!("{:.0} GiB", kb / 1048576.0));
    format!("{cores} cores ({cpu}, {}), {mem} memory", instruction_set())
}

/// The widest vector instruction set the CPU offers (`AVX-512`, `AVX2`, …).
fn instruction_set() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "AVX-512";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "AVX2";
        }
        "SSE2"
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH
    }
}

fn commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Who is measuring now: `command` on this machine, today, at the current commit, in `mode`.
pub fn provenance(command: &str, mode: &str) -> Provenance {
    Provenance {
        command: command.into(),
        machine: machine(),
        date: today(),
        commit: commit(),
        mode: mode.into(),
        note: None,
    }
}

/// The line saying who measured `section`, or that it was not measured yet (and how to).
fn measured(s: &mut String, r: &Results, section: Section, command: &str) -> bool {
    match r.measured.get(&section) {
        Some(p) => {
            let _ = writeln!(
                s,
                "*Measured by `{}` · machine: {} · date: {} · commit: `{}` · mode: {}*\n",
                p.command, p.machine, p.date, p.commit, p.mode
            );
            if let Some(note) = &p.note {
                let _ = writeln!(s, "Note: {note}\n");
            }
            true
        }
        None => {
            let _ = writeln!(
                s,
                "*Not measured yet: `{command} --section {section}` measures it.*\n"
            );
            false
        }
    }
}

/// The line from which `RESULTS.md` holds sections measured by other commands (each says its
/// own command); the suite keeps them when it rewrites the file.
pub const KEPT_MARKER: &str =
    "<!-- Sections below are not measured by cargo xtask bench, which keeps them. -->";

/// The kept sections of an existing `RESULTS.md` (from [`KEPT_MARKER`] on), after a blank line;
/// empty when there are none.
pub fn kept_sections(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    match text.find(KEPT_MARKER) {
        Some(at) => format!("\n{}", &text[at..]),
        None => String::new(),
    }
}

/// Validation accuracy against forward passes, one series per optimizer (mean over seeds at the
/// picked learning rate), one figure per task.
pub fn plot_curves(opts: &BenchOptions, r: &Results) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for (model, tasks) in &r.accuracy {
        for (task, cells) in tasks {
            let mut plot = LinePlot::new(
                format!("{task} with {model}: validation accuracy at equal forward budgets"),
                "training forward passes",
                "validation accuracy",
            );
            for (opt, cell) in cells {
                let n = cell.picked.iter().map(|p| p.curve.len()).min().unwrap_or(0);
                let points = cell.picked.first().map_or(Vec::new(), |first| {
                    (0..n)
                        .filter_map(|i| {
                            let (x, _) = first.curve.get(i)?;
                            let ys: Vec<f64> = cell
                                .picked
                                .iter()
                                .filter_map(|p| Some(p.curve.get(i)?.1))
                                .collect();
                            Some((*x, mean_std(&ys).0))
                        })
                        .collect()
                });
                plot = plot.with_series(Series::new(opt.clone(), points));
            }
            let stem = format!("bench-{model}-{task}");
            plot.write(&opts.out.join(&stem))?;
            names.push(stem);
        }
    }
    Ok(names)
}

/// Win, tie or loss of BSZO against a baseline: a difference of means larger than the larger of
/// the two standard deviations counts.
fn verdict(bszo: (f64, f64), other: (f64, f64)) -> &'static str {
    let margin = bszo.1.max(other.1);
    let d = bszo.0 - other.0;
    if d > margin {
        "win"
    } else if d < -margin {
        "loss"
    } else {
        "tie"
    }
}

/// `RESULTS.md`'s sections measured by the suite, with `plots` (file stems in the same folder).
///
/// # Errors
/// When the plan has no seed or a cell of the results holds no run.
pub fn render(
    opts: &BenchOptions,
    r: &Results,
    plots: &[String],
    blackbox_plots: &[String],
) -> Result<String> {
    let mut s = String::new();
    let _ = writeln!(s, "# Results\n");
    let _ = writeln!(
        s,
        "Every figure below was measured by `{}` and is rewritten by it; the raw numbers are in \
         `results.json`, the runs' folders under the work folder. Ratios are measured side by side in one run. \
         Each section says which command, machine, commit and mode measured it: `--section NAME` \
         reruns one section and keeps the others.\n",
        opts.command
    );
    section_accuracy(&mut s, opts, r, plots)?;
    section_memory(&mut s, opts, r)?;
    section_time(&mut s, opts, r)?;
    section_ablation(&mut s, opts, r)?;
    section_hizoo(&mut s, opts, r)?;
    section_sampler(&mut s, opts, r)?;
    render_blackbox(&mut s, opts, r, blackbox_plots);
    section_precision(&mut s, opts, r)?;
    section_sparse(&mut s, opts, r)?;
    section_processes(&mut s, opts, r);
    section_peft(&mut s, opts, r)?;
    Ok(s)
}

/// Section 11 of `RESULTS.md`: LoRA and prefix tuning against full fine-tuning.
fn section_peft(s: &mut String, opts: &BenchOptions, r: &Results) -> Result<()> {
    let _ = writeln!(
        s,
        "## 11. Parameter-efficient fine-tuning: LoRA and prefix tuning\n"
    );
    if !measured(s, r, Section::Peft, &opts.command) {
        return Ok(());
    }
    let plan = &opts.plan;
    let settings: Vec<String> = plan
        .peft
        .settings
        .iter()
        .map(|x| format!("{} at ε = {:e}", x.method, x.eps))
        .collect();
    let _ = writeln!(
        s,
        "`bszo finetune --peft lora|prefix`: MeZO and BSZO train LoRA adapters (rank 8, α 16, on the \
         query and value projections; `B` starts at zero) or attention prefixes (5 key and value \
         vectors per layer, initialised from the activations of random tokens) while the \
         checkpoint's weights stay frozen, against the same optimizers training every weight (the \
         `full` rows: their cells of section 1 and, for the causal model, of the causal table). \
         Same protocol, forward budget and seeds as those cells; each adapter cell picks its \
         learning rate from its own grid on the first seed's validation accuracy ({}; a rate \
         marked * is at the edge of its grid). Test accuracy is mean ± standard deviation over \
         the seeds at the picked rate.\n",
        settings.join(", ")
    );
    let full_probe_params = r
        .peft_probes
        .iter()
        .find(|p| p.peft.is_none())
        .map(|p| p.params);
    for (model, methods) in &r.peft {
        let masked = model == MASKED_MODEL;
        let (task_note, seeds) = if masked {
            ("SST-2 (section 1's protocol and budget)", plan.seeds.len())
        } else {
            (
                "SST-2 (the causal section's protocol and budget)",
                plan.peft.causal_seeds.len(),
            )
        };
        let _ = writeln!(s, "### {model} — {task_note}\n");
        let _ = writeln!(
            s,
            "| optimizer | trained | trainable parameters | test accuracy % | Δ to full (points) | picked lr | seeds | peak RSS MiB (runs) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        let rss = |runs: &[&crate::run::RunResult]| -> String {
            let v: Vec<f64> = runs
                .iter()
                .filter_map(|x| x.peak_rss_bytes)
                .map(|b| b as f64 / (1u64 << 20) as f64)
                .collect();
            if v.is_empty() {
                "not recorded".into()
            } else {
                format!("{:.0}", median(v))
            }
        };
        let lr = |cell: &crate::run::Cell| -> Result<String> {
            let picked = cell.best()?.lr;
            let lo = cell.grid.iter().map(|g| g.lr).fold(f64::INFINITY, f64::min);
            let hi = cell
                .grid
                .iter()
                .map(|g| g.lr)
                .fold(f64::NEG_INFINITY, f64::max);
            let edge = cell.grid.len() > 1 && (picked == lo || picked == hi);
            Ok(format!("{picked:e}{}", if edge { "*" } else { "" }))
        };
        for algorithm in crate::plan::PEFT_OPTIMIZERS {
            let full = match methods
                .get(crate::FULL)
                .and_then(|m| m.get(algorithm.name()))
            {
                Some(cell) => cell,
                None => match r.cell(model, zo_data::Task::Sst2, algorithm) {
                    Ok(cell) => cell,
                    Err(_) => continue,
                },
            };
            let full_picked: Vec<&crate::run::RunResult> = full.picked.iter().take(seeds).collect();
            let f = mean_std(&full_picked.iter().map(|x| x.test).collect::<Vec<_>>());
            // Runs older than the parameter count read 0.
            let full_params = match full_picked.iter().map(|x| x.parameters).find(|&n| n > 0) {
                Some(n) => n.to_string(),
                _ if masked => full_probe_params.map_or("—".into(), |n| n.to_string()),
                _ => "—".into(),
            };
            let _ = writeln!(
                s,
                "| {algorithm} | full | {full_params} | {} ± {} | — | {} | {} | {} |",
                pct(f.0),
                pct(f.1),
                lr(full)?,
                full_picked.len(),
                rss(&full_picked)
            );
            for (method, cells) in methods.iter().filter(|(m, _)| *m != crate::FULL) {
                let Some(cell) = cells.get(algorithm.name()) else {
                    continue;
                };
                let picked: Vec<&crate::run::RunResult> = cell.picked.iter().collect();
                let m = mean_std(&cell.tests());
                let _ = writeln!(
                    s,
                    "| {algorithm} | {method} | {} | {} ± {} | {:+.2} | {} | {} | {} |",
                    picked.first().map_or(0, |x| x.parameters),
                    pct(m.0),
                    pct(m.1),
                    100.0 * (m.0 - f.0),
                    lr(cell)?,
                    picked.len(),
                    rss(&picked)
                );
            }
        }
        let _ = writeln!(s);
        if !masked {
            let section_seeds = r.causal.as_ref().map_or(&[][..], |c| c.seeds.as_slice());
            let own: Vec<String> = plan
                .peft
                .causal_seeds
                .iter()
                .filter(|x| !section_seeds.contains(x))
                .map(u64::to_string)
                .collect();
            let own = if own.is_empty() {
                String::new()
            } else {
                format!(
                    "; seed {} of those rows was run by this section at that rate",
                    own.join(", ")
                )
            };
            let _ = writeln!(
                s,
                "The full-parameter rows are the causal section's cells (its picked rate){own}. \
                 Step times of this model are not probed (the probes below load \
                 {MASKED_MODEL}). Peak RSS is the whole run's, test evaluation included: a \
                 full-parameter run whose best step is not its last loads the base weights \
                 again to rebuild its best ones (twice the weights for a moment), and so did the \
                 adapter runs made before commit 39f37e3 (about 1.2 GB instead of 0.66 GB for \
                 SmolLM2-135M); an adapter run now rebuilds them from its initial adapters.\n"
            );
        }
    }
    if !r.peft_probes.is_empty() {
        let _ = writeln!(
            s,
            "Step time and memory of one step on {MASKED_MODEL} (as the probes of section 3: 16 \
             SST-2 prompts, median of {} steps in a fresh process; peak RSS in a second fresh \
             process). With adapters the update sweep touches only the adapters, so a step is its \
             forwards; the frozen weights are read in place (f32) and never materialised.\n",
            plan.reps
        );
        let _ = writeln!(
            s,
            "| optimizer | trained | trainable parameters | step ms | forwards ms | sweeps ms | sweeps share of the step | peak RSS MiB |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for p in &r.peft_probes {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {:.1} | {:.2} | {:.1}% | {:.1} |",
                p.scenario,
                p.peft.as_deref().unwrap_or("full"),
                p.params,
                p.step_ms,
                p.step_forward_ms,
                p.sweep_ms,
                100.0 * p.sweep_ms / p.step_ms,
                p.peak_kb as f64 / 1024.0
            );
        }
        let _ = writeln!(s);
    }
    Ok(())
}

/// Section 10 of `RESULTS.md`: several processes as one run.
fn section_processes(s: &mut String, opts: &BenchOptions, r: &Results) {
    let _ = writeln!(
        s,
        "## 10. Several processes as one run (MPI)
"
    );
    if !measured(s, r, Section::Processes, &opts.command) {
        return;
    }
    let Some(p) = &r.processes else {
        return;
    };
    if let Some(why) = &p.skipped {
        let _ = writeln!(
            s,
            "Not measured on this machine: {why}.
"
        );
        return;
    }
    let _ = writeln!(
        s,
        "`mpirun -np 2 bszo finetune --parallel data|directions` against one process, on the \
         default task (SPLADE-tiny, SST-2, batch {}), one thread per process. **Data**: each \
         minibatch is cut into `train.shards` pieces, process `p mod N` evaluates piece `p` at \
         every probe point, and the per-example loss terms are gathered and summed in example \
         order; the one-process run with the same `train.shards` is the reference. \
         **Directions**: every process evaluates the whole minibatch, and the step's independent \
         probe points (θ and BSZO's k axes, MeZO's ±εz) are split round-robin; the plain \
         one-process run is the reference.\n",
        p.batch
    );
    let _ = writeln!(
        s,
        "| optimizer | mode | train.shards | steps | seed log identical | best weights identical | test % (1 / 2 processes) | bytes sent per step (process 0, 1) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for e in &p.equality {
        let yes = |b: bool| if b { "yes" } else { "**no**" };
        let bytes: Vec<String> = e.bytes_per_step.iter().map(|b| format!("{b:.0}")).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} ({} bytes) | {} | {} / {} | {} |",
            e.optimizer,
            e.mode,
            e.shards,
            e.steps,
            yes(e.seed_log_identical),
            e.seed_log_bytes,
            yes(e.weights_identical),
            pct(e.test.0),
            pct(e.test.1),
            bytes.join(", ")
        );
    }
    let f = p.forwards_per_step;
    let _ = writeln!(
        s,
        "\n**Traffic.** Each all-gather carries a process's values plus one 8-byte length word. \
         Data: per forward, a process sends `8 · (2 + examples in its pieces) + 8` bytes \
         (a count and a term count per piece, one f64 loss term per example); per step \
         `forwards · that` — for BSZO (k = 2: {f} forwards) with 2 pieces of 8 examples, \
         3 · (8 · 10 + 8) = 264 bytes, as measured. Directions: per step, `8 · (points it \
         evaluated) + 8` — BSZO's 3 points split 2 / 1 give 24 and 16 bytes. The guard adds \
         24 bytes every `--guard-every` steps; evaluations send `8 · (1 + rows)` per chunk. \
         Weights and directions never travel: every process regenerates the directions from \
         the seed.\n"
    );
    let latency = crate::median(p.latency_us.clone());
    let _ = writeln!(
        s,
        "**Latency.** One all-gather of one f64 between the two processes: {latency:.2} µs \
         (median over the runs above of the mean of 1000; shared memory on one machine).\n"
    );
    let _ = writeln!(
        s,
        "**Speed on this machine** (BSZO, validation only at the end; ms per step = difference \
         of the wall times of a {}-step and a {}-step run over 200 steps, so loading and \
         evaluations cancel):\n",
        p.speed.first().map_or(0, |x| x.steps.0),
        p.speed.first().map_or(0, |x| x.steps.1)
    );
    let _ = writeln!(
        s,
        "| processes × threads | mode | train.shards | ms per step | steps per second | vs 1 × 1 with the same shards |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    let base = |shards: usize| {
        p.speed
            .iter()
            .find(|x| x.processes == 1 && x.threads == 1 && x.shards == shards)
            .map(|x| x.step_ms())
    };
    for x in &p.speed {
        let ms = x.step_ms();
        let ratio = base(x.shards).map_or("—".to_string(), |b| format!("{:.2}×", b / ms));
        let _ = writeln!(
            s,
            "| {} × {} | {} | {} | {:.1} | {:.1} | {} |",
            x.processes,
            x.threads,
            x.mode,
            x.shards,
            ms,
            1e3 / ms,
            ratio
        );
    }
    // The model on paper, from those measurements.
    let find = |np: usize, mode: &str| {
        p.speed
            .iter()
            .find(|x| x.processes == np && x.threads == 1 && x.mode == mode)
            .map(crate::processes::SpeedRow::step_ms)
    };
    let (Some(t1), Some(t2), Some(t1d), Some(t2d)) =
        (base(2), find(2, "data"), base(1), find(2, "directions"))
    else {
        return;
    };
    let lat = latency * 1e-3; // ms
    let b = p.batch as f64;
    let fw = f as f64;
    // Data: T(n) = a + e·⌈B/n⌉ + F·λ·⌈log₂ n⌉; directions: T(n) = a' + c·⌈F/n⌉ + λ·⌈log₂ n⌉.
    let e = ((t1 - t2 + fw * lat) / (b / 2.0)).max(0.0);
    let a = (t1 - e * b).max(0.0);
    let half = (fw / 2.0).ceil();
    let c = ((t1d - t2d + lat) / (fw - half)).max(0.0);
    let ad = (t1d - c * fw).max(0.0);
    let _ = writeln!(
        s,
        "\n**Scaling on paper.** From the rows above: data-parallel `T(n) = a + e·⌈B/n⌉ + \
         F·λ·⌈log₂ n⌉` with a per-step part that does not shrink (the update sweep, each \
         forward's perturbed weights) a = {a:.1} ms, per-example forward time e = {e:.2} ms, \
         B = {b:.0}, F = {f} forwards and λ = {latency:.2} µs per all-gather (a tree of \
         ⌈log₂ n⌉ hops); direction-parallel `T(n) = a' + c·⌈F/n⌉ + λ·⌈log₂ n⌉` with a' = \
         {ad:.1} ms and c = {c:.1} ms per whole-batch forward. Other models: a, e, a', c scaled \
         by the parameter count (SmolLM2-135M: 134.5M, a 7B model: 7.0B; SPLADE-tiny: {:.1}M), \
         the same λ. Efficiency = T(1) / (n · T(n)).\n",
        p.parameters as f64 / 1e6
    );
    let models = [
        ("SPLADE-tiny", p.parameters as f64),
        ("SmolLM2-135M", 134.5e6),
        ("7B", 7.0e9),
    ];
    let _ = write!(s, "| n |");
    for (m, _) in &models {
        let _ = write!(s, " {m} data: ms (eff.) | {m} directions: ms (eff.) |");
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|---|{}", "---|---|".repeat(models.len()));
    for n in [1usize, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024] {
        let _ = write!(s, "| {n} |");
        for (_, params) in &models {
            let k = params / p.parameters as f64;
            let data = |n: usize| {
                k * a + k * e * (b / n as f64).ceil() + fw * lat * (n as f64).log2().ceil()
            };
            let dirs =
                |n: usize| k * ad + k * c * (fw / n as f64).ceil() + lat * (n as f64).log2().ceil();
            let td = data(n);
            let tr = dirs(n);
            let _ = write!(
                s,
                " {td:.1} ({:.0}%) | {tr:.1} ({:.0}%) |",
                100.0 * data(1) / (n as f64 * td),
                100.0 * dirs(1) / (n as f64 * tr)
            );
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "\nWhere it stops: data-parallelism gains nothing beyond n = B = {b:.0} processes (a \
         piece holds at least one example; the rest idle), and well before that the part that \
         does not shrink (a) caps the speed-up at (a + e·B)/a; direction-parallelism stops at \
         n = F = {f} for BSZO with k = 2 (more for larger k or n-SPSA's 2n points), with the \
         same cap from a'. What directions add there is a second axis: splitting the probes as \
         well would multiply the useful processes by F (up to B·F = {:.0} here), a combination \
         that `bszo` does not implement (a run uses one mode). SPLADE-tiny is the least favourable \
         model for this: 88% of its parameters are the embedding table, which every process's \
         update sweep regenerates directions for but a forward only gathers rows of, so its \
         non-shrinking part is a large share of the step; a model whose forward weighs more per \
         parameter (SmolLM2, a 7B model) keeps a smaller share, so scaling a and e alike, as \
         here, is pessimistic for them. Latency is not what stops it on \
         one machine (F·λ·⌈log₂ n⌉ stays far below e for every model); across machines λ is the \
         network's, typically 10–100× the shared-memory figure, and the tiny model becomes \
         latency-bound first.\n",
        b * fw
    );
}

/// Section 9 of `RESULTS.md`: row-sparse embedding probes against the paper's dense ones.
fn section_sparse(s: &mut String, opts: &BenchOptions, r: &Results) -> Result<()> {
    let _ = writeln!(s, "## 9. Row-sparse embedding probes (off by default)\n");
    if !measured(s, r, Section::Sparse, &opts.command) {
        return Ok(());
    }
    let plan = &opts.plan;
    let _ = writeln!(
        s,
        "`bszo finetune --row-sparse` (`train.row_sparse = true`): each step's directions are zero \
         outside the rows of the embedding tables (word, position, token type) and of the label-word \
         head that its minibatch reads, so every other row — whose gradient on that minibatch is \
         zero — is neither perturbed nor updated, and the estimate stays unbiased. MeZO and BSZO \
         on SST-2 with {MASKED_MODEL}, at the learning rate, protocol, budget and seeds ({:?}) of \
         their cells in section 1 (the dense rows below), so the comparison is at equal forward \
         budgets. The step time of each is in section 3 (rows marked row-sparse).\n",
        plan.seeds
    );
    let _ = writeln!(
        s,
        "| optimizer | probes | test accuracy % | Δ to dense (points) | best validation % | steps run (mean) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    let mut lines = Vec::new();
    for (opt, runs) in &r.sparse {
        let algorithm: Algorithm = opt.parse()?;
        let dense = r.cell(MASKED_MODEL, zo_data::Task::Sst2, algorithm)?;
        let d = mean_std(&dense.tests());
        let steps = |runs: &[crate::run::RunResult]| {
            mean_std(&runs.iter().map(|x| x.steps as f64).collect::<Vec<_>>()).0
        };
        let _ = writeln!(
            s,
            "| {opt} | dense | {} ± {} | — | {} | {:.0} |",
            pct(d.0),
            pct(d.1),
            pct(mean_std(&dense.validations()).0),
            steps(&dense.picked)
        );
        let tests: Vec<f64> = runs.iter().map(|x| x.test).collect();
        let vals: Vec<f64> = runs.iter().map(|x| x.best_validation).collect();
        let m = mean_std(&tests);
        let delta = m.0 - d.0;
        let _ = writeln!(
            s,
            "| {opt} | row-sparse | {} ± {} | {:+.2} | {} | {:.0} |",
            pct(m.0),
            pct(m.1),
            100.0 * delta,
            pct(mean_std(&vals).0),
            steps(runs)
        );
        let spread = m.1.max(d.1);
        lines.push(format!(
            "- {opt}: {:+.2} points, {} the larger standard deviation ({:.2}).",
            100.0 * delta,
            if delta.abs() > spread {
                "beyond"
            } else {
                "within"
            },
            100.0 * spread
        ));
    }
    let _ = writeln!(s);
    for l in lines {
        let _ = writeln!(s, "{l}");
    }
    let _ = writeln!(s);
    Ok(())
}

/// Section 1 of `RESULTS.md` (accuracy), when measured.
fn section_accuracy(
    s: &mut String,
    opts: &BenchOptions,
    r: &Results,
    plots: &[String],
) -> Result<()> {
    let plan = &opts.plan;
    let (first_seed, other_seeds) = plan.split_seeds()?;
    let _ = writeln!(s, "## 1. Accuracy at equal forward-pass budgets\n");
    let _ = writeln!(s, "Masked LMs (`--section accuracy`):\n");
    let accuracy = measured(s, r, Section::Accuracy, &opts.command);
    if r.measured.contains_key(&Section::Causal) {
        let _ = writeln!(s, "Causal LM (`--section causal`):\n");
        measured(s, r, Section::Causal, &opts.command);
    }
    if r.accuracy.is_empty() && !accuracy {
        return Ok(());
    }
    let _ = writeln!(
        s,
        "SPLADE-tiny (4.4M-parameter BERT masked LM, the prompts and label words of crates/zo-data/README.md), sampled \
         protocol: {} training / {} validation examples drawn with the seed, the task's original test set{}; \
         training forward passes per run as given per task below (steps = budget / forwards per step; \
         the same budget for every optimizer of a task), ε = 1e-4, batch 16, validation {} times per run, test accuracy on the best-validation weights (rebuilt from the seed \
         log). The learning rate is picked on seed {}'s best validation accuracy from the grid shown; the \
         other seeds ({:?}) rerun the picked rate with their own data sample and directions. Mean ± \
         standard deviation over the {} seeds.\n",
        plan.sizes.0,
        plan.sizes.1,
        plan.sizes
            .2
            .map(|n| format!(" (first {n} examples)"))
            .unwrap_or_default(),
        plan.evaluations,
        first_seed,
        other_seeds,
        plan.seeds.len()
    );
    if let Some(c) = &r.causal {
        let grids: Vec<String> = c
            .grids
            .iter()
            .map(|(a, g)| {
                let g: Vec<String> = g.iter().map(|x| format!("{x:e}")).collect();
                format!("{a} {{{}}}", g.join(", "))
            })
            .collect();
        let _ = writeln!(
            s,
            "Causal LM ({} scale): {} (SmolLM2-135M-Instruct, dequantised from its Q4_1 GGUF to f32) \
             on SST-2 with MeZO's prompt, scoring the candidates \" terrible\" / \" great\" after \
             \"<S> It was\", trained on the cross-entropy over the two candidates' scores; sampled \
             protocol {} training / {} validation examples drawn with the seed, test on {} of the \
             test set; batch {} and prompts of at most {} tokens (reduced from MeZO's 16 and \
             full length to fit two cores), ε = {:e} for every optimizer, {} training forwards \
             per run, validation {} times per run. Learning rates picked on seed {}'s best \
             validation accuracy from {}; seeds {:?} in all. Calibrated: the same models' test \
             accuracy with surface-form-competition calibration (MeZO's `--sfc`: each \
             candidate's log-likelihood minus that after the prompt without the sentence), \
             reported beside the plain one; training does not use it. On a bigger machine, \
             `cargo xtask bench --section causal --causal-scale paper` runs MeZO's protocol and \
             budget (1000 / 500 examples, the whole test set, batch 16, 40 000 training \
             forwards, three learning rates and three seeds per optimizer).\n",
            c.scale,
            c.model,
            c.sizes.0,
            c.sizes.1,
            c.test_size
                .map_or("all".to_string(), |n| format!("the first {n} sentences")),
            c.batch_size,
            c.max_length,
            c.eps,
            c.budget,
            c.evaluations,
            c.seeds.first().copied().unwrap_or(0),
            grids.join("; "),
            c.seeds,
        );
    }
    let mut verdicts: Vec<String> = Vec::new();
    for (model, tasks) in &r.accuracy {
        for (task, cells) in tasks {
            let zero = cells
                .values()
                .next()
                .and_then(|c| c.picked.first())
                .map_or(f64::NAN, |p| p.zero_shot);
            let budget = cells
                .values()
                .next()
                .and_then(|c| c.picked.first())
                .map_or(0, |p| p.steps * p.per_step as u64);
            let _ = writeln!(
                s,
                "### {task} — {model} ({budget} training forwards per run)\n"
            );
            let zero_cal = cells
                .values()
                .next()
                .and_then(|c| c.picked.first())
                .and_then(|p| p.calibrated_zero_shot);
            let _ = writeln!(
                s,
                "| optimizer | forwards/step | steps | lr grid | picked lr | test accuracy % | calibrated test % | best validation % | seconds/run (wall, indicative) |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
            let _ = writeln!(
                s,
                "| zero-shot | — | 0 | — | — | {} | {} | — | — |",
                pct(zero),
                zero_cal.map_or("—".to_string(), pct)
            );
            for (opt, cell) in cells {
                let (m, sd) = mean_std(&cell.tests());
                let (vm, _) = mean_std(&cell.validations());
                let p0 = cell.best()?;
                let grid: Vec<String> = cell.grid.iter().map(|g| format!("{:e}", g.lr)).collect();
                let secs = median(cell.picked.iter().map(|p| p.wall_time_s).collect());
                let calibrated = match cell.calibrated_tests() {
                    Some(c) => {
                        let (cm, csd) = mean_std(&c);
                        format!("{} ± {}", pct(cm), pct(csd))
                    }
                    None => "—".to_string(),
                };
                let _ = writeln!(
                    s,
                    "| {opt} | {} | {} | {} | {:e} | {} ± {} | {calibrated} | {} | {:.0} |",
                    p0.per_step,
                    p0.steps,
                    grid.join(", "),
                    p0.lr,
                    pct(m),
                    pct(sd),
                    pct(vm),
                    secs
                );
            }
            let _ = writeln!(s);
            let bszo = Algorithm::Bszo.name();
            if let Some(b) = cells.get(bszo) {
                let bs = mean_std(&b.tests());
                let mut parts = Vec::new();
                for (opt, cell) in cells {
                    if opt == bszo {
                        continue;
                    }
                    let os = mean_std(&cell.tests());
                    parts.push(format!(
                        "{} vs {opt} ({:+.2} points)",
                        verdict(bs, os),
                        100.0 * (bs.0 - os.0)
                    ));
                }
                verdicts.push(format!("- {task} ({model}): BSZO {}", parts.join(", ")));
                if let Some(bc) = b.calibrated_tests() {
                    let bs = mean_std(&bc);
                    let parts: Vec<String> = cells
                        .iter()
                        .filter(|(opt, _)| opt.as_str() != bszo)
                        .filter_map(|(opt, cell)| {
                            let os = mean_std(&cell.calibrated_tests()?);
                            Some(format!(
                                "{} vs {opt} ({:+.2} points)",
                                verdict(bs, os),
                                100.0 * (bs.0 - os.0)
                            ))
                        })
                        .collect();
                    verdicts.push(format!(
                        "- {task} ({model}), calibrated: BSZO {}",
                        parts.join(", ")
                    ));
                }
            }
        }
    }
    let _ = writeln!(
        s,
        "**Where BSZO wins, ties or loses** (a difference of means larger than the larger standard \
         deviation counts as a win or a loss, anything smaller as a tie):\n"
    );
    for v in &verdicts {
        let _ = writeln!(s, "{v}");
    }
    let _ = writeln!(s);
    for p in plots {
        let _ = writeln!(s, "![{p}]({p}.svg)\n");
    }

    Ok(())
}

/// Section 2 of `RESULTS.md` (memory), when measured.
fn section_memory(s: &mut String, opts: &BenchOptions, r: &Results) -> Result<()> {
    let plan = &opts.plan;
    let _ = writeln!(s, "## 2. Memory\n");
    if !measured(s, r, Section::Probes, &opts.command) {
        return Ok(());
    }
    let _ = writeln!(
        s,
        "Peak resident set size of a fresh process (`bszo-bench probe`, `MALLOC_MMAP_THRESHOLD_=65536`) \
         after loading the model, counted from the reset of the kernel's high-water mark: inference runs 12 \
         forwards of a 16-sentence SST-2 batch, each optimizer runs steps worth 12 forwards on the same batch \
         (its state allocated after the reset). `bert-67m` is a BERT with hidden 768, 6 layers and \
         SPLADE-tiny's vocabulary, random weights (so that weights dominate the binary's own footprint); \
         `bert-335m` has BERT-large's shape (hidden 1024, 24 layers), random weights, and is probed \
         for memory only (one timed repetition, left out of section 3). \
         Paper (OPT-13B on an H200): BSZO 1.00–1.08× MeZO, HiZOO 1.73–1.96×, MeZO-Adam 2.16–2.74×.\n"
    );
    let _ = writeln!(
        s,
        "Weights in bf16 or f16 are widened to f32 as each layer reads them (one scratch buffer the \
         size of the largest dense matrix, shared by the layers); the last column compares with f32 \
         inference (target for a bf16 ZO step: ≤ 0.55× f32 inference and ≤ 1.03× bf16 inference).\n"
    );
    let _ = writeln!(
        s,
        "| model | weights | scenario | parameters | peak RSS (MiB) | ratio to inference | ratio to MeZO | ratio to f32 inference |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    let mut verdicts = Vec::new();
    for &model in plan.probe_models.iter().chain(&plan.memory_models) {
        let f32_inf = r
            .probe(model, Scenario::Inference)
            .map_or(f64::NAN, |p| p.peak_kb as f64);
        for p in r
            .probes
            .iter()
            .filter(|p| p.model == model && !p.row_sparse)
        {
            let get = |sc: Scenario| r.probe_in(model, p.precision, sc);
            let inf = get(Scenario::Inference).map_or(f64::NAN, |p| p.peak_kb as f64);
            let mezo =
                get(Scenario::Optimizer(Algorithm::Mezo)).map_or(f64::NAN, |p| p.peak_kb as f64);
            let _ = writeln!(
                s,
                "| {model} | {} | {} | {} | {:.1} | {:.3} | {:.3} | {:.3} |",
                crate::probe::precision_name(p.precision),
                p.scenario,
                p.params,
                p.peak_kb as f64 / 1024.0,
                p.peak_kb as f64 / inf,
                p.peak_kb as f64 / mezo,
                p.peak_kb as f64 / f32_inf
            );
        }
        // The bf16 targets: a step ≤ 0.55× f32 inference and ≤ 1.03× bf16 inference.
        let bf16 = zo_models::Precision::BF16;
        if let (Some(fi), Some(bi)) = (
            r.probe(model, Scenario::Inference),
            r.probe_in(model, bf16, Scenario::Inference),
        ) {
            // What is not f32 weights: the binary, tokenizer, data, activations (computed in
            // f32 whatever the storage) and allocator slack.
            let fixed_mib = fi.peak_kb as f64 / 1024.0 - fi.params as f64 * 4.0 / 1048576.0;
            for a in [Algorithm::Mezo, Algorithm::Bszo] {
                if let Some(p) = r.probe_in(model, bf16, Scenario::Optimizer(a)) {
                    let (to_f32, to_bf16) = (
                        p.peak_kb as f64 / fi.peak_kb as f64,
                        p.peak_kb as f64 / bi.peak_kb as f64,
                    );
                    verdicts.push(format!(
                        "- {model}, {a} with bf16 weights: {to_f32:.3}× f32 inference (target ≤ 0.55: \
                         {}), {to_bf16:.3}× bf16 inference (target ≤ 1.03: {}); f32 inference holds \
                         {fixed_mib:.0} MiB besides its weights.",
                        if to_f32 <= 0.55 { "met" } else { "not met" },
                        if to_bf16 <= 1.03 { "met" } else { "not met" },
                    ));
                }
            }
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "With weights W (f32 bytes) and a footprint F that does not shrink with the storage, a bf16 \
         step over f32 inference is about (W/2 + F + scratch) / (W + F): it tends to 0.5 only as W \
         outgrows F, so the 0.55 target needs W ≥ 9F + 20·scratch.\n"
    );
    for v in verdicts {
        let _ = writeln!(s, "{v}");
    }
    let _ = writeln!(s);

    Ok(())
}

/// Section 3 of `RESULTS.md` (time), when measured.
fn section_time(s: &mut String, opts: &BenchOptions, r: &Results) -> Result<()> {
    let plan = &opts.plan;
    let _ = writeln!(s, "## 3. Time per step\n");
    if !measured(s, r, Section::Probes, &opts.command) {
        return Ok(());
    }
    let _ = writeln!(
        s,
        "Median over {} steps of each optimizer on the same batch (same probes as above, timed in a \
         second fresh process under the allocator's defaults: the small mmap threshold of the memory \
         probe makes every large allocation fault its pages in afresh and more than doubled \
         SPLADE-tiny's forward): the step's wall time split into its forward passes (each probe's weights materialised through the \
         view as the layers read them included), its sweeps over the stored parameters (the update) \
         and the rest. \"step / forwards\" is step time / time of its forwards; \"step / inference\" \
         is step time / (forwards per step × one unperturbed inference forward of the same weights), \
         the whole cost of zeroth-order training over inference (targets in f32: ≤ 1.05 for BSZO and \
         MeZO on bert-67m, ≤ 1.10 for BSZO on SPLADE-tiny). \"Rest\" is what the two timers leave \
         (Kalman fusion, bookkeeping); timer noise can make it slightly negative.\n",
        plan.reps
    );
    let _ = writeln!(
        s,
        "| model | weights | optimizer | forwards/step | sweeps/step | step ms | forwards ms | sweeps ms | rest ms | step / forwards | step / inference |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for p in r
        .probes
        .iter()
        .filter(|p| p.scenario != Scenario::Inference && !plan.memory_models.contains(&p.model))
    {
        let rest = p.step_ms - p.step_forward_ms - p.sweep_ms;
        let inference = r
            .probe_in(p.model, p.precision, Scenario::Inference)
            .map_or(f64::NAN, |i| i.forward_ms * p.forwards_per_step as f64);
        let _ = writeln!(
            s,
            "| {} | {} | {}{} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.3} | {:.3} |",
            p.model,
            crate::probe::precision_name(p.precision),
            p.scenario,
            if p.row_sparse { " (row-sparse)" } else { "" },
            p.forwards_per_step,
            p.sweeps_per_step,
            p.step_ms,
            p.step_forward_ms,
            p.sweep_ms,
            rest,
            p.step_ms / p.step_forward_ms,
            p.step_ms / inference
        );
    }
    let _ = writeln!(s);

    Ok(())
}

/// Section 4 of `RESULTS.md` (ablation), when measured.
fn section_ablation(s: &mut String, opts: &BenchOptions, r: &Results) -> Result<()> {
    let plan = &opts.plan;
    let _ = writeln!(s, "## 4. BSZO's subspace dimension k (m = k + 1)\n");
    if !measured(s, r, Section::Ablation, &opts.command) {
        return Ok(());
    }
    let _ = writeln!(
        s,
        "SST-2, SPLADE-tiny, same protocol and {} training forwards per run as section 1 (a step costs \
         1 + k forwards, so larger k takes fewer steps), at the learning rate section 1 picked for BSZO \
         on SST-2 (the effective rate η·γ·k grows with k), {} seeds. Paper (OPT-1.3B, SST-2): \
         k = 1/2/4/8 → 91.74/92.43/93.58/93.23.\n",
        plan.budget,
        plan.seeds.len()
    );
    let _ = writeln!(
        s,
        "| k | m | steps | picked lr | test accuracy % | best validation % |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for (k, cell) in &r.ablation {
        let (m, sd) = mean_std(&cell.tests());
        let (vm, _) = mean_std(&cell.validations());
        let best = cell.best()?;
        let _ = writeln!(
            s,
            "| {k} | {} | {} | {:e} | {} ± {} | {} |",
            k + 1,
            best.steps,
            best.lr,
            pct(m),
            pct(sd),
            pct(vm)
        );
    }
    let _ = writeln!(s);

    Ok(())
}

/// Section 5 of `RESULTS.md` (hizoo), when measured.
fn section_hizoo(s: &mut String, opts: &BenchOptions, r: &Results) -> Result<()> {
    let plan = &opts.plan;
    let (first_seed, _) = plan.split_seeds()?;
    let _ = writeln!(s, "## 5. HiZOO's curvature smoothing α\n");
    if !measured(s, r, Section::Hizoo, &opts.command) {
        return Ok(());
    }
    let _ = writeln!(
        s,
        "SST-2, SPLADE-tiny, seed {}, HiZOO at its picked learning rate from section 1, {} training forwards; \
         α set from α/ε² at each ε. If α/ε² is what matters, rows with the same α/ε² agree across ε.\n",
        first_seed, plan.budget
    );
    let _ = writeln!(s, "| ε | α/ε² | α | test accuracy % | best validation % |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for (eps, ratio, run) in &r.hizoo {
        let _ = writeln!(
            s,
            "| {eps:.0e} | {ratio:.0e} | {:.0e} | {} | {} |",
            ratio * eps * eps,
            pct(run.test),
            pct(run.best_validation)
        );
    }
    let _ = writeln!(s);

    Ok(())
}

/// Section 6 of `RESULTS.md` (sampler), when measured.
fn section_sampler(s: &mut String, opts: &BenchOptions, r: &Results) -> Result<()> {
    let plan = &opts.plan;
    let _ = writeln!(s, "## 6. Sampler throughput and sweep bandwidth\n");
    if !measured(s, r, Section::Sampler, &opts.command) {
        return Ok(());
    }
    if let Some(sm) = &r.sampler {
        let _ = writeln!(
            s,
            "Medians of {} repetitions, measured in the same process ({} instruction set): {} normals filled \
         by zo-sampler vs `rand_pcg::Pcg64` + `rand_distr::StandardNormal` one by one; the fused sweep \
         θ += s·z over {} f32 (all threads) vs a memcpy of the same buffer (both read and write 8 bytes \
         per element). The criterion benchmarks (`cargo bench -p zo-sampler`) measure the same at more \
         sizes.\n",
            plan.reps, sm.isa, plan.sampler_elems.0, plan.sampler_elems.1
        );
        let _ = writeln!(s, "| measure | value | baseline | ratio |");
        let _ = writeln!(s, "|---|---|---|---|");
        let _ = writeln!(
            s,
            "| normals (M/s) | {:.0} | {:.0} (Pcg64) | {:.2}× |",
            sm.normals_m_per_s,
            sm.baseline_m_per_s,
            sm.normals_m_per_s / sm.baseline_m_per_s
        );
        let _ = writeln!(
            s,
            "| sweep (GB/s) | {:.1} | {:.1} (memcpy) | {:.0}% |",
            sm.sweep_gb_s,
            sm.memcpy_gb_s,
            100.0 * sm.sweep_gb_s / sm.memcpy_gb_s
        );
    }

    Ok(())
}

/// The significance level of the black-box verdicts (family-wise, per problem).
pub const ALPHA: f64 = 0.05;

/// BSZO against each peer on one black-box problem: (peer, Holm-adjusted p, verdict), in the
/// cells' order. `win`: BSZO's median final objective is lower and the adjusted p-value is below
/// [`ALPHA`]; `loss`: higher and below; `tie` otherwise.
pub fn blackbox_verdicts(
    cells: &std::collections::BTreeMap<String, crate::blackbox::Cell>,
) -> Vec<(String, f64, &'static str)> {
    let bszo = Algorithm::Bszo.name();
    let Some(b) = cells.get(bszo) else {
        return Vec::new();
    };
    let finals = b.finals();
    let peers: Vec<(&String, &crate::blackbox::Cell)> =
        cells.iter().filter(|(k, _)| *k != bszo).collect();
    let raw: Vec<f64> = peers
        .iter()
        .map(|(_, c)| signed_rank(&finals, &c.finals()).p)
        .collect();
    let adjusted = holm(&raw);
    peers
        .iter()
        .zip(adjusted)
        .map(|((name, c), p)| {
            let (mb, mo) = (b.summary().0, c.summary().0);
            let v = if p < ALPHA && mb < mo {
                "win"
            } else if p < ALPHA && mb > mo {
                "loss"
            } else {
                "tie"
            };
            ((*name).clone(), p, v)
        })
        .collect()
}

fn sci(x: f64) -> String {
    if x.is_infinite() {
        "diverged".into()
    } else {
        format!("{x:.3e}")
    }
}

fn render_blackbox(s: &mut String, opts: &BenchOptions, r: &Results, plots: &[String]) {
    let _ = writeln!(s, "## 7. Black-box problems\n");
    if !measured(s, r, Section::Blackbox, &opts.command) {
        return;
    }
    let Some(bb) = &r.blackbox else { return };
    let plan = &bb.plan;
    let _ = writeln!(
        s,
        "Every optimizer through zo-optim's closure API (no model), at its default \
         hyper-parameters and the problem's ε, at equal forward budgets (steps = budget / forwards \
         per step). Parameters are a matrix (so LOZO's low-rank directions apply). The learning \
         rate is tuned per optimizer and problem on tuning seeds {:?} (disjoint from the \
         evaluation seeds): decades 1e{}…1e{} (FZOO's shifted by log₁₀ ε: its normalised step \
         moves each coordinate by about η/(ε√N)), then the half decades around the best decade, \
         scored by the median final objective; a rate marked † is at an end of that sweep. Then \
         {} evaluation seeds at the picked rate; seed s fixes the start (quadratics: a random ±1 \
         point), the observation noise and the minibatches, so runs pair by seed. The final \
         objective is the noise-free value (logistic regression: mean loss on the whole training \
         set); a run whose objective leaves the finite range or exceeds 10⁶× its start is \
         diverged and ranks worst. Noise levels are relative to ε‖∇f(x₀)‖, the size of a finite \
         difference's signal at the start.\n",
        plan.tuning_seeds, plan.decades.0, plan.decades.1, plan.seeds
    );
    let _ = writeln!(
        s,
        "**Verdicts**: BSZO against each peer by the two-sided Wilcoxon signed-rank test on the \
         {} final objectives paired by seed (exact null distribution without ties, normal \
         approximation with tie and continuity corrections otherwise), p-values adjusted by Holm's \
         method over the peers of a problem; **win** when BSZO's median is lower and the \
         adjusted p < {ALPHA}, **loss** when higher and p < {ALPHA}, **tie** otherwise.\n",
        plan.seeds
    );
    for (i, p) in bb.problems.iter().enumerate() {
        let spec = &p.spec;
        let _ = writeln!(s, "### {}\n", spec.name);
        let _ = writeln!(
            s,
            "{}; ε = {:e}; {} forwards per run{}.\n",
            spec.describe(),
            spec.eps,
            spec.budget,
            spec.decades
                .map(|(lo, hi)| format!("; learning rates swept over decades 1e{lo}…1e{hi} only"))
                .unwrap_or_default()
        );
        let verdicts = blackbox_verdicts(&p.cells);
        let logistic = matches!(spec.kind, crate::blackbox::ProblemKind::Logistic { .. });
        let _ = writeln!(
            s,
            "| optimizer | forwards/step | steps | picked lr | median final | IQR | diverged | {}BSZO vs it: adjusted p | verdict |",
            if logistic {
                "median dev accuracy % | "
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "|---|---|---|---|---|---|---|{}---|---|",
            if logistic { "---|" } else { "" }
        );
        for (name, c) in &p.cells {
            let (med, q1, q3) = c.summary();
            let v = verdicts.iter().find(|v| &v.0 == name);
            let acc = if logistic {
                let a: Vec<f64> = c.runs.iter().filter_map(|t| t.accuracy).collect();
                format!("{} | ", pct(crate::stats::quantile(&a, 0.5)))
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {:.1e}{} | {} | {} – {} | {} | {acc}{} | {} |",
                c.per_step,
                c.steps,
                c.lr,
                if c.at_edge { " †" } else { "" },
                sci(med),
                sci(q1),
                sci(q3),
                c.diverged(),
                v.map_or("—".into(), |v| format!("{:.2e}", v.1)),
                v.map_or("—", |v| v.2),
            );
        }
        let _ = writeln!(s);
        let group = |which: &str| -> String {
            let names: Vec<&str> = verdicts
                .iter()
                .filter(|v| v.2 == which)
                .map(|v| v.0.as_str())
                .collect();
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        };
        if !verdicts.is_empty() {
            let _ = writeln!(
                s,
                "**Verdict ({})**: BSZO wins against {}; ties with {}; loses to {}.\n",
                spec.name,
                group("win"),
                group("tie"),
                group("loss")
            );
        }
        if let Some(plot) = plots.get(i) {
            let _ = writeln!(s, "![{plot}]({plot}.svg)\n");
        }
    }
}

/// The black-box convergence plots: per problem, the median over seeds of log₁₀ of the
/// objective against forward passes, one series per optimizer.
pub fn plot_blackbox(opts: &BenchOptions, r: &Results) -> Result<Vec<String>> {
    let Some(bb) = &r.blackbox else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for p in &bb.problems {
        let mut plot = LinePlot::new(
            format!("{}: median objective at equal forward budgets", p.spec.name),
            "forward passes",
            "log10 objective (median over seeds)",
        );
        for (name, c) in &p.cells {
            let n = c.runs.iter().map(|t| t.curve.len()).max().unwrap_or(0);
            let points = (0..n)
                .filter_map(|i| {
                    let x = c.runs.iter().find_map(|t| t.curve.get(i))?.0;
                    // A diverged run counts as +∞ from where it stopped.
                    let ys: Vec<f64> = c
                        .runs
                        .iter()
                        .map(|t| t.curve.get(i).map_or(f64::INFINITY, |p| p.1))
                        .collect();
                    let m = crate::stats::quantile(&ys, 0.5);
                    (m.is_finite() && m > 0.0).then(|| (x as f64, m.log10()))
                })
                .collect();
            plot = plot.with_series(Series::new(name.clone(), points));
        }
        let stem = format!("blackbox-{}", p.spec.name);
        plot.write(&opts.out.join(&stem))?;
        names.push(stem);
    }
    Ok(names)
}

/// Section 8 of `RESULTS.md`: MeZO and BSZO with half-precision weights against their f32 cells.
fn section_precision(s: &mut String, opts: &BenchOptions, r: &Results) -> Result<()> {
    let _ = writeln!(s, "## 8. Accuracy with half-precision weights\n");
    if !measured(s, r, Section::Precision, &opts.command) {
        return Ok(());
    }
    let plan = &opts.plan;
    let _ = writeln!(
        s,
        "MeZO and BSZO on SST-2 with the weights stored in bf16 or f16 (every forward computes in \
         f32 from the stored values through the perturbation view; updates written with stochastic \
         rounding), at the learning rate and with the protocol, budget and seeds of their f32 cells \
         in section 1 (the masked model: seeds {:?}; the causal model: {}), so \
         the f32 row is the comparison at equal forward budgets. Δ is the difference of mean test \
         accuracy to f32; a drop larger than the larger of the two standard deviations counts as a \
         degradation.\n",
        plan.seeds,
        r.causal
            .as_ref()
            .map_or("the causal section's".to_string(), |c| format!(
                "seeds {:?}",
                c.seeds
            ))
    );
    let _ = writeln!(
        s,
        "| model | optimizer | weights | test accuracy % | Δ to f32 (points) | best validation % |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    let mut lines = Vec::new();
    for (model, by_opt) in &r.precision {
        let mut degraded: Vec<String> = Vec::new();
        let mut held: Vec<String> = Vec::new();
        for (opt, by_prec) in by_opt {
            let algorithm: Algorithm = opt.parse()?;
            let task = zo_data::Task::Sst2;
            let base = r.cell(model, task, algorithm)?;
            let f32s = mean_std(&base.tests());
            let _ = writeln!(
                s,
                "| {model} | {opt} | f32 | {} ± {} | — | {} |",
                pct(f32s.0),
                pct(f32s.1),
                pct(mean_std(&base.validations()).0)
            );
            for (prec, runs) in by_prec {
                let tests: Vec<f64> = runs.iter().map(|x| x.test).collect();
                let vals: Vec<f64> = runs.iter().map(|x| x.best_validation).collect();
                let m = mean_std(&tests);
                let delta = m.0 - f32s.0;
                let _ = writeln!(
                    s,
                    "| {model} | {opt} | {prec} | {} ± {} | {:+.2} | {} |",
                    pct(m.0),
                    pct(m.1),
                    100.0 * delta,
                    pct(mean_std(&vals).0)
                );
                let name = format!("{opt} in {prec} ({:+.2} points)", 100.0 * delta);
                if -delta > m.1.max(f32s.1) {
                    degraded.push(name);
                } else {
                    held.push(name);
                }
            }
        }
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        lines.push(format!(
            "- {model}: degrades: {}; holds: {}.",
            list(&degraded),
            list(&held)
        ));
    }
    let _ = writeln!(s);
    if let (Some(f), Some(b)) = (r.default_task.get("f32"), r.default_task.get("bf16")) {
        let delta = 100.0 * (b.test - f.test);
        let _ = writeln!(
            s,
            "**The default task** (`cargo xtask finetune`: the embedded configuration, {} steps, \
             seed {}): zero-shot {} → fine-tuned **{}** with f32 weights, \
             zero-shot {} → **{}** with bf16 weights ({delta:+.2} points; target: within 1 point, {}).\n",
            f.steps,
            f.seed,
            pct(f.zero_shot),
            pct(f.test),
            pct(b.zero_shot),
            pct(b.test),
            if delta.abs() <= 1.0 { "met" } else { "not met" }
        );
    }
    let _ = writeln!(
        s,
        "**Does MeZO degrade in half precision where BSZO does not?** Per model (rule above):\n"
    );
    for l in lines {
        let _ = writeln!(s, "{l}");
    }
    let _ = writeln!(s);
    Ok(())
}
