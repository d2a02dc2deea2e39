//! Parameter-efficient fine-tuning on every architecture: LoRA with `B = 0` is the base model
//! exactly, merged LoRA weights give the adapter forward's logits, prefixes are what MeZO's
//! prefix tuning computes (checked against the base model run on the prefix tokens followed by
//! the sequence), and adapters are the whole trainable set, seeded by name.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use zo_models::adapters::prefix_tokens;
use zo_models::{
    CausalLm, Checkpoint, Llama, LlamaConfig, Load, LoraConfig, MaskedLm, Opt, OptConfig, Peft,
    Precision, PrefixConfig, PrefixInit, Weights, load_causal_lm,
};
use zo_optim::{ParamSet, ParamSliceMut};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn lora() -> Peft {
    Peft::Lora(LoraConfig::default())
}

fn prefix(tokens: usize, init: PrefixInit) -> Peft {
    Peft::Prefix(PrefixConfig { tokens, init })
}

fn ids_and_mask(rows: &[&[u32]]) -> Result<(Tensor, Tensor)> {
    let s = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for r in rows {
        ids.extend_from_slice(r);
        mask.extend(std::iter::repeat_n(1u32, r.len()));
        ids.extend(std::iter::repeat_n(0u32, s - r.len()));
        mask.extend(std::iter::repeat_n(0u32, s - r.len()));
    }
    Ok((
        Tensor::from_vec(ids, (rows.len(), s), &Device::Cpu)?,
        Tensor::from_vec(mask, (rows.len(), s), &Device::Cpu)?,
    ))
}

