//! Readers for the raw file layouts, independent of any task.
//!
//! - [`read_tsv`]: tab-separated files with a header row (LM-BFF and GLUE TSV; no quoting, as GLUE
//!   files are written with `QUOTE_NONE`).
//! - [`read_label_csv`]: header-less `label,text` CSV files (LM-BFF SST-5 and TREC k-shot splits);
//!   the text may be quoted with `"` and doubled `""` inside quotes.
//! - [`read_pool_json`]: GLUE "pretrain" pool files, one JSON object `{"0": {"text_a", "text_b",
//!   "label"}, ...}`, returned in numeric key order.
//! - [`read_jsonl`]: SuperGLUE / FewGLUE JSON lines.
//!
//! Every record carries the 1-based line it came from, so that later errors (an unknown label, a
//! missing field) can name it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{DataError, Result};

/// Read a whole file as UTF-8 text.
/// A leading byte-order mark is dropped.
pub fn read_text(path: &Path) -> Result<String> {
    let mut text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}

/// A tab-separated file with a header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// The file it was read from.
    pub path: PathBuf,
    /// The header's column names.
    pub header: Vec<String>,
    /// The data rows: (1-based line, fields).
    pub rows: Vec<(usize, Vec<String>)>,
}

impl Table {
    /// The index of a header column.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| DataError::MissingColumn {
                path: self.path.clone(),
                line: 1,
                column: name.to_string(),
            })
    }

    /// Field `index` (named `name` for errors) of the row read from `line`.
    pub fn field<'a>(
        &self,
        line: usize,
        row: &'a [String],
        index: usize,
        name: &str,
    ) -> Result<&'a str> {
        row.get(index)
            .map(String::as_str)
            .ok_or_else(|| DataError::MissingColumn {
                path: self.path.clone(),
                line,
                column: name.to_string(),
            })
    }
}

/// Read a TSV file with a header row. Blank lines are skipped; a trailing `\r` is removed.
pub fn read_tsv(path: &Path) -> Result<Table> {
    let text = read_text(path)?;
    let mut lines = text.lines().enumerate();
    let header = loop {
        match lines.next() {
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((_, l)) => {
                break l
                    .trim_end_matches('\r')
                    .split('\t')
                    .map(str::to_string)
                    .collect();
            }
            None => {
                return Err(DataError::Malformed {
                    path: path.to_path_buf(),
                    line: 1,
                    message: "empty file: no header row".into(),
                });
            }
        }
    };
    let rows = lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            (
                i + 1,
                l.trim_end_matches('\r')
                    .split('\t')
                    .map(str::to_string)
                    .collect(),
            )
        })
        .collect();
    Ok(Table {
        path: path.to_path_buf(),
        header,
        rows,
    })
}

/// One `label,text` CSV row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelText {
    /// The 1-based line.
    pub line: usize,
    /// The label field, as written.
    pub label: String,
    /// The text field, unquoted.
    pub text: String,
}

/// Read a header-less two-column `label,text` CSV file (quoted text allowed, no line breaks inside
/// quotes). Blank lines are skipped.
pub fn read_label_csv(path: &Path) -> Result<Vec<LabelText>> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let raw = raw.trim_end_matches('\r');
        if raw.trim().is_empty() {
            continue;
        }
        let Some((label, rest)) = raw.split_once(',') else {
            return Err(DataError::MissingColumn {
                path: path.to_path_buf(),
                line,
                column: "text".into(),
            });
        };
        let text = unquote_csv_field(rest).map_err(|message| DataError::Malformed {
            path: path.to_path_buf(),
            line,
            message,
        })?;
        out.push(LabelText {
            line,
            label: label.trim().to_string(),
            text,
        });
    }
    Ok(out)
}

/// The value of the last CSV field of a line: either raw text, or `"…"` with `""` for a quote.
fn unquote_csv_field(field: &str) -> std::result::Result<String, String> {
    let Some(inner) = field.strip_prefix('"') else {
        return Ok(field.to_string());
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '"' {
            match chars.next() {
                Some('"') => out.push('"'),
                None => return Ok(out),
                Some(other) => {
                    return Err(format!(
                        "unexpected `{other}` after a closing quote in a quoted field"
                    ));
                }
            }
        } else {
            out.push(c);
        }
    }
    Err("unterminated quoted field".into())
}

/// One record of a GLUE pool JSON file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolRecord {
    /// The 1-based line where the record's key appears.
    pub line: usize,
    /// The record's key (`"0"`, `"1"`, …).
    pub key: String,
    /// `text_a`.
    pub text_a: String,
    /// `text_b`, absent for single-sentence tasks.
    pub text_b: Option<String>,
    /// `label`, as a string (numbers are written in decimal).
    pub label: String,
}

/// Read a GLUE pool file `{"0": {"text_a": …, "text_b": …, "label": …}, …}`. Records come back
/// sorted by their numeric key (non-numeric keys last, in text order).
pub fn read_pool_json(path: &Path) -> Result<Vec<PoolRecord>> {
    let text = read_text(path)?;
    let value: serde_json::Map<String, Value> =
        serde_json::from_str(&text).map_err(|e| DataError::BadJson {
            path: path.to_path_buf(),
            line: e.line(),
            message: e.to_string(),
        })?;
    // Locate each key's line: keys are written as `"KEY": {` in order.
    let key_lines: std::collections::HashMap<String, usize> =
        key_lines(&text).into_iter().collect();
    let mut out = Vec::with_capacity(value.len());
    for (key, record) in value {
        let line = key_lines.get(&key).copied().unwrap_or(1);
        let missing = |column: &str| DataError::MissingColumn {
            path: path.to_path_buf(),
            line,
            column: column.to_string(),
        };
        let obj = record.as_object().ok_or_else(|| DataError::BadJson {
            path: path.to_path_buf(),
            line,
            message: format!("record `{key}` is not an object"),
        })?;
        let text_a = obj
            .get("text_a")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("text_a"))?
            .to_string();
        let text_b = obj
            .get("text_b")
            .and_then(Value::as_str)
            .map(str::to_string);
        let label = match obj.get("label") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            _ => return Err(missing("label")),
        };
        out.push(PoolRecord {
            line,
            key,
            text_a,
            text_b,
            label,
        });
    }
    out.sort_by(|a, b| {
        let ka = a.key.parse::<u64>().ok();
        let kb = b.key.parse::<u64>().ok();
        match (ka, kb) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.key.cmp(&b.key),
        }
    });
    Ok(out)
}

/// `(key, line)` for every line of a pretty-printed pool file that opens a record (`"KEY": {`).
fn key_lines(text: &str) -> Vec<(String, usize)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let t = l.trim();
            let rest = t.strip_prefix('"')?;
            let (key, after) = rest.split_once('"')?;
            after
                .trim_start()
                .strip_prefix(':')?
                .trim()
                .starts_with('{')
                .then(|| (key.to_string(), i + 1))
        })
        .collect()
}

/// Read a JSON-lines file: one JSON object per non-blank line, with its 1-based line.
pub fn read_jsonl(path: &Path) -> Result<Vec<(usize, serde_json::Map<String, Value>)>> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(raw).map_err(|e| DataError::BadJson {
            path: path.to_path_buf(),
            line,
            message: e.to_string(),
        })?;
        match value {
            Value::Object(map) => out.push((line, map)),
            other => {
                return Err(DataError::BadJson {
                    path: path.to_path_buf(),
                    line,
                    message: format!("expected an object, found {}", json_kind(&other)),
                });
            }
        }
    }
    Ok(out)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
