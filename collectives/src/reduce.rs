//! Reductions over opaque values with an associative, possibly non-commutative operation:
//! reduce, allreduce, inclusive and exclusive scan.
//!
//! Values are encoded byte strings; the caller's combiner takes `(left, right)` and returns
//! `op(left, right)`, where `left` always holds the contributions of lower ranks. Every result
//! is the combination of the contributions in rank order, `op(v0, op(v1, ... v(n-1)))`, however
//! the algorithm groups them (which associativity makes equivalent).

use crate::binomial;
use crate::p2p::{PointToPoint, rank_and_size, tag};

/// A combiner: takes the encoded `(left, right)` values, `left` holding the contributions of
/// lower ranks, and returns the encoded `op(left, right)`, or an error (for instance
/// [`PointToPoint::malformed`]'s when a value does not decode).
pub type Combine<'a, E> = dyn FnMut(&[u8], &[u8]) -> Result<Vec<u8>, E> + 'a;

/// Round of the message that returns an allreduce's result to a folded rank.
const UNFOLD_ROUND: u32 = 255;

/// Reduces every rank's `data` in rank order; `root` returns the result, others `None`.
///
/// A binomial tree towards rank 0, each rank combining its children's partial results in rank
/// order; rank 0 then sends the result to `root` if that is another rank.
///
/// Errors: a transport error, the combiner's error, or `root` out of range.
pub fn reduce<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    root: usize,
    data: Vec<u8>,
    combine: &mut Combine<'_, P::Error>,
) -> Result<Option<Vec<u8>>, P::Error> {
    let (rank, size) = rank_and_size(p, "reduce", root)?;
    // Combination of ranks rank..rank + m, for the children rank + m seen so far.
    let mut acc = data;
    for child in binomial::children(rank, size) {
        let theirs = p.recv(child, tag(seq, 0))?;
        acc = combine(&acc, &theirs)?;
    }
    if let Some(parent) = binomial::parent(rank) {
        p.send(parent, tag(seq, 0), &acc)?;
    }
    match (rank == 0, rank == root) {
        (true, true) => Ok(Some(acc)),
        (true, false) => {
            p.send(root, tag(seq, 1), &acc)?;
            Ok(None)
        }
        (false, true) => Ok(Some(p.recv(0, tag(seq, 1))?)),
        (false, false) => Ok(None),
    }
}

/// Where one rank stands in the recursive doubling of [`allreduce`] over `size` ranks.
struct Doubling {
    rank: usize,
    /// The largest power of two at most `size`.
    pof2: usize,
    /// How many of the lowest ranks fold in pairs first: `2 * (size - pof2)`.
    folded: usize,
}

impl Doubling {
    fn new(rank: usize, size: usize) -> Doubling {
        let pof2 = 1 << size.ilog2();
        Doubling { rank, pof2, folded: 2 * (size - pof2) }
    }

    /// Whether this rank hands its value to `rank + 1` and sits the rounds out.
    fn sends_away(&self) -> bool {
        self.rank < self.folded && self.rank % 2 == 0
    }

    /// This rank's partner and round number in each exchange (none when it sits them out).
    fn rounds(&self) -> impl Iterator<Item = (usize, u32)> + use<> {
        let Doubling { rank, pof2, folded } = *self;
        // this rank's number among the pof2 ranks that exchange, if it is one of them
        let new_rank =
            if rank >= folded { Some(rank - folded / 2) } else { (rank % 2 == 1).then_some(rank / 2) };
        let masks = std::iter::successors(Some(1usize), |m| Some(m << 1)).take_while(move |&m| m < pof2);
        new_rank.into_iter().flat_map(move |new_rank| {
            masks.clone().zip(1..).map(move |(mask, round)| {
                let new_partner = new_rank ^ mask;
                let partner =
                    if new_partner < folded / 2 { new_partner * 2 + 1 } else { new_partner + folded / 2 };
                (partner, round)
            })
        })
    }
}

/// Where a rank's partial result is in [`allreduce_doubling_into`].
#[derive(Clone, Copy)]
enum Partial {
    /// Nowhere yet: it is the caller's `send`.
    Send,
    /// In the caller's `recv`.
    Recv,
    /// In the scratch buffer.
    Scratch,
}

