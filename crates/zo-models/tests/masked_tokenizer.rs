//! `tokenizer.json` loading against the reference encodings, and prompt encoding with templates.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod masked_support;

use anyhow::Result;
use serde_json::Value;
use zo_models::bert::Config;
use zo_models::masked::Piece;
use zo_models::{
    MaskedLm, MaskedLmClassifier, Precision, Template, TemplateError, Tokenizer, Transform,
};

use masked_support::fixture;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn tokenizers_reproduce_the_reference_encodings() -> Result<()> {
    for name in ["wordpiece", "bpe"] {
        let dir = fixture(&format!("tokenizer/{name}"));
        let tok = Tokenizer::from_folder(&dir)?;
        let golden: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json"))?)?;
        assert_eq!(
            tok.vocab_size(),
            golden["vocab_size"].as_u64().unwrap() as usize
        );
        for case in golden["single"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            assert_eq!(
                tok.encode(text, true)?,
                ids(&case["with_special_tokens"]["ids"]),
                "{name}: {text:?}"
            );
            assert_eq!(
                tok.encode(text, false)?,
                ids(&case["without_special_tokens"]["ids"]),
                "{name}: {text:?}"
            );
            let enc = tok.encoding(text, true)?;
            let offsets: Vec<Vec<u64>> = case["with_special_tokens"]["offsets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| {
                    o.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_u64().unwrap())
                        .collect()
                })
                .collect();
            // The Rust crate reports byte offsets, the Python binding character offsets.
            let chars = |byte: usize| text[..byte].chars().count() as u64;
            let got: Vec<Vec<u64>> = enc
                .get_offsets()
                .iter()
                .map(|&(a, b)| vec![chars(a), chars(b)])
                .collect();
            assert_eq!(got, offsets, "{name}: offsets of {text:?}");
            let decoded = tok.decode(&tok.encode(text, true)?, true)?;
            assert_eq!(
                decoded,
                case["decoded_skip_special"].as_str().unwrap(),
                "{name}: decode {text:?}"
            );
        }
        // Padding and truncation of the file are off: a batch's encodings keep their own lengths.
        let batch = &golden["batch_padded_right"];
        for (text, enc) in batch["texts"]
            .as_array()
            .unwrap()
            .iter()
            .zip(batch["encodings"].as_array().unwrap())
        {
            let want: Vec<u32> = ids(&enc["ids"]);
            let mask = ids(&enc["attention_mask"]);
            let real: Vec<u32> = want
                .iter()
                .zip(&mask)
                .filter(|(_, m)| **m == 1)
                .map(|(i, _)| *i)
                .collect();
            assert_eq!(tok.encode(text.as_str().unwrap(), true)?, real);
        }
        assert_eq!(tok.pad_id(), Some(batch["pad_id"].as_u64().unwrap() as u32));
    }
    Ok(())
}

#[test]
fn special_tokens_and_framing() -> Result<()> {
    let wp = Tokenizer::from_folder(fixture("tokenizer/wordpiece"))?;
    assert_eq!(wp.prefix(), &[2]);
    assert_eq!(wp.suffix(), &[3]);
    assert_eq!(wp.mask_token(), Some(("[MASK]", 4)));
    let bpe = Tokenizer::from_folder(fixture("tokenizer/bpe"))?;
    assert_eq!(bpe.prefix(), &[0]);
    assert_eq!(bpe.suffix(), &[2]);
    assert_eq!(bpe.mask_token(), Some(("<mask>", 4)));
    assert_eq!(bpe.pad_id(), Some(1));
    Ok(())
}

fn slot(index: usize, space: bool, transforms: &[Transform]) -> Piece {
    Piece::Slot {
        index,
        space,
        transforms: transforms.to_vec(),
    }
}

