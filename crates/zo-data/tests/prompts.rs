//! Exact prompt renderings for every task, built in memory.

use zo_data::{DataError, Example, Task};

#[test]
fn masked_templates_and_label_words() {
    let m = Task::Sst2.masked_prompt().unwrap();
    assert_eq!(m.template, "<S> It was [MASK] .");
    assert_eq!(m.label_words, ["terrible", "great"]);
    let ex = Example::new(["a gorgeous film ."], 1);
    assert_eq!(m.render(&ex), "a gorgeous film . It was [MASK] .");
    assert_eq!(m.slot_texts(&ex), ["a gorgeous film ."]);

    let m = Task::Sst5.masked_prompt().unwrap();
    assert_eq!(m.label_words, ["terrible", "bad", "okay", "good", "great"]);

    let m = Task::Trec.masked_prompt().unwrap();
    assert_eq!(m.template, "[MASK] : <S>");
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
        assert_eq!(m.template, "<S1> ? [MASK] , <S2>");
        assert_eq!(m.label_words, ["Yes", "Maybe", "No"]);
        assert_eq!(task.labels(), ["entailment", "neutral", "contradiction"]);
        assert_eq!(m.render(&pair), "A man sleeps. ? [MASK] , A person rests.");
        assert_eq!(m.slot_texts(&pair), ["A man sleeps.", "A person rests."]);
    }
    let m = Task::Rte.masked_prompt().unwrap();
    assert_eq!(m.label_words, ["Yes", "No"]);
    assert_eq!(Task::Rte.labels(), ["entailment", "not_entailment"]);
    let m = Task::Cb.masked_prompt().unwrap();
    assert_eq!(m.template, "<S1> ? [MASK] , <S2>");
    assert_eq!(m.label_words, ["Yes", "No", "Maybe"]);
    assert_eq!(
        Task::Cb.labels(),
        ["entailment", "contradiction", "neutral"]
    );

    for task in [Task::BoolQ, Task::Copa, Task::Wsc, Task::Wic] {
        let err = task.masked_prompt().unwrap_err();
        assert!(matches!(err, DataError::Unsupported { .. }), "{task}");
        assert!(err.to_string().contains(task.display_name()));
    }
}

#[test]
fn causal_renderings() {
    let p = Task::Sst2
        .causal_prompt(&Example::new(["a gorgeous film ."], 1))
        .unwrap();
    assert_eq!(p.context, "a gorgeous film . It was");
    assert_eq!(p.candidates, [" terrible", " great"]);
    assert_eq!(p.label, 1);

    let p = Task::Rte
        .causal_prompt(&Example::new(["A man sleeps.", "A person rests."], 1))
        .unwrap();
    assert_eq!(
        p.context,
        "A man sleeps. Does this mean that \"A person rests.\" is true? Yes or No?"
    );
    assert_eq!(p.candidates, [" Yes", " No"]);
    assert_eq!(p.label, 1);

    let p = Task::Cb
        .causal_prompt(&Example::new(["It rained.", "the ground is wet"], 2))
        .unwrap();
    assert_eq!(
        p.context,
        "Suppose It rained. Can we infer that \"the ground is wet\"? Yes, No, or Maybe?"
    );
    assert_eq!(p.candidates, [" Yes", " No", " Maybe"]);
    assert_eq!(p.label, 2);

    let p = Task::BoolQ
        .causal_prompt(&Example::new(
            ["Paris is in France.", "is paris in france"],
            0,
        ))
        .unwrap();
    assert_eq!(p.context, "Paris is in France. is paris in france?");
    assert_eq!(p.candidates, [" Yes", " No"]);

    let p = Task::Wsc
        .causal_prompt(&Example::new(
            ["The cup fell because it was slippery.", "The cup", "it"],
            0,
        ))
        .unwrap();
    assert_eq!(
        p.context,
        "The cup fell because it was slippery. In the previous sentence, does the pronoun \"it\" refer to The cup? Yes or No?"
    );

    let p = Task::Wic
        .causal_prompt(&Example::new(
            ["bank", "A river bank.", "A savings bank."],
            1,
        ))
        .unwrap();
    assert_eq!(
        p.context,
        "Does the word \"bank\" have the same meaning in these two sentences? Yes, No? A river bank. A savings bank."
    );
    assert_eq!(p.label, 1);

    let copa = |question: &str| {
        Task::Copa.causal_prompt(&Example::new(
            [
                "The man slid the razor across his chin.",
                "His stubble grew.",
                "His stubble disappeared.",
                question,
            ],
            1,
        ))
    };
    let p = copa("effect").unwrap();
    assert_eq!(p.context, "The man slid the razor across his chin so");
    assert_eq!(
        p.candidates,
        [" his stubble grew.", " his stubble disappeared."]
    );
    assert_eq!(p.label, 1);
    assert_eq!(
        copa("cause").unwrap().context,
        "The man slid the razor across his chin because"
    );
    assert!(matches!(copa("why"), Err(DataError::Invalid { .. })));

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

    for task in [Task::Sst5, Task::Snli, Task::Mnli] {
        let ex = Example::new(["a", "b"], 0);
        assert!(matches!(
            task.causal_prompt(&ex),
            Err(DataError::Unsupported { .. })
        ));
    }
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
