//! Benchmarks: the rank-one scalar update at small dimensions, a full predict + update at
//! state dimension 100, and the Cholesky backends.

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use kalman_ndarray::linalg::Cholesky;
use kalman_ndarray::{Gaussian, Measurement, Transition, UpdateForm};
use ndarray::{Array1, Array2};

/// Deterministic pseudo-random numbers in [-1, 1) (splitmix64), so runs are comparable.
struct Numbers(u64);

impl Numbers {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    fn vector(&mut self, n: usize) -> Array1<f64> {
        Array1::from_shape_fn(n, |_| self.next())
    }

    fn matrix(&mut self, r: usize, c: usize) -> Array2<f64> {
        Array2::from_shape_fn((r, c), |_| self.next())
    }

    /// `A Aᵀ / n + I`: symmetric positive definite, well conditioned.
    fn spd(&mut self, n: usize) -> Array2<f64> {
        let a = self.matrix(n, n);
        let mut s: Array2<f64> = a.dot(&a.t()) / n as f64 + Array2::<f64>::eye(n);
        let st = s.t().to_owned();
        s = (s + st) * 0.5;
        s
    }
}

fn scalar_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("scalar_update");
    let mut rng = Numbers(1);
    for k in [2usize, 8, 32] {
        // Repeated in-place updates of one belief, as in sequential use: the cost does not
        // depend on the values, and the innovation variance stays ≥ r > 0.
        let mut belief = Gaussian::new(rng.vector(k), rng.spd(k)).unwrap();
        let h = rng.vector(k);
        group.bench_with_input(BenchmarkId::from_parameter(k), &k, |b, _| {
            b.iter(|| belief.scalar_update(black_box(h.view()), 0.5, 0.3).unwrap());
        });
    }
    group.finish();
}

fn predict_update(c: &mut Criterion) {
    let n = 100;
    let mut group = c.benchmark_group("predict_update_n100");
    group.sample_size(30);
    let mut rng = Numbers(2);
    let prior = Gaussian::new(rng.vector(n), rng.spd(n)).unwrap();
    let f = Array2::eye(n) + rng.matrix(n, n) * 0.01;
    let transition = Transition::new(f, Array2::eye(n) * 0.01).unwrap();
    for m in [10usize, 100] {
        let measurement = Measurement::new(rng.matrix(m, n), Array2::eye(m) * 0.5).unwrap();
        let y = rng.vector(m);
        for form in [UpdateForm::Joseph, UpdateForm::Standard] {
            let id = BenchmarkId::new(format!("{form:?}"), format!("m{m}"));
            group.bench_with_input(id, &m, |b, _| {
                b.iter_batched_ref(
                    || prior.clone(),
                    |g| {
                        g.predict(&transition).unwrap();
                        g.update(&measurement, black_box(y.view()), form).unwrap()
                    },
                    BatchSize::SmallInput,
                );
            });
        }
    }
    group.finish();
}

fn cholesky(c: &mut Criterion) {
    let mut group = c.benchmark_group("cholesky");
    let mut rng = Numbers(3);
    for n in [16usize, 32, 64, 100, 200] {
        let a = rng.spd(n);
        group.bench_with_input(BenchmarkId::new("native", n), &n, |b, _| {
            b.iter(|| Cholesky::new_native(black_box(a.view())).unwrap());
        });
        #[cfg(feature = "lapack")]
        group.bench_with_input(BenchmarkId::new("lapack", n), &n, |b, _| {
            b.iter(|| Cholesky::new_lapack(black_box(a.view())).unwrap());
        });
    }
    group.finish();
}

criterion_group!(benches, scalar_update, predict_update, cholesky);
criterion_main!(benches);