#[test]
fn templates_parse_into_pieces() -> Result<()> {
    let t = Template::parse("<S> It was [MASK] .")?;
    assert_eq!(
        t.pieces(),
        &[
            slot(0, false, &[]),
            Piece::Text(" It was".into()),
            Piece::Mask { space: true },
            Piece::Text(" .".into())
        ]
    );
    assert_eq!(t.slots(), 1);
    // LM-BFF's `*cls**sent_0*_It_was*mask*.*sep+*`: the "." attaches to the mask.
    let t = Template::parse("<S> It was[MASK].")?;
    assert_eq!(
        t.pieces(),
        &[
            slot(0, false, &[]),
            Piece::Text(" It was".into()),
            Piece::Mask { space: false },
            Piece::Text(".".into())
        ]
    );
    let t = Template::parse("<S1> ? [MASK] , <S2>")?;
    assert_eq!(
        t.pieces(),
        &[
            slot(0, false, &[]),
            Piece::Text(" ?".into()),
            Piece::Mask { space: true },
            Piece::Text(" ,".into()),
            slot(1, true, &[])
        ]
    );
    assert_eq!(t.slots(), 2);
    let t = Template::parse("[MASK]: <S>")?;
    assert_eq!(
        t.pieces(),
        &[
            Piece::Mask { space: false },
            Piece::Text(":".into()),
            slot(0, true, &[])
        ]
    );
    // LM-BFF's `*cls**sent-_0*?*mask*,*+sentl_1**sep+*`.
    let t = Template::parse("<S1:drop-last>?[MASK], <S2:lower-first>")?;
    assert_eq!(
        t.pieces(),
        &[
            slot(0, false, &[Transform::DropLast]),
            Piece::Text("?".into()),
            Piece::Mask { space: false },
            Piece::Text(",".into()),
            slot(1, true, &[Transform::LowerFirst])
        ]
    );
    // Transforms apply in the order written; slots in any order.
    let t = Template::parse("<S2> <S1: trim , question-mark,upper-first> [MASK] .")?;
    assert_eq!(
        t.pieces()[1],
        slot(
            0,
            true,
            &[
                Transform::Trim,
                Transform::QuestionMark,
                Transform::UpperFirst
            ]
        )
    );
    assert_eq!(t.slots(), 2);
    Ok(())
}

#[test]
fn transforms_and_rendering() -> Result<()> {
    assert_eq!(Transform::DropLast.apply("A man sleeps."), "A man sleeps");
    assert_eq!(Transform::DropLast.apply("Hi! "), "Hi!");
    assert_eq!(Transform::DropLast.apply(""), "");
    assert_eq!(Transform::LowerFirst.apply("A Man"), "a Man");
    assert_eq!(Transform::UpperFirst.apply("is it"), "Is it");
    assert_eq!(Transform::UpperFirst.apply(""), "");
    assert_eq!(Transform::QuestionMark.apply("is it"), "is it?");
    assert_eq!(Transform::QuestionMark.apply("is it?"), "is it?");
    assert_eq!(Transform::Trim.apply("  x y \t"), "x y");
    for t in Transform::ALL {
        assert_eq!(Transform::from_name(t.name()), Some(t));
    }
    let nli = Template::parse("<S1:drop-last>?[MASK], <S2:lower-first>")?;
    assert_eq!(
        nli.render(&["A man sleeps.", "A person rests."], "<mask>")?,
        "A man sleeps?<mask>, a person rests."
    );
    let spaced = Template::parse("<S1:trim> ? [MASK] , <S2:trim>")?;
    assert_eq!(
        spaced.render(&["A man sleeps. ", " A person rests."], "[MASK]")?,
        "A man sleeps. ? [MASK] , A person rests."
    );
    let wic = Template::parse("<S2> <S3> Does the word \"<S1>\" mean it? [MASK] .")?;
    assert_eq!(
        wic.render(&["bank", "A river bank.", "A savings bank."], "[MASK]")?,
        "A river bank. A savings bank. Does the word \"bank\" mean it? [MASK] ."
    );
    assert!(matches!(
        wic.render(&["bank"], "[MASK]"),
        Err(TemplateError::TextCount {
            expected: 3,
            found: 1,
            ..
        })
    ));
    Ok(())
}

/// A RoBERTa of random weights whose vocabulary covers the BPE fixture's 320 tokens.
fn bpe_classifier(template: &str) -> Result<MaskedLmClassifier> {
    let mut cfg: Config = serde_json::from_str(&std::fs::read_to_string(
        fixture("roberta").join("config.json"),
    )?)?;
    cfg.vocab_size = 320;
    let (model, _) = MaskedLm::random(&cfg, Precision::F32, 7)?;
    let tok = Tokenizer::from_folder(fixture("tokenizer/bpe"))?;
    Ok(MaskedLmClassifier::new(
        model,
        tok,
        template,
        &["the", "world"],
    )?)
}

#[test]
fn bpe_prompts_put_spaces_where_the_template_has_them() -> Result<()> {
    let clf = bpe_classifier("<S> It was [MASK] .")?;
    let tok = clf.tokenizer().clone();
    // Label words carry a leading space: " the" is one token, different from "the".
    assert_eq!(clf.label_ids()[0], tok.encode(" the", false)?[0]);
    let (ids, at) = clf.encode(&["Hello world!"])?;
    let mut want = vec![0u32];
    want.extend(tok.encode("Hello world!", false)?);
    want.extend(tok.encode(" It was", false)?);
    let mask_at = want.len();
    want.push(4);
    want.extend(tok.encode(" .", false)?);
    want.push(2);
    assert_eq!(ids, want);
    assert_eq!(at, mask_at);
    // A second slot preceded by a space is encoded with its leading space.
    let clf2 = bpe_classifier("<S1> ? [MASK] , <S2>")?;
    let (ids, _) = clf2.encode(&["Hello", "world"])?;
    let tail = tok.encode(" world", false)?;
    assert_eq!(
        &ids[ids.len() - 1 - tail.len()..ids.len() - 1],
        tail.as_slice()
    );
    Ok(())
}

