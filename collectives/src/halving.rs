//! Rabenseifner's allreduce: reduce-scatter by recursive halving, then allgather by recursive
//! doubling, for equal-length buffers of fixed-size elements and a commutative, associative
//! element-wise operation.
//!
//! It moves as many bytes as the ring ([`allreduce_ring_into`](crate::elementwise::allreduce_ring_into))
//! but in `2 log2(size)` steps rather than `2 (size - 1)`: with more ranks than cores every step
//! waits for the scheduler to wake each rank, so fewer, larger steps win (see
//! [`ALLREDUCE_HALVING_MIN_RANKS`](crate::tuning::ALLREDUCE_HALVING_MIN_RANKS)).
//!
//! With `size` not a power of two, the first `2 * (size - pof2)` ranks pair up first (as MPICH
//! does): each even one sends its buffer to the odd one after it, which folds it into its own and
//! stands for both; the even one gets the result from it at the end. The `pof2` remaining ranks
//! cut the buffer into `pof2` segments of whole elements. In halving step `k` (distance
//! `pof2 / 2^(k+1)`), each rank keeps one half of the segments it is responsible for, sends the
//! other half to its partner and folds the partner's copy of the kept half into its own; at the
//! end rank `v` holds segment `v` fully reduced, reduced in one place only, so that every rank
//! ends with the same bits whatever the operation does with signed zeros or NaNs. The doubling
//! steps then exchange reduced segments until every rank holds them all.

use crate::p2p::{PointToPoint, step_tag};
use crate::partition::{bytes_of_parts, disjoint_ranges, slice, slice_mut};

