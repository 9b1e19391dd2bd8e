//! Message-size thresholds at which the collectives switch algorithms.
//!
//! Chosen by measuring `collbench` over the socket transport on a 2-core machine at 2 and 8
//! ranks (figures in `docs/design.md`). With more ranks than cores every step of an algorithm
//! waits for the scheduler, so algorithms with fewer steps win for longer than on a machine
//! with a core per rank; a shared-memory transport will want its own values.

/// Payload size in bytes at or above which [`broadcast`](crate::broadcast()) switches from a
/// binomial tree to van de Geijn's scatter + ring allgather (on more than two ranks).
///
/// Measured at 8 ranks on 2 cores: binomial 1.07 ms against 3.2 ms at 1 MiB, equal at 16 MiB.
/// The zero-copy broadcast ([`in_place::broadcast_into`](crate::in_place::broadcast_into))
/// keeps the binomial tree at every size: received in place, it won at 16 MiB too (where ranks
/// share cores it goes straight from the root instead, see [`FLAT_MAX_BYTES`]).
pub const BCAST_LARGE: usize = 8 << 20;

/// Buffer size in bytes at or above which an allreduce should use the ring reduce-scatter +
/// allgather of [`allreduce_ring`](crate::allreduce_ring()) rather than recursive doubling.
///
/// Measured: recursive doubling wins at 64 KiB (61 against 96 us at 2 ranks, 353 against
/// 938 us at 8), the ring at 1 MiB (0.54 against 1.5 ms at 2 ranks, 3.0 against 9.4 ms at 8).
pub const ALLREDUCE_LARGE: usize = 256 * 1024;

/// Smallest and largest buffer, in bytes, that a zero-copy allreduce between two ranks sends
/// whole to rank 0 and back ([`allreduce_pair_into`](crate::elementwise::allreduce_pair_into))
/// rather than by recursive doubling (below) or the ring (above).
///
/// Measured at 2 ranks, alternating runs: 128 KiB 112-170 us against 279-338 with recursive
/// doubling (64 KiB 136-182 against 105-154). Against the ring the pair won up to 2 MiB while
/// every transfer went through the socket; since the ring's exchanges are lent (each rank
/// copies the other's half at once, see the runtime's `lend`), the ring wins from 256 KiB
/// (medians of eleven alternating runs, pair against ring: 256 KiB 172 against 105 us, 512 KiB
/// 232 against 186, 1 MiB 404 against 260, 2 MiB 967 against 370). With lending off the two are
/// within the noise from 512 KiB and the pair wins at 256 KiB (127 against 203 us, nine runs).
pub const ALLREDUCE_PAIR_MIN: usize = 128 * 1024;
/// See [`ALLREDUCE_PAIR_MIN`]: just below [`ALLREDUCE_LARGE`], where the ring takes over.
pub const ALLREDUCE_PAIR_MAX: usize = ALLREDUCE_LARGE - 1;

/// Fewest ranks for which, where ranks share cores, a zero-copy allreduce too short for
/// [`ALLREDUCE_LARGE`] and too long for [`flat()`] goes up and down a binomial tree
/// ([`tree::allreduce_tree_into`](crate::tree::allreduce_tree_into)) rather than by recursive
/// doubling: `2 (size - 1)` messages of the whole buffer against `size log2(size)`, where the
/// cores' copying and wake-ups, not the number of steps, are the limit.
///
/// Measured on 2 cores (twenty-fifth session), up and down the tree against recursive
/// doubling, by whole calls (wall time per call of runs at 1 and 11 times the iterations,
/// medians of three; Open MPI in brackets), 64 KiB: 8 ranks 304 against 378 us (171), 16 ranks
/// 662 against 1261 (488), 32 ranks 1444 against 3039 (1458). By the benchmark's average over
/// ranks, alternating runs: 32 KiB 16 ranks 294 against 571 us, 32 ranks 605 against 1506; 64
/// KiB 8 ranks 193 against 226 (150), 12 ranks 336 against 492, 24 ranks 687 against 1165, 64
/// ranks 2.05 against 6.69 ms; 128 KiB 8 ranks 333 against 365, 32 ranks 1.35 against 3.58 ms.
/// On 4 and 6 ranks doubling won (4 ranks, 64 KiB, 82 against 71 us; 1 KiB 99 against 59). For
/// large buffers the tree lost to recursive halving at 8 ranks (1 MiB 2.69 against 1.43 ms) and
/// tied at 32 by whole calls (14.4 against 13.8 ms).
pub const ALLREDUCE_TREE_MIN_RANKS: usize = 8;

