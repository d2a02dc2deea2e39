//! Typed errors of the masked-LM loading and prompt code: missing files, malformed files, wrong
//! shapes, bad templates and bad inputs.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod masked_support;

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use zo_models::bert::Config;
use zo_models::{
    MaskedLm, MaskedLmClassifier, ModelError, Precision, Template, TemplateError, Tokenizer,
};

use masked_support::{fixture, scratch};

fn copy_fixture(name: &str, to: &Path) -> Result<()> {
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(name).join(f), to.join(f))?;
    }
    Ok(())
}

#[test]
fn missing_model_folder_is_an_io_error() {
    let dir = std::env::temp_dir().join("zo-models-no-such-model-folder");
    let err = MaskedLm::from_folder(&dir, Precision::F32).unwrap_err();
    match err {
        ModelError::Io { path, .. } => assert_eq!(path, dir),
        other => panic!("expected Io, got {other}"),
    }
}

#[test]
fn missing_weights_file_names_it() -> Result<()> {
    let dir = scratch("no-weights");
    std::fs::copy(fixture("bert").join("config.json"), dir.join("config.json"))?;
    let err = MaskedLm::from_folder(&dir, Precision::F32).unwrap_err();
    assert!(
        matches!(&err, ModelError::Io { path, .. } if path.ends_with("model.safetensors")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn malformed_config_names_the_file() -> Result<()> {
    let dir = scratch("bad-config");
    copy_fixture("bert", &dir)?;
    std::fs::write(dir.join("config.json"), "{ \"hidden_size\": 32, oops }")?;
    let err = MaskedLm::from_folder(&dir, Precision::F32).unwrap_err();
    assert!(
        matches!(&err, ModelError::Malformed { path, .. } if path.ends_with("config.json")),
        "{err}"
    );
    assert!(err.to_string().contains("config.json"), "{err}");
    // A config missing a required field is malformed too.
    std::fs::write(dir.join("config.json"), "{ \"hidden_size\": 32 }")?;
    let err = MaskedLm::from_folder(&dir, Precision::F32).unwrap_err();
    assert!(matches!(&err, ModelError::Malformed { .. }), "{err}");
    // An unknown activation is named.
    let text = std::fs::read_to_string(fixture("bert").join("config.json"))?
        .replace("\"gelu\"", "\"mish\"");
    std::fs::write(dir.join("config.json"), text)?;
    let err = MaskedLm::from_folder(&dir, Precision::F32).unwrap_err();
    assert!(err.to_string().contains("mish"), "{err}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn invalid_config_values_are_config_errors() -> Result<()> {
    let base: Config = serde_json::from_str(&std::fs::read_to_string(
        fixture("bert").join("config.json"),
    )?)?;
    let mut c = base.clone();
    c.num_attention_heads = 5;
    assert!(
        matches!(c.validate(), Err(ModelError::Config { field, .. }) if field == "num_attention_heads")
    );
    let mut c = base.clone();
    c.model_type = Some("gpt2".into());
    assert!(matches!(c.validate(), Err(ModelError::Config { field, .. }) if field == "model_type"));
    let mut c = base.clone();
    c.position_embedding_type = Some("relative_key".into());
    assert!(
        matches!(c.validate(), Err(ModelError::Config { field, .. }) if field == "position_embedding_type")
    );
    let mut c = base;
    c.layer_norm_eps = 0.0;
    assert!(
        matches!(c.validate(), Err(ModelError::Config { field, .. }) if field == "layer_norm_eps")
    );
    Ok(())
}

#[test]
fn wrong_tensor_shape_names_the_tensor() -> Result<()> {
    let dir = scratch("bad-shape");
    std::fs::copy(fixture("bert").join("config.json"), dir.join("config.json"))?;
    let mut tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(fixture("bert").join("model.safetensors"), &Device::Cpu)?;
    let name = "bert.encoder.layer.1.attention.self.key.weight";
    tensors.insert(
        name.to_string(),
        Tensor::zeros((32, 31), DType::F32, &Device::Cpu)?,
    );
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
    let err = MaskedLm::from_folder(&dir, Precision::F32).unwrap_err();
    match &err {
        ModelError::Shape {
            name: n,
            expected,
            found,
        } => {
            assert_eq!(n, name);
            assert_eq!(expected, &vec![32, 32]);
            assert_eq!(found, &vec![32, 31]);
        }
        other => panic!("expected Shape, got {other}"),
    }
    assert!(err.to_string().contains(name));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn missing_tensor_names_it() -> Result<()> {
    let dir = scratch("missing-tensor");
    std::fs::copy(
        fixture("roberta").join("config.json"),
        dir.join("config.json"),
    )?;
    let mut tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(fixture("roberta").join("model.safetensors"), &Device::Cpu)?;
    tensors.remove("lm_head.bias");
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
    let err = MaskedLm::from_folder(&dir, Precision::F32).unwrap_err();
    assert!(
        matches!(&err, ModelError::MissingTensor { name, .. } if name.contains("lm_head.bias")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn garbage_safetensors_is_malformed() -> Result<()> {
    let dir = scratch("garbage-weights");
    std::fs::copy(fixture("bert").join("config.json"), dir.join("config.json"))?;
    std::fs::write(dir.join("model.safetensors"), b"not a safetensors file")?;
    let err = MaskedLm::from_folder(&dir, Precision::F32).unwrap_err();
    assert!(
        matches!(&err, ModelError::Malformed { path, .. } if path.ends_with("model.safetensors")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn bad_inputs_are_errors_not_panics() -> Result<()> {
    let (model, _) = MaskedLm::from_folder(fixture("bert"), Precision::F32)?;
    let ids = Tensor::new(&[[1u32, 2, 3]], &Device::Cpu)?;
    let mask = Tensor::new(&[[1u32, 1, 1]], &Device::Cpu)?;
    // Mask of another shape.
    let short = Tensor::new(&[[1u32, 1]], &Device::Cpu)?;
    assert!(matches!(
        model.forward(&ids, &short),
        Err(ModelError::Shape { .. })
    ));
    // Rank-1 ids.
    let flat = Tensor::new(&[1u32, 2, 3], &Device::Cpu)?;
    assert!(matches!(
        model.forward(&flat, &flat),
        Err(ModelError::Shape { .. })
    ));
    // Ids outside the vocabulary.
    let big = Tensor::new(&[[1u32, 99, 3]], &Device::Cpu)?;
    assert!(matches!(
        model.forward(&big, &mask),
        Err(ModelError::Config { .. })
    ));
    // Too long for the position table (64).
    let long = Tensor::zeros((1, 65), DType::U32, &Device::Cpu)?;
    assert!(matches!(
        model.forward(&long, &long),
        Err(ModelError::Config { .. })
    ));
    // Float ids.
    let float_ids = ids.to_dtype(DType::F32)?;
    assert!(matches!(
        model.forward(&float_ids, &mask),
        Err(ModelError::Config { .. })
    ));
    // Positions: wrong count, out of range; vocabulary ids out of range.
    assert!(matches!(
        model.logits_at(&ids, &mask, &[0, 1], None),
        Err(ModelError::Shape { .. })
    ));
    assert!(matches!(
        model.logits_at(&ids, &mask, &[3], None),
        Err(ModelError::Config { .. })
    ));
    assert!(matches!(
        model.logits_at(&ids, &mask, &[2], Some(&[100])),
        Err(ModelError::Config { .. })
    ));
    // Hidden states of the wrong width, or a scalar.
    let wide = Tensor::zeros((2, 33), DType::F32, &Device::Cpu)?;
    assert!(matches!(
        model.head(&wide, None),
        Err(ModelError::Shape { .. })
    ));
    let scalar = Tensor::new(1f32, &Device::Cpu)?;
    assert!(matches!(
        model.head(&scalar, None),
        Err(ModelError::Shape { .. })
    ));
    Ok(())
}

#[test]
fn template_errors() {
    let err = |t: &str| Template::parse(t).unwrap_err();
    assert_eq!(
        err("<S> It was ."),
        TemplateError::MaskCount {
            template: "<S> It was .".into(),
            found: 0
        }
    );
    assert!(matches!(
        err("[MASK] <S> [MASK]"),
        TemplateError::MaskCount { found: 2, .. }
    ));
    assert!(matches!(
        err("<S1> <S3> [MASK]"),
        TemplateError::SlotGap {
            used: 3,
            missing: 2,
            ..
        }
    ));
    assert!(matches!(
        err("<S2> [MASK]"),
        TemplateError::SlotGap {
            used: 2,
            missing: 1,
            ..
        }
    ));
    assert!(matches!(err("<S0> [MASK]"), TemplateError::BadSlot { .. }));
    assert!(matches!(
        err("<S99999999999999999999999> [MASK]"),
        TemplateError::BadSlot { .. }
    ));
    assert!(matches!(
        err("<S1:lower-first [MASK]"),
        TemplateError::Unclosed { .. }
    ));
    let e = err("<S1:lower-first,shout> [MASK]");
    assert_eq!(
        e,
        TemplateError::UnknownTransform {
            template: "<S1:lower-first,shout> [MASK]".into(),
            slot: "<S1:lower-first,shout>".into(),
            name: "shout".into()
        }
    );
    assert!(e.to_string().contains("unknown transform `shout`"), "{e}");
    assert!(matches!(
        err("<S1:> [MASK]"),
        TemplateError::UnknownTransform { .. }
    ));
    // Through the classifier the error is a ModelError::Template, one line naming the template.
    let tokenizer = Tokenizer::from_folder(fixture("tokenizer/wordpiece")).unwrap();
    let (model, _) = MaskedLm::from_folder(fixture("bert"), Precision::F32).unwrap();
    let e =
        MaskedLmClassifier::new(model, tokenizer, "<S> It was .", &["hello", "world"]).unwrap_err();
    assert!(
        matches!(e, ModelError::Template(TemplateError::MaskCount { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("`<S> It was .`") && !e.to_string().contains('\n'));
    // Not slots: literal text.
    assert!(Template::parse("<Sam> [MASK]").is_ok());
    assert!(Template::parse("<S1 [MASK]").is_ok());
}

#[test]
fn tokenizer_errors() -> Result<()> {
    let missing =
        Tokenizer::from_file(std::env::temp_dir().join("zo-models-no-such-tokenizer.json"))
            .unwrap_err();
    assert!(matches!(missing, ModelError::Io { .. }));
    let dir = scratch("bad-tokenizer");
    std::fs::write(dir.join("tokenizer.json"), "{\"version\": 1}")?;
    let err = Tokenizer::from_folder(&dir).unwrap_err();
    assert!(
        matches!(&err, ModelError::Malformed { path, .. } if path.ends_with("tokenizer.json")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn classifier_errors() -> Result<()> {
    let tokenizer = Tokenizer::from_folder(fixture("tokenizer/wordpiece"))?;
    let (model, _) = MaskedLm::from_folder(fixture("bert"), Precision::F32)?;
    // One class only.
    let err = MaskedLmClassifier::new(model.clone(), tokenizer.clone(), "<S> [MASK]", &["hello"])
        .unwrap_err();
    assert!(
        matches!(&err, ModelError::Config { field, .. } if field == "label_words"),
        "{err}"
    );
    // A label word of several tokens.
    let err = MaskedLmClassifier::new(
        model.clone(),
        tokenizer.clone(),
        "<S> [MASK]",
        &["hello", "qwertyzx"],
    )
    .unwrap_err();
    assert!(
        matches!(&err, ModelError::Config { field, .. } if field == "label_words"),
        "{err}"
    );
    let clf = MaskedLmClassifier::new(model, tokenizer, "<S> [MASK] .", &["hello", "world"])?;
    // Wrong number of texts for the template.
    assert!(matches!(
        clf.encode(&["a", "b"]),
        Err(ModelError::Template(TemplateError::TextCount {
            expected: 1,
            found: 2,
            ..
        }))
    ));
    // Labels: wrong count, out of range.
    let batch = clf.encode_batch(&["hello world", "the dog"])?;
    assert!(matches!(
        clf.loss(&batch, &[0]),
        Err(ModelError::Shape { .. })
    ));
    assert!(matches!(
        clf.loss(&batch, &[0, 2]),
        Err(ModelError::Config { .. })
    ));
    assert!(clf.encode_batch::<&str>(&[]).is_err());
    // A maximum length shorter than the template.
    let clf = clf.with_max_length(3)?;
    assert!(clf.encode(&["hello"]).is_err());
    Ok(())
}
