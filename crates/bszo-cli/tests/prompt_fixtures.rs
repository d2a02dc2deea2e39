//! The prompts of every task × head against `tests/fixtures/prompts/prompts.json`, which
//! `tests/fixtures/prompts/generate.py` writes from re-implementations of the official template
//! code (MeZO, LM-BFF, the BSZO authors' code; each case cites repository, path and lines): the
//! rendered strings always, the token ids with SPLADE-tiny's and SmolLM2-135M's tokenizers when
//! the provisioned models are present (required when `BSZO_REQUIRE_MODELS` is set).
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bszo_cli::config::{ModelKind, ModelSection};
use bszo_cli::load::{self, gguf_tokenizer};
use bszo_cli::task_model::{CausalTokenizer, Head, causal_example, masked_texts};
use serde::Deserialize;
use zo_data::{Example, NliTemplate, Task};
use zo_models::{Precision, Template};

#[derive(Deserialize)]
struct Fixture {
    generator: String,
    tokenizers: Tokenizers,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Tokenizers {
    masked: TokenizerFile,
    causal: TokenizerFile,
}

#[derive(Deserialize)]
struct TokenizerFile {
    file: String,
    #[serde(default)]
    prefix: Vec<u32>,
}

#[derive(Deserialize)]
struct Cite {
    repository: String,
    path: String,
    lines: String,
}

#[derive(Deserialize)]
struct Case {
    task: String,
    head: String,
    source: BTreeMap<String, serde_json::Value>,
    texts: Vec<String>,
    label: usize,
    official: Vec<Cite>,
    // Masked.
    #[serde(default)]
    nli_template: Option<String>,
    #[serde(default)]
    rendered: Option<String>,
    #[serde(default)]
    input_ids: Vec<u32>,
    #[serde(default)]
    mask_position: Option<usize>,
    #[serde(default)]
    label_words: Vec<String>,
    #[serde(default)]
    label_word_ids: Vec<u32>,
    // Causal.
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    candidates: Vec<String>,
    #[serde(default)]
    full_ids: Vec<Vec<u32>>,
    #[serde(default)]
    option_lens: Vec<usize>,
}

impl Case {
    fn task(&self) -> Task {
        Task::from_name(&self.task).unwrap()
    }

    fn example(&self) -> Example {
        Example::new(self.texts.clone(), self.label)
    }

    fn nli(&self) -> NliTemplate {
        self.nli_template
            .as_deref()
            .map(|n| NliTemplate::from_name(n).unwrap())
            .unwrap_or_default()
    }

