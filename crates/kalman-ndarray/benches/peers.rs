//! Side-by-side benchmark against the Rust Kalman crates a user would otherwise pick: adskalman
//! 0.18, kalmanfilt 0.3, kfilter 0.5 and minikalman 0.8, on the same random constant-velocity
//! models (state dimension n = 4, 16, 64; observation dimension m = n/2; T = 1000 steps).
//!
//! Every iteration runs the whole sequence (predict + update at each step) from the same prior;
//! divide criterion's time by T for the time per step. Before timing, each crate's final belief
//! is checked against ours (relative 1e-10), and the smoothers' outputs against each other.
//!
//! ```sh
//! cargo bench -p kalman-ndarray --bench peers
//! ```

// `criterion_group!` generates an undocumented function; the agreement report goes to stderr.
#![allow(missing_docs, clippy::print_stderr)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kalman_ndarray::{
    Gaussian, KalmanFilter, LinearModel, Measurement, Transition, UpdateForm, filter, rts_smooth,
};
use ndarray::{Array1, Array2};

/// Steps per run.
const T: usize = 1000;

/// Deterministic pseudo-random numbers (splitmix64).
struct Numbers(u64);

impl Numbers {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller, one of the pair).
    fn normal(&mut self) -> f64 {
        let u = self.uniform(f64::EPSILON, 1.0);
        let v = self.uniform(0.0, 1.0);
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// `A Aᵀ / k + δ I`, symmetric positive definite.
    fn spd(&mut self, k: usize, delta: f64) -> Array2<f64> {
        let a = Array2::from_shape_fn((k, k), |_| self.uniform(-1.0, 1.0));
        let mut s = a.dot(&a.t()) / k as f64 + Array2::<f64>::eye(k) * delta;
        let st = s.t().to_owned();
        s = (s + st) * 0.5;
        s
    }
}

/// One benchmark problem: a constant-velocity model in `n/2` axes (state: positions, then
/// velocities), observing mixed positions, with its prior and `T` observations.
struct Case {
    n: usize,
    m: usize,
    model: LinearModel<f64>,
    prior: Gaussian<f64>,
    ys: Vec<Array1<f64>>,
}

impl Case {
    fn new(n: usize, seed: u64) -> Self {
        let mut rng = Numbers(seed);
        let k = n / 2;
        let m = k;
        let dt = rng.uniform(0.05, 0.5);
        let mut f = Array2::<f64>::eye(n);
        let mut q = Array2::<f64>::zeros((n, n));
        for a in 0..k {
            f[[a, k + a]] = dt;
            // White-noise acceleration of a random density, discretised.
            let density = rng.uniform(0.1, 1.0);
            q[[a, a]] = density * dt.powi(3) / 3.0;
            q[[a, k + a]] = density * dt.powi(2) / 2.0;
            q[[k + a, a]] = density * dt.powi(2) / 2.0;
            q[[k + a, k + a]] = density * dt;
        }
        let mut h = Array2::<f64>::zeros((m, n));
        for i in 0..m {
            for j in 0..k {
                h[[i, j]] = f64::from(u8::from(i == j)) + 0.3 * rng.uniform(-1.0, 1.0);
            }
        }
        let r = rng.spd(m, 0.5);
        let mean = Array1::from_shape_fn(n, |_| rng.uniform(-1.0, 1.0));
        let cov = rng.spd(n, 1.0);
        // Observations of a target moving at constant velocity, with unit noise.
        let mut truth = Array1::from_shape_fn(n, |_| rng.uniform(-5.0, 5.0));
        let ys = (0..T)
            .map(|_| {
                truth = f.dot(&truth);
                h.dot(&truth) + Array1::from_shape_fn(m, |_| rng.normal())
            })
            .collect();
        let model = LinearModel::new(
            Transition::new(f, q).expect("valid transition"),
            Measurement::new(h, r).expect("valid measurement"),
        )
        .expect("valid model");
        let prior = Gaussian::new(mean, cov).expect("valid prior");
        Self {
            n,
            m,
            model,
            prior,
            ys,
        }
    }

    fn row_major(a: &Array2<f64>) -> Vec<f64> {
        a.iter().copied().collect()
    }

