//! Collectives in which every rank sends straight to every other at once: one step where a
//! ring takes `size - 1` and recursive doubling `log2(size)`.
//!
//! For ranks that share cores, over a transport that copies a large message once, straight
//! out of its sender's buffer when its receive is posted (the runtime's rendezvous, see
//! [`CROWDED_DIRECT_MIN`](crate::tuning::CROWDED_DIRECT_MIN)): every byte is then copied once,
//! out of a buffer nobody writes meanwhile, and no rank waits for a step before its own. The
//! price is `size - 1` messages out of and into every rank at once: over sockets, every
//! message copied twice, it measured even with recursive doubling (32 and 64 ranks), and ranks
//! with a core each, for which every step of a tree is cheap, keep the trees, as MPI libraries
//! do.

use crate::p2p::{PointToPoint, step_tag};

/// Each of `size` ranks' `block` (all of one length) into every rank's `recv` (`size * len`
/// bytes), in rank order, in one step: every rank sends its block to every other and receives
/// every other's into its place, all at once ([`PointToPoint::send_recv_each`]). Rank `r`
/// sends to `r + 1`, `r + 2`, ... in turn, so that the ranks do not all start with the same
/// receiver, and copies its own block into place while they read it (8 ranks on 2 cores, 16 MiB:
/// 0.963 of the time with the copy made first, 11 of 12 alternating pairs faster).
///
/// Errors: a message of the wrong length, or a wrongly sized `recv`.
pub fn allgather_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    block: &[u8],
    recv: &mut [u8],
) -> Result<(), P::Error> {
    let (len, size) = (block.len(), p.size());
    let recv = crate::in_place::blocks_of(p, "allgather", Some(recv), len)?;
    let places = crate::blocks::cut_mut(recv, &vec![len; size]);
    let places = places.ok_or_else(|| p.malformed(format!("allgather: not {size} blocks of {len} bytes")))?;
    gather_at_once(p, seq, block, places)
}

/// As [`allgather_into`] with blocks of any length: rank `r`'s `block` (`lens[r]` bytes) into
/// place `r` of every rank's `recv`, the places in rank order (`MPI_Allgatherv` without
/// displacements), every block straight from its owner to every rank at once.
///
/// Errors: a message of another length than its place, or `lens` that are not `size` lengths
/// filling `recv` with this rank's own as long as `block`.
pub fn allgatherv_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    block: &[u8],
    recv: &mut [u8],
    lens: &[usize],
) -> Result<(), P::Error> {
    let places = crate::in_place::places_of(p, "allgatherv", recv, lens, (p.rank(), block.len()))?;
    gather_at_once(p, seq, block, places)
}

/// `block` to every other rank and every other rank's block into its place of `places` (one
/// per rank, in rank order; this rank's as long as `block`), all at once.
fn gather_at_once<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    block: &[u8],
    places: Vec<&mut [u8]>,
) -> Result<(), P::Error> {
    let (rank, size) = (p.rank(), p.size());
    let mut places: Vec<Option<&mut [u8]>> = places.into_iter().map(Some).collect();
    let mut own = places.get_mut(rank).and_then(Option::take).filter(|own| own.len() == block.len());
    let sends: Vec<(usize, &[u8])> = (1..size).map(|i| ((rank + i) % size, block)).collect();
    // in the order their senders send to this rank: rank - 1 first
    let mut recvs: Vec<(usize, &mut [u8])> = (1..size)
        .map(|i| (rank + size - i) % size)
        .filter_map(|src| places.get_mut(src).and_then(Option::take).map(|place| (src, place)))
        .collect();
    // the own block copied while the others read this rank's
    let mut copy = || {
        if let Some(own) = own.take() {
            own.copy_from_slice(block);
        }
    };
    p.send_recv_each(step_tag(seq, 0), &sends, &mut recvs, Some(&mut copy))
}

/// Block `d` of every rank's `send` (`size` blocks of one length) into place `r` of rank
/// `d`'s `recv`, in one step: every rank sends each block straight to its rank and receives
/// every other's at once ([`PointToPoint::send_recv_each`]), as [`allgather_into`] does with
/// one block for all; the own block is copied while the others read theirs.
///
/// Errors: a `send` whose length is not a multiple of `size`, a `recv` of another length, or
/// a message of the wrong length.
pub fn alltoall_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    send: &[u8],
    recv: &mut [u8],
) -> Result<(), P::Error> {
    at_once(p, seq, crate::alltoall::Blocks::new(p, send, recv)?)
}

