//! Each task's prompts: the masked-LM template and label words, the causal-LM context and
//! candidates.
//!
//! Prompts are written as the official code writes them (see the crate README for every rendering
//! and its source):
//!
//! - masked LMs: LM-BFF's templates and label words (princeton-nlp/LM-BFF `run_experiment.sh`, the
//!   same in MeZO's `medium_models/run_fewshot.sh`), and the BSZO authors' RoBERTa templates
//!   (AeonianQuill/BSZO `templates.py`) for BoolQ, WiC and the [`NliTemplate::Spaced`]
//!   alternative; a template in the syntax of `zo_models::masked::Template` plus one label word
//!   per class ([`MaskedPrompt`]);
//! - causal LMs: MeZO's `large_models/templates.py` (princeton-nlp/MeZO) and, for TREC, SNLI and
//!   MNLI, the BSZO authors' `templates.py`: a context string and one candidate continuation per
//!   class, the label being the index of the correct candidate ([`CausalPrompt`]);
//!   [`CausalPrompt::encode`] tokenises it into the fields of `zo_models::causal::CandidateExample`.
//!
//! Combinations the official code does not define are [`DataError::Unsupported`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::task::{Example, Task};

/// A masked-LM prompt: a template in `zo_models::masked::Template` syntax and one label word per
/// class (class `i` is `label_words[i]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MaskedPrompt {
    /// The template, e.g. `"<S> It was[MASK]."`.
    pub template: &'static str,
    /// The label words, in class order.
    pub label_words: &'static [&'static str],
}

impl MaskedPrompt {
    /// The number of the example's texts the template uses: its highest slot number (`<S>` is
    /// `<S1>`; `<S2:lower-first>` counts as `<S2>`).
    pub fn slots(&self) -> usize {
        let mut most = 0;
        let mut rest = self.template;
        while let Some(at) = rest.find("<S") {
            let after = &rest[at + 2..];
            let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if after[digits..].starts_with(['>', ':']) {
                let n = if digits == 0 {
                    1
                } else {
                    after[..digits].parse().unwrap_or(0)
                };
                most = most.max(n);
            }
            rest = after;
        }
        most
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
}

/// The masked-LM template of the entailment tasks (RTE, CB, SNLI, MNLI).
///
/// Serialises as its name (`"lm-bff"`, `"spaced"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NliTemplate {
    /// LM-BFF's `*cls**sent-_0*?*mask*,*+sentl_1**sep+*` (princeton-nlp/LM-BFF
    /// `run_experiment.sh`, also MeZO's `medium_models/run_fewshot.sh`):
    /// `<S1:drop-last>?[MASK], <S2:lower-first>` — the premise loses its last character, `?` and
    /// `,` are tokens of their own, the hypothesis starts in lower case.
    #[default]
    LmBff,
    /// The BSZO authors' RoBERTa template `f"{premise} ? <mask> , {hypothesis}"` (AeonianQuill/BSZO
    /// `templates.py`, `RTETemplateMLM` and siblings): `<S1:trim> ? [MASK] , <S2:trim>`.
    Spaced,
}

impl NliTemplate {
    /// Both templates.
    pub const ALL: [NliTemplate; 2] = [NliTemplate::LmBff, NliTemplate::Spaced];

    /// The name (`lm-bff`, `spaced`).
    pub fn name(self) -> &'static str {
        match self {
            NliTemplate::LmBff => "lm-bff",
            NliTemplate::Spaced => "spaced",
        }
    }

    /// The template named `name` (case-insensitive; `_` works for `-`).
    pub fn from_name(name: &str) -> Result<Self> {
        let key = name.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|t| t.name() == key)
            .ok_or_else(|| DataError::Invalid {
                field: "nli_template",
                message: format!("unknown NLI template `{name}` (expected lm-bff or spaced)"),
            })
    }

    /// The template string in `zo_models::masked::Template` syntax.
    pub fn template(self) -> &'static str {
        match self {
            NliTemplate::LmBff => "<S1:drop-last>?[MASK], <S2:lower-first>",
            NliTemplate::Spaced => "<S1:trim> ? [MASK] , <S2:trim>",
        }
    }
}