    fn f(&self) -> Vec<f64> {
        Self::row_major(self.model.transition().f())
    }
    fn q(&self) -> Vec<f64> {
        Self::row_major(self.model.transition().q())
    }
    fn h(&self) -> Vec<f64> {
        Self::row_major(self.model.measurement().h())
    }
    fn r(&self) -> Vec<f64> {
        Self::row_major(self.model.measurement().r())
    }
    fn p0(&self) -> Vec<f64> {
        Self::row_major(self.prior.cov())
    }
    fn x0(&self) -> Vec<f64> {
        self.prior.mean().to_vec()
    }
}

/// Runs our allocation-free filter over the case; the summed log-likelihood when the filter
/// tracks it (zero when not).
fn ours(case: &Case, kf: &mut KalmanFilter<f64>) -> f64 {
    let mut ll = 0.0;
    for y in &case.ys {
        kf.predict();
        if let Some(l) = kf
            .update(y.as_slice().expect("contiguous"))
            .expect("update")
        {
            ll += l;
        }
    }
    ll
}

/// `max |a − b| / max |b|`.
fn relative_deviation(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |s, v| s.max(v.abs()));
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |d, (x, y)| d.max((x - y).abs()));
    diff / scale
}

fn agree(
    who: &str,
    n: usize,
    mean: &[f64],
    cov: &[f64],
    reference: &kalman_ndarray::KalmanFilter<f64>,
) {
    let dev =
        relative_deviation(mean, reference.mean()).max(relative_deviation(cov, reference.cov()));
    eprintln!("n = {n:2}: {who:<26} agrees with ours to {dev:.1e} (relative)");
    assert!(
        dev <= 1e-10,
        "{who} disagrees with ours at n = {n}: {dev:e}"
    );
}