/// Reduces every rank's `data` in rank order; every rank returns the result.
///
/// Recursive doubling over the largest power of two `pof2 <= size` ranks: first the lowest
/// `2 * (size - pof2)` ranks fold in pairs (rank `2i` sends to `2i + 1`, which combines them in
/// that order), then the `pof2` remaining ranks, which cover contiguous ranges of ranks in
/// order, exchange and combine partial results in `log2(pof2)` rounds, and finally each folded
/// rank gets the result from its partner.
///
/// Errors: a transport error or the combiner's error.
pub fn allreduce<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    data: Vec<u8>,
    combine: &mut Combine<'_, P::Error>,
) -> Result<Vec<u8>, P::Error> {
    let (rank, size) = (p.rank(), p.size());
    if rank >= size {
        return Err(p.malformed(format!("allreduce: rank {rank} out of range for {size} ranks")));
    }
    let doubling = Doubling::new(rank, size);
    let mut acc = data;
    if doubling.sends_away() {
        p.send(rank + 1, tag(seq, 0), &acc)?;
    } else if rank < doubling.folded {
        let lower = p.recv(rank - 1, tag(seq, 0))?;
        acc = combine(&lower, &acc)?;
    }
    for (partner, round) in doubling.rounds() {
        let t = tag(seq, round);
        let theirs = p.sendrecv(partner, t, &acc, partner, t)?;
        acc = if partner < rank { combine(&theirs, &acc)? } else { combine(&acc, &theirs)? };
    }
    if rank < doubling.folded {
        if rank % 2 == 1 {
            p.send(rank - 1, tag(seq, UNFOLD_ROUND), &acc)?;
        } else {
            acc = p.recv(rank + 1, tag(seq, UNFOLD_ROUND))?;
        }
    }
    Ok(acc)
}

/// As [`allreduce`], on buffers: every rank's `send` reduced in rank order into its `recv` (of
/// the same length), with `op(acc, other)` setting `acc` to `op(acc, other)` element-wise.
///
/// The same recursive doubling, each round's message received into `recv` or one scratch
/// buffer rather than a fresh vector, so that a receive can be posted for it (read straight from
/// the socket, see the runtime's hand-over) and nothing is allocated per round; the partial
/// result stays in whichever of the two a round left it in, and is copied into `recv` at most
/// once, at the end.
///
/// Errors: a transport error, or buffers of other lengths than this rank's (a peer's message of
/// another length fails the receive).
pub fn allreduce_doubling_into<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    send: &[u8],
    recv: &mut [u8],
    op: &dyn Fn(&mut [u8], &[u8]),
) -> Result<(), P::Error> {
    let (rank, size) = buffers_of(p, send, recv)?;
    let doubling = Doubling::new(rank, size);
    let mut scratch = vec![0u8; send.len()];
    // where this rank's partial result is: each round's message lands in the other buffer, and
    // `op` folds into its first argument, so a lower partner's part (which goes first) takes
    // this rank's in where it landed, and that buffer holds the result from then on (copying it
    // back cost a copy per such round)
    let mut partial = Partial::Send;
    if doubling.sends_away() {
        p.send(rank + 1, tag(seq, 0), send)?;
    } else if rank < doubling.folded {
        p.recv_into(rank - 1, tag(seq, 0), recv)?;
        op(recv, send);
        partial = Partial::Recv;
    }
    for (partner, round) in doubling.rounds() {
        let t = tag(seq, round);
        let lower = partner < rank;
        partial = match partial {
            Partial::Send if lower => {
                p.sendrecv_into(partner, t, send, partner, t, recv)?;
                op(recv, send);
                Partial::Recv
            }
            Partial::Send => {
                // where the transport lends the message, `send` (the caller's buffer, not a
                // copy just written) goes while it is copied into `recv` (2 ranks, 64 KiB,
                // eight alternating runs: 18.2 against 29.6 us); where it writes it, `send` is
                // copied first (8 ranks on 2 cores, 64 KiB, the copy after the exchange:
                // 241-252 against 229-240 us)
                if p.lends(partner, send.len()) {
                    let copy = &mut || recv.copy_from_slice(send);
                    p.sendrecv_into_while(partner, t, send, partner, t, &mut scratch, copy)?;
                } else {
                    recv.copy_from_slice(send);
                    p.sendrecv_into(partner, t, recv, partner, t, &mut scratch)?;
                }
                op(recv, &scratch);
                Partial::Recv
            }
            Partial::Recv => {
                p.sendrecv_into(partner, t, recv, partner, t, &mut scratch)?;
                if lower {
                    op(&mut scratch, recv);
                    Partial::Scratch
                } else {
                    op(recv, &scratch);
                    Partial::Recv
                }
            }
            Partial::Scratch => {
                p.sendrecv_into(partner, t, &scratch, partner, t, recv)?;
                if lower {
                    op(recv, &scratch);
                    Partial::Recv
                } else {
                    op(&mut scratch, recv);
                    Partial::Scratch
                }
            }
        };
    }
    match partial {
        Partial::Scratch => recv.copy_from_slice(&scratch),
        // one rank: no round
        Partial::Send if !doubling.sends_away() => recv.copy_from_slice(send),
        Partial::Send | Partial::Recv => {}
    }
    if rank < doubling.folded {
        if rank % 2 == 1 {
            p.send(rank - 1, tag(seq, UNFOLD_ROUND), recv)?;
        } else {
            p.recv_into(rank + 1, tag(seq, UNFOLD_ROUND), recv)?;
        }
    }
    Ok(())
}

