//! The tasks, their label sets, examples and prompts.
//!
//! Prompts follow the project's specification (MeZO's prompts, also used by the BSZO paper):
//!
//! - masked LMs: a template with `<S>`/`<S1>`/`<S2>` text slots and one `[MASK]`, plus one label
//!   word per class, in the syntax of `zo_models::masked::Template` ([`MaskedPrompt`]);
//! - causal LMs: a context string and one candidate continuation per class, the label being the
//!   index of the correct candidate ([`CausalPrompt`]); [`CausalPrompt::encode`] tokenises it into the
//!   fields of `zo_models::causal::CandidateExample`.
//!
//! Combinations the specification does not define are [`DataError::Unsupported`].

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

/// A masked-LM prompt: a template in `zo_models::masked::Template` syntax and one label word per
/// class (class `i` is `label_words[i]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MaskedPrompt {
    /// The template, e.g. `"<S> It was [MASK] ."`.
    pub template: &'static str,
    /// The label words, in class order.
    pub label_words: &'static [&'static str],
}

impl MaskedPrompt {
    /// The number of text slots of the template (`<S>` counts as `<S1>`).
    pub fn slots(&self) -> usize {
        if self.template.contains("<S2>") { 2 } else { 1 }
    }

    /// The example's texts that fill the template's slots, in slot order (what
    /// `MaskedLmClassifier::encode_examples` takes for one example).
    pub fn slot_texts<'a>(&self, example: &'a Example) -> Vec<&'a str> {
        example
            .texts
            .iter()
            .take(self.slots())
            .map(String::as_str)
            .collect()
    }

    /// The prompt as plain text with the slots filled and `[MASK]` left in place (for display).
    pub fn render(&self, example: &Example) -> String {
        let texts = self.slot_texts(example);
        let first = texts.first().copied().unwrap_or("");
        let second = texts.get(1).copied().unwrap_or("");
        self.template
            .replace("<S1>", first)
            .replace("<S2>", second)
            .replace("<S>", first)
    }
}

/// A causal-LM prompt: the context, one candidate continuation per class, and the correct one.
///
/// Candidates start with the space that separates them from the context (`" great"`), so
/// `context + candidate` is the full text that a causal LM scores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CausalPrompt {
    /// The context text.
    pub context: String,
    /// The candidate continuations, in class order (for COPA: the two choices).
    pub candidates: Vec<String>,
    /// The index of the correct candidate.
    pub label: usize,
}

/// A tokenised [`CausalPrompt`], field for field `zo_models::causal::CandidateExample`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedCandidates {
    /// The context tokens (the prefix, e.g. BOS, then the context text's tokens).
    pub context: Vec<u32>,
    /// Each candidate's tokens.
    pub candidates: Vec<Vec<u32>>,
    /// The index of the correct candidate.
    pub label: usize,
}

