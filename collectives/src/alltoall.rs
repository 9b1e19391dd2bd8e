//! All-to-all: every rank sends a distinct block to every rank, by pairwise exchange.

use crate::p2p::{PointToPoint, step_tag};

/// One rank's part of an all-to-all into place: `send`'s blocks by destination and `recv`'s
/// places by source, `size` of each, all of one length (`size` empty ones when it is 0).
pub(crate) struct Blocks<'s, 'r> {
    pub rank: usize,
    pub size: usize,
    /// `send`'s blocks, block `d` for rank `d`.
    pub sends: Vec<&'s [u8]>,
    /// `recv`'s places, place `s` for rank `s`'s block, each taken once.
    pub places: Vec<Option<&'r mut [u8]>>,
}

impl<'s, 'r> Blocks<'s, 'r> {
    /// `send` and `recv` cut into blocks, or the error for a rank out of range, a `send` whose
    /// length is not a multiple of `size` or a `recv` of another length.
    pub fn new<P: PointToPoint + ?Sized>(
        p: &P,
        send: &'s [u8],
        recv: &'r mut [u8],
    ) -> Result<Self, P::Error> {
        let size = crate::p2p::rank_and_size(p, "alltoall", 0)?.1;
        let len = send.len() / size;
        if send.len() != len * size || recv.len() != send.len() {
            let (s, r) = (send.len(), recv.len());
            return Err(
                p.malformed(format!("alltoall: {s} bytes to send and {r} to receive, not {size} x {len}"))
            );
        }
        Blocks::varying(p, send, &vec![len; size], recv, &vec![len; size])
    }

    /// `send` cut into blocks of `send_lens` bytes (block `d` for rank `d`) and `recv` into
    /// places of `recv_lens` bytes, in rank order; the error for lists not of `size` lengths
    /// that add up to their buffer's, or an own block of another length than its place.
    pub fn varying<P: PointToPoint + ?Sized>(
        p: &P,
        send: &'s [u8],
        send_lens: &[usize],
        recv: &'r mut [u8],
        recv_lens: &[usize],
    ) -> Result<Self, P::Error> {
        let (rank, size) = crate::p2p::rank_and_size(p, "alltoallv", 0)?;
        if !lengths_fit(rank, size, (send.len(), send_lens), (recv.len(), recv_lens)) {
            return Err(p.malformed(format!(
                "alltoallv: {size} blocks of {send_lens:?} bytes to send and of {recv_lens:?} to receive, \
                 in buffers of {} and {} bytes (the own block as long as its place)",
                send.len(),
                recv.len()
            )));
        }
        let cuts = crate::blocks::cut(send, send_lens).zip(crate::blocks::cut_mut(recv, recv_lens));
        // the lengths add up to their buffers' (checked above), so both cuts succeed
        let (sends, places) =
            cuts.ok_or_else(|| p.malformed("alltoallv: the blocks do not fill the buffers".into()))?;
        let places = places.into_iter().map(Some).collect();
        Ok(Blocks { rank, size, sends, places })
    }

    /// The copy of this rank's own block into its place (taken out of `places`), made the
    /// first time the closure runs.
    pub fn own_copy(&mut self) -> impl FnMut() + use<'s, 'r> {
        let own = self.sends.get(self.rank).copied().unwrap_or_default();
        let mut place = self.places.get_mut(self.rank).and_then(Option::take);
        move || {
            if let Some(place) = place.take() {
                place.copy_from_slice(own);
            }
        }
    }
}

/// Whether `send_lens` and `recv_lens` (with the lengths of the buffers they cut) are `size`
/// lengths each that add up to their buffer's, rank `rank`'s own block as long as its place:
/// the shape of one rank's part in an all-to-all of blocks of any length.
pub fn lengths_fit(rank: usize, size: usize, send: (usize, &[usize]), recv: (usize, &[usize])) -> bool {
    let fits = |(buf, lens): (usize, &[usize])| crate::blocks::fills(size, buf, lens);
    fits(send) && fits(recv) && send.1.get(rank) == recv.1.get(rank)
}

/// Block `d` of `send` (`size` blocks of one length) to rank `d`, and block `s` of `recv` from
/// rank `s`, for every `d` and `s`: `MPI_Alltoall` of bytes, into place. Pairwise exchange, as
/// [`alltoall`]: in step `k = 1..size` rank `r` sends to `r + k` and receives from `r - k`,
/// each block received straight into its place; the own block is copied while the first
/// partner takes this rank's (where the transport lends it).
///
/// Errors: a transport error, a `send` whose length is not a multiple of `size`, a `recv` of
/// another length than `send`, or a block of the wrong length from a peer.
pub fn alltoall_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    send: &[u8],
    recv: &mut [u8],
) -> Result<(), P::Error> {
    pairwise(p, seq, Blocks::new(p, send, recv)?)
}

