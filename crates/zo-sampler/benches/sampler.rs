//! Throughput of the direction streams and the fused sweeps, each next to its baseline measured in
//! the same run:
//!
//! * `normals/*`: normals per second on one thread, against `rand_distr::StandardNormal` sampled
//!   from a `rand_pcg::Pcg64` (the naive baseline), on a 64K-element buffer (stays in L2);
//! * `sweep_64M/*`: the fused perturbation `θ += s·z` over 64M f32 on 1 and 2 threads, against a
//!   plain `copy_from_slice` of a 64M-f32 buffer. Throughput counts the bytes read plus the bytes
//!   written (2 × 256 MiB for both), so the GB/s figures compare directly.
//!
//! Benchmark names carry the instruction set in use (`zo_sampler::instruction_set()`); set
//! `ZO_SAMPLER_ISA=avx2` (or `portable`) to measure a less capable path. The workloads are
//! `zo_sampler::throughput`'s, which the repository's benchmark suite also times.
//!
//! Run with `cargo bench -p zo-sampler --bench sampler`.

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use half::bf16;
use zo_sampler::sweep::{self, Term};
use zo_sampler::throughput::{self as work, Baseline};
use zo_sampler::{Distribution, instruction_set};

/// Elements per generation benchmark (256 KiB of f32).
const GEN: usize = 1 << 16;
/// Elements of the sweep benchmark.
const BIG: usize = 64 << 20;

fn normals(c: &mut Criterion) {
    let isa = instruction_set();
    let mut g = c.benchmark_group("normals");
    g.throughput(Throughput::Elements(GEN as u64));
    let mut out = vec![0f32; GEN];
    let mut baseline = Baseline::new(7);
    g.bench_function("pcg64_standard_normal", |b| {
        b.iter(|| baseline.fill(&mut out))
    });
    let normal = work::stream(Distribution::Normal);
    g.bench_function(format!("fill_normal_{isa}"), |b| {
        b.iter(|| work::fill(&normal, &mut out))
    });
    let rademacher = work::stream(Distribution::Rademacher);
    g.bench_function(format!("fill_rademacher_{isa}"), |b| {
        b.iter(|| work::fill(&rademacher, &mut out))
    });
    let term = [Term::new(1e-3, normal)];
    g.bench_function(format!("add_scaled_f32_serial_{isa}"), |b| {
        b.iter(|| sweep::apply_serial(&mut out, 0, &term, None))
    });
    let mut bf = vec![bf16::ZERO; GEN];
    g.bench_function(format!("add_scaled_bf16_serial_{isa}"), |b| {
        b.iter(|| sweep::apply_serial(&mut bf, 0, &term, None))
    });
    g.finish();
}

fn sweep_64m(c: &mut Criterion) {
    let isa = instruction_set();
    let mut g = c.benchmark_group("sweep_64M");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(2 * 4 * BIG as u64));
    let src = vec![1f32; BIG];
    let mut dst = vec![0f32; BIG];
    g.bench_function("memcpy", |b| b.iter(|| work::memcpy(&mut dst, &src)));
    drop(src);
    let z = work::stream(Distribution::Normal);
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        g.bench_function(format!("add_scaled_{threads}thread_{isa}"), |b| {
            b.iter(|| pool.install(|| sweep::add_scaled(&mut dst, 0, 1e-3, &z)))
        });
    }
    g.finish();
}

criterion_group!(benches, normals, sweep_64m);
criterion_main!(benches);
