//! Bad inputs of the causal-LM loaders and forwards are typed errors naming the file or tensor.

mod causal_common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use causal_common::{fixture, temp_dir};
use zo_models::causal::CausalLm;
use zo_models::gguf::load_gguf;
use zo_models::llama2c::{Llama2cTokenizer, load_llama2c};
use zo_models::{Checkpoint, Llama, LlamaConfig, ModelError, Opt, OptConfig, Precision};

fn llama_config() -> LlamaConfig {
    LlamaConfig::from_file(&fixture("llama/config.json")).unwrap()
}

#[test]
fn missing_paths_are_io_errors_naming_the_path() {
    let nowhere = std::env::temp_dir().join("zo-models-causal-does-not-exist");
    for err in [
        Llama::from_hf_folder(&nowhere, Precision::F32).unwrap_err(),
        Opt::from_hf_folder(&nowhere, Precision::F32).unwrap_err(),
        load_gguf(&nowhere.join("m.gguf"), Precision::F32).unwrap_err(),
        load_llama2c(&nowhere.join("m.bin"), Precision::F32).unwrap_err(),
        Llama2cTokenizer::from_file(&nowhere.join("tok.bin")).unwrap_err(),
    ] {
        assert!(matches!(err, ModelError::Io { .. }), "{err:?}");
        assert!(
            err.to_string().contains("zo-models-causal-does-not-exist"),
            "{err}"
        );
    }
}