macro_rules! peers_at {
    ($fn_name:ident, $n:literal, $m:literal) => {
        fn $fn_name(c: &mut Criterion) {
            const N: usize = $n;
            const M: usize = $m;
            let case = Case::new(N, 0x5eed_0000 + N as u64);
            assert_eq!((case.n, case.m), (N, M));
            let new_ours = |form| {
                kalman_ndarray::KalmanFilter::new(case.model.clone(), &case.prior, form)
                    .expect("filter")
            };
            // Without the log-likelihood, as the peers (which do not compute it).
            let new_ours_no_ll = |form| new_ours(form).track_log_likelihood(false);

            // ---- adskalman 0.18 (nalgebra 0.35) ----
            let ads_model = mod_ads::Model::<N, M>::new(&case);
            let ads_prior = mod_ads::prior::<N>(&case);
            let ads_obs: Vec<_> = case
                .ys
                .iter()
                .map(|y| nalgebra_ads::SVector::<f64, M>::from_column_slice(y.as_slice().unwrap()))
                .collect();
            let ads_run = |method| {
                let kf = adskalman::KalmanFilterNoControl::new(&ads_model, &ads_model);
                let mut est = ads_prior.clone();
                let mut all = Vec::with_capacity(T);
                for y in &ads_obs {
                    est = kf
                        .step_with_options(&est, y, method)
                        .expect("adskalman step");
                    all.push(est.clone());
                }
                all
            };

            // ---- kalmanfilt 0.3 (nalgebra 0.33) ----
            type KfiltX = nalgebra_kfilt::Const<N>;
            type KfiltZ = nalgebra_kfilt::Const<M>;
            type KfiltU = nalgebra_kfilt::Const<1>;
            let mut kfilt_init = kalmanfilt::kalman::kalman_filter::KalmanFilter::<
                f64,
                KfiltX,
                KfiltZ,
                KfiltU,
            >::default();
            kfilt_init.F = nalgebra_kfilt::SMatrix::<f64, N, N>::from_row_slice(&case.f());
            kfilt_init.Q = nalgebra_kfilt::SMatrix::<f64, N, N>::from_row_slice(&case.q());
            kfilt_init.H = nalgebra_kfilt::SMatrix::<f64, M, N>::from_row_slice(&case.h());
            kfilt_init.R = nalgebra_kfilt::SMatrix::<f64, M, M>::from_row_slice(&case.r());
            kfilt_init.x = nalgebra_kfilt::SVector::<f64, N>::from_column_slice(&case.x0());
            kfilt_init.P = nalgebra_kfilt::SMatrix::<f64, N, N>::from_row_slice(&case.p0());
            let kfilt_obs: Vec<_> = case
                .ys
                .iter()
                .map(|y| {
                    nalgebra_kfilt::SVector::<f64, M>::from_column_slice(y.as_slice().unwrap())
                })
                .collect();
            let kfilt_run = |kf: &mut kalmanfilt::kalman::kalman_filter::KalmanFilter<
                f64,
                KfiltX,
                KfiltZ,
                KfiltU,
            >| {
                for y in &kfilt_obs {
                    kf.predict(None, None, None, None);
                    kf.update(y, None, None).expect("kalmanfilt update");
                }
            };

            // ---- kfilter 0.5 (nalgebra 0.34) ----
            use kfilter::{KalmanFilter as _, KalmanPredict as _};
            let mut kf_init = kfilter::Kalman1M::new(
                nalgebra_kf::SMatrix::<f64, N, N>::from_row_slice(&case.f()),
                nalgebra_kf::SMatrix::<f64, N, N>::from_row_slice(&case.q()),
                nalgebra_kf::SMatrix::<f64, M, N>::from_row_slice(&case.h()),
                nalgebra_kf::SMatrix::<f64, M, M>::from_row_slice(&case.r()),
                nalgebra_kf::SVector::<f64, N>::from_column_slice(&case.x0()),
            );
            *kf_init.covariance_mut() =
                nalgebra_kf::SMatrix::<f64, N, N>::from_row_slice(&case.p0());
            let kf_obs: Vec<_> = case
                .ys
                .iter()
                .map(|y| nalgebra_kf::SVector::<f64, M>::from_column_slice(y.as_slice().unwrap()))
                .collect();
            let kf_run = |kf: &mut kfilter::Kalman1MLinearNoInput<f64, N, M>| {
                for y in &kf_obs {
                    kf.predict().expect("kfilter predict");
                    kf.update(*y).expect("kfilter update");
                }
            };

            // ---- minikalman 0.8 ----
            use minikalman::prelude::*;
            let mini_builder =
                minikalman::regular::builder::KalmanFilterBuilder::<N, f64>::default();
            let mut mini = mini_builder.build();
            let mut mini_meas = mini_builder.observations().build::<M>();
            mini.state_transition_mut()
                .as_mut_slice()
                .copy_from_slice(&case.f());
            mini.direct_process_noise_mut()
                .as_mut_slice()
                .copy_from_slice(&case.q());
            mini_meas
                .observation_matrix_mut()
                .as_mut_slice()
                .copy_from_slice(&case.h());
            mini_meas
                .measurement_noise_covariance_mut()
                .as_mut_slice()
                .copy_from_slice(&case.r());
            let (x0, p0) = (case.x0(), case.p0());
            let mut mini_run = || {
                mini.state_vector_mut().as_mut_slice().copy_from_slice(&x0);
                mini.estimate_covariance_mut()
                    .as_mut_slice()
                    .copy_from_slice(&p0);
                for y in &case.ys {
                    mini.predict();
                    mini_meas
                        .measurement_vector_mut()
                        .as_mut_slice()
                        .copy_from_slice(y.as_slice().unwrap());
                    mini.correct(&mut mini_meas);
                }
                (
                    mini.state_vector().as_slice().to_vec(),
                    mini.estimate_covariance().as_slice().to_vec(),
                )
            };

            // ---- agreement, once, before timing ----
            let mut reference = new_ours(UpdateForm::Joseph);
            ours(&case, &mut reference);
            for form in [UpdateForm::Standard, UpdateForm::SquareRoot] {
                let mut kf = new_ours(form);
                ours(&case, &mut kf);
                agree(
                    &format!("ours, {form:?}"),
                    N,
                    kf.mean(),
                    kf.cov(),
                    &reference,
                );
            }
            for form in [
                UpdateForm::Joseph,
                UpdateForm::Standard,
                UpdateForm::SquareRoot,
            ] {
                let (mut on, mut off) = (new_ours(form), new_ours_no_ll(form));
                ours(&case, &mut on);
                assert_eq!(ours(&case, &mut off), 0.0);
                assert!(
                    on.mean() == off.mean() && on.cov() == off.cov(),
                    "{form:?}: the likelihood setting changed the belief"
                );
            }
            let out = filter(
                &case.prior,
                &case.model,
                &case.ys.iter().cloned().map(Some).collect::<Vec<_>>(),
                UpdateForm::Joseph,
            )
            .expect("filter");
            let last = out.filtered.last().expect("steps");
            agree(
                "ours, filter()",
                N,
                last.mean().as_slice().unwrap(),
                last.cov().as_slice().unwrap(),
                &reference,
            );
            for (name, method) in [
                (
                    "adskalman, Joseph",
                    adskalman::CovarianceUpdateMethod::JosephForm,
                ),
                (
                    "adskalman, standard",
                    adskalman::CovarianceUpdateMethod::OptimalKalmanForcedSymmetric,
                ),
            ] {
                let all = ads_run(method);
                let last = all.last().expect("steps");
                agree(
                    name,
                    N,
                    last.state().as_slice(),
                    last.covariance().transpose().as_slice(),
                    &reference,
                );
            }
            let mut kfilt = kfilt_init.clone();
            kfilt_run(&mut kfilt);
            agree(
                "kalmanfilt, Joseph",
                N,
                kfilt.x.as_slice(),
                kfilt.P.transpose().as_slice(),
                &reference,
            );
            let mut kf = kf_init.clone();
            kf_run(&mut kf);
            agree(
                "kfilter, standard",
                N,
                kf.state().as_slice(),
                kf.covariance().transpose().as_slice(),
                &reference,
            );
            let (mx, mp) = mini_run();
            agree("minikalman, standard", N, &mx, &mp, &reference);
            // Smoothers: ours against adskalman's on the same filter output.
            let smoothed = rts_smooth(&case.model, &out).expect("smoother");
            let ads_all = ads_run(adskalman::CovarianceUpdateMethod::JosephForm);
            let ads_smoothed = ads_model_smoother(&ads_model, ads_all.clone());
            let dev = smoothed
                .iter()
                .zip(&ads_smoothed)
                .fold(0.0f64, |d, (a, b)| {
                    d.max(relative_deviation(
                        a.mean().as_slice().unwrap(),
                        b.state().as_slice(),
                    ))
                    .max(relative_deviation(
                        a.cov().as_slice().unwrap(),
                        b.covariance().transpose().as_slice(),
                    ))
                });
            eprintln!("n = {N:2}: RTS smoother: ours and adskalman agree to {dev:.1e} (relative)");
            assert!(dev <= 1e-10, "smoothers disagree at n = {N}: {dev:e}");

            // ---- timing ----
            let mut group = c.benchmark_group(format!("peers_n{N}"));
            group.throughput(Throughput::Elements(T as u64));
            if N >= 64 {
                group.sample_size(10);
            }
            // `ours_*` compute the log-likelihood of every step; `ours_*_no_ll` do not (like
            // every peer).
            for (name, form, likelihood) in [
                ("ours_joseph", UpdateForm::Joseph, true),
                ("ours_joseph_no_ll", UpdateForm::Joseph, false),
                ("ours_standard", UpdateForm::Standard, true),
                ("ours_standard_no_ll", UpdateForm::Standard, false),
                ("ours_sqrt", UpdateForm::SquareRoot, true),
                ("ours_sqrt_no_ll", UpdateForm::SquareRoot, false),
            ] {
                let make = |form| {
                    if likelihood {
                        new_ours(form)
                    } else {
                        new_ours_no_ll(form)
                    }
                };
                group.bench_function(name, |b| {
                    b.iter_batched_ref(
                        || make(form),
                        |kf| ours(&case, black_box(kf)),
                        BatchSize::LargeInput,
                    )
                });
            }
            let observations: Vec<_> = case.ys.iter().cloned().map(Some).collect();
            group.bench_function("ours_filter_fn_joseph", |b| {
                b.iter(|| {
                    filter(
                        &case.prior,
                        &case.model,
                        black_box(&observations),
                        UpdateForm::Joseph,
                    )
                    .expect("filter")
                })
            });
            group.bench_function("adskalman_joseph", |b| {
                b.iter(|| ads_run(black_box(adskalman::CovarianceUpdateMethod::JosephForm)))
            });
            group.bench_function("adskalman_standard", |b| {
                b.iter(|| {
                    ads_run(black_box(
                        adskalman::CovarianceUpdateMethod::OptimalKalmanForcedSymmetric,
                    ))
                })
            });
            group.bench_function("kalmanfilt_joseph", |b| {
                b.iter_batched_ref(
                    || kfilt_init.clone(),
                    |kf| kfilt_run(black_box(kf)),
                    BatchSize::LargeInput,
                )
            });
            group.bench_function("kfilter_standard", |b| {
                b.iter_batched_ref(
                    || kf_init.clone(),
                    |kf| kf_run(black_box(kf)),
                    BatchSize::LargeInput,
                )
            });
            group.bench_function("minikalman_standard", |b| b.iter(|| black_box(mini_run())));
            group.bench_function("rts_ours", |b| {
                b.iter(|| rts_smooth(&case.model, black_box(&out)).expect("smoother"))
            });
            group.bench_function("rts_adskalman", |b| {
                b.iter_batched(
                    || ads_all.clone(),
                    |all| ads_model_smoother(&ads_model, black_box(all)),
                    BatchSize::LargeInput,
                )
            });
            group.finish();
        }
    };
}