/// Most bytes the root of a flat zero-copy allreduce receives in all (`size - 1` times the
/// buffer) for it to go through rank 0 ([`flat`](crate::flat)) where ranks share cores; beyond
/// it, up and down a binomial tree ([`ALLREDUCE_TREE_MIN_RANKS`]). Lower than
/// [`FLAT_MAX_BYTES`]: rank 0 folds every buffer itself, one after the other, where the tree
/// shares the folding out.
///
/// Measured on 2 cores (twenty-fifth session), the tree against through rank 0, alternating
/// runs: 8 ranks, 8 KiB 122 against 82 us, 16 KiB 126 against 124, 32 KiB 133 against 183 (by
/// whole calls 226 against 278); 16 ranks, 16 KiB 215 against 437; 32 ranks, 1 KiB 371 against
/// 280, 8 KiB 432 against 422, 32 KiB 562 against 574.
pub const ALLREDUCE_FLAT_MAX_BYTES: usize = 128 * 1024;

/// Whether a zero-copy allreduce of `bytes` on `size` ranks goes through rank 0 where ranks
/// share cores: from [`FLAT_MIN_RANKS`] to [`FLAT_MAX_RANKS`] ranks, within
/// [`ALLREDUCE_FLAT_MAX_BYTES`] at the root.
pub fn allreduce_flat(size: usize, bytes: usize) -> bool {
    flat_ranks(size) && bytes.saturating_mul(size.saturating_sub(1)) <= ALLREDUCE_FLAT_MAX_BYTES
}

/// Fewest ranks at which a large zero-copy allreduce (at least [`ALLREDUCE_LARGE`] bytes) runs
/// by recursive halving and doubling ([`halving`](crate::halving)) rather than the ring, and a
/// large zero-copy reduce ([`REDUCE_LARGE`]) by recursive halving and a gather.
///
/// Measured for the reduce, 1 MiB, alternating runs: 4 ranks 1.34-1.55 ms against 2.0-2.6 with
/// the ring, 6 ranks 2.2 against 2.0-2.5, 8 ranks 3.0-3.9 against 3.5-3.9 (8 MiB 21-24 against
/// 24-26), 16 ranks 8.1-8.6 against 10.3-11.2.
///
/// Measured at 1 MiB on 2 cores, alternating runs: 3 ranks 1.67-1.79 ms against 1.49-1.63 with
/// the ring; 4 ranks 1.55-2.24 against 2.84-3.12; 6 ranks 2.31-2.69 against 2.50-3.32; 8 ranks
/// 3.48-4.03 against 4.81-5.14 (16 MiB 57.9 against 64.5 ms); 16 ranks 8.8-9.1 against
/// 16.2-17.7.
pub const ALLREDUCE_HALVING_MIN_RANKS: usize = 4;

/// Buffer size in bytes at or above which a reduce should use
/// [`reduce_scatter_gather`](crate::reduce_scatter_gather()) rather than a binomial tree.
///
/// A starting point, to be tuned by measurement.
pub const REDUCE_LARGE: usize = 256 * 1024;

/// Per-rank block size in bytes at or above which an allgather should use the ring rather than
/// recursive doubling or Bruck (the `large` argument of [`allgather`](crate::allgather())).
///
/// Measured at 8 ranks: the ring takes 10.7 ms at 1 MiB, recursive doubling 31.7 ms.
pub const ALLGATHER_LARGE: usize = 64 * 1024;

