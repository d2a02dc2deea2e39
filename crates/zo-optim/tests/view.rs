//! Probe points through a view: every optimizer works on a parameter set whose stored values never
//! move during a probe, agrees with the in-place path, and writes half-precision updates with
//! stochastic rounding.

use std::sync::{Barrier, Mutex};

use half::bf16;
use zo_optim::params::{Visitor, Widen};
use zo_optim::{
    Algorithm, Objective, ObjectiveError, Optimizer, ParamError, ParamSet, ParamSliceMut,
    ParamStore, Perturbation, ProbeMode, Rounding, Share, StepReport, TensorData, TensorInfo,
};

mod problems;
use problems::Rng;

/// A parameter set read through its view: two tensors of storage `E`, whose readers widen the
/// stored values and add the current perturbation.
struct Viewed<E> {
    tensors: Vec<(TensorInfo, Vec<E>)>,
    view: Option<Perturbation>,
    rounding: Rounding,
}

impl<E: Widen> Viewed<E> {
    fn new(values: &[f32], rounding: Rounding) -> Self {
        let (a, b) = values.split_at(values.len() / 3);
        let tensors = vec![
            (
                TensorInfo::new("layer.bias", vec![a.len()]),
                a.iter().map(|v| E::from_f32(*v)).collect(),
            ),
            (
                TensorInfo::new("layer.weight", vec![b.len() / 8, 8]),
                b.iter().map(|v| E::from_f32(*v)).collect(),
            ),
        ];
        Self {
            tensors,
            view: None,
            rounding,
        }
    }

    /// What a reader sees: the stored values plus the view, in f32.
    fn read(&self) -> Vec<f32> {
        let mut all = Vec::new();
        for (info, data) in &self.tensors {
            let mut out = vec![0.0; data.len()];
            match &self.view {
                Some(v) => v.materialize(info, 0, data, &mut out).unwrap(),
                None => E::widen(data, &mut out),
            }
            all.extend(out);
        }
        all
    }

    /// The same tensors as an in-place parameter set.
    fn in_place(&self) -> ParamStore {
        let mut store = ParamStore::new();
        for (info, data) in &self.tensors {
            let values = data.iter().map(|x| x.to_f32()).collect();
            store.insert(info.clone(), TensorData::F32(values)).unwrap();
        }
        store
    }

    fn stored(&self) -> Vec<f32> {
        self.tensors
            .iter()
            .flat_map(|(_, d)| d.iter().map(|x| x.to_f32()))
            .collect()
    }
}

macro_rules! viewed_param_set {
    ($e:ty, $variant:ident) => {
        impl ParamSet for Viewed<$e> {
            fn tensors(&self) -> Vec<TensorInfo> {
                self.tensors.iter().map(|(i, _)| i.clone()).collect()
            }

            fn visit_mut(&mut self, f: &mut Visitor<'_>) -> Result<(), ParamError> {
                assert!(
                    self.view.is_none(),
                    "the stored values are written under a view"
                );
                for (info, data) in &mut self.tensors {
                    f(info, ParamSliceMut::$variant(data))?;
                }
                Ok(())
            }

            fn probe_mode(&self) -> ProbeMode {
                ProbeMode::View
            }

            fn set_view(&mut self, view: Option<Perturbation>) -> Result<(), ParamError> {
                self.view = view;
                Ok(())
            }

            fn rounding(&self) -> Rounding {
                self.rounding
            }
        }
    };
}
viewed_param_set!(f32, F32);
viewed_param_set!(bf16, BF16);

/// A noisy-free ill-conditioned quadratic `½ Σ dᵢ (θᵢ − 1)²`.
fn quadratic(theta: &[f32]) -> f64 {
    theta
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let d = 1.0 + (i % 7) as f64;
            0.5 * d * (f64::from(*t) - 1.0).powi(2)
        })
        .sum()
}

fn start(n: usize) -> Vec<f32> {
    let mut rng = Rng::new(7);
    (0..n).map(|_| (rng.normal() * 0.1) as f32).collect()
}