    fn name(&self) -> String {
        format!(
            "{} {} {} {:?}",
            self.task,
            self.head,
            self.nli_template.as_deref().unwrap_or("-"),
            self.source
        )
    }
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prompts/prompts.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn is_nli(task: Task) -> bool {
    matches!(task, Task::Rte | Task::Cb | Task::Snli | Task::Mnli)
}

#[test]
fn the_fixture_covers_every_task_and_head_with_cited_real_examples() {
    let f = fixture();
    assert!(f.generator.ends_with("generate.py"));
    for task in Task::ALL {
        let count = |head: &str, nli: Option<&str>| {
            f.cases
                .iter()
                .filter(|c| c.task() == task && c.head == head && c.nli_template.as_deref() == nli)
                .count()
        };
        assert_eq!(count("causal", None), 2, "{task} causal");
        match task.masked_prompt() {
            Ok(_) if is_nli(task) => {
                for nli in NliTemplate::ALL {
                    assert_eq!(count("masked", Some(nli.name())), 2, "{task} masked {nli}");
                }
            }
            Ok(_) => assert_eq!(count("masked", None), 2, "{task} masked"),
            Err(_) => assert_eq!(
                f.cases
                    .iter()
                    .filter(|c| c.task() == task && c.head == "masked")
                    .count(),
                0,
                "{task} has no masked prompt"
            ),
        }
    }
    for c in &f.cases {
        let file = c.source["file"].as_str().unwrap();
        assert!(file.starts_with(&format!("{}/", c.task)), "{}", c.name());
        assert!(
            c.source.contains_key("line") || c.source.contains_key("key"),
            "{}",
            c.name()
        );
        assert!(!c.official.is_empty(), "{}", c.name());
        for cite in &c.official {
            assert!(
                [
                    "princeton-nlp/MeZO",
                    "princeton-nlp/LM-BFF",
                    "AeonianQuill/BSZO"
                ]
                .contains(&cite.repository.as_str()),
                "{}",
                c.name()
            );
            assert!(
                !cite.path.is_empty() && !cite.lines.is_empty(),
                "{}",
                c.name()
            );
        }
        assert_eq!(c.texts.len(), c.task().fields().len(), "{}", c.name());
    }
}

#[test]
fn rendered_prompts_match_the_official_templates() {
    for c in fixture().cases {
        let task = c.task();
        let ex = c.example();
        match c.head.as_str() {
            "masked" => {
                let prompt = task.masked_prompt_with(c.nli()).unwrap();
                assert_eq!(prompt.label_words, c.label_words, "{}", c.name());
                let template = Template::parse(prompt.template).unwrap();
                assert_eq!(template.slots(), prompt.slots(), "{}", c.name());
                let rendered = template.render(&prompt.slot_texts(&ex), "[MASK]").unwrap();
                assert_eq!(Some(rendered), c.rendered, "{}", c.name());
            }
            "causal" => {
                let p = task.causal_prompt(&ex).unwrap();
                assert_eq!(Some(p.context), c.context, "{}", c.name());
                assert_eq!(p.candidates, c.candidates, "{}", c.name());
                assert_eq!(p.label, c.label, "{}", c.name());
            }
            other => panic!("unknown head {other}"),
        }
    }
}

/// The model file, or `None` (skip) when it is absent; absent under `BSZO_REQUIRE_MODELS` fails.
fn model_file(rel: &str, test: &str) -> Option<PathBuf> {
    bszo_testkit::asset(
        test,
        bszo_testkit::models_dir().join(rel),
        "crates/zo-models/scripts/provision.sh",
    )
}

#[test]
fn masked_token_ids_match_lm_bff_and_the_bszo_authors_tokenisation_with_splade_tiny() {
    let f = fixture();
    // The fixture names the tokenizer file; the model is its folder.
    let Some(file) = model_file(&f.tokenizers.masked.file, "masked token ids") else {
        return;
    };
    let folder = file.parent().unwrap().to_path_buf();
    let section = ModelSection {
        name: folder.display().to_string(),
        kind: Some(bszo_cli::config::ModelKind::Masked),
        precision: zo_models::Precision::F32,
        rounding: Default::default(),
        max_length: 512,
        tokenizer: None,
    };
    let mut checked = 0;
    for c in f.cases.iter().filter(|c| c.head == "masked") {
        let loaded = load::load(
            &section,
            Some(ModelKind::Masked),
            Precision::F32,
            c.task(),
            c.nli(),
        )
        .unwrap();
        let Head::Masked(clf) = &loaded.head else {
            panic!("{}: not a masked head", c.name());
        };
        let ex = c.example();
        let (ids, mask_at) = clf.encode(&masked_texts(clf, &ex)).unwrap();
        assert_eq!(ids, c.input_ids, "{}", c.name());
        assert_eq!(Some(mask_at), c.mask_position, "{}", c.name());
        assert_eq!(clf.label_ids(), c.label_word_ids.as_slice(), "{}", c.name());
        checked += 1;
    }
    assert_eq!(checked, 26, "masked cases");
}

#[test]
fn causal_token_ids_match_mezo_encode_prompt_with_smollm2() {
    let f = fixture();
    let Some(path) = model_file(&f.tokenizers.causal.file, "causal token ids") else {
        return;
    };
    // As `bszo finetune` loads a GGUF checkpoint's tokenizer.
    let (tokenizer, prefix) = gguf_tokenizer(&path, None).unwrap();
    assert_eq!(prefix, f.tokenizers.causal.prefix);
    let tokenizer = CausalTokenizer::Hf(tokenizer);
    let mut checked = 0;
    for c in f.cases.iter().filter(|c| c.head == "causal") {
        let enc = causal_example(c.task(), &c.example(), &tokenizer, &prefix, None).unwrap();
        assert_eq!(enc.label, c.label, "{}", c.name());
        assert_eq!(enc.candidates.len(), c.full_ids.len(), "{}", c.name());
        for (i, cand) in enc.candidates.iter().enumerate() {
            // MeZO scores the last option_len tokens of the whole text's encoding: the context's
            // and the candidate's tokens, encoded apart, must be exactly that sequence.
            let joined: Vec<u32> = enc.context.iter().chain(cand).copied().collect();
            assert_eq!(joined, c.full_ids[i], "{} candidate {i}", c.name());
            assert_eq!(cand.len(), c.option_lens[i], "{} candidate {i}", c.name());
        }
        checked += 1;
    }
    assert_eq!(checked, 22);
}