fn max_abs(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Give every LoRA `B` small nonzero values (so that the adapters change the model).
fn perturb_b(weights: &mut Weights) -> Result<()> {
    let mut k = 0u32;
    weights.visit_mut(&mut |info, data| {
        if let (true, ParamSliceMut::F32(d)) = (info.name.contains("lora_B"), data) {
            for x in d.iter_mut() {
                k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                *x = ((k >> 16) as f32 / 65_536.0 - 0.5) * 0.2;
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// The merged weights as a checkpoint map.
fn merged_map(weights: &Weights) -> Result<HashMap<String, Tensor>> {
    let merged = weights.merged()?;
    Ok(merged
        .iter()
        .map(|(i, t)| (i.name.clone(), t.clone()))
        .collect())
}

#[test]
fn masked_lora_starts_as_the_base_model_and_merges() -> Result<()> {
    let mut dirs = vec![fixture("bert"), fixture("roberta")];
    if let Some(d) = bszo_testkit::splade_tiny("masked_lora_starts_as_the_base_model_and_merges") {
        dirs.push(d);
    }
    let (ids, mask) = ids_and_mask(&[&[2, 14, 15, 16, 4, 17, 3], &[2, 20, 21, 4, 3]])?;
    for dir in dirs {
        let (base, base_weights) = MaskedLm::from_folder(&dir, Precision::F32)?;
        let (model, mut weights) =
            MaskedLm::from_folder(&dir, Load::new(Precision::F32, lora(), 3))?;
        let reference = base.forward(&ids, &mask)?;
        assert_eq!(
            values(&model.forward(&ids, &mask)?)?,
            values(&reference)?,
            "{}",
            dir.display()
        );
        // The trainable set is the adapters of the query and value projections only.
        let cfg = base.config();
        let (h, r) = (cfg.hidden_size, 8);
        assert_eq!(weights.len(), 4 * cfg.num_hidden_layers);
        assert_eq!(weights.num_params(), cfg.num_hidden_layers * 2 * 2 * h * r);
        assert!(weights.tensors().iter().all(|t| t.name.contains(".lora_")));
        assert_eq!(weights.frozen_elements(), base_weights.num_params());
        // With B ≠ 0 the adapters change the logits, and the merged weights give the same ones.
        perturb_b(&mut weights)?;
        let adapted = model.forward(&ids, &mask)?;
        assert!(max_abs(&adapted, &reference)? > 1e-3);
        let mut ckpt =
            Checkpoint::from_tensors("merged".into(), merged_map(&weights)?, Precision::F32);
        let merged = MaskedLm::new(cfg, &mut ckpt)?;
        let diff = max_abs(&merged.forward(&ids, &mask)?, &adapted)?;
        let scale = values(&adapted)?.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(diff <= 1e-5 * scale.max(1.0), "{}: {diff}", dir.display());
    }
    Ok(())
}

#[test]
fn causal_lora_starts_as_the_base_model_and_merges() -> Result<()> {
    let (ids, mask) = ids_and_mask(&[&[1, 5, 9, 2, 7, 3, 4], &[1, 6, 8, 3]])?;
    let mut paths: Vec<PathBuf> = ["opt", "opt_post_ln", "llama", "llama_tied", "mistral"]
        .iter()
        .map(|n| fixture(n))
        .collect();
    paths.push(bszo_testkit::stories260k().join("stories260K.bin"));
    for path in paths {
        let (base, base_weights) = load_causal_lm(&path, Precision::F32)?;
        let (model, mut weights) = load_causal_lm(&path, Load::new(Precision::F32, lora(), 5))?;
        let reference = base.forward(&ids, &mask)?;
        assert_eq!(
            values(&model.forward(&ids, &mask)?)?,
            values(&reference)?,
            "{}",
            path.display()
        );
        assert!(weights.tensors().iter().all(|t| t.name.contains(".lora_")));
        assert!(
            weights
                .tensors()
                .iter()
                .all(|t| t.name.contains("q_proj") || t.name.contains("v_proj"))
        );
        assert_eq!(weights.frozen_elements(), base_weights.num_params());
        perturb_b(&mut weights)?;
        let adapted = model.forward(&ids, &mask)?;
        assert!(max_abs(&adapted, &reference)? > 1e-4, "{}", path.display());
        let map = merged_map(&weights)?;
        let merged: Box<dyn CausalLm> = if path.is_file() {
            // llama2.c: the merged weights under the Hugging Face names of the Llama it loads as.
            let mut ckpt = Checkpoint::from_tensors("merged".into(), map, Precision::F32);
            let cfg = zo_models::llama2c::load_llama2c(&path, Precision::F32)?.config;
            Box::new(Llama::new(&cfg, &mut ckpt)?)
        } else if path.ends_with("opt") || path.ends_with("opt_post_ln") {
            let cfg = OptConfig::from_file(&path.join("config.json"))?;
            let mut ckpt = Checkpoint::from_tensors("merged".into(), map, Precision::F32);
            Box::new(Opt::new(&cfg, &mut ckpt)?)
        } else {
            let cfg = LlamaConfig::from_file(&path.join("config.json"))?;
            let mut ckpt = Checkpoint::from_tensors("merged".into(), map, Precision::F32);
            Box::new(Llama::new(&cfg, &mut ckpt)?)
        };
        let diff = max_abs(&merged.forward(&ids, &mask)?, &adapted)?;
        assert!(diff <= 1e-4, "{}: {diff}", path.display());
    }
    Ok(())
}

#[test]
fn lora_targets_are_configurable_and_checked() -> Result<()> {
    let peft = Peft::Lora(LoraConfig {
        rank: 2,
        alpha: 4.0,
        targets: vec!["fc1".into(), "self_attn.out_proj".into()],
    });
    let (_, weights) = Opt::from_hf_folder(&fixture("opt"), Load::new(Precision::F32, peft, 0))?;
    let names: Vec<String> = weights.tensors().into_iter().map(|t| t.name).collect();
    assert!(
        names
            .iter()
            .all(|n| n.contains("fc1") || n.contains("out_proj")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.contains("fc1")) && names.iter().any(|n| n.contains("out_proj"))
    );
    assert_eq!(weights.lora_pairs()[0].scale, 2.0);
    let typo = Peft::Lora(LoraConfig {
        targets: vec!["q_proj".into(), "fc3".into()],
        ..LoraConfig::default()
    });
    let err = Opt::from_hf_folder(&fixture("opt"), Load::new(Precision::F32, typo, 0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`fc3`") && err.contains("fc1"), "{err}");
    // A masked LM's default targets are `query` and `value`; a causal LM's names differ.
    let wrong = Peft::Lora(LoraConfig {
        targets: vec!["query".into()],
        ..LoraConfig::default()
    });
    assert!(Llama::from_hf_folder(&fixture("llama"), Load::new(Precision::F32, wrong, 0)).is_err());
    Ok(())
}

#[test]
fn adapters_are_seeded_by_name_and_the_base_stays_in_its_precision() -> Result<()> {
    let load = |seed, peft: Peft, precision| {
        MaskedLm::from_folder(fixture("bert"), Load::new(precision, peft, seed))
    };
    let stored =
        |w: &Weights| -> Result<Vec<Vec<f32>>> { w.iter().map(|(_, t)| values(t)).collect() };
    let (_, a) = load(1, lora(), Precision::F32)?;
    let (_, b) = load(1, lora(), Precision::F32)?;
    let (_, c) = load(2, lora(), Precision::F32)?;
    assert_eq!(stored(&a)?, stored(&b)?);
    assert_ne!(stored(&a)?, stored(&c)?);
    let (_, half) = load(1, lora(), Precision::BF16)?;
    assert_eq!(
        stored(&a)?,
        stored(&half)?,
        "adapters are f32 whatever the base precision"
    );
    assert!(half.iter().all(|(_, t)| t.dtype() == DType::F32));
    assert!(half.frozen().all(|(_, t)| t.dtype() == DType::BF16));
    for init in [PrefixInit::Real, PrefixInit::Random] {
        let (_, p) = load(1, prefix(3, init), Precision::F32)?;
        let (_, q) = load(1, prefix(3, init), Precision::F32)?;
        let (_, r) = load(9, prefix(3, init), Precision::F32)?;
        assert_eq!(stored(&p)?, stored(&q)?);
        assert_ne!(stored(&p)?, stored(&r)?);
        assert!(
            p.tensors().iter().all(|t| t.shape == [3, 32]),
            "{:?}",
            p.tensors()
        );
        assert!(p.merged().is_err());
    }
    Ok(())
}

/// A base model on the prefix tokens followed by the sequence gives the prefixed model's outputs
/// on the sequence, when nothing else tells the two apart.
fn check_prefix_semantics(
    build: impl Fn(&mut Checkpoint) -> Result<Box<dyn CausalLm>>,
    tensors: HashMap<String, Tensor>,
    vocab: usize,
) -> Result<()> {
    let (seed, tokens) = (11, 3);
    let t = prefix_tokens(seed, tokens, vocab);
    let sequence = [1u32, 5, 9, 2, 7];
    let mut both = t.clone();
    both.extend_from_slice(&sequence);
    let (ids, mask) = ids_and_mask(&[&sequence])?;
    let (ids_both, mask_both) = ids_and_mask(&[&both])?;

    let mut plain = Checkpoint::from_tensors("plain".into(), tensors.clone(), Precision::F32);
    let base = build(&mut plain)?;
    let load = Load::new(Precision::F32, prefix(tokens, PrefixInit::Real), seed);
    let mut ckpt = Checkpoint::from_tensors("prefixed".into(), tensors, load);
    let prefixed = build(&mut ckpt)?;
    let weights = ckpt.into_weights()?;
    assert!(
        weights
            .tensors()
            .iter()
            .all(|t| t.name.contains(".prefix_"))
    );

    let expected = base
        .hidden_states(&ids_both, &mask_both)?
        .narrow(1, tokens, sequence.len())?;
    let got = prefixed.hidden_states(&ids, &mask)?;
    let diff = max_abs(&got, &expected)?;
    assert!(diff < 1e-5, "{diff}");
    // And the prefix matters: the base model on the sequence alone differs.
    assert!(max_abs(&base.hidden_states(&ids, &mask)?, &got)? > 1e-3);
    Ok(())
}

#[test]
fn opt_prefixes_act_as_the_activations_of_real_tokens() -> Result<()> {
    // With every position row equal, the sequence's positions do not matter, so the prefixed
    // model on the sequence equals the base model on (prefix tokens, sequence).
    let path = fixture("opt");
    let cfg = OptConfig::from_file(&path.join("config.json"))?;
    let mut tensors = candle_core::safetensors::load(path.join("model.safetensors"), &Device::Cpu)?;
    let name = "model.decoder.embed_positions.weight";
    let table = tensors[name].clone();
    let row = table.get(2)?.unsqueeze(0)?;
    tensors.insert(name.into(), row.broadcast_as(table.dims())?.contiguous()?);
    check_prefix_semantics(
        |ck| Ok(Box::new(Opt::new(&cfg, ck)?) as Box<dyn CausalLm>),
        tensors,
        cfg.vocab_size,
    )
}

#[test]
fn llama_prefixes_extend_every_key_value_group() -> Result<()> {
    // With the query projection at zero every visible key scores alike (positions drop out), so
    // the prefixed model on the sequence equals the base model on (prefix tokens, sequence):
    // checks the values of the grouped key/value heads and the widened causal mask.
    let path = fixture("llama");
    let cfg = LlamaConfig::from_file(&path.join("config.json"))?;
    assert!(cfg.kv_heads() < cfg.num_attention_heads);
    let mut tensors = candle_core::safetensors::load(path.join("model.safetensors"), &Device::Cpu)?;
    for (name, t) in tensors.iter_mut() {
        if name.ends_with("q_proj.weight") {
            *t = t.zeros_like()?;
        }
    }
    check_prefix_semantics(
        |ck| Ok(Box::new(Llama::new(&cfg, ck)?) as Box<dyn CausalLm>),
        tensors,
        cfg.vocab_size,
    )
}

#[test]
fn prefixes_run_on_every_architecture() -> Result<()> {
    let (ids, mask) = ids_and_mask(&[&[2, 14, 15, 4, 3], &[2, 20, 3]])?;
    for name in ["bert", "roberta"] {
        let (base, _) = MaskedLm::from_folder(fixture(name), Precision::F32)?;
        let (model, weights) = MaskedLm::from_folder(
            fixture(name),
            Load::new(Precision::F32, prefix(4, PrefixInit::Real), 0),
        )?;
        let cfg = base.config();
        assert_eq!(weights.len(), 2 * cfg.num_hidden_layers);
        assert_eq!(
            weights.num_params(),
            2 * cfg.num_hidden_layers * 4 * cfg.hidden_size
        );
        let (a, b) = (base.forward(&ids, &mask)?, model.forward(&ids, &mask)?);
        assert_eq!(a.dims(), b.dims());
        assert!(max_abs(&a, &b)? > 1e-4, "{name}");
    }
    for name in ["opt_post_ln", "llama_tied", "mistral"] {
        let (base, _) = load_causal_lm(&fixture(name), Precision::F32)?;
        let (model, weights) = load_causal_lm(
            &fixture(name),
            Load::new(Precision::F32, prefix(2, PrefixInit::Random), 0),
        )?;
        assert!(!weights.is_empty());
        let (a, b) = (base.forward(&ids, &mask)?, model.forward(&ids, &mask)?);
        assert_eq!(a.dims(), b.dims());
        assert!(max_abs(&a, &b)? > 1e-4, "{name}");
    }
    Ok(())
}

#[test]
fn every_optimizer_trains_adapters_and_leaves_the_base_alone() -> Result<()> {
    use zo_models::{MaskedLmClassifier, Tokenizer};
    use zo_optim::{Algorithm, Optimizer};
    for peft in [lora(), prefix(2, PrefixInit::Real)] {
        for algorithm in Algorithm::ALL {
            let (model, mut weights) =
                MaskedLm::from_folder(fixture("bert"), Load::new(Precision::F32, peft.clone(), 1))?;
            let tokenizer = Tokenizer::from_folder(fixture("tokenizer/wordpiece"))?;
            let clf = MaskedLmClassifier::new(
                model,
                tokenizer,
                "<S> It was [MASK] .",
                &["hello", "world"],
            )?;
            let batch = clf.encode_batch(&["the quick brown fox", "the lazy dog"])?;
            let labels = [0, 1];
            let frozen: Vec<Vec<f32>> = weights
                .frozen()
                .map(|(_, t)| values(t))
                .collect::<Result<_>>()?;
            let before: Vec<Vec<f32>> = weights
                .iter()
                .map(|(_, t)| values(t))
                .collect::<Result<_>>()?;
            let opt = Optimizer::named(algorithm, 1e-2, 1e-1)?;
            let mut state = opt.init(&weights, 3);
            for _ in 0..2 {
                let mut objective = clf.objective(&batch, &labels);
                opt.step(&mut state, &mut weights, &mut objective)?;
            }
            let after: Vec<Vec<f32>> = weights
                .iter()
                .map(|(_, t)| values(t))
                .collect::<Result<_>>()?;
            assert_ne!(
                before,
                after,
                "{algorithm} {}: the adapters moved",
                peft.method()
            );
            let still: Vec<Vec<f32>> = weights
                .frozen()
                .map(|(_, t)| values(t))
                .collect::<Result<_>>()?;
            assert_eq!(
                frozen,
                still,
                "{algorithm} {}: the base is frozen",
                peft.method()
            );
        }
    }
    Ok(())
}
