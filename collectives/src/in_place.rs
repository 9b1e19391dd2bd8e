//! Collectives on buffers whose length every rank knows: each message is received straight
//! into its place in the caller's buffer ([`PointToPoint::recv_into`]) and sent from it, with
//! no header, no intermediate vector and no copy beyond the transport's own.
//!
//! These serve the plain-old-data `_into` calls, where every rank passes buffers of agreed
//! lengths (the runtime checks the agreement with each message). Their message patterns are the
//! ones the vector-based algorithms use for the same sizes: a binomial tree for broadcast,
//! direct sends to or from the root for large gather and scatter, and a ring for large
//! allgather.

use crate::binomial;
use crate::p2p::{PointToPoint, rank_and_size, step_tag, tag};

/// The root's `buf` into every rank's `buf` (all of one length), down a binomial tree rooted
/// at `root`: every rank receives the whole buffer once from its parent, in place, and sends it
/// on to its children, farthest first.
///
/// Errors: a message of the wrong length, or `root` out of range.
pub fn broadcast_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    root: usize,
    buf: &mut [u8],
) -> Result<(), P::Error> {
    let (rank, size) = rank_and_size(p, "broadcast", root)?;
    let vr = (rank + size - root) % size;
    let abs = |v: usize| (v + root) % size;
    if let Some(parent) = binomial::parent(vr) {
        p.recv_into(abs(parent), tag(seq, 0), buf)?;
    }
    // farthest first; every child's copy at once where the transport waits for copies
    let buf = &*buf;
    let sends: Vec<(usize, &[u8])> = binomial::children(vr, size).rev().map(|c| (abs(c), buf)).collect();
    p.send_each(tag(seq, 0), &sends, None)
}

/// Every rank's `block` (all of one length) straight to the root, which places block `r` at
/// `recv[r * len..]`; `recv` is the root's, `size * len` bytes, and `None` elsewhere.
///
/// Errors: a message of the wrong length, `root` out of range, or a missing or wrongly sized
/// `recv` on the root.
pub fn gather_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    root: usize,
    block: &[u8],
    recv: Option<&mut [u8]>,
) -> Result<(), P::Error> {
    let (rank, size) = rank_and_size(p, "gather", root)?;
    if rank != root {
        return p.send(root, tag(seq, 1), block);
    }
    let len = block.len();
    let recv = blocks_of(p, "gather", recv, len)?;
    gather_places(p, seq, rank, block, numbered_blocks(recv, len, size))
}

/// As [`gather_into`] with blocks of any length: rank `r`'s `block` (`lens[r]` bytes) into
/// place `r` of the root's `recv`, the places in rank order (`MPI_Gatherv` without
/// displacements); the root passes `Some((recv, lens))`, others `None`. Every block straight
/// to the root, as MPI libraries gather blocks of varying length.
///
/// Errors: a message of another length than its place, `root` out of range, or on the root a
/// missing `recv`, or `lens` that are not `size` lengths filling it with the root's own block
/// as long as its place.
pub fn gatherv_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    root: usize,
    block: &[u8],
    recv: Option<(&mut [u8], &[usize])>,
) -> Result<(), P::Error> {
    let rank = rank_and_size(p, "gatherv", root)?.0;
    if rank != root {
        return p.send(root, tag(seq, 1), block);
    }
    let Some((recv, lens)) = recv else {
        return Err(p.malformed("gatherv: the root passed no receive buffer".to_string()));
    };
    let places = places_of(p, "gatherv", recv, lens, (rank, block.len()))?;
    gather_places(p, seq, rank, block, places.into_iter().enumerate().collect())
}

