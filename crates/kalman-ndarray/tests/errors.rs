//! Every error variant is reachable from the public API, names the offending argument (or
//! matrix), and leaves the receiver unchanged.

use kalman_ndarray::linalg::Cholesky;
use kalman_ndarray::{
    Gaussian, InformationGaussian, KalmanError, KalmanFilter, LinearModel, Measurement,
    StateSpaceModel, Transition, UpdateForm, filter, filter_with_controls, rts_smooth,
};
use ndarray::{Array1, Array2, array};

fn shape(err: &KalmanError) -> (&'static str, Vec<usize>, Vec<usize>) {
    match err.root() {
        KalmanError::ShapeMismatch {
            argument,
            expected,
            found,
        } => (argument, expected.clone(), found.clone()),
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

fn named(err: &KalmanError, name: &str) {
    assert!(
        err.to_string().contains(&format!("`{name}`")),
        "message {err} does not name `{name}`"
    );
}

fn model() -> LinearModel<f64> {
    LinearModel::new(
        Transition::new(array![[1.0, 1.0], [0.0, 1.0]], Array2::eye(2) * 0.01).unwrap(),
        Measurement::new(array![[1.0, 0.0]], array![[0.5]]).unwrap(),
    )
    .unwrap()
}

#[test]
fn shape_mismatch() {
    let err = Gaussian::new(array![0.0, 0.0], Array2::eye(3)).unwrap_err();
    assert_eq!(shape(&err), ("cov", vec![2, 2], vec![3, 3]));
    named(&err, "cov");
    assert!(err.to_string().contains("expected [2, 2], found [3, 3]"));

    let mut g = Gaussian::<f64>::isotropic(3, 1.0).unwrap();
    let before = g.clone();
    let err = g
        .scalar_update(array![1.0, 0.0].view(), 1.0, 0.0)
        .unwrap_err();
    assert_eq!(shape(&err), ("h", vec![3], vec![2]));
    assert_eq!(g, before);

    let m = model();
    let mut g = Gaussian::<f64>::isotropic(3, 1.0).unwrap();
    let err = g.predict(m.transition()).unwrap_err();
    assert_eq!(shape(&err), ("f", vec![3, 3], vec![2, 2]));
    let err = g
        .update(m.measurement(), array![0.0].view(), UpdateForm::Joseph)
        .unwrap_err();
    assert_eq!(shape(&err), ("h", vec![1, 3], vec![1, 2]));

    let mut g = Gaussian::<f64>::isotropic(2, 1.0).unwrap();
    let err = g
        .update(m.measurement(), array![0.0, 1.0].view(), UpdateForm::Joseph)
        .unwrap_err();
    assert_eq!(shape(&err), ("y", vec![1], vec![2]));
    let err = g
        .predict_with_control(m.transition(), array![1.0].view())
        .unwrap_err();
    assert_eq!(shape(&err), ("u", vec![0], vec![1]));

    let err = Transition::new(Array2::<f64>::eye(2), Array2::eye(3)).unwrap_err();
    assert_eq!(shape(&err), ("q", vec![2, 2], vec![3, 3]));
    let err = Transition::new(Array2::<f64>::zeros((2, 3)), Array2::eye(2)).unwrap_err();
    assert_eq!(shape(&err).0, "f");
    let err = Transition::new(Array2::<f64>::eye(2), Array2::eye(2))
        .unwrap()
        .with_control(Array2::zeros((3, 1)))
        .unwrap_err();
    assert_eq!(shape(&err), ("b", vec![2, 1], vec![3, 1]));
    let err = Measurement::new(Array2::<f64>::zeros((2, 3)), Array2::eye(3)).unwrap_err();
    assert_eq!(shape(&err), ("r", vec![2, 2], vec![3, 3]));
    let err = LinearModel::new(
        Transition::new(Array2::<f64>::eye(2), Array2::eye(2)).unwrap(),
        Measurement::new(Array2::zeros((1, 3)), Array2::eye(1)).unwrap(),
    )
    .unwrap_err();
    assert_eq!(shape(&err), ("h", vec![1, 2], vec![1, 3]));

    let prior = Gaussian::<f64>::isotropic(2, 1.0).unwrap();
    let ys = vec![Some(array![1.0]), Some(array![2.0])];
    let err =
        filter_with_controls(&prior, &m, &ys, &[Array1::zeros(0)], UpdateForm::Joseph).unwrap_err();
    assert_eq!(shape(&err), ("controls", vec![2], vec![1]));
    let err = filter(&prior, &vec![m.clone()], &ys, UpdateForm::Joseph).unwrap_err();
    assert_eq!(shape(&err), ("models", vec![2], vec![1]));
    let out = filter(&prior, &m, &ys, UpdateForm::Joseph).unwrap();
    let err = rts_smooth(&vec![m.clone(); 3], &out).unwrap_err();
    assert_eq!(shape(&err), ("models", vec![2], vec![3]));

    let mut info = InformationGaussian::from_gaussian(&prior).unwrap();
    let err = info
        .update_independent(
            Array2::zeros((2, 2)).view(),
            array![1.0].view(),
            array![0.0, 0.0].view(),
        )
        .unwrap_err();
    assert_eq!(shape(&err), ("r", vec![2], vec![1]));
    let err = InformationGaussian::new(array![0.0], Array2::eye(2)).unwrap_err();
    assert_eq!(shape(&err).0, "precision");

    let err = Cholesky::new(Array2::<f64>::eye(2).view())
        .unwrap()
        .solve_vec(array![1.0].view())
        .unwrap_err();
    assert_eq!(shape(&err), ("b", vec![2], vec![1]));
}

#[test]
fn error_at_a_step_carries_the_step() {
    let m = model();
    let prior = Gaussian::<f64>::isotropic(2, 1.0).unwrap();
    let ys = vec![Some(array![1.0]), None, Some(array![1.0, 2.0])];
    let err = filter(&prior, &m, &ys, UpdateForm::Joseph).unwrap_err();
    match &err {
        KalmanError::AtStep { step, source } => {
            assert_eq!(*step, 2);
            assert!(matches!(
                **source,
                KalmanError::ShapeMismatch { argument: "y", .. }
            ));
        }
        other => panic!("expected AtStep, got {other:?}"),
    }
    assert!(err.to_string().starts_with("at step 2: "));
    named(&err, "y");
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn non_finite() {
    let err = Gaussian::new(array![0.0, f64::NAN], Array2::eye(2)).unwrap_err();
    assert_eq!(err, KalmanError::NonFinite { argument: "mean" });
    named(&err, "mean");
    let err = Gaussian::new(array![0.0], array![[f64::INFINITY]]).unwrap_err();
    assert_eq!(err, KalmanError::NonFinite { argument: "cov" });
    let err = Gaussian::<f32>::isotropic(2, f32::NAN).unwrap_err();
    assert_eq!(
        err,
        KalmanError::NonFinite {
            argument: "variance"
        }
    );

    let mut g = Gaussian::<f64>::isotropic(2, 1.0).unwrap();
    let before = g.clone();
    for (h, r, y, name) in [
        (array![f64::NAN, 0.0], 1.0, 0.0, "h"),
        (array![1.0, 0.0], f64::INFINITY, 0.0, "r"),
        (array![1.0, 0.0], 1.0, f64::NEG_INFINITY, "y"),
    ] {
        let err = g.scalar_update(h.view(), r, y).unwrap_err();
        assert_eq!(err, KalmanError::NonFinite { argument: name });
        named(&err, name);
    }
    assert_eq!(
        g.add_diagonal(f64::NAN).unwrap_err(),
        KalmanError::NonFinite { argument: "jitter" }
    );
    assert_eq!(g, before);

    let m = model();
    let err = g
        .update(
            m.measurement(),
            array![f64::NAN].view(),
            UpdateForm::Standard,
        )
        .unwrap_err();
    assert_eq!(err, KalmanError::NonFinite { argument: "y" });
    assert_eq!(g, before);

    // Finite inputs whose innovation overflows: hᵀμ = −1e10 · 1e300 = −∞.
    let mut far = Gaussian::new(array![1e300], array![[1.0]]).unwrap();
    let far_before = far.clone();
    let err = far
        .scalar_update(array![-1e10].view(), 1.0, 0.0)
        .unwrap_err();
    assert_eq!(
        err,
        KalmanError::NonFinite {
            argument: "innovation"
        }
    );
    let meas = Measurement::new(array![[-1e10]], array![[1.0]]).unwrap();
    let err = far
        .update(&meas, array![0.0].view(), UpdateForm::Joseph)
        .unwrap_err();
    assert_eq!(
        err,
        KalmanError::NonFinite {
            argument: "innovation"
        }
    );
    assert_eq!(far, far_before);

    let err = Transition::new(array![[f64::NAN]], array![[1.0]]).unwrap_err();
    assert_eq!(err, KalmanError::NonFinite { argument: "f" });
    let err = Transition::new(array![[1.0]], array![[f64::NAN]]).unwrap_err();
    assert_eq!(err, KalmanError::NonFinite { argument: "q" });
    let err = Measurement::new(array![[f64::NAN]], array![[1.0]]).unwrap_err();
    assert_eq!(err, KalmanError::NonFinite { argument: "h" });
    let err = Measurement::new(array![[1.0]], array![[f64::NAN]]).unwrap_err();
    assert_eq!(err, KalmanError::NonFinite { argument: "r" });

    let mut info = InformationGaussian::from_gaussian(&before).unwrap();
    let err = info
        .scalar_update(array![1.0, 0.0].view(), 1.0, f64::NAN)
        .unwrap_err();
    assert_eq!(err, KalmanError::NonFinite { argument: "y" });
}

#[test]
fn not_symmetric() {
    let err = Gaussian::new(array![0.0, 0.0], array![[1.0, 0.5], [0.4, 1.0]]).unwrap_err();
    match &err {
        KalmanError::NotSymmetric {
            matrix, asymmetry, ..
        } => {
            assert_eq!(*matrix, "cov");
            assert!((asymmetry - 0.1).abs() < 1e-12);
        }
        other => panic!("expected NotSymmetric, got {other:?}"),
    }
    named(&err, "cov");
    let err = Transition::new(Array2::eye(2), array![[1.0, 0.1], [0.0, 1.0]]).unwrap_err();
    assert!(matches!(err, KalmanError::NotSymmetric { matrix: "q", .. }));
    let err = Measurement::new(Array2::eye(2), array![[1.0, 0.1], [0.0, 1.0]]).unwrap_err();
    assert!(matches!(err, KalmanError::NotSymmetric { matrix: "r", .. }));
    let err =
        InformationGaussian::new(array![0.0, 0.0], array![[1.0, 0.1], [0.0, 1.0]]).unwrap_err();
    assert!(matches!(
        err,
        KalmanError::NotSymmetric {
            matrix: "precision",
            ..
        }
    ));
}

#[test]
fn not_positive_definite() {
    let err = Gaussian::new(array![0.0, 0.0], array![[1.0, 2.0], [2.0, 1.0]]).unwrap_err();
    assert_eq!(err, KalmanError::NotPositiveDefinite { matrix: "cov" });
    named(&err, "cov");
    let err = Gaussian::<f64>::isotropic(2, 0.0).unwrap_err();
    assert_eq!(err, KalmanError::NotPositiveDefinite { matrix: "variance" });
    let err = Gaussian::from_diagonal(array![0.0], array![-1.0]).unwrap_err();
    assert_eq!(
        err,
        KalmanError::NotPositiveDefinite {
            matrix: "variances"
        }
    );
    let err = Measurement::new(Array2::eye(2), array![[1.0, 0.0], [0.0, 0.0]]).unwrap_err();
    assert_eq!(err, KalmanError::NotPositiveDefinite { matrix: "r" });

    // Exact observation of a direction the prior is certain about: s = 0.
    let mut g = Gaussian::<f64>::isotropic(2, 1.0).unwrap();
    g.scalar_update(array![1.0, 0.0].view(), 0.0, 1.0).unwrap();
    let before = g.clone();
    let err = g
        .scalar_update(array![1.0, 0.0].view(), 0.0, 1.0)
        .unwrap_err();
    assert_eq!(
        err,
        KalmanError::NotPositiveDefinite {
            matrix: "innovation variance"
        }
    );
    named(&err, "innovation variance");
    assert_eq!(g, before);

    // A huge prior scale next to a zero-noise-ish observation is fine, but a zero vector h
    // with r = 0 observes nothing.
    let mut g = Gaussian::<f64>::isotropic(2, 1.0).unwrap();
    let err = g
        .scalar_update(array![0.0, 0.0].view(), 0.0, 1.0)
        .unwrap_err();
    assert_eq!(
        err,
        KalmanError::NotPositiveDefinite {
            matrix: "innovation variance"
        }
    );

    // Vector update whose innovation covariance is not numerically positive definite: with R
    // positive definite this needs the arithmetic to break down, here by overflow (HΣHᵀ = ∞).
    let meas = Measurement::new(array![[1e10]], array![[1.0]]).unwrap();
    let mut g = Gaussian::<f64>::isotropic(1, 1e300).unwrap();
    let before = g.clone();
    let err = g
        .update(&meas, array![1.0].view(), UpdateForm::Joseph)
        .unwrap_err();
    assert_eq!(
        err,
        KalmanError::NotPositiveDefinite {
            matrix: "innovation covariance"
        }
    );
    assert_eq!(g, before);
    let mut g = Gaussian::<f64>::isotropic(2, 1.0).unwrap();
    g.scalar_update(array![1.0, 0.0].view(), 0.0, 1.0).unwrap();

    // Information form: exact observation has no information form; singular covariance.
    let mut info =
        InformationGaussian::from_gaussian(&Gaussian::<f64>::isotropic(2, 1.0).unwrap()).unwrap();
    let err = info
        .scalar_update(array![1.0, 0.0].view(), 0.0, 1.0)
        .unwrap_err();
    assert_eq!(err, KalmanError::NotPositiveDefinite { matrix: "r" });
    let err = InformationGaussian::from_gaussian(&g).unwrap_err();
    assert_eq!(err, KalmanError::NotPositiveDefinite { matrix: "cov" });
    let err = InformationGaussian::new(array![0.0], array![[0.0]]).unwrap_err();
    assert_eq!(
        err,
        KalmanError::NotPositiveDefinite {
            matrix: "precision"
        }
    );

    // Smoother: a predicted covariance that is singular (zero process noise after an exact
    // observation, F = I).
    let m = LinearModel::new(
        Transition::new(Array2::<f64>::eye(1), Array2::zeros((1, 1))).unwrap(),
        Measurement::new(array![[1.0]], array![[1.0]]).unwrap(),
    )
    .unwrap();
    let mut prior = Gaussian::<f64>::isotropic(1, 1.0).unwrap();
    prior.scalar_update(array![1.0].view(), 0.0, 0.0).unwrap();
    let out = filter(&prior, &m, &[None, None], UpdateForm::Joseph).unwrap();
    let err = rts_smooth(&m, &out).unwrap_err();
    assert_eq!(
        err.root(),
        &KalmanError::NotPositiveDefinite {
            matrix: "predicted covariance"
        }
    );
    assert!(matches!(err, KalmanError::AtStep { step: 0, .. }));
}

#[test]
fn negative_variance() {
    let mut g = Gaussian::<f64>::isotropic(2, 1.0).unwrap();
    let before = g.clone();
    let err = g
        .scalar_update(array![1.0, 0.0].view(), -1.0, 0.0)
        .unwrap_err();
    assert_eq!(
        err,
        KalmanError::NegativeVariance {
            argument: "r",
            value: -1.0
        }
    );
    named(&err, "r");
    let err = g.add_diagonal(-0.5).unwrap_err();
    assert_eq!(
        err,
        KalmanError::NegativeVariance {
            argument: "jitter",
            value: -0.5
        }
    );
    assert_eq!(g, before);
    let err = Transition::new(Array2::eye(2), array![[1.0, 0.0], [0.0, -2.0]]).unwrap_err();
    assert_eq!(
        err,
        KalmanError::NegativeVariance {
            argument: "q",
            value: -2.0
        }
    );
}

/// A process noise with a non-negative diagonal but a negative eigenvalue is rejected when the
/// transition is built, naming `q`; semidefinite (singular) ones are accepted.
#[test]
fn indefinite_process_noise() {
    // Eigenvalues 4 and −2.
    let err = Transition::new(Array2::eye(2), array![[1.0, 3.0], [3.0, 1.0]]).unwrap_err();
    assert!(
        matches!(
            err,
            KalmanError::NotPositiveSemidefinite { matrix: "q", residual, tolerance }
                if residual == 8.0 && tolerance > 0.0 && tolerance < 1e-7
        ),
        "{err:?}"
    );
    named(&err, "q");
    assert!(
        err.to_string().contains("not positive semidefinite"),
        "{err}"
    );
    // In single precision too, and a zero diagonal with a non-zero coupling.
    let err = Transition::new(Array2::<f32>::eye(2), array![[0.0, 1.0], [1.0, 0.0]]).unwrap_err();
    assert!(matches!(
        err,
        KalmanError::NotPositiveSemidefinite { matrix: "q", .. }
    ));
    // Through deserialisation-like paths: random_walk validates the same way.
    let err = Transition::random_walk(array![[2.0, 2.5], [2.5, 2.0]]).unwrap_err();
    assert!(matches!(err, KalmanError::NotPositiveSemidefinite { .. }));
    // Singular and zero noise are covariances.
    let t = Transition::<f64>::new(Array2::eye(2), array![[1.0, 1.0], [1.0, 1.0]]).unwrap();
    let g = t.q_factor();
    assert!((g.dot(&g.t()) - t.q()).iter().all(|d| d.abs() < 1e-15));
    Transition::new(Array2::<f64>::eye(3), Array2::zeros((3, 3))).unwrap();
    // A negative eigenvalue within rounding of zero (a Gram matrix computed in floating point)
    // passes.
    let a = array![[1.0, 2.0, 3.0], [0.1, 0.2, 0.3]];
    Transition::new(Array2::<f64>::eye(3), a.t().dot(&a)).unwrap();
}

/// The in-place filter checks the model once and each observation, naming the argument, and
/// leaves its belief unchanged on error.
#[test]
fn in_place_filter_errors() {
    let m = model();
    let prior = Gaussian::<f64>::isotropic(3, 1.0).unwrap();
    let err = KalmanFilter::new(m.clone(), &prior, UpdateForm::Joseph).unwrap_err();
    assert_eq!(shape(&err), ("prior", vec![2], vec![3]));

    let prior = Gaussian::<f64>::isotropic(2, 1.0).unwrap();
    let mut kf = KalmanFilter::new(m.clone(), &prior, UpdateForm::Standard).unwrap();
    kf.predict();
    let before = kf.belief();
    let err = kf.update(&[1.0, 2.0]).unwrap_err();
    assert_eq!(shape(&err), ("y", vec![1], vec![2]));
    let err = kf.update(&[f64::NAN]).unwrap_err();
    assert_eq!(err, KalmanError::NonFinite { argument: "y" });
    let mut kf = KalmanFilter::new(m.clone(), &prior, UpdateForm::Standard).unwrap();
    kf.predict();
    let err = kf.predict_with_control(&[1.0]).unwrap_err();
    assert_eq!(shape(&err), ("u", vec![0], vec![1]));
    assert_eq!(kf.belief(), before);

    let other = LinearModel::new(
        Transition::random_walk(Array2::<f64>::eye(3)).unwrap(),
        Measurement::new(Array2::eye(3), Array2::eye(3)).unwrap(),
    )
    .unwrap();
    let err = kf.set_model(other).unwrap_err();
    assert_eq!(shape(&err), ("model", vec![2], vec![3]));
    assert_eq!(kf.belief(), before);

    // An innovation covariance that overflows (H Σ Hᵀ = 1e320), in every form.
    let scalar = LinearModel::new(
        Transition::new(array![[1.0]], array![[0.0]]).unwrap(),
        Measurement::new(array![[1e10]], array![[1.0]]).unwrap(),
    )
    .unwrap();
    for form in [
        UpdateForm::Joseph,
        UpdateForm::Standard,
        UpdateForm::SquareRoot,
    ] {
        for likelihood in [true, false] {
            let prior = Gaussian::isotropic(1, 1e300).unwrap();
            let mut kf = KalmanFilter::new(scalar.clone(), &prior, form)
                .unwrap()
                .track_log_likelihood(likelihood);
            kf.predict();
            let before = kf.belief();
            let err = kf.update(&[0.0]).unwrap_err();
            assert_eq!(
                err,
                KalmanError::NotPositiveDefinite {
                    matrix: "innovation covariance"
                },
                "{form:?}, likelihood {likelihood}"
            );
            assert_eq!(kf.belief(), before);
            let err = kf.update(&[f64::INFINITY]).unwrap_err();
            assert_eq!(err, KalmanError::NonFinite { argument: "y" });
        }
    }
}

#[test]
fn in_place_filter_square_root_prior() {
    let scalar = LinearModel::new(
        Transition::new(array![[1.0]], array![[0.0]]).unwrap(),
        Measurement::new(array![[1.0]], array![[1.0]]).unwrap(),
    )
    .unwrap();
    let mut kf = KalmanFilter::new(
        scalar,
        &Gaussian::<f64>::isotropic(1, 4.0).unwrap(),
        UpdateForm::SquareRoot,
    )
    .unwrap();
    assert_eq!(kf.cov_factor(), Some(&[2.0][..]));
    kf.predict();
    kf.update(&[1.0]).unwrap();
    // Prior 4, noise 1: posterior variance 4/5, factor √0.8.
    assert!((kf.cov()[0] - 0.8).abs() < 1e-15);
    assert!((kf.cov_factor().unwrap()[0] - 0.8f64.sqrt()).abs() < 1e-15);
}

/// A model computed per step that fails to build reports its error at that step.
#[test]
fn model_built_on_the_fly_fails_at_its_step() {
    use std::borrow::Cow;

    struct Failing;
    impl StateSpaceModel<f64> for Failing {
        fn step(&self, t: usize) -> Result<Cow<'_, LinearModel<f64>>, KalmanError> {
            // From step 2 on, the noise becomes indefinite.
            let q = if t < 2 {
                array![[1.0, 0.0], [0.0, 1.0]]
            } else {
                array![[1.0, 3.0], [3.0, 1.0]]
            };
            Ok(Cow::Owned(LinearModel::new(
                Transition::new(Array2::eye(2), q)?,
                Measurement::new(array![[1.0, 0.0]], array![[1.0]])?,
            )?))
        }
        fn num_steps(&self) -> Option<usize> {
            None
        }
    }
    let prior = Gaussian::<f64>::isotropic(2, 1.0).unwrap();
    let ys = vec![Some(array![1.0]); 4];
    let err = filter(&prior, &Failing, &ys, UpdateForm::Joseph).unwrap_err();
    assert!(
        matches!(err, KalmanError::AtStep { step: 2, .. }),
        "{err:?}"
    );
    assert!(matches!(
        err.root(),
        KalmanError::NotPositiveSemidefinite { matrix: "q", .. }
    ));
}