impl fmt::Display for NliTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for NliTemplate {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        NliTemplate::from_name(s)
    }
}

/// A causal-LM prompt: the context, one candidate continuation per class, and the correct one.
///
/// `context + candidate` is the full text that a causal LM scores: a candidate starts with the
/// space that separates it from the context where the template has one (`" great"` after
/// `… It was`), and with no space after a context that ends in a newline (`"Yes"` after
/// `… Yes or No?\n`).
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

impl Task {
    /// The masked-LM prompt, with LM-BFF's template for the entailment tasks
    /// (`masked_prompt_with(NliTemplate::LmBff)`).
    pub fn masked_prompt(self) -> Result<MaskedPrompt> {
        self.masked_prompt_with(NliTemplate::default())
    }

    /// The masked-LM prompt, as the official code writes it, in the syntax of
    /// `zo_models::masked::Template` (`[MASK]` followed by `.` with no space is LM-BFF's `*mask*.`:
    /// the `.` is a token of its own, not byte-level BPE's `Ġ.`):
    ///
    /// | task | template | label words | source |
    /// |---|---|---|---|
    /// | SST-2 | `<S> It was[MASK].` | terrible, great | LM-BFF `run_experiment.sh` `*cls**sent_0*_It_was*mask*.*sep+*` |
    /// | SST-5 | `<S> It was[MASK].` | terrible, bad, okay, good, great | the same, LM-BFF's SST-5 mapping |
    /// | TREC | `[MASK]: <S>` | Description, Entity, Expression, Human, Location, Number | LM-BFF `*cls**mask*:*+sent_0**sep+*` |
    /// | RTE | `nli` | Yes, No | LM-BFF (or the BSZO authors' `RTETemplateMLM`) |
    /// | SNLI, MNLI | `nli` | Yes, Maybe, No | LM-BFF (or `SNLITemplateMLM`, `MNLITemplateMLM`) |
    /// | CB | `nli` | Yes, No, Maybe | the NLI template with the BSZO authors' `CBTemplateMLM` label words |
    /// | BoolQ | `<S1:trim> <S2:trim,question-mark,upper-first> [MASK] .` | Yes, No | the BSZO authors' `BoolQTemplateMLM` |
    /// | WiC | `<S2:trim> <S3:trim> Does the word "<S1>" have the same meaning? [MASK] .` | Yes, No | the BSZO authors' `WICTemplateMLM` |
    ///
    /// `nli` is [`NliTemplate::template`]. COPA and WSC have no masked-LM prompt in the official
    /// code: [`DataError::Unsupported`].
    pub fn masked_prompt_with(self, nli: NliTemplate) -> Result<MaskedPrompt> {
        const SENTIMENT: &str = "<S> It was[MASK].";
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
                template: "[MASK]: <S>",
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
                template: nli.template(),
                label_words: &["Yes", "No"],
            },
            Task::Snli | Task::Mnli => MaskedPrompt {
                template: nli.template(),
                label_words: &["Yes", "Maybe", "No"],
            },
            Task::Cb => MaskedPrompt {
                template: nli.template(),
                label_words: &["Yes", "No", "Maybe"],
            },
            Task::BoolQ => MaskedPrompt {
                template: "<S1:trim> <S2:trim,question-mark,upper-first> [MASK] .",
                label_words: &["Yes", "No"],
            },
            Task::Wic => MaskedPrompt {
                template: "<S2:trim> <S3:trim> Does the word \"<S1>\" have the same meaning? [MASK] .",
                label_words: &["Yes", "No"],
            },
            Task::Copa | Task::Wsc => {
                return Err(DataError::Unsupported {
                    task: self.display_name(),
                    what: "a masked-LM prompt (the official code has none)".into(),
                });
            }
        })
    }

    /// The causal-LM prompt of an example, as the official code writes it: the context is the
    /// template's `encode(...)` and each candidate what its `verbalize(...)` adds to it, both
    /// with spaces at either end removed (MeZO's `large_models/utils.py` `encode_prompt`):
    ///
    /// | task | context | candidates | source |
    /// |---|---|---|---|
    /// | SST-2 | `<sentence, trimmed> It was` | ` terrible` \| ` great` | MeZO `SST2Template` |
    /// | SST-5 | `<sentence, trimmed> It was` | ` terrible` \| ` bad` \| ` okay` \| ` good` \| ` great` | `SST2Template` with LM-BFF's SST-5 words |
    /// | TREC | `Question: <q>\nType:` | ` Description` \| ` Entity` \| ` Abbreviation` \| ` Human` \| ` Location` \| ` Number` | BSZO authors' `TRECTemplate` |
    /// | RTE | `<p>\nDoes this mean that "<h>" is true? Yes or No?\n` | `Yes` \| `No` | MeZO `RTETemplate` |
    /// | CB | `Suppose <p> Can we infer that "<h>"? Yes, No, or Maybe?\n` | `Yes` \| `No` \| `Maybe` | MeZO `CBTemplate` |
    /// | SNLI, MNLI | `<p>\nQuestion: <h> True, False, or Neither?\n` | `Yes` \| `Maybe` \| `No` | BSZO authors' `SNLITemplate`, `MNLITemplate` |
    /// | BoolQ | `<passage> <Question?>\n` | `Yes` \| `No` | MeZO `BoolQTemplateV3` (its default) |
    /// | COPA | `<premise without a final .> so` / `because` | ` <choice>` | MeZO `CopaTemplate` |
    /// | WSC | `<text>\nIn the previous sentence, does the pronoun "<span2, lower-cased>" refer to <span1>? Yes or No?\n` | `Yes` \| `No` | MeZO `WSCTemplate` |
    /// | WiC | `Does the word "<w>" have the same meaning in these two sentences? Yes, No?\n<s1>\n<s2>\n` | `Yes` \| `No` | MeZO `WICTemplate` |
    ///
    /// BoolQ's question gets `?` only when it has none and its first letter capitalised; COPA's
    /// choices have their first word lower-cased unless it is `I`. An example with too few text
    /// fields, an out-of-range label or a COPA question other than `cause`/`effect` is
    /// [`DataError::Invalid`].
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
        // (context, the text each candidate adds after it).
        let (context, candidates): (String, Vec<String>) = match self {
            Task::Sst2 | Task::Sst5 => {
                let words: &[&str] = if self == Task::Sst2 {
                    &["terrible", "great"]
                } else {
                    &["terrible", "bad", "okay", "good", "great"]
                };
                (
                    format!("{} It was", t(0).trim()),
                    words.iter().map(|w| format!(" {w}")).collect(),
                )
            }
            Task::Trec => (
                format!("Question: {}\nType:", t(0)),
                [
                    "Description",
                    "Entity",
                    "Abbreviation",
                    "Human",
                    "Location",
                    "Number",
                ]
                .iter()
                .map(|w| format!(" {w}"))
                .collect(),
            ),
            Task::Rte => (
                format!(
                    "{}\nDoes this mean that \"{}\" is true? Yes or No?\n",
                    t(0),
                    t(1)
                ),
                words(&["Yes", "No"]),
            ),
            Task::Cb => (
                format!(
                    "Suppose {} Can we infer that \"{}\"? Yes, No, or Maybe?\n",
                    t(0),
                    t(1)
                ),
                words(&["Yes", "No", "Maybe"]),
            ),
            Task::Snli | Task::Mnli => (
                format!("{}\nQuestion: {} True, False, or Neither?\n", t(0), t(1)),
                words(&["Yes", "Maybe", "No"]),
            ),
            Task::BoolQ => {
                let question = t(1);
                let question = if question.ends_with('?') {
                    question.to_string()
                } else {
                    format!("{question}?")
                };
                (
                    format!("{} {}\n", t(0), upper_first(&question)),
                    words(&["Yes", "No"]),
                )
            }
            Task::Wsc => (
                format!(
                    "{}\nIn the previous sentence, does the pronoun \"{}\" refer to {}? Yes or No?\n",
                    t(0),
                    t(2).to_lowercase(),
                    t(1)
                ),
                words(&["Yes", "No"]),
            ),
            Task::Wic => (
                format!(
                    "Does the word \"{}\" have the same meaning in these two sentences? Yes, No?\n{}\n{}\n",
                    t(0),
                    t(1),
                    t(2)
                ),
                words(&["Yes", "No"]),
            ),
            Task::Copa => {
                let connector = match t(3) {
                    "cause" => " because ",
                    "effect" => " so ",
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
                let premise = premise.strip_suffix('.').unwrap_or(premise);
                (
                    format!("{premise}{connector}"),
                    vec![copa_choice(t(1)), copa_choice(t(2))],
                )
            }
        };
        // MeZO strips spaces (only spaces) at both ends of the context and of each full text; the
        // candidate is what the full text adds to the context.
        let full: Vec<String> = candidates
            .iter()
            .map(|c| format!("{context}{c}").trim_matches(' ').to_string())
            .collect();
        let context = context.trim_matches(' ').to_string();
        let candidates = full
            .into_iter()
            .map(|f| f.strip_prefix(context.as_str()).unwrap_or(&f).to_string())
            .collect();
        Ok(CausalPrompt {
            context,
            candidates,
            label: example.label,
        })
    }
}