/// Fewest ranks at which a large zero-copy allgather ([`ALLGATHER_LARGE`] bytes per rank or
/// more) on a power-of-two number of ranks runs by recursive doubling
/// ([`in_place::allgather_doubling_into`](crate::in_place::allgather_doubling_into)) rather
/// than around the ring.
///
/// Measured on 2 cores, alternating runs, 64 KiB and 1 MiB blocks: 4 ranks 266-286 us and
/// 2.15-2.39 ms against 389-441 us and 3.17-3.19 ms around the ring; 8 ranks 1.04-1.23 ms and
/// 12.8-13.4 ms against 1.84-1.92 and 13.7-14.3; 16 ranks 2.6-3.3 and 44-48 ms against 5.7-7.7
/// and 53-66.
pub const ALLGATHER_DOUBLING_MIN_RANKS: usize = 4;

/// Block size in bytes at or above which an allgather between two ranks
/// ([`in_place::allgather_ring_into`](crate::in_place::allgather_ring_into)) is one exchange of
/// the ranks' own blocks (in pieces of at most
/// [`PointToPoint::exchange_piece`](crate::PointToPoint::exchange_piece)), each rank copying
/// its own block into place while its peer copies the one it lent; below it, the ring's step,
/// the own block copied into place first and that copy sent.
///
/// Measured at 2 ranks with a core each, medians of eight alternating runs, from 64 KiB against
/// from 256 KiB: 64 KiB blocks 14.1 against 21.9 us (Open MPI 6.9), 128 KiB 19.0 against 34.1,
/// 256 KiB and more alike; ranks sharing cores (`PRUN_CROWDED=1`, six runs): 64 KiB 19.4
/// against 21.5 us, 128 KiB 23.3 against 38.0. Shorter blocks are written rather than lent
/// (the runtime's `LEND_MIN`), and the two ways measured alike at 8 bytes and 1 KiB. When every
/// transfer went through the socket: 1 MiB 311-343 us against 392-586 with the copy first, at
/// 64 KiB 109-113 against 85-97.
pub const ALLGATHER_PAIR_SPLIT: usize = 64 * 1024;

/// Largest piece in which two ranks exchanging with each other (an allgather between two
/// ranks, the steps of a ring allreduce between two) move a block: a larger block goes as
/// several exchanges of pieces of this size, one after the other.
///
/// A transport that copies a message once where it can (the runtime lends messages of up to
/// 1 MiB between ranks on one host through a pipe, each rank copying the other's piece while
/// its own is copied) does so only for messages that fit; a 16 MiB block went through the
/// socket, copied twice, one way and then the other. Measured at 2 ranks, 16 MiB blocks, medians
/// of nine alternating runs: 6.6 ms in pieces of 1 MiB against 8.0 whole (7.4 against 9.5 in
/// seven runs of a noisier hour, where pieces of 512 KiB took 9.3); with lending off, 9.6
/// against 10.5 (five runs): no worse over sockets. A 16 MiB allreduce between two ranks (two
/// exchanges of 8 MiB halves): 7.1 against 9.0 ms, 7.3 against 8.0 (seven runs each). Since the
/// runtime reads messages of 1 MiB and more out of the sender's memory instead, whole blocks
/// and pieces are within the noise (seven alternating runs, 16 MiB: allgather 5.6 against 5.9
/// ms whole, allreduce 4.0 against 3.7), so the pieces stayed. In the twenty-third session
/// whole blocks won where each rank reads the other's memory (2 ranks on 2 cores, alternating
/// runs, medians, whole against pieces of 1 MiB: allgather 16 MiB 4.11 against 5.62 ms (Open
/// MPI 5.04) and 4.28 against 4.84 (4.56), allreduce 2.59 against 3.00 (3.75); pieces of 4 MiB
/// between: 4.86), each piece paying a lent message's round trip. So this is the default of
/// [`PointToPoint::exchange_piece`](crate::PointToPoint::exchange_piece), which the runtime
/// lifts for two ranks of a host that read each other's memory; where they do not (Yama's
/// `ptrace_scope` 1), the pieces fit the pipes they are lent through.
pub const EXCHANGE_PIECE: usize = 1 << 20;

