//! The TOML layer between a preset and a typed [`RunConfig`](crate::RunConfig): `--set KEY=VALUE`
//! overrides, the completion of the protocol, estimator, rule and schedule tables over the
//! libraries' defaults, and typed deserialization whose errors name the key.
//!
//! Every setting is a field of a library type (`zo_optim::Estimator`, `UpdateRule`, `Schedule`,
//! `zo_data::Protocol`, …) under the name that type gives it, so a new field of such a type is a
//! new setting in presets, in `--set` and in `--help` with no change here.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, anyhow, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use toml::{Table, Value};
use zo_data::{Protocol, Task};
use zo_optim::{Algorithm, Schedule};

/// The data seed of a protocol that names none (LM-BFF's seed 42).
pub const DEFAULT_DATA_SEED: u64 = 42;

/// Parse a preset's text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Table> {
    toml::from_str(text).map_err(|e| anyhow!("{origin}: {}", one_line(&e.to_string())))
}

/// Whitespace (a multi-line parser message) folded into single spaces.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One `--set KEY=VALUE`: a dotted key and a TOML value (a bare word is a string).
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// The key's parts (`["optimizer", "estimator", "k"]`).
    pub key: Vec<String>,
    /// The value.
    pub value: Value,
}

impl Override {
    /// `key` (dotted) set to `value`.
    pub fn new(key: &str, value: impl Into<Value>) -> Self {
        Self {
            key: key.split('.').map(str::to_string).collect(),
            value: value.into(),
        }
    }

    /// The dotted key.
    pub fn dotted(&self) -> String {
        self.key.join(".")
    }

    /// Write the value into `doc`, creating the tables on its way.
    pub fn apply(&self, doc: &mut Table) -> Result<()> {
        let (last, parents) = self
            .key
            .split_last()
            .expect("an override has a non-empty key");
        let mut table = doc;
        for (i, part) in parents.iter().enumerate() {
            let entry = table
                .entry(part.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            table = match entry {
                Value::Table(t) => t,
                _ => bail!(
                    "{}: is a value, not a table of settings",
                    self.key[..=i].join(".")
                ),
            };
        }
        table.insert(last.clone(), self.value.clone());
        Ok(())
    }
}

impl FromStr for Override {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not KEY=VALUE (e.g. optimizer.estimator.k=4)"))?;
        let key: Vec<String> = key.trim().split('.').map(str::to_string).collect();
        if key
            .iter()
            .any(|p| p.is_empty() || p.contains(char::is_whitespace))
        {
            return Err(format!(
                "`{}` is not a dotted key (e.g. optimizer.estimator.k)",
                key.join(".")
            ));
        }
        Ok(Self {
            key,
            value: parse_value(value.trim()),
        })
    }
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.dotted(), self.value)
    }
}

/// A TOML value (number, boolean, quoted string, array, inline table), else the text as a string.
fn parse_value(s: &str) -> Value {
    format!("v = {s}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(s.to_string()))
}

/// `value` as a `T`; an error names `path` and, inside it, the offending field (`path` empty:
/// `value` is a whole document).
pub fn typed<T: DeserializeOwned>(value: &Value, path: &str) -> Result<T> {
    serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let inner = e.path().to_string();
        let at = match (path.is_empty(), inner == ".") {
            (true, true) => "the configuration".to_string(),
            (true, false) => inner,
            (false, true) => path.to_string(),
            (false, false) => format!("{path}.{inner}"),
        };
        let message = e.into_inner().to_string();
        anyhow!("{at}: {}", without_own_path(&message, &at))
    })
}

/// `message` without a trailing `` in `KEY` `` (after a space or a line break) that repeats the
/// end of `at`: the TOML deserialiser names the key itself, and the error already starts with it.
fn without_own_path<'m>(message: &'m str, at: &str) -> &'m str {
    let message = message.trim_end();
    let Some(start) = message.rfind("in `") else {
        return message;
    };
    let before = &message[..start];
    let key = message[start + 4..].strip_suffix('`');
    match key {
        Some(k)
            if !k.is_empty()
                && before.ends_with(char::is_whitespace)
                && (at == k || at.ends_with(&format!(".{k}"))) =>
        {
            before.trim_end()
        }
        _ => message,
    }
}

/// `value` as a table, or an error naming `path`.
fn table(value: Option<Value>, path: &str) -> Result<Table> {
    match value {
        None => Ok(Table::new()),
        Some(Value::Table(t)) => Ok(t),
        Some(other) => bail!(
            "{path}: expected a table of settings, found the {} {other}",
            other.type_str()
        ),
    }
}

