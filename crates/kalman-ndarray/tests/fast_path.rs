//! The allocation-free [`KalmanFilter`] against the allocating entry points (bitwise), the
//! blocked products at large state dimensions against the joint-Gaussian oracle, models computed
//! per step against stored ones, and the square-root form on a problem where the standard form
//! loses positive definiteness.
//!
//! The property cases are pinned as in `properties.rs` (fixed seed, regressions in
//! `proptest-regressions/fast_path.txt`).

mod common;

use std::borrow::Cow;

use common::*;
use kalman_ndarray::{
    BLOCKED_MIN_DIM, Gaussian, KalmanError, KalmanFilter, LinearModel, Measurement,
    StateSpaceModel, Transition, UpdateForm, filter, filter_with_controls, rts_smooth,
};
use ndarray::{Array1, Array2, array};
use proptest::prelude::*;

const SEED: u64 = 0x6b61_6c6d_616e_0002;

const FORMS: [UpdateForm; 3] = [
    UpdateForm::Joseph,
    UpdateForm::Standard,
    UpdateForm::SquareRoot,
];

fn config(cases: u32) -> ProptestConfig {
    bszo_testkit::proptest_config(
        cases,
        SEED,
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/fast_path.txt"
        ),
    )
}

/// A random time-invariant model of state dimension `n` and observation dimension `m`, a prior
/// and `steps` observations (some missing).
type Problem = (LinearModel<f64>, Gaussian<f64>, Vec<Option<Array1<f64>>>);

fn problem(n: usize, m: usize, steps: usize) -> impl Strategy<Value = Problem> {
    (
        matrix(n, n, 0.6),
        spd(n, 0.3),
        matrix(m, n, 1.0),
        spd(m, 0.5),
        prior(n),
        prop::collection::vec(prop::option::weighted(0.8, vector(m, 3.0)), steps),
    )
        .prop_map(|(f, q, h, r, (m0, p0), ys)| {
            let model = LinearModel::new(
                Transition::new(f, q).unwrap(),
                Measurement::new(h, r).unwrap(),
            )
            .unwrap();
            (model, Gaussian::new(m0, p0).unwrap(), ys)
        })
}

fn any_problem() -> impl Strategy<Value = Problem> {
    (1usize..=10, 1usize..=4, 1usize..=6).prop_flat_map(|(n, m, t)| problem(n, m, t))
}

/// A model that builds each step's model when asked, from stored matrices: hands back owned
/// copies.
struct OnTheFly<'a>(&'a [LinearModel<f64>]);

impl StateSpaceModel<f64> for OnTheFly<'_> {
    fn step(&self, t: usize) -> Result<Cow<'_, LinearModel<f64>>, KalmanError> {
        let model = self
            .0
            .get(t)
            .ok_or_else(|| KalmanError::past_the_end(t, self.0.len()))?;
        let transition = Transition::new(
            model.transition().f().clone(),
            model.transition().q().clone(),
        )?;
        let measurement = Measurement::new(
            model.measurement().h().clone(),
            model.measurement().r().clone(),
        )?;
        Ok(Cow::Owned(LinearModel::new(transition, measurement)?))
    }

    fn num_steps(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// The in-place filter gives bitwise the beliefs and log-likelihoods of `filter`, in every
    /// form, for state dimensions with and without a compiled-for-the-size copy.
    #[test]
    fn in_place_filter_equals_filter_bitwise((model, prior, ys) in any_problem()) {
        for form in FORMS {
            let out = filter(&prior, &model, &ys, form).unwrap();
            let mut kf = KalmanFilter::new(model.clone(), &prior, form).unwrap();
            for (t, y) in ys.iter().enumerate() {
                kf.predict();
                prop_assert_eq!(&kf.belief(), &out.predicted[t]);
                if let Some(y) = y {
                    let ll = kf.update(y.as_slice().unwrap()).unwrap();
                    prop_assert_eq!(ll, out.step_log_likelihoods[t]);
                }
                prop_assert_eq!(&kf.belief(), &out.filtered[t]);
                prop_assert_eq!(kf.cov(), out.filtered[t].cov().as_slice().unwrap());
            }
        }
    }

    /// Without the log-likelihood the in-place filter gives bitwise the same beliefs, in every
    /// form and at every size, and reports no likelihood; switching it back on mid-run gives the
    /// likelihoods of `filter` again.
    #[test]
    fn likelihood_off_leaves_beliefs_bitwise_unchanged((model, prior, ys) in any_problem()) {
        for form in FORMS {
            let out = filter(&prior, &model, &ys, form).unwrap();
            let mut kf = KalmanFilter::new(model.clone(), &prior, form)
                .unwrap()
                .track_log_likelihood(false);
            prop_assert!(!kf.tracks_log_likelihood());
            let half = ys.len() / 2;
            for (t, y) in ys.iter().enumerate() {
                if t == half {
                    kf.set_track_log_likelihood(true);
                }
                let ll = kf.step(y.as_ref().map(|y| y.as_slice().unwrap())).unwrap();
                let expected = if t < half { None } else { out.step_log_likelihoods[t] };
                prop_assert_eq!(ll, expected);
                prop_assert_eq!(kf.mean(), out.filtered[t].mean().as_slice().unwrap());
                prop_assert_eq!(kf.cov(), out.filtered[t].cov().as_slice().unwrap());
            }
        }
    }

    /// `Gaussian::predict` and `Gaussian::update` run the same arithmetic as the in-place filter
    /// (Joseph and standard form; the one-off square-root update factorises the covariance
    /// afresh, so it is compared within a tolerance).
    #[test]
    fn gaussian_methods_equal_in_place_filter((model, prior, ys) in any_problem()) {
        for form in FORMS {
            let mut kf = KalmanFilter::new(model.clone(), &prior, form).unwrap();
            let mut g = prior.clone();
            for y in ys.iter().flatten() {
                kf.predict();
                g.predict(model.transition()).unwrap();
                let ll = kf.update(y.as_slice().unwrap()).unwrap().expect("tracked by default");
                let out = g.update(model.measurement(), y.view(), form).unwrap();
                if form == UpdateForm::SquareRoot {
                    close(out.log_likelihood, ll, 1e-9).map_err(TestCaseError::fail)?;
                    close_arr(g.mean(), &kf.belief().mean().clone(), 1e-9).map_err(TestCaseError::fail)?;
                    close_arr(g.cov(), &kf.belief().cov().clone(), 1e-9).map_err(TestCaseError::fail)?;
                    g = kf.belief();
                } else {
                    prop_assert_eq!(out.log_likelihood, ll);
                    prop_assert_eq!(&g, &kf.belief());
                }
            }
        }
    }

    /// A model computed per step (owned) gives bitwise the output of the same models stored.
    #[test]
    fn models_on_the_fly_equal_stored_models((model, prior, ys) in any_problem()) {
        let stored = vec![model; ys.len()];
        for form in FORMS {
            let a = filter(&prior, &stored, &ys, form).unwrap();
            let b = filter(&prior, &OnTheFly(&stored), &ys, form).unwrap();
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(rts_smooth(&stored, &a).unwrap(), rts_smooth(&OnTheFly(&stored), &b).unwrap());
        }
    }
}