/// Per-rank block size in bytes at or above which a gather should send every block straight to
/// the root rather than up a binomial tree (the `large` argument of [`gather`](crate::gather())).
///
/// A starting point, to be tuned by measurement.
pub const GATHER_LARGE: usize = 64 * 1024;

/// Per-rank block size in bytes at or above which a scatter sends every block straight from the
/// root rather than down a binomial tree (the `large` argument of [`scatter`](crate::scatter())).
///
/// Measured at 8 ranks: the tree moves each block up to log2(size) times.
pub const SCATTER_LARGE: usize = 64 * 1024;

/// Most ranks for which short messages go flat ([`flat`](crate::flat)): straight between one
/// rank and every other, in one or two hops, rather than `ceil(log2(size))` hops of a tree.
///
/// These thresholds, [`flat()`], [`direct()`] and the gather-and-release barrier are for jobs in
/// which some host runs more ranks than it has cores (the runtime uses them only then): each hop
/// of a tree then waits for the scheduler, and every message costs wake-ups. With a core per
/// rank a hop is cheap and the root's `size - 1` messages in a row are not, so the runtime keeps
/// the trees and recursive doubling there, as MPI libraries do.
///
/// Measured on 2 cores, alternating runs, 8 B and 1 KiB per rank (medians of five at 16 ranks,
/// of three at 32 and 64): at 16 ranks allreduce 484-497 us against 716-766 by recursive
/// doubling, allgather 489-577 against 692-747, broadcast 177-179 against 207-223, gather 42
/// against 198-211, scatter 195-208 against 229-238; at 32 ranks allreduce 791-805 us against
/// 2.1-2.4 ms, allgather 0.96-1.40 ms against 2.2-3.1, gather 28 us against 232-240; at 64
/// ranks allreduce 2.5 ms against 7.2, allgather 2.5-4.7 against 7.1-9.0, broadcast 0.67
/// against 1.1-1.2, gather 56-90 us against 718-729, scatter 0.51-0.70 ms against 1.2-1.4.
pub const FLAT_MAX_RANKS: usize = 64;

/// Per-rank block size in bytes from which, where ranks share cores, a zero-copy allgather on
/// three ranks or more sends every block straight to every rank
/// ([`direct::allgather_into`](crate::direct::allgather_into)) rather than
/// through rank 0 ([`flat::allgather_into`](crate::flat::allgather_into), from 8 ranks) or by
/// recursive doubling or the ring.
///
/// The runtime copies such messages once there, each receiver reading its blocks out of their
/// senders' buffers when its receives are posted (a rendezvous), so every byte is copied once,
/// out of a buffer nobody writes meanwhile, in one step: no rank waits for a step before its
/// own, where doubling copies blocks that the step before has just written. Measured on 2
/// cores (Intel Xeon), medians of five alternating runs, direct against the algorithm before:
/// 8 ranks 1 MiB 2.82 against 3.12 ms (doubling; Open MPI 2.93), 16 MiB 77.5 against 87.9 ms
/// (Open MPI 91.6); 4 ranks 0.88 against 0.97 ms and 18.6 against 19.8 ms (doubling); 6 ranks
/// 1.72 against 2.21 ms and 41.7 against 51.6 ms (ring); 16 ranks 1 MiB 16.5 against 19.5 ms;
/// 32 ranks 65.9 against 71.2 ms (Open MPI 106; equal, 165 ms, while the runtime lent nothing
/// on a host of more than 16 ranks), 64 ranks equal when nothing was lent (0.72 s), 0.32 s
/// since (Open MPI 0.44). Below 1 MiB, through rank 0 won or tied (8 ranks: 64 KiB
/// 289 against 462 us, 256 KiB 1.00 against 1.07 ms, 512 KiB 2.00 against 1.84; 4 ranks 256 and
/// 512 KiB 0.91 against direct). Two ranks keep their exchange in pieces (1 MiB 168 against
/// 205 us direct). On four and eight ranks, blocks below [`CROWDED_DOUBLING_MAX`] go by
/// recursive doubling instead ([`crowded_doubling()`]).
pub const CROWDED_DIRECT_MIN: usize = 1 << 20;

