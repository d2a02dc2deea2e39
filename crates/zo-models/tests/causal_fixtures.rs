//! Golden logits of tiny random OPT, Llama and Mistral models (Hugging Face transformers, eager, f32).
#![allow(clippy::print_stderr)]

mod causal_common;

use causal_common::{Golden, fixture};
use zo_models::{CausalLm, Llama, Opt, Precision};

const TOL: f64 = 1e-4;

fn check<M: CausalLm + ?Sized>(name: &str, model: &M) {
    let g = Golden::load(name);
    let hidden = model.hidden_states(&g.ids(), &g.mask()).unwrap();
    let dh = g.max_diff(&g.final_hidden, &hidden);
    let logits = model.forward(&g.ids(), &g.mask()).unwrap();
    assert_eq!(logits.dims(), &[2, 7, 99]);
    let dl = g.max_diff(&g.logits, &logits);
    eprintln!("{name}: max |Δ| final hidden {dh:.2e}, logits {dl:.2e}");
    assert!(dh < TOL, "{name}: final hidden states differ by {dh}");
    assert!(dl < TOL, "{name}: logits differ by {dl}");
}

#[test]
fn opt_pre_layer_norm_matches_golden_logits() {
    let (model, weights) = Opt::from_hf_folder(&fixture("opt"), Precision::F32).unwrap();
    assert_eq!(weights.len(), 36);
    assert!(
        weights
            .get("model.decoder.final_layer_norm.weight")
            .is_some()
    );
    check("opt", &model);
}

#[test]
fn opt_post_layer_norm_with_projections_matches_golden_logits() {
    let (model, weights) = Opt::from_hf_folder(&fixture("opt_post_ln"), Precision::F32).unwrap();
    assert_eq!(weights.len(), 36);
    assert!(weights.get("model.decoder.project_in.weight").is_some());
    check("opt_post_ln", &model);
}

#[test]
fn llama_matches_golden_logits() {
    let (model, weights) = Llama::from_hf_folder(&fixture("llama"), Precision::F32).unwrap();
    assert_eq!(weights.len(), 21);
    check("llama", &model);
}

#[test]
fn llama_tied_head_matches_golden_logits() {
    let (model, weights) = Llama::from_hf_folder(&fixture("llama_tied"), Precision::F32).unwrap();
    assert_eq!(weights.len(), 20);
    assert!(weights.get("lm_head.weight").is_none());
    check("llama_tied", &model);
}

#[test]
fn mistral_sliding_window_matches_golden_logits() {
    let (model, weights) = Llama::from_hf_folder(&fixture("mistral"), Precision::F32).unwrap();
    assert_eq!(weights.len(), 21);
    assert_eq!(model.config().sliding_window, Some(4));
    check("mistral", &model);
}

#[test]
fn half_precisions_stay_close_to_golden_logits() {
    // Logits spread over about ±4; f16 keeps ~3 decimal digits, bf16 ~2.
    for (precision, tol) in [(Precision::F16, 0.05), (Precision::BF16, 0.15)] {
        for name in ["llama", "mistral"] {
            let (model, weights) = Llama::from_hf_folder(&fixture(name), precision).unwrap();
            assert!(weights.iter().all(|(_, t)| t.dtype() == precision.dtype()));
            let g = Golden::load(name);
            let d = g.max_diff(&g.logits, &model.forward(&g.ids(), &g.mask()).unwrap());
            eprintln!("{name} {precision:?}: max |Δ| logits {d:.2e}");
            assert!(d < tol, "{name} {precision:?}: logits differ by {d}");
        }
        for name in ["opt", "opt_post_ln"] {
            let (model, _) = Opt::from_hf_folder(&fixture(name), precision).unwrap();
            let g = Golden::load(name);
            let d = g.max_diff(&g.logits, &model.forward(&g.ids(), &g.mask()).unwrap());
            eprintln!("{name} {precision:?}: max |Δ| logits {d:.2e}");
            assert!(d < tol, "{name} {precision:?}: logits differ by {d}");
        }
    }
}

#[test]
fn opt_accepts_checkpoints_saved_from_the_bare_decoder() {
    // `OPTModel` checkpoints name tensors `decoder.…` instead of `model.decoder.…`.
    let loaded =
        candle_core::safetensors::load(fixture("opt/model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let renamed = loaded
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("model.").to_string(), v))
        .collect();
    let cfg = zo_models::OptConfig::from_file(&fixture("opt/config.json")).unwrap();
    let mut ckpt = zo_models::Checkpoint::from_tensors("renamed".into(), renamed, Precision::F32);
    let model = Opt::new(&cfg, &mut ckpt).unwrap();
    let weights = ckpt.into_weights().unwrap();
    assert!(weights.get("model.decoder.layers.0.fc1.weight").is_some());
    check("opt", &model);
}

#[test]
fn load_causal_lm_dispatches_on_the_model_type() {
    for (name, n) in [
        ("opt", 36),
        ("opt_post_ln", 36),
        ("llama", 21),
        ("llama_tied", 20),
        ("mistral", 21),
    ] {
        let (model, weights) =
            zo_models::causal::load_causal_lm(&fixture(name), Precision::F32).unwrap();
        assert_eq!(weights.len(), n);
        check(name, &*model);
    }
    let err = zo_models::causal::load_causal_lm(&fixture("bert"), Precision::F32)
        .err()
        .unwrap();
    assert!(
        matches!(err, zo_models::ModelError::Config { .. }),
        "{err:?}"
    );
    let err = zo_models::causal::load_causal_lm(
        std::path::Path::new("facebook/opt-125m"),
        Precision::F32,
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, zo_models::ModelError::Io { .. })
            && err.to_string().contains("facebook/opt-125m"),
        "{err}"
    );
}
