//! Message-size thresholds at which the collectives switch algorithms.
//!
//! These are starting points, chosen from the usual latency/bandwidth trade-offs of the
//! algorithms; they are meant to be tuned by measuring on the transports prun actually runs on.

/// Payload size in bytes at or above which [`broadcast`](crate::broadcast()) switches from a
/// binomial tree to van de Geijn's scatter + ring allgather (on more than two ranks).
///
/// A starting point, to be tuned by measurement.
pub const BCAST_LARGE: usize = 128 * 1024;

/// Buffer size in bytes at or above which an allreduce should use the ring reduce-scatter +
/// allgather of [`allreduce_ring`](crate::allreduce_ring()) rather than recursive doubling.
///
/// A starting point, to be tuned by measurement.
pub const ALLREDUCE_LARGE: usize = 64 * 1024;

/// Buffer size in bytes at or above which a reduce should use
/// [`reduce_scatter_gather`](crate::reduce_scatter_gather()) rather than a binomial tree.
///
/// A starting point, to be tuned by measurement.
pub const REDUCE_LARGE: usize = 64 * 1024;

/// Per-rank block size in bytes at or above which an allgather should use the ring rather than
/// recursive doubling or Bruck (the `large` argument of [`allgather`](crate::allgather())).
///
/// A starting point, to be tuned by measurement.
pub const ALLGATHER_LARGE: usize = 64 * 1024;

/// Per-rank block size in bytes at or above which a gather should send every block straight to
/// the root rather than up a binomial tree (the `large` argument of [`gather`](crate::gather())).
///
/// A starting point, to be tuned by measurement.
pub const GATHER_LARGE: usize = 64 * 1024;