/// Most ranks for which, where ranks share cores, a zero-copy allgather of
/// [`CROWDED_DOUBLING_MIN`] to [`CROWDED_DOUBLING_MAX`] bytes per rank goes by recursive
/// doubling ([`in_place::allgather_doubling_into`](crate::in_place::allgather_doubling_into),
/// Open MPI's choice there) rather than straight to every rank or through rank 0
/// ([`crowded_doubling()`]).
///
/// Measured on 2 cores (Intel Xeon, twenty-third session), alternating runs, doubling against
/// the algorithm before: 8 ranks, by the benchmark's average over ranks, 1 MiB 3641 against
/// 3734 us (Open MPI 3520, eight runs), 4391 against 4699 (Open MPI 4499, ten runs, the machine
/// busier), 4682 against 5159 (six); 512 KiB 2109 against 2417 and 2195 against 2496 (through
/// rank 0); by whole calls (wall time of runs at 1 and 11 times the iterations), 1 MiB 4403
/// against 5000 us (Open MPI 4373), 512 KiB 2516 against 3363; the machine's time for one
/// run (`perf`, all CPUs, equal iterations) 18.5 against 21.2 thousand samples (Open MPI's 20.7,
/// its start-up included): half as many lent messages, and the kernel's copy itself 8% shorter.
/// But 2 MiB 11.5 against 10.5 ms, 4 MiB 27.6 against 22.2 (so [`CROWDED_DOUBLING_MAX`]); 4
/// ranks, 1 MiB, even (961 against 935 us, then 1000 against 1060); 16 ranks 512 KiB 12.4
/// against 10.1 ms, 1 MiB 28.5 against 22.7 (the lockstep of four steps with eight ranks on each
/// core). Earlier sessions found doubling and the direct allgather even, or direct ahead by a
/// tenth, at 8 ranks and 1 MiB: the two trade places with the machine's load, and whole calls
/// favoured doubling each time. Why (twenty-sixth session, `perf`, 8 ranks, 1 MiB, processor
/// time per call): the direct allgather's copies cost less (4.06 against 4.54 ms, read out of
/// buffers nobody has just written), but its page pinning more (`follow_page_pte` 0.50 against
/// 0.27 ms, plus 0.10 spinning on the page-table lock: two receivers on the two cores pinning
/// the same sender's pages), and its seven messages a rank cost the runtime some 0.3 ms more;
/// by whole calls 7.37 against 6.82 ms of processor time a call.
pub const CROWDED_DOUBLING_MAX_RANKS: usize = 8;
/// Fewest bytes per rank for which a zero-copy allgather on up to
/// [`CROWDED_DOUBLING_MAX_RANKS`] ranks that share cores goes by recursive doubling (at 8 ranks,
/// 256 KiB: even with going through rank 0, 1162 against 1201 us).
pub const CROWDED_DOUBLING_MIN: usize = 512 * 1024;
/// Bytes per rank from which a zero-copy allgather on up to [`CROWDED_DOUBLING_MAX_RANKS`] ranks
/// that share cores goes straight to every rank again ([`CROWDED_DIRECT_MIN`]).
pub const CROWDED_DOUBLING_MAX: usize = 2 << 20;

