//! Directions over a parameter set and their evaluation on one tensor.
//!
//! A [`Direction`] is a key, not a vector: its values on a tensor are regenerated from the key and
//! the tensor's name whenever they are needed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zo_sampler::{DirectionKey, Distribution, Stream};

use crate::params::TensorInfo;

/// The direction index reserved for LOZO's slowly refreshed right factor `V`.
pub const LOW_RANK_V_DIRECTION: u32 = u32::MAX;

/// How a direction's values are generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DirectionKind {
    /// A full i.i.d. direction on every tensor.
    Full(Distribution),
    /// LOZO's low-rank direction: on every tensor with two or more dimensions, viewed as a matrix
    /// `rows × (numel / rows)`, the direction is `U Vᵀ` with `U ~ N(0, I)` of shape `rows × rank` drawn
    /// from this direction's key and `V ~ N(0, I)` of shape `cols × rank` drawn from the key
    /// `(seed, v_step, LOW_RANK_V_DIRECTION)`; one-dimensional tensors get a full Gaussian direction.
    LowRank {
        /// The rank `r`.
        rank: u32,
        /// The step at which `V` was last redrawn.
        v_step: u64,
    },
}

/// One random direction over a whole parameter set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Direction {
    /// The key (run seed, step, direction index).
    pub key: DirectionKey,
    /// How values are generated from the key.
    pub kind: DirectionKind,
}

impl Direction {
    /// A full Gaussian direction.
    pub const fn gaussian(key: DirectionKey) -> Self {
        Self {
            key,
            kind: DirectionKind::Full(Distribution::Normal),
        }
    }
}

/// One term `coeff · z(direction)` of an update.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Term {
    /// The coefficient.
    pub coeff: f32,
    /// The direction.
    pub direction: Direction,
}

impl Term {
    /// A new term.
    pub const fn new(coeff: f32, direction: Direction) -> Self {
        Self { coeff, direction }
    }
}

/// A direction bound to one tensor, able to produce its values for any element range.
pub(crate) struct TensorDirection {
    values: Values,
    /// With a row support ([`TensorInfo::rows`]): the direction is zero outside those rows.
    support: Option<Support>,
}

/// The values of a direction on one tensor, before any row support.
enum Values {
    Full(Stream),
    LowRank {
        u: Vec<f32>,
        v: Vec<f32>,
        rank: usize,
        cols: usize,
    },
}

/// The rows a direction may be non-zero on (sorted, distinct) and the row length.
struct Support {
    rows: Arc<[u32]>,
    cols: usize,
}

impl Support {
    /// The support of tensor `info`, if it has one.
    fn of(info: &TensorInfo) -> Option<Self> {
        let rows = info.rows.clone()?;
        let (_, cols) = info.rows_cols();
        Some(Self { rows, cols })
    }

    /// Zero the values of `out` (elements `offset ..`) that lie outside the supported rows.
    fn zero_outside(&self, offset: usize, out: &mut [f32]) {
        let end = offset + out.len();
        if self.cols == 0 {
            return;
        }
        // `pos`: the first element not yet decided; `next`: the first supported row that may
        // still cover an element at or after it.
        let mut pos = offset;
        let mut next = self
            .rows
            .partition_point(|&r| (r as usize) < offset / self.cols);
        while pos < end {
            match self.rows.get(next) {
                Some(&r) => {
                    let (a, b) = (r as usize * self.cols, (r as usize + 1) * self.cols);
                    if a > pos {
                        out[pos - offset..a.min(end) - offset].fill(0.0);
                    }
                    pos = pos.max(b);
                    next += 1;
                }
                None => {
                    out[pos - offset..].fill(0.0);
                    pos = end;
                }
            }
        }
    }
}

impl TensorDirection {
    /// Bind `dir` to the tensor `info` (and to its row support, if any). Low-rank factors are
    /// materialised (O(rows + cols) floats).
    pub(crate) fn new(dir: &Direction, info: &TensorInfo) -> Self {
        Self {
            values: Values::new(dir, info),
            support: Support::of(info),
        }
    }

    /// Bind `dir` to the tensor `info` ignoring any row support: the values the direction has on
    /// its supported rows, everywhere.
    pub(crate) fn unrestricted(dir: &Direction, info: &TensorInfo) -> Self {
        Self {
            values: Values::new(dir, info),
            support: None,
        }
    }

    /// Whether this is a plain stream (so the fast fused sweep of `zo-sampler` applies).
    pub(crate) fn stream(&self) -> Option<&Stream> {
        match (&self.values, &self.support) {
            (Values::Full(s), None) => Some(s),
            _ => None,
        }
    }

    /// Fill `out` with the direction's values at elements `offset .. offset + out.len()`.
    pub(crate) fn fill(&self, offset: usize, out: &mut [f32]) {
        self.values.fill(offset, out);
        if let Some(support) = &self.support {
            support.zero_outside(offset, out);
        }
    }
}

impl Values {
    fn new(dir: &Direction, info: &TensorInfo) -> Self {
        let id = info.id();
        match dir.kind {
            DirectionKind::Full(dist) => Self::Full(Stream::new(dir.key, id, dist)),
            DirectionKind::LowRank { rank, v_step } => {
                if info.shape.len() < 2 || info.shape[0] == 0 {
                    return Self::Full(Stream::new(dir.key, id, Distribution::Normal));
                }
                let rows = info.shape[0];
                let cols = info.numel() / rows;
                let rank = rank as usize;
                let mut u = vec![0.0; rows * rank];
                Stream::new(dir.key, id, Distribution::Normal).fill(0, &mut u);
                let vkey = DirectionKey::new(dir.key.seed, v_step, LOW_RANK_V_DIRECTION);
                let mut v = vec![0.0; cols * rank];
                Stream::new(vkey, id, Distribution::Normal).fill(0, &mut v);
                Self::LowRank { u, v, rank, cols }
            }
        }
    }

    fn fill(&self, offset: usize, out: &mut [f32]) {
        match self {
            Self::Full(s) => s.fill(offset as u64, out),
            Self::LowRank { u, v, rank, cols } => {
                for (i, o) in out.iter_mut().enumerate() {
                    let idx = offset + i;
                    let (row, col) = (idx / cols, idx % cols);
                    let ur = &u[row * rank..(row + 1) * rank];
                    let vr = &v[col * rank..(col + 1) * rank];
                    let mut acc = 0.0f32;
                    for r in 0..*rank {
                        acc += ur[r] * vr[r];
                    }
                    *o = acc;
                }
            }
        }
    }
}

/// The terms with every coefficient negated: `−Σ cᵢ zᵢ`.
pub(crate) fn negate(terms: &[Term]) -> Vec<Term> {
    terms
        .iter()
        .map(|t| Term::new(-t.coeff, t.direction))
        .collect()
}
