#![doc = include_str!("../README.md")]

mod kernel;
pub mod philox;
pub mod shuffle;
mod stream;
pub mod sweep;
#[cfg(feature = "throughput")]
pub mod throughput;
pub mod transform;

pub use shuffle::{SplitMix64, derive_seed, permutation, shuffle};
pub use stream::{DirectionKey, Distribution, Stream, TensorId};
pub use sweep::{Element, SweepError, Term};

/// The instruction set that [`Stream::fill`] and the sweeps use in this process: `"avx512"`,
/// `"avx2"` or `"portable"`.
///
/// The most capable one the CPU supports, unless the environment variable `ZO_SAMPLER_ISA` caps
/// it (`portable`, `avx2` or `avx512`; read once, unknown values ignored). All of them give
/// identical bits; only the speed differs.
pub fn instruction_set() -> &'static str {
    kernel::Isa::detect().name()
}
