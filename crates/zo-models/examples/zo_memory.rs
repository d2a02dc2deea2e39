//! Peak resident memory of inference and of zeroth-order steps on a masked LM.
//!
//! Every scenario runs in a fresh process (this binary re-executes itself), which loads the model,
//! encodes 16 SST-2 prompts (`<S> It was [MASK] .`, label words terrible/great), resets the
//! kernel's peak-RSS counter (`/proc/self/clear_refs`), runs the scenario and reads `VmHWM` from
//! `/proc/self/status`:
//!
//! - `load`: nothing more (the resident size of the loaded model);
//! - `inference`: six forward passes (the loss on the batch);
//! - `mezo`: three MeZO steps (2 forwards each), weights perturbed in place;
//! - `bszo`: two BSZO steps (k = 2: 3 forwards each).
//!
//! Every scenario runs six forward passes, so that the allocator sees the same pattern of
//! activation buffers in all of them.
//!
//! Models: `splade-tiny` (the provisioned checkpoint) and `synthetic` (a BERT with hidden 768,
//! 6 layers, 12 heads and SPLADE-tiny's vocabulary, random weights built in-process), so that the
//! weights dominate the binary's own footprint.
//!
//! ```sh
//! crates/zo-models/scripts/provision.sh
//! cargo run --release -p zo-models --example zo_memory            # the table
//! cargo run --release -p zo-models --example zo_memory -- run splade-tiny mezo   # one scenario
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use zo_models::bert::Config;
use zo_models::{MaskedLm, MaskedLmClassifier, Precision, Tokenizer};
use zo_optim::{Algorithm, Optimizer};

const MODELS: [&str; 2] = ["splade-tiny", "synthetic"];
const SCENARIOS: [&str; 4] = ["load", "inference", "mezo", "bszo"];

fn models_dir() -> PathBuf {
    bszo_testkit::models_dir()
}

fn data_dir() -> PathBuf {
    bszo_testkit::data_dir()
}

/// A `kB` field of `/proc/self/status`.
fn status_kb(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or_else(|| anyhow!("no {field} in /proc/self/status"))?;
    let value = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("bad line {line:?}"))?;
    Ok(value.parse()?)
}

/// 16 SST-2 training sentences (8 per class) and their labels.
fn sst2_batch() -> Result<(Vec<String>, Vec<usize>)> {
    let path = data_dir().join("sst2/k-shot/16-13/train.tsv");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows: Vec<(String, usize)> = Vec::new();
    for line in text.lines().skip(1) {
        if let Some((s, y)) = line.rsplit_once('\t') {
            rows.push((s.to_string(), y.trim().parse()?));
        }
    }
    let neg = rows.iter().filter(|(_, y)| *y == 0).take(8);
    let pos = rows.iter().filter(|(_, y)| *y == 1).take(8);
    let picked: Vec<&(String, usize)> = neg.zip(pos).flat_map(|(a, b)| [a, b]).collect();
    Ok((
        picked.iter().map(|(s, _)| s.clone()).collect(),
        picked.iter().map(|(_, y)| *y).collect(),
    ))
}

fn load(model: &str) -> Result<(MaskedLm, zo_models::Weights, Tokenizer)> {
    let splade = models_dir().join("splade-tiny");
    let tokenizer = Tokenizer::from_folder(&splade)?;
    let (m, w) = match model {
        "splade-tiny" => MaskedLm::from_folder(&splade, Precision::F32)?,
        "synthetic" => {
            let mut cfg = Config::from_file(splade.join("config.json"))?;
            cfg.hidden_size = 768;
            cfg.num_hidden_layers = 6;
            cfg.num_attention_heads = 12;
            cfg.intermediate_size = 3072;
            MaskedLm::random(&cfg, Precision::F32, 1)?
        }
        other => bail!("unknown model {other} (expected one of {MODELS:?})"),
    };
    Ok((m, w, tokenizer))
}