impl CausalPrompt {
    /// Tokenise with `tokenize` (text → ids, without special tokens), putting `prefix` (e.g. the
    /// BOS id, or nothing) before the context. With `max_length`, the context loses tokens at its
    /// start (after the prefix) until the prefix, the context and the longest candidate fit; the
    /// candidates are never cut. An empty context or candidate, or a limit too small to keep one
    /// context token, is [`DataError::Invalid`].
    pub fn encode<F, E>(
        &self,
        mut tokenize: F,
        prefix: &[u32],
        max_length: Option<usize>,
    ) -> Result<EncodedCandidates>
    where
        F: FnMut(&str) -> std::result::Result<Vec<u32>, E>,
        E: fmt::Display,
    {
        let mut context =
            tokenize(&self.context).map_err(|e| DataError::Tokenizer(e.to_string()))?;
        let candidates = self
            .candidates
            .iter()
            .map(|c| tokenize(c).map_err(|e| DataError::Tokenizer(e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        if context.is_empty() && prefix.is_empty() {
            return Err(DataError::Invalid {
                field: "context",
                message: "the context has no tokens".into(),
            });
        }
        if let Some(i) = candidates.iter().position(Vec::is_empty) {
            return Err(DataError::Invalid {
                field: "candidates",
                message: format!("candidate {i} ({:?}) has no tokens", self.candidates[i]),
            });
        }
        if let Some(limit) = max_length {
            let longest = candidates.iter().map(Vec::len).max().unwrap_or(0);
            let room = limit.saturating_sub(prefix.len() + longest);
            if room == 0 {
                return Err(DataError::Invalid {
                    field: "max_length",
                    message: format!(
                        "{limit} tokens cannot hold the prefix ({}), one context token and the longest candidate ({longest})",
                        prefix.len()
                    ),
                });
            }
            if context.len() > room {
                context.drain(..context.len() - room);
            }
        }
        let mut ids = Vec::with_capacity(prefix.len() + context.len());
        ids.extend_from_slice(prefix);
        ids.extend_from_slice(&context);
        Ok(EncodedCandidates {
            context: ids,
            candidates,
            label: self.label,
        })
    }
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

const YES_NO: &[&str] = &[" Yes", " No"];

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

    /// The masked-LM prompt.
    ///
    /// | task | template | label words |
    /// |---|---|---|
    /// | SST-2 | `<S> It was [MASK] .` | terrible, great |
    /// | SST-5 | `<S> It was [MASK] .` | terrible, bad, okay, good, great |
    /// | TREC | `[MASK] : <S>` | Description, Entity, Expression, Human, Location, Number (LM-BFF's) |
    /// | RTE | `<S1> ? [MASK] , <S2>` | Yes, No |
    /// | SNLI, MNLI | `<S1> ? [MASK] , <S2>` | Yes, Maybe, No |
    /// | CB | `<S1> ? [MASK] , <S2>` | Yes, No, Maybe (the NLI template above applied to CB) |
    ///
    /// The specification gives none for BoolQ, COPA, WSC and WiC: those are [`DataError::Unsupported`].
    pub fn masked_prompt(self) -> Result<MaskedPrompt> {
        const SENTIMENT: &str = "<S> It was [MASK] .";
        const NLI: &str = "<S1> ? [MASK] , <S2>";
        Ok(match self {
            Task::Sst2 => MaskedPrompt {
                template: SENTIMENT,
                label_words: &["terrible", "great"],
            },
            Task::Sst5 => MaskedPrompt {
                template: SENTIMENT,
                label_words: &["terrible", "bad", "okay", "good", "great"],
            },
            Task::Trec => MaskedPrompt {
                template: "[MASK] : <S>",
                label_words: &[
                    "Description",
                    "Entity",
                    "Expression",
                    "Human",
                    "Location",
                    "Number",
                ],
            },
            Task::Rte => MaskedPrompt {
                template: NLI,
                label_words: &["Yes", "No"],
            },
            Task::Snli | Task::Mnli => MaskedPrompt {
                template: NLI,
                label_words: &["Yes", "Maybe", "No"],
            },
            Task::Cb => MaskedPrompt {
                template: NLI,
                label_words: &["Yes", "No", "Maybe"],
            },
            Task::BoolQ | Task::Copa | Task::Wsc | Task::Wic => {
                return Err(DataError::Unsupported {
                    task: self.display_name(),
                    what: "a masked-LM prompt (the specification gives none)".into(),
                });
            }
        })
    }

    /// The causal-LM prompt of an example (see the crate README for every rendering). SST-5,
    /// SNLI and MNLI have none in the specification: [`DataError::Unsupported`]. An example
    /// with too few text fields or an out-of-range label is [`DataError::Invalid`].
    pub fn causal_prompt(self, example: &Example) -> Result<CausalPrompt> {
        if example.texts.len() < self.fields().len() {
            return Err(DataError::Invalid {
                field: "example",
                message: format!(
                    "{} needs {} text fields ({}), got {}",
                    self.display_name(),
                    self.fields().len(),
                    self.fields().join(", "),
                    example.texts.len()
                ),
            });
        }
        if example.label >= self.num_classes() {
            return Err(DataError::Invalid {
                field: "example",
                message: format!(
                    "label {} is out of range for {} ({} classes)",
                    example.label,
                    self.display_name(),
                    self.num_classes()
                ),
            });
        }
        let t = |i: usize| example.text(i);
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (context, candidates) = match self {
            Task::Sst2 => (format!("{} It was", t(0)), words(&[" terrible", " great"])),
            Task::Trec => (
                format!("Question: {}\nType:", t(0)),
                words(&[
                    " Description",
                    " Entity",
                    " Abbreviation",
                    " Human",
                    " Location",
                    " Number",
                ]),
            ),
            Task::Rte => (
                format!(
                    "{} Does this mean that \"{}\" is true? Yes or No?",
                    t(0),
                    t(1)
                ),
                words(YES_NO),
            ),
            Task::Cb => (
                format!(
                    "Suppose {} Can we infer that \"{}\"? Yes, No, or Maybe?",
                    t(0),
                    t(1)
                ),
                words(&[" Yes", " No", " Maybe"]),
            ),
            Task::BoolQ => (format!("{} {}?", t(0), t(1)), words(YES_NO)),
            Task::Wsc => (
                format!(
                    "{} In the previous sentence, does the pronoun \"{}\" refer to {}? Yes or No?",
                    t(0),
                    t(2),
                    t(1)
                ),
                words(YES_NO),
            ),
            Task::Wic => (
                format!(
                    "Does the word \"{}\" have the same meaning in these two sentences? Yes, No? {} {}",
                    t(0),
                    t(1),
                    t(2)
                ),
                words(YES_NO),
            ),
            Task::Copa => {
                let connector = match t(3) {
                    "cause" => "because",
                    "effect" => "so",
                    other => {
                        return Err(DataError::Invalid {
                            field: "example",
                            message: format!(
                                "COPA question must be `cause` or `effect`, got `{other}`"
                            ),
                        });
                    }
                };
                let premise = t(0).trim_end();
                let premise = premise.strip_suffix(['.', '!', '?']).unwrap_or(premise);
                (
                    format!("{premise} {connector}"),
                    vec![
                        format!(" {}", lower_first(t(1))),
                        format!(" {}", lower_first(t(2))),
                    ],
                )
            }
            Task::Sst5 | Task::Snli | Task::Mnli => {
                return Err(DataError::Unsupported {
                    task: self.display_name(),
                    what: "a causal-LM prompt (the specification gives none)".into(),
                });
            }
        };
        Ok(CausalPrompt {
            context,
            candidates,
            label: example.label,
        })
    }
}

/// `s` with its first character lower-cased (COPA's choices continue a sentence).
fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
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
