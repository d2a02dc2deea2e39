//! The real pretrained stories260K model (llama2.c format) and its `tok512.bin` tokenizer.
//!
//! The expected greedy text, its tokens and their teacher-forced NLL come from
//! `tests/fixtures/stories260k_reference.py` (Python 3 and NumPy: the llama2.c formats, the
//! tokenizer's `encode` and `run.c`'s forward pass in float64). Run it from the repository root:
//! `python3 crates/zo-models/tests/fixtures/stories260k_reference.py`.
#![allow(clippy::print_stderr)]

use std::path::PathBuf;
use std::time::Instant;

use zo_models::Precision;
use zo_models::causal::{CandidateExample, CausalLm, candidate_scores, generate_greedy};
use zo_models::llama2c::{LLAMA2C_BOS, LLAMA2C_EOS, Llama2cTokenizer, load_llama2c};

fn dir() -> PathBuf {
    bszo_testkit::stories260k()
}

#[test]
fn stories260k_greedy_story_from_bos() {
    let d = dir();
    assert!(
        d.join("stories260K.bin").is_file(),
        "{} ships with the repository",
        d.join("stories260K.bin").display()
    );
    let t0 = Instant::now();
    let m = load_llama2c(&d.join("stories260K.bin"), Precision::F32).unwrap();
    assert_eq!(
        (
            m.header.dim,
            m.header.n_layers,
            m.header.n_heads,
            m.header.n_kv_heads
        ),
        (64, 5, 8, 4)
    );
    assert_eq!(m.model.vocab_size(), 512);
    assert_eq!(zo_optim::ParamSet::num_params(&m.weights), 260_032);
    let tok = Llama2cTokenizer::from_file(&d.join("tok512.bin")).unwrap();
    assert_eq!(tok.vocab_size(), 512);
    let out = generate_greedy(&m.model, &[LLAMA2C_BOS], 40, Some(LLAMA2C_EOS)).unwrap();
    let text = tok.decode(&[&[LLAMA2C_BOS][..], &out].concat());
    eprintln!("stories260K greedy ({:.2?}): {text}", t0.elapsed());
    let want = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";
    assert!(text.starts_with(want), "got {text:?}");
    let (boxed, _) = zo_models::load_causal_lm(&d.join("stories260K.bin"), Precision::F32).unwrap();
    assert_eq!(
        generate_greedy(&*boxed, &[LLAMA2C_BOS], 40, Some(LLAMA2C_EOS)).unwrap(),
        out
    );

    // Teacher-forced: the encoder's tokens of that sentence and the scoring head's mean NLL.
    let ids = tok.encode(want, true, false);
    let ex = CandidateExample {
        context: vec![LLAMA2C_BOS],
        candidates: vec![ids[1..].to_vec()],
        label: 0,
    };
    let nll = -candidate_scores(&m.model, &[ex]).unwrap()[0][0];
    // The encoder reproduces the greedy tokens.
    assert_eq!(ids[1..], out[..ids.len() - 1]);
    eprintln!(
        "stories260K teacher-forced NLL {nll:.4} nats/token over {} tokens",
        ids.len() - 1
    );
    // `tests/fixtures/stories260k_reference.py`, a float64 NumPy port of llama2.c's `run.c`
    // (interleaved RoPE on the file's own rows), gives 0.1803555 nats/token on these 31 tokens.
    assert!((nll - 0.180_355_5).abs() < 1e-4, "NLL {nll}");
}

#[test]
fn tok512_encodes_and_decodes() {
    let path = dir().join("tok512.bin");
    assert!(
        path.is_file(),
        "{} ships with the repository",
        path.display()
    );
    let tok = Llama2cTokenizer::from_file(&path).unwrap();
    let text = "Once upon a time, there was a little girl named Lily.";
    let ids = tok.encode(text, true, false);
    assert_eq!(ids[0], LLAMA2C_BOS);
    assert!(ids.len() < text.len(), "BPE merges nothing: {ids:?}");
    assert_eq!(tok.decode(&ids), text);
    // Characters outside the vocabulary go through byte fallback and come back.
    let odd = "naïve ☃";
    assert_eq!(tok.decode(&tok.encode(odd, true, true)), odd);
}