/// Random models with a state dimension at which the products are blocked.
fn large_ssm() -> impl Strategy<Value = SsmSpec> {
    let n = BLOCKED_MIN_DIM + 2;
    let (m, p) = (3, 1);
    let step = (
        matrix(n, n, 0.2),
        spd(n, 0.05),
        matrix(n, p, 1.0),
        vector(p, 1.0),
        matrix(m, n, 0.3),
        spd(m, 0.5),
        vector(m, 3.0),
        prop::bool::weighted(0.75),
    )
        .prop_map(|(f, q, b, u, h, r, y, observed)| StepSpec {
            f,
            q,
            b,
            u,
            h,
            r,
            y,
            observed,
        });
    (prior(n), prop::collection::vec(step, 1..=3)).prop_map(move |((m0, p0), steps)| SsmSpec {
        n,
        m,
        p,
        m0,
        p0,
        steps,
    })
}

proptest! {
    #![proptest_config(config(8))]

    /// From `BLOCKED_MIN_DIM` up (blocked products), every form still equals brute-force
    /// conditioning of the joint Gaussian.
    #[test]
    fn blocked_path_equals_joint_conditioning(spec in large_ssm()) {
        let models: Vec<LinearModel<f64>> = spec
            .steps
            .iter()
            .map(|st| {
                LinearModel::new(
                    Transition::new(st.f.clone(), st.q.clone()).unwrap().with_control(st.b.clone()).unwrap(),
                    Measurement::new(st.h.clone(), st.r.clone()).unwrap(),
                )
                .unwrap()
            })
            .collect();
        let ys: Vec<_> = spec.steps.iter().map(|st| st.observed.then(|| st.y.clone())).collect();
        let us: Vec<_> = spec.steps.iter().map(|st| st.u.clone()).collect();
        let prior = Gaussian::new(spec.m0.clone(), spec.p0.clone()).unwrap();
        let (jm, jc) = joint(&spec);
        for form in FORMS {
            let out = filter_with_controls(&prior, &models, &ys, &us, form).unwrap();
            for k in 0..spec.steps.len() {
                let (idx, vals) = observed_before(&spec, k + 1);
                let (cm, cc) = condition(&jm, &jc, &idx, &vals);
                let (fm, fc) = state_block(&cm, &cc, spec.n, k);
                close_arr(out.filtered[k].mean(), &fm, 1e-7).map_err(TestCaseError::fail)?;
                close_arr(out.filtered[k].cov(), &fc, 1e-7).map_err(TestCaseError::fail)?;
            }
        }
    }
}