fn store_values(p: &ParamStore) -> Vec<f32> {
    p.tensors()
        .iter()
        .flat_map(|t| p.get(&t.name).unwrap().to_f32())
        .collect()
}

#[test]
fn every_optimizer_through_a_view_follows_the_in_place_path() {
    let x0 = start(3 * 1024);
    for alg in Algorithm::ALL {
        let opt = Optimizer::named(alg, 1e-3, 2e-5).unwrap();
        let mut viewed = Viewed::<f32>::new(&x0, Rounding::Stochastic);
        let mut inplace = viewed.in_place();
        let mut s1 = opt.init(&inplace, 3);
        let mut s2 = opt.init(&viewed, 3);
        let mut obj1 = |p: &ParamStore| quadratic(&store_values(p));
        let mut obj2 = |p: &Viewed<f32>| quadratic(&p.read());
        for step in 0..30 {
            let r1 = opt.step(&mut s1, &mut inplace, &mut obj1).unwrap();
            let r2 = opt.step(&mut s2, &mut viewed, &mut obj2).unwrap();
            assert_eq!(r1.forwards, r2.forwards, "{alg:?}");
            if step == 0 {
                // The first step's probe points are the same values, reached two ways; later the
                // in-place path's restores (an ulp here and there) make the runs drift apart.
                for (a, b) in r1.losses.iter().zip(&r2.losses) {
                    assert!((a - b).abs() <= 1e-9 * a.abs(), "{alg:?}: {a} vs {b}");
                }
            }
        }
        assert!(viewed.view.is_none(), "{alg:?} left a view behind");
        let (a, b) = (
            quadratic(&store_values(&inplace)),
            quadratic(&viewed.stored()),
        );
        assert!((a - b).abs() <= 0.02 * a, "{alg:?}: {a} vs {b}");
        assert!(b < quadratic(&x0), "{alg:?} did not descend: {b}");
    }
}

#[test]
fn probe_only_steps_leave_half_precision_storage_bitwise_identical() {
    let x0 = start(3 * 512);
    for alg in Algorithm::ALL {
        let opt = Optimizer::named(alg, 1e-4, 0.0).unwrap();
        let mut viewed = Viewed::<bf16>::new(&x0, Rounding::Stochastic);
        let before: Vec<u16> = viewed
            .tensors
            .iter()
            .flat_map(|(_, d)| d.iter().map(|x| x.to_bits()))
            .collect();
        let mut state = opt.init(&viewed, 11);
        let mut seen = Vec::new();
        let mut obj = |p: &Viewed<bf16>| {
            let r = p.read();
            seen.push(r[5]);
            quadratic(&r)
        };
        for _ in 0..200 {
            opt.step(&mut state, &mut viewed, &mut obj).unwrap();
        }
        let after: Vec<u16> = viewed
            .tensors
            .iter()
            .flat_map(|(_, d)| d.iter().map(|x| x.to_bits()))
            .collect();
        assert_eq!(before, after, "{alg:?}");
        // The probes did reach the readers: ε = 1e-4 is far below half a bf16 ulp of these
        // values, yet the readers saw displaced values.
        let stored = bf16::from_f32(x0[5]).to_f32();
        assert!(seen.iter().any(|v| *v != stored), "{alg:?}");
    }
}

#[test]
fn stochastic_rounding_moves_half_precision_weights_that_nearest_rounding_freezes() {
    // Weights near 0.5, whose bf16 spacing is 2⁻⁹.
    let x0: Vec<f32> = start(3 * 4096).iter().map(|v| 0.5 + v).collect();
    let opt = Optimizer::named(Algorithm::Mezo, 1e-3, 1e-8).unwrap();
    let mut changed = Vec::new();
    for rounding in [Rounding::Nearest, Rounding::Stochastic] {
        let mut viewed = Viewed::<bf16>::new(&x0, rounding);
        let mut state = opt.init(&viewed, 5);
        let mut obj = |p: &Viewed<bf16>| quadratic(&p.read());
        let mut total = 0;
        for _ in 0..10 {
            let before = viewed.stored();
            opt.step(&mut state, &mut viewed, &mut obj).unwrap();
            total += before
                .iter()
                .zip(viewed.stored())
                .filter(|(a, b)| **a != *b)
                .count();
        }
        changed.push(total);
    }
    // lr·g·z ≈ 1e-8 · O(100) is far below half that spacing (≈ 1e-3): nearest
    // rounding loses every update, stochastic rounding keeps a fraction of the elements moving.
    assert_eq!(changed[0], 0);
    assert!(changed[1] > 10, "{changed:?}");
}