/// `base` (a library value serialised) with `user`'s keys laid over it. A key `base` does not
/// have, a different `kind`, or a value of the wrong type is an error naming `path.key`.
fn overlay<T: Serialize + DeserializeOwned>(
    base: &T,
    user: Table,
    path: &str,
    owner: &str,
) -> Result<Value> {
    let Value::Table(defaults) = Value::try_from(base)? else {
        unreachable!("a settings type serialises to a table")
    };
    let mut merged = defaults.clone();
    for (key, value) in &user {
        match defaults.get(key) {
            None => bail!(
                "{path}.{key}: {owner} has no setting `{key}` (its settings: {})",
                defaults
                    .keys()
                    .filter(|k| *k != "kind")
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(current) if key == "kind" && current != value => {
                bail!("{path}.kind: {owner} is {current}, not {value}")
            }
            Some(_) => {
                merged.insert(key.clone(), value.clone());
            }
        }
    }
    let merged = Value::Table(merged);
    if serde_path_to_error::deserialize::<_, T>(merged.clone()).is_err() {
        // Name the first key whose value alone does not fit.
        for (key, value) in &user {
            let mut one = defaults.clone();
            one.insert(key.clone(), value.clone());
            typed::<T>(&Value::Table(one), &format!("{path}.{key}"))?;
        }
        typed::<T>(&merged, path)?;
    }
    Ok(merged)
}

/// Fill in a document: `task.protocol` over the protocol's defaults for the task, and the
/// optimizer's `estimator`, `rule` and `schedule` over those of the algorithm `optimizer.name`
/// at the perturbation scale `optimizer.estimator.eps`. A complete document is left as it is.
pub fn complete(doc: &mut Table) -> Result<()> {
    let steps = doc
        .get("train")
        .and_then(|t| t.get("steps"))
        .and_then(Value::as_integer);
    if let Some(Value::Table(task)) = doc.get_mut("task")
        && let Some(name) = task.get("name")
    {
        let name: Task = typed(name, "task.name")?;
        let user = table(task.remove("protocol"), "task.protocol")?;
        let kind = kind_of(&user, "task.protocol")?
            .unwrap_or("few_shot")
            .to_string();
        let seed = match user.get("seed") {
            Some(v) => typed(v, "task.protocol.seed")?,
            None => DEFAULT_DATA_SEED,
        };
        let base = Protocol::of_kind(&kind, name, seed).ok_or_else(|| {
            anyhow!(
                "task.protocol.kind: unknown protocol `{kind}` (expected {})",
                Protocol::KINDS.join(" or ")
            )
        })?;
        let merged = overlay(
            &base,
            user,
            "task.protocol",
            &format!("the {kind} protocol"),
        )?;
        task.insert("protocol".into(), merged);
    }
    if let Some(Value::Table(opt)) = doc.get_mut("optimizer")
        && let Some(name) = opt.get("name")
    {
        let algorithm: Algorithm = typed(name, "optimizer.name")?;
        let estimator = table(opt.remove("estimator"), "optimizer.estimator")?;
        let eps: f64 = match estimator.get("eps") {
            Some(v) => typed(v, "optimizer.estimator.eps")?,
            None => bail!(
                "optimizer.estimator.eps: missing: the perturbation scale ε has no default (MeZO uses 1e-3, BSZO 1e-4)"
            ),
        };
        let base = algorithm.config(eps);
        let owner = format!("{algorithm}'s estimator");
        let merged = overlay(&base.estimator, estimator, "optimizer.estimator", &owner)?;
        opt.insert("estimator".into(), merged);
        let rule = table(opt.remove("rule"), "optimizer.rule")?;
        let owner = format!("{algorithm}'s update rule");
        let merged = overlay(&base.rule, rule, "optimizer.rule", &owner)?;
        opt.insert("rule".into(), merged);

        let schedule = table(opt.remove("schedule"), "optimizer.schedule")?;
        let lr: f64 = match schedule.get("lr") {
            Some(v) => typed(v, "optimizer.schedule.lr")?,
            None => bail!("optimizer.schedule.lr: missing: the learning rate has no default"),
        };
        // A decaying schedule decays over the run's step budget unless told otherwise.
        let total_steps = steps.and_then(|s| u64::try_from(s).ok()).unwrap_or(1);
        let kind = kind_of(&schedule, "optimizer.schedule")?.unwrap_or("constant");
        let base = Schedule::of_kind(kind, lr, total_steps).ok_or_else(|| {
            anyhow!(
                "optimizer.schedule.kind: unknown schedule `{kind}` (expected {})",
                Schedule::KINDS.join(", ")
            )
        })?;
        let owner = "the schedule";
        let merged = overlay(&base, schedule, "optimizer.schedule", owner)?;
        opt.insert("schedule".into(), merged);
    }
    Ok(())
}

/// The `kind` a user table names, if any.
fn kind_of<'t>(user: &'t Table, path: &str) -> Result<Option<&'t str>> {
    match user.get("kind") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => bail!("{path}.kind: expected a name, found {other}"),
    }
}

/// Every key of a complete document with its value, dotted, in document order (for `--help`).
pub fn flatten(table: &Table, prefix: &str, out: &mut Vec<(String, Value)>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Table(t) => flatten(t, &path, out),
            other => out.push((path, other.clone())),
        }
    }
}

/// An algorithm's estimator and rule settings with their defaults at perturbation scale `eps`
/// (`kind` left out), as `key = value` pairs (for `--help`).
pub fn algorithm_settings(algorithm: Algorithm, eps: f64) -> Vec<(String, Value)> {
    let config = algorithm.config(eps);
    let mut out = Vec::new();
    for (prefix, value) in [
        ("estimator", Value::try_from(config.estimator)),
        ("rule", Value::try_from(config.rule)),
    ] {
        if let Ok(Value::Table(t)) = value {
            let mut pairs = Vec::new();
            flatten(&t, prefix, &mut pairs);
            out.extend(pairs.into_iter().filter(|(k, _)| !k.ends_with(".kind")));
        }
    }
    out
}