/// As [`alltoall_into`], with blocks of any length: block `d` of `send` (`send_lens[d]` bytes,
/// in rank order) to rank `d`, rank `s`'s block for this rank into place `s` of `recv`
/// (`recv_lens[s]` bytes): `MPI_Alltoallv` of bytes, without displacements.
///
/// Errors: a transport error, lengths not of `size` blocks that fill their buffers, an own
/// block of another length than its place, or a block of another length than its place from a
/// peer.
pub fn alltoallv_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    send: &[u8],
    send_lens: &[usize],
    recv: &mut [u8],
    recv_lens: &[usize],
) -> Result<(), P::Error> {
    pairwise(p, seq, Blocks::varying(p, send, send_lens, recv, recv_lens)?)
}

/// The pairwise exchange of [`alltoall_into`] on blocks already cut.
fn pairwise<P: PointToPoint + ?Sized>(p: &P, seq: u32, mut blocks: Blocks<'_, '_>) -> Result<(), P::Error> {
    let (rank, size) = (blocks.rank, blocks.size);
    let mut copy = blocks.own_copy();
    let missing = |i| p.malformed(format!("alltoall: no block {i}"));
    for k in 1..size {
        let (to, from) = ((rank + k) % size, (rank + size - k) % size);
        let t = step_tag(seq, k);
        let data = blocks.sends.get(to).ok_or_else(|| missing(to))?;
        let place = blocks.places.get_mut(from).and_then(Option::take).ok_or_else(|| missing(from))?;
        p.sendrecv_into_while(to, t, data, from, t, place, &mut copy)?;
    }
    copy();
    Ok(())
}

