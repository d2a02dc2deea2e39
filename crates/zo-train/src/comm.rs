//! Several processes training as one: the communicator the loop talks through, and how a step is
//! split between the processes.
//!
//! A zeroth-order step needs only scalars from each forward (the losses), never a gradient or a
//! weight tensor, so processes that each hold the full weights can share a step's work by
//! exchanging a few `f64` values:
//!
//! - **data** ([`ParallelMode::Data`]): a minibatch is cut into
//!   [`TrainConfig::shards`](crate::TrainConfig::shards) contiguous pieces, piece `p` is evaluated
//!   by process `p mod N`, and the per-example loss terms are gathered and summed in example order
//!   on every process. A piece's forward is the same computation wherever it runs, so an `N`-process
//!   run equals the one-process run with the same `shards` bit for bit.
//! - **directions** ([`ParallelMode::Directions`]): every process evaluates the whole minibatch,
//!   and the optimizer's independent probe points (BSZO's axis probes, n-SPSA's `±εzⱼ`) are
//!   split between them ([`zo_optim::Objective::share`]); the gathered losses are those a single
//!   process computes.
//!
//! Either way every process then runs the identical optimizer step and applies the identical
//! update; a guard compares a hash of the weights every few steps.
//!
//! The [`Communicator`] is the whole interface to the transport: [`SingleProcess`] (the default),
//! and with the `mpi` feature, `Mpi` over an installed MPI library.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A failed collective operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("communication between the processes failed: {0}")]
pub struct CommError(pub String);

/// The collective operations the loop needs: all-gather of `f64` scalars and a broadcast of a
/// small byte buffer. Every process calls the same operations in the same order.
pub trait Communicator {
    /// This process's index, `0..size()`; process 0 writes the run folder.
    fn rank(&self) -> usize;

    /// The number of processes.
    fn size(&self) -> usize;

    /// Every process's `local` values, by process (the lengths may differ).
    fn all_gather(&self, local: &[f64]) -> Result<Vec<Vec<f64>>, CommError>;

    /// Process `root`'s `buf`, on every process (the other processes' contents are replaced).
    fn broadcast(&self, root: usize, buf: &mut Vec<u8>) -> Result<(), CommError>;

    /// The payload bytes this process has handed to collectives so far (its own values of
    /// each all-gather, with an 8-byte length; a broadcast's buffer at its root).
    fn bytes_sent(&self) -> u64;

    /// End every process of the job after an error on this one, so that none is left waiting in
    /// a collective (MPI's abort). The default does nothing: one process just returns its error.
    fn abort(&self, code: i32) {
        let _ = code;
    }
}

/// One process: the collectives return the local values.
#[derive(Debug, Default)]
pub struct SingleProcess {
    sent: Cell<u64>,
}

impl SingleProcess {
    /// The single-process communicator.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_gather(&self, local: &[f64]) -> Result<Vec<Vec<f64>>, CommError> {
        self.sent
            .set(self.sent.get() + 8 * (local.len() as u64 + 1));
        Ok(vec![local.to_vec()])
    }

    fn broadcast(&self, root: usize, buf: &mut Vec<u8>) -> Result<(), CommError> {
        if root != 0 {
            return Err(CommError(format!("broadcast from process {root} of 1")));
        }
        self.sent.set(self.sent.get() + buf.len() as u64);
        Ok(())
    }

    fn bytes_sent(&self) -> u64 {
        self.sent.get()
    }
}

/// How a step is split between processes (see the [module documentation](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParallelMode {
    /// Each process evaluates its pieces of the minibatch at every probe point.
    Data,
    /// Each process evaluates its share of the independent probe points on the whole minibatch.
    Directions,
}

impl ParallelMode {
    /// The mode's name (`data`, `directions`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Directions => "directions",
        }
    }
}

impl fmt::Display for ParallelMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ParallelMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "data" => Ok(Self::Data),
            "directions" => Ok(Self::Directions),
            other => Err(format!(
                "unknown parallel mode `{other}` (expected data or directions)"
            )),
        }
    }
}

/// The contiguous pieces `0..n` is cut into: `shards` pieces (at most `n`), the first `n % shards`
/// one element longer.
pub fn pieces(n: usize, shards: usize) -> Vec<std::ops::Range<usize>> {
    let shards = shards.clamp(1, n.max(1));
    let (base, extra) = (n / shards, n % shards);
    let mut out = Vec::with_capacity(shards);
    let mut at = 0;
    for p in 0..shards {
        let len = base + usize::from(p < extra);
        out.push(at..at + len);
        at += len;
    }
    out
}

/// The values of a set split round-robin between the processes (`i mod size`), gathered back
/// into set order. `local` holds this process's values in order.
pub fn gather_round_robin(
    comm: &dyn Communicator,
    local: &[f64],
    n: usize,
) -> Result<Vec<f64>, CommError> {
    let size = comm.size();
    let parts = comm.all_gather(local)?;
    let mut out = Vec::with_capacity(n);
    let mut next = vec![0usize; size];
    for i in 0..n {
        let r = i % size;
        let v = parts
            .get(r)
            .and_then(|p| p.get(next[r]))
            .copied()
            .ok_or_else(|| {
                CommError(format!(
                    "process {r} sent {} values, fewer than its share of {n}",
                    parts.get(r).map_or(0, Vec::len)
                ))
            })?;
        next[r] += 1;
        out.push(v);
    }
    Ok(out)
}

