//! Element-wise prefix reductions into place (`MPI_Scan` and `MPI_Exscan` of buffers), by
//! recursive doubling as MPICH's: in step `k` a rank exchanges with rank `rank ^ 2^k` the
//! combination over its block of `2^k` ranks, and folds what a lower rank sent into its result.
//! `log2(size)` exchanges of the whole buffer, each received into one scratch buffer; for any
//! number of ranks. Also along the chain of ranks, for ranks that share cores. Both fold the
//! ranks' contributions in rank order, so the operation need not be commutative.

use crate::p2p::{PointToPoint, step_tag};

/// An element-wise operation of the scans, applied either way round: `after(acc, x)` leaves in
/// `acc` the combination of `acc` then `x`, `before(acc, x)` that of `x` then `acc`. For a
/// commutative operation the two are one ([`Fold::commutative`]).
#[derive(Clone, Copy)]
pub struct Fold<'a> {
    /// `acc = acc (op) x`.
    pub after: &'a dyn Fn(&mut [u8], &[u8]),
    /// `acc = x (op) acc`.
    pub before: &'a dyn Fn(&mut [u8], &[u8]),
}

impl<'a> Fold<'a> {
    /// The fold of a commutative operation, which is the same either way round.
    pub fn commutative(op: &'a dyn Fn(&mut [u8], &[u8])) -> Self {
        Self { after: op, before: op }
    }
}

