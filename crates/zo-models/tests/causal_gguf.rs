//! SmolLM2-135M-Instruct from its Q4_1 GGUF file: greedy completion of a plain-text prompt.
//! Provisioned by `crates/zo-models/scripts/provision.sh`; skipped when absent (fails when absent
//! under `BSZO_REQUIRE_MODELS`).
#![allow(clippy::print_stderr)]

mod causal_common;

use std::time::Instant;

use zo_models::Precision;
use zo_models::causal::{CandidateExample, candidate_scores, generate_greedy, predict};
use zo_models::gguf::load_gguf;

#[test]
fn smollm2_completes_the_capital_of_france_with_paris() {
    let Some(path) = bszo_testkit::smollm2("smollm2_completes_the_capital_of_france_with_paris")
    else {
        return;
    };
    let t0 = Instant::now();
    let m = load_gguf(&path, Precision::F32).unwrap();
    let load = t0.elapsed();
    let cfg = &m.config;
    assert_eq!(
        (
            cfg.num_hidden_layers,
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.kv_heads()
        ),
        (30, 576, 9, 3)
    );
    assert_eq!(cfg.vocab_size, 49152);
    assert!((cfg.theta() - 1e5).abs() < 1e-6);
    assert!(cfg.tie_word_embeddings);
    assert!(!m.add_bos_token, "SmolLM2 prompts start without BOS");
    let tok = m
        .tokenizer
        .as_ref()
        .expect("byte-level BPE tokenizer from the metadata");
    let enc = tok.encode("The capital of France is", false).unwrap();
    let prompt = enc.get_ids().to_vec();
    assert_eq!(
        tok.decode(&prompt, false).unwrap(),
        "The capital of France is"
    );
    let t1 = Instant::now();
    let out = generate_greedy(&m.model, &prompt, 3, m.eos_token_id).unwrap();
    let text = tok.decode(&out, false).unwrap();
    eprintln!(
        "SmolLM2 prompt ids {prompt:?} -> {out:?} = {text:?} (load {load:.2?}, 3 greedy forwards {:.2?})",
        t1.elapsed()
    );
    assert!(text.starts_with(" Paris"), "got {text:?}");

    // The candidate scoring head on real weights: single- and multi-token candidates.
    let ids = |s: &str| tok.encode(s, false).unwrap().get_ids().to_vec();
    let candidates: Vec<Vec<u32>> = [" Paris", " London", " Berlin", " a city in Germany"]
        .iter()
        .map(|c| ids(c))
        .collect();
    assert!(candidates[3].len() > 1);
    let ex = CandidateExample {
        context: prompt.clone(),
        candidates,
        label: 0,
    };
    let t2 = Instant::now();
    let scores = candidate_scores(&m.model, std::slice::from_ref(&ex)).unwrap();
    eprintln!(
        "SmolLM2 candidate scores {:?} ({:.2?})",
        scores[0],
        t2.elapsed()
    );
    assert_eq!(predict(&m.model, &[ex]).unwrap(), vec![0]);
}

#[test]
fn smollm2_half_precisions_still_say_paris() {
    let Some(path) = bszo_testkit::smollm2("smollm2_half_precisions_still_say_paris") else {
        return;
    };
    for precision in [Precision::F16, Precision::BF16] {
        let t0 = Instant::now();
        let m = load_gguf(&path, precision).unwrap();
        let tok = m.tokenizer.as_ref().unwrap();
        let prompt = tok
            .encode("The capital of France is", false)
            .unwrap()
            .get_ids()
            .to_vec();
        let out = generate_greedy(&m.model, &prompt, 1, None).unwrap();
        let text = tok.decode(&out, false).unwrap();
        eprintln!(
            "SmolLM2 {precision:?}: {text:?} ({:.2?} with loading)",
            t0.elapsed()
        );
        assert_eq!(text, " Paris");
    }
}