/// Run one scenario in this process and print its `RESULT` line.
fn run(model: &str, scenario: &str) -> Result<()> {
    let (m, mut weights, tokenizer) = load(model)?;
    let params = zo_optim::ParamSet::num_params(&weights);
    let clf = MaskedLmClassifier::new(m, tokenizer, "<S> It was [MASK] .", &["terrible", "great"])?;
    let (texts, labels) = sst2_batch()?;
    let batch = clf.encode_batch(&texts)?;
    let load_hwm = status_kb("VmHWM:")?;
    let rss_loaded = status_kb("VmRSS:")?;
    std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS")?;
    let start = Instant::now();
    let units = match scenario {
        "load" => 0,
        "inference" => {
            for _ in 0..6 {
                std::hint::black_box(clf.loss(&batch, &labels)?);
            }
            6
        }
        "mezo" | "bszo" => {
            let algorithm = if scenario == "mezo" {
                Algorithm::Mezo
            } else {
                Algorithm::Bszo
            };
            let opt = Optimizer::named(algorithm, 1e-3, 1e-5)?;
            let mut state = opt.init(&weights, 7);
            let mut objective = clf.objective(&batch, &labels);
            let steps = 6 / opt.forwards_per_step();
            for _ in 0..steps {
                opt.step(&mut state, &mut weights, &mut objective)?;
            }
            steps as u32
        }
        other => bail!("unknown scenario {other} (expected one of {SCENARIOS:?})"),
    };
    let elapsed = start.elapsed().as_secs_f64() * 1e3;
    let peak = status_kb("VmHWM:")?;
    let per_unit = if units > 0 {
        elapsed / f64::from(units)
    } else {
        0.0
    };
    println!(
        "RESULT model={model} scenario={scenario} params={params} seq={} load_hwm_kb={load_hwm} rss_loaded_kb={rss_loaded} peak_kb={peak} ms_per_unit={per_unit:.1}",
        batch.input_ids.dim(1)?
    );
    Ok(())
}

fn field<'a>(line: &'a str, key: &str) -> Result<&'a str> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .ok_or_else(|| anyhow!("no {key} in {line:?}"))
}

fn drive() -> Result<()> {
    let exe = std::env::current_exe()?;
    for var in [
        "MALLOC_MMAP_THRESHOLD_",
        "MALLOC_ARENA_MAX",
        "RAYON_NUM_THREADS",
    ] {
        if let Ok(v) = std::env::var(var) {
            println!("{var}={v}");
        }
    }
    println!(
        "| model | params | scenario | peak RSS, whole run (MiB) | peak RSS after loading (MiB) | ratio to inference | time |"
    );
    println!("|---|---|---|---|---|---|---|");
    for model in MODELS {
        let mut inference_peak = None;
        let mut inference_whole = None;
        for scenario in SCENARIOS {
            let out = Command::new(&exe).args(["run", model, scenario]).output()?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let Some(line) = stdout.lines().find(|l| l.starts_with("RESULT")) else {
                bail!(
                    "{model}/{scenario} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            let kb = |k: &str| -> Result<f64> { Ok(field(line, k)?.parse::<f64>()?) };
            let (peak, load_hwm) = (kb("peak_kb")?, kb("load_hwm_kb")?);
            let whole = peak.max(load_hwm);
            if scenario == "inference" {
                inference_peak = Some(peak);
                inference_whole = Some(whole);
            }
            let ratio = match (inference_peak, inference_whole) {
                (Some(p), Some(w)) if scenario != "load" => {
                    format!("{:.3} (whole run {:.3})", peak / p, whole / w)
                }
                _ => "—".to_string(),
            };
            let ms = kb("ms_per_unit")?;
            let time = match scenario {
                "inference" => format!("{ms:.1} ms / forward"),
                "mezo" | "bszo" => format!("{ms:.1} ms / step"),
                _ => "—".to_string(),
            };
            println!(
                "| {model} | {} | {scenario} | {:.1} | {:.1} | {ratio} | {time} |",
                field(line, "params")?,
                whole / 1024.0,
                peak / 1024.0
            );
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => drive(),
        [cmd, model, scenario] if cmd == "run" => run(model, scenario),
        _ => bail!(
            "usage: zo_memory [run <{}> <{}>]",
            MODELS.join("|"),
            SCENARIOS.join("|")
        ),
    }
}