#[test]
fn malformed_config_names_the_file() {
    let d = temp_dir("badconfig");
    std::fs::write(d.join("config.json"), "{\"vocab_size\": 10,").unwrap();
    let err = Llama::from_hf_folder(&d, Precision::F32).unwrap_err();
    assert!(matches!(err, ModelError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("config.json"), "{err}");
    std::fs::write(d.join("config.json"), "{\"vocab_size\": 10}").unwrap();
    let err = Opt::from_hf_folder(&d, Precision::F32).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
    // A config without weights beside it.
    std::fs::copy(fixture("llama/config.json"), d.join("config.json")).unwrap();
    let err = Llama::from_hf_folder(&d, Precision::F32).unwrap_err();
    assert!(matches!(err, ModelError::Io { .. }), "{err:?}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn unsupported_config_values_are_config_errors() {
    let mut cfg = llama_config();
    cfg.rope_parameters.as_mut().unwrap().rope_type = Some("llama3".into());
    assert!(matches!(cfg.validate(), Err(ModelError::Config { .. })));
    let mut cfg = llama_config();
    cfg.num_key_value_heads = Some(3);
    assert!(matches!(cfg.validate(), Err(ModelError::Config { .. })));
    let mut cfg: OptConfig = OptConfig::from_file(&fixture("opt/config.json")).unwrap();
    cfg.activation_function = "swish".into();
    assert!(matches!(cfg.validate(), Err(ModelError::Config { .. })));
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let cfg = llama_config();
    let mut empty = Checkpoint::from_tensors("mem".into(), HashMap::new(), Precision::F32);
    let err = Llama::new(&cfg, &mut empty).unwrap_err();
    assert!(
        matches!(&err, ModelError::MissingTensor { name, .. } if name.contains("embed_tokens")),
        "{err:?}"
    );
    let mut tensors = HashMap::new();
    tensors.insert(
        "model.embed_tokens.weight".to_string(),
        Tensor::zeros((99, 31), DType::F32, &Device::Cpu).unwrap(),
    );
    let mut bad = Checkpoint::from_tensors("mem".into(), tensors, Precision::F32);
    let err = Llama::new(&cfg, &mut bad).unwrap_err();
    assert!(
        matches!(&err, ModelError::Shape { name, expected, .. } if name == "model.embed_tokens.weight" && expected == &[99, 32]),
        "{err:?}"
    );
}

#[test]
fn bad_forward_inputs_are_errors() {
    let (model, _) = Llama::from_hf_folder(&fixture("llama"), Precision::F32).unwrap();
    let ids = Tensor::new(&[[1u32, 2, 3]], &Device::Cpu).unwrap();
    let short_mask = Tensor::new(&[[1u32, 1]], &Device::Cpu).unwrap();
    assert!(matches!(
        model.forward(&ids, &short_mask),
        Err(ModelError::Shape { .. })
    ));
    let big = Tensor::new(&[[1u32, 200, 3]], &Device::Cpu).unwrap();
    let mask = Tensor::new(&[[1u32, 1, 1]], &Device::Cpu).unwrap();
    assert!(matches!(
        model.forward(&big, &mask),
        Err(ModelError::Config { .. })
    ));
    let (opt, _) = Opt::from_hf_folder(&fixture("opt"), Precision::F32).unwrap();
    let long = Tensor::ones((1, 80), DType::U32, &Device::Cpu).unwrap();
    assert!(matches!(
        opt.forward(&long, &long),
        Err(ModelError::Config { .. })
    ));
}

#[test]
fn malformed_gguf_names_the_file() {
    let d = temp_dir("badgguf");
    let p = d.join("junk.gguf");
    std::fs::write(&p, b"this is not a gguf file at all").unwrap();
    let err = load_gguf(&p, Precision::F32).unwrap_err();
    assert!(matches!(err, ModelError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("junk.gguf"), "{err}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn malformed_llama2c_files_name_the_file() {
    let d = temp_dir("badllama2c");
    let short = d.join("short.bin");
    std::fs::write(&short, [0u8; 10]).unwrap();
    let err = load_llama2c(&short, Precision::F32).unwrap_err();
    assert!(
        matches!(err, ModelError::Malformed { .. }) && err.to_string().contains("short.bin"),
        "{err}"
    );

    let header: Vec<u8> = [8i32, 16, 1, 2, 2, 10, 4]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let truncated = d.join("truncated.bin");
    std::fs::write(&truncated, [&header[..], &[0u8; 40]].concat()).unwrap();
    let err = load_llama2c(&truncated, Precision::F32).unwrap_err();
    assert!(
        err.to_string().contains("truncated.bin") && err.to_string().contains("truncated"),
        "{err}"
    );

    let huge: Vec<u8> = [
        1i32 << 24,
        1 << 24,
        1 << 24,
        1 << 20,
        1 << 20,
        1 << 24,
        1 << 24,
    ]
    .iter()
    .flat_map(|x| x.to_le_bytes())
    .collect();
    let p = d.join("huge.bin");
    std::fs::write(&p, huge).unwrap();
    assert!(matches!(
        load_llama2c(&p, Precision::F32),
        Err(ModelError::Malformed { .. })
    ));

    let nonsense: Vec<u8> = [8i32, 16, 1, 3, 2, 10, 4]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let bad = d.join("heads.bin");
    std::fs::write(&bad, nonsense).unwrap();
    assert!(matches!(
        load_llama2c(&bad, Precision::F32),
        Err(ModelError::Malformed { .. })
    ));

    let tok = d.join("tok.bin");
    let mut bytes = 4i32.to_le_bytes().to_vec();
    bytes.extend(0.5f32.to_le_bytes());
    bytes.extend(9i32.to_le_bytes());
    bytes.extend(b"ab");
    std::fs::write(&tok, bytes).unwrap();
    let err = Llama2cTokenizer::from_file(&tok).unwrap_err();
    assert!(
        matches!(err, ModelError::Malformed { .. }) && err.to_string().contains("tok.bin"),
        "{err}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_tiny_llama2c_file_round_trips_through_the_loader() {
    // dim 8, hidden 16, 1 layer, 2 heads, 2 KV heads, vocab 10 (untied: negative), seq 4.
    let header = zo_models::llama2c::Llama2cHeader {
        dim: 8,
        hidden_dim: 16,
        n_layers: 1,
        n_heads: 2,
        n_kv_heads: 2,
        vocab_size: 10,
        shared_classifier: false,
        seq_len: 4,
    };
    let n = header.num_floats();
    let mut bytes: Vec<u8> = [8i32, 16, 1, 2, 2, -10, 4]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    bytes.extend((0..n).flat_map(|i| ((i % 13) as f32 * 0.01).to_le_bytes()));
    let d = temp_dir("tinyllama2c");
    let p = d.join("tiny.bin");
    std::fs::write(&p, bytes).unwrap();
    let m = load_llama2c(&p, Precision::F32).unwrap();
    assert!(!m.config.tie_word_embeddings);
    assert!(m.weights.get("lm_head.weight").is_some());
    assert_eq!(zo_optim::ParamSet::num_params(&m.weights), n - 4 * 4);
    std::fs::remove_dir_all(&d).unwrap();
}