/// Whether, where ranks share cores, a zero-copy allgather of `bytes` per rank on `size` ranks
/// goes by recursive doubling: a power of two from 4 to [`CROWDED_DOUBLING_MAX_RANKS`] ranks,
/// from [`CROWDED_DOUBLING_MIN`] bytes up to [`CROWDED_DOUBLING_MAX`].
pub fn crowded_doubling(size: usize, bytes: usize) -> bool {
    size > 2
        && size.is_power_of_two()
        && size <= CROWDED_DOUBLING_MAX_RANKS
        && (CROWDED_DOUBLING_MIN..CROWDED_DOUBLING_MAX).contains(&bytes)
}
/// Fewest ranks for which broadcast, reduce, allreduce and allgather go flat ([`flat()`]).
/// Gather and scatter go straight to or from the root from two ranks ([`direct()`]).
///
/// Measured: at 4 ranks recursive doubling beats the flat allreduce's two hops (8 B 123 us
/// against 149, 1 KiB 133 against 155) and allgather's (117 against 168); at 8 ranks the flat
/// ones win a little (allreduce 1 KiB 223 against 276 us, allgather 8 B 247 against 291), at 16
/// by a third, at 32 and 64 by a factor of 2 to 3 (see [`FLAT_MAX_RANKS`]).
///
/// A large zero-copy allgather goes flat too, through rank 0 into place
/// ([`flat::allgather_into`](crate::flat::allgather_into)), since rank 0's broadcast sends all
/// at once: measured on 2 cores, medians of three alternating runs, against recursive doubling,
/// 8 ranks: 64 KiB blocks 367 against 515 us, 1 MiB 4.9 against 5.7 ms, 16 MiB 111 against 130
/// (against the ring: 336 us, 5.1 and 111 ms against 568 us, 5.3 and 165 ms); 16 ranks 0.95
/// against 1.52 ms and 20 against 34 ms. At 6 ranks the ring won at 1 MiB (2.8 against 3.3 ms;
/// at 64 KiB 266 against 384 us).
pub const FLAT_MIN_RANKS: usize = 8;

/// Most bytes the root of a flat collective sends or receives in all (`size - 1` times the
/// per-rank payload) for the flat algorithm to be chosen: beyond it the root's copies, one
/// after the other, cost more than the tree's hops (at 8 ranks a 64 KiB broadcast straight from
/// the root took 192 us against 155 down the tree, 1 MiB 1.00 ms against 0.90). The zero-copy
/// broadcast (on up to [`BCAST_FAN_MAX_RANKS`]) and allgather go flat beyond it too, where the
/// root's messages go out at once
/// ([`PointToPoint::send_each`](crate::PointToPoint::send_each)): at 8 ranks, broadcast 64 KiB
/// 34 against 59 us down the tree, 1 MiB 254 against 404, 16 MiB 6.1 against 8.7 ms.
pub const FLAT_MAX_BYTES: usize = 256 * 1024;

/// Most ranks for which, where ranks share cores, a zero-copy broadcast too large for
/// [`flat()`] still goes straight from the root to every rank, its messages out at once
/// ([`PointToPoint::send_each`](crate::PointToPoint::send_each)); on more, down the binomial
/// tree (each rank's children served at once).
///
/// Measured on 2 cores, medians of three alternating runs, straight from the root against down
/// the tree, 64 KiB and 1 MiB: 16 ranks 80 against 126 us and 0.44 against 0.94 ms; 24 ranks
/// 266 against 196 us and 2.1 against 1.7 ms; 32 ranks 400 against 290 us and 4.1 against 2.3
/// ms; 64 ranks 776 against 561 us and 7.2 against 4.7 ms (8 ranks: see [`FLAT_MAX_BYTES`]).
pub const BCAST_FAN_MAX_RANKS: usize = 16;