/// Sends `blocks[d]` to rank `d` for every `d`; returns the blocks received, indexed by source.
///
/// Every rank passes exactly `size` blocks, which may differ in size. Pairwise exchange: in step
/// `k = 1..size` rank `r` sends to `r + k` and receives from `r - k` (modulo `size`); its own
/// block is moved, not sent.
///
/// Errors: a transport error, or a number of blocks other than `size`.
pub fn alltoall<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    blocks: Vec<Vec<u8>>,
) -> Result<Vec<Vec<u8>>, P::Error> {
    let (rank, size) = (p.rank(), p.size());
    if rank >= size || blocks.len() != size {
        let n = blocks.len();
        return Err(p.malformed(format!("alltoall: rank {rank} passed {n} blocks for {size} ranks")));
    }
    let mut blocks = blocks;
    let mut received = vec![Vec::new(); size];
    let missing = |i| p.malformed(format!("alltoall: no block slot {i}"));
    *received.get_mut(rank).ok_or_else(|| missing(rank))? =
        std::mem::take(blocks.get_mut(rank).ok_or_else(|| missing(rank))?);
    for k in 1..size {
        let (to, from) = ((rank + k) % size, (rank + size - k) % size);
        let t = step_tag(seq, k);
        let got = p.sendrecv(to, t, blocks.get(to).ok_or_else(|| missing(to))?, from, t)?;
        *received.get_mut(from).ok_or_else(|| missing(from))? = got;
        // Free each block once sent.
        if let Some(sent) = blocks.get_mut(to) {
            *sent = Vec::new();
        }
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{LARGE_SIZES, SIZES, bytes, run};
    use crate::threads::ThreadError;

    /// Block `(s, d)` of a test case: what rank `s` sends rank `d`.
    fn block(case: usize, s: usize, d: usize, len: usize) -> Vec<u8> {
        bytes((case * 10_000 + s * 100 + d) as u64, len)
    }

    /// Every rank gets, from every source, the block meant for it, for every size, with empty,
    /// uneven (varying per source and destination) and larger blocks.
    #[test]
    fn every_size() {
        let shapes: [fn(usize, usize) -> usize; 4] =
            [|_, _| 0, |s, d| s * 3 + d * 5, |s, d| (s * 7 + d * 13) % 4 * 20_000, |s, d| (s + d) % 2];
        for size in SIZES {
            run(size, |p| {
                let r = p.rank();
                for (case, shape) in shapes.iter().enumerate() {
                    let mine = (0..size).map(|d| block(case, r, d, shape(r, d))).collect();
                    let got = alltoall(&p, case as u32, mine).expect("alltoall");
                    let want: Vec<Vec<u8>> = (0..size).map(|s| block(case, s, r, shape(s, r))).collect();
                    assert!(got == want, "size {size} case {case}");
                }
            });
        }
    }

    /// Into place: every rank gets every block meant for it, for every size, empty blocks too.
    #[test]
    fn into_every_size() {
        crate::testutil::alltoall_every_size(|p, send, recv| alltoall_into(p, 5, send, recv));
    }

    /// Blocks of varying length: every block where it belongs at every size; a place of
    /// another length than the block its peer sends fails those two ranks' exchange, and
    /// lengths that do not fill the buffers are refused before anything is sent.
    #[test]
    fn varying_lengths() {
        crate::testutil::alltoallv_every_size(|p, send, send_lens, recv, recv_lens| {
            alltoallv_into(p, 2, send, send_lens, recv, recv_lens)
        });
        // rank 0 expects 2 bytes from rank 1, which sends 3
        let out = run(2, |p| {
            let (send_lens, recv_lens) = if p.rank() == 0 { ([1, 3], [1, 2]) } else { ([3, 1], [3, 1]) };
            let send = vec![5; send_lens.iter().sum()];
            let mut recv = vec![0; recv_lens.iter().sum()];
            alltoallv_into(&p, 0, &send, &send_lens, &mut recv, &recv_lens).err()
        });
        assert!(matches!(out[0], Some(ThreadError::Malformed(_))), "{out:?}");
        let out = run(2, |p| {
            let bad = [
                alltoallv_into(&p, 0, &[1, 2], &[1, 2], &mut [0; 2], &[1, 1]),
                alltoallv_into(&p, 0, &[1, 2], &[2], &mut [0; 2], &[2]),
                alltoallv_into(&p, 0, &[1, 2], &[usize::MAX, 3], &mut [0; 2], &[1, 1]),
                alltoallv_into(&p, 0, &[1, 2], &[2, 0], &mut [0; 2], &[0, 2]),
            ];
            bad.iter().all(|b| matches!(b, Err(ThreadError::Malformed(_))))
        });
        assert!(out.iter().all(|&refused| refused), "{out:?}");
    }

    /// Into place, several MiB per rank, and blocks of lengths that differ between ranks or do
    /// not divide: errors, not panics or hangs.
    #[test]
    fn into_large_and_wrong_lengths() {
        for size in LARGE_SIZES {
            let len = 4 * 1024 * 1024 / size + 3;
            run(size, |p| {
                let r = p.rank();
                let send: Vec<u8> = (0..size).flat_map(|d| block(9, r, d, len)).collect();
                let mut recv = vec![0; size * len];
                alltoall_into(&p, 0, &send, &mut recv).expect("alltoall_into");
                let want: Vec<u8> = (0..size).flat_map(|s| block(9, s, r, len)).collect();
                assert!(recv == want, "size {size}");
            });
        }
        // rank 1's blocks are one byte longer: every rank fails (a malformed message, or a
        // peer gone after its own failure), and nobody waits for ever
        let out = run(3, |p| {
            let len = if p.rank() == 1 { 3 } else { 2 };
            alltoall_into(&p, 0, &vec![7; 3 * len], &mut vec![0; 3 * len]).err()
        });
        assert!(out.iter().all(Option::is_some), "{out:?}");
        assert!(matches!(out[2], Some(ThreadError::Malformed(_))), "{out:?}");
        let out = run(2, |p| alltoall_into(&p, 0, &[1, 2, 3], &mut [0; 3]).err());
        assert!(out.iter().all(|e| matches!(e, Some(ThreadError::Malformed(_)))), "{out:?}");
        let out = run(2, |p| alltoall_into(&p, 0, &[1, 2], &mut [0; 4]).err());
        assert!(out.iter().all(|e| matches!(e, Some(ThreadError::Malformed(_)))), "{out:?}");
    }

    /// Several MiB per rank.
    #[test]
    fn large() {
        for size in LARGE_SIZES {
            run(size, |p| {
                let r = p.rank();
                let len = |s: usize, d: usize| 4 * 1024 * 1024 / size + s + d;
                let mine = (0..size).map(|d| block(7, r, d, len(r, d))).collect();
                let got = alltoall(&p, 0, mine).expect("alltoall");
                assert!(
                    got.into_iter().enumerate().all(|(s, b)| b == block(7, s, r, len(s, r))),
                    "size {size}"
                );
            });
        }
    }

    /// The wrong number of blocks is an error, not a panic.
    #[test]
    fn wrong_block_count() {
        let out = run(1, |p| alltoall(&p, 0, vec![Vec::new(); 2]));
        assert!(matches!(out[0], Err(ThreadError::Malformed(_))));
    }
}
