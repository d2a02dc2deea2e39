//! Templates: the syntax of a prompt with text slots and one mask slot (see the
//! [module](super) documentation).

/// A change to an example's text before it fills a slot, written `<S2:name>` in a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transform {
    /// `trim`: whitespace removed at both ends (Python's `str.strip()`, as the BSZO authors'
    /// RoBERTa templates apply to their fields).
    Trim,
    /// `drop-last`: the last character removed (LM-BFF's `*sent-_i*`, `text[:-1]`).
    DropLast,
    /// `lower-first`: the first character lower-cased (LM-BFF's `*sentl_i*`).
    LowerFirst,
    /// `upper-first`: the first character upper-cased (LM-BFF's `*sentu_i*`).
    UpperFirst,
    /// `question-mark`: `?` appended unless the text already ends with one (BoolQ's questions in
    /// MeZO's and the BSZO authors' templates).
    QuestionMark,
}

impl Transform {
    /// Every transform.
    pub const ALL: [Transform; 5] = [
        Transform::Trim,
        Transform::DropLast,
        Transform::LowerFirst,
        Transform::UpperFirst,
        Transform::QuestionMark,
    ];

    /// The name written in templates.
    pub fn name(self) -> &'static str {
        match self {
            Transform::Trim => "trim",
            Transform::DropLast => "drop-last",
            Transform::LowerFirst => "lower-first",
            Transform::UpperFirst => "upper-first",
            Transform::QuestionMark => "question-mark",
        }
    }

    /// The transform written `name`.
    pub fn from_name(name: &str) -> Option<Transform> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Apply to `text`.
    pub fn apply(self, text: &str) -> String {
        match self {
            Transform::Trim => text.trim().to_string(),
            Transform::DropLast => {
                let mut s = text.to_string();
                s.pop();
                s
            }
            Transform::LowerFirst => map_first(text, |c| c.to_lowercase().collect()),
            Transform::UpperFirst => map_first(text, |c| c.to_uppercase().collect()),
            Transform::QuestionMark => {
                if text.ends_with('?') {
                    text.to_string()
                } else {
                    format!("{text}?")
                }
            }
        }
    }
}

fn map_first(text: &str, f: impl Fn(char) -> String) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => f(c) + chars.as_str(),
        None => String::new(),
    }
}

/// What is wrong with a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template has no `[MASK]` or more than one.
    #[error("template `{template}` must contain exactly one [MASK], found {found}")]
    MaskCount {
        /// The template.
        template: String,
        /// How many it has.
        found: usize,
    },
    /// A slot numbered 0 (`<S0>`) or with a number too large to read.
    #[error("template `{template}`: bad slot `{slot}` (slots are numbered from <S1>)")]
    BadSlot {
        /// The template.
        template: String,
        /// The slot as written.
        slot: String,
    },
    /// The slot numbers skip one (`<S1>` and `<S3>` without `<S2>`).
    #[error(
        "template `{template}` uses <S{used}> but not <S{missing}>: text slots must have no gaps"
    )]
    SlotGap {
        /// The template.
        template: String,
        /// A slot number that is used.
        used: usize,
        /// The lowest one that is not.
        missing: usize,
    },
    /// `<S2:` with no closing `>`.
    #[error("template `{template}`: `{slot}` has no closing `>`")]
    Unclosed {
        /// The template.
        template: String,
        /// The slot's start as written.
        slot: String,
    },
    /// A transform name that is not known.
    #[error(
        "template `{template}`: unknown transform `{name}` in `{slot}` (trim, drop-last, lower-first, upper-first, question-mark)"
    )]
    UnknownTransform {
        /// The template.
        template: String,
        /// The slot as written.
        slot: String,
        /// The unknown name.
        name: String,
    },
    /// The example supplies a different number of texts than the template's slots.
    #[error("template `{template}` takes {expected} text(s), got {found}")]
    TextCount {
        /// The template.
        template: String,
        /// The template's slots.
        expected: usize,
        /// The texts given.
        found: usize,
    },
}

/// One piece of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Literal text: its leading whitespace kept, its trailing whitespace given to the next piece.
    Text(String),
    /// The example's text number `index` (0-based).
    Slot {
        /// Which of the example's texts.
        index: usize,
        /// Whether whitespace precedes it (the text is tokenised with a leading space).
        space: bool,
        /// The changes applied to the text, in order.
        transforms: Vec<Transform>,
    },
    /// The mask slot.
    Mask {
        /// Whether whitespace precedes it in the template (shown by [`Template::render`]; the mask
        /// token absorbs it when tokenised).
        space: bool,
    },
}

/// A parsed prompt template (syntax: the [module documentation](crate::masked)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
    slots: usize,
}