/// Leaves in `recv` the combination by `op` of the `send` of ranks `0..=rank` (`inclusive`) or
/// `0..rank` (else; rank 0's `recv` is left as it was), in rank order: `op` must be
/// associative, need not be commutative (what comes from lower ranks is folded in before, the
/// rest after).
///
/// Only what a rank will use moves: a step's higher rank sends the lower one its combination
/// only if the lower one has steps left, and the first combination from below lands straight
/// in `recv`; the own `send` is folded in last. Between two ranks that is one message, received
/// into `recv`, and one fold.
///
/// Errors: a `recv` of another length than `send`, or a message of another length from a peer.
pub fn scan_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    send: &[u8],
    recv: &mut [u8],
    inclusive: bool,
    op: Fold<'_>,
) -> Result<(), P::Error> {
    let (rank, size) = (p.rank(), p.size());
    crate::elementwise::same_length(p, "scan", send, recv)?;
    // whether rank `r` has an exchange after the one of `mask`
    let later = |r: usize, mask: usize| {
        std::iter::successors(mask.checked_mul(2), |m| m.checked_mul(2))
            .take_while(|&m| m < size)
            .any(|m| r ^ m < size)
    };
    // the combination over this rank's block of ranks so far (`None`: still `send` alone), a
    // buffer for what peers send, and whether `recv` holds a combination from below yet
    let (mut partial, mut scratch): (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
    let mut holds = false;
    let masks = std::iter::successors(Some(1usize), |m| m.checked_mul(2)).take_while(|&m| m < size);
    for (step, mask) in masks.enumerate() {
        let peer = rank ^ mask;
        if peer >= size {
            continue;
        }
        let t = step_tag(seq, step);
        let (below, goes_on) = (peer < rank, later(rank, mask));
        // a lower rank sends always (its higher peer folds it in); a higher one only when the
        // lower has steps left
        let sends = !below || later(peer, mask);
        let receives = below || goes_on;
        let out = partial.as_deref().unwrap_or(send);
        if !receives {
            p.send(peer, t, out)?;
        } else {
            // the first combination from below goes straight into `recv`
            let into_recv = below && !holds;
            let mut buf =
                if into_recv { None } else { Some(scratch.take().unwrap_or_else(|| vec![0; send.len()])) };
            let theirs: &mut [u8] = match buf.as_mut() {
                Some(b) => b,
                None => &mut *recv,
            };
            if sends {
                p.sendrecv_into(peer, t, out, peer, t, theirs)?;
            } else {
                p.recv_into(peer, t, theirs)?;
            }
            if below && holds {
                // the lower ranks' block goes before those received so far
                (op.before)(recv, buf.as_deref().unwrap_or_default());
            }
            if goes_on {
                // the block's combination for the next steps
                let block = partial.get_or_insert_with(|| send.to_vec());
                let fold = if below { op.before } else { op.after };
                fold(block, buf.as_deref().unwrap_or(recv));
            }
            holds |= below;
            // kept for the next steps (a step received into `recv` took none)
            if buf.is_some() {
                scratch = buf;
            }
        }
    }
    if inclusive {
        if holds {
            (op.after)(recv, send);
        } else {
            recv.copy_from_slice(send);
        }
    }
    Ok(())
}

/// As [`scan_into`], along the chain of ranks: rank `r` receives the combination over ranks
/// `0..r` from rank `r - 1` straight into `recv`, folds its own `send` in, and passes the
/// combination over `0..=r` on to rank `r + 1`, in pieces of `piece` bytes, so that ranks
/// work on different pieces at once. `size - 1` messages a piece and one fold a rank, where
/// recursive doubling sends `log2(size)` whole buffers from every rank and folds each twice:
/// for ranks that share cores, whose total work is the time. Each rank folds its own after the
/// ranks before it (`op.after` alone).
///
/// Errors: as [`scan_into`].
pub fn chain_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    send: &[u8],
    recv: &mut [u8],
    inclusive: bool,
    op: Fold<'_>,
    piece: usize,
) -> Result<(), P::Error> {
    let (rank, size) = (p.rank(), p.size());
    crate::elementwise::same_length(p, "scan", send, recv)?;
    let piece = piece.max(1);
    let (first, passes) = (rank == 0, rank + 1 < size);
    // an exclusive scan's middle ranks keep their result and pass on another
    let mut scratch = (!inclusive && !first && passes).then(|| vec![0; piece.min(send.len())]);
    for (k, (mine, place)) in send.chunks(piece).zip(recv.chunks_mut(piece)).enumerate() {
        let t = step_tag(seq, k);
        if !first {
            p.recv_into(rank - 1, t, place)?;
        }
        let out: &[u8] = match (inclusive, first, scratch.as_mut()) {
            (false, true, _) => mine,
            (true, true, _) => {
                place.copy_from_slice(mine);
                place
            }
            (true, false, _) => {
                (op.after)(place, mine);
                place
            }
            (false, false, Some(s)) => {
                let s = &mut s[..mine.len()];
                s.copy_from_slice(place);
                (op.after)(s, mine);
                s
            }
            // the last rank of an exclusive scan: its result is what it received
            (false, false, None) => continue,
        };
        if passes {
            p.send(rank + 1, t, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{LARGE_SIZES, SIZES, add_u64, affine, affine_into, maps, run, u64s};
    use crate::threads::ThreadError;

    /// The wrapping sum of u64s, commutative.
    const SUM: Fold<'static> = Fold { after: &add_u64, before: &add_u64 };

    /// `acc` becomes `other` then `acc`, for [`affine`].
    fn affine_before(acc: &mut [u8], other: &[u8]) {
        let out = affine(other, acc).expect("16-byte elements, equal lengths");
        acc.copy_from_slice(&out);
    }

    /// Composition of affine maps, associative but not commutative: every rank's prefix, by
    /// both algorithms (the chain in pieces of 48 bytes and whole), is the ranks' maps
    /// composed in rank order.
    #[test]
    fn rank_order() {
        for size in SIZES {
            for len in [0, 16, 160] {
                let out = run(size, |p| {
                    let op = Fold { after: &affine_into, before: &affine_before };
                    let mine = maps(p.rank(), len);
                    let mut got = Vec::new();
                    for inclusive in [true, false] {
                        let mut doubled = vec![0xab; len];
                        scan_into(&p, u32::from(inclusive), &mine, &mut doubled, inclusive, op)
                            .expect("scan");
                        for (seq, piece) in [(2, 48), (4, usize::MAX)] {
                            let mut chained = vec![0xab; len];
                            let seq = seq + u32::from(inclusive);
                            chain_into(&p, seq, &mine, &mut chained, inclusive, op, piece).expect("chain");
                            assert!(chained == doubled, "chain: size {size} len {len}");
                        }
                        got.push(doubled);
                    }
                    got
                });
                for (r, got) in out.into_iter().enumerate() {
                    let composed = |upto: usize| {
                        (1..upto).fold(maps(0, len), |acc, q| affine(&acc, &maps(q, len)).expect("lengths"))
                    };
                    assert!(got[0] == composed(r + 1), "scan: size {size} len {len} rank {r}");
                    let want = if r == 0 { vec![0xab; len] } else { composed(r) };
                    assert!(got[1] == want, "exscan: size {size} len {len} rank {r}");
                }
            }
        }
    }

    /// Every rank's prefix, inclusive and exclusive, at every size, against the sums of the
    /// ranks' values; rank 0's exclusive result left as it was.
    #[test]
    fn every_size() {
        for size in SIZES {
            for len in [0, 1, 100] {
                let out = run(size, |p| {
                    let r = p.rank();
                    let mine = u64s(r, 8 * len);
                    let mut upto = vec![0; mine.len()];
                    scan_into(&p, 0, &mine, &mut upto, true, SUM).expect("scan");
                    let mut before = vec![0xab; mine.len()];
                    scan_into(&p, 1, &mine, &mut before, false, SUM).expect("exscan");
                    // along the chain, in pieces of 24 bytes (or whole), alike
                    for (seq, piece) in [(2, 24), (4, usize::MAX)] {
                        let mut chained = vec![0; mine.len()];
                        chain_into(&p, seq, &mine, &mut chained, true, SUM, piece).expect("chain");
                        let mut chained_before = vec![0xab; mine.len()];
                        chain_into(&p, seq + 1, &mine, &mut chained_before, false, SUM, piece)
                            .expect("chain");
                        assert!(chained == upto && chained_before == before, "chain: size {size} len {len}");
                    }
                    (upto, before)
                });
                for (r, (upto, before)) in out.into_iter().enumerate() {
                    let sum = |ranks: std::ops::Range<usize>| {
                        let mut acc = vec![0; 8 * len];
                        ranks.for_each(|q| add_u64(&mut acc, &u64s(q, 8 * len)));
                        acc
                    };
                    assert!(upto == sum(0..r + 1), "scan: size {size} len {len} rank {r}");
                    let want = if r == 0 { vec![0xab; 8 * len] } else { sum(0..r) };
                    assert!(before == want, "exscan: size {size} len {len} rank {r}");
                }
            }
        }
    }

    /// Several MiB.
    #[test]
    fn large() {
        let len = 3 * 1024 * 1024 / 8 + 3;
        for size in LARGE_SIZES {
            let out = run(size, |p| {
                let mine = u64s(p.rank(), 8 * len);
                let mut upto = vec![0; mine.len()];
                scan_into(&p, 0, &mine, &mut upto, true, SUM).expect("scan");
                let mut chained = vec![0; mine.len()];
                chain_into(&p, 1, &mine, &mut chained, true, SUM, 1 << 20).expect("chain");
                assert!(chained == upto, "chain, size {size}");
                upto
            });
            let mut acc = vec![0; 8 * len];
            for (r, got) in out.into_iter().enumerate() {
                add_u64(&mut acc, &u64s(r, 8 * len));
                assert!(got == acc, "size {size} rank {r}");
            }
        }
    }

    /// Buffers of another length are errors, not panics or hangs.
    #[test]
    fn wrong_lengths() {
        let out = run(2, |p| scan_into(&p, 0, &[1; 8], &mut [0; 16], true, SUM).err());
        assert!(out.iter().all(|e| matches!(e, Some(ThreadError::Malformed(_)))), "{out:?}");
        let out = run(2, |p| {
            let n = if p.rank() == 1 { 16 } else { 8 };
            scan_into(&p, 0, &vec![1; n], &mut vec![0; n], true, SUM).err()
        });
        assert!(out.iter().any(|e| matches!(e, Some(ThreadError::Malformed(_)))), "{out:?}");
    }
}
