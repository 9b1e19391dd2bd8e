//! MPI communicators that may be shared between threads.
//!
//! The runtime's only `unsafe` code: two promises to the compiler, proved below.
#![allow(unsafe_code)]

use mpi::Threading;
use mpi::topology::SimpleCommunicator;

/// Proof that MPI was initialised with `MPI_THREAD_MULTIPLE`; only [`ThreadMultiple::granted`]
/// makes one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThreadMultiple(());

impl ThreadMultiple {
    /// The proof, when MPI granted `MPI_THREAD_MULTIPLE`.
    pub fn granted(level: Threading) -> Option<ThreadMultiple> {
        (level == Threading::Multiple).then_some(ThreadMultiple(()))
    }
}

/// A communicator any thread may use.
pub(crate) struct Comm(SimpleCommunicator);

impl Comm {
    /// Wraps `comm`; the proof shows that MPI lets every thread call it.
    pub fn new(_: ThreadMultiple, comm: SimpleCommunicator) -> Comm {
        Comm(comm)
    }

    /// The communicator.
    pub fn get(&self) -> &SimpleCommunicator {
        &self.0
    }
}

// SAFETY: `SimpleCommunicator` is neither `Send` nor `Sync` only because Open MPI's `MPI_Comm` is
// a raw pointer (MPICH's is an integer). A `Comm` exists only with a `ThreadMultiple` proof, made
// only when `MPI_Init_thread` granted `MPI_THREAD_MULTIPLE`, under which MPI lets any thread
// call MPI on any communicator at any time, concurrently with other threads (MPI 4.0, section
// 11.6.3), freeing it included. The remaining rule, that the collectives of one communicator
// are called in the same order on every rank, is the runtime's own rule for every backend.
unsafe impl Send for Comm {}
// SAFETY: as for `Send`; `&Comm` only hands out `&SimpleCommunicator`, whose methods all call MPI.
unsafe impl Sync for Comm {}
