//! Exact prompt renderings for every task, built in memory (the fixtures of real examples with
//! token ids are in crates/bszo-cli/tests/prompt_fixtures.rs).

use zo_data::{DataError, Example, NliTemplate, Task};

#[test]
fn masked_templates_and_label_words() {
    let m = Task::Sst2.masked_prompt().unwrap();
    assert_eq!(m.template, "<S> It was[MASK].");
    assert_eq!(m.label_words, ["terrible", "great"]);
    let ex = Example::new(["a gorgeous film ."], 1);
    assert_eq!(m.slots(), 1);
    assert_eq!(m.slot_texts(&ex), ["a gorgeous film ."]);

    let m = Task::Sst5.masked_prompt().unwrap();
    assert_eq!(m.template, "<S> It was[MASK].");
    assert_eq!(m.label_words, ["terrible", "bad", "okay", "good", "great"]);

    let m = Task::Trec.masked_prompt().unwrap();
    assert_eq!(m.template, "[MASK]: <S>");
    assert_eq!(
        m.label_words,
        [
            "Description",
            "Entity",
            "Expression",
            "Human",
            "Location",
            "Number"
        ]
    );

    let pair = Example::new(["A man sleeps.", "A person rests."], 0);
    for task in [Task::Mnli, Task::Snli] {
        let m = task.masked_prompt().unwrap();
        assert_eq!(m.template, "<S1:drop-last>?[MASK], <S2:lower-first>");
        assert_eq!(m, task.masked_prompt_with(NliTemplate::LmBff).unwrap());
        assert_eq!(m.label_words, ["Yes", "Maybe", "No"]);
        assert_eq!(task.labels(), ["entailment", "neutral", "contradiction"]);
        assert_eq!(m.slots(), 2);
        assert_eq!(m.slot_texts(&pair), ["A man sleeps.", "A person rests."]);
        let spaced = task.masked_prompt_with(NliTemplate::Spaced).unwrap();
        assert_eq!(spaced.template, "<S1:trim> ? [MASK] , <S2:trim>");
        assert_eq!(spaced.label_words, m.label_words);
    }
    let m = Task::Rte.masked_prompt().unwrap();
    assert_eq!(m.template, NliTemplate::LmBff.template());
    assert_eq!(m.label_words, ["Yes", "No"]);
    assert_eq!(Task::Rte.labels(), ["entailment", "not_entailment"]);
    let m = Task::Cb.masked_prompt_with(NliTemplate::Spaced).unwrap();
    assert_eq!(m.template, "<S1:trim> ? [MASK] , <S2:trim>");
    assert_eq!(m.label_words, ["Yes", "No", "Maybe"]);
    assert_eq!(
        Task::Cb.labels(),
        ["entailment", "contradiction", "neutral"]
    );

    let m = Task::BoolQ.masked_prompt().unwrap();
    assert_eq!(
        m.template,
        "<S1:trim> <S2:trim,question-mark,upper-first> [MASK] ."
    );
    assert_eq!(m.label_words, ["Yes", "No"]);
    assert_eq!(Task::BoolQ.labels(), ["true", "false"]);
    let m = Task::Wic.masked_prompt().unwrap();
    assert_eq!(
        m.template,
        "<S2:trim> <S3:trim> Does the word \"<S1>\" have the same meaning? [MASK] ."
    );
    assert_eq!(m.slots(), 3);
    let wic = Example::new(["bank", "A river bank.", "A savings bank."], 0);
    assert_eq!(
        m.slot_texts(&wic),
        ["bank", "A river bank.", "A savings bank."]
    );

    for task in [Task::Copa, Task::Wsc] {
        let err = task.masked_prompt().unwrap_err();
        assert!(matches!(err, DataError::Unsupported { .. }), "{task}");
        assert!(err.to_string().contains(task.display_name()));
    }
}

