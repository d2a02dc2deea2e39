//! The tasks: their names, label sets, text fields, data sources and examples. Their prompts are
//! in [`crate::prompt`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// One of the supported tasks.
///
/// Serialises as its short name (`"sst2"`, `"boolq"`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// SST-2: binary sentiment (negative, positive).
    Sst2,
    /// SST-5: five-way sentiment.
    Sst5,
    /// TREC: six-way question type.
    Trec,
    /// RTE: two-way entailment.
    Rte,
    /// CB (CommitmentBank): three-way entailment.
    Cb,
    /// SNLI: three-way natural language inference.
    Snli,
    /// MNLI: three-way natural language inference.
    Mnli,
    /// BoolQ: yes/no questions about a passage.
    BoolQ,
    /// COPA: choice of plausible alternatives (cause or effect).
    Copa,
    /// WSC: Winograd schema coreference (does the pronoun refer to the noun phrase?).
    Wsc,
    /// WiC: does a word have the same meaning in two sentences?
    Wic,
}

/// Where a task's data comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// LM-BFF k-shot folders and a GLUE pool (`k-shot/16-SEED/`, `pool/`).
    LmBff,
    /// FewGLUE files only (`train.jsonl`, `dev32.jsonl`, `val.jsonl`).
    FewGlue,
}

/// One labelled example: the task's text fields (see [`Task::fields`]) and a class index into
/// [`Task::labels`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Example {
    /// The text fields, in the order [`Task::fields`] names them.
    pub texts: Vec<String>,
    /// The class index.
    pub label: usize,
}

impl Example {
    /// An example from its texts and label.
    pub fn new<S: Into<String>>(texts: impl IntoIterator<Item = S>, label: usize) -> Self {
        Self {
            texts: texts.into_iter().map(Into::into).collect(),
            label,
        }
    }

    /// Text field `i` (empty if absent).
    pub fn text(&self, i: usize) -> &str {
        self.texts.get(i).map_or("", String::as_str)
    }
}

impl Task {
    /// Every task, in a fixed order.
    pub const ALL: [Task; 11] = [
        Task::Sst2,
        Task::Sst5,
        Task::Trec,
        Task::Rte,
        Task::Cb,
        Task::Snli,
        Task::Mnli,
        Task::BoolQ,
        Task::Copa,
        Task::Wsc,
        Task::Wic,
    ];

    /// The short name, which is also the task's folder under the data directory (`sst2`, …).
    pub fn name(self) -> &'static str {
        match self {
            Task::Sst2 => "sst2",
            Task::Sst5 => "sst5",
            Task::Trec => "trec",
            Task::Rte => "rte",
            Task::Cb => "cb",
            Task::Snli => "snli",
            Task::Mnli => "mnli",
            Task::BoolQ => "boolq",
            Task::Copa => "copa",
            Task::Wsc => "wsc",
            Task::Wic => "wic",
        }
    }

    /// The usual display name (`SST-2`, `BoolQ`, …).
    pub fn display_name(self) -> &'static str {
        match self {
            Task::Sst2 => "SST-2",
            Task::Sst5 => "SST-5",
            Task::Trec => "TREC",
            Task::Rte => "RTE",
            Task::Cb => "CB",
            Task::Snli => "SNLI",
            Task::Mnli => "MNLI",
            Task::BoolQ => "BoolQ",
            Task::Copa => "COPA",
            Task::Wsc => "WSC",
            Task::Wic => "WiC",
        }
    }

    /// The task named `name` (case-insensitive; `-` and `_` are ignored, so `SST-2` works).
    pub fn from_name(name: &str) -> Result<Task> {
        let key: String = name
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        Task::ALL
            .into_iter()
            .find(|t| t.name() == key)
            .ok_or_else(|| DataError::UnknownTask(name.to_string()))
    }

    /// Where the task's data comes from.
    pub fn source(self) -> Source {
        match self {
            Task::Sst2 | Task::Sst5 | Task::Trec | Task::Rte | Task::Snli | Task::Mnli => {
                Source::LmBff
            }
            Task::Cb | Task::BoolQ | Task::Copa | Task::Wsc | Task::Wic => Source::FewGlue,
        }
    }

    /// The class names, in class-index order.
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            Task::Sst2 => &["negative", "positive"],
            Task::Sst5 => &[
                "very negative",
                "negative",
                "neutral",
                "positive",
                "very positive",
            ],
            Task::Trec => &[
                "description",
                "entity",
                "abbreviation",
                "human",
                "location",
                "numeric",
            ],
            Task::Rte => &["entailment", "not_entailment"],
            Task::Cb => &["entailment", "contradiction", "neutral"],
            Task::Snli | Task::Mnli => &["entailment", "neutral", "contradiction"],
            Task::BoolQ | Task::Wsc | Task::Wic => &["true", "false"],
            Task::Copa => &["choice1", "choice2"],
        }
    }

    /// The number of classes.
    pub fn num_classes(self) -> usize {
        self.labels().len()
    }

    /// The names of an example's text fields, in [`Example::texts`] order.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Task::Sst2 | Task::Sst5 => &["sentence"],
            Task::Trec => &["question"],
            Task::Rte | Task::Cb | Task::Snli | Task::Mnli => &["premise", "hypothesis"],
            Task::BoolQ => &["passage", "question"],
            Task::Copa => &["premise", "choice1", "choice2", "question"],
            Task::Wsc => &["text", "span1_text", "span2_text"],
            Task::Wic => &["word", "sentence1", "sentence2"],
        }
    }

    /// The class index of a label as the data files write it: digits for SST-2/SST-5/TREC/COPA
    /// (the index itself), label names for the entailment tasks, `true`/`false` for BoolQ, WSC, WiC.
    pub fn parse_label(self, raw: &str) -> Option<usize> {
        let raw = raw.trim();
        match self {
            Task::Sst2 | Task::Sst5 | Task::Trec | Task::Copa => raw
                .parse::<usize>()
                .ok()
                .filter(|&i| i < self.num_classes()),
            Task::BoolQ | Task::Wsc | Task::Wic => match raw {
                "true" | "True" => Some(0),
                "false" | "False" => Some(1),
                _ => None,
            },
            Task::Rte | Task::Cb | Task::Snli | Task::Mnli => {
                self.labels().iter().position(|l| *l == raw)
            }
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

impl FromStr for Task {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        Task::from_name(s)
    }
}