/// As [`alltoall_into`], with blocks of any length, as
/// [`alltoall::alltoallv_into`](crate::alltoall::alltoallv_into) takes them.
///
/// Errors: as [`alltoall::alltoallv_into`](crate::alltoall::alltoallv_into).
pub fn alltoallv_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    send: &[u8],
    send_lens: &[usize],
    recv: &mut [u8],
    recv_lens: &[usize],
) -> Result<(), P::Error> {
    at_once(p, seq, crate::alltoall::Blocks::varying(p, send, send_lens, recv, recv_lens)?)
}

/// Every block of `blocks` to its rank and every place's block from its rank, all at once.
fn at_once<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    mut blocks: crate::alltoall::Blocks<'_, '_>,
) -> Result<(), P::Error> {
    let (rank, size) = (blocks.rank, blocks.size);
    let mut copy = blocks.own_copy();
    let sends: Vec<(usize, &[u8])> =
        (1..size).map(|i| (rank + i) % size).filter_map(|d| blocks.sends.get(d).map(|b| (d, *b))).collect();
    let mut recvs: Vec<(usize, &mut [u8])> = (1..size)
        .map(|i| (rank + size - i) % size)
        .filter_map(|src| blocks.places.get_mut(src).and_then(Option::take).map(|place| (src, place)))
        .collect();
    p.send_recv_each(step_tag(seq, 0), &sends, &mut recvs, Some(&mut copy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{self, LARGE_SIZES, bytes, run};
    use crate::threads::ThreadError;

    /// Every rank gets every block in rank order, empty blocks included.
    #[test]
    fn allgather_every_size() {
        testutil::allgather_every_size(
            "direct",
            |p, block, recv| allgather_into(p, 4, block, recv),
            |_| true,
        );
    }

    /// Blocks of lengths that vary by rank, none among them.
    #[test]
    fn allgatherv_every_size() {
        testutil::allgatherv_every_size(
            "direct",
            |p, block, recv, lens| allgatherv_into(p, 4, block, recv, lens),
            |_| true,
        );
    }

    /// Every rank gets every block meant for it, for every size, with empty blocks, and blocks
    /// of lengths that differ by pair.
    #[test]
    fn alltoall_every_size() {
        testutil::alltoall_every_size(|p, send, recv| alltoall_into(p, 3, send, recv));
        testutil::alltoallv_every_size(|p, send, send_lens, recv, recv_lens| {
            alltoallv_into(p, 4, send, send_lens, recv, recv_lens)
        });
    }

    /// Several MiB.
    #[test]
    fn large() {
        let len = 3 * 1024 * 1024 + 8 * 3;
        for size in LARGE_SIZES {
            let all: Vec<u8> = (0..size).flat_map(|r| bytes(r as u64, len)).collect();
            run(size, |p| {
                let r = p.rank();
                let mut recv = vec![0; size * len];
                allgather_into(&p, 1, &all[r * len..(r + 1) * len], &mut recv).expect("allgather");
                assert!(recv == all, "allgather, size {size}");
            });
        }
    }

    /// Wrong lengths are errors, not panics or hangs.
    #[test]
    fn wrong_lengths() {
        let out = run(3, |p| allgather_into(&p, 0, &[1], &mut [0u8; 4]).err());
        assert!(out.iter().all(|e| matches!(e, Some(ThreadError::Malformed(_)))), "{out:?}");
        // a block of the wrong length from rank 1, which only sends: its receivers fail
        let out = run(3, |p| {
            let block = if p.rank() == 1 { vec![1u8; 3] } else { vec![1u8; 2] };
            if p.rank() == 1 {
                let t = step_tag(0, 0);
                p.send(0, t, &block).and_then(|()| p.send(2, t, &block)).err()
            } else {
                allgather_into(&p, 0, &block, &mut [0u8; 6]).err()
            }
        });
        assert!(matches!(out[0], Some(ThreadError::Malformed(_))), "{out:?}");
        assert!(matches!(out[2], Some(ThreadError::Malformed(_))), "{out:?}");
    }
}