/// The root's part of a gather: every other rank's block received into its place of `slots`
/// (one per rank, numbered by rank), the root's own `block` copied into place `own` last.
fn gather_places<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    own: usize,
    block: &[u8],
    mut slots: Vec<(usize, &mut [u8])>,
) -> Result<(), P::Error> {
    // the others' blocks first, each posted before it arrives so that it lands in place, and the
    // root's own last: copied first, it left a large block from a rank the time to arrive
    // unposted, to be read into a vector and copied once more
    let Some(at) = slots.iter().position(|(r, _)| *r == own) else {
        return Err(p.malformed(format!("gather: no place for rank {own}")));
    };
    let own = slots.remove(at).1;
    if own.len() != block.len() {
        let (n, m) = (block.len(), own.len());
        return Err(p.malformed(format!("gather: the root's block of {n} bytes for a place of {m}")));
    }
    if slots.len() > 1 {
        // every receive ready at once, each block taken as it comes (8 ranks on 2 cores, 1 MiB
        // blocks: 279 against 349 us one after the other, 16 MiB 10.9 against 16.0 ms)
        p.send_recv_each(tag(seq, 1), &[], &mut slots, None)?;
    } else {
        for (src, into) in &mut slots {
            p.recv_into(*src, tag(seq, 1), into)?;
        }
    }
    own.copy_from_slice(block);
    Ok(())
}

/// Block `r` of the root's `send` (`size * recv.len()` bytes) straight to rank `r`'s `recv`.
///
/// Errors: a message of the wrong length, `root` out of range, or a missing or wrongly sized
/// `send` on the root.
pub fn scatter_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    root: usize,
    send: Option<&[u8]>,
    recv: &mut [u8],
) -> Result<(), P::Error> {
    let (rank, size) = rank_and_size(p, "scatter", root)?;
    if rank != root {
        return p.recv_into(root, tag(seq, 1), recv);
    }
    let len = recv.len();
    let blocks = send.and_then(|s| crate::blocks::cut(s, &vec![len; size]));
    let Some(blocks) = blocks else {
        return Err(p.malformed(format!("scatter: the root's buffer must hold {size} x {len} bytes")));
    };
    scatter_blocks(p, seq, rank, &blocks, recv)
}

/// As [`scatter_into`] with blocks of any length: block `r` of the root's `send` (`lens[r]`
/// bytes, the blocks in rank order) into rank `r`'s `recv` (`MPI_Scatterv` without
/// displacements); the root passes `Some((send, lens))`, others `None`. Every block straight
/// from the root, all at once.
///
/// Errors: a message of another length than the receiver's `recv`, `root` out of range, or on
/// the root a missing `send`, or `lens` that are not `size` lengths filling it with the root's
/// own block as long as its `recv`.
pub fn scatterv_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    root: usize,
    send: Option<(&[u8], &[usize])>,
    recv: &mut [u8],
) -> Result<(), P::Error> {
    let (rank, size) = rank_and_size(p, "scatterv", root)?;
    if rank != root {
        return p.recv_into(root, tag(seq, 1), recv);
    }
    let blocks = send
        .filter(|(_, lens)| lens.len() == size && lens.get(rank) == Some(&recv.len()))
        .and_then(|(send, lens)| crate::blocks::cut(send, lens));
    let Some(blocks) = blocks else {
        return Err(p.malformed(format!(
            "scatterv: the root must pass {size} lengths filling its buffer, its own {} bytes long",
            recv.len()
        )));
    };
    scatter_blocks(p, seq, rank, &blocks, recv)
}

/// The root's part of a scatter: block `d` of `blocks` (one per rank) to rank `d`, all at
/// once, and its own (`blocks[own]`, as long as `recv`) into `recv`.
fn scatter_blocks<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    own: usize,
    blocks: &[&[u8]],
    recv: &mut [u8],
) -> Result<(), P::Error> {
    let mine = blocks.get(own).copied().filter(|b| b.len() == recv.len());
    let Some(mine) = mine else {
        return Err(p.malformed(format!("scatter: the root's own block is not {} bytes", recv.len())));
    };
    // the root's own block copied while the others go (a transport that copies once waits for
    // its receivers to copy them: 2 ranks, 1 MiB, the two copies at once)
    let sends: Vec<(usize, &[u8])> =
        blocks.iter().enumerate().filter(|&(d, _)| d != own).map(|(d, b)| (d, *b)).collect();
    p.send_each(tag(seq, 1), &sends, Some(&mut || recv.copy_from_slice(mine)))
}