/// As [`allreduce_ring_into`](crate::elementwise::allreduce_ring_into), by recursive halving and
/// doubling: every rank ends with the element-wise reduction of every rank's `send` in `recv`.
///
/// `send` and `recv` have the same length, a whole number of `elem_size`-byte elements, on every
/// rank; `op(acc, other)` folds `other` into `acc` and must be commutative and associative.
///
/// Errors: a transport error, `elem_size == 0`, lengths that are not whole numbers of elements or
/// differ between `send` and `recv`, or a message of the wrong length from a peer (ranks passing
/// different lengths).
pub fn allreduce_halving_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    send: &[u8],
    recv: &mut [u8],
    elem_size: usize,
    op: &dyn Fn(&mut [u8], &[u8]),
) -> Result<(), P::Error> {
    let (rank, size) = (p.rank(), p.size());
    if rank >= size {
        return Err(p.malformed(format!("allreduce: rank {rank} out of range for {size} ranks")));
    }
    if elem_size == 0 || send.len() % elem_size != 0 || send.len() != recv.len() {
        let (s, r) = (send.len(), recv.len());
        return Err(p.malformed(format!(
            "allreduce: {s} bytes to send and {r} to receive into, in {elem_size}-byte elements"
        )));
    }
    if size == 1 {
        recv.copy_from_slice(send);
        return Ok(());
    }
    let pof2 = 1usize << size.ilog2();
    let folded = 2 * (size - pof2);
    let steps = pof2.ilog2() as usize;
    let unfold = step_tag(seq, 2 * steps + 1);
    // pair up the ranks beyond a power of two: the even one of each pair sits the steps out
    let mut own_in_recv = false;
    if rank < folded {
        if rank % 2 == 0 {
            p.send(rank + 1, step_tag(seq, 0), send)?;
            return p.recv_into(rank + 1, unfold, recv);
        }
        if let Err(e) = p.recv_into(rank - 1, step_tag(seq, 0), recv) {
            // the even rank waits for the result: this rank's own buffer makes it fail too
            let _ = p.send(rank - 1, unfold, send);
            return Err(e);
        }
        op(recv, send);
        own_in_recv = true;
    }
    let v = if rank < folded { rank / 2 } else { rank - folded / 2 };
    let real = |w: usize| if w < folded / 2 { 2 * w + 1 } else { w + folded / 2 };
    let elems = send.len() / elem_size;
    let segments = |first: usize, count: usize| bytes_of_parts(elems, pof2, first, count, elem_size);
    // reduce-scatter: the segments this rank answers for halve at every step
    let (mut lo, mut count) = (0, pof2);
    let mut scratch = Vec::new();
    for k in 0..steps {
        let half = count / 2;
        let mask = pof2 >> (k + 1);
        let partner = real(v ^ mask);
        let (keep, give) = if v & mask == 0 { (lo, lo + half) } else { (lo + half, lo) };
        let (keep_range, give_range) = (segments(keep, half), segments(give, half));
        let t = step_tag(seq, 1 + k);
        if own_in_recv {
            // the partner's part lands aside, then this rank's part (in `recv`) takes it in
            scratch.resize(keep_range.len(), 0);
            let out = slice(p, recv, give_range, "allreduce")?;
            p.sendrecv_into(partner, t, out, partner, t, &mut scratch)?;
            op(slice_mut(p, recv, keep_range, "allreduce")?, &scratch);
        } else {
            // this rank's data is still `send`: the partner's part lands in place in `recv`
            let out = slice(p, send, give_range, "allreduce")?;
            let into = slice_mut(p, recv, keep_range.clone(), "allreduce")?;
            p.sendrecv_into(partner, t, out, partner, t, into)?;
            op(into, slice(p, send, keep_range, "allreduce")?);
            own_in_recv = true;
        }
        (lo, count) = (keep, half);
    }
    // allgather: the reduced segments double at every step
    for k in 0..steps {
        let mask = 1usize << k;
        let partner = real(v ^ mask);
        let theirs = (v ^ mask) & !(mask - 1);
        let (out_range, in_range) = (segments(lo, mask), segments(theirs, mask));
        let t = step_tag(seq, 1 + steps + k);
        let (out, into) = disjoint_ranges(p, recv, out_range, in_range, "allreduce")?;
        p.sendrecv_into(partner, t, out, partner, t, into)?;
        lo = lo.min(theirs);
    }
    if rank < folded {
        p.send(rank - 1, unfold, recv)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{LARGE_SIZES, SIZES, add_u64, reference, run, u64s};
    use crate::threads::ThreadError;

    /// Every rank count, powers of two or not, and lengths with fewer elements than segments.
    #[test]
    fn every_size() {
        for size in SIZES {
            for len in [0, 8, 24, 8 * 17 + 8, 8 * 1000] {
                let want = reference(size, len, u64s, add_u64);
                let out = run(size, |p| {
                    let mut got = vec![0xAA; len];
                    allreduce_halving_into(&p, 3, &u64s(p.rank(), len), &mut got, 8, &add_u64).map(|()| got)
                });
                for (r, got) in out.into_iter().enumerate() {
                    assert!(got.expect("allreduce") == want, "size {size} len {len} rank {r}");
                }
            }
        }
    }

    /// Several MiB.
    #[test]
    fn large() {
        let len = 4 * 1024 * 1024 + 8 * 3;
        for size in LARGE_SIZES {
            let want = reference(size, len, u64s, add_u64);
            run(size, |p| {
                let mut got = vec![0; len];
                allreduce_halving_into(&p, 0, &u64s(p.rank(), len), &mut got, 8, &add_u64)
                    .expect("allreduce");
                assert!(got == want, "size {size}");
            });
        }
    }

    /// Ranks passing different lengths get errors, not a hang; bad arguments are errors.
    #[test]
    fn mismatches_and_bad_arguments() {
        for size in [2, 3, 4, 6] {
            let out = run(size, |p| {
                let len = 8 * (3 + p.rank());
                allreduce_halving_into(&p, 0, &vec![0; len], &mut vec![0; len], 8, &add_u64)
            });
            assert!(out.iter().any(|r| matches!(r, Err(ThreadError::Malformed(_)))), "{out:?}");
        }
        let out = run(1, |p| {
            [
                allreduce_halving_into(&p, 0, &[0; 12], &mut [0; 12], 8, &add_u64).err(),
                allreduce_halving_into(&p, 0, &[0; 8], &mut [0; 8], 0, &add_u64).err(),
                allreduce_halving_into(&p, 0, &[0; 16], &mut [0; 8], 8, &add_u64).err(),
            ]
        });
        assert!(out[0].iter().all(|e| matches!(e, Some(ThreadError::Malformed(_)))), "{out:?}");
    }
}
