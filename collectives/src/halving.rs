//! Rabenseifner's allreduce and reduce: reduce-scatter by recursive halving, then allgather by
//! recursive doubling (allreduce) or a gather to the root (reduce), for equal-length buffers of
//! fixed-size elements and a commutative, associative element-wise operation.
//!
//! They move as many bytes as the ring ([`allreduce_ring_into`](crate::elementwise::allreduce_ring_into),
//! [`reduce_scatter_gather`](crate::elementwise::reduce_scatter_gather)) but reduce-scatter in
//! `log2(size)` steps rather than `size - 1`: with more ranks than cores every step waits for the
//! scheduler to wake each rank, so fewer, larger steps win (see
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
//! steps then exchange reduced segments until every rank holds them all; a reduce instead sends
//! each segment to the root.

use crate::p2p::{PointToPoint, step_tag};
use crate::partition::{bytes_of_parts, disjoint_ranges, slice, slice_mut};
use std::ops::Range;

/// A halving step's parts of the buffer ([`Halving::split_step`]): the half given away, the
/// half kept, and room for the partner's copy of the kept half if there is any.
type StepParts<'a> = (&'a [u8], &'a mut [u8], Option<&'a mut [u8]>);

/// One rank's part in a reduction by recursive halving.
struct Halving {
    rank: usize,
    /// The largest power of two not above the group's size, and how many ranks pair up first.
    pof2: usize,
    folded: usize,
    steps: usize,
    elems: usize,
    elem_size: usize,
    what: &'static str,
}

impl Halving {
    /// Checks the arguments: `len` bytes of `elem_size`-byte elements.
    fn new<P: PointToPoint + ?Sized>(
        p: &P,
        len: usize,
        elem_size: usize,
        what: &'static str,
    ) -> Result<Halving, P::Error> {
        let (rank, size) = (p.rank(), p.size());
        if rank >= size {
            return Err(p.malformed(format!("{what}: rank {rank} out of range for {size} ranks")));
        }
        if elem_size == 0 || len % elem_size != 0 {
            return Err(p.malformed(format!(
                "{what}: {len} bytes is not a whole number of {elem_size}-byte elements"
            )));
        }
        let pof2 = 1usize << size.ilog2();
        let steps = pof2.ilog2() as usize;
        Ok(Halving { rank, pof2, folded: 2 * (size - pof2), steps, elems: len / elem_size, elem_size, what })
    }

    /// This rank's number among the `pof2` that take part, `None` for an even rank that pairs up.
    fn v(&self) -> Option<usize> {
        let (rank, folded) = (self.rank, self.folded);
        if rank >= folded { Some(rank - folded / 2) } else { (rank % 2 == 1).then_some(rank / 2) }
    }

    /// The rank that takes part as number `w`.
    fn real(&self, w: usize) -> usize {
        if w < self.folded / 2 { 2 * w + 1 } else { w + self.folded / 2 }
    }

    /// Byte range of segments `first..first + count`.
    fn segments(&self, first: usize, count: usize) -> Range<usize> {
        bytes_of_parts(self.elems, self.pof2, first, count, self.elem_size)
    }