#[test]
fn replays_through_a_view_are_bitwise_identical() {
    let x0 = start(3 * 1024);
    for alg in [
        Algorithm::Bszo,
        Algorithm::Hizoo,
        Algorithm::MezoAdam,
        Algorithm::Fzoo,
    ] {
        let opt = Optimizer::named(alg, 1e-3, 1e-3).unwrap();
        let run = || {
            let mut viewed = Viewed::<bf16>::new(&x0, Rounding::Stochastic);
            let mut state = opt.init(&viewed, 9);
            let mut obj = |p: &Viewed<bf16>| quadratic(&p.read());
            for _ in 0..20 {
                opt.step(&mut state, &mut viewed, &mut obj).unwrap();
            }
            viewed.stored()
        };
        let (a, b) = (run(), run());
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert_ne!(
            a,
            x0.iter()
                .map(|v| bf16::from_f32(*v).to_f32())
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_failed_probe_clears_the_view_and_leaves_the_storage_alone() {
    let x0 = start(3 * 256);
    for alg in Algorithm::ALL {
        let opt = Optimizer::named(alg, 1e-3, 1e-3).unwrap();
        let mut viewed = Viewed::<f32>::new(&x0, Rounding::Stochastic);
        let before = viewed.stored();
        let mut state = opt.init(&viewed, 1);
        let mut calls = 0;
        let mut obj = |p: &Viewed<f32>| {
            calls += 1;
            if calls == 2 {
                f64::NAN
            } else {
                quadratic(&p.read())
            }
        };
        assert!(
            opt.step(&mut state, &mut viewed, &mut obj).is_err(),
            "{alg:?}"
        );
        assert!(viewed.view.is_none(), "{alg:?}");
        assert_eq!(viewed.stored(), before, "{alg:?}");
    }
}

/// Several callers of one step, each in its own thread with its own copy of the parameters,
/// splitting every set of independent probe points ([`Share`]) and exchanging the losses.
struct Exchange {
    slots: Mutex<Vec<Vec<Option<f64>>>>,
    barrier: Barrier,
}

struct SharedQuadratic<'x> {
    share: Share,
    exchange: &'x Exchange,
    /// A loss that turns NaN at this caller's `n`-th evaluation.
    nan_at: Option<usize>,
    evaluated: usize,
}

impl Objective<Viewed<bf16>> for SharedQuadratic<'_> {
    fn loss(&mut self, p: &Viewed<bf16>) -> Result<f64, ObjectiveError> {
        self.evaluated += 1;
        if self.nan_at == Some(self.evaluated) {
            return Ok(f64::NAN);
        }
        Ok(quadratic(&p.read()))
    }

    fn share(&self) -> Option<Share> {
        Some(self.share)
    }

    fn gather(&mut self, local: &[Option<f64>]) -> Result<Vec<f64>, ObjectiveError> {
        self.exchange.slots.lock().unwrap()[self.share.index] = local.to_vec();
        self.exchange.barrier.wait();
        let all: Vec<f64> = {
            let slots = self.exchange.slots.lock().unwrap();
            (0..local.len())
                .map(|i| {
                    slots
                        .iter()
                        .find_map(|s| s[i])
                        .expect("every point evaluated")
                })
                .collect()
        };
        self.exchange.barrier.wait();
        Ok(all)
    }
}

/// `steps` steps of `opt` split between `callers` threads; each caller's stored values and
/// reports (or its first error).
fn shared_run(
    opt: &Optimizer,
    x0: &[f32],
    callers: usize,
    steps: usize,
    nan_at: Option<(usize, usize)>,
) -> Vec<(Vec<u16>, Vec<StepReport>, Option<String>)> {
    let exchange = Exchange {
        slots: Mutex::new(vec![Vec::new(); callers]),
        barrier: Barrier::new(callers),
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..callers)
            .map(|index| {
                let exchange = &exchange;
                scope.spawn(move || {
                    let mut viewed = Viewed::<bf16>::new(x0, Rounding::Stochastic);
                    let mut state = opt.init(&viewed, 21);
                    let mut obj = SharedQuadratic {
                        share: Share {
                            index,
                            count: callers,
                        },
                        exchange,
                        nan_at: nan_at.and_then(|(c, n)| (c == index).then_some(n)),
                        evaluated: 0,
                    };
                    let mut reports = Vec::new();
                    let mut error = None;
                    for _ in 0..steps {
                        match opt.step(&mut state, &mut viewed, &mut obj) {
                            Ok(r) => reports.push(r),
                            Err(e) => {
                                error = Some(e.to_string());
                                break;
                            }
                        }
                    }
                    assert!(viewed.view.is_none());
                    let bits = viewed
                        .tensors
                        .iter()
                        .flat_map(|(_, d)| d.iter().map(|x| x.to_bits()))
                        .collect();
                    (bits, reports, error)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn probe_points_split_between_callers_give_the_single_caller_step_bit_for_bit() {
    let x0 = start(3 * 512);
    for alg in Algorithm::ALL {
        let mut config = alg.config(1e-3);
        // Two directions for n-SPSA/FZOO-sized sets and BSZO's central differences too.
        if let zo_optim::Estimator::KalmanSubspace(k) = &mut config.estimator
            && alg == Algorithm::Bszo
        {
            k.k = 3;
            k.m = 4;
        }
        let opt = Optimizer::new(config, zo_optim::Schedule::constant(1e-3)).unwrap();
        let single = {
            let mut viewed = Viewed::<bf16>::new(&x0, Rounding::Stochastic);
            let mut state = opt.init(&viewed, 21);
            let mut obj = |p: &Viewed<bf16>| quadratic(&p.read());
            let reports: Vec<StepReport> = (0..12)
                .map(|_| opt.step(&mut state, &mut viewed, &mut obj).unwrap())
                .collect();
            let bits: Vec<u16> = viewed
                .tensors
                .iter()
                .flat_map(|(_, d)| d.iter().map(|x| x.to_bits()))
                .collect();
            (bits, reports)
        };
        for callers in [1, 2, 3] {
            for (bits, reports, error) in shared_run(&opt, &x0, callers, 12, None) {
                assert_eq!(error, None, "{alg:?}, {callers} callers");
                assert_eq!(reports, single.1, "{alg:?}, {callers} callers");
                assert!(
                    bits == single.0,
                    "{alg:?}, {callers} callers: weights differ"
                );
            }
        }
    }
}

#[test]
fn a_non_finite_loss_on_one_caller_stops_every_caller_at_the_same_forward() {
    let x0 = start(3 * 512);
    let opt = Optimizer::named(Algorithm::Bszo, 1e-3, 1e-3).unwrap();
    let before: Vec<u16> = Viewed::<bf16>::new(&x0, Rounding::Stochastic)
        .tensors
        .iter()
        .flat_map(|(_, d)| d.iter().map(|x| x.to_bits()))
        .collect();
    // Caller 1 evaluates the second point of each step's set (BSZO k = 2: θ, +εz₀, +εz₁).
    let runs = shared_run(&opt, &x0, 2, 3, Some((1, 1)));
    for (bits, reports, error) in &runs {
        assert!(reports.is_empty());
        let error = error.as_deref().expect("the step fails");
        assert!(
            error.contains("step 0") && error.contains("forward 2"),
            "{error}"
        );
        assert!(*bits == before, "a failed step changed the weights");
    }
}
