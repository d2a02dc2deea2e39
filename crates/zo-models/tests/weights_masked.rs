//! The trainable weights of a masked LM as a zeroth-order parameter set: in-place perturbation seen
//! by the model, restore drift, and optimizer steps through the prompt objective.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod masked_support;

use anyhow::Result;
use candle_core::{Device, Tensor};
use zo_models::{MaskedLm, MaskedLmClassifier, Precision, Tokenizer};
use zo_optim::{
    Algorithm, Direction, DirectionKey, Optimizer, ParamSet, ParamSliceMut, Perturbation, Term,
};

use masked_support::fixture;

fn inputs() -> Result<(Tensor, Tensor)> {
    let ids = Tensor::new(
        &[[2u32, 74, 75, 76, 4, 41, 3], [2, 80, 81, 4, 3, 0, 0]],
        &Device::Cpu,
    )?;
    let mask = Tensor::new(
        &[[1u32, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]],
        &Device::Cpu,
    )?;
    Ok((ids, mask))
}

/// Every stored weight, as f32.
fn stored(weights: &mut zo_models::Weights) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    weights.visit_mut(&mut |_, data| {
        match data {
            ParamSliceMut::F32(d) => out.extend_from_slice(d),
            ParamSliceMut::F16(d) => out.extend(d.iter().map(|v| v.to_f32())),
            ParamSliceMut::BF16(d) => out.extend(d.iter().map(|v| v.to_f32())),
        }
        Ok(())
    })?;
    Ok(out)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

#[test]
fn registered_weights_cover_the_checkpoint() -> Result<()> {
    let (_, weights) = MaskedLm::from_folder(fixture("bert"), Precision::F32)?;
    let file =
        candle_core::safetensors::load(fixture("bert").join("model.safetensors"), &Device::Cpu)?;
    let in_file: usize = file.values().map(|t| t.elem_count()).sum();
    assert_eq!(weights.num_params(), in_file);
    let names: Vec<String> = weights.tensors().into_iter().map(|t| t.name).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    // Biases and norms are outside the weight-decay group.
    for info in weights.tensors() {
        let no_decay = info.name.ends_with(".bias") || info.name.contains("LayerNorm");
        assert_eq!(info.decay, !no_decay, "{}", info.name);
    }
    Ok(())
}

#[test]
fn a_probe_is_seen_through_the_view_and_never_written() -> Result<()> {
    let (ids, mask) = inputs()?;
    for precision in [Precision::F32, Precision::F16, Precision::BF16] {
        let (model, mut weights) = MaskedLm::from_folder(fixture("bert"), precision)?;
        let base = model.forward(&ids, &mask)?;
        let before = stored(&mut weights)?;
        let z = Direction::gaussian(DirectionKey::new(3, 0, 0));
        let eps = 1e-3;
        weights.set_view(Some(Perturbation::new(vec![Term::new(eps, z)])))?;
        let plus = model.forward(&ids, &mask)?;
        weights.set_view(Some(Perturbation::new(vec![Term::new(-eps, z)])))?;
        let minus = model.forward(&ids, &mask)?;
        weights.set_view(None)?;
        let back = model.forward(&ids, &mask)?;
        // The stored weights never moved, so the logits come back bit for bit.
        let after = stored(&mut weights)?;
        assert!(
            before
                .iter()
                .zip(&after)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{precision:?}: a probe wrote the stored weights"
        );
        assert_eq!(max_abs_diff(&back, &base)?, 0.0, "{precision:?}");
        let moved = max_abs_diff(&plus, &base)?;
        println!("{precision:?}: +eps moves logits by {moved:.2e}");
        assert!(
            moved > 1e-4,
            "{precision:?}: the model did not see the perturbation"
        );
        // Central difference: the two sides move the logits in opposite directions, to first
        // order by the same amount (in half precision too: the view adds εz in f32).
        let sym = max_abs_diff(&((&plus - &base)? + (&minus - &base)?)?, &(&base * 0.0)?)?;
        assert!(
            sym < 0.2 * moved,
            "{precision:?}: asymmetric probes {sym} vs {moved}"
        );
    }
    Ok(())
}

#[test]
fn the_f32_view_equals_an_in_place_perturbation() -> Result<()> {
    let (ids, mask) = inputs()?;
    let (model, mut weights) = MaskedLm::from_folder(fixture("bert"), Precision::F32)?;
    let z = Direction::gaussian(DirectionKey::new(5, 1, 0));
    weights.set_view(Some(Perturbation::new(vec![Term::new(1e-3, z)])))?;
    let viewed = model.forward(&ids, &mask)?;
    weights.set_view(None)?;
    // θ + εz rounded once to f32 either way: the same weights, read in place this time.
    weights.perturb(z, 1e-3)?;
    let written = model.forward(&ids, &mask)?;
    let d = max_abs_diff(&viewed, &written)?;
    assert!(d < 1e-5, "{d}");
    Ok(())
}

#[test]
fn mezo_and_bszo_steps_run_through_the_prompt_objective() -> Result<()> {
    let (model, mut weights) = MaskedLm::from_folder(fixture("bert"), Precision::F32)?;
    let tok = Tokenizer::from_folder(fixture("tokenizer/wordpiece"))?;
    let clf = MaskedLmClassifier::new(model, tok, "<S> It was [MASK] .", &["hello", "world"])?;
    let batch = clf.encode_batch(&[
        "the quick brown fox",
        "the lazy dog",
        "hello world",
        "fine tuning",
    ])?;
    let labels = [0, 1, 0, 1];
    let mut objective = clf.objective(&batch, &labels);
    for (algorithm, forwards) in [
        (Algorithm::Mezo, 2),
        (Algorithm::Bszo, 3),
        (Algorithm::Hizoo, 3),
    ] {
        let opt = Optimizer::named(algorithm, 1e-3, 1e-3)?;
        let mut state = opt.init(&weights, 5);
        for _ in 0..3 {
            let report = opt.step(&mut state, &mut weights, &mut objective)?;
            assert_eq!(report.forwards, forwards, "{algorithm}");
            assert!(report.losses.iter().all(|l| l.is_finite()));
        }
    }
    Ok(())
}

/// `Config::tensor_shapes` lists exactly the tensors transformers writes, so `MaskedLm::random`
/// builds the same parameter set as a loaded checkpoint.
#[test]
fn tensor_shapes_match_the_fixtures() -> Result<()> {
    for name in ["bert", "roberta"] {
        let cfg = zo_models::bert::Config::from_file(fixture(name).join("config.json"))?;
        let file =
            candle_core::safetensors::load(fixture(name).join("model.safetensors"), &Device::Cpu)?;
        let mut want: Vec<(String, Vec<usize>)> = file
            .iter()
            .map(|(n, t)| (n.clone(), t.dims().to_vec()))
            .collect();
        want.sort();
        let mut got = cfg.tensor_shapes()?;
        got.sort();
        assert_eq!(got, want, "{name}");
        let (_, random) = MaskedLm::random(&cfg, Precision::F32, 1)?;
        let (_, loaded) = MaskedLm::from_folder(fixture(name), Precision::F32)?;
        assert_eq!(random.tensors(), loaded.tensors(), "{name}");
    }
    Ok(())
}