/// Fewest bytes for which, where ranks share cores, a zero-copy broadcast goes straight from
/// the root to every rank on more than [`BCAST_FAN_MAX_RANKS`] ranks too ([`bcast_fan()`]).
///
/// From 1 MiB the runtime's receivers read such a message out of the root's memory, each when
/// it is scheduled, while the root only announces it (below, it lends the pages to a pipe per
/// receiver, one after the other, and the tree, whose ranks pass the message on at once, wins).
/// Measured on 2 cores (twenty-fifth session), straight from the root against down the tree, by
/// whole calls (wall time per call of runs at 1 and 11 times the iterations, medians): 32 ranks,
/// 512 KiB 3.57 against 2.83 ms, 1 MiB 2.97 against 3.88 (Open MPI 2.69), 4 MiB 12.0 against
/// 13.9; 64 ranks, 1 MiB 7.0 against 8.9 (Open MPI 6.1). By the benchmark's average over ranks
/// (alternating runs), 1 MiB: 20 ranks 244 against 1113 us, 32 ranks 349 against 1903 (Open MPI
/// 1341), 64 ranks 343 against 3687 (Open MPI 2873); 16 MiB, 32 ranks 16.0 against 44.7 ms
/// (Open MPI 38.8); 256 and 512 KiB 1.3 to 2.1 times the tree's.
pub const BCAST_FAN_MIN: usize = 1 << 20;

/// Whether, where ranks share cores, a zero-copy broadcast of `bytes` on `size` ranks (at most
/// [`FLAT_MAX_RANKS`]) goes straight from the root to every rank, its messages out at once,
/// although it is too large for [`flat()`]: on up to [`BCAST_FAN_MAX_RANKS`] ranks, or from
/// [`BCAST_FAN_MIN`] bytes.
pub fn bcast_fan(size: usize, bytes: usize) -> bool {
    size <= BCAST_FAN_MAX_RANKS || bytes >= BCAST_FAN_MIN
}

/// Fewest ranks for which the barrier is the gather-and-release tree of
/// [`flat::barrier`](crate::flat::barrier) rather than the dissemination barrier, whose
/// `size * ceil(log2(size))` messages cost more wake-ups than the tree's `2 (size - 1)`.
///
/// Measured on 2 cores, alternating runs (medians of five, three at 32 and 64): 4 ranks 113 us
/// against 136 by dissemination, 8 ranks 183 against 306, 16 ranks 370 against 681, 32 ranks
/// 696 against 1630, 64 ranks 1.53 ms flat and 2.3 ms with fan-out 32 against 4.9-7.4; 2
/// ranks 107 against 75, where dissemination is one exchange. Used only where some host runs
/// more ranks than it has cores (see [`FLAT_MAX_RANKS`]).
pub const FAN_MIN_RANKS: usize = 4;

/// Fan-out of the barrier's gather-and-release tree ([`flat::barrier`](crate::flat::barrier)):
/// flat up to `FAN_OUT + 1` ranks, so that no rank handles more than `2 FAN_OUT` messages.
pub const FAN_OUT: usize = 32;

/// Whether a gather or scatter of `bytes` per rank on `size` ranks goes straight to or from
/// the root although its blocks are small: at most [`FLAT_MAX_RANKS`] ranks and
/// [`FLAT_MAX_BYTES`] through the root.
pub fn direct(size: usize, bytes: usize) -> bool {
    size <= FLAT_MAX_RANKS && bytes.saturating_mul(size.saturating_sub(1)) <= FLAT_MAX_BYTES
}

/// Whether a broadcast, reduce, allreduce or allgather of `bytes` per rank on `size` ranks
/// goes flat ([`flat`](crate::flat)): from [`FLAT_MIN_RANKS`] ranks, within [`direct()`]'s
/// bounds.
pub fn flat(size: usize, bytes: usize) -> bool {
    flat_ranks(size) && direct(size, bytes)
}

/// Whether `size` ranks are within [`FLAT_MIN_RANKS`] and [`FLAT_MAX_RANKS`]: the test for the
/// typed collectives, whose ranks cannot know each other's value sizes and so choose by the
/// number of ranks alone.
pub fn flat_ranks(size: usize) -> bool {
    (FLAT_MIN_RANKS..=FLAT_MAX_RANKS).contains(&size)
}