#[test]
fn nli_template_names() {
    for t in NliTemplate::ALL {
        assert_eq!(NliTemplate::from_name(t.name()).unwrap(), t);
        assert_eq!(t.to_string().parse::<NliTemplate>().unwrap(), t);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            format!("\"{}\"", t.name())
        );
    }
    assert_eq!(
        NliTemplate::from_name("LM_BFF").unwrap(),
        NliTemplate::LmBff
    );
    assert_eq!(NliTemplate::default(), NliTemplate::LmBff);
    let err = NliTemplate::from_name("gpt3").unwrap_err();
    assert!(err.to_string().contains("gpt3"), "{err}");
}

#[test]
fn causal_renderings() {
    let p = Task::Sst2
        .causal_prompt(&Example::new([" a gorgeous film . "], 1))
        .unwrap();
    assert_eq!(p.context, "a gorgeous film . It was");
    assert_eq!(p.candidates, [" terrible", " great"]);
    assert_eq!(p.label, 1);
    let p = Task::Sst5
        .causal_prompt(&Example::new(["a gorgeous film ."], 4))
        .unwrap();
    assert_eq!(p.context, "a gorgeous film . It was");
    assert_eq!(
        p.candidates,
        [" terrible", " bad", " okay", " good", " great"]
    );

    let p = Task::Rte
        .causal_prompt(&Example::new(["A man sleeps.", "A person rests."], 1))
        .unwrap();
    assert_eq!(
        p.context,
        "A man sleeps.\nDoes this mean that \"A person rests.\" is true? Yes or No?\n"
    );
    assert_eq!(p.candidates, ["Yes", "No"]);
    assert_eq!(p.label, 1);

    let p = Task::Cb
        .causal_prompt(&Example::new(["It rained.", "the ground is wet"], 2))
        .unwrap();
    assert_eq!(
        p.context,
        "Suppose It rained. Can we infer that \"the ground is wet\"? Yes, No, or Maybe?\n"
    );
    assert_eq!(p.candidates, ["Yes", "No", "Maybe"]);
    assert_eq!(p.label, 2);

    for task in [Task::Snli, Task::Mnli] {
        let p = task
            .causal_prompt(&Example::new(["A man sleeps. ", "A person rests."], 1))
            .unwrap();
        assert_eq!(
            p.context,
            "A man sleeps. \nQuestion: A person rests. True, False, or Neither?\n"
        );
        assert_eq!(p.candidates, ["Yes", "Maybe", "No"]);
    }

    // BoolQ: "?" added only when missing, the first letter capitalised, a newline.
    let boolq = |q: &str| {
        Task::BoolQ
            .causal_prompt(&Example::new(["Paris is in France.", q], 0))
            .unwrap()
    };
    let p = boolq("is paris in france");
    assert_eq!(p.context, "Paris is in France. Is paris in france?\n");
    assert_eq!(p.candidates, ["Yes", "No"]);
    assert_eq!(
        boolq("is paris in france?").context,
        "Paris is in France. Is paris in france?\n"
    );

    // WSC: the pronoun lower-cased.
    let p = Task::Wsc
        .causal_prompt(&Example::new(["He said the cup fell.", "The cup", "He"], 0))
        .unwrap();
    assert_eq!(
        p.context,
        "He said the cup fell.\nIn the previous sentence, does the pronoun \"he\" refer to The cup? Yes or No?\n"
    );
    assert_eq!(p.candidates, ["Yes", "No"]);

    let p = Task::Wic
        .causal_prompt(&Example::new(
            ["bank", "A river bank.", "A savings bank."],
            1,
        ))
        .unwrap();
    assert_eq!(
        p.context,
        "Does the word \"bank\" have the same meaning in these two sentences? Yes, No?\nA river bank.\nA savings bank.\n"
    );
    assert_eq!(p.candidates, ["Yes", "No"]);
    assert_eq!(p.label, 1);

    let copa = |premise: &str, c1: &str, question: &str| {
        Task::Copa.causal_prompt(&Example::new(
            [premise, c1, "His stubble disappeared.", question],
            1,
        ))
    };
    let p = copa(
        "The man slid the razor across his chin.",
        "His stubble grew.",
        "effect",
    )
    .unwrap();
    assert_eq!(p.context, "The man slid the razor across his chin so");
    assert_eq!(
        p.candidates,
        [" his stubble grew.", " his stubble disappeared."]
    );
    assert_eq!(p.label, 1);
    let p = copa("I shaved!", "I cut myself.", "cause").unwrap();
    // Only a final "." is dropped; "I" stays capitalised; the whole first word is lower-cased.
    assert_eq!(p.context, "I shaved! because");
    assert_eq!(p.candidates[0], " I cut myself.");
    let p = copa("It rained.", "NASA said so.", "cause").unwrap();
    assert_eq!(p.candidates[0], " nasa said so.");
    assert!(matches!(
        copa("x.", "y.", "why"),
        Err(DataError::Invalid { .. })
    ));

    let p = Task::Trec
        .causal_prompt(&Example::new(["What is an atom ?"], 0))
        .unwrap();
    assert_eq!(p.context, "Question: What is an atom ?\nType:");
    assert_eq!(
        p.candidates,
        [
            " Description",
            " Entity",
            " Abbreviation",
            " Human",
            " Location",
            " Number"
        ]
    );

    // Too few fields or a label out of range.
    assert!(matches!(
        Task::Rte.causal_prompt(&Example::new(["only one"], 0)),
        Err(DataError::Invalid { .. })
    ));
    assert!(matches!(
        Task::Sst2.causal_prompt(&Example::new(["x"], 2)),
        Err(DataError::Invalid { .. })
    ));
}

