//! Classification metrics over class indices.

use crate::error::{DataError, Result};

fn check(predictions: &[usize], labels: &[usize]) -> Result<()> {
    if predictions.len() != labels.len() {
        return Err(DataError::Invalid {
            field: "predictions",
            message: format!(
                "{} predictions for {} labels",
                predictions.len(),
                labels.len()
            ),
        });
    }
    if labels.is_empty() {
        return Err(DataError::Invalid {
            field: "labels",
            message: "no examples".into(),
        });
    }
    Ok(())
}

/// The fraction of predictions equal to their label.
pub fn accuracy(predictions: &[usize], labels: &[usize]) -> Result<f64> {
    check(predictions, labels)?;
    let right = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    Ok(right as f64 / labels.len() as f64)
}

/// The confusion matrix `m[label][prediction]` over `num_classes` classes.
pub fn confusion_matrix(
    predictions: &[usize],
    labels: &[usize],
    num_classes: usize,
) -> Result<Vec<Vec<usize>>> {
    check(predictions, labels)?;
    let mut m = vec![vec![0usize; num_classes]; num_classes];
    for (&p, &l) in predictions.iter().zip(labels) {
        if p >= num_classes || l >= num_classes {
            return Err(DataError::Invalid {
                field: "predictions",
                message: format!("class {} is out of range ({num_classes} classes)", p.max(l)),
            });
        }
        m[l][p] += 1;
    }
    Ok(m)
}

/// Macro-averaged F1 over `num_classes` classes: the mean of the per-class F1 scores
/// (`2·TP / (2·TP + FP + FN)`), taken over the classes that occur among the labels or the
/// predictions; a class absent from both is left out of the mean.
pub fn macro_f1(predictions: &[usize], labels: &[usize], num_classes: usize) -> Result<f64> {
    let m = confusion_matrix(predictions, labels, num_classes)?;
    let mut sum = 0.0;
    let mut classes = 0usize;
    for (c, row) in m.iter().enumerate() {
        let tp = row[c];
        let fn_ = row.iter().sum::<usize>() - tp;
        let fp = m.iter().map(|r| r[c]).sum::<usize>() - tp;
        let denom = 2 * tp + fp + fn_;
        if denom == 0 {
            continue;
        }
        sum += 2.0 * tp as f64 / denom as f64;
        classes += 1;
    }
    Ok(if classes == 0 {
        0.0
    } else {
        sum / classes as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_by_hand() {
        assert_eq!(accuracy(&[0, 1, 1, 0], &[0, 1, 0, 0]).unwrap(), 0.75);
        assert!(accuracy(&[0], &[0, 1]).is_err());
        assert!(accuracy(&[], &[]).is_err());
    }

    #[test]
    fn macro_f1_by_hand() {
        // labels      0 0 0 1 1 2
        // predictions 0 0 1 1 2 2
        // class 0: tp 2, fp 0, fn 1 -> 4/5
        // class 1: tp 1, fp 1, fn 1 -> 2/4
        // class 2: tp 1, fp 1, fn 0 -> 2/3
        let f1 = macro_f1(&[0, 0, 1, 1, 2, 2], &[0, 0, 0, 1, 1, 2], 3).unwrap();
        let want = (0.8 + 0.5 + 2.0 / 3.0) / 3.0;
        assert!((f1 - want).abs() < 1e-12, "{f1} vs {want}");
        // Binary, always predicting 0 on labels 0 0 1 1: class 0 F1 = 2·2/(4+2) = 2/3, class 1 = 0.
        let f1 = macro_f1(&[0, 0, 0, 0], &[0, 0, 1, 1], 2).unwrap();
        assert!((f1 - 1.0 / 3.0).abs() < 1e-12);
        // A class absent from both labels and predictions is left out of the mean.
        assert_eq!(macro_f1(&[0, 1], &[0, 1], 5).unwrap(), 1.0);
        assert!(macro_f1(&[3], &[0], 2).is_err());
    }

    #[test]
    fn confusion_matrix_by_hand() {
        let m = confusion_matrix(&[0, 1, 1], &[0, 0, 1], 2).unwrap();
        assert_eq!(m, vec![vec![1, 1], vec![0, 1]]);
    }
}