/// The classic ill-conditioned update (Grewal & Andrews): prior `N(0, I)`, two nearly collinear
/// observations `H = [[1, 1], [1, 1 + δ]]` with `R = δ² I` and `δ² < ε`. Forming
/// `S = H Σ Hᵀ + R` rounds `R` away: the standard form (and here the Joseph form too) finds `S`
/// indefinite or returns an indefinite covariance and a wrong mean, while the square-root form,
/// which never forms `S`,
/// stays positive definite and gives the well-conditioned limit (`μ = [0.6, 0.4]`,
/// `Σ = 0.4 [[1, −1], [−1, 1]] + O(δ)`, what every form returns at `δ = 1e-6`).
#[test]
fn square_root_form_survives_where_the_standard_form_loses_definiteness() {
    let prior = Gaussian::<f64>::isotropic(2, 1.0).unwrap();
    let y = array![1.0, 1.0];
    let update = |delta: f64, form| {
        let h = array![[1.0, 1.0], [1.0, 1.0 + delta]];
        let meas = Measurement::new(h, Array2::eye(2) * (delta * delta)).unwrap();
        let mut g = prior.clone();
        g.update(&meas, y.view(), form).map(|_| g)
    };
    let limit_mean = array![0.6, 0.4];
    let limit_cov = array![[0.4, -0.4], [-0.4, 0.4]];
    for form in FORMS {
        let g = update(1e-6, form).unwrap();
        assert!(is_positive_definite(g.cov()));
        close_arr(g.mean(), &limit_mean, 1e-4).unwrap();
        close_arr(g.cov(), &limit_cov, 1e-4).unwrap();
    }
    // δ = 1e-8: δ² = 1e-16 is below ε = 2.2e-16. The covariance forms either find the computed
    // `S` indefinite or return an indefinite covariance with a wrong mean.
    for delta in [1e-8, 3e-9] {
        for form in [UpdateForm::Standard, UpdateForm::Joseph] {
            match update(delta, form) {
                Err(err) => assert_eq!(
                    err,
                    KalmanError::NotPositiveDefinite {
                        matrix: "innovation covariance"
                    }
                ),
                Ok(g) => {
                    assert!(!is_positive_definite(g.cov()), "{form:?}: {}", g.cov());
                    assert!((g.mean()[0] - 0.6).abs() > 1e-2, "{form:?}: {}", g.mean());
                }
            }
        }
    }
    let g = update(1e-8, UpdateForm::SquareRoot).unwrap();
    assert!(is_positive_definite(g.cov()), "{}", g.cov());
    close_arr(g.mean(), &limit_mean, 1e-7).unwrap();
    close_arr(g.cov(), &limit_cov, 1e-7).unwrap();

    // A run of very precise scalar position fixes (r = 1e-12) of a constant-velocity state from a
    // vague prior (variance 1e6): the standard and Joseph forms produce indefinite covariances
    // (or meet an indefinite innovation covariance); the square-root filter's
    // filtered covariances stay positive definite at every step. (Its predicted covariances are
    // positive semidefinite by construction, `S Sᵀ`, but singular to working precision, as the
    // exact ones nearly are.)
    let model = LinearModel::new(
        Transition::new(array![[1.0, 1.0], [0.0, 1.0]], Array2::zeros((2, 2))).unwrap(),
        Measurement::new(array![[1.0, 0.0]], array![[1e-12]]).unwrap(),
    )
    .unwrap();
    let prior = Gaussian::from_diagonal(array![0.0, 0.0], array![1e6, 1e6]).unwrap();
    let ys: Vec<_> = (0..30).map(|t| Some(array![f64::from(t)])).collect();
    for form in [UpdateForm::Standard, UpdateForm::Joseph] {
        match filter(&prior, &model, &ys, form) {
            Err(err) => assert_eq!(
                err.root(),
                &KalmanError::NotPositiveDefinite {
                    matrix: "innovation covariance"
                }
            ),
            Ok(out) => assert!(
                out.filtered.iter().any(|g| !is_positive_definite(g.cov())),
                "{form:?} kept definiteness"
            ),
        }
    }
    let sqrt = filter(&prior, &model, &ys, UpdateForm::SquareRoot).unwrap();
    for g in &sqrt.filtered {
        assert!(is_positive_definite(g.cov()), "{}", g.cov());
    }
    // The track is x_t = t: position and velocity are recovered.
    close_arr(sqrt.filtered[29].mean(), &array![29.0, 1.0], 1e-9).unwrap();
    // The in-place filter agrees bitwise.
    let mut kf = KalmanFilter::new(model, &prior, UpdateForm::SquareRoot).unwrap();
    for (t, y) in ys.iter().enumerate() {
        kf.step(y.as_ref().map(|y| y.as_slice().unwrap())).unwrap();
        assert_eq!(kf.belief(), sqrt.filtered[t]);
    }
}
