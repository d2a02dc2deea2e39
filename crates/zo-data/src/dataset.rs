//! Loading a task's examples from the files of the data folder (layout: `data/README.md` in the repository).
//!
//! | task | k-shot (`k-shot/16-SEED/`) | pool (`pool/`) | FewGLUE |
//! |---|---|---|---|
//! | SST-2 | `{train,dev,test}.tsv` (`sentence`, `label`) | `{train,dev}.tsv` | – |
//! | SST-5, TREC | `{train,dev,test}.csv` (`label,text`, no header) | `{train,dev}.tsv` | – |
//! | RTE | `{train,dev,test}.tsv` (`sentence1`, `sentence2`, `label`) | `{train,dev}.json` | `superglue/*.jsonl` |
//! | SNLI | `{train,dev}.tsv` (`sentence1`, `sentence2`, last column `gold_label`) | `{train,dev}.json` | – |
//! | MNLI | `{train,dev_matched}.tsv` (as SNLI) | `{train,dev}.json` | – |
//! | CB, BoolQ, COPA, WSC, WiC | – | – | `{train,dev32,val}.jsonl` |

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{DataError, Result};
use crate::read::{read_jsonl, read_label_csv, read_pool_json, read_tsv};
use crate::task::{Example, Source, Task};

/// A split of an LM-BFF k-shot folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KShotSplit {
    /// `train`.
    Train,
    /// `dev` (`dev_matched` for MNLI).
    Dev,
    /// `test` (absent for SNLI and MNLI).
    Test,
}

/// A split of a GLUE pool folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolSplit {
    /// `pool/train.*`.
    Train,
    /// `pool/dev.*`.
    Dev,
}

/// A FewGLUE split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FewGlueSplit {
    /// `train.jsonl` (32 examples).
    Train,
    /// `dev32.jsonl` (32 examples).
    Dev32,
    /// `val.jsonl` (the official validation split, used as the test set).
    Val,
}

/// The path of a k-shot file (`data/sst2/k-shot/16-13/train.tsv`, …).
pub fn kshot_path(data_dir: &Path, task: Task, seed: u64, split: KShotSplit) -> Result<PathBuf> {
    let ext = match task {
        Task::Sst5 | Task::Trec => "csv",
        Task::Sst2 | Task::Rte | Task::Snli | Task::Mnli => "tsv",
        _ => {
            return Err(DataError::Unsupported {
                task: task.display_name(),
                what: "LM-BFF k-shot files".into(),
            });
        }
    };
    let stem = match (split, task) {
        (KShotSplit::Train, _) => "train",
        (KShotSplit::Dev, Task::Mnli) => "dev_matched",
        (KShotSplit::Dev, _) => "dev",
        (KShotSplit::Test, Task::Snli | Task::Mnli) => {
            return Err(DataError::Unsupported {
                task: task.display_name(),
                what: "a k-shot test file (not in the data folder)".into(),
            });
        }
        (KShotSplit::Test, _) => "test",
    };
    Ok(data_dir
        .join(task.name())
        .join("k-shot")
        .join(format!("16-{seed}"))
        .join(format!("{stem}.{ext}")))
}

/// Read one k-shot file.
pub fn load_kshot(
    data_dir: &Path,
    task: Task,
    seed: u64,
    split: KShotSplit,
) -> Result<Vec<Example>> {
    let path = kshot_path(data_dir, task, seed, split)?;
    match task {
        Task::Sst5 | Task::Trec => load_label_csv(&path, task),
        Task::Sst2 => load_sentence_tsv(&path, task),
        _ => load_pair_tsv(&path, task),
    }
}

/// Read one pool file.
pub fn load_pool(data_dir: &Path, task: Task, split: PoolSplit) -> Result<Vec<Example>> {
    let stem = match split {
        PoolSplit::Train => "train",
        PoolSplit::Dev => "dev",
    };
    let dir = data_dir.join(task.name()).join("pool");
    match task {
        Task::Sst2 | Task::Sst5 | Task::Trec => {
            load_sentence_tsv(&dir.join(format!("{stem}.tsv")), task)
        }
        Task::Rte | Task::Snli | Task::Mnli => {
            let path = dir.join(format!("{stem}.json"));
            read_pool_json(&path)?
                .into_iter()
                .map(|r| {
                    let label = label_of(task, &path, r.line, &r.label)?;
                    let text_b = r.text_b.ok_or_else(|| DataError::MissingColumn {
                        path: path.clone(),
                        line: r.line,
                        column: "text_b".into(),
                    })?;
                    Ok(Example::new([r.text_a, text_b], label))
                })
                .collect()
        }
        _ => Err(DataError::Unsupported {
            task: task.display_name(),
            what: "a GLUE pool".into(),
        }),
    }
}