/// Every rank's `block` (all of one length) into every rank's `recv` (`size * len` bytes), in
/// rank order, around a ring: in step `s` a rank passes block `rank - s` to the next rank and
/// receives block `rank - s - 1` from the previous one into its place.
///
/// Errors: a message of the wrong length, or a wrongly sized `recv`.
pub fn allgather_ring_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    block: &[u8],
    recv: &mut [u8],
) -> Result<(), P::Error> {
    let (rank, size) = (p.rank(), p.size());
    let len = block.len();
    let recv = blocks_of(p, "allgather", Some(recv), len)?;
    let (next, prev) = ((rank + 1) % size, (rank + size - 1) % size);
    if size == 2 && len >= crate::tuning::ALLGATHER_PAIR_SPLIT {
        // one exchange, in the order the transport moves it fastest (a socket transport one
        // way, then the other: see `PointToPoint::sendrecv_into`), in pieces of at most
        // `PointToPoint::exchange_piece` (both ranks cut alike, their blocks being of one
        // length), the own block copied while the peer copies this rank's or after
        let t = step_tag(seq, 0);
        let (low, high) = recv.split_at_mut(len);
        let (own, other) = if rank == 0 { (low, high) } else { (high, low) };
        if len <= p.exchange_piece(next) {
            // whole: the own block copied while the peer copies this rank's (2 ranks, 16 MiB,
            // eight alternating runs: 4.40 against 4.78 ms and 4.93 against 5.18, Open MPI
            // 4.50 and 4.82; 1 MiB even)
            return p.sendrecv_into_while(next, t, block, prev, t, other, &mut || own.copy_from_slice(block));
        }
        crate::p2p::exchange_in_pieces(p, next, t, block, prev, t, other)?;
        own.copy_from_slice(block);
        return Ok(());
    }
    ring(p, seq, block, recv, &equal_offsets(len, size))
}

/// As [`allgather_ring_into`] with blocks of any length: rank `r`'s `block` (`lens[r]` bytes)
/// into place `r` of every rank's `recv`, the places in rank order (`MPI_Allgatherv` without
/// displacements), around the ring, each block received straight into its place.
///
/// Errors: a message of another length than its place, or `lens` that are not `size` lengths
/// filling `recv` with this rank's own as long as `block`.
pub fn allgatherv_ring_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    block: &[u8],
    recv: &mut [u8],
    lens: &[usize],
) -> Result<(), P::Error> {
    let offsets = offsets_of(p, "allgatherv", recv.len(), lens, (p.rank(), block.len()))?;
    ring(p, seq, block, recv, &offsets)
}

/// The ring of [`allgather_ring_into`] on blocks at `offsets` (`size + 1` of them, checked
/// against `recv` and `block`): in step `s` block `rank - s` to the next rank, block
/// `rank - s - 1` from the previous one into its place.
fn ring<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    block: &[u8],
    recv: &mut [u8],
    offsets: &[usize],
) -> Result<(), P::Error> {
    let (rank, size) = (p.rank(), p.size());
    let (next, prev) = ((rank + 1) % size, (rank + size - 1) % size);
    // `offsets` holds `size + 1` offsets within `recv` (checked by the callers)
    let place = |r: usize| offsets[r]..offsets[r + 1];
    recv[place(rank)].copy_from_slice(block);
    for s in 0..size - 1 {
        let (out, into) = ((rank + size - s) % size, (rank + 2 * size - s - 1) % size);
        let (out, into) = two_places(p, recv, place(out), place(into))?;
        let t = step_tag(seq, s);
        p.sendrecv_into(next, t, out, prev, t, into)?;
    }
    Ok(())
}

/// As [`allgather_ring_into`], by recursive doubling, for a power-of-two number of ranks: in
/// step `k` a rank exchanges the `2^k` blocks it holds with rank `rank ^ 2^k`, so that
/// `log2(size)` steps move as many bytes as the ring's `size - 1` (see
/// [`ALLGATHER_DOUBLING_MIN_RANKS`](crate::tuning::ALLGATHER_DOUBLING_MIN_RANKS)).
///
/// The first step sends the rank's block straight out of `block` and copies it into its place
/// in `recv` while the partner copies it ([`PointToPoint::sendrecv_into_while`]), as the
/// two-rank exchange does: 8 ranks on 2 cores, 1 MiB, 0.972 and 0.982 of the time with the
/// copy made first (25 and 20 alternating pairs, 41 of the 45 faster; by whole calls about
/// 0.98).
///
/// Errors: as [`allgather_ring_into`], or a number of ranks that is not a power of two.
pub fn allgather_doubling_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    block: &[u8],
    recv: &mut [u8],
) -> Result<(), P::Error> {
    let (rank, size) = (p.rank(), p.size());
    if !size.is_power_of_two() || rank >= size {
        return Err(p.malformed(format!("allgather: recursive doubling on {size} ranks")));
    }
    let len = block.len();
    let recv = blocks_of(p, "allgather", Some(recv), len)?;
    doubling(p, seq, block, recv, &equal_offsets(len, size))
}

