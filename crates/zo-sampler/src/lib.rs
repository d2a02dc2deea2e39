//! Keyed, seekable direction streams and fused in-place perturbation sweeps.
//!
//! A random direction is never stored: it is identified by a [`DirectionKey`] (run seed, step,
//! direction index) and, per tensor, a [`TensorId`] derived from the tensor's *name*. The pair
//! defines a [`Stream`] whose element `i` depends only on (key, tensor, i).

pub mod philox;
mod stream;
pub mod sweep;

pub use stream::{DirectionKey, Distribution, Stream, TensorId};
pub use sweep::{Element, Term};
