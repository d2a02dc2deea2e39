//! Score calibration of prompt-based classifiers: a class's score measured against what the
//! prompt without the example's input gives it, so that a model that prefers one answer whatever
//! the input is told apart from one that reads the input.
//!
//! - Causal LMs, surface form competition (Holtzman et al. 2021, "Surface Form Competition: Why
//!   the Highest Probability Answer Isn't Always Right", as MeZO's `--sfc` computes it,
//!   princeton-nlp/MeZO `large_models/run.py`): the calibrated score of candidate `c` is
//!   `Σ log p(c's tokens | the prompt) − Σ log p(c's tokens | the SFC prompt)`
//!   ([`sfc_scores`]; the sums come from [`crate::causal::candidate_logprob_sums`]).
//! - Masked LMs, content-free calibration (Zhao et al. 2021, "Calibrate Before Use: Improving
//!   Few-Shot Performance of Language Models"): the calibrated score of class `c` is
//!   `log p(label word c | prompt(x)) − log p(label word c | content-free prompt)`, both
//!   probabilities renormalised over the label words (their `W = diag(p_cf)⁻¹`, `b = 0`)
//!   ([`content_free_scores`]). The renormalisation adds one constant per example, so the
//!   prediction is the same as with the probabilities over the whole vocabulary.
//!
//! The prediction is the argmax of the calibrated scores.

use crate::error::{ModelError, Result};

/// Surface-form-competition scores: `scores[c] − reference[c]` for each candidate `c`, where
/// `scores` are the candidates' summed token log-probabilities given the prompt and `reference`
/// the same given the SFC prompt. Different lengths are a [`ModelError::Config`].
pub fn sfc_scores(scores: &[f64], reference: &[f64]) -> Result<Vec<f64>> {
    same_length(scores.len(), reference.len())?;
    Ok(scores.iter().zip(reference).map(|(s, r)| s - r).collect())
}

/// Content-free scores: `log softmax(logits)[c] − log softmax(reference)[c]` for each class `c`,
/// in f64, where `logits` are the label words' logits at the mask for the example's prompt and
/// `reference` those for the content-free prompt. Different lengths are a
/// [`ModelError::Config`].
pub fn content_free_scores(logits: &[f32], reference: &[f32]) -> Result<Vec<f64>> {
    same_length(logits.len(), reference.len())?;
    let p = log_softmax(logits);
    let q = log_softmax(reference);
    Ok(p.iter().zip(&q).map(|(a, b)| a - b).collect())
}

/// `log softmax(row)` in f64.
pub fn log_softmax(row: &[f32]) -> Vec<f64> {
    let lse = log_sum_exp(row);
    row.iter().map(|&v| f64::from(v) - lse).collect()
}

/// `log Σ exp(row)` in f64, shifted by the maximum for stability.
pub(crate) fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row
        .iter()
        .map(|&v| f64::from(v))
        .fold(f64::NEG_INFINITY, f64::max);
    max + row
        .iter()
        .map(|&v| (f64::from(v) - max).exp())
        .sum::<f64>()
        .ln()
}

fn same_length(scores: usize, reference: usize) -> Result<()> {
    if scores != reference {
        return Err(ModelError::Config {
            field: "reference".into(),
            message: format!("{reference} reference scores for {scores} classes"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::causal::argmax;

    /// A model that always prefers class 0: calibration against the reference turns the
    /// prediction where the input moves the scores towards class 1.
    #[test]
    fn sfc_flips_a_constant_preference() {
        let reference = [-1.0, -5.0];
        // Class 0 wins uncalibrated for both inputs.
        let a = [-1.5, -4.0]; // the input raised class 1 by 1.0, lowered class 0 by 0.5
        let b = [-0.5, -5.5]; // the input raised class 0
        assert_eq!(argmax(&a), 0);
        assert_eq!(argmax(&b), 0);
        let ca = sfc_scores(&a, &reference).unwrap();
        let cb = sfc_scores(&b, &reference).unwrap();
        assert_eq!(ca, [-0.5, 1.0]);
        assert_eq!(cb, [0.5, -0.5]);
        assert_eq!(argmax(&ca), 1);
        assert_eq!(argmax(&cb), 0);
        assert!(sfc_scores(&a, &[0.0]).is_err());
    }

    #[test]
    fn content_free_flips_a_constant_preference() {
        // The content-free prompt gives class 0 probability e²/(e²+1) ≈ 0.88.
        let reference = [2.0f32, 0.0];
        let x = [1.0f32, 0.0]; // p(class 0) ≈ 0.73 < 0.88: the input speaks for class 1
        assert_eq!(argmax(&[f64::from(x[0]), f64::from(x[1])]), 0);
        let c = content_free_scores(&x, &reference).unwrap();
        let expect0 = (1.0f64 - (1.0f64.exp() + 1.0).ln()) - (2.0 - (2.0f64.exp() + 1.0).ln());
        let expect1 = -(1.0f64.exp() + 1.0).ln() + (2.0f64.exp() + 1.0).ln();
        assert!((c[0] - expect0).abs() < 1e-12, "{c:?}");
        assert!((c[1] - expect1).abs() < 1e-12, "{c:?}");
        assert_eq!(argmax(&c), 1);
        // Zhao et al.'s W = diag(p_cf)⁻¹: the same ranking as p / p_cf.
        let p: Vec<f64> = log_softmax(&x).iter().map(|v| v.exp()).collect();
        let q: Vec<f64> = log_softmax(&reference).iter().map(|v| v.exp()).collect();
        assert!(p[1] / q[1] > p[0] / q[0]);
        // A shift of all logits (the vocabulary's normaliser) changes nothing.
        let shifted = [x[0] + 3.0, x[1] + 3.0];
        let s = content_free_scores(&shifted, &reference).unwrap();
        assert!((s[0] - c[0]).abs() < 1e-6 && (s[1] - c[1]).abs() < 1e-6);
        assert!(content_free_scores(&x, &[0.0]).is_err());
    }
}