/// A toy tokenizer: one id per whitespace-separated word (its length), for checking `encode`.
fn words(text: &str) -> Result<Vec<u32>, String> {
    if text.contains('!') {
        return Err("no exclamations".into());
    }
    Ok(text.split_whitespace().map(|w| w.len() as u32).collect())
}

#[test]
fn causal_encoding_truncates_the_context_from_the_left() {
    let p = Task::Sst2
        .causal_prompt(&Example::new(["a bb ccc dddd"], 0))
        .unwrap();
    let e = p.encode(words, &[], None).unwrap();
    assert_eq!(e.context, [1, 2, 3, 4, 2, 3]); // a bb ccc dddd It was
    assert_eq!(e.candidates, vec![vec![8], vec![5]]);
    assert_eq!(e.label, 0);
    // BOS prefix kept; the context loses its first tokens; candidates untouched.
    let e = p.encode(words, &[99], Some(4)).unwrap();
    assert_eq!(e.context, [99, 2, 3]);
    assert_eq!(e.candidates, vec![vec![8], vec![5]]);
    assert!(matches!(
        p.encode(words, &[99], Some(2)),
        Err(DataError::Invalid {
            field: "max_length",
            ..
        })
    ));
    let bad = Task::Sst2
        .causal_prompt(&Example::new(["wow!"], 0))
        .unwrap();
    assert!(matches!(
        bad.encode(words, &[], None),
        Err(DataError::Tokenizer(_))
    ));
}

#[test]
fn task_names_round_trip() {
    for task in Task::ALL {
        assert_eq!(Task::from_name(task.name()).unwrap(), task);
        assert_eq!(task.display_name().parse::<Task>().unwrap(), task);
    }
    assert_eq!("SST-2".parse::<Task>().unwrap(), Task::Sst2);
    assert!(matches!(
        Task::from_name("qqp"),
        Err(DataError::UnknownTask(_))
    ));
}