/// This rank and the group's size, after checking that the rank is in range and that an
/// allreduce's `send` and `recv` have the same length.
pub(crate) fn buffers_of<P: PointToPoint + ?Sized>(
    p: &P,
    send: &[u8],
    recv: &[u8],
) -> Result<(usize, usize), P::Error> {
    let (rank, size) = (p.rank(), p.size());
    if rank >= size || send.len() != recv.len() {
        let (s, r) = (send.len(), recv.len());
        return Err(p.malformed(format!("allreduce: {s} bytes into {r} at rank {rank} of {size}")));
    }
    Ok((rank, size))
}

/// Inclusive prefix reduction: rank `r` returns the combination of the `data` of ranks `0..=r`.
///
/// Recursive doubling, `ceil(log2(size))` rounds: in round `k` a rank swaps its partial result
/// for its aligned block of `2^k` ranks with `rank ^ 2^k`, and folds a lower partner's into its
/// prefix.
///
/// Errors: a transport error or the combiner's error.
pub fn scan<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    data: Vec<u8>,
    combine: &mut Combine<'_, P::Error>,
) -> Result<Vec<u8>, P::Error> {
    let prefix = prefix_scan(p, seq, data, true, combine)?;
    prefix.ok_or_else(|| p.malformed("scan: no result".to_string()))
}

/// Exclusive prefix reduction: rank 0 returns `None`, rank `r > 0` the combination of the
/// `data` of ranks `0..r`.
///
/// Recursive doubling, `ceil(log2(size))` rounds, as [`scan`].
///
/// Errors: a transport error or the combiner's error.
pub fn exscan<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    data: Vec<u8>,
    combine: &mut Combine<'_, P::Error>,
) -> Result<Option<Vec<u8>>, P::Error> {
    prefix_scan(p, seq, data, false, combine)
}