#[test]
fn an_attached_literal_is_its_own_token_under_bpe_and_the_same_under_wordpiece() -> Result<()> {
    // Byte-level BPE (RoBERTa-style): LM-BFF's `*mask*.` puts ".", `[MASK] .` puts "Ġ.".
    let attached = bpe_classifier("<S> It was[MASK].")?;
    let spaced = bpe_classifier("<S> It was [MASK] .")?;
    let tok = attached.tokenizer().clone();
    let dot = tok.encode(".", false)?;
    let space_dot = tok.encode(" .", false)?;
    assert_ne!(dot, space_dot);
    let (a, at) = attached.encode(&["Hello world!"])?;
    let (b, bt) = spaced.encode(&["Hello world!"])?;
    assert_eq!(at, bt);
    assert_eq!(&a[at + 1..a.len() - 1], dot.as_slice());
    assert_eq!(&b[bt + 1..b.len() - 1], space_dot.as_slice());
    // LM-BFF's NLI template, piece by piece: sent[:-1], "?", mask, ",", " " + lower-first(sent).
    let nli = bpe_classifier("<S1:drop-last>?[MASK], <S2:lower-first>")?;
    let (ids, at) = nli.encode(&["Hello world.", "World hello"])?;
    let mut want = vec![0u32];
    want.extend(tok.encode("Hello world", false)?);
    want.extend(tok.encode("?", false)?);
    assert_eq!(at, want.len());
    want.push(4);
    want.extend(tok.encode(",", false)?);
    want.extend(tok.encode(" world hello", false)?);
    want.push(2);
    assert_eq!(ids, want);
    // WordPiece (BERT) ignores the space: both templates give the same ids.
    let wp = Tokenizer::from_folder(fixture("tokenizer/wordpiece"))?;
    assert_eq!(wp.encode(".", false)?, wp.encode(" .", false)?);
    let (model, _) = MaskedLm::from_folder(fixture("bert"), Precision::F32)?;
    let a = MaskedLmClassifier::new(
        model.clone(),
        wp.clone(),
        "<S> It was[MASK].",
        &["hello", "world"],
    )?;
    let b = MaskedLmClassifier::new(model, wp, "<S> It was [MASK] .", &["hello", "world"])?;
    assert_eq!(a.encode(&["hello world"])?, b.encode(&["hello world"])?);
    Ok(())
}

#[test]
fn truncation_keeps_the_template_and_the_mask() -> Result<()> {
    let clf = bpe_classifier("<S> It was [MASK] .")?.with_max_length(16)?;
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(20);
    let (ids, at) = clf.encode(&[long.as_str()])?;
    assert_eq!(ids.len(), 16);
    assert_eq!(ids[at], 4);
    assert_eq!(ids[0], 0);
    assert_eq!(*ids.last().unwrap(), 2);
    let tok = clf.tokenizer();
    let tail = tok.encode(" It was", false)?;
    assert_eq!(&ids[at - tail.len()..at], tail.as_slice());
    // Two slots: the longer one is cut first.
    let clf2 = bpe_classifier("<S1> ? [MASK] , <S2>")?.with_max_length(24)?;
    let (ids, at) = clf2.encode(&[long.as_str(), "Hello"])?;
    assert_eq!(ids.len(), 24);
    assert_eq!(ids[at], 4);
    let hello = tok.encode(" Hello", false)?;
    assert_eq!(
        &ids[ids.len() - 1 - hello.len()..ids.len() - 1],
        hello.as_slice()
    );
    // A batch pads on the right with the model's padding id and records each mask slot.
    let batch = clf.encode_batch(&["Hello world!", long.as_str()])?;
    assert_eq!(batch.input_ids.dims(), &[2, 16]);
    let rows = batch.input_ids.to_vec2::<u32>()?;
    let mask = batch.attention_mask.to_vec2::<u32>()?;
    assert_eq!(rows[0][batch.mask_positions[0]], 4);
    assert_eq!(rows[1][batch.mask_positions[1]], 4);
    let len0 = batch.lengths[0];
    assert!(rows[0][len0..].iter().all(|&i| i == 1));
    assert!(mask[0][len0..].iter().all(|&m| m == 0) && mask[0][..len0].iter().all(|&m| m == 1));
    // The loss is finite and the scores have one column per class.
    let loss = clf.loss(&batch, &[0, 1])?;
    assert!(loss.is_finite() && loss > 0.0);
    assert_eq!(clf.scores(&batch)?[0].len(), 2);
    Ok(())
}