/// adskalman's model types: the crate wants the model behind traits.
mod mod_ads {
    use nalgebra_ads::{SMatrix, SVector};

    use super::Case;

    pub struct Model<const N: usize, const M: usize> {
        pub f: SMatrix<f64, N, N>,
        pub ft: SMatrix<f64, N, N>,
        pub q: SMatrix<f64, N, N>,
        pub h: SMatrix<f64, M, N>,
        pub ht: SMatrix<f64, N, M>,
        pub r: SMatrix<f64, M, M>,
    }

    impl<const N: usize, const M: usize> Model<N, M> {
        pub fn new(case: &Case) -> Self {
            let f = SMatrix::<f64, N, N>::from_row_slice(&case.f());
            let h = SMatrix::<f64, M, N>::from_row_slice(&case.h());
            Self {
                f,
                ft: f.transpose(),
                q: SMatrix::from_row_slice(&case.q()),
                h,
                ht: h.transpose(),
                r: SMatrix::from_row_slice(&case.r()),
            }
        }
    }

    pub fn prior<const N: usize>(
        case: &Case,
    ) -> adskalman::StateAndCovariance<f64, nalgebra_ads::Const<N>> {
        adskalman::StateAndCovariance::new(
            SVector::<f64, N>::from_column_slice(&case.x0()),
            SMatrix::<f64, N, N>::from_row_slice(&case.p0()),
        )
    }
}