    /// The parts of `acc` for a halving step over segments `lo..lo + count`: the half given
    /// away, the half kept (the lower one if `keep_low`), and room as long as the kept half
    /// outside the step's segments (given away in earlier steps), if there is any; `None` if
    /// the segments lie outside `acc`.
    fn split_step<'a>(
        &self,
        acc: &'a mut [u8],
        lo: usize,
        count: usize,
        keep_low: bool,
    ) -> Option<StepParts<'a>> {
        let span = self.segments(lo, count);
        let cut = self.segments(lo, count / 2).end.checked_sub(span.start)?;
        let (head, rest) = acc.split_at_mut_checked(span.start)?;
        let (mid, tail) = rest.split_at_mut_checked(span.len())?;
        let (lower, upper) = mid.split_at_mut_checked(cut)?;
        let (give, keep) = if keep_low { (upper, lower) } else { (lower, upper) };
        let need = keep.len();
        let aside = if head.len() >= need { head.get_mut(..need) } else { tail.get_mut(..need) };
        Some((give, keep, aside))
    }

    /// Pairs up and reduce-scatters `send` into `acc` (as long): afterwards a rank that takes
    /// part as number `v` (returned) holds segment `v` of `acc` reduced over every rank; an even
    /// rank that paired up has sent its `send` to the odd rank after it and returns `None`.
    fn reduce_scatter<P: PointToPoint + ?Sized>(
        &self,
        p: &P,
        seq: u32,
        send: &[u8],
        acc: &mut [u8],
        op: &dyn Fn(&mut [u8], &[u8]),
        unfold: u32,
    ) -> Result<Option<usize>, P::Error> {
        let (rank, what) = (self.rank, self.what);
        let Some(v) = self.v() else {
            p.send(rank + 1, step_tag(seq, 0), send)?;
            return Ok(None);
        };
        let mut own_in_acc = false;
        if rank < self.folded {
            if let Err(e) = p.recv_into(rank - 1, step_tag(seq, 0), acc) {
                // the even rank waits for an answer: this rank's own buffer makes it fail too
                let _ = p.send(rank - 1, unfold, send);
                return Err(e);
            }
            op(acc, send);
            own_in_acc = true;
        }
        let (mut lo, mut count) = (0, self.pof2);
        let mut scratch = Vec::new();
        for k in 0..self.steps {
            let half = count / 2;
            let mask = self.pof2 >> (k + 1);
            let partner = self.real(v ^ mask);
            let (keep, give) = if v & mask == 0 { (lo, lo + half) } else { (lo + half, lo) };
            let (keep_range, give_range) = (self.segments(keep, half), self.segments(give, half));
            let t = step_tag(seq, 1 + k);
            if own_in_acc {
                // the partner's part lands aside, then this rank's part (in `acc`) takes it in:
                // in a part of `acc` given away in an earlier step (sent, so free until the
                // allgather), or else in a scratch buffer (a rank that paired up, in its first
                // step; zeroing a new one took 1% of an 8-rank 1 MiB allreduce)
                let (out, into, aside) = self
                    .split_step(acc, lo, count, keep == lo)
                    .ok_or_else(|| p.malformed(format!("{what}: segments outside the buffer")))?;
                let theirs = match aside {
                    Some(aside) => aside,
                    None => {
                        scratch.resize(into.len(), 0);
                        &mut scratch[..]
                    }
                };
                p.sendrecv_into(partner, t, out, partner, t, theirs)?;
                op(into, theirs);
            } else {
                // this rank's data is still `send`: the partner's part lands in place in `acc`
                let out = slice(p, send, give_range, what)?;
                let into = slice_mut(p, acc, keep_range.clone(), what)?;
                p.sendrecv_into(partner, t, out, partner, t, into)?;
                op(into, slice(p, send, keep_range, what)?);
                own_in_acc = true;
            }
            (lo, count) = (keep, half);
        }
        Ok(Some(lo))
    }
}

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
    let h = Halving::new(p, send.len(), elem_size, "allreduce")?;
    crate::elementwise::same_length(p, "allreduce", send, recv)?;
    if p.size() == 1 {
        recv.copy_from_slice(send);
        return Ok(());
    }
    let unfold = step_tag(seq, 2 * h.steps + 1);
    let Some(mut lo) = h.reduce_scatter(p, seq, send, recv, op, unfold)? else {
        return p.recv_into(h.rank + 1, unfold, recv);
    };
    let v = lo;
    // allgather: the reduced segments double at every step
    for k in 0..h.steps {
        let mask = 1usize << k;
        let partner = h.real(v ^ mask);
        let theirs = (v ^ mask) & !(mask - 1);
        let (out_range, in_range) = (h.segments(lo, mask), h.segments(theirs, mask));
        let t = step_tag(seq, 1 + h.steps + k);
        let (out, into) = disjoint_ranges(p, recv, out_range, in_range, "allreduce")?;
        p.sendrecv_into(partner, t, out, partner, t, into)?;
        lo = lo.min(theirs);
    }
    if h.rank < h.folded {
        p.send(h.rank - 1, unfold, recv)?;
    }
    Ok(())
}