/// The path of a FewGLUE file (RTE's copy lives under `rte/superglue/`).
pub fn fewglue_path(data_dir: &Path, task: Task, split: FewGlueSplit) -> Result<PathBuf> {
    let name = match split {
        FewGlueSplit::Train => "train.jsonl",
        FewGlueSplit::Dev32 => "dev32.jsonl",
        FewGlueSplit::Val => "val.jsonl",
    };
    match task {
        Task::Rte => Ok(data_dir.join("rte").join("superglue").join(name)),
        t if t.source() == Source::FewGlue => Ok(data_dir.join(t.name()).join(name)),
        t => Err(DataError::Unsupported {
            task: t.display_name(),
            what: "FewGLUE files".into(),
        }),
    }
}

/// Read one FewGLUE (SuperGLUE jsonl) file.
pub fn load_fewglue(data_dir: &Path, task: Task, split: FewGlueSplit) -> Result<Vec<Example>> {
    let path = fewglue_path(data_dir, task, split)?;
    load_superglue_jsonl(&path, task)
}

/// Read a SuperGLUE jsonl file of `task` (CB, RTE, BoolQ, COPA, WSC, WiC).
pub fn load_superglue_jsonl(path: &Path, task: Task) -> Result<Vec<Example>> {
    let (fields, nested): (&[&str], bool) = match task {
        Task::Cb | Task::Rte => (&["premise", "hypothesis"], false),
        Task::BoolQ => (&["passage", "question"], false),
        Task::Copa => (&["premise", "choice1", "choice2", "question"], false),
        Task::Wic => (&["word", "sentence1", "sentence2"], false),
        Task::Wsc => (&["text", "span1_text", "span2_text"], true),
        _ => {
            return Err(DataError::Unsupported {
                task: task.display_name(),
                what: "SuperGLUE jsonl files".into(),
            });
        }
    };
    read_jsonl(path)?
        .into_iter()
        .map(|(line, obj)| {
            let missing = |column: &str| DataError::MissingColumn {
                path: path.to_path_buf(),
                line,
                column: column.to_string(),
            };
            let mut texts = Vec::with_capacity(fields.len());
            for (i, f) in fields.iter().enumerate() {
                // WSC keeps its spans under `target`.
                let holder = if nested && i > 0 {
                    obj.get("target")
                        .and_then(Value::as_object)
                        .ok_or_else(|| missing("target"))?
                } else {
                    &obj
                };
                let text = holder
                    .get(*f)
                    .and_then(Value::as_str)
                    .ok_or_else(|| missing(f))?;
                texts.push(text.to_string());
            }
            let raw = match obj.get("label") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                Some(other) => other.to_string(),
                None => return Err(missing("label")),
            };
            let label = label_of(task, path, line, &raw)?;
            Ok(Example { texts, label })
        })
        .collect()
}

fn label_of(task: Task, path: &Path, line: usize, raw: &str) -> Result<usize> {
    task.parse_label(raw).ok_or_else(|| DataError::BadLabel {
        path: path.to_path_buf(),
        line,
        label: raw.to_string(),
        task: task.display_name(),
    })
}

/// `sentence\tlabel` TSV (SST-2 everywhere; SST-5 and TREC pools).
fn load_sentence_tsv(path: &Path, task: Task) -> Result<Vec<Example>> {
    let table = read_tsv(path)?;
    let s = table.column("sentence")?;
    let l = table.column("label")?;
    table
        .rows
        .iter()
        .map(|(line, row)| {
            let text = table.field(*line, row, s, "sentence")?;
            let raw = table.field(*line, row, l, "label")?;
            Ok(Example::new([text], label_of(task, path, *line, raw)?))
        })
        .collect()
}

/// Sentence-pair TSV: `sentence1`, `sentence2` and `label` (RTE) or the last column (`gold_label`:
/// SNLI/MNLI rows have a variable number of annotator columns before it).
fn load_pair_tsv(path: &Path, task: Task) -> Result<Vec<Example>> {
    let table = read_tsv(path)?;
    let a = table.column("sentence1")?;
    let b = table.column("sentence2")?;
    let label_col = match task {
        Task::Snli | Task::Mnli => {
            table.column("gold_label")?;
            None
        }
        _ => Some(table.column("label")?),
    };
    table
        .rows
        .iter()
        .map(|(line, row)| {
            let premise = table.field(*line, row, a, "sentence1")?;
            let hypothesis = table.field(*line, row, b, "sentence2")?;
            let raw = match label_col {
                Some(c) => table.field(*line, row, c, "label")?,
                None => {
                    if row.len() <= b + 1 {
                        return Err(DataError::MissingColumn {
                            path: path.to_path_buf(),
                            line: *line,
                            column: "gold_label".into(),
                        });
                    }
                    row.last().map_or("", String::as_str)
                }
            };
            Ok(Example::new(
                [premise, hypothesis],
                label_of(task, path, *line, raw)?,
            ))
        })
        .collect()
}

/// `label,text` CSV (SST-5 and TREC k-shot files).
fn load_label_csv(path: &Path, task: Task) -> Result<Vec<Example>> {
    read_label_csv(path)?
        .into_iter()
        .map(|r| {
            Ok(Example::new(
                [r.text],
                label_of(task, path, r.line, &r.label)?,
            ))
        })
        .collect()
}