macro_rules! ads_impls {
    ($n:literal, $m:literal) => {
        impl adskalman::TransitionModelLinearNoControl<f64, nalgebra_ads::Const<$n>>
            for mod_ads::Model<$n, $m>
        {
            fn F(&self) -> &nalgebra_ads::SMatrix<f64, $n, $n> {
                &self.f
            }
            fn FT(&self) -> &nalgebra_ads::SMatrix<f64, $n, $n> {
                &self.ft
            }
            fn Q(&self) -> &nalgebra_ads::SMatrix<f64, $n, $n> {
                &self.q
            }
        }

        impl adskalman::ObservationModel<f64, nalgebra_ads::Const<$n>, nalgebra_ads::Const<$m>>
            for mod_ads::Model<$n, $m>
        {
            fn H(&self) -> &nalgebra_ads::SMatrix<f64, $m, $n> {
                &self.h
            }
            fn HT(&self) -> &nalgebra_ads::SMatrix<f64, $n, $m> {
                &self.ht
            }
            fn R(&self) -> &nalgebra_ads::SMatrix<f64, $m, $m> {
                &self.r
            }
        }
    };
}

#[allow(non_snake_case)]
mod ads_trait_impls {
    use super::mod_ads;
    ads_impls!(4, 2);
    ads_impls!(16, 8);
    ads_impls!(64, 32);
}

/// adskalman's RTS smoother over its own filter output.
fn ads_model_smoother<const N: usize, const M: usize>(
    model: &mod_ads::Model<N, M>,
    filtered: Vec<adskalman::StateAndCovariance<f64, nalgebra_ads::Const<N>>>,
) -> Vec<adskalman::StateAndCovariance<f64, nalgebra_ads::Const<N>>>
where
    mod_ads::Model<N, M>: adskalman::TransitionModelLinearNoControl<f64, nalgebra_ads::Const<N>>
        + adskalman::ObservationModel<f64, nalgebra_ads::Const<N>, nalgebra_ads::Const<M>>,
    nalgebra_ads::Const<M>:
        nalgebra_ads::DimMin<nalgebra_ads::Const<M>, Output = nalgebra_ads::Const<M>>,
{
    adskalman::KalmanFilterNoControl::new(model, model)
        .smooth_from_filtered(filtered)
        .expect("adskalman smoother")
}

peers_at!(peers_n4, 4, 2);
peers_at!(peers_n16, 16, 8);
peers_at!(peers_n64, 64, 32);

criterion_group!(benches, peers_n4, peers_n16, peers_n64);
criterion_main!(benches);