/// As [`allgather_doubling_into`] with blocks of any length, as [`allgatherv_ring_into`] takes
/// them: each step exchanges the groups' blocks, which lie side by side in rank order whatever
/// their lengths.
///
/// Errors: as [`allgatherv_ring_into`], or a number of ranks that is not a power of two.
pub fn allgatherv_doubling_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    block: &[u8],
    recv: &mut [u8],
    lens: &[usize],
) -> Result<(), P::Error> {
    let (rank, size) = (p.rank(), p.size());
    if !size.is_power_of_two() || rank >= size {
        return Err(p.malformed(format!("allgatherv: recursive doubling on {size} ranks")));
    }
    let offsets = offsets_of(p, "allgatherv", recv.len(), lens, (rank, block.len()))?;
    doubling(p, seq, block, recv, &offsets)
}

/// The recursive doubling of [`allgather_doubling_into`] on blocks at `offsets` (`size + 1` of
/// them, `size` a power of two, checked against `recv` and `block`).
fn doubling<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    block: &[u8],
    recv: &mut [u8],
    offsets: &[usize],
) -> Result<(), P::Error> {
    let (rank, size) = (p.rank(), p.size());
    // the places of the group of `n` ranks from rank `first`
    let group = |first: usize, n: usize| offsets[first]..offsets[first + n];
    if size == 1 {
        recv.copy_from_slice(block);
        return Ok(());
    }
    let (own, into) = two_places(p, recv, group(rank, 1), group(rank ^ 1, 1))?;
    let t = step_tag(seq, 0);
    p.sendrecv_into_while(rank ^ 1, t, block, rank ^ 1, t, into, &mut || own.copy_from_slice(block))?;
    for k in 1..size.ilog2() as usize {
        let mask = 1usize << k;
        let partner = rank ^ mask;
        // this rank's group of `mask` blocks, and the partner's, side by side
        let (mine, theirs) = (rank & !(mask - 1), partner & !(mask - 1));
        let (out, into) = two_places(p, recv, group(mine, mask), group(theirs, mask))?;
        let t = step_tag(seq, k);
        p.sendrecv_into(partner, t, out, partner, t, into)?;
    }
    Ok(())
}

/// `recv` when it holds exactly `size` blocks of `len` bytes.
pub(crate) fn blocks_of<'b, P: PointToPoint + ?Sized>(
    p: &P,
    op: &str,
    recv: Option<&'b mut [u8]>,
    len: usize,
) -> Result<&'b mut [u8], P::Error> {
    let size = p.size();
    match recv {
        Some(r) if r.len() == len * size => Ok(r),
        Some(r) => {
            Err(p.malformed(format!("{op}: the receive buffer holds {} bytes, not {size} x {len}", r.len())))
        }
        None => Err(p.malformed(format!("{op}: the root passed no receive buffer"))),
    }
}

/// `buf`'s `size` blocks of `len` bytes (`buf` holds `size * len`), each with its number; `size`
/// empty ones when `len` is 0.
fn numbered_blocks(buf: &mut [u8], len: usize, size: usize) -> Vec<(usize, &mut [u8])> {
    if len == 0 {
        return (0..size).map(|r| (r, <&mut [u8]>::default())).collect();
    }
    buf.chunks_mut(len).take(size).enumerate().collect()
}

/// The offsets of `size` blocks of `len` bytes (see [`crate::blocks::offsets`]).
fn equal_offsets(len: usize, size: usize) -> Vec<usize> {
    (0..=size).map(|r| r * len).collect()
}