impl Template {
    /// Parse `<S>`/`<S1>`, `<S2>`, …, `<S2:transform,…>`, `[MASK]` and literal text. A `<S`
    /// not followed by digits and `>` or `:` is literal text.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        let mut pending_space = false;
        let flush = |text: &mut String, pieces: &mut Vec<Piece>, pending: &mut bool| {
            let ends_in_space = text.ends_with(char::is_whitespace);
            let trimmed = text.trim_end();
            if !trimmed.is_empty() {
                pieces.push(Piece::Text(trimmed.to_string()));
                *pending = ends_in_space;
            } else if !text.is_empty() {
                *pending = true;
            }
            text.clear();
        };
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("[MASK]") {
                flush(&mut text, &mut pieces, &mut pending_space);
                pieces.push(Piece::Mask {
                    space: pending_space,
                });
                pending_space = false;
                rest = after;
                continue;
            }
            if let Some((slot, after)) = parse_slot(template, rest)? {
                flush(&mut text, &mut pieces, &mut pending_space);
                let (index, transforms) = slot;
                pieces.push(Piece::Slot {
                    index,
                    space: pending_space,
                    transforms,
                });
                pending_space = false;
                rest = after;
                continue;
            }
            let c = rest.chars().next().unwrap_or(' ');
            text.push(c);
            rest = &rest[c.len_utf8()..];
        }
        flush(&mut text, &mut pieces, &mut pending_space);
        let masks = pieces
            .iter()
            .filter(|p| matches!(p, Piece::Mask { .. }))
            .count();
        if masks != 1 {
            return Err(TemplateError::MaskCount {
                template: template.to_string(),
                found: masks,
            });
        }
        let mut indices: Vec<usize> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Slot { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        indices.sort_unstable();
        indices.dedup();
        if let Some(missing) = indices.iter().enumerate().position(|(i, &s)| i != s) {
            return Err(TemplateError::SlotGap {
                template: template.to_string(),
                used: indices[missing] + 1,
                missing: missing + 1,
            });
        }
        Ok(Self {
            source: template.to_string(),
            pieces,
            slots: indices.len(),
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parsed pieces.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// How many texts an example supplies.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The text that fills slot piece `index` (transformed, with its leading space), as it is
    /// tokenised.
    fn slot_text(index: usize, space: bool, transforms: &[Transform], texts: &[&str]) -> String {
        let mut text = texts[index].to_string();
        for t in transforms {
            text = t.apply(&text);
        }
        if space { format!(" {text}") } else { text }
    }

    /// Each piece's text as it is tokenised (`None` for the mask), for an example's texts.
    pub(super) fn piece_texts<S: AsRef<str>>(
        &self,
        texts: &[S],
    ) -> Result<Vec<Option<String>>, TemplateError> {
        if texts.len() != self.slots {
            return Err(TemplateError::TextCount {
                template: self.source.clone(),
                expected: self.slots,
                found: texts.len(),
            });
        }
        let texts: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        Ok(self
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => Some(t.clone()),
                Piece::Slot {
                    index,
                    space,
                    transforms,
                } => Some(Self::slot_text(*index, *space, transforms, &texts)),
                Piece::Mask { .. } => None,
            })
            .collect())
    }

    /// The prompt as text: the pieces' texts concatenated as they are tokenised, with `mask`
    /// (e.g. `"[MASK]"`) at the mask slot, preceded by a space where the template has one. No
    /// special tokens.
    pub fn render<S: AsRef<str>>(&self, texts: &[S], mask: &str) -> Result<String, TemplateError> {
        let mut out = String::new();
        for (piece, text) in self.pieces.iter().zip(self.piece_texts(texts)?) {
            match (piece, text) {
                (_, Some(t)) => out.push_str(&t),
                (Piece::Mask { space }, None) => {
                    if *space {
                        out.push(' ');
                    }
                    out.push_str(mask);
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// A slot at the start of `rest` (`<S>`, `<S2>`, `<S2:t,…>`): its 0-based index, its transforms
/// and what follows it; `None` if `rest` does not start with one.
#[allow(clippy::type_complexity)]
fn parse_slot<'a>(
    template: &str,
    rest: &'a str,
) -> Result<Option<((usize, Vec<Transform>), &'a str)>, TemplateError> {
    let Some(after) = rest.strip_prefix("<S") else {
        return Ok(None);
    };
    let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, tail) = after.split_at(digits);
    let (transforms, after) = if let Some(after) = tail.strip_prefix('>') {
        (Vec::new(), after)
    } else if let Some(list) = tail.strip_prefix(':') {
        let Some(close) = list.find('>') else {
            return Err(TemplateError::Unclosed {
                template: template.to_string(),
                slot: format!("<S{number}:"),
            });
        };
        let slot = format!("<S{number}:{}>", &list[..close]);
        let transforms = list[..close]
            .split(',')
            .map(|name| {
                Transform::from_name(name.trim()).ok_or_else(|| TemplateError::UnknownTransform {
                    template: template.to_string(),
                    slot: slot.clone(),
                    name: name.trim().to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        (transforms, &list[close + 1..])
    } else {
        return Ok(None);
    };
    let index = if number.is_empty() {
        0
    } else {
        number
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .ok_or_else(|| TemplateError::BadSlot {
                template: template.to_string(),
                slot: format!("<S{number}>"),
            })?
    };
    Ok(Some(((index, transforms), after)))
}