#[test]
fn serde_forms() {
    use zo_data::Protocol;
    assert_eq!(serde_json::to_string(&Task::BoolQ).unwrap(), "\"boolq\"");
    let t: Task = serde_json::from_str("\"sst2\"").unwrap();
    assert_eq!(t, Task::Sst2);
    let p = Protocol::sampled(Task::Cb, 3);
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(
        json,
        r#"{"kind":"sampled","seed":3,"train":200,"validation":50}"#
    );
    assert_eq!(serde_json::from_str::<Protocol>(&json).unwrap(), p);
    let p: Protocol = serde_json::from_str(r#"{"kind":"few_shot","seed":42}"#).unwrap();
    assert_eq!(p, Protocol::few_shot(42));
    let ex = Example::new(["a", "b"], 1);
    let back: Example = serde_json::from_str(&serde_json::to_string(&ex).unwrap()).unwrap();
    assert_eq!(back, ex);
}

/// The SFC prompts are MeZO's `encode_sfc` / `verbalize_sfc` (princeton-nlp/MeZO
/// `large_models/templates.py`) after `encode_prompt`'s stripping of spaces: SST-2's `" It was"`
/// with `" It was terrible"` | `" It was great"`, COPA's conjunction stripped with the choice
/// capitalised as in `verbalize`, the candidate alone for BoolQ and the PromptSource tasks.
#[test]
fn causal_sfc_prompts_follow_mezo() {
    let sst = Example::new(["  a gorgeous film . "], 1);
    let p = Task::Sst2.causal_sfc_prompt(&sst).unwrap();
    assert_eq!(p.context, "It was");
    assert_eq!(p.candidates, [" terrible", " great"]);
    assert_eq!(p.label, 1);
    // verbalize_sfc(" It was great").strip(' ') is the context plus the candidate.
    assert_eq!(format!("{}{}", p.context, p.candidates[1]), "It was great");
    // The same for every sentence.
    let other = Example::new(["dull ."], 0);
    assert_eq!(
        Task::Sst2.causal_sfc_prompt(&other).unwrap().context,
        p.context
    );
    let p = Task::Sst5.causal_sfc_prompt(&other).unwrap();
    assert_eq!(p.context, "It was");
    assert_eq!(p.candidates.len(), 5);

    let copa = |question: &str| {
        Task::Copa.causal_sfc_prompt(&Example::new(
            [
                "The man slid the razor across his chin.",
                "His stubble grew.",
                "I cut myself.",
                question,
            ],
            0,
        ))
    };
    let p = copa("effect").unwrap();
    assert_eq!(p.context, "so");
    assert_eq!(p.candidates, [" his stubble grew.", " I cut myself."]);
    assert_eq!(
        format!("{}{}", p.context, p.candidates[0]),
        "so his stubble grew."
    );
    let p = copa("cause").unwrap();
    assert_eq!(p.context, "because");
    assert_eq!(p.candidates, [" his stubble grew.", " I cut myself."]);
    assert!(matches!(copa("why"), Err(DataError::Invalid { .. })));

    let pair = Example::new(["A man sleeps.", "A person rests."], 0);
    for (task, ex, words) in [
        (
            Task::BoolQ,
            Example::new(["Some passage.", "is it true"], 1),
            &["Yes", "No"][..],
        ),
        (Task::Rte, pair.clone(), &["Yes", "No"][..]),
        (Task::Cb, pair.clone(), &["Yes", "No", "Maybe"][..]),
        (
            Task::Wsc,
            Example::new(["Mark told Pete.", "Pete", "He"], 0),
            &["Yes", "No"][..],
        ),
        (
            Task::Wic,
            Example::new(["bank", "a river bank", "a bank loan"], 0),
            &["Yes", "No"][..],
        ),
    ] {
        let p = task.causal_sfc_prompt(&ex).unwrap();
        assert_eq!(p.context, "", "{task:?}");
        assert_eq!(p.candidates, words, "{task:?}");
        assert_eq!(p.candidates, task.causal_prompt(&ex).unwrap().candidates);
    }

    // No SFC form in MeZO: the project's context with the example's texts empty.
    let p = Task::Trec
        .causal_sfc_prompt(&Example::new(["What is an atom ?"], 2))
        .unwrap();
    assert_eq!(p.context, "Question: \nType:");
    assert_eq!(p.candidates[2], " Abbreviation");
    assert_eq!(p.label, 2);
    for task in [Task::Snli, Task::Mnli] {
        let p = task.causal_sfc_prompt(&pair).unwrap();
        assert_eq!(p.context, "\nQuestion:  True, False, or Neither?\n");
        assert_eq!(p.candidates, ["Yes", "Maybe", "No"]);
    }

    // The example is checked as for the full prompt.
    assert!(matches!(
        Task::Rte.causal_sfc_prompt(&Example::new(["only one"], 0)),
        Err(DataError::Invalid { .. })
    ));
}
