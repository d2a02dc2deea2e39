//! Deterministic, platform-independent randomness for sampling data: the seeded integer sampling
//! of [`zo_sampler::shuffle`](mod@zo_sampler::shuffle), re-exported.
//!
//! [`SplitMix64`] (Steele, Lea and Flood 2014; the constants of Vigna's reference `splitmix64.c`)
//! produces 64-bit words from a 64-bit state; [`SplitMix64::below`] draws an unbiased integer in
//! `0..n` by rejection; [`shuffle`] is the Fisher–Yates shuffle; [`permutation`] a seeded
//! permutation of `0..n`; [`derive_seed`] an independent seed per stream index (the protocols use
//! one per split). Only integer arithmetic is used, so the same seed gives the same splits on every
//! platform and in every build.

pub use zo_sampler::shuffle::{SplitMix64, derive_seed, permutation, shuffle};