/// The offsets of the blocks of `lens` in a receive buffer of `recv` bytes, when they are
/// `size` lengths that fill it with this rank's own, `(rank, len)`, as long as its block.
fn offsets_of<P: PointToPoint + ?Sized>(
    p: &P,
    op: &str,
    recv: usize,
    lens: &[usize],
    (rank, len): (usize, usize),
) -> Result<Vec<usize>, P::Error> {
    let size = p.size();
    if !crate::blocks::fills(size, recv, lens) || lens.get(rank) != Some(&len) {
        return Err(p.malformed(format!(
            "{op}: {size} blocks of {lens:?} bytes in a buffer of {recv} bytes, this rank's own {len} bytes long"
        )));
    }
    // `fills` checked that the total does not overflow
    crate::blocks::offsets(lens).ok_or_else(|| p.malformed(format!("{op}: the lengths overflow")))
}

/// `recv` cut into places of `lens` bytes, when [`offsets_of`] takes them.
pub(crate) fn places_of<'b, P: PointToPoint + ?Sized>(
    p: &P,
    op: &str,
    recv: &'b mut [u8],
    lens: &[usize],
    own: (usize, usize),
) -> Result<Vec<&'b mut [u8]>, P::Error> {
    offsets_of(p, op, recv.len(), lens, own)?;
    // the lengths fill `recv` (checked above)
    crate::blocks::cut_mut(recv, lens)
        .ok_or_else(|| p.malformed(format!("{op}: the lengths do not fill the buffer")))
}

