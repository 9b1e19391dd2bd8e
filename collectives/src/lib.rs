//! Collective algorithms for prun, written against a small point-to-point interface.
//!
//! Every algorithm here is generic over [`PointToPoint`], the handful of operations a transport
//! must offer: its rank, the group size, blocking `send`/`recv` of byte buffers addressed by
//! rank and tag, a `sendrecv` exchange step, and a way to build its error for malformed input.
//! The runtime crate (`prun`) implements it on its sockets (and later on shared memory and MPI);
//! [`threads::ThreadGroup`] implements it in one process with a thread standing in for each
//! rank, so that every algorithm can be tested with plain `cargo test`.
//!
//! Tags: a collective call is identified by a sequence number that every rank of the group
//! advances in step; [`tag`] combines it with the round of the algorithm so that messages of
//! consecutive collectives, and of different rounds of one collective, never match each other
//! (rounds alias modulo 256, which is harmless: see [`p2p::MAX_ROUNDS`]).
//!
//! The algorithms work for any number of ranks and any root, and check every length and count
//! that arrives from a peer: a malformed message gives [`PointToPoint::malformed`]'s error,
//! never a panic or an oversized allocation. Where there are several algorithms for one
//! operation, the caller chooses with the thresholds of [`tuning`].

pub mod allgather;
pub mod alltoall;
pub mod barrier;
mod binomial;
pub mod blocks;
pub mod broadcast;
pub mod direct;
pub mod elementwise;
pub mod flat;
pub mod gather;
pub mod halving;
pub mod in_place;
pub mod p2p;
mod partition;
pub mod prefix;
pub mod reduce;
pub mod reduce_scatter;
pub mod scatter;
#[cfg(test)]
mod testutil;
pub mod threads;
pub mod tree;
pub mod tuning;
mod wire;

pub use allgather::allgather;
pub use alltoall::alltoall;
pub use barrier::barrier;
pub use broadcast::broadcast;
pub use elementwise::{allreduce_ring, reduce_scatter_gather};
pub use gather::gather;
pub use p2p::{PointToPoint, tag};
pub use reduce::{Combine, allreduce, allreduce_doubling_into, exscan, reduce, scan};
pub use scatter::scatter;
