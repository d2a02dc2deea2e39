//! Serialisation round trips, and validation on deserialisation (feature `serde`).
#![cfg(feature = "serde")]

use kalman_ndarray::{
    FilterOutput, Gaussian, InformationGaussian, LinearModel, Measurement, Transition, UpdateForm,
    filter,
};
use ndarray::{Array2, array};

fn model() -> LinearModel<f64> {
    LinearModel::new(
        Transition::new(array![[1.0, 1.0], [0.0, 1.0]], Array2::eye(2) * 0.01)
            .unwrap()
            .with_control(array![[0.5], [1.0]])
            .unwrap(),
        Measurement::new(array![[1.0, 0.0]], array![[0.5]]).unwrap(),
    )
    .unwrap()
}

#[test]
fn round_trips() {
    let g = Gaussian::new(array![1.0, -2.0], array![[2.0, 0.5], [0.5, 1.0]]).unwrap();
    let json = serde_json::to_string(&g).unwrap();
    assert_eq!(serde_json::from_str::<Gaussian<f64>>(&json).unwrap(), g);

    let info = InformationGaussian::from_gaussian(&g).unwrap();
    let json = serde_json::to_string(&info).unwrap();
    assert_eq!(
        serde_json::from_str::<InformationGaussian<f64>>(&json).unwrap(),
        info
    );

    let m = model();
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(serde_json::from_str::<LinearModel<f64>>(&json).unwrap(), m);

    let out = filter(&g, &m, &[Some(array![1.0]), None], UpdateForm::Joseph).unwrap();
    let json = serde_json::to_string(&out).unwrap();
    assert_eq!(
        serde_json::from_str::<FilterOutput<f64>>(&json).unwrap(),
        out
    );

    let form: UpdateForm = serde_json::from_str("\"Standard\"").unwrap();
    assert_eq!(form, UpdateForm::Standard);
}

#[test]
fn deserialisation_validates() {
    let g = Gaussian::new(array![0.0, 0.0], Array2::eye(2)).unwrap();
    let mut value = serde_json::to_value(&g).unwrap();
    // Make the covariance indefinite: [[1, 2], [2, 1]].
    value["cov"]["data"] = serde_json::json!([1.0, 2.0, 2.0, 1.0]);
    let err = serde_json::from_value::<Gaussian<f64>>(value).unwrap_err();
    assert!(
        err.to_string().contains("`cov` is not positive definite"),
        "{err}"
    );

    let mut value = serde_json::to_value(model()).unwrap();
    value["measurement"]["h"]["dim"] = serde_json::json!([1, 1]);
    value["measurement"]["h"]["data"] = serde_json::json!([1.0]);
    let err = serde_json::from_value::<LinearModel<f64>>(value).unwrap_err();
    assert!(err.to_string().contains("shape mismatch in `h`"), "{err}");
}