impl Task {
    /// The surface-form-competition (SFC) prompt of an example: the context that a candidate's
    /// log-likelihood is measured against when calibrating a causal LM's scores (Holtzman et al.
    /// 2021, "Surface Form Competition: Why the Highest Probability Answer Isn't Always Right";
    /// MeZO's `--sfc`, princeton-nlp/MeZO `large_models/run.py`). The candidates and label are
    /// those of [`Task::causal_prompt`]; the context is the template's `encode_sfc(...)` with
    /// spaces at either end removed (MeZO's `large_models/utils.py` `encode_prompt`):
    ///
    /// | task | SFC context | source |
    /// |---|---|---|
    /// | SST-2, SST-5 | `It was` | MeZO `SST2Template.encode_sfc` (`" It was"`) |
    /// | COPA | `so` (effect) / `because` (cause) | MeZO `CopaTemplate.encode_sfc` (the conjunction, stripped) |
    /// | BoolQ, RTE, CB, WSC, WiC | empty (the candidate alone) | MeZO `BoolQTemplateV3`, `RTETemplate`, `CBTemplate`, `WSCTemplate`, `WICTemplate` |
    /// | TREC | `Question: \nType:` | none in MeZO: the context with the example's texts empty |
    /// | SNLI, MNLI | `\nQuestion:  True, False, or Neither?\n` | none in MeZO: the context with the example's texts empty |
    ///
    /// The same for every example of a task except COPA (whose candidates are the example's
    /// choices). An empty context is scored after the tokenizer's prefix (e.g. BOS) alone. The
    /// errors are those of [`Task::causal_prompt`].
    pub fn causal_sfc_prompt(self, example: &Example) -> Result<CausalPrompt> {
        let full = self.causal_prompt(example)?;
        let context = match self {
            Task::Sst2 | Task::Sst5 => "It was".to_string(),
            // `causal_prompt` has checked the question.
            Task::Copa if example.text(3) == "cause" => "because".to_string(),
            Task::Copa => "so".to_string(),
            Task::BoolQ | Task::Rte | Task::Cb | Task::Wsc | Task::Wic => String::new(),
            Task::Trec | Task::Snli | Task::Mnli => {
                let mut empty = example.clone();
                for text in empty.texts.iter_mut().take(self.fields().len()) {
                    text.clear();
                }
                self.causal_prompt(&empty)?.context
            }
        };
        Ok(CausalPrompt {
            context,
            candidates: full.candidates,
            label: full.label,
        })
    }
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

/// `s` with its first character upper-cased (Python's `s[0].upper() + s[1:]`).
fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A COPA choice as MeZO's `CopaTemplate.capitalize` ("correct") writes it: its first word (up to
/// the first space) lower-cased unless it is `I`.
fn copa_choice(choice: &str) -> String {
    let (first, rest) = match choice.split_once(' ') {
        Some((first, rest)) => (first, Some(rest)),
        None => (choice, None),
    };
    let first = if first == "I" {
        first.to_string()
    } else {
        first.to_lowercase()
    };
    match rest {
        Some(rest) => format!("{first} {rest}"),
        None => first,
    }
}