/// Places `a` and `b` of `buf`, both writable (the first is often only read); they lie within
/// it and apart, as places of one rank's checked offsets do.
fn two_places<'b, P: PointToPoint + ?Sized>(
    p: &P,
    buf: &'b mut [u8],
    a: std::ops::Range<usize>,
    b: std::ops::Range<usize>,
) -> Result<(&'b mut [u8], &'b mut [u8]), P::Error> {
    let n = buf.len();
    let why = || p.malformed(format!("allgather: places {a:?} and {b:?} of a buffer of {n} bytes"));
    crate::blocks::two_mut(buf, a.clone(), b.clone()).ok_or_else(why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{self, LARGE_SIZES, SIZES, bytes, run};
    use crate::threads::{ThreadError, ThreadRank};

    /// Every rank ends with the root's bytes, for every size, root and a few lengths.
    #[test]
    fn broadcast_every_size_and_root() {
        for size in SIZES {
            for root in 0..size {
                for len in [0, 1, 1000] {
                    let data = bytes((size * 31 + root) as u64, len);
                    let out = run(size, |p| {
                        let mut buf = if p.rank() == root { data.clone() } else { vec![0; len] };
                        broadcast_into(&p, 3, root, &mut buf).map(|()| buf)
                    });
                    for got in out {
                        assert_eq!(got.expect("broadcast"), data, "size {size} root {root} len {len}");
                    }
                }
            }
        }
    }

    /// The root gets every block in rank order; each rank gets its block back from scatter.
    #[test]
    fn gather_and_scatter_every_size_and_root() {
        for size in SIZES {
            for root in 0..size {
                for len in [0, 3, 4096] {
                    let all: Vec<u8> = (0..size).flat_map(|r| bytes(r as u64 + 7, len)).collect();
                    let out = run(size, |p| {
                        let r = p.rank();
                        let mine = &all[r * len..(r + 1) * len];
                        let mut gathered = vec![0; size * len];
                        let recv = (r == root).then_some(&mut gathered[..]);
                        gather_into(&p, 0, root, mine, recv).expect("gather");
                        let mut back = vec![0xff; len];
                        let send = (r == root).then_some(&gathered[..]);
                        scatter_into(&p, 1, root, send, &mut back).expect("scatter");
                        (r == root).then_some(gathered).is_none_or(|g| g == all) && back == mine
                    });
                    assert!(out.iter().all(|&ok| ok), "size {size} root {root} len {len}: {out:?}");
                }
            }
        }
    }

    /// With blocks of lengths that vary by rank (none among them), the root gets every block
    /// in its place, and each rank its own back from the scatter, for every size and root.
    #[test]
    fn gatherv_and_scatterv_every_size_and_root() {
        for size in SIZES {
            let lens: Vec<usize> = (0..size).map(testutil::varying_len).collect();
            let blocks: Vec<Vec<u8>> = (0..size).map(|r| bytes(r as u64 + 3, lens[r])).collect();
            let all = blocks.concat();
            for root in 0..size {
                let out = run(size, |p| {
                    let r = p.rank();
                    let mut gathered = vec![0; all.len()];
                    let recv = (r == root).then_some((&mut gathered[..], &lens[..]));
                    gatherv_into(&p, 0, root, &blocks[r], recv).expect("gatherv");
                    let mut back = vec![0xff; lens[r]];
                    let send = (r == root).then_some((&gathered[..], &lens[..]));
                    scatterv_into(&p, 1, root, send, &mut back).expect("scatterv");
                    (r != root || gathered == all) && back == blocks[r]
                });
                assert!(out.iter().all(|&ok| ok), "size {size} root {root}: {out:?}");
            }
        }
    }

    /// Lengths that do not fit, on the root or between ranks, are errors, not panics or hangs.
    #[test]
    fn gatherv_and_scatterv_wrong_lengths() {
        // the root's lengths do not fill its buffer, or make its own block another length
        for lens in [&[2, 2][..], &[1, 3], &[2], &[usize::MAX, 5]] {
            let out = run(2, |p| {
                let mut buf = [0u8; 4];
                if p.rank() == 0 {
                    let g = gatherv_into(&p, 0, 0, &[1, 2], Some((&mut buf[..3], lens)));
                    let s = scatterv_into(&p, 1, 0, Some((&[0; 3][..], lens)), &mut buf[..2]);
                    vec![g.err(), s.err()]
                } else {
                    vec![]
                }
            });
            assert!(out[0].iter().all(|e| matches!(e, Some(ThreadError::Malformed(_)))), "{lens:?}: {out:?}");
        }
        // rank 1's block longer than the root's place for it: the root fails; scattered to a
        // buffer of another length: rank 1 fails
        let out = run(2, |p| {
            let mut buf = [0u8; 5];
            let recv = (p.rank() == 0).then_some((&mut buf[..], &[2, 3][..]));
            let block = if p.rank() == 0 { &[1, 2][..] } else { &[1, 2, 3, 4][..] };
            let g = gatherv_into(&p, 0, 0, block, recv).err();
            let send = (p.rank() == 0).then_some((&[0u8; 5][..], &[2, 3][..]));
            let mut into = if p.rank() == 0 { vec![0; 2] } else { vec![0; 1] };
            (g, scatterv_into(&p, 1, 0, send, &mut into).err())
        });
        assert!(matches!(out[0].0, Some(ThreadError::Malformed(_))), "{out:?}");
        assert!(matches!(out[1].1, Some(ThreadError::Malformed(_))), "{out:?}");
    }

    /// Every rank gets every block in rank order (by doubling only on a power of two of ranks).
    #[test]
    fn allgather_every_size() {
        testutil::allgather_every_size(
            "ring",
            |p, block, recv| allgather_ring_into(p, 2, block, recv),
            |_| true,
        );
        let doubling =
            |p: &ThreadRank, block: &[u8], recv: &mut [u8]| allgather_doubling_into(p, 3, block, recv);
        testutil::allgather_every_size("doubling", doubling, usize::is_power_of_two);
    }

    /// Blocks of lengths that vary by rank, around the ring and by doubling.
    #[test]
    fn allgatherv_every_size() {
        let ring = |p: &ThreadRank, block: &[u8], recv: &mut [u8], lens: &[usize]| {
            allgatherv_ring_into(p, 2, block, recv, lens)
        };
        testutil::allgatherv_every_size("ring", ring, |_| true);
        let doubling = |p: &ThreadRank, block: &[u8], recv: &mut [u8], lens: &[usize]| {
            allgatherv_doubling_into(p, 3, block, recv, lens)
        };
        testutil::allgatherv_every_size("doubling", doubling, usize::is_power_of_two);
    }

    /// Two ranks with blocks from the pair split to one exchange piece: exchanged whole, each
    /// rank's own block copied beside the exchange.
    #[test]
    fn two_ranks_whole() {
        use crate::tuning::{ALLGATHER_PAIR_SPLIT, EXCHANGE_PIECE};
        for len in [ALLGATHER_PAIR_SPLIT, ALLGATHER_PAIR_SPLIT + 3, EXCHANGE_PIECE] {
            let all: Vec<u8> = (0..2).flat_map(|r| bytes(r as u64 + 11, len)).collect();
            let out = run(2, |p| {
                let r = p.rank();
                let mut recv = vec![0; 2 * len];
                allgather_ring_into(&p, 1, &all[r * len..(r + 1) * len], &mut recv).map(|()| recv)
            });
            for got in out {
                assert!(got.expect("allgather") == all, "len {len}");
            }
        }
    }

    /// Several MiB per rank (between two ranks exchanged in pieces, the last one of 5 bytes).
    #[test]
    fn large() {
        for size in LARGE_SIZES {
            let len = 3 * 1024 * 1024 + 5;
            let all: Vec<u8> = (0..size).flat_map(|r| bytes(r as u64, len)).collect();
            let out = run(size, |p| {
                let r = p.rank();
                let mut recv = vec![0; size * len];
                allgather_ring_into(&p, 0, &all[r * len..(r + 1) * len], &mut recv).expect("allgather");
                let mut twice = vec![0; size * len];
                if size.is_power_of_two() {
                    let mine = &all[r * len..(r + 1) * len];
                    allgather_doubling_into(&p, 2, mine, &mut twice).expect("allgather");
                } else {
                    twice.clone_from(&all);
                }
                let mut buf = if r == 0 { all[..len].to_vec() } else { vec![0; len] };
                broadcast_into(&p, 1, 0, &mut buf).expect("broadcast");
                recv == all && twice == all && buf == all[..len]
            });
            assert!(out.iter().all(|&ok| ok), "size {size}");
        }
    }

    /// Several MiB per rank, of lengths that vary by rank, in every `v` collective.
    #[test]
    fn large_varying() {
        for size in LARGE_SIZES {
            let lens: Vec<usize> = (0..size).map(|r| (1 << 20) + r * 4099).collect();
            let blocks: Vec<Vec<u8>> = (0..size).map(|r| bytes(r as u64 + 1, lens[r])).collect();
            let all = blocks.concat();
            let out = run(size, |p| {
                let r = p.rank();
                let mut ring = vec![0; all.len()];
                allgatherv_ring_into(&p, 0, &blocks[r], &mut ring, &lens).expect("ring");
                let mut direct = vec![0; all.len()];
                crate::direct::allgatherv_into(&p, 1, &blocks[r], &mut direct, &lens).expect("direct");
                let mut twice = all.clone();
                if size.is_power_of_two() {
                    twice.fill(0);
                    allgatherv_doubling_into(&p, 2, &blocks[r], &mut twice, &lens).expect("doubling");
                }
                let mut gathered = vec![0; if r == 1 % size { all.len() } else { 0 }];
                let recv = (r == 1 % size).then_some((&mut gathered[..], &lens[..]));
                gatherv_into(&p, 3, 1 % size, &blocks[r], recv).expect("gatherv");
                let mut back = vec![0; lens[r]];
                scatterv_into(&p, 4, 0, (r == 0).then_some((&all[..], &lens[..])), &mut back)
                    .expect("scatterv");
                ring == all
                    && direct == all
                    && twice == all
                    && (r != 1 % size || gathered == all)
                    && back == blocks[r]
            });
            assert!(out.iter().all(|&ok| ok), "size {size}: {out:?}");
        }
    }

    /// A message of the wrong length, or a wrongly sized buffer, is an error, not a panic.
    #[test]
    fn wrong_lengths() {
        let out = run(2, |p| {
            if p.rank() == 1 {
                p.send(0, tag(0, 0), b"four").expect("send");
                None
            } else {
                Some(broadcast_into(&p, 0, 1, &mut [0u8; 3]))
            }
        });
        assert!(matches!(out[0], Some(Err(ThreadError::Malformed(_)))), "{out:?}");
        let out = run(2, |p| {
            let mut small = [0u8; 3];
            let recv = (p.rank() == 0).then_some(&mut small[..]);
            gather_into(&p, 0, 0, &[1, 2], recv).err()
        });
        assert!(matches!(out[0], Some(ThreadError::Malformed(_))), "{out:?}");
        let out = run(2, |p| allgather_ring_into(&p, 0, &[1], &mut [0u8; 3]).err());
        assert!(out.iter().all(|e| matches!(e, Some(ThreadError::Malformed(_)))), "{out:?}");
    }
}