/// As [`reduce_scatter_gather`](crate::elementwise::reduce_scatter_gather), by recursive
/// halving: every rank's `send` reduced element-wise into the root's `recv` (`Some` at the root,
/// as long as `send`; ignored elsewhere), each reduced segment sent straight to the root.
///
/// Errors: as [`allreduce_halving_into`], `root` out of range, or no `recv` of `send`'s length
/// at the root.
pub fn reduce_halving_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    root: usize,
    send: &[u8],
    recv: Option<&mut [u8]>,
    elem_size: usize,
    op: &dyn Fn(&mut [u8], &[u8]),
) -> Result<(), P::Error> {
    let h = Halving::new(p, send.len(), elem_size, "reduce")?;
    if root >= p.size() {
        return Err(p.malformed(format!("reduce: root {root} out of range for {} ranks", p.size())));
    }
    // a root without a fitting buffer still takes part, on one of its own, so that no rank
    // waits for it in vain, and fails at the end
    let fits = h.rank != root || recv.as_ref().is_some_and(|r| r.len() == send.len());
    let unfit = || p.malformed(format!("reduce: the root needs a receive buffer of {} bytes", send.len()));
    let mut own = Vec::new();
    let acc: &mut [u8] = match recv {
        Some(r) if h.rank == root && fits => r,
        _ => {
            own.resize(send.len(), 0);
            &mut own
        }
    };
    if p.size() == 1 {
        acc.copy_from_slice(send);
        return if fits { Ok(()) } else { Err(unfit()) };
    }
    let gather = step_tag(seq, 1 + h.steps);
    let mine = h.reduce_scatter(p, seq, send, acc, op, gather)?;
    if h.rank != root {
        if let Some(v) = mine {
            p.send(root, gather, slice(p, acc, h.segments(v, 1), "reduce")?)?;
        }
        return Ok(());
    }
    for w in (0..h.pof2).filter(|&w| Some(w) != mine) {
        p.recv_into(h.real(w), gather, slice_mut(p, acc, h.segments(w, 1), "reduce")?)?;
    }
    if fits { Ok(()) } else { Err(unfit()) }
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

    /// The reduce: every rank count and root, the root alone getting the result.
    #[test]
    fn reduce_every_size_and_root() {
        for size in SIZES {
            for len in [0, 8, 24, 8 * 17 + 8, 8 * 1000] {
                let want = reference(size, len, u64s, add_u64);
                for root in 0..size {
                    let out = run(size, |p| {
                        let mut got = vec![0xAA; len];
                        let recv = (p.rank() == root).then_some(&mut got[..]);
                        reduce_halving_into(&p, 5, root, &u64s(p.rank(), len), recv, 8, &add_u64)
                            .map(|()| got)
                    });
                    let got = out.into_iter().nth(root).expect("the root's").expect("reduce");
                    assert!(got == want, "size {size} len {len} root {root}");
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
                let mut reduced = vec![0; len];
                let recv = (p.rank() == size - 1).then_some(&mut reduced[..]);
                reduce_halving_into(&p, 1, size - 1, &u64s(p.rank(), len), recv, 8, &add_u64)
                    .expect("reduce");
                assert!(p.rank() != size - 1 || reduced == want, "reduce, size {size}");
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
        // a root without a buffer fails alone, after taking part
        for size in [4, 5] {
            let out = run(size, |p| reduce_halving_into(&p, 0, 1, &[0; 64], None, 8, &add_u64).is_err());
            assert_eq!(out, (0..size).map(|r| r == 1).collect::<Vec<_>>(), "size {size}");
        }
        for size in [2, 3, 5] {
            let out = run(size, |p| {
                let len = 8 * (3 + p.rank());
                let mut got = vec![0; len];
                reduce_halving_into(&p, 0, 0, &vec![0; len], Some(&mut got), 8, &add_u64)
            });
            assert!(out.iter().any(|r| matches!(r, Err(ThreadError::Malformed(_)))), "{out:?}");
        }
        let out = run(1, |p| {
            [
                reduce_halving_into(&p, 0, 1, &[0; 8], Some(&mut [0; 8]), 8, &add_u64).err(),
                reduce_halving_into(&p, 0, 0, &[0; 8], None, 8, &add_u64).err(),
                reduce_halving_into(&p, 0, 0, &[0; 8], Some(&mut [0; 16]), 8, &add_u64).err(),
            ]
        });
        assert!(out[0].iter().all(|e| matches!(e, Some(ThreadError::Malformed(_)))), "{out:?}");
    }
}