/// Recursive-doubling prefix reduction, inclusive of this rank's `data` or not.
///
/// `partial` is the combination over this rank's aligned block of `2^k` ranks (truncated at
/// `size`; where a truncated partial is wrong, it is only ever sent to ranks that do not
/// exist); `prefix` combines the lower blocks received so far, plus `data` if inclusive.
fn prefix_scan<P: PointToPoint + ?Sized>(
    p: &P,
    seq: u32,
    data: Vec<u8>,
    inclusive: bool,
    combine: &mut Combine<'_, P::Error>,
) -> Result<Option<Vec<u8>>, P::Error> {
    let (rank, size) = (p.rank(), p.size());
    if rank >= size {
        return Err(p.malformed(format!("scan: rank {rank} out of range for {size} ranks")));
    }
    let mut prefix = inclusive.then(|| data.clone());
    let mut partial = data;
    let (mut mask, mut round) = (1usize, 0);
    while mask < size {
        let partner = rank ^ mask;
        if partner < size {
            let t = tag(seq, round);
            let theirs = p.sendrecv(partner, t, &partial, partner, t)?;
            if partner < rank {
                partial = combine(&theirs, &partial)?;
                prefix = Some(match prefix {
                    Some(prefix) => combine(&theirs, &prefix)?,
                    None => theirs,
                });
            } else {
                partial = combine(&partial, &theirs)?;
            }
        }
        mask <<= 1;
        round += 1;
    }
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{SIZES, affine, affine_into, maps, run};
    use crate::threads::{ThreadError, ThreadRank};
    use crate::tuning::{ALLREDUCE_LARGE, REDUCE_LARGE};

    /// Concatenation: associative, not commutative; the result spells the order of combination.
    fn concat(left: &[u8], right: &[u8]) -> Result<Vec<u8>, ThreadError> {
        Ok([left, right].concat())
    }

    /// Rank `r`'s contribution for concatenation.
    fn id(r: usize) -> Vec<u8> {
        format!("{r},").into_bytes()
    }

    /// Concatenation of the ids of `ranks`.
    fn ids(ranks: std::ops::Range<usize>) -> Vec<u8> {
        ranks.flat_map(id).collect()
    }

    /// The affine combination of the contributions of `ranks`.
    fn composed(ranks: std::ops::Range<usize>, len: usize) -> Option<Vec<u8>> {
        ranks.map(|r| maps(r, len)).reduce(|l, r| affine(&l, &r).expect("same lengths"))
    }

    /// A combiner of tests.
    type Op = fn(&[u8], &[u8]) -> Result<Vec<u8>, ThreadError>;

    /// The four operations on one rank with one combiner, as one run of checks.
    fn check_all(
        p: &ThreadRank,
        size: usize,
        seq: &mut u32,
        mine: &dyn Fn(usize) -> Vec<u8>,
        op: Op,
        want: &dyn Fn(std::ops::Range<usize>) -> Option<Vec<u8>>,
    ) {
        let r = p.rank();
        let mut combine = |l: &[u8], rt: &[u8]| op(l, rt);
        for root in 0..size {
            let got = reduce(p, *seq, root, mine(r), &mut combine).expect("reduce");
            assert_eq!(got, if r == root { want(0..size) } else { None }, "reduce size {size} root {root}");
            *seq += 1;
        }
        let got = allreduce(p, *seq, mine(r), &mut combine).expect("allreduce");
        assert_eq!(Some(got), want(0..size), "allreduce size {size}");
        let got = scan(p, *seq + 1, mine(r), &mut combine).expect("scan");
        assert_eq!(Some(got), want(0..r + 1), "scan size {size} rank {r}");
        let got = exscan(p, *seq + 2, mine(r), &mut combine).expect("exscan");
        assert_eq!(got, want(0..r), "exscan size {size} rank {r}");
        *seq += 3;
    }

    /// The buffer version combines in rank order as the vector one does, for every size, with
    /// a non-commutative operation, and refuses a buffer of another length.
    #[test]
    fn allreduce_doubling_into_matches_allreduce() {
        let element = |r: usize, i: usize| -> [u8; 16] {
            let mut e = [0u8; 16];
            e[..8].copy_from_slice(&(3 + 2 * (r + i) as u64).to_le_bytes());
            e[8..].copy_from_slice(&(7 * r as u64 + i as u64).to_le_bytes());
            e
        };
        for size in SIZES {
            for elems in [0, 1, 9] {
                let data = |r: usize| (0..elems).flat_map(|i| element(r, i)).collect::<Vec<u8>>();
                run(size, |p| {
                    let want = allreduce(&p, 0, data(p.rank()), &mut affine).expect("allreduce");
                    let mut got = vec![0xAA; want.len()];
                    allreduce_doubling_into(&p, 1, &data(p.rank()), &mut got, &affine_into).expect("into");
                    assert!(got == want, "size {size}, {elems} elements");
                });
            }
        }
        let out = run(3, |p| {
            let len = if p.rank() == 1 { 32 } else { 16 };
            allreduce_doubling_into(&p, 0, &vec![0; len], &mut vec![0; len], &affine_into).is_err()
        });
        assert!(out.iter().any(|&failed| failed), "a length mismatch went unnoticed");
    }

    /// Rank order is kept by every operation, at every size and root, with concatenation.
    #[test]
    fn rank_order_with_concatenation() {
        for size in SIZES {
            run(size, |p| {
                let want = |ranks: std::ops::Range<usize>| (!ranks.is_empty()).then(|| ids(ranks));
                check_all(&p, size, &mut 0, &id, concat, &want);
            });
        }
    }

    /// Rank order is kept with an element-wise non-commutative operation, for empty values and
    /// values straddling the thresholds.
    #[test]
    fn rank_order_with_affine_maps() {
        for len in [0, 16, ALLREDUCE_LARGE - 16, ALLREDUCE_LARGE, REDUCE_LARGE + 16] {
            for size in SIZES {
                run(size, |p| {
                    let mine = |r: usize| maps(r, len);
                    let want = |ranks: std::ops::Range<usize>| composed(ranks, len);
                    check_all(&p, size, &mut 0, &mine, affine, &want);
                });
            }
        }
    }

    /// A combiner's error is returned, and ranks waiting on the failed rank get an error too.
    #[test]
    fn combiner_error() {
        let out = run(4, |p| {
            let mut combine = |l: &[u8], r: &[u8]| affine(l, r);
            allreduce(&p, 0, maps(p.rank(), if p.rank() == 3 { 32 } else { 16 }), &mut combine)
        });
        assert!(out.iter().any(|r| matches!(r, Err(ThreadError::Malformed(_)))), "{out:?}");
        assert!(out.iter().all(Result::is_err), "{out:?}");
    }
}