/// Whether, where ranks share cores, a zero-copy all-to-all of `bytes` per block on `size` ranks
/// goes through rank 0 ([`flat::alltoall_into`](crate::flat::alltoall_into)): where [`flat()`]
/// takes the `size * bytes` each rank sends there. Larger ones go straight, every block at once
/// ([`direct::alltoall_into`](crate::direct::alltoall_into)); ranks with a core each keep the
/// pairwise exchange ([`alltoall::alltoall_into`](crate::alltoall::alltoall_into)), as MPI
/// libraries do.
///
/// Measured on 2 cores (twenty-ninth session), medians of three alternating runs, through rank
/// 0, every block at once and pairwise: 8 ranks, 8 B 73, 99 and 199 us, 1 KiB 71, 104 and 203,
/// 64 KiB 940, 332 and 546, 1 MiB (at once and pairwise) 3.42 and 4.31 ms; 16 ranks, 8 B 134,
/// 465 and 932 us, 1 KiB 259, 444 and 975, 64 KiB 3.98, 1.60 and 3.01 ms; 4 ranks (fewer than
/// [`FLAT_MIN_RANKS`]: at once) 8 B 59, 42 and 72 us, 64 KiB 225, 72 and 89, 1 MiB 3.40, 0.70
/// and 0.73 ms.
pub fn alltoall_flat(size: usize, bytes: usize) -> bool {
    flat(size, bytes.saturating_mul(size))
}

/// Where ranks share cores, the piece size of the prefix reduction along the chain of ranks
/// ([`prefix::chain_into`](crate::prefix::chain_into)) for buffers of [`SCAN_PIECES_MIN`] bytes
/// up to [`SCAN_WHOLE_MIN`]; shorter and longer buffers go whole ([`scan_piece`]).
///
/// Measured on 2 cores, 8 ranks, by whole calls (wall time of runs at 1 and 11 times the
/// iterations, barrier included, medians of three alternating runs; Open MPI's `MPI_Scan` in
/// brackets): 1 MiB in pieces of 256 KiB 1381 us (1427), of 128 KiB 1554 (1436), whole 1497
/// (1371); 16 MiB whole 23.8 ms (42.0), in pieces of 4 MiB 34.1 (42.3). By the benchmark's
/// average over ranks, 1 MiB: 256 KiB 505-674 us, 64 KiB 473-498, whole 680-694 (Open MPI 925);
/// 16 MiB: whole 13.2-13.7 ms, 1 MiB pieces 21.7-26.3, 256 KiB 42.7-45.0 (Open MPI 24.6).
/// Recursive doubling, as with a core per rank, took 3.15 ms at 1 MiB and 117 ms at 16 MiB:
/// `log2(size)` whole buffers out of every rank and two folds each, where the chain moves and
/// folds each buffer once.
pub const SCAN_PIECE: usize = 256 * 1024;
/// Fewest bytes for which the chain's prefix reduction goes in pieces of [`SCAN_PIECE`]: below,
/// a piece's messages cost more than the overlap gains (64 KiB whole: 48 us by the average,
/// Open MPI 58).
pub const SCAN_PIECES_MIN: usize = 512 * 1024;
/// Bytes from which the chain's prefix reduction goes whole again: the runtime lends messages
/// of 4 MiB and more where ranks share cores, each copied once, which pieces would give up.
pub const SCAN_WHOLE_MIN: usize = 4 << 20;

/// The piece size of the chain's prefix reduction of `bytes` ([`SCAN_PIECE`] from
/// [`SCAN_PIECES_MIN`] up to [`SCAN_WHOLE_MIN`], whole otherwise).
pub fn scan_piece(bytes: usize) -> usize {
    if (SCAN_PIECES_MIN..SCAN_WHOLE_MIN).contains(&bytes) { SCAN_PIECE } else { bytes.max(1) }
}
