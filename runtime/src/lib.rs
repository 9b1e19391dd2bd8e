//! # prun: the runtime of SPMD jobs
//!
//! A prun job is many copies of one program, the *ranks*, started together by the `prun`
//! launcher (`prun -n 8 ./job`). Each rank calls [`init`] to get the [`World`]: its own rank,
//! the number of ranks, and typed messages to and from the others.
//!
//! ```
//! let world = prun::init()?;
//! let (rank, size) = (world.rank(), world.size());
//! // pass a token around the ring of ranks
//! let next = (rank + 1) % size;
//! let prev = (rank + size - 1) % size;
//! if rank == 0 {
//!     world.send(next, 0, &1u64)?;
//!     let token: u64 = world.recv(prev, 0)?;
//!     assert_eq!(token, size as u64);
//! } else {
//!     let token: u64 = world.recv(prev, 0)?;
//!     world.send(next, 0, &(token + 1))?;
//! }
//! world.barrier()?;
//! # Ok::<(), prun::Error>(())
//! ```
//!
//! Run alone, as in this example, the program is a world of one rank; under
//! `prun -n 4` the same program runs on four.
//!
//! Messages are any `serde` type, encoded with postcard. Ranks on one host talk over Unix
//! domain sockets, opened lazily on first use and authenticated with a per-job secret. Every
//! call returns a [`Result`]; a peer that dies gives an error, never a hang.
//!
//! Built with the `mpi` feature and started by an MPI launcher (`mpirun`, `mpiexec`,
//! `srun --mpi=...`, `prun --mpi`), the same program runs on MPI instead: its rank and size are
//! MPI's and its collectives MPI's own where MPI has them. [`Communicator::backend`] tells which
//! [`Backend`] a program got.

mod activity;
mod affinity;
pub mod auth;
mod bootstrap;
mod codec;
mod collective;
mod collective_pod;
mod collective_prefix;
mod collective_varying;
mod communicator;
mod engine;
pub mod env;
mod error;
mod helpers;
mod incoming;
mod init;
mod lend;
mod log;
mod mailbox;
mod map;
#[cfg(feature = "mpi")]
mod mpi;
mod op;
pub mod protocol;
mod sched;
mod trace;
pub mod transport;
mod unbind;
pub mod wire;

pub use communicator::{Backend, Communicator, Status, Tag, World};
pub use error::{Error, Result};
pub use init::init;
pub use op::{Element, Op};

/// Exit status of a rank whose launcher vanished (the rank exits on its own).
pub use bootstrap::EXIT_LAUNCHER_LOST;

/// The README's Rust examples, compiled and run as doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
