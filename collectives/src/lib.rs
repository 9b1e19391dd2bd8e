//! Collective algorithms for prun, written against a small point-to-point interface.
//!
//! Every algorithm here is generic over [`PointToPoint`], the handful of operations a transport
//! must offer: its rank, the group size, and blocking `send`/`recv` of byte buffers addressed by
//! rank and tag. The runtime crate (`prun`) implements it on its sockets (and later on shared
//! memory and MPI); [`threads::ThreadGroup`] implements it in one process with a thread standing
//! in for each rank, so that every algorithm can be tested with plain `cargo test`.
//!
//! Tags: a collective call is identified by a sequence number that every rank of the group
//! advances in step; [`tag`] combines it with the round of the algorithm so that messages of
//! consecutive collectives, and of different rounds of one collective, never match each other.

pub mod barrier;
pub mod p2p;
pub mod threads;

pub use barrier::barrier;
pub use p2p::{PointToPoint, tag};