/// Whether any process has `flag` set (one all-gather): how the processes agree to stop at the
/// same step.
pub fn any(comm: &dyn Communicator, flag: bool) -> Result<bool, CommError> {
    if comm.size() == 1 {
        return Ok(flag);
    }
    let all = comm.all_gather(&[if flag { 1.0 } else { 0.0 }])?;
    Ok(all.iter().flatten().any(|v| *v != 0.0))
}

/// Wait until every process gets here.
pub fn barrier(comm: &dyn Communicator) -> Result<(), CommError> {
    if comm.size() > 1 {
        comm.all_gather(&[])?;
    }
    Ok(())
}

#[cfg(feature = "mpi")]
mod mpi_comm {
    use std::cell::Cell;

    use mpi::datatype::PartitionMut;
    use mpi::environment::Universe;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::{Communicator as _, CommunicatorCollectives, Root};

    use super::{CommError, Communicator};

    /// The processes of an MPI job (`mpirun -np N …`), through the `mpi` crate (rsmpi) over the
    /// system's MPI library. Started without `mpirun`, it is a job of one process.
    pub struct Mpi {
        // Dropped last: finalises MPI.
        world: SimpleCommunicator,
        _universe: Universe,
        sent: Cell<u64>,
    }

    impl std::fmt::Debug for Mpi {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Mpi")
                .field("rank", &self.rank())
                .field("size", &self.size())
                .finish()
        }
    }

    impl Mpi {
        /// Initialise MPI (once per process) and join the job's world.
        pub fn init() -> Result<Self, CommError> {
            let universe = mpi::initialize()
                .ok_or_else(|| CommError("MPI was already initialised in this process".into()))?;
            let world = universe.world();
            Ok(Self {
                world,
                _universe: universe,
                sent: Cell::new(0),
            })
        }

        fn count(&self, bytes: usize) {
            self.sent.set(self.sent.get() + bytes as u64);
        }
    }

    impl Communicator for Mpi {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }

        fn size(&self) -> usize {
            self.world.size() as usize
        }

        fn all_gather(&self, local: &[f64]) -> Result<Vec<Vec<f64>>, CommError> {
            let size = self.size();
            let mine = i32::try_from(local.len())
                .map_err(|_| CommError(format!("{} values in one all-gather", local.len())))?;
            let mut counts = vec![0i32; size];
            self.world.all_gather_into(&mine, &mut counts[..]);
            let mut displs = Vec::with_capacity(size);
            let mut total = 0i32;
            for &c in &counts {
                displs.push(total);
                total = total
                    .checked_add(c)
                    .ok_or_else(|| CommError("an all-gather of more than 2³¹ values".into()))?;
            }
            let mut buf = vec![0f64; total as usize];
            {
                let mut partition = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
                self.world.all_gather_varcount_into(local, &mut partition);
            }
            self.count(8 * (local.len() + 1));
            let mut out = Vec::with_capacity(size);
            for (c, d) in counts.iter().zip(&displs) {
                out.push(buf[*d as usize..(*d + *c) as usize].to_vec());
            }
            Ok(out)
        }

        fn broadcast(&self, root: usize, buf: &mut Vec<u8>) -> Result<(), CommError> {
            if root >= self.size() {
                return Err(CommError(format!(
                    "broadcast from process {root} of {}",
                    self.size()
                )));
            }
            let process = self.world.process_at_rank(root as i32);
            let mut len = buf.len() as u64;
            process.broadcast_into(&mut len);
            if self.rank() == root {
                self.count(buf.len() + 8);
            } else {
                buf.resize(len as usize, 0);
            }
            if len > 0 {
                process.broadcast_into(&mut buf[..]);
            }
            Ok(())
        }

        fn bytes_sent(&self) -> u64 {
            self.sent.get()
        }

        fn abort(&self, code: i32) {
            if self.size() > 1 {
                self.world.abort(code);
            }
        }
    }
}

#[cfg(feature = "mpi")]
pub use mpi_comm::Mpi;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_batch_in_order_and_differ_by_at_most_one() {
        assert_eq!(pieces(16, 1), vec![0..16]);
        assert_eq!(pieces(16, 2), vec![0..8, 8..16]);
        assert_eq!(pieces(7, 3), vec![0..3, 3..5, 5..7]);
        assert_eq!(pieces(2, 5), vec![0..1, 1..2]);
        for n in 1..40 {
            for s in 1..10 {
                let p = pieces(n, s);
                assert_eq!(p.first().unwrap().start, 0);
                assert_eq!(p.last().unwrap().end, n);
                assert!(p.windows(2).all(|w| w[0].end == w[1].start));
                let lens: Vec<usize> = p.iter().map(|r| r.len()).collect();
                assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1);
                assert!(lens.iter().all(|l| *l > 0));
            }
        }
    }

    #[test]
    fn one_process_gathers_its_own_values() {
        let c = SingleProcess::new();
        assert_eq!(gather_round_robin(&c, &[1.0, 2.0], 2).unwrap(), [1.0, 2.0]);
        assert!(gather_round_robin(&c, &[1.0], 2).is_err());
        assert!(any(&c, true).unwrap());
        assert!(!any(&c, false).unwrap());
        // Two all-gathers: 2 and 1 values, each with its 8-byte length.
        assert_eq!(c.bytes_sent(), 40);
        let mut buf = b"x".to_vec();
        c.broadcast(0, &mut buf).unwrap();
        assert!(c.broadcast(1, &mut buf).is_err());
    }

    #[test]
    fn modes_parse_by_name() {
        assert_eq!("data".parse::<ParallelMode>(), Ok(ParallelMode::Data));
        assert_eq!(
            " Directions".parse::<ParallelMode>(),
            Ok(ParallelMode::Directions)
        );
        assert!("model".parse::<ParallelMode>().is_err());
    }
}
